package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

// failingState is a customer state whose every call fails while failing is
// set: a shared store that is down.
type failingState struct {
	CustomerState
	failing atomic.Bool
}

var errStateDown = errors.New("customer state store unreachable")

func (f *failingState) Attempt(ctx context.Context, c string, now time.Time, w time.Duration) (int, error) {
	if f.failing.Load() {
		return 0, errStateDown
	}
	return f.CustomerState.Attempt(ctx, c, now, w)
}

func (f *failingState) Spent(ctx context.Context, c, cur string, now time.Time) (int64, error) {
	if f.failing.Load() {
		return 0, errStateDown
	}
	return f.CustomerState.Spent(ctx, c, cur, now)
}

func (f *failingState) Reserve(ctx context.Context, c, txn, cur string, minor int64, now time.Time, w time.Duration, at *Point) (Reservation, error) {
	if f.failing.Load() {
		return Reservation{}, errStateDown
	}
	return f.CustomerState.Reserve(ctx, c, txn, cur, minor, now, w, at)
}

// TestIdempotencyReleasesWhatAsksForRetry: an answer that tells the client
// to retry — 429, 503, a fraud check that could not run — does not keep
// the key, so the retry with it runs instead of replaying the refusal.
func TestIdempotencyReleasesWhatAsksForRetry(t *testing.T) {
	cfg := testConfig(t)
	state := &failingState{CustomerState: NewMemoryState(0)}
	cfg.State = state
	ts := startService(t, cfg)
	fresh := func(t *testing.T, r reply) {
		t.Helper()
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
		assert.Empty(t, r.Header.Get("Idempotent-Replayed"), "run, not replayed")
	}

	t.Run("rate limited", func(t *testing.T) {
		for range 5 {
			require.Equal(t, http.StatusOK, ts.pay(t, "flood", 1, nil).Code)
		}
		r := ts.pay(t, "flood", 1, nil, "Idempotency-Key", "k429")
		require.Equal(t, http.StatusTooManyRequests, r.Code, string(r.Raw))
		retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
		require.NoError(t, err)
		ts.clock.Advance(time.Duration(retry)*time.Second + time.Minute) // and the velocity window
		fresh(t, ts.pay(t, "flood", 1, nil, "Idempotency-Key", "k429"))
		again := ts.pay(t, "flood", 1, nil, "Idempotency-Key", "k429")
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"), "now decided, the key keeps it")
	})
	t.Run("line stopped", func(t *testing.T) {
		ts.line.Stop("maintenance")
		r := ts.pay(t, "cust_l", 1, nil, "Idempotency-Key", "k503")
		require.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
		assert.NotEmpty(t, r.Header.Get("Retry-After"))
		ts.line.Start()
		fresh(t, ts.pay(t, "cust_l", 1, nil, "Idempotency-Key", "k503"))
	})
	t.Run("fraud check unavailable fails closed", func(t *testing.T) {
		calls := ts.gateway.Calls()
		state.failing.Store(true)
		r := ts.pay(t, "cust_s", 1, nil, "Idempotency-Key", "k502")
		state.failing.Store(false)
		require.Equal(t, http.StatusBadGateway, r.Code, string(r.Raw))
		assert.Equal(t, StatusFailed, r.str("status"))
		assert.Equal(t, "fraud check unavailable", r.errField("message"))
		assert.Equal(t, calls, ts.gateway.Calls(), "the rules did not run: nothing charged")
		fresh(t, ts.pay(t, "cust_s", 1, nil, "Idempotency-Key", "k502"))
	})
}

// A gateway that times out may have moved the money: the key keeps the
// answer, and the retry gets it instead of a second charge.
func TestIdempotencyKeepsGatewayTimeouts(t *testing.T) {
	cfg := testConfig(t)
	cfg.RequestTimeout = 1500 * time.Millisecond // 1 s for the gateway
	ts := startService(t, cfg)
	require.NoError(t, ts.gateway.Set(0, 3*time.Second))
	r := ts.pay(t, "cust_t", 5, nil, "Idempotency-Key", "k504")
	require.Equal(t, http.StatusGatewayTimeout, r.Code, string(r.Raw))
	require.NoError(t, ts.gateway.Set(0, 0))
	again := ts.pay(t, "cust_t", 5, nil, "Idempotency-Key", "k504")
	assert.Equal(t, http.StatusGatewayTimeout, again.Code)
	assert.Equal(t, string(r.Raw), string(again.Raw))
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	assert.EqualValues(t, 1, ts.gateway.Calls())
	got := ts.do(t, http.MethodGet, "/payment/"+r.str("transaction_id"), nil)
	assert.Equal(t, StatusFailed, got.str("status"), "kept for GET too")
}

// The fingerprint is the parsed request: the same payment spelled
// otherwise is the same request.
func TestIdempotencyFingerprintsTheParsedRequest(t *testing.T) {
	ts := startService(t, testConfig(t))
	key := []string{"Idempotency-Key", "fp"}
	first := ts.do(t, http.MethodPost, "/payment", `{"amount": 10, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {"a": "1", "b": "2"}}`, key...)
	require.Equal(t, http.StatusOK, first.Code, string(first.Raw))
	for _, same := range []string{
		`{"merchant_id": "m", "currency": "usd", "customer_id": "c", "amount": 1e1, "metadata": {"b": "2", "a": "1"}}`,
		`{ "amount" : 10.00 , "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {"a": "1", "b": "2"} }`,
	} {
		r := ts.do(t, http.MethodPost, "/payment", same, key...)
		assert.Equal(t, string(first.Raw), string(r.Raw), same)
		assert.Equal(t, "true", r.Header.Get("Idempotent-Replayed"), same)
	}
	for _, other := range []string{
		`{"amount": 10.01, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {"a": "1", "b": "2"}}`,
		`{"amount": 10, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {"a": "1"}}`,
		`{"amount": 10, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {"a": "1", "b": "2"}, "location": {"country": "DE"}}`,
		`{"amount": 10, "customer_id": "c", "currency": "EUR", "merchant_id": "m", "metadata": {"a": "1", "b": "2"}}`,
	} {
		r := ts.do(t, http.MethodPost, "/payment", other, key...)
		assert.Equal(t, http.StatusUnprocessableEntity, r.Code, other)
	}
	assert.EqualValues(t, 1, ts.gateway.Calls())
}

// Keys belong to the API principal: services of two principals that share
// the idempotency bucket make two payments of one key.
func TestIdempotencyKeysPerPrincipal(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	replica := func(name, principal, token string) *testService {
		cfg := testConfig(t)
		cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
		cfg.Instance = name
		cfg.APIPrincipal = principal
		cfg.APIToken = svc.NewSecret(token)
		return startService(t, cfg)
	}
	a, b, a2 := replica("a", "shop-a", "token-a"), replica("b", "shop-b", "token-b"), replica("a2", "shop-a", "token-a")
	ra := a.pay(t, "cust_p", 3, nil, "Idempotency-Key", "shared", "Authorization", "Bearer token-a")
	rb := b.pay(t, "cust_p", 3, nil, "Idempotency-Key", "shared", "Authorization", "Bearer token-b")
	require.Equal(t, http.StatusOK, ra.Code, string(ra.Raw))
	require.Equal(t, http.StatusOK, rb.Code, string(rb.Raw))
	assert.NotEqual(t, ra.str("transaction_id"), rb.str("transaction_id"), "two principals, two payments")
	again := a2.pay(t, "cust_p", 3, nil, "Idempotency-Key", "shared", "Authorization", "Bearer token-a")
	assert.Equal(t, string(ra.Raw), string(again.Raw), "the same principal at another replica gets its answer")
}

// A claim whose request died is taken over, as the same payment: at once
// when an earlier run of this instance made it, after the lease otherwise.
func TestIdempotencyTakesOverAbandonedClaims(t *testing.T) {
	ts := startService(t, testConfig(t))
	ctx := context.Background()
	body := map[string]any{"amount": 7, "customer_id": "cust_a", "currency": "USD", "merchant_id": "m"}
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "cust_a", "currency": "USD", "merchant_id": "m"}`))
	require.NoError(t, err)

	earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_00000000000000000000000000000001", Owner: "test/earlier", Started: ts.clock.Now()}
	_, claimed, err := ts.idem.Claim(ctx, "k-earlier", earlier)
	require.NoError(t, err)
	require.True(t, claimed)
	r := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-earlier")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, earlier.TxnID, r.str("transaction_id"), "run again as the same payment")

	elsewhere := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_00000000000000000000000000000002", Owner: "other/boot", Started: ts.clock.Now()}
	_, claimed, err = ts.idem.Claim(ctx, "k-other", elsewhere)
	require.NoError(t, err)
	require.True(t, claimed)
	body["customer_id"] = "cust_a"
	busy := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-other")
	assert.Equal(t, http.StatusConflict, busy.Code, "another replica may still be on it")
	assert.Equal(t, "1", busy.Header.Get("Retry-After"))
	ts.clock.Advance(inFlightLease - time.Nanosecond)
	assert.Equal(t, http.StatusConflict, ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-other").Code)
	ts.clock.Advance(time.Nanosecond)
	r = ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-other")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, elsewhere.TxnID, r.str("transaction_id"))
}

// A claim taken over is its payment's for good: the request that made it
// died after it may have reached the gateway under its transaction ID, so
// a takeover refused before anything ran (503, 429) does not release the
// key, which a retry would claim anew under another transaction ID (and a
// gateway that charges each ID once would charge twice). The retry takes
// the claim over at once and runs the payment under its ID.
func TestIdempotencyTakeoverRefusedKeepsItsTransaction(t *testing.T) {
	ts := startService(t, testConfig(t))
	ctx := context.Background()
	body := map[string]any{"amount": 7, "customer_id": "cust_tk", "currency": "USD", "merchant_id": "m"}
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "cust_tk", "currency": "USD", "merchant_id": "m"}`))
	require.NoError(t, err)
	earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_00000000000000000000000000000003", Owner: "test/earlier", Started: ts.clock.Now()}
	_, claimed, err := ts.idem.Claim(ctx, "k-died", earlier)
	require.NoError(t, err)
	require.True(t, claimed)

	ts.line.Stop("maintenance")
	refused := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-died")
	require.Equal(t, http.StatusServiceUnavailable, refused.Code, string(refused.Raw))
	ts.line.Start()
	r := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-died")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, earlier.TxnID, r.str("transaction_id"), "run again as the same payment")
	again := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-died")
	assert.Equal(t, string(r.Raw), string(again.Raw), "and the key keeps it")
}

// A process killed after storing a charge's record but before its
// confirmation leaves a record no confirmation will ever mark: the next
// request with the key replays the record, and stores the confirmation
// first.
func TestReplayStoresAMissingConfirmation(t *testing.T) {
	ts := startService(t, testConfig(t))
	ctx := context.Background()
	p, err := parsePayment([]byte(`{"amount": 9, "customer_id": "cust_r", "currency": "USD", "merchant_id": "m"}`))
	require.NoError(t, err)
	txn := "txn_" + strings.Repeat("ab", 16)
	rec := storedOf(t, txn, StatusSuccess, http.StatusOK)
	_, err = ts.records.Create(ctx, txn, rec)
	require.NoError(t, err)
	_, claimed, err := ts.idem.Claim(ctx, "k-lost", IdemEntry{Fingerprint: p.fingerprint(), TxnID: txn, Owner: "test/earlier", Started: ts.clock.Now()})
	require.NoError(t, err)
	require.True(t, claimed)
	require.False(t, ts.confirmed(t, txn))

	r := ts.do(t, http.MethodPost, "/payment", `{"amount": 9, "customer_id": "cust_r", "currency": "USD", "merchant_id": "m"}`, "Idempotency-Key", "k-lost")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, "true", r.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, string(rec.Response), strings.TrimSpace(string(r.Raw)))
	require.Eventually(t, func() bool { return ts.confirmed(t, txn) }, 10*time.Second, 10*time.Millisecond, "confirmed")
	assert.Zero(t, ts.gateway.Calls(), "nothing charged again")
}

// An Idempotency-Key given twice, too long or not visible ASCII is a 400
// naming the header, and nothing is charged; an empty one is no key.
func TestIdempotencyKeyIsChecked(t *testing.T) {
	ts := startService(t, testConfig(t))
	body := `{"amount": 10, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`
	send := func(keys ...string) reply {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/payment", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		for _, k := range keys {
			req.Header.Add("Idempotency-Key", k)
		}
		resp, err := ts.http.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		r := reply{Code: resp.StatusCode, Header: resp.Header}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&r.Body))
		return r
	}
	for _, tc := range []struct {
		keys []string
		msg  string
	}{
		{[]string{"k1", "k2"}, "Idempotency-Key is given 2 times; a request has one key"},
		{[]string{"k1", ""}, "Idempotency-Key is given 2 times"},
		{[]string{strings.Repeat("k", maxIdemKeyLen+1)}, "Idempotency-Key is longer than 255 bytes"},
		{[]string{"k 1"}, "Idempotency-Key may hold only visible ASCII characters"},
	} {
		r := send(tc.keys...)
		assert.Equal(t, http.StatusBadRequest, r.Code, tc.keys)
		assert.Equal(t, "Idempotency-Key", r.errField("field"), tc.keys)
		assert.Contains(t, r.errField("message"), tc.msg, tc.keys)
	}
	assert.Zero(t, ts.gateway.Calls(), "nothing charged")
	r := send("")
	assert.Equal(t, http.StatusOK, r.Code, "an empty key is no key")
	assert.Empty(t, r.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, http.StatusOK, send(strings.Repeat("k", maxIdemKeyLen)).Code)
}

// chargeNotStored starts a service whose payments bucket takes no record
// (limit sets the largest message it takes, -1 for any), charges a payment
// with the Idempotency-Key key, which answers 500 outcome_pending and is
// stored in the background, and moves the clock past the claim's lease.
func chargeNotStored(t *testing.T, key string) (ts *testService, limit func(size int32)) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Idempotency = "memory"
	cfg.RequestTimeout = 3 * time.Second // a commit waits 1 s
	ts = startService(t, cfg)
	ctx := context.Background()
	bucket, err := ts.js.Stream(ctx, "KV_payments")
	require.NoError(t, err)
	limit = func(size int32) {
		c := bucket.CachedInfo().Config
		c.MaxMsgSize = size
		_, err := ts.js.UpdateStream(ctx, c)
		require.NoError(t, err)
	}
	limit(16) // no record fits

	r := ts.pay(t, "cust_pending", 10, nil, "Idempotency-Key", key)
	require.Equal(t, http.StatusInternalServerError, r.Code, string(r.Raw))
	require.Equal(t, "outcome_pending", r.errField("code"), string(r.Raw))
	ts.clock.Advance(inFlightLease + time.Minute)
	return ts, limit
}

// TestKeyOfAPaymentStillBeingStoredIsNotTakenOver charges a payment whose
// record the payments bucket refuses (it takes no message that large for
// a while), so that it answers 500 outcome_pending and is stored in the
// background; past the claim's lease the client retries with the key. The
// retry waits for the payment being stored (409) and never charges it a
// second time: the claim is this process's own, and alive.
func TestKeyOfAPaymentStillBeingStoredIsNotTakenOver(t *testing.T) {
	ts, limit := chargeNotStored(t, "pending-1")
	again := ts.pay(t, "cust_pending", 10, nil, "Idempotency-Key", "pending-1")
	assert.Equal(t, http.StatusConflict, again.Code, string(again.Raw))
	assert.Equal(t, "idempotency_in_flight", again.errField("code"), string(again.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")

	limit(-1)
	var got reply
	require.Eventually(t, func() bool {
		got = ts.pay(t, "cust_pending", 10, nil, "Idempotency-Key", "pending-1")
		return got.Code == http.StatusOK
	}, 30*time.Second, 10*time.Millisecond, "the retry gets the payment once it is stored")
	assert.Equal(t, "true", got.Header.Get("Idempotent-Replayed"), string(got.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")
}

// TestKeyOfAPaymentStoredMeanwhileIsNotTakenOver: a retry that finds no
// record for its key's claim, whose payment a background commit then
// stores before the retry decides, is not run again: it read, before
// looking the record up, that the payment was being stored. It read it
// after, found the commit ended, took the claim for abandoned (its lease
// long run out) and charged the payment a second time.
func TestKeyOfAPaymentStoredMeanwhileIsNotTakenOver(t *testing.T) {
	ts, limit := chargeNotStored(t, "pending-2")

	storing := func() bool {
		n := 0
		ts.committing.Range(func(any, any) bool { n++; return true })
		return n > 0
	}
	require.True(t, storing())
	var once sync.Once
	ts.recordLookedUp = func() {
		once.Do(func() {
			// Between the retry's lookup and its decision, the
			// background commit stores the record and ends.
			limit(-1)
			deadline := time.Now().Add(30 * time.Second)
			for storing() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			require.False(t, storing(), "the commit ends once the record fits")
		})
	}
	again := ts.pay(t, "cust_pending", 10, nil, "Idempotency-Key", "pending-2")
	assert.Equal(t, http.StatusConflict, again.Code, string(again.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")

	replay := ts.pay(t, "cust_pending", 10, nil, "Idempotency-Key", "pending-2")
	assert.Equal(t, http.StatusOK, replay.Code, string(replay.Raw))
	assert.Equal(t, "true", replay.Header.Get("Idempotent-Replayed"), string(replay.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")
}

// stallingState is a customer state whose first Reserve waits until
// release is closed: a payment that takes as long as the test wants.
type stallingState struct {
	CustomerState
	once    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *stallingState) Reserve(ctx context.Context, c, txn, cur string, minor int64, now time.Time, w time.Duration, at *Point) (Reservation, error) {
	if s.once.CompareAndSwap(false, true) {
		close(s.entered)
		<-s.release
	}
	return s.CustomerState.Reserve(ctx, c, txn, cur, minor, now, w, at)
}

// TestKeyOfAPaymentLongerThanTheLeaseIsNotTakenOver: -request-timeout
// lets a payment run for up to 5 minutes, longer than the 2-minute lease
// of an idempotency claim. A retry with the key while its payment is still
// running waits (409) instead of taking the claim over and charging the
// payment a second time.
func TestKeyOfAPaymentLongerThanTheLeaseIsNotTakenOver(t *testing.T) {
	cfg := testConfig(t)
	cfg.RequestTimeout = 5 * time.Minute
	state := &stallingState{CustomerState: NewMemoryState(0), entered: make(chan struct{}), release: make(chan struct{})}
	cfg.State = state
	ts := startService(t, cfg)

	first := make(chan reply, 1)
	go func() { first <- ts.pay(t, "cust_slow", 10, nil, "Idempotency-Key", "slow-1") }()
	<-state.entered
	ts.clock.Advance(inFlightLease + time.Minute) // the payment has run for 3 minutes
	again := ts.pay(t, "cust_slow", 10, nil, "Idempotency-Key", "slow-1")
	close(state.release)
	r := <-first
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, http.StatusConflict, again.Code, string(again.Raw))
	assert.Equal(t, "idempotency_in_flight", again.errField("code"), string(again.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")

	ts.clock.Advance(cfg.RequestTimeout)
	replay := ts.pay(t, "cust_slow", 10, nil, "Idempotency-Key", "slow-1")
	assert.Equal(t, string(r.Raw), string(replay.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")
}

// TestPendingWithoutAKeyDoesNotAskForARetry charges a payment sent without an
// Idempotency-Key whose record the payments bucket refuses: its 500
// outcome_pending points to GET /payment/{id} alone, as a retry without
// a key would charge it again.
func TestPendingWithoutAKeyDoesNotAskForARetry(t *testing.T) {
	cfg := testConfig(t)
	cfg.Idempotency = "memory"
	cfg.RequestTimeout = 3 * time.Second // a commit waits 1 s
	ts := startService(t, cfg)
	ctx := context.Background()
	bucket, err := ts.js.Stream(ctx, "KV_payments")
	require.NoError(t, err)
	c := bucket.CachedInfo().Config
	c.MaxMsgSize = 16 // no record fits
	_, err = ts.js.UpdateStream(ctx, c)
	require.NoError(t, err)

	r := ts.pay(t, "cust_pending", 10, nil)
	require.Equal(t, http.StatusInternalServerError, r.Code, string(r.Raw))
	require.Equal(t, "outcome_pending", r.errField("code"), string(r.Raw))
	msg := r.errField("message")
	assert.NotContains(t, msg, "retry", msg)
	assert.Contains(t, msg, "GET /payment/txn_", msg)
	assert.Contains(t, msg, "without an Idempotency-Key", msg)

	c.MaxMsgSize = -1 // the record is stored in the background
	_, err = ts.js.UpdateStream(ctx, c)
	require.NoError(t, err)
}

// A charge's confirmation stored again later — when its key is replayed,
// or by a commit retried in the background — says when the payment was
// charged, as its answer does, not when it was stored again: the ledger
// posts it at that time.
func TestConfirmationCarriesTheChargeTime(t *testing.T) {
	clock := newManualClock()
	s := &Service{cfg: Config{Clock: clock}}
	charged := clock.Now()
	b, err := json.Marshal(PaymentResponse{TransactionID: "txn_" + strings.Repeat("cd", 16), Status: StatusSuccess, Timestamp: charged})
	require.NoError(t, err)
	rec := storedPayment{Code: http.StatusOK, Status: StatusSuccess, Response: b}
	p := Payment{Amount: 9, Minor: 900, Currency: "USD", CustomerID: "c", MerchantID: "m"}

	clock.Advance(3 * time.Hour)
	m := s.confirmation(p, "txn_"+strings.Repeat("cd", 16), rec)
	assert.True(t, m.Payload.ChargedAt.Equal(charged), "charged at %v, not %v", charged, m.Payload.ChargedAt)
}

// TestReplayWhileConfirmationsAreFullGetsItsAnswer: a replay of a charge
// whose confirmation is still queued, unprocessed, gets the charge's stored
// answer while the confirmation queue is full — after the stream has
// forgotten the confirmation's ID, so that storing it again is refused as
// full, not taken as a duplicate. The answer was given once and is not
// refused now; the confirmation queued first still confirms the charge.
func TestReplayWhileConfirmationsAreFullGetsItsAnswer(t *testing.T) {
	cfg := testConfig(t)
	cfg.ConfirmMaxBytes = 1 << 20
	cfg.RequestTimeout = 3 * time.Second
	ts := startService(t, cfg)
	ts.stop() // the consumer: confirmations stay queued
	ts.consumer.Wait()
	ctx := context.Background()
	st, err := ts.js.Stream(ctx, confirmStream)
	require.NoError(t, err)
	c := st.CachedInfo().Config
	c.Duplicates = 100 * time.Millisecond // the default 2 minutes, shortened
	_, err = ts.js.UpdateStream(ctx, c)
	require.NoError(t, err)

	first := ts.pay(t, "cust_replay_full", 10, nil, "Idempotency-Key", "replay-full-1")
	require.Equal(t, http.StatusOK, first.Code, string(first.Raw))
	id := first.str("transaction_id")

	// Other charges' confirmations fill the queue; the last one sent
	// again is a duplicate until the stream forgets its ID, and the
	// charge's, sent before it, is forgotten by then too.
	fill, last := fillConfirmations(t, ts)
	require.Eventually(t, func() bool { return errors.Is(fill(last-1, 1), kanban.ErrFull) }, 30*time.Second, 20*time.Millisecond,
		"the stream forgets the IDs it stored")

	again := ts.pay(t, "cust_replay_full", 10, nil, "Idempotency-Key", "replay-full-1")
	require.Equal(t, http.StatusOK, again.Code, string(again.Raw))
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	assert.JSONEq(t, string(first.Raw), string(again.Raw), "the stored answer")

	// The confirmation queued first still confirms the charge.
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = ts.queue.Consume(cctx, ts.confirm, kanban.ConsumeOptions{WIP: 64}) })
	defer func() { cancel(); wg.Wait() }()
	require.Eventually(t, func() bool { return ts.confirmed(t, id) }, 30*time.Second, 20*time.Millisecond, "confirmed")
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")
}

// A key whose claim loses its compare-and-set every time — requests with
// it sent at once, claiming and releasing it in turn — is a client's
// doing, not an outage: the request gets 409 idempotency_in_flight with
// Retry-After, as when the key is held by another request, and the
// service logs no store as unavailable.
func TestIdempotencyContendedKeyIsInFlight(t *testing.T) {
	cfg := testConfig(t)
	ts := startService(t, cfg)
	idem, f := faultyNATSIdempotency(t, ts.clock.Now)
	f.create = func(context.Context, string, []byte) (uint64, error) { return 0, jetstream.ErrKeyExists }
	f.get = func(context.Context, string) (jetstream.KeyValueEntry, error) { return nil, jetstream.ErrKeyNotFound }
	ts.idem = idem

	r := ts.pay(t, "c1", 10, nil, "Idempotency-Key", "k-contended")
	require.Equal(t, http.StatusConflict, r.Code, string(r.Raw))
	assert.Equal(t, "idempotency_in_flight", r.errField("code"), string(r.Raw))
	assert.Equal(t, "1", r.Header.Get("Retry-After"))
	assert.Zero(t, ts.gateway.Calls(), "nothing charged")
	assert.NotContains(t, ts.logs.String(), "store unavailable", "a client's concurrent requests are no outage")
}

// A takeover refused whose lease could not be ended (the store out of
// reach for a moment) has it ended in the background once the store is
// back: the client's retry runs the payment under its transaction ID then,
// not only after the whole lease with 409s until it.
func TestIdempotencyTakeoverLeaseEndedAfterTheStoreIsBack(t *testing.T) {
	ts := startService(t, testConfig(t))
	ctx := context.Background()
	idem, f := faultyNATSIdempotency(t, ts.clock.Now)
	var updates atomic.Int32
	f.update = func(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
		if updates.Add(1) == 2 { // the takeover's Replace is the first
			return 0, errors.New("jetstream is down")
		}
		return f.KeyValue.Update(ctx, key, val, rev)
	}
	ts.idem = idem
	body := map[string]any{"amount": 7, "customer_id": "cust_tk2", "currency": "USD", "merchant_id": "m"}
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "cust_tk2", "currency": "USD", "merchant_id": "m"}`))
	require.NoError(t, err)
	earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_00000000000000000000000000000004", Owner: "test/earlier", Started: ts.clock.Now()}
	_, claimed, err := idem.Claim(ctx, "k-renew", earlier)
	require.NoError(t, err)
	require.True(t, claimed)

	ts.line.Stop("maintenance")
	refused := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-renew")
	require.Equal(t, http.StatusServiceUnavailable, refused.Code, string(refused.Raw))
	require.EqualValues(t, 2, updates.Load(), "the lease's end was tried")
	ts.line.Start()
	r := ts.retryWhileInFlight(t, body, "k-renew", "the key is free again, the clock standing still")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, earlier.TxnID, r.str("transaction_id"), "run again as the same payment")
}

// Replicas' clocks may disagree (by up to the minute a claim's lease
// keeps to spare): a takeover refused on one ends its lease for the others
// too, so the client's retry runs at once at any of them.
func TestIdempotencyTakeoverRefusedRunsAtOnceOnAReplicaWhoseClockIsBehind(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	replica := func(name string, clock *manualClock) *testService {
		cfg := testConfig(t)
		cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
		cfg.Instance = name
		cfg.Clock = clock
		return startService(t, cfg)
	}
	clockA, clockB := newManualClock(), newManualClock()
	clockB.Advance(-30 * time.Second)
	a, b := replica("a", clockA), replica("b", clockB)
	ctx := context.Background()
	body := map[string]any{"amount": 7, "customer_id": "cust_tk3", "currency": "USD", "merchant_id": "m"}
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "cust_tk3", "currency": "USD", "merchant_id": "m"}`))
	require.NoError(t, err)
	dead := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_00000000000000000000000000000005", Owner: "c/boot",
		Started: clockA.Now().Add(-10 * time.Minute)}
	_, claimed, err := a.idem.Claim(ctx, "k-skew", dead)
	require.NoError(t, err)
	require.True(t, claimed)

	a.line.Stop("maintenance")
	refused := a.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-skew")
	require.Equal(t, http.StatusServiceUnavailable, refused.Code, string(refused.Raw))
	r := b.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-skew")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, dead.TxnID, r.str("transaction_id"), "run again as the same payment")
}

// A claim stored though its acknowledgement was lost (a timeout; a write
// buffered while the connection was down and sent once it was back) is
// the request's, which answered 503: the key is freed in the background,
// so that the client's retry runs once the store answers, not only after
// the claim's whole lease with 409s until it.
func TestIdempotencyClaimWhoseAcknowledgementWasLostIsFreed(t *testing.T) {
	ts := startService(t, testConfig(t))
	idem, f := faultyNATSIdempotency(t, ts.clock.Now)
	var lost atomic.Bool
	lost.Store(true)
	f.create = func(ctx context.Context, key string, val []byte) (uint64, error) {
		rev, err := f.KeyValue.Create(ctx, key, val)
		if err == nil && lost.CompareAndSwap(true, false) {
			return 0, errors.New("nats: timeout")
		}
		return rev, err
	}
	ts.idem = idem
	body := map[string]any{"amount": 7, "customer_id": "cust_lost", "currency": "USD", "merchant_id": "m"}
	refused := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-lost")
	require.Equal(t, http.StatusServiceUnavailable, refused.Code, string(refused.Raw))
	require.False(t, lost.Load(), "the claim was stored")
	r := ts.retryWhileInFlight(t, body, "k-lost", "the key is free again, the clock standing still")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")
}

// So is a takeover stored though its acknowledgement was lost: its lease
// is ended in the background, and the retry takes the claim over and runs
// the payment under its transaction ID.
func TestIdempotencyTakeoverWhoseAcknowledgementWasLostIsFreed(t *testing.T) {
	ts := startService(t, testConfig(t))
	ctx := context.Background()
	idem, f := faultyNATSIdempotency(t, ts.clock.Now)
	var lost atomic.Bool
	lost.Store(true)
	f.update = func(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
		rev, err := f.KeyValue.Update(ctx, key, val, rev)
		if err == nil && lost.CompareAndSwap(true, false) {
			return 0, errors.New("nats: timeout")
		}
		return rev, err
	}
	ts.idem = idem
	body := map[string]any{"amount": 7, "customer_id": "cust_lost2", "currency": "USD", "merchant_id": "m"}
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "cust_lost2", "currency": "USD", "merchant_id": "m"}`))
	require.NoError(t, err)
	earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_00000000000000000000000000000006", Owner: "test/earlier", Started: ts.clock.Now()}
	_, claimed, err := idem.Claim(ctx, "k-lost2", earlier)
	require.NoError(t, err)
	require.True(t, claimed)

	refused := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-lost2")
	require.Equal(t, http.StatusServiceUnavailable, refused.Code, string(refused.Raw))
	require.False(t, lost.Load(), "the takeover was stored")
	r := ts.retryWhileInFlight(t, body, "k-lost2", "the key is free again, the clock standing still")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, earlier.TxnID, r.str("transaction_id"), "run again as the same payment")
}

// A replica takes a claim over once its lease has run out by its own
// clock, which may be ahead of this one's by up to the minute a claim's
// lease keeps to spare (claimLease). The claim of a payment being stored
// in the background (commitLater) is renewed at its attempts, which come
// up to a wait of 5 s and a try apart: between two of them the lease left
// never falls under that minute, or a replica whose clock is ahead would
// take the claim over and run the payment again while it is stored.
func TestClaimBeingStoredKeepsItsMinuteForClocksThatDisagree(t *testing.T) {
	ctx := context.Background()
	for _, timeout := range []time.Duration{3 * time.Second, 30 * time.Second, 5 * time.Minute} {
		t.Run(timeout.String(), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Idempotency = "memory"
			cfg.RequestTimeout = timeout
			ts := startService(t, cfg)
			now := ts.clock.Now()
			e := IdemEntry{Fingerprint: "f", TxnID: "txn_00000000000000000000000000000007", Owner: ts.owner, Started: now,
				Until: now.Add(claimLease(timeout))}
			_, claimed, err := ts.idem.Claim(ctx, "k-skew-store", e)
			require.NoError(t, err)
			require.True(t, claimed)
			// The request's whole deadline is spent: the background
			// commit begins.
			ts.clock.Advance(timeout)
			gap := 5*time.Second + ts.commitTimeout()
			for i := range 100 {
				e = ts.renewClaim(ctx, "k-skew-store", e)
				ts.clock.Advance(gap)
				require.GreaterOrEqual(t, e.leaseEnd().Sub(ts.clock.Now()), time.Minute, "before attempt %d", i+2)
			}
		})
	}
}

// A renewal of the claim of a payment being stored is a write, and its
// acknowledgement may be lost though it landed (the store is out of reach
// often enough while a commit is retried): the claim is still the
// payment's, and the renewals after it keep its lease, or another replica
// would take it over once the lease that landed ran out and charge the
// payment again while it is stored.
func TestClaimBeingStoredIsRenewedAfterARenewalWhoseAcknowledgementWasLost(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.RequestTimeout = 3 * time.Second
	ts := startService(t, cfg)
	idem, f := faultyNATSIdempotency(t, ts.clock.Now)
	ts.idem = idem
	now := ts.clock.Now()
	e := IdemEntry{Fingerprint: "f", TxnID: "txn_00000000000000000000000000000008", Owner: ts.owner, Started: now,
		Until: now.Add(claimLease(cfg.RequestTimeout))}
	_, claimed, err := idem.Claim(ctx, "k-lost-renewal", e)
	require.NoError(t, err)
	require.True(t, claimed)
	var lost atomic.Bool
	lost.Store(true)
	f.update = func(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
		rev, err := f.KeyValue.Update(ctx, key, val, rev)
		if err == nil && lost.CompareAndSwap(true, false) {
			return 0, errors.New("nats: timeout")
		}
		return rev, err
	}
	ts.clock.Advance(cfg.RequestTimeout)
	gap := 5*time.Second + ts.commitTimeout()
	for i := range 60 {
		e = ts.renewClaim(ctx, "k-lost-renewal", e)
		ts.clock.Advance(gap)
		stored, claimed, err := idem.Claim(ctx, "k-lost-renewal", claimOf("txn_other", ts.clock.Now()))
		require.NoError(t, err)
		require.False(t, claimed)
		require.GreaterOrEqual(t, stored.leaseEnd().Sub(ts.clock.Now()), time.Minute, "before attempt %d", i+2)
	}
	assert.False(t, lost.Load(), "a renewal's acknowledgement was lost")
}

// stallingIdem is an idempotency store whose next Release or Renew, once
// armed, stalls until its context ends, as a NATS that takes writes and
// never answers does, and records the context's deadline. A call without
// a deadline fails at once instead of stalling for good.
type stallingIdem struct {
	IdempotencyStore
	t         *testing.T
	armed     atomic.Bool
	deadlines chan time.Time
}

func (s *stallingIdem) stall(ctx context.Context) error {
	d, ok := ctx.Deadline()
	if !ok {
		s.t.Error("a call without a deadline: a store that stalls holds the answer past its write deadline")
		return errors.New("stalled")
	}
	s.deadlines <- d
	<-ctx.Done()
	return ctx.Err()
}

func (s *stallingIdem) Release(ctx context.Context, key string, e IdemEntry) error {
	if s.armed.CompareAndSwap(true, false) {
		return s.stall(ctx)
	}
	return s.IdempotencyStore.Release(ctx, key, e)
}

func (s *stallingIdem) Renew(ctx context.Context, key string, e IdemEntry, until time.Time) (IdemEntry, bool, error) {
	if s.armed.CompareAndSwap(true, false) {
		return e, false, s.stall(ctx)
	}
	return s.IdempotencyStore.Renew(ctx, key, e, until)
}

// The key of an answer that decided nothing (here 503, the line stopped)
// is freed before the answer is written: a release, or the end of a
// takeover's lease. With the store stalling, that call ends in time for
// the answer to meet its write deadline (the request's deadline and
// writeSlack), and the key is freed in the background after it.
func TestIdempotencyFreeThatStallsKeepsTheAnswerInItsWriteDeadline(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		t.Run(fmt.Sprintf("takeover=%v", takeover), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.RequestTimeout = 3 * time.Second
			ts := startService(t, cfg)
			st := &stallingIdem{IdempotencyStore: ts.idem, t: t, deadlines: make(chan time.Time, 1)}
			ts.idem = st
			ctx := context.Background()
			body := map[string]any{"amount": 7, "customer_id": "cust_stall", "currency": "USD", "merchant_id": "m"}
			p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "cust_stall", "currency": "USD", "merchant_id": "m"}`))
			require.NoError(t, err)
			earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_00000000000000000000000000000009", Owner: "test/earlier", Started: ts.clock.Now()}
			if takeover {
				_, claimed, err := st.Claim(ctx, "k-stall", earlier)
				require.NoError(t, err)
				require.True(t, claimed)
			}
			ts.line.Stop("maintenance")
			st.armed.Store(true)
			sent := time.Now()
			refused := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-stall")
			require.Equal(t, http.StatusServiceUnavailable, refused.Code, string(refused.Raw))
			require.False(t, st.armed.Load(), "the store stalled")
			select {
			case d := <-st.deadlines:
				assert.True(t, d.Before(sent.Add(cfg.RequestTimeout+writeSlack)), "the free ends before the answer's write deadline")
			default:
				t.Fatal("no call stalled")
			}
			ts.line.Start()
			r := ts.retryWhileInFlight(t, body, "k-stall", "the key is freed in the background, the clock standing still")
			require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
			if takeover {
				assert.Equal(t, earlier.TxnID, r.str("transaction_id"), "run again as the same payment")
			}
		})
	}
}

// downIdem is an idempotency store out of reach while down is set: every
// call fails, and writes land nowhere.
type downIdem struct {
	IdempotencyStore
	down atomic.Bool
}

var errIdemDown = errors.New("nats: timeout")

func (s *downIdem) Claim(ctx context.Context, key string, e IdemEntry) (IdemEntry, bool, error) {
	if s.down.Load() {
		return IdemEntry{}, false, errIdemDown
	}
	return s.IdempotencyStore.Claim(ctx, key, e)
}

func (s *downIdem) Release(ctx context.Context, key string, e IdemEntry) error {
	if s.down.Load() {
		return errIdemDown
	}
	return s.IdempotencyStore.Release(ctx, key, e)
}

// The keys freed in the background during an outage of the store are
// bounded (maxFrees): beyond, a key is left to its claim's lease, counted
// and logged. Freed keys make room again, and Close ends the frees still
// retrying.
func TestIdempotencyBackgroundFreesAreBounded(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // after the service's Close
	ts := startService(t, testConfig(t))
	ts.maxFrees = 2
	st := &downIdem{IdempotencyStore: ts.idem}
	st.down.Store(true)
	ts.idem = st
	running := func() int {
		ts.freeMu.Lock()
		defer ts.freeMu.Unlock()
		return ts.freeing
	}
	pay := func(key string) {
		t.Helper()
		r := ts.pay(t, "cust_bound", 7, nil, "Idempotency-Key", key)
		require.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
	}
	pay("k-bound-1")
	pay("k-bound-2")
	require.Equal(t, 2, running())
	pay("k-bound-3")
	assert.Equal(t, 2, running(), "no third")
	assert.EqualValues(t, 1, testutil.ToFloat64(ts.freesDropped))
	assert.Contains(t, ts.logs.String(), "it is free again when its claim's lease runs out")

	st.down.Store(false)
	require.Eventually(t, func() bool { return running() == 0 }, 10*time.Second, 10*time.Millisecond, "freed once the store is back")
	st.down.Store(true)
	pay("k-bound-4")
	pay("k-bound-5")
	assert.Equal(t, 2, running(), "room again")
	assert.EqualValues(t, 1, testutil.ToFloat64(ts.freesDropped))
	// Left retrying: the service's Close ends them.
}

// A takeover is told apart from the claim it took over by its start alone
// when this process made both (same owner, same transaction ID), and a
// clock may read the same twice (this test's stands still). The end of a
// takeover's lease whose acknowledgement was lost is retried in the
// background; a retry that took the key over meanwhile runs its payment
// under a claim of its own, whose lease that retry leaves alone: ended,
// it would let a third request run the payment again while it runs.
func TestIdempotencyLeaseEndRetriedLeavesTheRetrysTakeoverAlone(t *testing.T) {
	ts := startService(t, testConfig(t))
	ctx := context.Background()
	idem, f := faultyNATSIdempotency(t, ts.clock.Now)
	landed, proceed := make(chan struct{}), make(chan struct{})
	var updates atomic.Int32
	f.update = func(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
		rev, err := f.KeyValue.Update(ctx, key, val, rev)
		if updates.Add(1) == 2 && err == nil { // the takeover's Replace is the first, the end of its lease the second
			close(landed)
			<-proceed
			return 0, errors.New("nats: timeout")
		}
		return rev, err
	}
	ts.idem = idem
	body := map[string]any{"amount": 7, "customer_id": "cust_same", "currency": "USD", "merchant_id": "m"}
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "cust_same", "currency": "USD", "merchant_id": "m"}`))
	require.NoError(t, err)
	earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_0000000000000000000000000000000a", Owner: "test/earlier", Started: ts.clock.Now()}
	_, claimed, err := idem.Claim(ctx, "k-same", earlier)
	require.NoError(t, err)
	require.True(t, claimed)

	ts.line.Stop("maintenance")
	refused := make(chan reply, 1)
	go func() { refused <- ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-same") }()
	<-landed
	ts.line.Start()
	r := ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", "k-same")
	close(proceed)
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, earlier.TxnID, r.str("transaction_id"))
	require.Equal(t, http.StatusServiceUnavailable, (<-refused).Code)
	require.Eventually(t, func() bool {
		ts.freeMu.Lock()
		defer ts.freeMu.Unlock()
		return ts.freeing == 0
	}, 10*time.Second, 10*time.Millisecond, "the lease's end retried")
	stored, claimed, err := idem.Claim(ctx, "k-same", claimOf("txn_other", ts.clock.Now()))
	require.NoError(t, err)
	require.False(t, claimed)
	assert.True(t, stored.leaseEnd().After(ts.clock.Now()), "the retry's claim keeps its lease: %+v", stored)
}

// retryWhileInFlight re-sends body with the Idempotency-Key key while the
// service answers 409 (in flight), for up to 10 s, and returns the first
// other answer; why names what the wait is for, if it fails.
func (ts *testService) retryWhileInFlight(t *testing.T, body any, key, why string) reply {
	t.Helper()
	var r reply
	require.Eventually(t, func() bool {
		r = ts.do(t, http.MethodPost, "/payment", body, "Idempotency-Key", key)
		return r.Code != http.StatusConflict
	}, 10*time.Second, 20*time.Millisecond, why)
	return r
}

// A payment whose process died after the fraud lookup's Reserve (the
// attempt counted, the day's spend held, perhaps charged) is run again by
// a takeover under its transaction ID: judged as its first run was, it is
// not refused as the customer's sixth attempt in the minute — the money
// may have moved — and its spend is held once.
func TestTakeoverRerunIsNotCountedTwice(t *testing.T) {
	forEachRuleSet(t, testTakeoverRerunIsNotCountedTwice)
}

// forEachRuleSet runs test with the service's CEL rules and with its Go
// rules, which judge a payment through the customer state alike.
func forEachRuleSet(t *testing.T, test func(t *testing.T, rules string)) {
	for _, rules := range []string{fraudRulesEmbedded, fraudRulesGo} {
		t.Run(rules, func(t *testing.T) { test(t, rules) })
	}
}

func testTakeoverRerunIsNotCountedTwice(t *testing.T, rules string) {
	cfg := testConfig(t)
	cfg.FraudRules = rules
	ts := startService(t, cfg)
	ctx := context.Background()
	const customer = "cust_rerun"
	for range 4 {
		r := ts.pay(t, customer, 7, nil)
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
		ts.clock.Advance(12 * time.Second) // within the per-customer limit
	}
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "` + customer + `", "currency": "USD", "merchant_id": "merc_456"}`))
	require.NoError(t, err)
	// The fifth payment's first run, by an earlier run of this instance:
	// its claim, and its lookup's Reserve; then it died.
	earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_" + strings.Repeat("5e", 16), Owner: "test/earlier",
		Started: ts.clock.Now(), Until: ts.clock.Now().Add(inFlightLease)}
	_, claimed, err := ts.idem.Claim(ctx, "k-rerun", earlier)
	require.NoError(t, err)
	require.True(t, claimed)
	first, err := ts.state.Reserve(ctx, customer, earlier.TxnID, "USD", p.Minor, ts.clock.Now(), time.Minute, nil)
	require.NoError(t, err)
	require.Equal(t, 5, first.Attempts, "at the limit, allowed")

	ts.clock.Advance(time.Second)
	r := ts.pay(t, customer, 7, nil, "Idempotency-Key", "k-rerun")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, earlier.TxnID, r.str("transaction_id"), "run again as the same payment")
	assert.Equal(t, StatusSuccess, r.str("status"), string(r.Raw))
	spent, err := ts.state.Spent(ctx, customer, "USD", ts.clock.Now())
	require.NoError(t, err)
	assert.EqualValues(t, 5*p.Minor, spent, "five payments held, the rerun once")
}

// A payment stored in the background for over a day (its record refused
// all that time) keeps its key: the retry that comes then waits for it
// (409), where it claimed the key anew, as a day-old claim, and charged
// the payment a second time under another transaction ID.
func TestKeyOfAPaymentStoredForOverADayIsNotClaimedAnew(t *testing.T) {
	ts, limit := chargeNotStored(t, "pending-day")
	ts.clock.Advance(idempotencyTTL)
	idem := ts.idem.(*MemoryIdempotency)
	require.Eventually(t, func() bool {
		idem.mu.Lock()
		defer idem.mu.Unlock()
		return idem.entries["pending-day"].leaseEnd().After(ts.clock.Now().Add(time.Minute))
	}, 30*time.Second, 10*time.Millisecond, "the claim is renewed as the commit is retried")
	again := ts.pay(t, "cust_pending", 10, nil, "Idempotency-Key", "pending-day")
	assert.Equal(t, http.StatusConflict, again.Code, string(again.Raw))
	assert.Equal(t, "idempotency_in_flight", again.errField("code"), string(again.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")
	limit(-1)
}

// A takeover rerun that charges nothing (the gateway declines it now)
// leaves the hold of its first run in place: that run's process died
// with the money perhaps moved, and a hold whose payment may have moved
// money stays until the day ends. The retry that then charges keeps the
// same hold: the spend is held once, never given back under a charge.
func TestTakeoverRerunNotChargedKeepsTheFirstRunsHold(t *testing.T) {
	forEachRuleSet(t, testTakeoverRerunNotChargedKeepsTheFirstRunsHold)
}

func testTakeoverRerunNotChargedKeepsTheFirstRunsHold(t *testing.T, rules string) {
	cfg := testConfig(t)
	cfg.FraudRules = rules
	ts := startService(t, cfg)
	ctx := context.Background()
	const customer = "cust_rerun_kept"
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "` + customer + `", "currency": "USD", "merchant_id": "merc_456"}`))
	require.NoError(t, err)
	earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_" + strings.Repeat("6f", 16), Owner: "test/earlier",
		Started: ts.clock.Now(), Until: ts.clock.Now().Add(inFlightLease)}
	_, claimed, err := ts.idem.Claim(ctx, "k-rerun-kept", earlier)
	require.NoError(t, err)
	require.True(t, claimed)
	_, err = ts.state.Reserve(ctx, customer, earlier.TxnID, "USD", p.Minor, ts.clock.Now(), time.Minute, nil)
	require.NoError(t, err)
	spent := func() int64 {
		t.Helper()
		v, err := ts.state.Spent(ctx, customer, "USD", ts.clock.Now())
		require.NoError(t, err)
		return v
	}

	ts.clock.Advance(time.Second)
	require.NoError(t, ts.gateway.Set(1, 0))
	r := ts.pay(t, customer, 7, nil, "Idempotency-Key", "k-rerun-kept")
	require.Equal(t, http.StatusBadGateway, r.Code, string(r.Raw))
	assert.EqualValues(t, p.Minor, spent(), "the first run's hold is kept: its money may have moved")

	require.NoError(t, ts.gateway.Set(0, 0))
	ts.clock.Advance(time.Second)
	r = ts.pay(t, customer, 7, nil, "Idempotency-Key", "k-rerun-kept")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, earlier.TxnID, r.str("transaction_id"))
	assert.EqualValues(t, p.Minor, spent(), "held once")
}

// The confirmations of replayed charges stored again in the background
// while the queue is full are bounded, as the keys freed there are: a
// flood of replays during a long outage starts no more than maxRepublishes
// retries, each of which the service's Close ends.
func TestReplayRepublishesAreBounded(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // after the service's Close
	cfg := testConfig(t)
	cfg.ConfirmMaxBytes = 1 << 20
	ts := startService(t, cfg)
	ts.stop() // the consumer: confirmations stay queued
	ts.consumer.Wait()
	ts.maxRepublishes = 2
	ctx := context.Background()
	fillConfirmations(t, ts)
	running := func() int {
		n := 0
		ts.republishing.Range(func(any, any) bool { n++; return true })
		return n
	}
	for i := range 3 {
		id := "txn_" + tai.NewID()
		ts.confirmAgain(ctx, kanban.Message[Confirmation]{ID: id, Key: "cust_bound",
			Payload: Confirmation{TransactionID: id, CustomerID: "cust_bound", Payment: storedPayment{Status: StatusSuccess}}})
		assert.Equal(t, min(i+1, 2), running(), "replay %d", i+1)
	}
	assert.Contains(t, ts.logs.String(), "not stored again in the background")
	// Left retrying: the service's Close ends them.
}

// fillConfirmations fills the stopped consumer's confirmation queue with
// other charges' confirmations, large ones first, until it refuses even
// the smallest; it returns the function that sends the i-th of size
// bytes and the index of the one refused.
func fillConfirmations(t *testing.T, ts *testService) (fill func(i, size int) error, last int) {
	t.Helper()
	fill = func(i, size int) error {
		id := fmt.Sprintf("txn_fill_%d", i)
		return ts.queue.TryPublish(context.Background(), kanban.Message[Confirmation]{ID: id, Key: "cust_fill",
			Payload: Confirmation{TransactionID: id, CustomerID: "cust_fill", Payment: storedPayment{Status: strings.Repeat("x", size)}}})
	}
	for _, size := range []int{32 << 10, 1 << 10, 1} {
		for ; ; last++ {
			err := fill(last, size)
			if errors.Is(err, kanban.ErrFull) {
				break
			}
			require.NoError(t, err)
			require.Less(t, last, 2000, "the queue never filled")
		}
	}
	return fill, last
}

// unansweredReserveState is a customer state whose Reserve, while lose is
// set, is stored but answers with an error: its acknowledgement lost (a
// timeout, a connection cut after the write).
type unansweredReserveState struct {
	CustomerState
	lose atomic.Bool
}

func (s *unansweredReserveState) Reserve(ctx context.Context, c, txn, cur string, minor int64, now time.Time, w time.Duration, at *Point) (Reservation, error) {
	res, err := s.CustomerState.Reserve(ctx, c, txn, cur, minor, now, w, at)
	if err == nil && s.lose.Load() {
		return Reservation{}, errStateDown
	}
	return res, err
}

// A Reserve stored though its answer was lost failed the payment (the
// fraud check could not run, nothing charged): its hold on the day's
// spend is given back, as any payment's that was not charged. Left in
// place it held the amount for the whole day, and the client's retry,
// under a transaction of its own, held it a second time: a customer
// paying 3,000 of a 5,000 daily limit was judged as paying 6,000.
func TestUnansweredReserveIsGivenBack(t *testing.T) {
	cfg := testConfig(t)
	state := &unansweredReserveState{CustomerState: NewMemoryState(0)}
	cfg.State = state
	ts := startService(t, cfg)
	spent := func() int64 {
		t.Helper()
		n, err := state.Spent(context.Background(), "cust_lost", "USD", ts.clock.Now())
		require.NoError(t, err)
		return n
	}

	state.lose.Store(true)
	r := ts.pay(t, "cust_lost", 3000, nil, "Idempotency-Key", "k-lost")
	state.lose.Store(false)
	require.Equal(t, http.StatusBadGateway, r.Code, string(r.Raw))
	assert.Equal(t, "fraud check unavailable", r.errField("message"))
	assert.Zero(t, spent(), "the hold of a payment not charged is given back")

	again := ts.pay(t, "cust_lost", 3000, nil, "Idempotency-Key", "k-lost")
	require.Equal(t, http.StatusOK, again.Code, string(again.Raw))
	assert.Equal(t, StatusSuccess, again.str("status"))
	assert.EqualValues(t, 300000, spent(), "held once, by the charge")
}

// A takeover's Reserve whose answer was lost may be the earlier run's
// Reserve returned again (its payment died after it, the money perhaps
// moved): the hold, the earlier run's, stays.
func TestUnansweredReserveOfATakeoverKeepsTheEarlierHold(t *testing.T) {
	cfg := testConfig(t)
	state := &unansweredReserveState{CustomerState: NewMemoryState(0)}
	cfg.State = state
	ts := startService(t, cfg)
	ctx := context.Background()
	p, err := parsePayment([]byte(`{"amount": 7, "customer_id": "cust_tk_lost", "currency": "USD", "merchant_id": "merc_456"}`))
	require.NoError(t, err)
	earlier := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_" + strings.Repeat("7a", 16), Owner: "test/earlier",
		Started: ts.clock.Now(), Until: ts.clock.Now().Add(inFlightLease)}
	_, claimed, err := ts.idem.Claim(ctx, "k-tk-lost", earlier)
	require.NoError(t, err)
	require.True(t, claimed)
	_, err = state.Reserve(ctx, "cust_tk_lost", earlier.TxnID, "USD", p.Minor, ts.clock.Now(), time.Minute, nil)
	require.NoError(t, err)

	state.lose.Store(true)
	r := ts.pay(t, "cust_tk_lost", 7, nil, "Idempotency-Key", "k-tk-lost")
	state.lose.Store(false)
	require.Equal(t, http.StatusBadGateway, r.Code, string(r.Raw))
	spent, err := state.Spent(ctx, "cust_tk_lost", "USD", ts.clock.Now())
	require.NoError(t, err)
	assert.EqualValues(t, p.Minor, spent, "the earlier run's hold stays")
}

// retriedReserveState is a customer state whose Reserve, while retried is
// set, is sent twice, as a client library sends a command again after a
// connection dropped before its reply (go-redis retries so): the first
// is stored, and the second answers as a repeat of it (Again).
type retriedReserveState struct {
	CustomerState
	retried atomic.Bool
}

func (s *retriedReserveState) Reserve(ctx context.Context, c, txn, cur string, minor int64, now time.Time, w time.Duration, at *Point) (Reservation, error) {
	if s.retried.Load() {
		if _, err := s.CustomerState.Reserve(ctx, c, txn, cur, minor, now, w, at); err != nil {
			return Reservation{}, err
		}
	}
	return s.CustomerState.Reserve(ctx, c, txn, cur, minor, now, w, at)
}

// A payment's own Reserve answered as a repeat (sent again after its
// reply was lost) is still this payment's: its transaction ID is new, so
// no earlier run took the hold, and a payment not charged gives it
// back. Taken for an earlier run's, a blocked payment's hold stayed the
// whole day.
func TestRepeatedReserveOfANewPaymentIsGivenBack(t *testing.T) {
	cfg := testConfig(t)
	state := &retriedReserveState{CustomerState: NewMemoryState(0)}
	cfg.State = state
	ts := startService(t, cfg)
	state.retried.Store(true)
	for _, key := range []string{"", "k-repeat"} {
		customer := "cust_repeat" + key
		var r reply
		if key == "" {
			r = ts.pay(t, customer, 30000, nil)
		} else {
			r = ts.pay(t, customer, 30000, nil, "Idempotency-Key", key)
		}
		require.Equal(t, http.StatusPaymentRequired, r.Code, string(r.Raw))
		spent, err := state.Spent(context.Background(), customer, "USD", ts.clock.Now())
		require.NoError(t, err)
		assert.Zero(t, spent, "the hold of a blocked payment is given back (key %q)", key)
	}
}
