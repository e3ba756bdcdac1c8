package main

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The baseline is the ceiling the service is measured against: a bare
// net/http handler that decodes the same request and writes a response of
// the same shape, and does nothing else — no fraud rules, no limits, no
// storage, no metrics. What the service does per payment costs whatever
// separates the two.

// baselineRequest is the service's request body.
type baselineRequest struct {
	Amount     json.RawMessage   `json:"amount"` // a JSON number, as the service wants
	CustomerID string            `json:"customer_id"`
	Currency   string            `json:"currency"`
	MerchantID string            `json:"merchant_id"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Location   *struct {
		Latitude  *float64 `json:"latitude,omitempty"`
		Longitude *float64 `json:"longitude,omitempty"`
		Country   string   `json:"country,omitempty"`
	} `json:"location,omitempty"`
}

// baselineResponse has the service's response shape.
type baselineResponse struct {
	TransactionID    string            `json:"transaction_id"`
	Status           string            `json:"status"`
	Amount           float64           `json:"amount"`
	Currency         string            `json:"currency"`
	CustomerID       string            `json:"customer_id"`
	MerchantID       string            `json:"merchant_id"`
	Metadata         map[string]string `json:"metadata,omitempty"` // the request's, as sent
	Timestamp        time.Time         `json:"timestamp"`
	ProcessingTimeMS float64           `json:"processing_time_ms"`
	FraudScore       float64           `json:"fraud_score"`
	GatewayResponse  struct {
		AuthorizationCode string `json:"authorization_code"`
		Processor         string `json:"processor"`
		Message           string `json:"message"`
	} `json:"gateway_response"`
	TraceID string `json:"trace_id"`
}

// baselineHandler serves POST /payment and GET /healthz.
func baselineHandler() http.Handler {
	var seq atomic.Uint64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("POST /payment", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var req baselineRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			badRequest(w, "malformed JSON")
			return
		}
		// A JSON number, not a string holding one, as the service reads it.
		amount := math.NaN()
		if a := req.Amount; len(a) > 0 && (a[0] == '-' || a[0] >= '0' && a[0] <= '9') {
			if v, err := strconv.ParseFloat(string(a), 64); err == nil {
				amount = v
			}
		}
		if !(amount > 0) || math.IsInf(amount, 0) {
			badRequest(w, "bad amount")
			return
		}
		n := seq.Add(1)
		resp := baselineResponse{
			TransactionID: "txn_" + strconv.FormatUint(n, 16),
			Status:        "SUCCESS",
			Amount:        amount, Currency: req.Currency, CustomerID: req.CustomerID, MerchantID: req.MerchantID,
			Metadata:  req.Metadata,
			Timestamp: start.UTC(),
			TraceID:   strconv.FormatUint(n, 16),
		}
		resp.GatewayResponse.AuthorizationCode = "auth_" + strconv.FormatUint(n, 36)
		resp.GatewayResponse.Processor, resp.GatewayResponse.Message = "baseline", "approved"
		resp.ProcessingTimeMS = float64(time.Since(start).Microseconds()) / 1000
		b, _ := json.Marshal(resp)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(b, '\n'))
	})
	return mux
}

// badRequest answers 400 in the service's error schema, as JSON.
func badRequest(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(`{"error":{"code":"invalid_request","message":"` + message + `"}}` + "\n"))
}

// serveBaseline serves the baseline on addr until ctx ends.
func serveBaseline(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: baselineHandler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = srv.Shutdown(sctx)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
