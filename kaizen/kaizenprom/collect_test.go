package kaizenprom_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen/internal/pipelinetest"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	m := series(t, g, name, labels)
	require.NotNil(t, m, "%s%v", name, labels)
	return m.GetGauge().GetValue()
}

func TestCollectorsNeedARegisterer(t *testing.T) {
	_, err := kaizenprom.NewJidokaCollector(nil, kaizenprom.CollectorOptions{})
	require.ErrorContains(t, err, "NewJidokaCollector: nil prometheus.Registerer")
	_, err = kaizenprom.NewHeijunkaCollector(nil, kaizenprom.CollectorOptions{})
	require.ErrorContains(t, err, "NewHeijunkaCollector: nil prometheus.Registerer")
	_, err = kaizenprom.NewKanbanCollector(nil, kaizenprom.CollectorOptions{})
	require.ErrorContains(t, err, "NewKanbanCollector: nil prometheus.Registerer")
	_, err = kaizenprom.NewKanbanCollector(prometheus.NewRegistry(), kaizenprom.CollectorOptions{Namespace: "a-b"})
	require.ErrorContains(t, err, `CollectorOptions.Namespace "a-b"`)
	_, err = kaizenprom.NewJidokaCollector(prometheus.NewRegistry(), kaizenprom.CollectorOptions{Namespace: "job:taikit"})
	require.ErrorContains(t, err, `CollectorOptions.Namespace "job:taikit"`, "colons are kept for recording rules")
	_, err = kaizenprom.NewKanbanCollector(prometheus.NewRegistry(), kaizenprom.CollectorOptions{ConstLabels: prometheus.Labels{"le": "x"}})
	require.ErrorContains(t, err, `kaizenprom: NewKanbanCollector: CollectorOptions.ConstLabels: "le"`)
}

func TestJidokaCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewJidokaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	again, err := kaizenprom.NewJidokaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	assert.Same(t, c, again, "a second registration returns the registered collector")

	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway"})
	require.NoError(t, err)
	require.NoError(t, c.AddBreaker(b))
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "payments"})
	require.NoError(t, err)
	require.NoError(t, c.AddLine(line))
	wd, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Name: "eu-west", Check: func(context.Context) error { return nil }})
	require.NoError(t, err)
	require.NoError(t, c.AddWatchdog(wd))

	// Emitted before any change.
	state := func(s string) float64 {
		return gaugeValue(t, reg, "taikit_breaker_state", map[string]string{"breaker": "gateway", "state": s})
	}
	assert.Equal(t, 1.0, state("closed"))
	assert.Equal(t, 0.0, state("open"))
	assert.Equal(t, 0.0, counterValue(t, reg, "taikit_breaker_transitions_total", map[string]string{"breaker": "gateway"}))
	assert.Equal(t, 0.0, gaugeValue(t, reg, "taikit_line_stopped", map[string]string{"line": "payments"}))
	assert.NotNil(t, series(t, reg, "taikit_line_stops_total", map[string]string{"line": "payments"}))
	assert.Equal(t, 1.0, gaugeValue(t, reg, "taikit_watchdog_healthy", map[string]string{"watchdog": "eu-west"}))

	b.Trip("manual")
	assert.Equal(t, 0.0, state("closed"))
	assert.Equal(t, 1.0, state("open"))
	b.Reset()
	assert.Equal(t, 1.0, state("closed"))
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_breaker_transitions_total", map[string]string{"breaker": "gateway"}))
	// A Reset of a closed breaker changes no state but starts a new
	// generation (it clears the counts), and the family, which reads the
	// generation, counts it: its help says so.
	b.Reset()
	assert.Equal(t, 3.0, counterValue(t, reg, "taikit_breaker_transitions_total", map[string]string{"breaker": "gateway"}))
	assert.Equal(t, "State changes of a circuit breaker, and Resets of a closed one (which clear its counts).",
		family(t, reg, "taikit_breaker_transitions_total").GetHelp())

	line.Stop("fraud spike")
	line.Start()
	line.Stop("again")
	assert.Equal(t, 1.0, gaugeValue(t, reg, "taikit_line_stopped", map[string]string{"line": "payments"}))
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_line_stops_total", map[string]string{"line": "payments"}))

	dup, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway"})
	require.NoError(t, err)
	require.ErrorContains(t, c.AddBreaker(dup), `breaker named "gateway" is collected already`)
	unnamed, err := jidoka.NewBreaker(jidoka.BreakerOptions{})
	require.NoError(t, err)
	require.ErrorContains(t, c.AddBreaker(unnamed), "the breaker has no name")
	require.Error(t, c.AddBreaker(nil))
	require.Error(t, c.AddLine(mustLine(t, "payments")))

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// TestHeijunkaCollector runs in a synctest bubble: time stands still, so
// the per-customer limiter admits one signal per key and no more.
func TestHeijunkaCollector(t *testing.T) { synctest.Test(t, testHeijunkaCollector) }

func testHeijunkaCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	keyed, err := heijunka.NewKeyed(heijunka.PerMinute(5).WithBurst(1), heijunka.KeyedOptions{Name: "per-customer"})
	require.NoError(t, err)
	require.NoError(t, c.AddKeyed(keyed))
	global, err := heijunka.NewLimiter(heijunka.PerSecond(100).WithBurst(20), heijunka.LimiterOptions{Name: "global"})
	require.NoError(t, err)
	require.NoError(t, c.AddLimiter(global))
	require.ErrorContains(t, c.AddLimiter(global), `limiter named "global" is collected already`)

	failing := tai.GateFunc(func(context.Context, string) error { return errors.New("store down") })
	p, err := tai.New(
		tai.PolicyFunc[pipelinetest.Order](func(context.Context, tai.Signal[pipelinetest.Order]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}),
		tai.ActionFunc[pipelinetest.Order, string](func(context.Context, tai.Signal[pipelinetest.Order]) (string, error) { return "ok", nil }),
		tai.WithGates(c.Gate(keyed)))
	require.NoError(t, err)
	var rejectedHook string
	for i, key := range []string{"a", "a", "b", "a"} {
		_, err := p.Process(context.Background(), tai.Signal[pipelinetest.Order]{ID: string(rune('0' + i)), Kind: "payment", Key: key})
		var re *tai.RejectedError
		if errors.As(err, &re) {
			rejectedHook = re.Hook
			require.ErrorIs(t, err, heijunka.ErrLimited)
		}
	}
	assert.Equal(t, "per-customer", rejectedHook, "the wrapper keeps the gate's name")
	_ = c.Gate(failing).Admit(context.Background(), "x")

	req := func(limiter, result string) float64 {
		return counterValue(t, reg, "taikit_limiter_requests_total", map[string]string{"limiter": limiter, "result": result})
	}
	assert.Equal(t, 2.0, req("per-customer", "admitted"))
	assert.Equal(t, 2.0, req("per-customer", "limited"))
	assert.Equal(t, 0.0, req("per-customer", "error"))
	assert.Equal(t, 1.0, req("gate", "error"))
	assert.Equal(t, 2.0, gaugeValue(t, reg, "taikit_limiter_live_keys", map[string]string{"limiter": "per-customer"}))
	assert.InDelta(t, 5.0/60, gaugeValue(t, reg, "taikit_limiter_rate", map[string]string{"limiter": "per-customer"}), 1e-12)
	assert.Equal(t, 100.0, gaugeValue(t, reg, "taikit_limiter_rate", map[string]string{"limiter": "global"}))
	assert.Equal(t, 20.0, gaugeValue(t, reg, "taikit_limiter_burst", map[string]string{"limiter": "global"}))

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

type fakeQueue struct{ s kanban.QueueStats }

func (q fakeQueue) Stats() kanban.QueueStats { return q.s }

func TestKanbanCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)

	mem, err := kanban.NewMemory[string](kanban.MemoryOptions{})
	require.NoError(t, err)
	for _, id := range []string{"m1", "m2", "m1"} {
		require.NoError(t, mem.Publish(context.Background(), kanban.Message[string]{ID: id, Payload: "x"}))
	}
	require.NoError(t, c.AddQueue("confirmations", mem))
	require.NoError(t, c.AddQueue("rollouts", fakeQueue{kanban.QueueStats{Published: 10, Handled: 7, Retried: 3, DeadLettered: 1, InFlight: 2}}))
	require.ErrorContains(t, c.AddQueue("rollouts", mem), `queue named "rollouts" is collected already`)
	require.Error(t, c.AddQueue("", mem))
	require.Error(t, c.AddQueue("x", nil))

	q := func(name string) map[string]string { return map[string]string{"queue": name} }
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_queue_published_total", q("confirmations")))
	assert.Equal(t, 1.0, counterValue(t, reg, "taikit_queue_duplicates_total", q("confirmations")))
	assert.Equal(t, 2.0, gaugeValue(t, reg, "taikit_queue_depth", q("confirmations")))
	assert.Equal(t, 7.0, counterValue(t, reg, "taikit_queue_handled_total", q("rollouts")))
	assert.Equal(t, 3.0, counterValue(t, reg, "taikit_queue_retried_total", q("rollouts")))
	assert.Equal(t, 1.0, counterValue(t, reg, "taikit_queue_dead_lettered_total", q("rollouts")))
	assert.Equal(t, 2.0, gaugeValue(t, reg, "taikit_queue_in_flight", q("rollouts")))
	assert.Nil(t, series(t, reg, "taikit_queue_depth", q("rollouts")), "no depth without a Len method")

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// TestAllCollectorsPromtool puts every family of the package on one
// registry and checks the exposition with promtool.
func TestAllCollectorsPromtool(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	jc, err := kaizenprom.NewJidokaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	hc, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	kc, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)

	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway"})
	require.NoError(t, err)
	require.NoError(t, jc.AddBreaker(b))
	require.NoError(t, jc.AddLine(mustLine(t, "payments")))
	keyed, err := heijunka.NewKeyed(heijunka.PerSecond(5).WithBurst(5), heijunka.KeyedOptions{Name: "per-customer"})
	require.NoError(t, err)
	require.NoError(t, hc.AddKeyed(keyed))
	unlimited, err := heijunka.NewLimiter(heijunka.Unlimited(), heijunka.LimiterOptions{Name: "open"})
	require.NoError(t, err)
	require.NoError(t, hc.AddLimiter(unlimited))
	require.NoError(t, kc.AddQueue("confirmations", fakeQueue{}))
	obs, err := kc.HandlerObserver("confirmations")
	require.NoError(t, err)
	obs.ObserveHandler(3*time.Millisecond, nil)

	p, err := pipelinetest.New(tai.WithObservers(m), tai.WithTracer(m.Tracer(nil)), tai.WithGates(hc.Gate(keyed)), tai.WithGuards(b))
	require.NoError(t, err)
	for _, s := range pipelinetest.Signals() {
		_, _ = p.Process(context.Background(), s)
	}
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
	text := exposition(t, reg)
	assert.Contains(t, string(text), `taikit_limiter_rate{limiter="open"} +Inf`)
	promtoolCheck(t, text)
}

func mustLine(t *testing.T, name string) *jidoka.Line {
	t.Helper()
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: name})
	require.NoError(t, err)
	return line
}

// A name that is not valid UTF-8 is refused when it is added: as a label
// value it would make every scrape of the registry fail.
func TestCollectorsRefuseNamesNotUTF8(t *testing.T) {
	reg := prometheus.NewRegistry()
	jc, err := kaizenprom.NewJidokaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gate\xffway"})
	require.NoError(t, err)
	require.ErrorContains(t, jc.AddBreaker(b), "not valid UTF-8")

	kc, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{})
	require.NoError(t, err)
	require.ErrorContains(t, kc.AddQueue("ord\xffers", q), "not valid UTF-8")
	_, err = kc.HandlerObserver("ord\xffers")
	require.ErrorContains(t, err, "not valid UTF-8")

	// A gate is wrapped, not added, so its name cannot be refused: it is
	// counted with U+FFFD in place of its bad bytes, as a Kind is.
	hc, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	l, err := heijunka.NewLimiter(heijunka.PerSecond(5), heijunka.LimiterOptions{Name: "per\xffcustomer"})
	require.NoError(t, err)
	g := hc.Gate(l)
	assert.Equal(t, "per\xffcustomer", g.(tai.Namer).Name(), "the gate keeps its name for spans and errors")
	require.NoError(t, g.Admit(context.Background(), "cust"))
	require.NoError(t, hc.Gate(namedGate("per\xfecustomer")).Admit(context.Background(), "cust"))

	_, err = reg.Gather()
	require.NoError(t, err, "the registry still gathers")
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_limiter_requests_total",
		map[string]string{"limiter": "per\uFFFDcustomer", "result": "admitted"}), "names alike once repaired share their counts")
}

// namedGate is a gate that admits everything, named by its value.
type namedGate string

func (g namedGate) Name() string                        { return string(g) }
func (g namedGate) Admit(context.Context, string) error { return nil }

// TestCollectorsRemove: a service that rebuilds a breaker, a limiter or a
// queue (on a configuration reload) removes the old one, whose series
// leave the scrape, and adds the new one under the same name.
func TestCollectorsRemove(t *testing.T) {
	reg := prometheus.NewRegistry()
	jc, err := kaizenprom.NewJidokaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	hc, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	kc, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)

	old, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway"})
	require.NoError(t, err)
	require.NoError(t, jc.AddBreaker(old))
	old.Trip("manual")
	require.NoError(t, jc.AddLine(mustLine(t, "payments")))
	wd, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Name: "eu-west", Check: func(context.Context) error { return nil }})
	require.NoError(t, err)
	require.NoError(t, jc.AddWatchdog(wd))
	lim, err := heijunka.NewLimiter(heijunka.Limit{Rate: 5, Burst: 10}, heijunka.LimiterOptions{Name: "api"})
	require.NoError(t, err)
	require.NoError(t, hc.AddLimiter(lim))
	require.NoError(t, kc.AddQueue("rollouts", fakeQueue{kanban.QueueStats{Published: 10}}))
	obs, err := kc.HandlerObserver("rollouts")
	require.NoError(t, err)
	obs.ObserveHandler(time.Millisecond, nil)

	assert.True(t, jc.RemoveBreaker("gateway"))
	assert.False(t, jc.RemoveBreaker("gateway"), "removed already")
	assert.True(t, jc.RemoveLine("payments"))
	assert.True(t, jc.RemoveWatchdog("eu-west"))
	assert.True(t, hc.RemoveLimiter("api"))
	assert.True(t, kc.RemoveQueue("rollouts"))
	assert.False(t, kc.RemoveQueue("nope"))
	for name, labels := range map[string]map[string]string{
		"taikit_breaker_state":                  {"breaker": "gateway", "state": "open"},
		"taikit_line_stopped":                   {"line": "payments"},
		"taikit_watchdog_healthy":               {"watchdog": "eu-west"},
		"taikit_limiter_rate":                   {"limiter": "api"},
		"taikit_queue_published_total":          {"queue": "rollouts"},
		"taikit_queue_handler_duration_seconds": {"queue": "rollouts"},
	} {
		assert.Nil(t, series(t, reg, name, labels), "%s%v after its source was removed", name, labels)
	}

	// The new breaker takes the name; the scrape shows its state.
	fresh, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway"})
	require.NoError(t, err)
	require.NoError(t, jc.AddBreaker(fresh))
	assert.Equal(t, 1.0, gaugeValue(t, reg, "taikit_breaker_state", map[string]string{"breaker": "gateway", "state": "closed"}))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// A handler attempt timed as negative is observed as zero, as Metrics
// does: the histogram's sum only grows.
func TestKanbanCollectorNegativeHandlerDurationIsZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	kc, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	require.NoError(t, kc.AddQueue("confirmations", fakeQueue{}))
	obs, err := kc.HandlerObserver("confirmations")
	require.NoError(t, err)
	obs.ObserveHandler(-time.Second, nil)
	obs.ObserveHandler(time.Second, nil)
	h := series(t, reg, "taikit_queue_handler_duration_seconds", map[string]string{"queue": "confirmations"}).GetHistogram()
	assert.EqualValues(t, 2, h.GetSampleCount())
	assert.Equal(t, 1.0, h.GetSampleSum())
}

// TestHeijunkaGateOfNilIsRefusedByThePipeline: a nil gate, or a nil
// limiter (a limiter left unset when rate limiting is off), is refused
// by tai.New. Wrapped, the nil Limiter panicked in Gate on its name, and
// a nil gate became a wrapper that tai.New took, to panic at every
// signal's Admit.
func TestHeijunkaGateOfNilIsRefusedByThePipeline(t *testing.T) {
	hc, err := kaizenprom.NewHeijunkaCollector(prometheus.NewRegistry(), kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	var limiter *heijunka.Limiter
	var keyed *heijunka.Keyed
	var fn tai.GateFunc
	for name, g := range map[string]tai.Gate{"nil": nil, "nil Limiter": limiter, "nil Keyed": keyed, "nil GateFunc": fn} {
		t.Run(name, func(t *testing.T) {
			var wrapped tai.Gate
			require.NotPanics(t, func() { wrapped = hc.Gate(g) })
			_, err := pipelinetest.New(tai.WithGates(wrapped))
			require.Error(t, err)
			assert.Regexp(t, `^tai\.New: gate \d+ is nil$`, err.Error())
		})
	}
}

// TestHeijunkaGateKeepsAnUnnamedGateUnnamed: a gate without a name
// wrapped by Gate is counted under "gate", but keeps no name in the
// pipeline's errors, as it has none unwrapped; the wrapper named it
// "gate" there, so its rejections read `rejected at gate "gate"`.
func TestHeijunkaGateKeepsAnUnnamedGateUnnamed(t *testing.T) {
	reg := prometheus.NewRegistry()
	hc, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	refuse := tai.GateFunc(func(context.Context, string) error { return heijunka.ErrLimited })
	reject := func(g tai.Gate) error {
		p, err := tai.New(tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}), tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 0, nil }), tai.WithGates(g))
		require.NoError(t, err)
		_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
		return err
	}
	want := reject(refuse)
	got := reject(hc.Gate(refuse))
	var re *tai.RejectedError
	require.ErrorAs(t, got, &re)
	assert.Empty(t, re.Hook)
	assert.Equal(t, want.Error(), got.Error())
	assert.Equal(t, 1.0, counterValue(t, reg, "taikit_limiter_requests_total", map[string]string{"limiter": "gate", "result": "limited"}))
}

// TestHeijunkaGateWrapsOnce: a gate Gate returned, given to Gate again
// (a setup that wraps every gate it is handed, handed one wrapped
// already), is counted once per decision, not once per wrapping.
func TestHeijunkaGateWrapsOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	hc, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	admit := pipelinetest.NamedGate{GateName: "api", Fn: func(context.Context, string) error { return nil }}
	once := hc.Gate(admit)
	twice := hc.Gate(once)
	require.NoError(t, twice.Admit(context.Background(), "k"))
	assert.Equal(t, 1.0, counterValue(t, reg, "taikit_limiter_requests_total", map[string]string{"limiter": "api", "result": "admitted"}))
	assert.Equal(t, "api", twice.(tai.Namer).Name())

	// Another collector counts in its own families: it wraps the gate.
	other := prometheus.NewRegistry()
	oc, err := kaizenprom.NewHeijunkaCollector(other, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	both := oc.Gate(once)
	require.NoError(t, both.Admit(context.Background(), "k"))
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_limiter_requests_total", map[string]string{"limiter": "api", "result": "admitted"}))
	assert.Equal(t, 1.0, counterValue(t, other, "taikit_limiter_requests_total", map[string]string{"limiter": "api", "result": "admitted"}))
}

// gateErr is an error whose Unwrap reads its receiver: a nil *gateErr
// returned as an error panics when its chain is read.
type gateErr struct{ err error }

func (e *gateErr) Error() string { return "gate: " + e.err.Error() }
func (e *gateErr) Unwrap() error { return e.err }

// TestHeijunkaGateCountsAnErrorThatPanicsWhenRead: a gate whose error is a
// typed nil (a nil *gateErr returned as an error) rejects the signal, as
// it does unwrapped, and is counted as an error; the wrapper read its
// chain to tell a limit from an error, panicked, and turned the rejection
// into a failure of the pipeline with a *tai.PanicError.
func TestHeijunkaGateCountsAnErrorThatPanicsWhenRead(t *testing.T) {
	reg := prometheus.NewRegistry()
	hc, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	broken := pipelinetest.NamedGate{GateName: "broken", Fn: func(context.Context, string) error {
		var e *gateErr
		return e
	}}
	p, err := pipelinetest.New(tai.WithGates(hc.Gate(broken)))
	require.NoError(t, err)
	var perr error
	require.NotPanics(t, func() { _, perr = p.Process(context.Background(), pipelinetest.Signals()[0]) })
	var re *tai.RejectedError
	require.ErrorAs(t, perr, &re)
	assert.Equal(t, "broken", re.Hook)
	assert.Equal(t, tai.Rejected, tai.OutcomeOf(perr))
	assert.Equal(t, 1.0, counterValue(t, reg, "taikit_limiter_requests_total", map[string]string{"limiter": "broken", "result": "error"}))
}

// TestKanbanCollectorRefusesANilQueuePointer: a nil *kanban.Memory is a
// nil queue as much as a nil interface is. Taken, it panicked at every
// scrape, reading its backlog in a goroutine of Collect, which no HTTP
// server recovers: the process died.
func TestKanbanCollectorRefusesANilQueuePointer(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	var mem *kanban.Memory[string]
	require.ErrorContains(t, c.AddQueue("orders", mem), "nil queue")
	_, err = reg.Gather()
	require.NoError(t, err)
}

// constructors builds, on a new registry, each of the package's families
// with the constant labels given, and returns the constructor's error.
var constructors = map[string]func(reg prometheus.Registerer, labels prometheus.Labels) error{
	"NewMetrics": func(reg prometheus.Registerer, labels prometheus.Labels) error {
		_, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{ConstLabels: labels})
		return err
	},
	"NewJidokaCollector": func(reg prometheus.Registerer, labels prometheus.Labels) error {
		_, err := kaizenprom.NewJidokaCollector(reg, kaizenprom.CollectorOptions{ConstLabels: labels})
		return err
	},
	"NewHeijunkaCollector": func(reg prometheus.Registerer, labels prometheus.Labels) error {
		_, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{ConstLabels: labels})
		return err
	},
	"NewKanbanCollector": func(reg prometheus.Registerer, labels prometheus.Labels) error {
		_, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{ConstLabels: labels})
		return err
	},
}

// TestConstructorsRefuseANilPointerRegisterer: a *prometheus.Registry
// left unset is a nil Registerer to every constructor, refused with an
// error naming it; its Register panicked on the nil pointer.
func TestConstructorsRefuseANilPointerRegisterer(t *testing.T) {
	var unset *prometheus.Registry
	for who, build := range constructors {
		var err error
		require.NotPanics(t, func() { err = build(unset, nil) }, who)
		require.ErrorContains(t, err, who+": nil prometheus.Registerer", who)
	}
}

// TestConstructorsRefuseAWrappedNilRegistry: a *prometheus.Registry left
// unset behind prometheus.WrapRegistererWith or WrapRegistererWithPrefix
// is not a nil pointer to look at, but its Register panics all the same
// (after starting a goroutine that never ends): every constructor refuses
// it with an error, as it does the registry unwrapped.
func TestConstructorsRefuseAWrappedNilRegistry(t *testing.T) {
	var unset *prometheus.Registry
	for _, wrapped := range []prometheus.Registerer{
		prometheus.WrapRegistererWith(prometheus.Labels{"service": "payments"}, unset),
		prometheus.WrapRegistererWithPrefix("payments_", unset),
	} {
		for who, build := range constructors {
			var err error
			require.NotPanics(t, func() { err = build(wrapped, nil) }, who)
			require.ErrorContains(t, err, "kaizenprom: "+who+": the prometheus.Registerer panicked", who)
		}
	}
	for who, build := range constructors {
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"service": "payments"}, prometheus.NewRegistry())
		require.NoError(t, build(reg, nil), "%s: a wrapped registry is taken", who)
	}
}

// TestConstLabelNamesAreChecked: a constant label whose name is not a
// Prometheus label name is refused by every constructor, with an error
// naming the label and the rule. Taken, client_golang's UTF-8 names let
// "service-name" through, and the exposition renamed it "service_name",
// where it met a label of that name.
func TestConstLabelNamesAreChecked(t *testing.T) {
	for _, name := range []string{"service-name", "1abc", "a.b", "ünï", "", "__reserved", "__name__"} {
		for who, build := range constructors {
			t.Run(who+"/"+name, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				err := build(reg, prometheus.Labels{"service": "payments", name: "x"})
				require.Error(t, err)
				field := "MetricsOptions.ConstLabels"
				if who != "NewMetrics" {
					field = who + ": CollectorOptions.ConstLabels"
				}
				assert.Contains(t, err.Error(), fmt.Sprintf("kaizenprom: %s: %q", field, name))
				if strings.HasPrefix(name, "__") {
					assert.Contains(t, err.Error(), `names starting with "__" are reserved`)
				} else {
					assert.Contains(t, err.Error(), "[a-zA-Z_][a-zA-Z0-9_]*")
				}
				// Refused before anything was registered: the same
				// registry takes the corrected labels.
				require.NoError(t, build(reg, prometheus.Labels{"service": "payments"}))
			})
		}
	}
}

// TestConstLabelValuesAreChecked: a constant label's value must be valid
// UTF-8; every constructor refuses one that is not, naming the label.
func TestConstLabelValuesAreChecked(t *testing.T) {
	for who, build := range constructors {
		t.Run(who, func(t *testing.T) {
			err := build(prometheus.NewRegistry(), prometheus.Labels{"service": "pay\xffments"})
			require.Error(t, err)
			assert.Contains(t, err.Error(), `ConstLabels: the value of "service"`)
			assert.Contains(t, err.Error(), "not valid UTF-8")
		})
	}
}

// TestConstLabelsPromtool: label names at the edges of the rule (a
// leading underscore, capitals, digits) are taken by every constructor,
// and the exposition of all the families passes promtool.
func TestConstLabelsPromtool(t *testing.T) {
	labels := prometheus.Labels{"_shard": "1", "Service_2": "payments", "region": "eu-west"}
	reg := prometheus.NewRegistry()
	for who, build := range constructors {
		require.NoError(t, build(reg, labels), who)
	}
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{ConstLabels: labels})
	require.NoError(t, err)
	jc, err := kaizenprom.NewJidokaCollector(reg, kaizenprom.CollectorOptions{ConstLabels: labels})
	require.NoError(t, err)
	require.NoError(t, jc.AddLine(mustLine(t, "payments")))
	kc, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{ConstLabels: labels})
	require.NoError(t, err)
	require.NoError(t, kc.AddQueue("confirmations", fakeQueue{}))
	hc, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{ConstLabels: labels})
	require.NoError(t, err)
	lim, err := heijunka.NewLimiter(heijunka.PerSecond(5), heijunka.LimiterOptions{Name: "api"})
	require.NoError(t, err)
	require.NoError(t, hc.AddLimiter(lim))
	p, err := pipelinetest.New(tai.WithObservers(m), tai.WithTracer(m.Tracer(nil)), tai.WithGates(hc.Gate(lim)))
	require.NoError(t, err)
	for _, s := range pipelinetest.Signals() {
		_, _ = p.Process(context.Background(), s)
	}
	text := exposition(t, reg)
	assert.Contains(t, string(text), `taikit_line_stopped{Service_2="payments",_shard="1",line="payments",region="eu-west"} 0`)
	promtoolCheck(t, text)
}

// TestCollectorConstLabelsAreNotItsLabels: a constant label that is one of
// a collector's own labels is refused, naming the field, as NewMetrics
// refuses one of its labels; and the same registry then takes corrected
// labels.
func TestCollectorConstLabelsAreNotItsLabels(t *testing.T) {
	cases := map[string][]string{
		"NewJidokaCollector":   {"breaker", "state", "line", "watchdog"},
		"NewHeijunkaCollector": {"limiter", "result"},
		"NewKanbanCollector":   {"queue"},
		"NewMetrics":           {"kind", "outcome", "policy", "verdict", "stage"},
	}
	for who, labels := range cases {
		for _, label := range labels {
			t.Run(who+"/"+label, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				err := constructors[who](reg, prometheus.Labels{"service": "payments", label: "x"})
				field := "MetricsOptions.ConstLabels"
				if who != "NewMetrics" {
					field = who + ": CollectorOptions.ConstLabels"
				}
				require.ErrorContains(t, err, fmt.Sprintf("kaizenprom: %s: %q is a label of the metrics; it cannot be a constant label", field, label))
				require.NoError(t, constructors[who](reg, prometheus.Labels{"service": "payments"}))
			})
		}
	}
}

// panicLenStore is a heijunka Store with a Len method that panics.
type panicLenStore struct{ heijunka.Store }

func (panicLenStore) Len() int { panic("store bug") }

// TestHeijunkaCollectorStoreLenThatPanics: a Keyed's Store whose Len
// panics at a scrape has limiter_live_keys left out of it; the limit's
// series, the scrape and the process go on. The registry collects on
// goroutines of its own, where a panic nothing recovers ends the process.
func TestHeijunkaCollectorStoreLenThatPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	k, err := heijunka.NewKeyed(heijunka.PerSecond(5), heijunka.KeyedOptions{Name: "customers", Store: panicLenStore{}})
	require.NoError(t, err)
	require.NoError(t, c.AddKeyed(k))
	ch := make(chan prometheus.Metric, 16)
	require.NotPanics(t, func() { c.Collect(ch) })

	q := map[string]string{"limiter": "customers"}
	assert.Nil(t, series(t, reg, "taikit_limiter_live_keys", q))
	assert.Equal(t, 5.0, gaugeValue(t, reg, "taikit_limiter_rate", q))
}
