package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/internal/servers"
	"github.com/taipattern/taikit/kanban/natsembed"
)

// startNATS starts a NATS server with JetStream on a loopback port, as a
// separate deployment would have.
func startNATS(t *testing.T, dir string, port int) *natsembed.Server {
	t.Helper()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, Port: port, Token: natsToken})
	require.NoError(t, err)
	return srv
}

// natsToken is the NATS server's token: the same across its restarts, as a
// deployment's configuration would keep it.
const natsToken = "replicas-test-token-0123456789"

// stopNATS shuts srv down.
func stopNATS(t *testing.T, srv *natsembed.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
}

func TestTwoReplicasShareLimitsAndIdempotency(t *testing.T) {
	redisSrv := servers.StartRedis(t)
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	clock := newManualClock()
	replica := func(name string) *testService {
		cfg := testConfig(t)
		cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
		cfg.RedisURL = svc.NewURL(redisSrv.URL())
		cfg.Instance = name
		cfg.Clock = clock
		return startService(t, cfg)
	}
	a, b := replica("a"), replica("b")

	t.Run("one customer's limit", func(t *testing.T) {
		ok := 0
		for i := range 20 {
			r := []*testService{a, b}[i%2].pay(t, "shared_cust", 1, nil)
			if r.Code == http.StatusOK {
				ok++
			} else {
				require.Equal(t, http.StatusTooManyRequests, r.Code, string(r.Raw))
			}
		}
		assert.Equal(t, 5, ok, "5 per minute across both replicas")
	})

	t.Run("one idempotency key", func(t *testing.T) {
		require.NoError(t, a.gateway.Set(0, 20*time.Millisecond))
		require.NoError(t, b.gateway.Set(0, 20*time.Millisecond))
		before := a.gateway.Calls() + b.gateway.Calls()
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		for i := range 60 {
			wg.Go(func() {
				r := []*testService{a, b}[i%2].pay(t, "cust_idem", 30, nil, "Idempotency-Key", "shared-key")
				mu.Lock()
				codes[r.Code]++
				mu.Unlock()
			})
		}
		wg.Wait()
		assert.EqualValues(t, 1, a.gateway.Calls()+b.gateway.Calls()-before, "charged once: %v", codes)
		assert.Equal(t, 60, codes[http.StatusOK]+codes[http.StatusConflict], "%v", codes)
		// Once it finished, both replicas replay it.
		ra := a.pay(t, "cust_idem", 30, nil, "Idempotency-Key", "shared-key")
		rb := b.pay(t, "cust_idem", 30, nil, "Idempotency-Key", "shared-key")
		assert.Equal(t, http.StatusOK, ra.Code)
		assert.Equal(t, ra.Raw, rb.Raw)
	})

	t.Run("confirmations reach the replica that took the payment", func(t *testing.T) {
		require.NoError(t, a.gateway.Set(0, 0))
		var ids []string
		for i := range 20 {
			r := a.pay(t, fmt.Sprintf("spread_%d", i), 3, nil)
			require.Equal(t, http.StatusOK, r.Code)
			ids = append(ids, r.str("transaction_id"))
		}
		require.Eventually(t, func() bool {
			for _, id := range ids {
				if !a.confirmed(t, id) {
					return false
				}
			}
			return true
		}, 15*time.Second, 20*time.Millisecond)
	})
}

// TestNATSRestartLosesNoConfirmation stops NATS under load and starts it
// again. Payments decided while it is down cannot be stored: those charged
// answer 500 outcome_pending and are stored in the background once NATS is
// back. Every payment answered SUCCESS, and every one pending, ends up
// stored and confirmed.
func TestNATSRestartLosesNoConfirmation(t *testing.T) {
	dir := t.TempDir()
	port := servers.FreePort(t)
	natsSrv := startNATS(t, dir, port)
	var current atomic.Pointer[natsembed.Server]
	current.Store(natsSrv)
	t.Cleanup(func() { stopNATS(t, current.Load()) })

	cfg := testConfig(t)
	cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
	cfg.RequestTimeout = 6 * time.Second // a commit waits 2 s for NATS at most
	ts := startService(t, cfg)

	var mu sync.Mutex
	var ids, pending []string
	codes := map[int]int{}
	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := ts.pay(t, fmt.Sprintf("r%d_%d", w, i), 5, nil)
				mu.Lock()
				codes[r.Code]++
				switch {
				case r.Code == http.StatusOK:
					ids = append(ids, r.str("transaction_id"))
				case r.errField("code") == "outcome_pending":
					details, _ := r.Body["error"].(map[string]any)["details"].(map[string]any)
					id, _ := details["transaction_id"].(string)
					require.NotEmpty(t, id, string(r.Raw))
					pending = append(pending, id)
				case r.errField("code") == "fraud_check_unavailable":
					// Nothing charged: the customer state, in NATS, was
					// unreachable, and the fraud check failed closed.
					assert.Equal(t, http.StatusBadGateway, r.Code, string(r.Raw))
				default:
					// Nothing charged: the stores were unreachable before
					// the gateway.
					assert.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
				}
				mu.Unlock()
				answered.Add(1)
			}
		})
	}
	waitFor := func(n int64) {
		require.Eventually(t, func() bool { return answered.Load() >= n }, 60*time.Second, 5*time.Millisecond)
	}
	waitFor(200)
	stopNATS(t, natsSrv)
	waitFor(answered.Load() + 8) // answers while NATS is down
	current.Store(startNATS(t, dir, port))
	waitFor(answered.Load() + 200)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("answers %v, %d pending, NATS restarted in the middle", codes, len(pending))
	require.Eventually(t, func() bool {
		for _, id := range append(ids, pending...) {
			if !ts.confirmed(t, id) {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "every payment stored and confirmed")
}

func TestReplicasShareFraudStateThroughNATS(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	clock := newManualClock()
	replica := func(name string) *testService {
		cfg := testConfig(t)
		cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
		cfg.Instance = name
		cfg.Clock = clock
		cfg.CustomerLimit = 1000 // the velocity rule, not the limiter, is under test
		cfg.CustomerState = "nats"
		return startService(t, cfg)
	}
	a, b := replica("a"), replica("b")
	for i := range 5 {
		r := []*testService{a, b}[i%2].pay(t, "roaming", 10, nil)
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	}
	r := a.pay(t, "roaming", 10, nil)
	assert.Equal(t, StatusFraudBlocked, r.str("status"), "the sixth attempt across both replicas: %s", r.Raw)
	assert.Contains(t, string(r.Raw), "6 attempts in 1m0s")

	// Impossible travel across replicas, and the daily amount.
	berlin := map[string]any{"location": map[string]any{"latitude": 52.52, "longitude": 13.405}}
	tokyo := map[string]any{"location": map[string]any{"latitude": 35.68, "longitude": 139.69}}
	require.Equal(t, StatusSuccess, a.pay(t, "flyer", 3000, berlin).str("status"))
	clock.Advance(time.Hour)
	r = b.pay(t, "flyer", 10, tokyo)
	assert.Equal(t, StatusFraudBlocked, r.str("status"), string(r.Raw))
	assert.Contains(t, string(r.Raw), "km/h")
	clock.Advance(24 * time.Hour)
	require.Equal(t, StatusSuccess, b.pay(t, "spender", 3000, nil).str("status"))
	r = a.pay(t, "spender", 2500, nil)
	assert.Equal(t, StatusSuccess, r.str("status"), "the daily limit flags, it does not block: %s", r.Raw)
	assert.Equal(t, 0.1, r.Body["fraud_score"])
	assert.Contains(t, string(r.Raw), "5500.00 USD today would exceed 5000.00", "the day's spend at the other replica counts")
}

// TestReplicaDoesNotTakeOverAPaymentBeingStored: replica a charges a
// payment whose record the shared payments bucket refuses (it takes no
// message that large for a while), answers 500 outcome_pending and keeps
// storing it in the background. Past the claim's first lease the client
// retries with the key at replica b, which must wait (409) rather than
// take the claim for abandoned and charge the payment a second time: a
// keeps the claim alive while it stores the payment. Once the record fits,
// either replica replays it.
func TestReplicaDoesNotTakeOverAPaymentBeingStored(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	clock := newManualClock()
	replica := func(name string) *testService {
		cfg := testConfig(t)
		cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
		cfg.Instance = name
		cfg.Clock = clock
		cfg.RequestTimeout = 3 * time.Second // a commit waits 1 s
		return startService(t, cfg)
	}
	a, b := replica("a"), replica("b")
	ctx := context.Background()
	bucket, err := a.js.Stream(ctx, "KV_payments")
	require.NoError(t, err)
	limit := func(size int32) {
		c := bucket.CachedInfo().Config
		c.MaxMsgSize = size
		_, err := a.js.UpdateStream(ctx, c)
		require.NoError(t, err)
	}
	limit(16) // no record fits

	r := a.pay(t, "cust_pending", 10, nil, "Idempotency-Key", "pending-replicas")
	require.Equal(t, http.StatusInternalServerError, r.Code, string(r.Raw))
	require.Equal(t, "outcome_pending", r.errField("code"), string(r.Raw))

	// The clock runs past the claim's first lease in steps, each giving
	// the background commit time to see it.
	kv, err := a.js.KeyValue(ctx, "payment_idempotency")
	require.NoError(t, err)
	leaseEnd := func() time.Time {
		e, err := kv.Get(ctx, kvKey("pending-replicas"))
		require.NoError(t, err)
		var claim IdemEntry
		require.NoError(t, json.Unmarshal(e.Value(), &claim))
		return claim.leaseEnd()
	}
	for range 2 {
		clock.Advance(claimLease(3*time.Second) - 30*time.Second)
		deadline := time.Now().Add(10 * time.Second)
		for leaseEnd().Sub(clock.Now()) < claimLease(3*time.Second)/2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}

	again := b.pay(t, "cust_pending", 10, nil, "Idempotency-Key", "pending-replicas")
	assert.Equal(t, http.StatusConflict, again.Code, string(again.Raw))
	assert.Equal(t, "idempotency_in_flight", again.errField("code"), string(again.Raw))
	assert.EqualValues(t, 1, a.gateway.Calls()+b.gateway.Calls(), "charged once")

	limit(-1)
	var got reply
	require.Eventually(t, func() bool {
		got = b.pay(t, "cust_pending", 10, nil, "Idempotency-Key", "pending-replicas")
		return got.Code == http.StatusOK
	}, 30*time.Second, 10*time.Millisecond, "the retry gets the payment once it is stored")
	assert.Equal(t, "true", got.Header.Get("Idempotent-Replayed"), string(got.Raw))
	assert.EqualValues(t, 1, a.gateway.Calls()+b.gateway.Calls(), "charged once")
}
