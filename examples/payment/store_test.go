package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/tai"
)

// startJS runs an in-process NATS server with JetStream under the test's
// temp dir and returns a JetStream context on it.
func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: t.TempDir(), InProcess: true})
	require.NoError(t, err)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(func() {
		nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	})
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func storedOf(t *testing.T, id, status string, code int) storedPayment {
	t.Helper()
	b, err := json.Marshal(PaymentResponse{TransactionID: id, Status: status, Amount: 12.5, Currency: "USD", Reasons: []string{"ok"}})
	require.NoError(t, err)
	return storedPayment{Code: code, Status: status, Response: b}
}

func newRecords(t *testing.T, o RecordOptions) *PaymentRecords {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := NewPaymentRecords(ctx, []jetstream.JetStream{startJS(t)}, o)
	require.NoError(t, err)
	return r
}

// twoReplicas returns the payments bucket of one JetStream as two
// replicas see it: two PaymentRecords, each remembering the charges it
// stored.
func twoReplicas(t *testing.T) (here, there *PaymentRecords) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := startJS(t)
	here, err := NewPaymentRecords(ctx, []jetstream.JetStream{js}, RecordOptions{})
	require.NoError(t, err)
	there, err = NewPaymentRecords(ctx, []jetstream.JetStream{js}, RecordOptions{})
	require.NoError(t, err)
	return here, there
}

func TestPaymentRecordsCreateAndGet(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	id := "txn_" + tai.NewID()
	first := storedOf(t, id, StatusSuccess, 200)
	got, err := r.Create(ctx, id, first)
	require.NoError(t, err)
	assert.Equal(t, first, got)

	p, ok, err := r.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, ok)
	rec, err := p.record()
	require.NoError(t, err)
	assert.Equal(t, id, rec.TransactionID)
	assert.Equal(t, 12.5, rec.Amount)
	assert.False(t, rec.Confirmed)
	assert.Nil(t, rec.ConfirmedAt)

	// A second create (a retried commit) returns what stands: the first.
	got, err = r.Create(ctx, id, storedOf(t, id, StatusFraudBlocked, 402))
	require.NoError(t, err)
	assert.Equal(t, StatusSuccess, got.Status)
	assert.Equal(t, 200, got.Code)
}

// A charge is confirmed once. Stored by this process, it is confirmed,
// when its confirmation is consumed here, by a compare-and-set at the
// revision it was stored at: without reading it first.
func TestPaymentRecordsConfirmOnce(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	counted := &countingKV{KeyValue: r.kv.kvs[0]}
	r.kv.kvs = []jetstream.KeyValue{counted}
	at := time.Date(2026, 11, 28, 10, 0, 0, 123, time.UTC)
	id := "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	_, err := r.Create(ctx, id, charged)
	require.NoError(t, err)

	first, err := r.Confirm(ctx, id, at, charged)
	require.NoError(t, err)
	assert.True(t, first)
	assert.Zero(t, counted.gets.Load(), "confirmed without a read")
	again, err := r.Confirm(ctx, id, at.Add(time.Hour), charged)
	require.NoError(t, err)
	assert.False(t, again, "a second confirmation is a duplicate")
	p, _, err := r.Get(ctx, id)
	require.NoError(t, err)
	rec, err := p.record()
	require.NoError(t, err)
	require.True(t, rec.Confirmed)
	assert.True(t, at.Equal(*rec.ConfirmedAt), "the first confirmation counts: %v", rec.ConfirmedAt)
	assert.Equal(t, 12.5, rec.Amount)
}

// A confirmation whose record is missing (its process died between the
// two writes) puts the record back, confirmed; the request's own create,
// if it comes later, finds it there.
func TestPaymentRecordsConfirmBeforeCreate(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	id := "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	first, err := r.Confirm(ctx, id, time.Now(), charged)
	require.NoError(t, err)
	assert.True(t, first)
	got, err := r.Create(ctx, id, charged)
	require.NoError(t, err)
	assert.NotNil(t, got.ConfirmedAt, "the stored, confirmed payment stands")
}

// laggingKV is a replica of the payments bucket that has not caught up:
// a create answers as a clustered bucket does when the key is there
// (10071, not ErrKeyExists), and the first stale reads find nothing.
type laggingKV struct {
	jetstream.KeyValue
	stale int
}

func (l *laggingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if _, err := l.KeyValue.Get(ctx, key); err == nil {
		return 0, &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence,
			Description: "wrong last sequence: 1: key exists"}
	}
	return l.KeyValue.Create(ctx, key, value, opts...)
}

func (l *laggingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if l.stale > 0 {
		l.stale--
		return nil, jetstream.ErrKeyNotFound
	}
	return l.KeyValue.Get(ctx, key)
}

// A payment its confirmation stored first, read back from a replica that
// is behind, is found once the replica catches up: the request's create
// returns it rather than failing (the service answered such a charge 500
// outcome_pending on a three-node cluster). A replica that never catches
// up is an error.
func TestPaymentRecordsCreateReadsAgainOnALaggingReplica(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	lag := &laggingKV{KeyValue: r.kv.kvs[0]}
	r.kv = &kvPool{kvs: []jetstream.KeyValue{lag}}

	id := "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	_, err := r.Confirm(ctx, id, time.Now(), charged)
	require.NoError(t, err)
	lag.stale = createReads - 1
	got, err := r.Create(ctx, id, charged)
	require.NoError(t, err)
	assert.NotNil(t, got.ConfirmedAt, "the stored, confirmed payment stands")

	id = "txn_" + tai.NewID()
	charged = storedOf(t, id, StatusSuccess, 200)
	_, err = r.Confirm(ctx, id, time.Now(), charged)
	require.NoError(t, err)
	lag.stale = createReads
	_, err = r.Create(ctx, id, charged)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "payments: nats: API error: code=400 err_code=10071")
}

func TestPaymentRecordsConfirmOnlyCharges(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	held := "txn_" + tai.NewID()
	_, err := r.Create(ctx, held, storedOf(t, held, StatusReview, 202))
	require.NoError(t, err)
	// Even a confirmation claiming the payment was charged does not
	// confirm one that was held for review.
	_, err = r.Confirm(ctx, held, time.Now(), storedOf(t, held, StatusSuccess, 200))
	require.ErrorIs(t, err, ErrNotCharged)
	p, _, err := r.Get(ctx, held)
	require.NoError(t, err)
	assert.Nil(t, p.ConfirmedAt)

	missing := "txn_" + tai.NewID()
	_, err = r.Confirm(ctx, missing, time.Now(), storedOf(t, missing, StatusFraudBlocked, 402))
	require.ErrorIs(t, err, ErrNotCharged)
	_, ok, err := r.Get(ctx, missing)
	require.NoError(t, err)
	assert.False(t, ok, "nothing stored for it")
}

func TestPaymentRecordsRejectOtherIDs(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	id := "txn_" + tai.NewID()
	_, err := r.Create(ctx, id, storedOf(t, id, StatusSuccess, 200))
	require.NoError(t, err)
	upper := "txn_ABCDEF" + strings.Repeat("0", 26)
	for _, bad := range []string{"", "txn_", id[:len(id)-1], id + "0", "pay_" + id[4:], upper, "txn_" + id[4:35] + "g",
		"../" + id, "a.", ".a", "a..b", "*", ">", "txn_*", id + ".x"} {
		_, ok, err := r.Get(ctx, bad)
		assert.NoError(t, err, "Get(%q)", bad)
		assert.False(t, ok, "Get(%q)", bad)
	}
}

func TestPaymentRecordsRefuseWhenFull(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{MaxBytes: 1 << 20}), context.Background()
	big := func(id string) storedPayment {
		b, err := json.Marshal(PaymentResponse{TransactionID: id, Status: StatusSuccess, Reasons: []string{strings.Repeat("x", 100<<10)}})
		require.NoError(t, err)
		return storedPayment{Code: 200, Status: StatusSuccess, Response: b}
	}
	var ids []string
	var err error
	for range 20 {
		id := "txn_" + tai.NewID()
		if _, err = r.Create(ctx, id, big(id)); err != nil {
			break
		}
		ids = append(ids, id)
	}
	require.ErrorIs(t, err, ErrStoreFull)
	assert.InDelta(t, 10, len(ids), 1, "about 1 MiB of 100 KiB payments")
	for _, id := range ids {
		_, ok, err := r.Get(ctx, id)
		require.NoError(t, err)
		assert.True(t, ok, "nothing stored is dropped to make room")
	}
}

// TestKVPoolTurnsPastMaxInt32: the pool's counter of calls passes 2^31
// after enough key-value calls; where int has 32 bits (386, arm) the index
// it picks must stay in range.
func TestKVPoolTurnsPastMaxInt32(t *testing.T) {
	p := &kvPool{kvs: make([]jetstream.KeyValue, 3)}
	p.next.Store(math.MaxInt32 - 1)
	for range 4 {
		assert.NotPanics(t, func() { p.get() })
	}
	p.next.Store(math.MaxUint32 - 1)
	for range 4 {
		assert.NotPanics(t, func() { p.get() })
	}
}

// TestPaymentRecordsConfirmInAFullBucket: charges stored until the bucket
// takes no more are each confirmed all the same: marking one confirmed
// does not grow it, so the full bucket takes the mark. It grew the record,
// the bucket refused it as full, and the confirmation was dead-lettered
// with its charge left unconfirmed.
func TestPaymentRecordsConfirmInAFullBucket(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{MaxBytes: 64 << 10}), context.Background()
	var ids []string
	for {
		id := "txn_" + tai.NewID()
		_, err := r.Create(ctx, id, storedOf(t, id, StatusSuccess, 200))
		if errors.Is(err, ErrStoreFull) {
			break
		}
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.Greater(t, len(ids), 10)
	at := time.Date(2026, 6, 1, 12, 0, 1, 123456789, time.UTC)
	for _, id := range ids {
		first, err := r.Confirm(ctx, id, at, storedPayment{})
		require.NoError(t, err, id)
		assert.True(t, first, id)
		p, _, err := r.Get(ctx, id)
		require.NoError(t, err)
		require.NotNil(t, p.ConfirmedAt, id)
		assert.Equal(t, at, *p.ConfirmedAt, id)
	}
}

// A payment read from a replica of the bucket that has not caught up with
// its write, on a cluster, is read again before it is said to be missing:
// GET /payment/{id} of a payment just answered at another replica, or a
// replay of its key, finds it rather than answering 404 or 409. A replica
// that never catches up says it is missing; on one server a miss is read
// once.
func TestPaymentRecordsGetReadsAgainOnALaggingReplica(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	lag := &laggingKV{KeyValue: r.kv.kvs[0]}
	r.kv = &kvPool{kvs: []jetstream.KeyValue{lag}}
	r.missReads = missReads(3)

	id := "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	_, err := r.Create(ctx, id, charged)
	require.NoError(t, err)
	lag.stale = createReads - 1
	got, found, err := r.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, found, "found once the replica has caught up")
	assert.Equal(t, charged.Response, got.Response)

	lag.stale = createReads
	_, found, err = r.Get(ctx, id)
	require.NoError(t, err)
	assert.False(t, found, "a replica that never catches up")

	assert.Equal(t, 1, missReads(1), "one server: no replica lags")
}

// A read of a payment on a lagging replica whose context ends before the
// reads are done fails rather than say the payment is missing: GET
// /payment/{id} answers 503, not 404, for a payment that may be stored.
func TestPaymentRecordsGetCutShortOnALaggingReplicaFails(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	lag := &laggingKV{KeyValue: r.kv.kvs[0]}
	r.kv = &kvPool{kvs: []jetstream.KeyValue{lag}}
	r.missReads = missReads(3)

	id := "txn_" + tai.NewID()
	_, err := r.Create(ctx, id, storedOf(t, id, StatusSuccess, 200))
	require.NoError(t, err)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	lag.stale = createReads - 1
	_, found, err := r.Get(ended, id)
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, found)
}

// A record changed since this process stored it — confirmed by another
// replica — is not confirmed a second time.
func TestPaymentRecordsConfirmWhatAnotherReplicaConfirmed(t *testing.T) {
	ctx := context.Background()
	here, there := twoReplicas(t)
	id := "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	_, err := here.Create(ctx, id, charged)
	require.NoError(t, err)
	first, err := there.Confirm(ctx, id, time.Now(), charged)
	require.NoError(t, err)
	require.True(t, first)
	again, err := here.Confirm(ctx, id, time.Now(), charged)
	require.NoError(t, err)
	assert.False(t, again, "confirmed by the other replica already")
}

// A confirmation whose copy of the charge differs from what this process
// stored (a message published by someone else on its subject) does not
// replace the record: the stored one is confirmed.
func TestPaymentRecordsConfirmKeepsTheStoredCharge(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	id := "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	_, err := r.Create(ctx, id, charged)
	require.NoError(t, err)
	forged := charged
	forged.Response = bytes.Replace(charged.Response, []byte("12.5"), []byte("99.5"), 1)
	require.NotEqual(t, charged.Response, forged.Response)
	first, err := r.Confirm(ctx, id, time.Now(), forged)
	require.NoError(t, err)
	assert.True(t, first)
	p, _, err := r.Get(ctx, id)
	require.NoError(t, err)
	rec, err := p.record()
	require.NoError(t, err)
	assert.True(t, rec.Confirmed)
	assert.Equal(t, 12.5, rec.Amount, "the stored charge stands")
}

// The revisions kept are bounded: two generations of createdGen.
func TestCreatedRevsBounded(t *testing.T) {
	c := createdRevs{seed: maphash.MakeSeed()}
	p := storedPayment{Code: 200, Status: StatusSuccess, Response: []byte(`{}`)}
	for i := range 2*createdGen + 1 {
		c.put(fmt.Sprint(i), uint64(i+1), p)
	}
	assert.LessOrEqual(t, len(c.cur)+len(c.prev), 2*createdGen)
	_, ok := c.take("0", p)
	assert.False(t, ok, "the oldest is forgotten")
	rev, ok := c.take(fmt.Sprint(createdGen), p)
	assert.True(t, ok, "the previous generation is kept")
	assert.Equal(t, uint64(createdGen+1), rev)
	_, ok = c.take(fmt.Sprint(createdGen), p)
	assert.False(t, ok, "taken once")
	_, ok = c.take(fmt.Sprint(2*createdGen), storedPayment{Code: 200, Status: StatusSuccess, Response: []byte(`{"x":1}`)})
	assert.False(t, ok, "another charge under the same ID")
}

// The confirmation consumer's bucket knows the charges the requests'
// bucket stored, so that it confirms them without a read. The consumer
// is held until the charge has been answered (and so stored): one that
// gets there first, as it may under load (the confirmation is published
// as the record is stored), confirms by reading, and the revision the
// record's store remembers afterwards is left unused.
func TestServiceConfirmsWhatItStoredWithoutARead(t *testing.T) {
	cfg := testConfig(t)
	answered := make(chan struct{})
	cfg.confirmWait = func(string) {
		select {
		case <-answered:
		case <-time.After(10 * time.Second):
		}
	}
	ts := startService(t, cfg)
	require.NotNil(t, ts.records.created)
	assert.Same(t, ts.records.created, ts.confirmer.created)
	r := ts.pay(t, "cust_good", 50, nil)
	close(answered)
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	id := r.str("transaction_id")
	require.Eventually(t, func() bool { return ts.confirmed(t, id) }, 10*time.Second, 5*time.Millisecond)
	c := ts.records.created
	c.mu.Lock()
	_, inCur := c.cur[id]
	_, inPrev := c.prev[id]
	c.mu.Unlock()
	assert.False(t, inCur || inPrev, "the consumer took the charge's revision")
}

// Confirmations of one charge consumed at once, one by the compare-and-set
// at the revision it was stored at and the others by reading it, confirm
// it once.
func TestPaymentRecordsConfirmConcurrentlyOnce(t *testing.T) {
	ctx := context.Background()
	here, there := twoReplicas(t)
	for range 5 {
		id := "txn_" + tai.NewID()
		charged := storedOf(t, id, StatusSuccess, 200)
		_, err := here.Create(ctx, id, charged)
		require.NoError(t, err)
		firsts := make(chan bool, 4)
		for i := range cap(firsts) {
			r := here
			if i%2 == 1 {
				r = there
			}
			go func() {
				first, err := r.Confirm(ctx, id, time.Now(), charged)
				assert.NoError(t, err)
				firsts <- first
			}()
		}
		confirmed := 0
		for range cap(firsts) {
			if <-firsts {
				confirmed++
			}
		}
		assert.Equal(t, 1, confirmed, "%s confirmed once", id)
	}
}

// A payment stored as anything but a charge is not confirmed by a
// confirmation whose copy says it was charged.
func TestPaymentRecordsConfirmRefusesWhatWasNotCharged(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	id := "txn_" + tai.NewID()
	failed := storedOf(t, id, StatusFailed, 502)
	_, err := r.Create(ctx, id, failed)
	require.NoError(t, err)
	for _, copied := range []storedPayment{failed, storedOf(t, id, StatusSuccess, 200), {Code: failed.Code, Status: StatusSuccess, Response: failed.Response}} {
		first, err := r.Confirm(ctx, id, time.Now(), copied)
		require.ErrorIs(t, err, ErrNotCharged)
		assert.False(t, first)
	}
	p, _, err := r.Get(ctx, id)
	require.NoError(t, err)
	assert.Nil(t, p.ConfirmedAt)
	assert.Equal(t, StatusFailed, p.Status)

	// A charge whose confirmation carries another status is confirmed as
	// stored: a charge.
	id = "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	_, err = r.Create(ctx, id, charged)
	require.NoError(t, err)
	first, err := r.Confirm(ctx, id, time.Now(), storedPayment{Code: 502, Status: StatusFailed, Response: charged.Response})
	require.NoError(t, err)
	assert.True(t, first)
	p, _, err = r.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, charged.Code, p.Code)
	assert.Equal(t, StatusSuccess, p.Status)
	assert.NotNil(t, p.ConfirmedAt)
}

// A copy confirmed already, or unlike the charge stored in its code, is
// not stored in the charge's place.
func TestPaymentRecordsConfirmKeepsTheStoredCode(t *testing.T) {
	r, ctx := newRecords(t, RecordOptions{}), context.Background()
	early := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, forge := range []func(*storedPayment){
		func(p *storedPayment) { p.Code = 201 },
		func(p *storedPayment) { p.ConfirmedAt = &early },
		func(p *storedPayment) { p.Code, p.ConfirmedAt = 201, &early },
	} {
		id := "txn_" + tai.NewID()
		charged := storedOf(t, id, StatusSuccess, 200)
		_, err := r.Create(ctx, id, charged)
		require.NoError(t, err)
		forged := charged
		forge(&forged)
		first, err := r.Confirm(ctx, id, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), forged)
		require.NoError(t, err)
		assert.True(t, first, "the stored charge was not confirmed yet")
		p, _, err := r.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, 200, p.Code)
		require.NotNil(t, p.ConfirmedAt)
		assert.Equal(t, 2026, p.ConfirmedAt.Year(), "confirmed when consumed, not when the copy says")
		assert.JSONEq(t, string(charged.Response), string(p.Response))
	}
}

// A charge whose confirmation overtook it is stored by the confirmation;
// Create, finding it there, returns it and remembers no revision of its
// own, and the confirmation consumed again is a duplicate.
func TestPaymentRecordsCreateAfterItsConfirmation(t *testing.T) {
	ctx := context.Background()
	here, there := twoReplicas(t)
	id := "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	first, err := there.Confirm(ctx, id, time.Now(), charged)
	require.NoError(t, err)
	require.True(t, first)
	stored, err := here.Create(ctx, id, charged)
	require.NoError(t, err)
	require.NotNil(t, stored.ConfirmedAt, "the record the confirmation stored")
	_, ok := here.created.take(id, charged)
	assert.False(t, ok, "no revision is remembered for a record Create did not store")
	again, err := here.Confirm(ctx, id, time.Now(), charged)
	require.NoError(t, err)
	assert.False(t, again)
}

// A charge whose record is gone since this process stored it — its bucket
// deleted and made again — is stored from its confirmation's copy.
func TestPaymentRecordsConfirmAfterTheBucketIsMadeAgain(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	here, err := NewPaymentRecords(ctx, []jetstream.JetStream{js}, RecordOptions{})
	require.NoError(t, err)
	id := "txn_" + tai.NewID()
	charged := storedOf(t, id, StatusSuccess, 200)
	_, err = here.Create(ctx, id, charged)
	require.NoError(t, err)
	require.NoError(t, js.DeleteKeyValue(ctx, "payments"))
	again, err := NewPaymentRecords(ctx, []jetstream.JetStream{js}, RecordOptions{})
	require.NoError(t, err)
	first, err := here.Confirm(ctx, id, time.Now(), charged)
	require.NoError(t, err)
	assert.True(t, first)
	p, found, err := again.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, found)
	assert.NotNil(t, p.ConfirmedAt)
	assert.JSONEq(t, string(charged.Response), string(p.Response))
}
