package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban/natsembed"
)

// clashLog is the start of the message a clash logs.
const clashLog = "another process publishes the audit head of this instance"

// instanceClashes is the service's payment_instance_clashes_total, 0 when
// it has none.
func instanceClashes(t *testing.T, s *Service) float64 {
	t.Helper()
	families, err := s.registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == "payment_instance_clashes_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// onNATS is a test service's configuration on the NATS server srv, as
// instance "test", with a data dir of its own, publishing its audit head
// every every.
func onNATS(t *testing.T, srv *natsembed.Server, every time.Duration) Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.NATSURL = svc.NewURL(srv.ClientURL())
	cfg.auditHeadEvery = every
	return cfg
}

// publishHead publishes s's audit head, as its ticker does.
func publishHead(t *testing.T, s *Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, s.publishAuditHead(ctx))
}

// Two processes started as the same -instance on one NATS, each on a data
// dir of its own, take over each other's idempotency claims at once. The
// audit head both publish under that name tells them apart: the first
// publication of either after the other's is a clash, logged and counted,
// and each goes on publishing its own head.
func TestInstanceClashFoundAtTheFirstPublicationAfterTheOthers(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	// No tick within the test: it publishes itself.
	a := startService(t, onNATS(t, natsSrv, time.Hour))
	b := startService(t, onNATS(t, natsSrv, time.Hour))
	require.Equal(t, http.StatusOK, a.pay(t, "twin_a", 10, nil).Code)
	require.Equal(t, http.StatusOK, b.pay(t, "twin_b", 10, nil).Code)

	publishHead(t, a.Service)
	assert.Zero(t, instanceClashes(t, a.Service), "the first head published")
	publishHead(t, b.Service)
	assert.Equal(t, 1.0, instanceClashes(t, b.Service), "b publishes over a's head")
	for _, want := range []string{"level=ERROR", clashLog, "instance=test", "-instance must be unique", "charged twice"} {
		assert.Contains(t, b.logs.String(), want)
	}
	assert.NotContains(t, a.logs.String(), clashLog)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, hash, err := AuditHead(ctx, b.js, "test")
	require.NoError(t, err)
	last, _ := b.audit.Last()
	assert.Equal(t, last, hash, "b went on publishing its head")

	publishHead(t, a.Service)
	assert.Equal(t, 1.0, instanceClashes(t, a.Service), "a publishes over b's head")
	publishHead(t, b.Service)
	assert.Equal(t, 2.0, instanceClashes(t, b.Service), "each clash counted once")
}

// Publishing on their tickers, two processes of the same instance report
// the clash while both run, neither stopping. The second started past
// the first's head (-audit-accept-lost-head), or before it was published.
func TestInstanceClashFoundWhileBothRun(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	a := startService(t, onNATS(t, natsSrv, 10*time.Millisecond))
	cfg := onNATS(t, natsSrv, 10*time.Millisecond)
	cfg.AuditAcceptLostHead = true
	b := startService(t, cfg)
	require.Eventually(t, func() bool {
		return instanceClashes(t, a.Service)+instanceClashes(t, b.Service) > 0
	}, time.Minute, 10*time.Millisecond)
	assert.Contains(t, a.logs.String()+b.logs.String(), clashLog)
	require.Equal(t, http.StatusOK, a.pay(t, "twin_a", 10, nil).Code, "a still serves")
	require.Equal(t, http.StatusOK, b.pay(t, "twin_b", 10, nil).Code, "b still serves")

	// Each shutdown publishes a last head over the one it finds; with the
	// other twin still publishing every 10 ms, its write could land
	// between that read and that write, twice, and the shutdown fail on
	// a clash this test has already seen. The twins' publications stop
	// first, so that each shutdown finds the head where it read it.
	for _, s := range []*testService{a, b} {
		s.heads.stop()
		s.heads.wg.Wait()
	}
}

// A second process of the instance that starts after the first published
// a head of another trail is refused at its start, and told that another
// process may run as its instance.
func TestStartNamesAnotherProcessOfTheSameInstance(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	a := startService(t, onNATS(t, natsSrv, time.Hour))
	require.Equal(t, http.StatusOK, a.pay(t, "twin_a", 10, nil).Code)
	publishHead(t, a.Service)

	_, err := NewService(context.Background(), onNATS(t, natsSrv, time.Hour), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.ErrorIs(t, err, errAuditHeadLost)
	assert.ErrorContains(t, err, "another process")
	assert.ErrorContains(t, err, "-instance")
}

// A restart of an instance on its data dir, after a shutdown or a crash
// (kill -9: no last publication), takes the head it finds at its start for
// its own, and reports no clash.
func TestInstanceRestartIsNoClash(t *testing.T) {
	for _, c := range []struct {
		name string
		// published: the run before the restart published its head
		// while it ran; shutdown: it shut down, publishing it once more.
		published, shutdown bool
	}{
		{"after a shutdown", true, true},
		{"after a crash", true, false},
		{"after a crash before the first publication", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			natsSrv := startNATS(t, t.TempDir(), 0)
			t.Cleanup(func() { stopNATS(t, natsSrv) })
			cfg := onNATS(t, natsSrv, time.Hour)
			runService(t, cfg, "first") // an earlier run's head

			s, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if c.published {
				require.NoError(t, s.publishAuditHead(ctx))
			}
			if !c.shutdown {
				s.heads.stop()
				s.heads.wg.Wait()
				s.heads = nil
			}
			assert.Zero(t, instanceClashes(t, s))
			require.NoError(t, s.Close(ctx))

			restarted := startService(t, cfg)
			require.Equal(t, http.StatusOK, restarted.pay(t, "second", 10, nil).Code)
			publishHead(t, restarted.Service)
			publishHead(t, restarted.Service)
			assert.Zero(t, instanceClashes(t, restarted.Service))
			assert.NotContains(t, restarted.logs.String(), clashLog)
		})
	}
}

// lostAckKV stores a head but answers as if the answer had been lost on
// its way back, stored times; then fails, unstored, failed times.
type lostAckKV struct {
	jetstream.KeyValue
	stored, failed int
}

func (kv *lostAckKV) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	if kv.stored == 0 && kv.failed > 0 {
		kv.failed--
		return 0, context.DeadlineExceeded
	}
	rev, err := kv.KeyValue.Update(ctx, key, value, last)
	if err == nil && kv.stored > 0 {
		kv.stored--
		return 0, context.DeadlineExceeded
	}
	return rev, err
}

// A publication stored though its answer was lost is the process's own:
// a later one finds its head, not another process's, even past
// publications that failed since.
func TestAuditHeadStoredWithoutAnAnswerIsNoClash(t *testing.T) {
	cfg := testConfig(t)
	cfg.auditHeadEvery = time.Hour
	s := startService(t, cfg)
	publishHead(t, s.Service)
	kv := &lostAckKV{KeyValue: s.heads.kv, stored: 1, failed: 3}
	s.heads.kv = kv
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 4 {
		require.Equal(t, http.StatusOK, s.pay(t, fmt.Sprintf("cust_%d", i), 10, nil).Code)
		require.ErrorIs(t, s.publishAuditHead(ctx), context.DeadlineExceeded)
	}
	require.Zero(t, kv.stored+kv.failed)

	require.Equal(t, http.StatusOK, s.pay(t, "last", 10, nil).Code)
	publishHead(t, s.Service)
	assert.Zero(t, instanceClashes(t, s.Service))
	_, hash, err := AuditHead(ctx, s.js, cfg.Instance)
	require.NoError(t, err)
	last, _ := s.audit.Last()
	assert.Equal(t, last, hash)
}
