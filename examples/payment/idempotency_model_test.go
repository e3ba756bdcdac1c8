package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// modelAmount is an amount of the model's payments with the spellings of
// it that parse to the same value.
type modelAmount struct {
	spellings []string
	review    bool // the built-in rules with a review band hold it (score 0.4)
}

var modelAmounts = []modelAmount{
	{spellings: []string{"10", "10.0", "10.00", "1e1", "1000e-2", "0.1e2"}},
	{spellings: []string{"25.5", "25.50", "2.55e1", "2550e-2"}},
	{spellings: []string{"5000.01", "500001e-2", "5.00001e3"}, review: true},
}

// modelPayment is what a request asks for: two requests are the same when
// their modelPayments are equal, however their bodies are spelled.
type modelPayment struct {
	customer int    // index into the check's customers
	amount   int    // index into modelAmounts
	order    string // metadata "order", "" for no metadata
	country  string // location.country: "", "DE", or "KP" (blacklisted)
}

// modelCustomerLimit is the services' payments a minute per customer.
const modelCustomerLimit = 3

// modelPrincipal is one API principal, its token and the service that
// takes it; both services share one NATS server, and so one idempotency
// bucket.
type modelPrincipal struct {
	name  string
	token string
	ts    *testService
}

// modelKey is what the model holds for an Idempotency-Key of a principal:
// the first decided answer, with the request that got it.
type modelKey struct {
	payment modelPayment
	code    int
	raw     []byte
	header  http.Header
	txn     string
}

// gatewayMode is how the gateway answers a request's charge.
type gatewayMode int

const (
	gatewayApproves gatewayMode = iota
	gatewayDeclines             // 502 gateway_failed: nothing charged, the key released
	gatewayHangs                // 504 timeout: the money may have moved, the key kept
)

// idemModel is the payment service's idempotency as its README states it,
// for the requests of one check.
type idemModel struct {
	client    *http.Client
	seen      *modelTally
	prefix    string
	customers []string
	keys      map[string]modelKey // principal/key → its decided answer
	limit     map[string]int      // principal/customer → payments admitted since the last wait
	attempts  map[string]int      // customer → attempts the fraud rules counted since the last wait
	calls     map[string]int64    // principal → gateway calls expected
	failures  map[string]int      // principal → consecutive gateway failures
	stopped   map[string]bool     // principal → its line is stopped
	hangsLeft int                 // gateway timeouts this check may still ask for
}

// modelReply is an answer as the client got it.
type modelReply struct {
	code   int
	header http.Header
	raw    []byte
}

// TestIdempotencyModel sends random sequences of POST /payment requests to
// two services of different API principals sharing one idempotency bucket,
// with a few Idempotency-Keys, bodies that ask for the same payment spelled
// otherwise or for another, invalid bodies, a stopped line, customers past
// their limit, blacklisted countries, amounts held for review and a
// gateway that declines or hangs, and checks every answer against the
// README's idempotency: a key's first decided answer (SUCCESS, REVIEW,
// FRAUD_BLOCKED, a gateway timeout) is replayed byte for byte to the same
// request, another request with the key is a 422, keys belong to their
// principal, answers that ask for a retry (429, 502, 503) leave the key
// free and no payment stored, and a key charges at most once, also when
// sent by several clients at once.
func TestIdempotencyModel(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	clock := newManualClock()
	rules := reviewRules(t)
	principal := func(name string) *modelPrincipal {
		cfg := testConfig(t)
		cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
		cfg.Instance = name
		cfg.APIPrincipal = "shop-" + name
		cfg.APIToken = svc.NewSecret("token-" + name + "-0123456789")
		cfg.Clock = clock
		cfg.FraudRules = rules
		// The gateway's share of it is 2 s: a gateway that hangs times
		// out in that, not in the default's 25 s.
		cfg.RequestTimeout = 3 * time.Second
		// Three payments a minute per customer and principal: six, over
		// the two, are more attempts than the velocity rule allows.
		cfg.CustomerLimit = modelCustomerLimit
		return &modelPrincipal{name: name, token: cfg.APIToken.Reveal(), ts: startService(t, cfg)}
	}
	principals := []*modelPrincipal{principal("a"), principal("b")}
	client := &http.Client{Timeout: time.Minute}
	var checks atomic.Int64
	seen := &modelTally{}
	defer func() { t.Logf("answers checked: %s", seen) }()

	rapid.Check(t, func(rt *rapid.T) {
		n := checks.Add(1)
		m := &idemModel{
			client:    client,
			seen:      seen,
			prefix:    fmt.Sprintf("m%d-", n),
			keys:      map[string]modelKey{},
			limit:     map[string]int{},
			attempts:  map[string]int{},
			calls:     map[string]int64{},
			failures:  map[string]int{},
			stopped:   map[string]bool{},
			customers: []string{fmt.Sprintf("m%d_c0", n), fmt.Sprintf("m%d_c1", n)},
		}
		// A gateway timeout takes the gateway's whole deadline: few
		// checks ask for one (a draw that shrinks to none).
		if rapid.IntRange(0, 11).Draw(rt, "hangs") == 11 {
			m.hangsLeft = 1
			seen.add("check allowing a timeout")
		}
		for _, p := range principals {
			p.ts.line.Start()
			require.NoError(rt, p.ts.gateway.Set(0, 0))
			// A charge ends the breaker's run of failures that the
			// checks before may have left.
			r, err := postPayment(client, p, "", fmt.Sprintf(`{"amount":1,"customer_id":"m%d_start","currency":"USD","merchant_id":"merc_m"}`, n))
			require.NoError(rt, err)
			require.Equal(rt, http.StatusOK, r.code, string(r.raw))
			m.calls[p.name] = p.ts.gateway.Calls()
		}
		keys := make([]string, 6)
		for i := range keys {
			keys[i] = fmt.Sprintf("%sk%d", m.prefix, i)
		}
		steps := rapid.IntRange(1, 12).Draw(rt, "steps")
		for range steps {
			p := rapid.SampledFrom(principals).Draw(rt, "principal")
			switch rapid.IntRange(0, 19).Draw(rt, "action") {
			case 0:
				m.wait(clock)
			case 1:
				m.toggleLine(p)
			case 2, 3:
				m.invalid(rt, p, rapid.SampledFrom(keys).Draw(rt, "key"))
			case 4, 5, 6:
				m.concurrent(rt, p, rapid.SampledFrom(keys).Draw(rt, "key"))
			default:
				// Without a key, too: each such request is a payment of
				// its own.
				m.send(rt, p, rapid.SampledFrom(append(keys, "", "")).Draw(rt, "key"))
			}
			for _, q := range principals {
				require.Equal(rt, m.calls[q.name], q.ts.gateway.Calls(), "gateway calls at %s", q.name)
			}
		}
		// Every decided key still replays its answer, however the request
		// is spelled now.
		for _, p := range principals {
			p.ts.line.Start()
			m.stopped[p.name] = false
			for _, key := range keys {
				if k, ok := m.keys[p.name+"/"+key]; ok {
					r := m.post(rt, p, key, m.body(rt, k.payment))
					m.requireReplay(rt, k, r)
				}
			}
		}
		for _, q := range principals {
			require.Equal(rt, m.calls[q.name], q.ts.gateway.Calls(), "gateway calls at %s", q.name)
		}
	})
}

// wait moves the clock past the customers' limit and the velocity window.
func (m *idemModel) wait(clock *manualClock) {
	clock.Advance(2 * time.Minute)
	clear(m.limit)
	clear(m.attempts)
}

func (m *idemModel) toggleLine(p *modelPrincipal) {
	if m.stopped[p.name] {
		p.ts.line.Start()
	} else {
		p.ts.line.Stop("maintenance")
	}
	m.stopped[p.name] = !m.stopped[p.name]
}

// drawPayment draws what a request asks for.
func (m *idemModel) drawPayment(rt *rapid.T) modelPayment {
	return modelPayment{
		// Mostly the first customer, so that it runs into its limit.
		customer: rapid.SampledFrom([]int{0, 0, 0, 1}).Draw(rt, "customer"),
		amount:   rapid.IntRange(0, len(modelAmounts)-1).Draw(rt, "amount"),
		order:    rapid.SampledFrom([]string{"", "o1", "o2"}).Draw(rt, "order"),
		country:  rapid.SampledFrom([]string{"", "DE", "KP"}).Draw(rt, "country"),
	}
}

// drawRequest draws a request for key: mostly the one the key has
// answered, when it has, and otherwise any.
func (m *idemModel) drawRequest(rt *rapid.T, p *modelPrincipal, key string) modelPayment {
	if k, ok := m.keys[p.name+"/"+key]; ok && rapid.Bool().Draw(rt, "same") {
		return k.payment
	}
	return m.drawPayment(rt)
}

// body spells pay as JSON in one of the many ways that parse to it.
func (m *idemModel) body(rt *rapid.T, pay modelPayment) string {
	currency := rapid.SampledFrom([]string{"USD", "usd", "Usd"}).Draw(rt, "currency")
	fields := []string{
		`"amount":` + rapid.SampledFrom(modelAmounts[pay.amount].spellings).Draw(rt, "spelling"),
		`"customer_id":"` + m.customers[pay.customer] + `"`,
		`"currency":"` + currency + `"`,
		`"merchant_id":"merc_m"`,
	}
	var meta []string
	if pay.order != "" {
		meta = append(meta, `"order":"`+pay.order+`"`)
	}
	if rapid.Bool().Draw(rt, "null metadata key") {
		meta = append(meta, `"note":null`) // reads as absent
	}
	switch {
	case len(meta) > 0:
		meta = rapid.Permutation(meta).Draw(rt, "metadata order")
		fields = append(fields, `"metadata":{`+strings.Join(meta, ",")+`}`)
	case rapid.Bool().Draw(rt, "empty metadata"):
		fields = append(fields, `"metadata":{}`)
	}
	switch {
	case pay.country != "":
		c := pay.country
		if rapid.Bool().Draw(rt, "lower-case country") {
			c = strings.ToLower(c)
		}
		fields = append(fields, `"location":{"country":"`+c+`"}`)
	case rapid.Bool().Draw(rt, "empty location"):
		fields = append(fields, `"location":{}`)
	}
	fields = rapid.Permutation(fields).Draw(rt, "field order")
	sep := rapid.SampledFrom([]string{",", ", ", " ,\n "}).Draw(rt, "separator")
	return "{" + strings.Join(fields, sep) + "}"
}

// invalid sends a body that fails validation with key: a 400 that neither
// runs nor touches the key, whatever the key holds.
func (m *idemModel) invalid(rt *rapid.T, p *modelPrincipal, key string) {
	c := m.customers[0]
	body := rapid.SampledFrom([]string{
		`{"amount":0,"customer_id":"` + c + `","currency":"USD","merchant_id":"merc_m"}`,
		`{"amount":10.001,"customer_id":"` + c + `","currency":"USD","merchant_id":"merc_m"}`,
		`{"amount":10,"customer_id":"` + c + `","currency":"XXX","merchant_id":"merc_m"}`,
		`{"amount":10,"customer_id":"` + c + `","currency":"USD","merchant_id":"merc_m","amout":10}`,
		`{"amount":10,"customer_id":"` + c + `","currency":"USD","merchant_id":"merc_m","location":{"country":"DEU"}}`,
	}).Draw(rt, "invalid body")
	r := m.post(rt, p, key, body)
	require.Equal(rt, http.StatusBadRequest, r.code, "%s\n%s", body, r.raw)
	require.Equal(rt, "invalid_request", errorCode(rt, r), string(r.raw))
	m.seen.add("400 invalid")
}

// drawGateway sets the gateway of p to answer the next charge as drawn.
// It never lets the breaker see 5 failures in a row: an open breaker
// probes on the wall clock.
func (m *idemModel) drawGateway(rt *rapid.T, p *modelPrincipal) gatewayMode {
	mode := gatewayApproves
	if m.failures[p.name] < 4 {
		switch rapid.IntRange(0, 4).Draw(rt, "gateway") {
		case 3:
			mode = gatewayDeclines
		case 4:
			if m.hangsLeft > 0 {
				mode = gatewayHangs
			}
		}
	}
	switch mode {
	case gatewayDeclines:
		require.NoError(rt, p.ts.gateway.Set(1, 0))
	case gatewayHangs:
		require.NoError(rt, p.ts.gateway.Set(0, time.Minute))
	default:
		require.NoError(rt, p.ts.gateway.Set(0, 0))
	}
	return mode
}

// expect is the answer the model predicts for a request that runs.
type expect struct {
	code   int
	status string
	error  string // the error code, "" for none
	kept   bool   // decided: the key keeps it
	retry  bool   // Retry-After is set
}

// run predicts what pay gets at p when it runs (its key holds no answer),
// and counts what running it spends.
func (m *idemModel) run(p *modelPrincipal, pay modelPayment, mode gatewayMode) expect {
	customer := m.customers[pay.customer]
	switch {
	case m.stopped[p.name]:
		return expect{code: http.StatusServiceUnavailable, status: StatusFailed, error: "line_stopped", retry: true}
	case m.limit[p.name+"/"+customer] >= modelCustomerLimit:
		return expect{code: http.StatusTooManyRequests, status: StatusRateLimited, error: "rate_limited", retry: true}
	}
	m.limit[p.name+"/"+customer]++
	m.attempts[customer]++ // the fraud rules' state is shared
	switch {
	case pay.country == "KP" || m.attempts[customer] > 5:
		return expect{code: http.StatusPaymentRequired, status: StatusFraudBlocked, error: "fraud_blocked", kept: true}
	case modelAmounts[pay.amount].review:
		return expect{code: http.StatusAccepted, status: StatusReview, kept: true}
	}
	m.calls[p.name]++
	switch mode {
	case gatewayDeclines:
		m.failures[p.name]++
		return expect{code: http.StatusBadGateway, status: StatusFailed, error: "gateway_failed"}
	case gatewayHangs:
		m.failures[p.name]++
		m.hangsLeft--
		return expect{code: http.StatusGatewayTimeout, status: StatusFailed, error: "timeout", kept: true}
	}
	m.failures[p.name] = 0
	return expect{code: http.StatusOK, status: StatusSuccess, kept: true}
}

// send sends one request with key and checks its answer.
func (m *idemModel) send(rt *rapid.T, p *modelPrincipal, key string) {
	pay := m.drawRequest(rt, p, key)
	mode := m.drawGateway(rt, p)
	body := m.body(rt, pay)
	scoped := p.name + "/" + key
	if k, ok := m.keys[scoped]; ok && key != "" {
		r := m.post(rt, p, key, body)
		if k.payment == pay {
			m.requireReplay(rt, k, r)
			return
		}
		require.Equal(rt, http.StatusUnprocessableEntity, r.code, "another request with the key\n%s\n%s", body, r.raw)
		require.Equal(rt, "idempotency_key_reused", errorCode(rt, r), string(r.raw))
		m.seen.add("422 reused")
		return
	}
	want := m.run(p, pay, mode)
	r := m.post(rt, p, key, body)
	m.answered(rt, p, scoped, pay, want, r)
}

// answered checks r, the answer of a request that ran, against want, and
// keeps it for the key when it decided the payment.
func (m *idemModel) answered(rt *rapid.T, p *modelPrincipal, scoped string, pay modelPayment, want expect, r modelReply) {
	rt.Helper()
	require.Equal(rt, want.code, r.code, "%s: %s", scoped, r.raw)
	require.Empty(rt, r.header.Get("Idempotent-Replayed"), "run, not replayed: %s", r.raw)
	m.seen.add(fmt.Sprintf("%d %s", r.code, want.status))
	body := decode(rt, r)
	require.Equal(rt, want.status, body["status"], string(r.raw))
	require.Equal(rt, want.error, errorCode(rt, r), string(r.raw))
	if want.retry {
		require.Regexp(rt, `^[1-9][0-9]*$`, r.header.Get("Retry-After"), "asks for a retry: %s", r.raw)
	} else {
		require.Empty(rt, r.header.Get("Retry-After"), string(r.raw))
	}
	txn, _ := body["transaction_id"].(string)
	require.NotEmpty(rt, txn, string(r.raw))
	got := m.get(rt, p, txn)
	if !want.kept {
		require.Equal(rt, http.StatusNotFound, got.code, "an answer that asks for a retry is no payment: %s", got.raw)
		return
	}
	require.Equal(rt, http.StatusOK, got.code, string(got.raw))
	require.Equal(rt, want.status, decode(rt, got)["status"], string(got.raw))
	if strings.HasSuffix(scoped, "/") {
		return // no key
	}
	m.keys[scoped] = modelKey{payment: pay, code: r.code, raw: r.raw, header: r.header, txn: txn}
}

// concurrent sends one request with key from several clients at once:
// one runs, the others get its answer or 409 while it runs.
func (m *idemModel) concurrent(rt *rapid.T, p *modelPrincipal, key string) {
	pay := m.drawRequest(rt, p, key)
	scoped := p.name + "/" + key
	_, decided := m.keys[scoped]
	var want expect
	if !decided {
		require.NoError(rt, p.ts.gateway.Set(0, 0))
		want = m.run(p, pay, gatewayApproves)
		if !want.kept && want.code != http.StatusTooManyRequests && want.code != http.StatusServiceUnavailable {
			rt.Fatalf("a concurrent request that runs more than once is not modelled: %+v", want)
		}
	}
	clients := rapid.IntRange(2, 5).Draw(rt, "clients")
	bodies := make([]string, clients)
	for i := range bodies {
		bodies[i] = m.body(rt, pay)
	}
	replies := make([]modelReply, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { replies[i], errs[i] = postPayment(m.client, p, key, bodies[i]) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(rt, err)
	}
	if decided {
		k := m.keys[scoped]
		for _, r := range replies {
			if k.payment == pay {
				m.requireReplay(rt, k, r)
			} else {
				require.Equal(rt, http.StatusUnprocessableEntity, r.code, string(r.raw))
			}
		}
		return
	}
	var ran []modelReply
	var replayed []modelReply
	for _, r := range replies {
		switch {
		case r.code == http.StatusConflict:
			require.Equal(rt, "idempotency_in_flight", errorCode(rt, r), string(r.raw))
			m.seen.add("409 in flight")
			require.Equal(rt, "1", r.header.Get("Retry-After"))
		case r.header.Get("Idempotent-Replayed") == "true":
			replayed = append(replayed, r)
		default:
			ran = append(ran, r)
		}
	}
	if !want.kept {
		// Refused before anything ran, and released: each twin may run.
		require.Empty(rt, replayed, "a released answer is not replayed")
		for _, r := range ran {
			require.Equal(rt, want.code, r.code, string(r.raw))
			require.Equal(rt, want.error, errorCode(rt, r), string(r.raw))
		}
		return
	}
	require.Len(rt, ran, 1, "one of %d twins runs", clients)
	m.answered(rt, p, scoped, pay, want, ran[0])
	for _, r := range replayed {
		m.requireReplay(rt, m.keys[scoped], r)
	}
}

// requireReplay checks that r replays k's answer: its status, headers and
// bytes, marked as replayed.
func (m *idemModel) requireReplay(rt *rapid.T, k modelKey, r modelReply) {
	rt.Helper()
	require.Equal(rt, k.code, r.code, string(r.raw))
	require.Equal(rt, string(k.raw), string(r.raw), "replayed byte for byte")
	require.Equal(rt, "true", r.header.Get("Idempotent-Replayed"))
	m.seen.add(fmt.Sprintf("%d replayed", r.code))
	// The same headers, but for the replay's mark and the date.
	first, again := k.header.Clone(), r.header.Clone()
	for _, h := range []http.Header{first, again} {
		h.Del("Date")
		h.Del("Idempotent-Replayed")
	}
	require.Equal(rt, first, again)
}

func (m *idemModel) post(rt *rapid.T, p *modelPrincipal, key, body string) modelReply {
	rt.Helper()
	r, err := postPayment(m.client, p, key, body)
	require.NoError(rt, err)
	return r
}

func (m *idemModel) get(rt *rapid.T, p *modelPrincipal, txn string) modelReply {
	rt.Helper()
	req, err := http.NewRequest(http.MethodGet, p.ts.URL+"/payment/"+txn, nil)
	require.NoError(rt, err)
	req.Header.Set("Authorization", "Bearer "+p.token)
	r, err := roundTrip(m.client, req)
	require.NoError(rt, err)
	return r
}

// postPayment posts body to p with the Idempotency-Key key (none if
// key is empty); it is safe
// to call from several goroutines.
func postPayment(client *http.Client, p *modelPrincipal, key, body string) (modelReply, error) {
	req, err := http.NewRequest(http.MethodPost, p.ts.URL+"/payment", strings.NewReader(body))
	if err != nil {
		return modelReply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return roundTrip(client, req)
}

func roundTrip(client *http.Client, req *http.Request) (modelReply, error) {
	resp, err := client.Do(req)
	if err != nil {
		return modelReply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return modelReply{code: resp.StatusCode, header: resp.Header, raw: raw}, err
}

func decode(rt *rapid.T, r modelReply) map[string]any {
	rt.Helper()
	var body map[string]any
	require.NoError(rt, json.Unmarshal(r.raw, &body), string(r.raw))
	return body
}

func errorCode(rt *rapid.T, r modelReply) string {
	rt.Helper()
	e, _ := decode(rt, r)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// modelTally counts the kinds of answers a model test checked.
type modelTally struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *modelTally) add(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind]++
}

func (c *modelTally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.n)
}
