package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

func TestAppendPayment(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	o := options{fraud: 0.5, customers: 1000}
	var b []byte
	fraud := 0
	for range 1000 {
		b = appendPayment(b[:0], rng, o)
		var p struct {
			Amount     json.Number `json:"amount"`
			CustomerID string      `json:"customer_id"`
			Currency   string      `json:"currency"`
			MerchantID string      `json:"merchant_id"`
			Location   *struct {
				Country string `json:"country"`
			} `json:"location"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		amount, err := p.Amount.Float64()
		if err != nil || amount < 1 || p.CustomerID == "" || p.MerchantID == "" || p.Currency != "USD" {
			t.Fatalf("bad payment %s", b)
		}
		if amount > 5000 || p.Location != nil {
			fraud++
		}
	}
	if fraud < 400 || fraud > 600 {
		t.Fatalf("%d of 1000 fraudulent at -fraud 0.5", fraud)
	}
}

func TestStatusOf(t *testing.T) {
	for body, want := range map[string]string{
		`{"transaction_id":"txn_1","status":"SUCCESS","amount":1}`: "SUCCESS",
		`{"status":"RATE_LIMITED"}`:                                "RATE_LIMITED",
		`{"status":"NEW_THING"}`:                                   "NEW_THING",
		`{"error":{"code":"invalid_request"}}`:                     "",
		`{"status":"cut`:                                           "",
	} {
		if got := statusOf([]byte(body)); got != want {
			t.Errorf("statusOf(%s) = %q, want %q", body, got, want)
		}
	}
}
