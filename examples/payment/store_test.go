package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

func storedBody(t *testing.T, id string, amount float64) []byte {
	t.Helper()
	b, err := json.Marshal(PaymentResponse{TransactionID: id, Status: StatusSuccess, Amount: amount, Currency: "USD", Reasons: []string{"ok"}})
	require.NoError(t, err)
	return b
}

func TestPaymentStoreKeepsTheNewest(t *testing.T) {
	s := NewPaymentStore(3)
	ids := make([]string, 5)
	for i := range ids {
		ids[i] = "txn_" + tai.NewID()
		s.Put(ids[i], storedBody(t, ids[i], float64(i)))
	}
	for i, id := range ids {
		rec, ok := s.Get(id)
		if i < 2 {
			assert.False(t, ok, "payment %d is among the oldest, forgotten", i)
			continue
		}
		require.True(t, ok, "payment %d is kept", i)
		assert.Equal(t, id, rec.TransactionID)
		assert.Equal(t, float64(i), rec.Amount)
		assert.Equal(t, []string{"ok"}, rec.Reasons)
		assert.False(t, rec.Confirmed)
		assert.Nil(t, rec.ConfirmedAt)
	}
	s.Put(ids[4], storedBody(t, ids[4], 99))
	rec, _ := s.Get(ids[4])
	assert.Equal(t, float64(4), rec.Amount, "a payment is stored once")
}

func TestPaymentStoreConfirms(t *testing.T) {
	s := NewPaymentStore(10)
	at := time.Date(2026, 11, 28, 10, 0, 0, 123, time.UTC)
	stored, early := "txn_"+tai.NewID(), "txn_"+tai.NewID()
	s.Put(stored, storedBody(t, stored, 1))
	assert.True(t, s.Confirm(stored, at))
	assert.True(t, s.Confirm(stored, at.Add(time.Hour)), "confirming again changes nothing")
	rec, ok := s.Get(stored)
	require.True(t, ok)
	assert.True(t, rec.Confirmed)
	require.NotNil(t, rec.ConfirmedAt)
	assert.True(t, at.Equal(*rec.ConfirmedAt), "the first confirmation counts: %v", rec.ConfirmedAt)

	assert.False(t, s.Confirm(early, at), "a confirmation ahead of its payment")
	s.Put(early, storedBody(t, early, 2))
	rec, ok = s.Get(early)
	require.True(t, ok)
	assert.True(t, rec.Confirmed, "the early confirmation is applied when the payment is stored")
}

func TestPaymentStoreRejectsOtherIDs(t *testing.T) {
	s := NewPaymentStore(10)
	id := "txn_" + tai.NewID()
	s.Put(id, storedBody(t, id, 1))
	upper := "txn_ABCDEF" + strings.Repeat("0", 26) // upper-case hex is not how IDs are written
	for _, bad := range []string{"", "txn_", id[:len(id)-1], id + "0", "pay_" + id[4:], upper, "txn_" + id[4:35] + "g", "../" + id} {
		_, ok := s.Get(bad)
		assert.False(t, ok, "Get(%q)", bad)
		assert.False(t, s.Confirm(bad, time.Now()), "Confirm(%q)", bad)
	}
	s.Put("not-an-id", []byte(`{}`))
	_, ok := s.Get("not-an-id")
	assert.False(t, ok)
	assert.Empty(t, s.early, "strings that are not transaction IDs are not remembered")
}
