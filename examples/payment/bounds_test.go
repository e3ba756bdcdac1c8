package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

// TestStoresAreBounded: every JetStream store the service makes has a byte
// limit and an age, as configured.
func TestStoresAreBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.CustomerState = "nats"
	cfg.PaymentsMaxBytes, cfg.IdemMaxBytes, cfg.ConfirmMaxBytes, cfg.StateMaxBytes = 3<<20, 2<<20, 5<<20, 7<<20
	cfg.PaymentsMaxAge = 48 * time.Hour
	ts := startService(t, cfg)
	ctx := context.Background()
	for _, tc := range []struct {
		stream   string
		maxBytes int64
		maxAge   time.Duration
		discard  jetstream.DiscardPolicy
	}{
		{"KV_payments", 3 << 20, 48 * time.Hour, jetstream.DiscardNew},
		{"KV_payment_idempotency", 2 << 20, idempotencyTTL, jetstream.DiscardNew},
		{confirmStream, 5 << 20, 48 * time.Hour, jetstream.DiscardNew},
		{"KV_payment_customers", 7 << 20, forgetAfter, jetstream.DiscardOld},
	} {
		st, err := ts.js.Stream(ctx, tc.stream)
		require.NoError(t, err, tc.stream)
		c := st.CachedInfo().Config
		maxBytes := tc.maxBytes
		if tc.stream == confirmStream {
			// And room for the queue's keeper (natsjs.Options.Storage):
			// its subject, its Nats-Rollup header and a file record's
			// framing.
			maxBytes += int64(len(confirmStream+".keeper") + len("NATS/1.0\r\nNats-Rollup: sub\r\n\r\n") + 34)
		}
		assert.Equal(t, maxBytes, c.MaxBytes, tc.stream)
		assert.Equal(t, tc.maxAge, c.MaxAge, tc.stream)
		assert.Equal(t, tc.discard, c.Discard, tc.stream)
	}
}

// A full payments store refuses payments before the gateway: nothing is
// charged that could not be recorded.
func TestFullStoreRefusesBeforeCharging(t *testing.T) {
	cfg := testConfig(t)
	cfg.PaymentsMaxBytes = 1 << 20
	ts := startService(t, cfg)
	ctx := context.Background()
	require.Equal(t, http.StatusOK, ts.pay(t, "before", 1, nil).Code)
	calls := ts.gateway.Calls()
	var err error
	for range 20 {
		id := "txn_" + tai.NewID()
		b, _ := json.Marshal(PaymentResponse{TransactionID: id, Status: StatusSuccess, Reasons: []string{strings.Repeat("x", 100<<10)}})
		if _, err = ts.records.Create(ctx, id, storedPayment{Code: 200, Status: StatusSuccess, Response: b}); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, ErrStoreFull)
	require.NoError(t, ts.levels.refresh(ctx))
	assert.InDelta(t, float64(1<<20), testutil.ToFloat64(ts.storeBytes.WithLabelValues("payments")), float64(headroom(1<<20)))
	assert.Equal(t, float64(1<<20), testutil.ToFloat64(ts.storeLimit.WithLabelValues("payments")))

	r := ts.pay(t, "after", 1, nil, "Idempotency-Key", "full")
	require.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
	assert.Equal(t, "store_full", r.errField("code"))
	assert.Equal(t, "the payments store is full; retry later", r.errField("message"),
		"the store named, as a write it refused is, and no internals")
	assert.Equal(t, "30", r.Header.Get("Retry-After"))
	assert.Equal(t, calls, ts.gateway.Calls(), "refused before the gateway")
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.storeRefused.WithLabelValues("payments")))
}

// Payments sent until the payments store is full are each either charged
// and recorded or refused before the gateway: the store is never found
// full by a payment already charged, although the levels are read only
// about once a second and a second's payments are many times the store's
// headroom.
func TestFillingStoreChargesOnlyWhatFits(t *testing.T) {
	cfg := testConfig(t)
	cfg.PaymentsMaxBytes = 1 << 20
	ts := startService(t, cfg)
	client := ts.http.Client()
	var mu sync.Mutex
	codes := map[string]int{}
	var charged []string
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				body := fmt.Sprintf(`{"amount":1,"customer_id":"fill_%d_%d","currency":"USD","merchant_id":"merc_456"}`, w, i)
				resp, err := client.Post(ts.URL+"/payment", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				var out struct {
					TransactionID string `json:"transaction_id"`
					Status        string `json:"status"`
					Error         struct{ Code string }
				}
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				what := out.Status
				if out.Error.Code != "" {
					what = out.Error.Code
				}
				codes[fmt.Sprintf("%d %s", resp.StatusCode, what)]++
				if resp.StatusCode == http.StatusOK {
					charged = append(charged, out.TransactionID)
				}
				mu.Unlock()
				if resp.StatusCode == http.StatusServiceUnavailable {
					return // full: this client stops
				}
			}
		})
	}
	wg.Wait()
	t.Logf("answers: %v", codes)
	assert.Equal(t, map[string]int{"200 SUCCESS": len(charged), "503 store_full": 4}, codes,
		"each client is charged and recorded until it is refused as full")
	assert.Greater(t, len(charged), 500, "the store took payments until it was nearly full")
	assert.Equal(t, int64(len(charged)), ts.gateway.Calls(), "only the recorded payments went to the gateway")
	assert.Zero(t, testutil.ToFloat64(ts.pendingGauge), "no charge is waiting for room")
	for _, id := range charged[len(charged)-20:] {
		assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/payment/"+id, nil).Code, id)
	}
	require.NoError(t, ts.levels.refresh(context.Background()))
	assert.Less(t, testutil.ToFloat64(ts.storeBytes.WithLabelValues("payments")), float64(1<<20))
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// A million unique customers stay within the state's byte limit: the ones
// seen least recently are forgotten, and counted.
func TestMemoryStateFloodStaysUnderItsCap(t *testing.T) {
	const limit = 16 << 20
	s, ctx := NewMemoryState(limit), context.Background()
	t0 := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	before := heapMiB()
	const n = 1_000_000
	for i := range n {
		_, err := s.Attempt(ctx, fmt.Sprintf("flood_%d", i), t0.Add(time.Duration(i)*time.Microsecond), time.Minute)
		require.NoError(t, err)
	}
	after := heapMiB()
	t.Logf("1M customers into a %d MiB state: %d kept (%.1f MiB estimated), %d evicted; heap %.0f → %.0f MiB",
		limit>>20, s.Len(), float64(s.Bytes())/(1<<20), s.Evicted(), before, after)
	assert.LessOrEqual(t, s.Bytes(), int64(limit))
	assert.Equal(t, int64(n), int64(s.Len())+s.Evicted(), "every customer kept or counted as evicted")
	assert.Less(t, after-before, 3.0*(limit>>20), "the heap grows with the limit, not with the flood")
	kept := 0
	for i := n - 1000; i < n; i++ {
		if s.has(fmt.Sprintf("flood_%d", i)) {
			kept++
		}
	}
	assert.GreaterOrEqual(t, kept, 990, "the customers seen last are kept")
}

// A million unique idempotency keys stay within the store's byte limit:
// beyond it new keys are refused.
func TestMemoryIdempotencyFloodStaysUnderItsCap(t *testing.T) {
	const limit = 16 << 20
	clock := newManualClock()
	s, ctx := NewMemoryIdempotency(limit, clock.Now), context.Background()
	before := heapMiB()
	refused := 0
	for i := range 1_000_000 {
		key := fmt.Sprintf("flood-key-%d", i)
		if _, _, err := s.Claim(ctx, key, claimOf("txn_"+tai.NewID(), clock.Now())); err != nil {
			require.ErrorIs(t, err, ErrStoreFull)
			refused++
		}
	}
	after := heapMiB()
	t.Logf("1M keys into a %d MiB store: %d kept, %d refused; heap %.0f → %.0f MiB", limit>>20, s.Len(), refused, before, after)
	assert.Equal(t, 1_000_000, s.Len()+refused)
	assert.Positive(t, refused)
	assert.Less(t, after-before, 3.0*(limit>>20), "the heap grows with the limit, not with the flood")
}

// Keys whose requests asked for a retry (429, 503) are released, and a
// flood of them — unique keys, or one key retried through a rate limit —
// stays within the store's limit too: a released key leaves nothing behind
// for the day its claim would have lasted.
func TestMemoryIdempotencyReleasedFloodStaysUnderItsCap(t *testing.T) {
	const limit = 1 << 20
	clock := newManualClock()
	s, ctx := NewMemoryIdempotency(limit, clock.Now), context.Background()
	before := heapMiB()
	for i := range 300_000 {
		key := fmt.Sprintf("flood-key-%d", i)
		if i%2 == 1 {
			key = "retried-key" // a client retrying one key through 429s
		}
		e := claimOf("txn_"+tai.NewID(), clock.Now())
		_, claimed, err := s.Claim(ctx, key, e)
		require.NoError(t, err)
		require.True(t, claimed, "a released key is free again")
		if i%1000 == 0 {
			clock.Advance(time.Second) // within the day the claims last
			continue                   // decided: kept
		}
		require.NoError(t, s.Release(ctx, key, e))
	}
	after := heapMiB()
	t.Logf("300k claims released by a %d MiB store: heap %.1f → %.1f MiB", limit>>20, before, after)
	assert.Less(t, after-before, 3.0*(limit>>20), "the heap grows with the limit, not with the flood")

	// The keys kept are still held, and forgotten a day after their claim.
	require.Equal(t, 300, s.Len())
	_, claimed, err := s.Claim(ctx, "flood-key-1000", claimOf("txn_again", clock.Now()))
	require.NoError(t, err)
	assert.False(t, claimed, "a kept key is held")
	clock.Advance(idempotencyTTL)
	for i := 0; s.Len() > 0 && i < 1000; i++ {
		e := claimOf(fmt.Sprintf("txn_%d", i), clock.Now())
		_, _, err := s.Claim(ctx, fmt.Sprintf("later-%d", i), e)
		require.NoError(t, err)
		require.NoError(t, s.Release(ctx, fmt.Sprintf("later-%d", i), e))
	}
	assert.Zero(t, s.Len(), "a day later every kept key is forgotten")
}

// Only the W3C trace context goes into a confirmation: a caller's baggage
// stays out of the messages.
func TestBaggageStaysOutOfMessages(t *testing.T) {
	ts := startService(t, testConfig(t))
	ts.stop() // the consumer: the message stays in the stream to be read
	ts.consumer.Wait()
	r := ts.pay(t, "cust_b", 4, nil,
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate", "vendor=opaque",
		"baggage", "user.email=someone@example.com")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	st, err := ts.js.Stream(context.Background(), confirmStream)
	require.NoError(t, err)
	msg, err := st.GetLastMsgForSubject(context.Background(), confirmStream)
	require.NoError(t, err)
	assert.Equal(t, r.str("transaction_id"), msg.Header.Get("Nats-Msg-Id"))
	assert.Contains(t, msg.Header.Get("traceparent"), "4bf92f3577b34da6a3ce929d0e0e4736")
	assert.Equal(t, "vendor=opaque", msg.Header.Get("tracestate"))
	for k := range msg.Header {
		assert.NotEqual(t, "baggage", strings.ToLower(k))
	}
	assert.NotContains(t, string(msg.Data), "someone@example.com")
	var c Confirmation
	require.NoError(t, kanban.JSON{}.Unmarshal(msg.Data, &c))
	assert.Equal(t, StatusSuccess, c.Payment.Status)
}

// The confirmation queue holds so many messages, whatever their bytes: a
// payment that would be one more is refused before the gateway, as for a
// store full of bytes, instead of being charged and its confirmation
// refused.
func TestConfirmationQueueFullOfMessagesRefusesBeforeCharging(t *testing.T) {
	ts, calls := confirmationsFullOfMessages(t)

	r := ts.pay(t, "after", 1, nil, "Idempotency-Key", "full")
	require.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
	assert.Equal(t, "store_full", r.errField("code"))
	assert.Equal(t, "the confirmations store is full; retry later", r.errField("message"))
	assert.Equal(t, calls, ts.gateway.Calls(), "refused before the gateway")
	assert.Zero(t, testutil.ToFloat64(ts.pendingGauge), "no charge is waiting for room")
}

// A store is full at its byte limit or, for the confirmation queue, at
// its message cap: the refusals' metric and the README's store_full row
// describe both, as the storage gate refuses at either.
func TestStoreFullIsDescribedForEveryLimit(t *testing.T) {
	ts := startService(t, testConfig(t))
	families, err := ts.registry.Gather()
	require.NoError(t, err)
	var help string
	for _, f := range families {
		if f.GetName() == "payment_store_refused_total" {
			help = f.GetHelp()
		}
	}
	require.NotEmpty(t, help, "payment_store_refused_total is registered")
	assert.Contains(t, help, "message", "the help of payment_store_refused_total")

	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var row string
	for line := range strings.Lines(string(readme)) {
		if strings.HasPrefix(line, "| `store_full` |") {
			row = line
		}
	}
	require.NotEmpty(t, row, "the README's store_full row")
	assert.Contains(t, row, "messages", "the README's store_full row")
}

// streamUnreadable is JetStream as the storage gate reads it, where one
// stream cannot be read: its server busy past the read's deadline.
type streamUnreadable struct {
	jetstream.JetStream
	stream string
}

var errStreamUnreadable = errors.New("stream info: timeout")

func (s streamUnreadable) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if name == s.stream {
		return nil, errStreamUnreadable
	}
	return s.JetStream.Stream(ctx, name)
}

// A store found full stays full to the storage gate while it cannot be
// read again: its last level is kept, with what was admitted since. The
// gate dropped it, and let payments through to be charged and then
// refused by the full store (500 outcome_pending, retried in the
// background), where it refuses them before anything runs.
func TestFullStoreUnreadableStillRefusesBeforeCharging(t *testing.T) {
	ts, calls := confirmationsFullOfMessages(t)
	ts.levels.js = streamUnreadable{JetStream: ts.levels.js, stream: confirmStream}
	require.ErrorIs(t, ts.levels.refresh(context.Background()), errStreamUnreadable)

	r := ts.pay(t, "after", 1, nil, "Idempotency-Key", "full-unread")
	require.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
	assert.Equal(t, "store_full", r.errField("code"))
	assert.Equal(t, calls, ts.gateway.Calls(), "refused before the gateway")
	assert.Zero(t, testutil.ToFloat64(ts.pendingGauge), "no charge is waiting for room")
}

// A store's kept level (it cannot be read) counts the payments in flight
// at its read once, however many refreshes fail after it: a store with
// room keeps admitting payments.
func TestUnreadableStoreLevelCountsPaymentsOnce(t *testing.T) {
	cfg := testConfig(t)
	cfg.confirmCapacity = 60
	ts := startService(t, cfg)
	ts.levels.inflight.Add(5) // payments between their start and their commit
	defer ts.levels.inflight.Add(-5)
	require.NoError(t, ts.levels.refresh(context.Background()))
	ts.levels.js = streamUnreadable{JetStream: ts.levels.js, stream: confirmStream}
	for range 20 {
		require.ErrorIs(t, ts.levels.refresh(context.Background()), errStreamUnreadable)
	}
	lv, ok := ts.levels.read.Load().level("confirmations")
	require.True(t, ok, "the confirmations' level is kept")
	assert.True(t, lv.kept)
	assert.LessOrEqual(t, lv.msgs, int64(1+5), "the keeper and the five in flight, once")
	assert.Empty(t, ts.levels.admit(context.Background()), "room for a payment")
}

// confirmationsFullOfMessages starts a service whose confirmation queue
// holds 60 messages, its consumer stopped, fills the queue with small
// confirmations and reads the stores' levels; calls is how many gateway
// calls were made by then.
func confirmationsFullOfMessages(t *testing.T) (ts *testService, calls int64) {
	t.Helper()
	cfg := testConfig(t)
	cfg.confirmCapacity = 60
	ts = startService(t, cfg)
	ts.stop() // the consumer: confirmations stay queued
	ts.consumer.Wait()
	calls = ts.gateway.Calls()
	for i := 0; ; i++ {
		id := fmt.Sprintf("txn_fill_%d", i)
		err := ts.queue.TryPublish(context.Background(), kanban.Message[Confirmation]{ID: id, Key: "cust_fill",
			Payload: Confirmation{TransactionID: id, CustomerID: "cust_fill"}})
		if errors.Is(err, kanban.ErrFull) {
			break
		}
		require.NoError(t, err)
		require.Less(t, i, 100, "the queue never filled")
	}
	require.NoError(t, ts.levels.refresh(context.Background()))
	return ts, calls
}

// A payment is taken by the storage gate at its own size when its
// metadata makes it larger than the stores' usual payment: one the
// payments store could not hold is refused before the gateway, not
// charged and then refused by the store (500 outcome_pending, retried in
// the background until the store has room).
func TestLargePaymentRefusedBeforeChargingWhenItWouldNotFit(t *testing.T) {
	cfg := testConfig(t)
	cfg.PaymentsMaxBytes = 1 << 20
	ts := startService(t, cfg)
	ctx := context.Background()
	// Fill the store with small payments to within 40 KiB of where the
	// gate refuses: the usual payment still fits.
	filler, _ := json.Marshal(PaymentResponse{Status: StatusSuccess, Reasons: []string{strings.Repeat("x", 1<<10)}})
	for {
		require.NoError(t, ts.levels.refresh(ctx))
		lv, ok := ts.levels.read.Load().level("payments")
		require.True(t, ok)
		if lv.used >= lv.limit-headroom(lv.limit)-40<<10 {
			break
		}
		_, err := ts.records.Create(ctx, "txn_"+tai.NewID(), storedPayment{Code: 200, Status: StatusSuccess, Response: filler})
		require.NoError(t, err)
	}
	calls := ts.gateway.Calls()

	// 50 keys of 40 bytes, values of 500 bytes, each '<' of them 6 bytes
	// as JSON (\u003c): a record of about 150 KiB, more than the store
	// has left.
	metadata := map[string]string{}
	for i := range maxMetadataKeys {
		metadata[fmt.Sprintf("%040d", i)] = strings.Repeat("<", maxMetadataValue)
	}
	r := ts.pay(t, "large", 1, map[string]any{"metadata": metadata}, "Idempotency-Key", "large")
	require.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
	assert.Equal(t, "store_full", r.errField("code"))
	assert.Equal(t, calls, ts.gateway.Calls(), "refused before the gateway")
	assert.Zero(t, testutil.ToFloat64(ts.pendingGauge), "no charge is waiting for room")

	// A payment of the usual size still fits.
	require.Equal(t, http.StatusOK, ts.pay(t, "small", 1, nil).Code)
}

// A replica started while the payments store is full refuses payments
// from its first one: the stores are read before it serves, so that the
// payments that arrive while the first read is still under way (a
// refresh holding the levels) are not admitted unchecked, charged, and
// then refused by the full store.
func TestReplicaStartedOnAFullStoreRefusesItsFirstPayments(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	replica := func(name string) *testService {
		cfg := testConfig(t)
		cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
		cfg.Instance = name
		cfg.PaymentsMaxBytes = 1 << 20
		return startService(t, cfg)
	}
	a := replica("a")
	ctx := context.Background()
	for i := 0; ; i++ {
		id := "txn_" + tai.NewID()
		b, _ := json.Marshal(PaymentResponse{TransactionID: id, Status: StatusSuccess, Reasons: []string{strings.Repeat("x", 100<<10)}})
		if _, err := a.records.Create(ctx, id, storedPayment{Code: 200, Status: StatusSuccess, Response: b}); err != nil {
			require.ErrorIs(t, err, ErrStoreFull)
			break
		}
		require.Less(t, i, 20, "the store never filled")
	}

	b := replica("b")
	b.levels.mu.Lock() // a refresh under way, as when payments arrive at once
	store := b.levels.admit(ctx)
	b.levels.mu.Unlock()
	assert.Equal(t, "payments", store, "the full store refuses the first payment")
}

// A store whose level cannot be read at the start fails the start, naming
// it, as one that cannot be opened does: served, the storage gate would
// admit payments unchecked until a read got through — charged, and then
// refused by the store if it was full. Nothing is held after: the next
// start on the directory, with the store readable, runs.
func TestStoreUnreadableAtStartFailsTheStart(t *testing.T) {
	cfg := testConfig(t)
	cfg.levelsJS = func(js jetstream.JetStream) jetstream.JetStream {
		return streamUnreadable{JetStream: js, stream: confirmStream}
	}
	s, err := NewService(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if s != nil {
		require.NoError(t, s.Close(context.Background()))
	}
	require.ErrorIs(t, err, errStreamUnreadable)
	assert.ErrorContains(t, err, "confirmations")

	cfg.levelsJS = nil
	ts := startService(t, cfg)
	require.Equal(t, http.StatusOK, ts.pay(t, "after", 1, nil).Code)
}
