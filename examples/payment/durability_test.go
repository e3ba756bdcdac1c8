package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
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

// fillRecords stores unconfirmed charges in the payments bucket until it
// takes not even a small one more.
func fillRecords(t *testing.T, ts *testService) {
	t.Helper()
	ctx := context.Background()
	for _, size := range []int{100 << 10, 10 << 10, 1 << 10, 64} {
		for {
			id := "txn_" + tai.NewID()
			b, err := json.Marshal(PaymentResponse{TransactionID: id, Status: StatusSuccess, Reasons: []string{strings.Repeat("x", size)}})
			require.NoError(t, err)
			_, err = ts.records.Create(ctx, id, storedPayment{Code: http.StatusOK, Status: StatusSuccess, Response: b})
			if errors.Is(err, ErrStoreFull) {
				break
			}
			require.NoError(t, err)
		}
	}
}

// overrunCharge charges a payment whose record the payments bucket
// refuses as full: another replica's payments filled it after this one
// last read its level. It returns the payment's transaction ID, answered
// 500 outcome_pending, and a function that gives the bucket room.
func overrunCharge(t *testing.T) (ts *testService, id string, makeRoom func()) {
	t.Helper()
	cfg := testConfig(t)
	cfg.PaymentsMaxBytes = 1 << 20
	cfg.RequestTimeout = 3 * time.Second // a commit waits 1 s
	ts = startService(t, cfg)
	ctx := context.Background()
	// The level as it was read before the others' payments: not read again.
	require.NoError(t, ts.levels.refresh(ctx))
	ts.levels.checked.Store(math.MaxInt64 / 2)
	fillRecords(t, ts)

	r := ts.pay(t, "cust_overrun", 10, nil, "Idempotency-Key", "overrun-1")
	require.Equal(t, http.StatusInternalServerError, r.Code, string(r.Raw))
	require.Equal(t, "outcome_pending", r.errField("code"), string(r.Raw))
	details, _ := r.Body["error"].(map[string]any)["details"].(map[string]any)
	id, _ = details["transaction_id"].(string)
	require.NotEmpty(t, id, string(r.Raw))
	return ts, id, func() {
		bucket, err := ts.js.Stream(ctx, "KV_payments")
		require.NoError(t, err)
		c := bucket.CachedInfo().Config
		c.MaxBytes = 4 << 20
		_, err = ts.js.UpdateStream(ctx, c)
		require.NoError(t, err)
	}
}

// TestChargeRefusedByAFullStoreIsCounted: a charge whose record the
// payments bucket refuses as full is counted in
// payment_store_refused_total, and stored and confirmed, charged once, as
// soon as the bucket has room.
func TestChargeRefusedByAFullStoreIsCounted(t *testing.T) {
	ts, id, makeRoom := overrunCharge(t)
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.storeRefused.WithLabelValues("payments")), "the refused record is counted")
	assert.Zero(t, testutil.ToFloat64(ts.storeRefused.WithLabelValues("confirmations")), "the confirmation was stored")
	makeRoom()
	require.Eventually(t, func() bool { return ts.confirmed(t, id) }, 30*time.Second, 20*time.Millisecond,
		"stored and confirmed once the bucket has room")
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged once")
}

// TestPaymentBeingStoredIsNotNotFound: GET /payment/{id} of a charge whose
// record is still being stored in the background says so (503
// outcome_pending, with Retry-After), not 404 as if there were no such
// payment; once stored, it is found.
func TestPaymentBeingStoredIsNotNotFound(t *testing.T) {
	ts, id, makeRoom := overrunCharge(t)
	got := ts.do(t, http.MethodGet, "/payment/"+id, nil)
	assert.Equal(t, http.StatusServiceUnavailable, got.Code, string(got.Raw))
	assert.Equal(t, "outcome_pending", got.errField("code"), string(got.Raw))
	assert.Equal(t, "5", got.Header.Get("Retry-After"))
	makeRoom()
	require.Eventually(t, func() bool {
		return ts.do(t, http.MethodGet, "/payment/"+id, nil).Code == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "found once stored")
	assert.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/payment/txn_"+tai.NewID(), nil).Code, "no such payment")
}

// TestFullStoresNamesEachStore: a commit's error joins its record's and
// its confirmation's; each store that refused a write as full is named
// once, and a store that failed otherwise is not.
func TestFullStoresNamesEachStore(t *testing.T) {
	full := &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}
	down := errors.New("nats: timeout")
	assert.Equal(t, []string{"payments", "confirmations"},
		fullStores(errors.Join(storeError("payments", full), storeError("confirmations", full))))
	assert.Equal(t, []string{"confirmations"}, fullStores(errors.Join(storeError("payments", down), storeError("confirmations", full))))
	assert.Empty(t, fullStores(storeError("payments", down)))
	assert.Empty(t, fullStores(nil))
	assert.ErrorIs(t, storeError("payments", full), ErrStoreFull)
}

// TestChargesAdmittedWhileConfirmingLagsAreConfirmed: while the
// confirmation consumer is behind, payments are charged until the storage
// gate finds the payments bucket full. Every one of them is confirmed
// once the consumer catches up: none is dead-lettered for want of room
// for its mark.
func TestChargesAdmittedWhileConfirmingLagsAreConfirmed(t *testing.T) {
	if testing.Short() {
		t.Skip("thousands of payments")
	}
	cfg := testConfig(t)
	cfg.PaymentsMaxBytes = 2 << 20
	ts := startService(t, cfg)
	ts.clock.Advance(1234567891 * time.Nanosecond) // confirmed_at as long as a real one
	ts.stop()
	ts.consumer.Wait()

	var charged []string
	for i := 0; ; i++ {
		r := ts.pay(t, fmt.Sprintf("lag_%d", i), 1, nil)
		if r.Code == http.StatusServiceUnavailable {
			require.Equal(t, "store_full", r.errField("code"), string(r.Raw))
			break
		}
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
		charged = append(charged, r.str("transaction_id"))
	}
	require.Greater(t, len(charged), 500)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = ts.queue.Consume(ctx, ts.confirm, kanban.ConsumeOptions{WIP: 64, MaxAttempts: 2,
			Backoff: kanban.Exponential{Initial: time.Millisecond, Max: time.Millisecond}})
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, func() bool {
		b, err := ts.queue.Backlog(context.Background())
		require.NoError(t, err)
		return b.Depth == 0
	}, 60*time.Second, 50*time.Millisecond, "the consumer caught up")
	dead, err := ts.queue.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Empty(t, dead, "no confirmation dead-lettered")
	unconfirmed := 0
	for _, id := range charged {
		p, _, err := ts.records.Get(context.Background(), id)
		require.NoError(t, err)
		if p.ConfirmedAt == nil {
			unconfirmed++
		}
	}
	assert.Zero(t, unconfirmed, "of %d charges", len(charged))
}

// TestDeadLetteredConfirmationIsRedriven: a charge whose confirmation was
// dead-lettered (the ledger refused it) shows unconfirmed, and a redrive
// through the admin API confirms it and empties the dead letters.
func TestDeadLetteredConfirmationIsRedriven(t *testing.T) {
	const admin = "admin-token-0123456789"
	cfg := testConfig(t)
	cfg.AdminToken = svc.NewSecret(admin)
	ts := startService(t, cfg)
	ts.stop()
	ts.consumer.Wait()
	r := ts.pay(t, "cust_dl", 10, nil)
	require.Equal(t, http.StatusOK, r.Code)
	id := r.str("transaction_id")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = ts.queue.Consume(ctx, func(context.Context, kanban.Delivery[Confirmation]) error {
			return kanban.Permanent(errors.New("ledger down"))
		}, kanban.ConsumeOptions{WIP: 1})
	})
	require.Eventually(t, func() bool {
		d, err := ts.queue.DeadLetters(context.Background())
		return err == nil && len(d) == 1
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	wg.Wait()
	got := ts.do(t, http.MethodGet, "/payment/"+id, nil)
	require.Equal(t, http.StatusOK, got.Code, string(got.Raw))
	assert.Equal(t, false, got.Body["confirmed"], "dead-lettered: not confirmed")

	ctx2, cancel2 := context.WithCancel(context.Background())
	wg.Go(func() {
		_ = ts.queue.Consume(ctx2, ts.confirm, kanban.ConsumeOptions{WIP: 4})
	})
	defer func() { cancel2(); wg.Wait() }()
	rr := ts.do(t, http.MethodPost, "/admin/queues/confirmations/deadletters/redrive", `{"all":true}`, "Authorization", "Bearer "+admin)
	require.Equal(t, http.StatusOK, rr.Code, string(rr.Raw))
	require.Eventually(t, func() bool { return ts.confirmed(t, id) }, 10*time.Second, 10*time.Millisecond)
	d, err := ts.queue.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Empty(t, d)
}
