package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

// Payment statuses in responses.
const (
	StatusSuccess      = "SUCCESS"
	StatusFraudBlocked = "FRAUD_BLOCKED"
	StatusReview       = "REVIEW"
	StatusFailed       = "FAILED"
	StatusRateLimited  = "RATE_LIMITED"
)

// PaymentResponse is the answer to POST /payment.
type PaymentResponse struct {
	TransactionID    string           `json:"transaction_id"`
	Status           string           `json:"status"`
	Amount           float64          `json:"amount"`
	Currency         string           `json:"currency"`
	CustomerID       string           `json:"customer_id"`
	MerchantID       string           `json:"merchant_id"`
	Timestamp        time.Time        `json:"timestamp"`
	ProcessingTimeMS float64          `json:"processing_time_ms"`
	FraudScore       float64          `json:"fraud_score"`
	GatewayResponse  *GatewayResponse `json:"gateway_response,omitempty"`
	Reasons          []string         `json:"reasons,omitempty"`
	Error            string           `json:"error,omitempty"`
	TraceID          string           `json:"trace_id,omitempty"`
}

// Charge is the action's result: what the gateway said.
type Charge struct {
	Gateway GatewayResponse
}

// errorBody is every error response.
type errorBody struct {
	Error *requestError `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"could not encode the response"}}`, http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, b)
}

var newline = []byte{'\n'}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// body may be a stored response replayed to many requests at once:
	// write it as it is, never append to it.
	_, _ = w.Write(body)
	_, _ = w.Write(newline)
}

func writeError(w http.ResponseWriter, err error) {
	var re *requestError
	if !errors.As(err, &re) {
		re = &requestError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	writeJSON(w, re.Status, errorBody{Error: re})
}

// outcome maps what the pipeline said to a status, an HTTP code and a
// Retry-After in whole seconds (0 for none).
func outcome(res tai.Result[Charge], err error) (status string, code int, retryAfter int) {
	switch tai.OutcomeOf(err) {
	case tai.Succeeded:
		return StatusSuccess, http.StatusOK, 0
	case tai.Denied:
		if res.Decision.Verdict == tai.Review {
			return StatusReview, http.StatusAccepted, 0
		}
		return StatusFraudBlocked, http.StatusPaymentRequired, 0
	case tai.Rejected:
		ra := int(math.Ceil(tai.RetryAfter(err).Seconds()))
		if errors.Is(err, heijunka.ErrLimited) {
			return StatusRateLimited, http.StatusTooManyRequests, max(ra, 1)
		}
		if errors.Is(err, jidoka.ErrLineStopped) {
			return StatusFailed, http.StatusServiceUnavailable, max(ra, 30)
		}
		return StatusFailed, http.StatusServiceUnavailable, max(ra, 1)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return StatusFailed, http.StatusGatewayTimeout, 0
	}
	return StatusFailed, http.StatusBadGateway, 0
}

// publicError says what went wrong without internals (no stacks, no
// gateway payloads).
func publicError(err error) string {
	var pe *tai.PanicError
	switch {
	case err == nil, errors.Is(err, tai.ErrDenied):
		return ""
	case errors.Is(err, heijunka.ErrLimited):
		return "too many payments for this customer; retry later"
	case errors.Is(err, jidoka.ErrOpen):
		return "payment gateway unavailable (circuit open); retry later"
	case errors.Is(err, jidoka.ErrLineStopped):
		return "payments are stopped by an operator or an alert; retry later"
	case errors.As(err, &pe):
		return "internal error"
	case errors.Is(err, ErrGatewayDeclined):
		return "payment gateway failed"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "payment timed out"
	}
	var polErr *tai.PolicyError
	if errors.As(err, &polErr) {
		return "fraud check unavailable"
	}
	return "payment failed"
}

// handlePayment serves POST /payment.
func (s *Service) handlePayment(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p, body, err := decodePayment(w, r)
	if err != nil {
		s.countRequestError(err)
		writeError(w, err)
		return
	}

	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		if err := checkIdempotencyKey(key); err != nil {
			writeError(w, err)
			return
		}
		entry := IdemEntry{Fingerprint: fingerprint(body), State: stateInFlight, Started: s.cfg.now()}
		old, claimed, err := s.idem.Claim(r.Context(), key, entry)
		switch {
		case err != nil:
			s.log.Error("idempotency store", "err", err)
			writeError(w, &requestError{Status: http.StatusServiceUnavailable, Code: "idempotency_unavailable", Message: "the idempotency store is unavailable; retry later"})
			return
		case !claimed && old.Fingerprint != entry.Fingerprint:
			writeError(w, &requestError{Status: http.StatusUnprocessableEntity, Code: "idempotency_key_reused",
				Message: "this Idempotency-Key was used with a different request body"})
			return
		case !claimed && old.State == stateInFlight:
			writeError(w, &requestError{Status: http.StatusConflict, Code: "idempotency_in_flight",
				Message: "a request with this Idempotency-Key is still being processed"})
			return
		case !claimed:
			w.Header().Set("Idempotent-Replayed", "true")
			writeRaw(w, old.Status, old.Body)
			return
		}
		completed := false
		defer func() {
			if !completed {
				_ = s.idem.Release(context.WithoutCancel(r.Context()), key)
			}
		}()
		status, respBody := s.pay(r.Context(), w, p, start)
		entry.State, entry.Status, entry.Body = stateCompleted, status, respBody
		if err := s.idem.Complete(context.WithoutCancel(r.Context()), key, entry); err != nil {
			s.log.Error("idempotency store", "err", err)
		}
		completed = true
		writeRaw(w, status, respBody)
		return
	}
	status, respBody := s.pay(r.Context(), w, p, start)
	writeRaw(w, status, respBody)
}

// pay runs one payment through the pipeline and returns the HTTP status
// and body to answer with.
func (s *Service) pay(ctx context.Context, w http.ResponseWriter, p Payment, start time.Time) (int, []byte) {
	sig := tai.Signal[Payment]{ID: "txn_" + tai.NewID(), Kind: "payment", Key: p.CustomerID, Time: start, Payload: p}
	res, err := s.pipeline.Process(ctx, sig)
	status, code, retryAfter := outcome(res, err)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	resp := PaymentResponse{
		TransactionID: sig.ID,
		Status:        status,
		Amount:        p.Amount,
		Currency:      p.Currency,
		CustomerID:    p.CustomerID,
		MerchantID:    p.MerchantID,
		Timestamp:     s.cfg.now().UTC(),
		FraudScore:    math.Round(res.Decision.Score*1000) / 1000,
		Error:         publicError(err),
		TraceID:       res.Span.TraceID.String(),
	}
	for _, c := range res.Decision.Contributions {
		if c.Reason != "" {
			resp.Reasons = append(resp.Reasons, c.Reason)
		}
	}
	if status == StatusSuccess {
		resp.GatewayResponse = &res.Value.Gateway
	}
	resp.ProcessingTimeMS = float64(time.Since(start).Microseconds()) / 1000
	s.countPayment(status)
	if tai.OutcomeOf(err) == tai.Failed && status != StatusRateLimited {
		s.log.Warn("payment failed", "transaction_id", sig.ID, "err", err)
	}
	body, mErr := json.Marshal(resp)
	if mErr != nil {
		return http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"could not encode the response"}}`)
	}
	s.payments.Put(resp.TransactionID, body)
	return code, body
}

func checkIdempotencyKey(key string) error {
	if len(key) > maxIdemKeyLen {
		return invalid("Idempotency-Key", "Idempotency-Key is longer than %d bytes", maxIdemKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return invalid("Idempotency-Key", "Idempotency-Key may hold only visible ASCII characters")
		}
	}
	return nil
}

// handleGetPayment serves GET /payment/{id}.
func (s *Service) handleGetPayment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, ok := s.payments.Get(id)
	if !ok {
		writeError(w, &requestError{Status: http.StatusNotFound, Code: "not_found", Field: "id", Message: fmt.Sprintf("no payment %q here", clip(id))})
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// gatewaySettings is the body of POST /admin/gateway.
type gatewaySettings struct {
	FailureRate *float64 `json:"failure_rate"`
	LatencyMS   *float64 `json:"latency_ms"`
}

// handleGatewayAdmin serves GET and POST /admin/gateway: the simulated
// gateway's failure rate and latency, for chaos tests.
func (s *Service) handleGatewayAdmin(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
			writeError(w, err)
			return
		}
		var in gatewaySettings
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			writeError(w, jsonError(err))
			return
		}
		rate, latency := s.gateway.Settings()
		if in.FailureRate != nil {
			rate = *in.FailureRate
		}
		if in.LatencyMS != nil {
			if !(*in.LatencyMS >= 0 && *in.LatencyMS <= 60000) {
				writeError(w, invalid("latency_ms", "latency_ms %v is outside [0, 60000]", *in.LatencyMS))
				return
			}
			latency = time.Duration(*in.LatencyMS * float64(time.Millisecond))
		}
		if err := s.gateway.Set(rate, latency); err != nil {
			writeError(w, invalid("failure_rate", "%v", err))
			return
		}
		s.log.Info("gateway simulation changed", "failure_rate", rate, "latency", latency)
	}
	rate, latency := s.gateway.Settings()
	writeJSON(w, http.StatusOK, map[string]any{"failure_rate": rate, "latency_ms": float64(latency) / float64(time.Millisecond), "calls": s.gateway.Calls()})
}

// requireToken wraps h so that, with a token configured, a request without
// "Authorization: Bearer <token>" gets 401.
func (s *Service) requireToken(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.APIToken == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.APIToken)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="payment"`)
			writeError(w, &requestError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "a valid Authorization: Bearer token is required"})
			return
		}
		h(w, r)
	}
}

// adminOnly wraps h so it needs the admin token, and is off without one.
func (s *Service) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := s.adminToken()
		if token == "" && !s.cfg.OpenAdmin {
			writeError(w, &requestError{Status: http.StatusForbidden, Code: "forbidden", Message: "the admin API needs -admin-token (or -api-token)"})
			return
		}
		if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="payment-admin"`)
			writeError(w, &requestError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "a valid admin Bearer token is required"})
			return
		}
		h(w, r)
	}
}

// adminToken is the token of the admin API and the board: -admin-token,
// else -api-token; "" when neither is set.
func (s *Service) adminToken() string {
	if s.cfg.AdminToken != "" {
		return s.cfg.AdminToken
	}
	return s.cfg.APIToken
}

// boardAuth protects the andon board when a token is configured: the
// board can stop the payment line, so a browser must log in (HTTP Basic,
// any user name, the admin token as password), which it then sends with
// the board's own requests. Without a token the board is open, like the
// rest of the service.
func (s *Service) boardAuth(board http.Handler) http.Handler {
	token := s.adminToken()
	if token == "" {
		return board
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="payment andon", charset="UTF-8"`)
			writeError(w, &requestError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "the andon board needs the admin token as the password"})
			return
		}
		board.ServeHTTP(w, r)
	})
}
