package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/examples/internal/httpapi"
	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kanban"
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
	TransactionID string  `json:"transaction_id"`
	Status        string  `json:"status"`
	Amount        float64 `json:"amount"`
	Currency      string  `json:"currency"`
	CustomerID    string  `json:"customer_id"`
	MerchantID    string  `json:"merchant_id"`
	// Metadata is the request's metadata, as sent, kept with the
	// payment; absent when none was sent.
	Metadata         map[string]string `json:"metadata,omitempty"`
	Timestamp        time.Time         `json:"timestamp"`
	ProcessingTimeMS float64           `json:"processing_time_ms"`
	FraudScore       float64           `json:"fraud_score"`
	GatewayResponse  *GatewayResponse  `json:"gateway_response,omitempty"`
	Reasons          []string          `json:"reasons,omitempty"`
	// Error says why a payment was not charged, in the error schema of
	// every error answer; nil for SUCCESS and REVIEW.
	Error   *requestError `json:"error,omitempty"`
	TraceID string        `json:"trace_id,omitempty"`
}

// Charge is the action's result: what the gateway said.
type Charge struct {
	Gateway GatewayResponse
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

func writeError(w http.ResponseWriter, err error) { httpapi.WriteError(w, err) }

// errorJSON is the body of an error answer.
func errorJSON(e *requestError) []byte {
	b, err := json.Marshal(httpapi.ErrorBody{Error: e})
	if err != nil {
		return []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	return b
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
	// The fraud check failed (its store down or slow): closed, nothing
	// charged. Only the gateway's own time can make a 504.
	var polErr *tai.PolicyError
	if !errors.As(err, &polErr) && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return StatusFailed, http.StatusGatewayTimeout, 0
	}
	return StatusFailed, http.StatusBadGateway, 0
}

// outcomeError says why a payment was not charged, without internals (no
// stacks, no gateway payloads): nil for a charge or a hold for review.
func outcomeError(status string, err error) *requestError {
	e := func(code, msg string) *requestError { return &requestError{Code: code, Message: msg} }
	var pe *tai.PanicError
	var polErr *tai.PolicyError
	var full *StoreFullError
	switch {
	case status == StatusSuccess, status == StatusReview:
		return nil
	case status == StatusFraudBlocked:
		return e("fraud_blocked", "the fraud policy blocked this payment")
	case errors.Is(err, heijunka.ErrLimited):
		return e("rate_limited", "too many payments for this customer; retry later")
	case errors.Is(err, jidoka.ErrOpen):
		return e("gateway_unavailable", "payment gateway unavailable (circuit open); retry later")
	case errors.Is(err, jidoka.ErrLineStopped):
		return e("line_stopped", "payments are stopped by an operator or an alert; retry later")
	case errors.As(err, &pe):
		return e("internal", "internal error")
	case errors.Is(err, ErrGatewayDeclined):
		return e("gateway_failed", "payment gateway failed")
	case errors.As(err, &polErr):
		return e("fraud_check_unavailable", "fraud check unavailable")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return e("timeout", "payment timed out")
	case errors.As(err, &full):
		// The store named, without the pipeline's wrapping.
		return e("store_full", full.Error()+"; retry later")
	case errors.Is(err, ErrStoreFull):
		return e("store_full", "a store is full; retry later")
	case tai.OutcomeOf(err) == tai.Rejected:
		return e("unavailable", "payments are refused for now; retry later")
	}
	return e("payment_failed", "payment failed")
}

// handlePayment serves POST /payment.
func (s *Service) handlePayment(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p, err := decodePayment(w, r)
	if err != nil {
		s.countRequestError(err)
		writeError(w, err)
		return
	}
	if s.draining.Load() {
		// The server is shutting down: it waits for the payments in
		// flight only so long, and one begun now could outlast that
		// and be cut off as the stores close, charged and not
		// recorded. Nothing was charged; another replica, or this one
		// restarted, takes the retry.
		writeError(w, &requestError{Status: http.StatusServiceUnavailable, Code: "shutting_down", RetryAfter: time.Second,
			Message: "the service is shutting down; nothing was charged; retry"})
		return
	}
	// The server's write timeout runs from the end of the headers, and a
	// slow body may have used most of it: the answer gets the payment's
	// deadline and the slack from now, so that a payment that runs is
	// heard. (A writer that cannot move its deadline keeps the server's.)
	writeBy := time.Now().Add(s.cfg.RequestTimeout + writeSlack)
	_ = http.NewResponseController(w).SetWriteDeadline(writeBy)
	// A client that hangs up does not stop a payment half-way: it runs
	// to its decision within the request deadline, and its commit after.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.RequestTimeout-s.commitTimeout())
	defer cancel()

	keys := r.Header.Values("Idempotency-Key")
	if len(keys) == 0 || len(keys) == 1 && keys[0] == "" {
		s.answer(w, s.pay(ctx, p, "txn_"+tai.NewID(), start, nil))
		return
	}
	key := keys[0]
	if err := checkIdempotencyKey(keys); err != nil {
		s.countRequestError(err)
		writeError(w, err)
		return
	}
	scoped := s.keyScope(r) + key
	now := s.cfg.now()
	entry := IdemEntry{Fingerprint: p.fingerprint(), TxnID: "txn_" + tai.NewID(), Owner: s.owner, Started: now,
		Until: now.Add(claimLease(s.cfg.RequestTimeout))}
	old, claimed, err := s.idem.Claim(ctx, scoped, entry)
	if errors.Is(err, ErrKeyContended) {
		// Requests with this key, sent at once, claim and release it in
		// turn: the key is in flight, and the store is up.
		writeInFlight(w)
		return
	}
	if err != nil {
		if !errors.Is(err, ErrStoreFull) {
			// The claim may be stored though its acknowledgement was
			// lost (a timeout; a write buffered while the connection was
			// down, and sent once it was back): it is freed once the
			// store answers, where it would hold the key for its whole
			// lease, 409 to every retry. Release deletes only this claim.
			s.releaseLater(scoped, entry)
		}
		writeError(w, s.storeUnavailable("idempotency", err))
		return
	}
	if !claimed {
		if old.Fingerprint != entry.Fingerprint {
			e := &requestError{Status: http.StatusUnprocessableEntity, Code: "idempotency_key_reused",
				Message: "this Idempotency-Key was used with a different request"}
			s.countRequestError(e)
			writeError(w, e)
			return
		}
		// The key's payment is decided once its record is stored: the
		// record is the answer. Whether this process is storing it is
		// read first: a commit stores the record before it stops
		// counting as storing, so a record missing after that read was
		// not stored by a commit of this process that ended meanwhile.
		_, storing := s.committing.Load(old.TxnID)
		rec, found, err := s.records.Get(ctx, old.TxnID)
		if err != nil {
			writeError(w, s.storeUnavailable("payments", err))
			return
		}
		if found {
			// A charge whose record is stored may not have its
			// confirmation yet (the two are written together, and the
			// process that wrote them may have died in between): store
			// it again — the stream's deduplication, or else the
			// consumer, keeps it from counting twice. The answer was
			// given already and is given again whether or not the
			// queue takes the confirmation now.
			if rec.Status == StatusSuccess && rec.ConfirmedAt == nil {
				s.confirmAgain(ctx, s.confirmation(p, old.TxnID, rec))
			}
			w.Header().Set("Idempotent-Replayed", "true")
			writeRaw(w, rec.Code, rec.Response)
			return
		}
		if s.recordLookedUp != nil {
			s.recordLookedUp()
		}
		if storing || !s.abandoned(old) {
			writeInFlight(w)
			return
		}
		// Its request died before deciding (its process was killed):
		// run it again as the same payment, so that a gateway which
		// deduplicates by transaction ID charges it once.
		entry.TxnID = old.TxnID
		if !entry.Started.After(old.Started) {
			// A takeover of this process's own claim has its owner and
			// transaction ID: it is told apart from the claim it takes
			// over (which a free retried in the background may still
			// name) by its start alone, later even on a clock that reads
			// the same twice.
			entry.Started = old.Started.Add(time.Nanosecond)
		}
		ok, err := s.idem.Replace(ctx, scoped, old, entry)
		if err != nil {
			if !errors.Is(err, ErrStoreFull) {
				// The takeover may be stored though its acknowledgement
				// was lost, as a claim may: its lease is ended once the
				// store answers (the key keeps the transaction ID).
				s.freeLater(entry, s.leaseEnder(scoped, entry))
			}
			writeError(w, s.storeUnavailable("idempotency", err))
			return
		}
		if !ok {
			writeInFlight(w)
			return
		}
	}
	out := s.pay(ctx, p, entry.TxnID, start, &keyClaim{scoped: scoped, entry: entry, takeover: !claimed})
	if !out.keep {
		fctx, cancel := s.freeContext(ctx, writeBy)
		defer cancel()
		if claimed {
			// Nothing was decided: the client may retry with the same key.
			if err := s.idem.Release(fctx, scoped, entry); err != nil {
				s.log.Warn("idempotency key not released yet; retrying", "err", err)
				s.releaseLater(scoped, entry)
			}
		} else {
			// Nothing was decided, but the request whose claim this took
			// over may have reached the gateway under this transaction ID
			// before it died: the key stays bound to it. Its lease ends
			// now, so the client's retry takes it over at once and runs
			// the payment under the same ID, where a release would let
			// the retry claim the key anew under another.
			s.endLease(fctx, scoped, entry)
		}
	}
	s.answer(w, out)
}

// freeContext bounds the freeing of the key of an answer that decided
// nothing (a release, or the end of a takeover's lease), which comes
// before the answer: a commitTimeout, and at most until writeSlack/2
// before writeBy, the answer's write deadline, which the payment and its
// audit wait may have brought near. A free that runs out of it is retried
// in the background (freeLater), and the answer is written in time.
func (s *Service) freeContext(ctx context.Context, writeBy time.Time) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), min(s.commitTimeout(), time.Until(writeBy)-writeSlack/2))
}

// endLease ends the lease of e, a claim taken over whose payment decided
// nothing, so that the next request with the key takes it over at once.
// The lease ends leaseSpare back, the minute claimLease keeps to spare
// for replicas' clocks that disagree: a replica whose clock is behind this
// one's takes the claim over at once too. A lease that could not be ended
// (the store out of reach) is ended in the background once the store is
// back (freeLater); the requests with the key get 409 until then.
func (s *Service) endLease(ctx context.Context, scoped string, e IdemEntry) {
	end := s.leaseEnder(scoped, e)
	if err := end(ctx); err != nil {
		s.log.Warn("idempotency claim taken over not ended yet; retrying", "transaction_id", e.TxnID, "err", err)
		s.freeLater(e, end)
	}
}

// leaseEnder returns the call that ends the lease of e, the claim of
// scoped, leaseSpare back (endLease); a claim changed meanwhile is left
// alone.
func (s *Service) leaseEnder(scoped string, e IdemEntry) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, _, err := s.idem.Renew(ctx, scoped, e, s.cfg.now().Add(-leaseSpare))
		return err
	}
}

// writeInFlight answers a request whose Idempotency-Key another request
// holds: 409, retry in a second.
func writeInFlight(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeError(w, &requestError{Status: http.StatusConflict, Code: "idempotency_in_flight",
		Message: "a request with this Idempotency-Key is still being processed; retry later"})
}

// abandoned reports whether a claim without a record was left by a request
// that can no longer finish: its lease ran out (which outlasts the
// request's deadline: claimLease), or it was made by an
// earlier run of this instance (which the data dir's lock proves dead). A
// claim whose payment this process is still storing in the background
// (commitLater) is never abandoned, however long the store stays out of
// reach: running it again would charge it again.
func (s *Service) abandoned(e IdemEntry) bool {
	if _, storing := s.committing.Load(e.TxnID); storing {
		return false
	}
	if !s.cfg.now().Before(e.leaseEnd()) {
		return true
	}
	instance, _, _ := strings.Cut(e.Owner, "/")
	return instance == s.cfg.Instance && e.Owner != s.owner
}

// keyScope is the prefix that keeps one API principal's idempotency keys
// apart from another's (principalScope): the same whichever of its tokens
// a request carries, or none.
func (s *Service) keyScope(*http.Request) string {
	return s.scope
}

// storeUnavailable is the answer when a store failed before anything was
// charged: 503, retry later. A full store is counted.
func (s *Service) storeUnavailable(store string, err error) *requestError {
	if errors.Is(err, ErrStoreFull) {
		s.storeRefused.WithLabelValues(store).Inc()
		s.log.Warn("store full; payment refused", "store", store, "err", err)
		return &requestError{Status: http.StatusServiceUnavailable, Code: "store_full", RetryAfter: 30 * time.Second,
			Message: "the " + store + " store is full; retry later"}
	}
	s.log.Error("store unavailable", "store", store, "err", err)
	return &requestError{Status: http.StatusServiceUnavailable, Code: "store_unavailable", RetryAfter: time.Second,
		Message: "the " + store + " store is unavailable; retry later"}
}

// payOutcome is the answer to a payment and whether its idempotency key
// keeps it.
type payOutcome struct {
	code       int
	retryAfter int
	body       []byte
	keep       bool // decided: a replay with the key gets this answer
}

func (s *Service) answer(w http.ResponseWriter, out payOutcome) {
	if out.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(out.retryAfter))
	}
	writeRaw(w, out.code, out.body)
}

// keyClaim is the idempotency claim a payment runs under: its scoped key
// and the entry stored for it.
type keyClaim struct {
	scoped string
	entry  IdemEntry
	// takeover is set when the claim took over an abandoned one: the
	// payment runs again under its transaction ID.
	takeover bool
}

// pay runs one payment through the pipeline and stores what was decided
// (commit) before it returns the answer. claim is the request's
// Idempotency-Key claim, with which a retry is safe; nil without a key.
func (s *Service) pay(ctx context.Context, p Payment, txnID string, start time.Time, claim *keyClaim) payOutcome {
	extra := p.extraBytes()  // what its metadata adds to its record
	s.levels.inflight.Add(1) // until its record is stored, or is not to be
	s.levels.inflightBytes.Add(extra)
	defer func() {
		s.levels.inflight.Add(-1)
		s.levels.inflightBytes.Add(-extra)
	}()
	sig := tai.Signal[Payment]{ID: txnID, Kind: "payment", Key: p.CustomerID, Time: start, Payload: p}
	var sent gatewayCall
	var hold spendHold
	pctx := context.WithValue(context.WithValue(ctx, gatewayCallKey{}, &sent), spendHoldKey{}, &hold)
	pctx = context.WithValue(pctx, paymentBytesKey{}, extra)
	res, err := s.pipeline.Process(pctx, sig)
	// The payment's audit line is written before its answer goes out: a
	// process killed after answering keeps it (written, if not synced;
	// kaizen.Audit.WaitWritten). The writer is idle by then, as a rule:
	// the commit below takes longer. A trail that failed hands its lines
	// to OnUnwritten, which logs them. The wait has a deadline of its
	// own: the payment's may be over (it ran out of time, and the money
	// may have moved), and the answer's write deadline leaves room for it.
	defer func() {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.commitTimeout())
		defer cancel()
		_ = s.audit.WaitWritten(wctx)
	}()
	status, code, retryAfter := outcome(res, err)
	resp := PaymentResponse{
		TransactionID: sig.ID,
		Status:        status,
		Amount:        p.Amount,
		Currency:      p.Currency,
		CustomerID:    p.CustomerID,
		MerchantID:    p.MerchantID,
		Metadata:      p.Metadata,
		Timestamp:     s.cfg.now().UTC(),
		FraudScore:    math.Round(res.Decision.Score*1000) / 1000,
		Error:         outcomeError(status, err),
		TraceID:       res.Span.TraceID.String(),
	}
	for _, c := range res.Decision.Contributions {
		if c.Reason != "" {
			resp.Reasons = append(resp.Reasons, c.Reason)
		}
		if c.Score > 0 {
			s.fraudRules.WithLabelValues(c.Rule).Inc()
		}
	}
	if status == StatusSuccess {
		resp.GatewayResponse = &res.Value.Gateway
	}
	if tai.OutcomeOf(err) == tai.Failed && status != StatusRateLimited {
		s.log.Warn("payment failed", "transaction_id", sig.ID, "err", err)
	}
	moneyMayHaveMoved := status == StatusSuccess || sent.Load() && !errors.Is(err, ErrGatewayDeclined)
	decided := status == StatusFraudBlocked || status == StatusReview || moneyMayHaveMoved
	// A hold an earlier run of the payment took (its process died, the
	// money perhaps moved) is not this run's to give back: it stays,
	// as a hold whose payment may have moved money does. Only a run
	// that took a claim over has an earlier run: its Reserve answered
	// as a repeat (Again), or not answered at all, may be that run's.
	// A new transaction's is its own, whatever the answer said — a
	// repeat is its own Reserve sent again after its reply was lost —
	// and is given back if it was stored.
	rerun := claim != nil && claim.takeover
	if h, held := hold.taken(); held && !moneyMayHaveMoved && !(rerun && (h.again || h.unanswered)) {
		s.releaseHold(ctx, sig.ID, h)
	}
	resp.ProcessingTimeMS = float64(time.Since(start).Microseconds()) / 1000
	body, mErr := json.Marshal(resp)
	if mErr != nil {
		return payOutcome{code: http.StatusInternalServerError, body: []byte(`{"error":{"code":"internal","message":"could not encode the response"}}`)}
	}
	if !decided {
		s.countPayment(status)
		return payOutcome{code: code, retryAfter: retryAfter, body: body}
	}
	sp := storedPayment{Code: code, Status: status, Response: body, answeredAt: resp.Timestamp}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.commitTimeout())
	defer cancel()
	stored, err := s.commit(cctx, p, sig.ID, sp)
	if err == nil {
		s.countPayment(stored.Status)
		return payOutcome{code: stored.Code, body: stored.Response, keep: true}
	}
	if !moneyMayHaveMoved {
		// Nothing was charged: refuse, and let the client retry.
		e := s.storeUnavailable("payments", err)
		return payOutcome{code: e.Status, retryAfter: httpapi.RetryAfterSeconds(e.RetryAfter), body: errorJSON(e)}
	}
	// The money may have moved and its record is not stored: keep
	// trying in the background. The key stays claimed, so a retry with
	// it waits for this payment instead of charging again.
	for _, store := range fullStores(err) {
		s.storeRefused.WithLabelValues(store).Inc()
	}
	s.log.Warn("payment charged but not recorded; retrying in the background", "transaction_id", sig.ID, "err", err)
	s.commitLater(p, sig.ID, sp, claim)
	// Without a key a retry is a new payment: it would charge again.
	next := "retry with the same Idempotency-Key, or GET /payment/" + sig.ID + " later"
	if claim == nil {
		next = "GET /payment/" + sig.ID + " later; do not send it again: without an Idempotency-Key that is a new payment"
	}
	e := &requestError{Status: http.StatusInternalServerError, Code: "outcome_pending", RetryAfter: 5 * time.Second,
		Message: "payment " + sig.ID + " went to the gateway but is not recorded yet; " + next,
		Details: map[string]any{"transaction_id": sig.ID}}
	return payOutcome{code: e.Status, retryAfter: httpapi.RetryAfterSeconds(e.RetryAfter), body: errorJSON(e), keep: true}
}

// releaseHold gives back the day's spend the fraud lookup held for a
// payment that was not charged. A release that fails leaves the hold in
// place until the day ends: the customer's later payments that day are
// judged as if this one had been charged, which errs on the side of the
// daily limit.
func (s *Service) releaseHold(ctx context.Context, txnID string, h heldSpend) {
	if err := s.state.Release(context.WithoutCancel(ctx), h.customer, txnID, h.currency, h.minor, h.at); err != nil {
		s.log.Warn("day's spend held for a payment not charged was not given back", "transaction_id", txnID, "err", err)
	}
}

// gatewayCall records, for one payment, whether the action called the
// gateway: an answer decides a payment (its idempotency key keeps it) when
// it is a charge, a fraud verdict, or a gateway failure after which the
// money may have moved — anything but the gateway's clear "no". Every other
// failure — rate limited, breaker open, line stopped, a fraud check that
// could not run, a gateway that declined — moved no money and asks the
// client to retry.
type gatewayCall struct{ atomic.Bool }

type gatewayCallKey struct{}

// commit stores a decided payment before its answer is sent — a
// transactional outbox: its record and, for a charge, its confirmation,
// written together and each acknowledged by JetStream. A process killed
// between the two acknowledgements leaves one without the other, and
// neither answer sent: a confirmation without its record puts the record
// back when it is consumed, and a record without its confirmation gets it
// when the payment's key is replayed or taken over. It returns the payment
// as stored: the one stored before, if an earlier attempt got there first.
func (s *Service) commit(ctx context.Context, p Payment, txnID string, sp storedPayment) (storedPayment, error) {
	if sp.Status != StatusSuccess {
		return s.records.Create(ctx, txnID, sp)
	}
	published := make(chan error, 1)
	go func() { published <- s.publishConfirmation(ctx, s.confirmation(p, txnID, sp)) }()
	stored, err := s.records.Create(ctx, txnID, sp)
	return stored, errors.Join(err, <-published)
}

// confirmation is the outbox message of a charge. It is charged at its
// answer's timestamp: a confirmation stored again later (by a commit
// retried in the background, or a replay of the payment's key) says when
// the payment was charged, not when it was stored again.
func (s *Service) confirmation(p Payment, txnID string, sp storedPayment) kanban.Message[Confirmation] {
	var answer struct {
		Timestamp time.Time `json:"timestamp"`
	}
	at := sp.answeredAt
	if at.IsZero() {
		at = s.cfg.now()
		if json.Unmarshal(sp.Response, &answer) == nil && !answer.Timestamp.IsZero() {
			at = answer.Timestamp
		}
	}
	return kanban.Message[Confirmation]{ID: txnID, Key: p.CustomerID, Payload: Confirmation{
		TransactionID: txnID, CustomerID: p.CustomerID, MerchantID: p.MerchantID,
		Minor: p.Minor, Currency: p.Currency, ChargedAt: at.UTC(), Payment: sp,
	}}
}

// commitLater retries a commit that failed after the money may have
// moved, with growing waits, until it is stored or the service closes.
// While it retries it keeps the payment's idempotency claim (claim, nil
// without a key) alive, renewing its lease (renewClaim):
// this process never takes over a claim it is storing (committing), but
// another replica knows only the lease, and past it would run the payment
// again and charge it a second time.
func (s *Service) commitLater(p Payment, txnID string, sp storedPayment, claim *keyClaim) {
	if !s.pending.begin() {
		// Close has stopped the background work: a request cut off at
		// shutdown got here after it.
		s.log.Error("payment not recorded at shutdown", "transaction_id", txnID)
		return
	}
	s.pendingGauge.Inc()
	extra := p.extraBytes()
	s.levels.inflight.Add(1) // its record still needs its place in the stores
	s.levels.inflightBytes.Add(extra)
	s.committing.Store(txnID, struct{}{})
	go func() {
		defer s.pending.end()
		defer s.pendingGauge.Dec()
		defer s.levels.inflightBytes.Add(-extra)
		defer s.levels.inflight.Add(-1)
		defer s.committing.Delete(txnID)
		var held IdemEntry
		if claim != nil {
			held = claim.entry
		}
		recorded := s.retryLater(time.Time{}, func(ctx context.Context, attempt int) bool {
			if claim != nil {
				held = s.renewClaim(ctx, claim.scoped, held)
			}
			stored, err := s.commit(ctx, p, txnID, sp)
			if err != nil {
				s.log.Warn("payment not recorded yet; retrying", "transaction_id", txnID, "err", err)
				return false
			}
			s.countPayment(stored.Status)
			s.log.Info("payment recorded after retrying", "transaction_id", txnID, "attempts", attempt)
			return true
		})
		if !recorded {
			s.log.Error("payment not recorded at shutdown", "transaction_id", txnID)
		}
	}()
}

// renewClaim moves the lease of e, the claim of a payment being stored in
// the background, to a whole claimLease from now once less than half of it
// and leaseSpare are left, and returns the claim as it then stands. A
// renewal that fails is tried again at the next attempt. Renewed at half
// alone, a 2-minute lease would keep but the minute a replica's clock may
// be ahead, less the time to the next attempt: such a replica would see
// it run out, and run the payment again while it is being stored. A
// renewal whose acknowledgement was lost may have landed: the claim
// stored with another lease is still this payment's (nothing else of
// this process changes it while it is stored, and another replica's
// takeover has an owner of its own), and it is renewed from there.
func (s *Service) renewClaim(ctx context.Context, scoped string, e IdemEntry) IdemEntry {
	lease := claimLease(s.cfg.RequestTimeout)
	now := s.cfg.now()
	if e.leaseEnd().Sub(now) >= lease/2+leaseSpare {
		return e
	}
	renewed, ok, err := s.idem.Renew(ctx, scoped, e, now.Add(lease))
	if err == nil && !ok && renewed.sameClaim(e) {
		renewed, ok, err = s.idem.Renew(ctx, scoped, renewed, now.Add(lease))
	}
	switch {
	case err != nil:
		s.log.Warn("idempotency claim of a payment being stored not renewed yet", "transaction_id", e.TxnID, "err", err)
		return e
	case !ok:
		s.log.Warn("idempotency claim of a payment being stored changed meanwhile; not renewed", "transaction_id", e.TxnID)
		return e
	}
	return renewed
}

// confirmAgain stores the confirmation of a charge whose key is replayed
// while the charge is unconfirmed. It tries once without waiting for room
// in the queue; when the queue is full or out of reach it keeps trying in
// the background, with growing waits, until the confirmation is stored,
// the charge is confirmed meanwhile (by a confirmation queued before), or
// the service closes — one such retry per charge however often its key is
// replayed, and at most maxRepublishes at once (beyond, or once the
// service is closing, the replay is answered and nothing more is tried:
// the charge's confirmation was queued with it, unless its process died
// in between, and its next replay tries again).
func (s *Service) confirmAgain(ctx context.Context, msg kanban.Message[Confirmation]) {
	err := s.sendConfirmation(ctx, msg, s.queue.TryPublish)
	if err == nil {
		return
	}
	if _, retrying := s.republishing.LoadOrStore(msg.ID, struct{}{}); retrying {
		return
	}
	s.freeMu.Lock()
	if s.freesClosed || s.republishN >= s.maxRepublishes {
		closing := s.freesClosed
		s.freeMu.Unlock()
		s.republishing.Delete(msg.ID)
		s.log.Warn("confirmation of a replayed charge not stored again in the background; its next replay tries again",
			"transaction_id", msg.ID, "err", err, "closing", closing, "max_republishes", s.maxRepublishes)
		return
	}
	s.republishN++
	s.republishes.Add(1)
	s.freeMu.Unlock()
	s.log.Warn("confirmation of a replayed charge not stored again yet; retrying in the background", "transaction_id", msg.ID, "err", err)
	go func() {
		defer s.republishes.Done()
		defer func() {
			s.republishing.Delete(msg.ID)
			s.freeMu.Lock()
			s.republishN--
			s.freeMu.Unlock()
		}()
		s.retryLater(time.Time{}, func(ctx context.Context, attempt int) bool {
			rec, found, err := s.records.Get(ctx, msg.ID)
			if err == nil && found && rec.ConfirmedAt != nil {
				return true
			}
			if err := s.publishConfirmation(ctx, msg); err != nil {
				return false
			}
			s.log.Info("confirmation of a replayed charge stored after retrying", "transaction_id", msg.ID, "attempts", attempt)
			return true
		})
	}()
}

// releaseLater retries the release of an idempotency claim that failed
// (the store out of reach: a NATS node lost and its groups electing new
// leaders), so that the key is free for a retry soon after the store is
// back instead of when the claim's lease runs out. Release compares the
// whole claim, so a claim taken over meanwhile is left alone.
func (s *Service) releaseLater(scoped string, entry IdemEntry) {
	s.freeLater(entry, func(ctx context.Context) error { return s.idem.Release(ctx, scoped, entry) })
}

// maxBackgroundFrees bounds the keys freed in the background at once
// (freeLater): during a long outage of the store every keyed request that
// decided nothing would keep a retry for up to its claim's lease.
const maxBackgroundFrees = 1024

// freeLater retries free, which frees the key of entry (releases its
// claim, or ends its lease) and failed, in the background. It gives up
// when the lease has run out (the claim can be taken over by then) or the
// service stops. With maxFrees retries running already, or the service
// closing, it starts none: the key is free again when its claim's lease
// runs out; one left so at the cap is counted
// (payment_idempotency_frees_dropped_total), and either is logged.
func (s *Service) freeLater(entry IdemEntry, free func(ctx context.Context) error) {
	s.freeMu.Lock()
	if s.freesClosed || s.freeing >= s.maxFrees {
		closing := s.freesClosed
		s.freeMu.Unlock()
		if !closing {
			s.freesDropped.Inc()
		}
		s.log.Warn("idempotency key not freed in the background; it is free again when its claim's lease runs out",
			"transaction_id", entry.TxnID, "lease", entry.leaseEnd().Sub(entry.Started), "closing", closing, "max_frees", s.maxFrees)
		return
	}
	s.freeing++
	s.releasing.Add(1)
	s.freeMu.Unlock()
	go func() {
		defer s.releasing.Done()
		defer func() {
			s.freeMu.Lock()
			s.freeing--
			s.freeMu.Unlock()
		}()
		deadline := time.Now().Add(entry.leaseEnd().Sub(entry.Started))
		freed := s.retryLater(deadline, func(ctx context.Context, attempt int) bool {
			if err := free(ctx); err != nil {
				return false
			}
			s.log.Info("idempotency key freed after retrying", "transaction_id", entry.TxnID, "attempts", attempt)
			return true
		})
		if !freed && s.bg.Err() == nil {
			s.log.Error("idempotency key not freed; it is free again when its claim's lease runs out",
				"transaction_id", entry.TxnID, "lease", entry.leaseEnd().Sub(entry.Started))
		}
	}()
}

// retryLater calls try, with a context bounded by commitTimeout, after
// waits doubling from 100 ms to at most 5 s, until try reports success,
// the service closes, or deadline passes (a zero deadline: never). It
// reports whether try succeeded. The background retries of a commit, of a
// replayed charge's confirmation and of freeing a key (freeLater) run on
// it.
func (s *Service) retryLater(deadline time.Time, try func(ctx context.Context, attempt int) bool) bool {
	wait := 100 * time.Millisecond
	for attempt := 1; deadline.IsZero() || time.Now().Before(deadline); attempt++ {
		t := time.NewTimer(wait)
		select {
		case <-s.bg.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.bg, s.commitTimeout())
		ok := try(ctx, attempt)
		cancel()
		if ok {
			return true
		}
		wait = min(2*wait, 5*time.Second)
	}
	return false
}

// commitTimeout bounds one commit: a third of the request deadline, at
// most 5 s.
func (s *Service) commitTimeout() time.Duration {
	return min(5*time.Second, s.cfg.RequestTimeout/3)
}

// checkIdempotencyKey checks the Idempotency-Key headers of a request that
// has a key: one header, of visible ASCII, at most maxIdemKeyLen bytes.
func checkIdempotencyKey(keys []string) error {
	if len(keys) > 1 {
		return invalid("Idempotency-Key", "Idempotency-Key is given %d times; a request has one key", len(keys))
	}
	key := keys[0]
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
	// Read before the record, as handlePayment does: a commit stores the
	// record before it stops counting as storing.
	_, storing := s.committing.Load(id)
	p, ok, err := s.records.Get(r.Context(), id)
	if err != nil && r.Context().Err() != nil {
		// The client went away during the read, which its request's end
		// cut short: no store failed, and no one waits for an answer.
		return
	}
	if err != nil {
		writeError(w, s.storeUnavailable("payments", err))
		return
	}
	if !ok && storing {
		// Charged, and its record still being stored in the background
		// (its POST answered 500 outcome_pending): not "no payment".
		writeError(w, &requestError{Status: http.StatusServiceUnavailable, Code: "outcome_pending", RetryAfter: 5 * time.Second,
			Message: "payment " + id + " went to the gateway but is not recorded yet; retry later",
			Details: map[string]any{"transaction_id": id}})
		return
	}
	if !ok {
		writeError(w, &requestError{Status: http.StatusNotFound, Code: "not_found", Field: "id", Message: fmt.Sprintf("no payment %q here", clip(id))})
		return
	}
	rec, err := p.record()
	if err != nil {
		writeError(w, err)
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
		// Every refusal is counted, as a payment's are.
		refuse := func(err error) {
			s.countRequestError(err)
			writeError(w, err)
		}
		var in gatewaySettings
		body, err := httpapi.ReadBody(w, r, 4096)
		if err == nil {
			err = httpapi.Decode(body, &in)
		}
		if err != nil {
			refuse(err)
			return
		}
		var newLatency *time.Duration
		if in.LatencyMS != nil {
			if !(*in.LatencyMS >= 0 && *in.LatencyMS <= 60000) {
				refuse(invalid("latency_ms", "latency_ms %v is outside [0, 60000]", *in.LatencyMS))
				return
			}
			l := time.Duration(*in.LatencyMS * float64(time.Millisecond))
			newLatency = &l
		}
		// One change: a request setting one field leaves the other as
		// it is, even as another request sets that one.
		rate, latency, err := s.gateway.Change(in.FailureRate, newLatency)
		if err != nil {
			refuse(invalid("failure_rate", "%v", err))
			return
		}
		s.log.Info("gateway simulation changed", "failure_rate", rate, "latency", latency)
	}
	rate, latency := s.gateway.Settings()
	writeJSON(w, http.StatusOK, map[string]any{"failure_rate": rate, "latency_ms": float64(latency) / float64(time.Millisecond), "calls": s.gateway.Calls()})
}

// boardHandler serves the andon board. With an admin token all of it —
// the page, its state, its event stream and the cord — needs the token,
// as the admin API does (requireAdmin): as a Bearer token or as the
// password of HTTP Basic (any user name), which a browser asks for and
// then sends with the board's own requests and its links into the admin
// API. Without one the board was made read-only (no cord) and is served
// as the rest of the service: on loopback unless an API token is set.
func (s *Service) boardHandler() http.Handler {
	if !s.cfg.AdminToken.IsSet() {
		return s.board
	}
	return s.requireAdmin(s.board)
}
