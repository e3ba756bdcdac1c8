package natsjs

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban/natsembed"
)

// heldMsg is a delivered message whose acknowledgements go to reply, a
// subject the test reads, instead of to the server's consumer.
type heldMsg struct {
	jetstream.Msg // the methods not overridden are not called
	id, reply     string
}

func (m *heldMsg) Headers() nats.Header { return nats.Header{HeaderID: {m.id}} }
func (m *heldMsg) Reply() string        { return m.reply }

// failedLog keeps "id: err" of every settlement logged as failed.
type failedLog struct {
	mu     sync.Mutex
	failed []string
}

func (l *failedLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *failedLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "kanban: settling a message failed" {
		return nil
	}
	var id, err string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "id":
			id = a.Value.String()
		case "err":
			err = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = append(l.failed, id+": "+err)
	return nil
}
func (l *failedLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *failedLog) WithGroup(string) slog.Handler      { return l }

func (l *failedLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.failed...)
}

// releasing returns a source on nc, of a queue whose PublishTimeout is
// timeout, that logs to log.
func releasing(t *testing.T, nc *nats.Conn, timeout time.Duration, log *failedLog) *source[int] {
	t.Helper()
	q, err := New[int](context.Background(), nc, Options{Stream: "RELEASING", PublishTimeout: timeout, AsyncAttempts: 1})
	require.NoError(t, err)
	return &source[int]{q: q, log: slog.New(log)}
}

// arrivals reads n messages from held, failing the test when they do
// not come.
func arrivals(t *testing.T, held <-chan *nats.Msg, n int) []*nats.Msg {
	t.Helper()
	out := make([]*nats.Msg, 0, n)
	for len(out) < n {
		select {
		case m := <-held:
			out = append(out, m)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "releases missing", "%d of %d came", len(out), n)
		}
	}
	return out
}

// releaseArrivals reads the messages of n releases from held: each a
// negative acknowledgement with a delay, without a reply, then a plain
// one on the same subject (see nakNow). It returns the plain ones, which
// carry the reply of a release sent waiting for its answer.
func releaseArrivals(t *testing.T, held <-chan *nats.Msg, n int) []*nats.Msg {
	t.Helper()
	all := arrivals(t, held, 2*n)
	out := make([]*nats.Msg, n)
	for i := range out {
		delayed, plain := all[2*i], all[2*i+1]
		require.Equal(t, string(nakNowBody), string(delayed.Data), "release %d: the one stored first", i)
		require.Empty(t, delayed.Reply, "release %d: its answer is the plain one's", i)
		require.Equal(t, delayed.Subject, plain.Subject, "release %d: both of one message", i)
		require.Equal(t, string(nakBodyPlain), string(plain.Data), "release %d", i)
		out[i] = plain
	}
	return out
}

// TestReleasesUnansweredAreBounded: a consumer has at most maxReleasing
// releases unanswered. The next waits for the first one's answer, here
// until PublishTimeout, as that fails; then it and those after it go
// without waiting, as after any failure. The releases go out in the
// order they were made.
func TestReleasesUnansweredAreBounded(t *testing.T) {
	nc := inProcessConn(t)
	held := make(chan *nats.Msg, 4*maxReleasing)
	sub, err := nc.ChanSubscribe("HOLD.*", held) // never answers
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())
	var log failedLog
	s := releasing(t, nc, 200*time.Millisecond, &log)

	const n = maxReleasing + 8
	for i := range n {
		require.NoError(t, s.release(context.Background(), &heldMsg{id: "m" + strconv.Itoa(i), reply: "HOLD." + strconv.Itoa(i)}, true))
	}
	s.awaitReleases()
	requests := 0
	for i, m := range releaseArrivals(t, held, n) {
		require.Equal(t, "HOLD."+strconv.Itoa(i), m.Subject, "the releases in the order made")
		if m.Reply != "" {
			requests++
		}
	}
	assert.Equal(t, maxReleasing, requests, "releases sent waiting for an answer")
	assert.Equal(t, []string{"m0: natsjs: releasing m0: " + context.DeadlineExceeded.Error()}, log.all())
}

// TestReleasesFailLikeReleasesInTurn: a consumer's releases, all sent
// before the first is answered, are waited for in the order they were
// sent. The first that fails is logged, as it was when each release
// waited for its answer before the next was sent, and those after it are
// not waited for, nor logged, as those sent after a failure were not;
// nor are the releases the consumer makes of its own (report false):
// those that the open request delivers after Serve has returned.
func TestReleasesFailLikeReleasesInTurn(t *testing.T) {
	const n = 8
	for _, tc := range []struct {
		name     string
		answered int    // the first answered releases
		to       string // the subject the releases go to
		report   bool
		close    bool // the connection closes before the answers are waited for
		timeout  time.Duration
		want     []string
	}{
		{name: "answered", answered: n, to: "HOLD", report: true, timeout: time.Minute},
		{name: "fourth unanswered", answered: 3, to: "HOLD", report: true, timeout: 200 * time.Millisecond,
			want: []string{"m3: natsjs: releasing m3: " + context.DeadlineExceeded.Error()}},
		{name: "no responders", to: "NOBODY", report: true, timeout: time.Minute,
			want: []string{"m0: natsjs: releasing m0: " + nats.ErrNoResponders.Error()}},
		{name: "connection closed", to: "HOLD", report: true, close: true, timeout: time.Minute,
			want: []string{"m0: natsjs: releasing m0: " + nats.ErrConnectionClosed.Error()}},
		{name: "not reported", to: "HOLD", timeout: 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, srv.Shutdown(context.Background())) })
			holder, err := srv.Connect()
			require.NoError(t, err)
			t.Cleanup(holder.Close)
			held := make(chan *nats.Msg, 2*n)
			_, err = holder.ChanSubscribe("HOLD.*", held)
			require.NoError(t, err)
			require.NoError(t, holder.Flush())
			nc, err := srv.Connect()
			require.NoError(t, err)
			t.Cleanup(nc.Close)
			var log failedLog
			s := releasing(t, nc, tc.timeout, &log)

			for i := range n {
				m := &heldMsg{id: "m" + strconv.Itoa(i), reply: tc.to + "." + strconv.Itoa(i)}
				require.NoError(t, s.release(context.Background(), m, tc.report))
			}
			if tc.to == "HOLD" {
				// All sent before any is answered.
				for i, m := range releaseArrivals(t, held, n) {
					require.NotEmpty(t, m.Reply, "release %d sent waiting for its answer", i)
					if i < tc.answered {
						require.NoError(t, holder.Publish(m.Reply, nil))
					}
				}
			}
			if tc.close {
				nc.Close()
			}
			s.awaitReleases()
			assert.Equal(t, tc.want, log.all())
			assert.Equal(t, tc.answered < n, s.unconfirmed.Load(), "the settlements after a failure sent without waiting")
			assert.Nil(t, s.releases.inbox, "the answers' subscription ended")
		})
	}
}

// TestReleaseAnsweredInTimeIsNotFailedWhenWaitedForLate: a release's
// answer that came within PublishTimeout is taken as its answer also
// when it is waited for after PublishTimeout has passed (a drain whose
// handlers ran on after the releases were sent), not logged as failed,
// and the settlements after it still wait for theirs.
func TestReleaseAnsweredInTimeIsNotFailedWhenWaitedForLate(t *testing.T) {
	const n = 64
	nc := inProcessConn(t)
	answerer, err := nc.Subscribe("ANSWER.*", func(m *nats.Msg) { _ = m.Respond(nil) })
	require.NoError(t, err)
	defer func() { _ = answerer.Unsubscribe() }()
	require.NoError(t, nc.Flush())
	var log failedLog
	s := releasing(t, nc, 100*time.Millisecond, &log)

	for i := range n {
		require.NoError(t, s.release(context.Background(), &heldMsg{id: "m" + strconv.Itoa(i), reply: "ANSWER." + strconv.Itoa(i)}, true))
	}
	require.Eventually(t, func() bool { return len(s.releases.inbox.replies) == n },
		10*time.Second, time.Millisecond, "every release answered")
	for _, p := range s.releases.pending {
		<-p.ctx.Done() // waited for after its PublishTimeout
	}
	s.awaitReleases()
	assert.Empty(t, log.all())
	assert.False(t, s.unconfirmed.Load(), "the settlements after the releases wait for their answers")
}
