package tai_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taitest"
)

// journal records the order in which hooks ran.
type journal struct {
	mu    sync.Mutex
	steps []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.steps = append(j.steps, s)
	j.mu.Unlock()
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.steps...)
}

type namedGate struct {
	name string
	j    *journal
	err  error
}

func (g namedGate) Name() string { return g.name }
func (g namedGate) Admit(_ context.Context, key string) error {
	g.j.add("gate " + g.name + " " + key)
	return g.err
}

type namedGuard struct {
	name   string
	j      *journal
	reject error
}

func (g namedGuard) Name() string { return g.name }
func (g namedGuard) Do(ctx context.Context, fn func(context.Context) error) error {
	g.j.add("guard " + g.name + " in")
	if g.reject != nil {
		return g.reject
	}
	err := fn(ctx)
	g.j.add("guard " + g.name + " out")
	return err
}

// spanTracer records spans with their parents, found through the context.
type spanTracer struct {
	j       *journal
	nextID  atomic.Uint32
	withCtx bool
}

type spanKey struct{}

type recSpan struct {
	t    *spanTracer
	name string
	id   uint32
}

func (t *spanTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	parent := "-"
	if ps, ok := ctx.Value(spanKey{}).(*recSpan); ok {
		parent = ps.name
	}
	s := &recSpan{t: t, name: info.Stage.String() + ":" + info.Name, id: t.nextID.Add(1)}
	t.j.add("start " + s.name + " parent " + parent)
	ctx = context.WithValue(ctx, spanKey{}, s)
	if t.withCtx && info.Stage == tai.StageSignal {
		ctx = tai.ContextWithTracer(ctx, t)
	}
	return ctx, s
}

func (s *recSpan) End(err error) {
	outcome := "ok"
	if err != nil {
		outcome = tai.OutcomeOf(err).String()
	}
	s.t.j.add("end " + s.name + " " + outcome)
}

func (s *recSpan) SpanContext() tai.SpanContext {
	sc := tai.SpanContext{Sampled: true}
	sc.TraceID[0] = 0xab
	sc.SpanID[7] = byte(s.id)
	return sc
}

type recObserver struct {
	j       *journal
	mu      sync.Mutex
	records []tai.Record
	stages  bool
}

func (o *recObserver) Observe(_ context.Context, r tai.Record) {
	o.j.add("observe " + r.Outcome.String())
	o.mu.Lock()
	o.records = append(o.records, r)
	o.mu.Unlock()
}

func (o *recObserver) ObservesStages() bool { return o.stages }

func (o *recObserver) last(t *testing.T) tai.Record {
	o.mu.Lock()
	defer o.mu.Unlock()
	require.NotEmpty(t, o.records)
	return o.records[len(o.records)-1]
}

func allowPolicy(j *journal) tai.Policy[int] {
	return tai.PolicyFunc[int](func(_ context.Context, s tai.Signal[int]) (tai.Decision, error) {
		j.add("policy")
		return tai.Decision{Verdict: tai.Allow, Policy: "p", Score: 0.1}, nil
	})
}

func doubleAction(j *journal) tai.Action[int, int] {
	return tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) {
		j.add("action")
		return s.Payload * 2, nil
	})
}

func TestHookOrder(t *testing.T) {
	j := &journal{}
	obs := &recObserver{j: j}
	p, err := tai.New(allowPolicy(j), doubleAction(j),
		tai.WithGates(namedGate{name: "g1", j: j}, namedGate{name: "g2", j: j}),
		tai.WithGuards(namedGuard{name: "outer", j: j}, namedGuard{name: "inner", j: j}),
		tai.WithObservers(obs))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.NewSignal("test", "cust", 21))
	require.NoError(t, err)
	assert.Equal(t, 42, res.Value)
	assert.Equal(t, tai.Succeeded, res.Outcome)
	assert.Equal(t, tai.Allow, res.Decision.Verdict)
	assert.Equal(t, []string{
		"gate g1 cust", "gate g2 cust", "policy",
		"guard outer in", "guard inner in", "action", "guard inner out", "guard outer out",
		"observe succeeded",
	}, j.get())
}

func TestTracerSpans(t *testing.T) {
	j := &journal{}
	tr := &spanTracer{j: j, withCtx: true}
	obs := &recObserver{j: &journal{}}
	policy := tai.All(tai.Named("blacklist", allowPolicy(&journal{})), tai.Named("velocity", allowPolicy(&journal{})))
	p, err := tai.New(policy, doubleAction(&journal{}),
		tai.WithGates(namedGate{name: "limit", j: &journal{}}), tai.WithTracer(tr), tai.WithObservers(obs))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"start signal:payment parent -",
		"start gate:limit parent signal:payment", "end gate:limit ok",
		"start policy:all parent signal:payment",
		"start policy:blacklist parent policy:all", "end policy:blacklist ok",
		"start policy:velocity parent policy:all", "end policy:velocity ok",
		"end policy:all ok",
		"start action:action parent signal:payment", "end action:action ok",
		"end signal:payment ok",
	}, j.get())
	assert.True(t, res.Span.TraceID.IsValid())
	assert.Equal(t, "ab000000000000000000000000000000", res.Span.TraceID.String())
	assert.Equal(t, res.Span, obs.last(t).Span, "the record carries the root span")
	assert.Equal(t, "0000000000000001", obs.last(t).Span.SpanID.String())
}

// spanGate is a gate named "limit" that reports the context it is called
// with.
type spanGate struct{ seen func(context.Context) }

func (g spanGate) Name() string { return "limit" }
func (g spanGate) Admit(ctx context.Context, _ string) error {
	g.seen(ctx)
	return nil
}

// A gate and the action run in the context of their own span, so the spans
// they start themselves (a Redis call in a gate, an HTTP call in the
// action) become its children.
func TestStagesRunInTheirSpan(t *testing.T) {
	tr := &spanTracer{j: &journal{}}
	var gateSpan, actionSpan string
	spanOf := func(ctx context.Context) string {
		if s, ok := ctx.Value(spanKey{}).(*recSpan); ok {
			return s.name
		}
		return "-"
	}
	gate := spanGate{seen: func(ctx context.Context) { gateSpan = spanOf(ctx) }}
	action := tai.ActionFunc[int, int](func(ctx context.Context, s tai.Signal[int]) (int, error) {
		actionSpan = spanOf(ctx)
		return s.Payload, nil
	})
	p, err := tai.New(allowPolicy(&journal{}), action, tai.WithGates(gate), tai.WithTracer(tr))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	require.NoError(t, err)
	assert.Equal(t, "gate:limit", gateSpan)
	assert.Equal(t, "action:action", actionSpan)
}

// spansWithoutChildOfAll are the spans of a signal through All of one
// policy when All finds no tracer in its context: none for the child.
var spansWithoutChildOfAll = []string{
	"start signal:payment parent -",
	"start policy:all parent signal:payment", "end policy:all ok",
	"start action:action parent signal:payment", "end action:action ok",
	"end signal:payment ok",
}

func TestTracerWithoutContextCostsCombinatorsNothing(t *testing.T) {
	j := &journal{}
	tr := &spanTracer{j: j} // does not put itself in the context
	p, err := tai.New(tai.All(allowPolicy(&journal{})), doubleAction(&journal{}), tai.WithTracer(tr))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	require.NoError(t, err)
	assert.Equal(t, spansWithoutChildOfAll, j.get(), "no span for the child of All")
}

// nilTracerInContext is a tracer whose signal span puts a nil *spanTracer
// in the context, as a tracer that forwards to an unset one does.
type nilTracerInContext struct{ spanTracer }

func (t *nilTracerInContext) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	ctx, s := t.spanTracer.Start(ctx, info)
	if info.Stage == tai.StageSignal {
		var none *spanTracer
		ctx = tai.ContextWithTracer(ctx, none)
	}
	return ctx, s
}

func TestNilPointerTracerInContextMeansNoTracer(t *testing.T) {
	var none *spanTracer
	ctx := tai.ContextWithTracer(context.Background(), none)
	assert.Nil(t, tai.TracerFromContext(ctx))
	sctx, span := tai.StartSpan(ctx, tai.SpanInfo{Stage: tai.StagePolicy, Name: "own"})
	assert.Nil(t, span)
	assert.Equal(t, ctx, sctx)

	// It hides a tracer put in the context before it, as a nil Tracer does.
	outer := tai.ContextWithTracer(context.Background(), &spanTracer{j: &journal{}})
	assert.Nil(t, tai.TracerFromContext(tai.ContextWithTracer(outer, none)))

	j := &journal{}
	p, err := tai.New(tai.All(allowPolicy(&journal{})), doubleAction(&journal{}),
		tai.WithTracer(&nilTracerInContext{spanTracer{j: j}}))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	require.NoError(t, err)
	assert.Equal(t, 2, res.Value)
	assert.Equal(t, spansWithoutChildOfAll, j.get(), "no span for the child of All")
}

func TestOutcomes(t *testing.T) {
	errLimited := errors.New("limited")
	errOpen := errors.New("breaker open")
	errCharge := errors.New("card declined")
	errStore := errors.New("store down")
	tests := []struct {
		name     string
		gate     error
		guard    error
		policy   tai.Policy[int]
		action   error
		hold     bool
		want     tai.Outcome
		wantIs   []error
		wantRan  bool // the action ran
		checkErr func(t *testing.T, err error)
	}{
		{name: "success", want: tai.Succeeded, wantRan: true},
		{name: "gate rejects", gate: errLimited, want: tai.Rejected, wantIs: []error{tai.ErrRejected, errLimited}, checkErr: func(t *testing.T, err error) {
			var re *tai.RejectedError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tai.StageGate, re.Stage)
			assert.Equal(t, "gate", re.Hook)
			assert.Equal(t, `tai: rejected at gate "gate": limited`, err.Error())
		}},
		{name: "guard rejects", guard: errOpen, want: tai.Rejected, wantIs: []error{tai.ErrRejected, errOpen}, checkErr: func(t *testing.T, err error) {
			var re *tai.RejectedError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tai.StageAction, re.Stage)
			assert.Equal(t, "guard", re.Hook)
		}},
		{name: "deny", policy: fixed(deny, nil), want: tai.Denied, wantIs: []error{tai.ErrDenied}, checkErr: func(t *testing.T, err error) {
			var de *tai.DeniedError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, deny, de.Decision)
			assert.Equal(t, `tai: deny by policy "d"`, err.Error())
		}},
		{name: "review proceeds", policy: fixed(review, nil), want: tai.Succeeded, wantRan: true},
		{name: "review held", policy: fixed(review, nil), hold: true, want: tai.Denied, wantIs: []error{tai.ErrDenied}},
		{name: "policy error fails closed", policy: tai.Named("geo", failing(errStore)), want: tai.Failed, wantIs: []error{errStore}, checkErr: func(t *testing.T, err error) {
			var pe *tai.PolicyError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "geo", pe.Policy)
			assert.Equal(t, `tai: policy "geo" failed: store down`, err.Error())
		}},
		{name: "policy error fails open", policy: tai.FailOpen(failing(errStore)), want: tai.Succeeded, wantRan: true},
		{name: "no verdict", policy: fixed(tai.Decision{}, nil), want: tai.Failed, checkErr: func(t *testing.T, err error) {
			require.ErrorContains(t, err, "decision has no verdict")
		}},
		{name: "action fails", action: errCharge, want: tai.Failed, wantIs: []error{errCharge}, wantRan: true},
	}
	for _, tt := range tests {
		for _, hooked := range []bool{false, true} {
			if !hooked && (tt.gate != nil || tt.guard != nil) {
				continue
			}
			t.Run(fmt.Sprintf("%s/hooks=%v", tt.name, hooked), func(t *testing.T) {
				policy := tt.policy
				if policy == nil {
					policy = fixed(allow, nil)
				}
				ran := false
				action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
					ran = true
					if tt.action != nil {
						return 0, tt.action
					}
					return 7, nil
				})
				j := &journal{}
				obs := &recObserver{j: j}
				opts := []tai.Option{}
				if tt.hold {
					opts = append(opts, tai.WithHoldOnReview())
				}
				if hooked {
					opts = append(opts,
						tai.WithGates(namedGate{name: "gate", j: j, err: tt.gate}),
						tai.WithGuards(namedGuard{name: "guard", j: j, reject: tt.guard}),
						tai.WithObservers(obs))
				}
				p, err := tai.New(policy, action, opts...)
				require.NoError(t, err)
				res, err := p.Process(context.Background(), tai.NewSignal("test", "k", 1))
				assert.Equal(t, tt.want, res.Outcome)
				assert.Equal(t, tt.want, tai.OutcomeOf(err))
				assert.Equal(t, tt.wantRan, ran)
				if tt.want == tai.Succeeded {
					require.NoError(t, err)
					assert.Equal(t, 7, res.Value)
				} else {
					assert.Zero(t, res.Value)
				}
				for _, target := range tt.wantIs {
					assert.ErrorIs(t, err, target)
				}
				if tt.checkErr != nil {
					tt.checkErr(t, err)
				}
				if hooked {
					rec := obs.last(t)
					assert.Equal(t, tt.want, rec.Outcome)
					assert.Equal(t, err, rec.Err)
					assert.Equal(t, res.Decision, rec.Decision)
				}
			})
		}
	}
}

func TestOutcomeOf(t *testing.T) {
	base := errors.New("x")
	tests := []struct {
		err  error
		want tai.Outcome
	}{
		{nil, tai.Succeeded},
		{&tai.DeniedError{}, tai.Denied},
		{fmt.Errorf("wrapped: %w", &tai.DeniedError{}), tai.Denied},
		{&tai.RejectedError{Err: base}, tai.Rejected},
		{fmt.Errorf("wrapped: %w", &tai.RejectedError{Err: base}), tai.Rejected},
		{&tai.PolicyError{Err: base}, tai.Failed},
		{&tai.PanicError{Value: "x"}, tai.Failed},
		{&tai.StageError{Err: context.Canceled}, tai.Failed},
		{context.DeadlineExceeded, tai.Failed},
		{base, tai.Failed},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tai.OutcomeOf(tt.err), "%v", tt.err)
	}
	assert.Equal(t, "outcome(9)", tai.Outcome(9).String())
	assert.Equal(t, []tai.Outcome{tai.Succeeded, tai.Denied, tai.Rejected, tai.Failed}, tai.Outcomes())
	for _, o := range tai.Outcomes() {
		assert.True(t, o.Valid(), "%v", o)
		b, err := o.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, o.String(), string(b))
		var back tai.Outcome
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, o, back)
	}
	_, err := tai.Outcome(9).MarshalText()
	require.Error(t, err)
	var o tai.Outcome
	require.ErrorContains(t, o.UnmarshalText([]byte("won")), `unknown outcome "won"`)
}

// TestZeroOutcomeIsInvalid: a zero Outcome is never mistaken for a
// success, as a zero Verdict is never mistaken for an Allow.
func TestZeroOutcomeIsInvalid(t *testing.T) {
	var zero tai.Outcome
	assert.False(t, zero.Valid())
	assert.Equal(t, "invalid", zero.String())
	assert.NotContains(t, tai.Outcomes(), zero)
	_, err := zero.MarshalText()
	require.ErrorContains(t, err, "invalid outcome 0")
	assert.False(t, tai.Outcome(5).Valid())
	require.ErrorContains(t, zero.UnmarshalText([]byte("invalid")), "unknown outcome")
	assert.Equal(t, tai.Succeeded, tai.OutcomeOf(nil))

	// Each call returns a slice of its own: changing one changes no other.
	os := tai.Outcomes()
	os[0] = tai.Failed
	assert.Equal(t, tai.Succeeded, tai.Outcomes()[0])
}

type retryErr struct{ d time.Duration }

func (e retryErr) Error() string             { return "slow down" }
func (e retryErr) RetryAfter() time.Duration { return e.d }

func TestRetryAfter(t *testing.T) {
	p, err := tai.New(fixed(allow, nil), tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 0, nil }),
		tai.WithGates(tai.GateFunc(func(context.Context, string) error { return retryErr{3 * time.Second} })))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), sig())
	assert.Equal(t, 3*time.Second, tai.RetryAfter(err))
	assert.Zero(t, tai.RetryAfter(errors.New("plain")))
	assert.Zero(t, tai.RetryAfter(nil))
}

// hintAs is an error that stands for a retryErr through its As method.
type hintAs struct{ d time.Duration }

func (e hintAs) Error() string { return "stands for a hint" }

func (e hintAs) As(target any) bool {
	if p, ok := target.(*interface{ RetryAfter() time.Duration }); ok {
		*p = retryErr(e)
		return true
	}
	return false
}

func TestRetryAfterOfATree(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"wrapped", fmt.Errorf("call: %w", retryErr{2 * time.Second}), 2 * time.Second},
		{"joined: the longest", errors.Join(retryErr{time.Second}, errors.New("plain"), fmt.Errorf("x: %w", retryErr{5 * time.Second}), retryErr{3 * time.Second}), 5 * time.Second},
		{"one wrap of several", fmt.Errorf("%w and %w", retryErr{4 * time.Second}, retryErr{time.Second}), 4 * time.Second},
		{"joined inside a wrap", fmt.Errorf("both: %w", errors.Join(retryErr{time.Second}, retryErr{7 * time.Second})), 7 * time.Second},
		{"a hint answers for what it wraps", wrapHint{retryErr{time.Second}, 9 * time.Second}, time.Second},
		{"an As method", fmt.Errorf("via As: %w", hintAs{6 * time.Second}), 6 * time.Second},
		{"no hint joined", errors.Join(errors.New("a"), errors.New("b")), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tai.RetryAfter(tc.err))
		})
	}
}

// wrapHint has a hint of its own and wraps an error with another.
type wrapHint struct {
	retryErr
	inner time.Duration
}

func (e wrapHint) Unwrap() error { return retryErr{e.inner} }

func TestInvalidSignal(t *testing.T) {
	j := &journal{}
	obs := &recObserver{j: j}
	p, err := tai.New(allowPolicy(j), doubleAction(j), tai.WithGates(namedGate{name: "g", j: j}), tai.WithObservers(obs))
	require.NoError(t, err)
	for _, s := range []tai.Signal[int]{{Kind: "test"}, {ID: "x"}, {}} {
		res, err := p.Process(context.Background(), s)
		require.ErrorIs(t, err, tai.ErrInvalidSignal)
		assert.NotErrorIs(t, err, tai.ErrRejected, "an invalid signal is a programming error, not load to shed")
		assert.Equal(t, tai.Failed, res.Outcome)
		assert.Equal(t, tai.Failed, tai.OutcomeOf(err))
	}
	_, err = p.Process(context.Background(), tai.Signal[int]{Kind: "test"})
	assert.ErrorContains(t, err, "empty ID")
	_, err = p.Process(context.Background(), tai.Signal[int]{ID: "x"})
	assert.ErrorContains(t, err, "empty Kind")
	assert.Empty(t, j.get(), "an invalid signal reaches no hook")
}

func TestNewValidation(t *testing.T) {
	pol, act := fixed(allow, nil), doubleAction(&journal{})
	tests := []struct {
		name string
		new  func() error
		want string
	}{
		{"nil policy", func() error { _, err := tai.New[int, int](nil, act); return err }, "policy: tai: nil policy"},
		{"nil action", func() error { _, err := tai.New[int, int](pol, nil); return err }, "action is nil"},
		{"nil in All", func() error { _, err := tai.New(tai.All(pol, nil), act); return err }, "policy 1: tai: nil policy"},
		{"nil in Named", func() error { _, err := tai.New(tai.Named[int]("x", nil), act); return err }, "nil policy"},
		{"nil in FailOpen", func() error { _, err := tai.New(tai.FailOpen(tai.Any[int](nil)), act); return err }, "nil policy"},
		{"nil gate", func() error { _, err := tai.New(pol, act, tai.WithGates(nil)); return err }, "gate 0 is nil"},
		{"nil guard", func() error { _, err := tai.New(pol, act, tai.WithGuards(taitest.NopGuard{}, nil)); return err }, "guard 1 is nil"},
		{"nil observer", func() error { _, err := tai.New(pol, act, tai.WithObservers(nil)); return err }, "observer 0 is nil"},
		// A nil function or pointer in a non-nil interface is nil all the
		// same: every signal would panic on it, and a Namer's Name would
		// panic in New itself (a *Scored whose NewScored error was ignored).
		{"nil PolicyFunc", func() error { _, err := tai.New(tai.PolicyFunc[int](nil), act); return err }, "policy: tai: nil policy"},
		{"nil *Scored", func() error { _, err := tai.New(nilScored, act); return err }, "policy: tai: nil policy"},
		{"nil PolicyFunc in All", func() error { _, err := tai.New(tai.All(pol, tai.PolicyFunc[int](nil)), act); return err }, "policy 1: tai: nil policy"},
		{"nil *Scored in Any", func() error { _, err := tai.New(tai.Any(nilScored), act); return err }, "policy 0: tai: nil policy"},
		{"nil ActionFunc", func() error { _, err := tai.New(pol, tai.ActionFunc[int, int](nil)); return err }, "action is nil"},
		{"nil GateFunc", func() error { _, err := tai.New(pol, act, tai.WithGates(tai.GateFunc(nil))); return err }, "gate 0 is nil"},
		{"nil GuardFunc", func() error { _, err := tai.New(pol, act, tai.WithGuards(tai.GuardFunc(nil))); return err }, "guard 0 is nil"},
		{"nil *wrapOnly guard", func() error { _, err := tai.New(pol, act, tai.WithGuards((*wrapOnly)(nil))); return err }, "guard 0 is nil"},
		{"nil ObserverFunc", func() error { _, err := tai.New(pol, act, tai.WithObservers(tai.ObserverFunc(nil))); return err }, "observer 0 is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorContains(t, tt.new(), tt.want)
		})
	}
	// A nil Option is ignored rather than crashing.
	_, err := tai.New(pol, act, nil)
	require.NoError(t, err)
	// A nil *T tracer, as a nil Tracer, means no tracing.
	var tracer *spanTracer
	p, err := tai.New(pol, act, tai.WithTracer(tracer))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, tai.Succeeded, res.Outcome)
}

var nilScored *tai.Scored[int]

func TestPanicsRecovered(t *testing.T) {
	panicPolicy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) { panic("policy bug") })
	panicAction := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { panic(errors.New("action bug")) })
	panicGate := tai.GateFunc(func(context.Context, string) error { panic("gate bug") })
	panicGuard := tai.GuardFunc(func(context.Context, func(context.Context) error) error { panic("guard bug") })
	tests := []struct {
		name   string
		policy tai.Policy[int]
		action tai.Action[int, int]
		opts   []tai.Option
		stage  tai.Stage
	}{
		{"policy bare", panicPolicy, doubleAction(&journal{}), nil, tai.StagePolicy},
		{"action bare", fixed(allow, nil), panicAction, nil, tai.StageAction},
		{"policy hooked", panicPolicy, doubleAction(&journal{}), []tai.Option{tai.WithObservers(taitest.NopObserver{})}, tai.StagePolicy},
		{"action hooked", fixed(allow, nil), panicAction, []tai.Option{tai.WithObservers(taitest.NopObserver{})}, tai.StageAction},
		{"action guarded", fixed(allow, nil), panicAction, []tai.Option{tai.WithGuards(taitest.NopGuard{})}, tai.StageAction},
		{"gate", fixed(allow, nil), doubleAction(&journal{}), []tai.Option{tai.WithGates(panicGate)}, tai.StageGate},
		{"guard", fixed(allow, nil), doubleAction(&journal{}), []tai.Option{tai.WithGuards(panicGuard)}, tai.StageAction},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &journal{}
			tr := &spanTracer{j: j}
			p, err := tai.New(tt.policy, tt.action, append(tt.opts, tai.WithTracer(tr))...)
			require.NoError(t, err)
			res, err := p.Process(context.Background(), sig())
			var pe *tai.PanicError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tt.stage, pe.Stage)
			assert.Equal(t, tai.Failed, res.Outcome)
			assert.Contains(t, string(pe.Stack), "pipeline_test.go", "the stack points at the panic")
			assert.Contains(t, err.Error(), "tai: panic in "+tt.stage.String())
			steps := j.get()
			assert.Equal(t, "end signal:test failed", steps[len(steps)-1], "the root span is ended: %v", steps)
			starts, ends := 0, 0
			for _, s := range steps {
				if strings.HasPrefix(s, "start") {
					starts++
				} else {
					ends++
				}
			}
			assert.Equal(t, starts, ends, "every span is ended: %v", steps)
		})
	}
	t.Run("panic value that is an error unwraps", func(t *testing.T) {
		p, err := tai.New(fixed(allow, nil), panicAction)
		require.NoError(t, err)
		_, err = p.Process(context.Background(), sig())
		assert.EqualError(t, errors.Unwrap(err), "action bug")
	})
}

type panicObserver struct{}

func (panicObserver) Observe(context.Context, tai.Record) { panic("observer bug") }

func TestObserverPanicIsLoggedAndHarmless(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	obs := &recObserver{j: &journal{}}
	p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}), tai.WithObservers(panicObserver{}, obs), tai.WithLogger(logger))
	require.NoError(t, err)
	s := sig()
	res, err := p.Process(context.Background(), s)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Value)
	assert.Contains(t, buf.String(), "observer panicked")
	assert.Contains(t, buf.String(), s.ID)
	assert.Equal(t, s.ID, obs.last(t).ID, "later observers still run")
}

func TestCancellation(t *testing.T) {
	t.Run("before the policy", func(t *testing.T) {
		for _, hooked := range []bool{false, true} {
			j := &journal{}
			var opts []tai.Option
			if hooked {
				opts = append(opts, tai.WithObservers(taitest.NopObserver{}))
			}
			p, err := tai.New(allowPolicy(j), doubleAction(j), opts...)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			res, err := p.Process(ctx, sig())
			require.ErrorIs(t, err, context.Canceled)
			var se *tai.StageError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tai.StagePolicy, se.Stage)
			assert.Equal(t, tai.Failed, res.Outcome)
			assert.Empty(t, j.get())
		}
	})
	t.Run("in a gate", func(t *testing.T) {
		j := &journal{}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		gate := tai.GateFunc(func(context.Context, string) error { cancel(); return nil })
		p, err := tai.New(allowPolicy(j), doubleAction(j), tai.WithGates(gate))
		require.NoError(t, err)
		_, err = p.Process(ctx, sig())
		require.ErrorIs(t, err, context.Canceled)
		assert.Empty(t, j.get(), "neither the policy nor the action ran")
	})
	t.Run("in the policy", func(t *testing.T) {
		for _, hooked := range []bool{false, true} {
			j := &journal{}
			ctx, cancel := context.WithCancel(context.Background())
			policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
				cancel()
				return allow, nil
			})
			var opts []tai.Option
			if hooked {
				opts = append(opts, tai.WithGuards(namedGuard{name: "g", j: j}))
			}
			p, err := tai.New(policy, doubleAction(j), opts...)
			require.NoError(t, err)
			res, err := p.Process(ctx, sig())
			require.ErrorIs(t, err, context.Canceled)
			var se *tai.StageError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tai.StageAction, se.Stage)
			assert.Equal(t, "tai: before action: context canceled", err.Error())
			assert.Equal(t, allow, res.Decision, "the decision is kept")
			assert.Empty(t, j.get(), "neither the guard nor the action ran")
		}
	})
}

// waitGuard is a TwoStepGuard whose Allow waits for a slot that never
// comes free, as a full bulkhead's line does, until ctx ends; it then
// refuses the call with an error that wraps ctx.Err(). Before it waits it
// calls leave, which may end the caller's context.
type waitGuard struct {
	leave func()
}

func (g waitGuard) Name() string { return "bulkhead" }

func (g waitGuard) Allow(ctx context.Context) (func(error), error) {
	g.leave()
	<-ctx.Done()
	return nil, fmt.Errorf("line full: %w", ctx.Err())
}

func (g waitGuard) Do(ctx context.Context, fn func(context.Context) error) error {
	return tai.DoTwoStep(ctx, g, fn)
}

// A caller that cancels its context while a gate or a guard makes its
// signal wait (for a rate limit's token, a bulkhead's slot) has gone: the
// signal was not shed, and is not Rejected. It fails as a signal whose
// context ended before a stage does, with a *StageError that holds the
// hook's error, so errors.Is finds context.Canceled; the guards already
// passed are told the hook's error, as with any refusal. A deadline that
// passes during the wait is a refusal: the signal waited longer than the
// caller allowed, and is Rejected, as a wait that would outlast it is.
func TestCallerGivingUpWhileAHookWaits(t *testing.T) {
	waitingGate := func(leave func()) tai.Gate {
		return tai.GateFunc(func(ctx context.Context, _ string) error {
			leave()
			<-ctx.Done()
			return fmt.Errorf("waiting for a token: %w", ctx.Err())
		})
	}
	for _, tt := range []struct {
		name    string
		opts    func(j *journal, leave func()) []tai.Option
		stage   tai.Stage // of the *StageError
		journal []string
	}{
		{"gate", func(j *journal, leave func()) []tai.Option {
			return []tai.Option{tai.WithGates(waitingGate(leave))}
		}, tai.StagePolicy, nil},
		{"second gate", func(j *journal, leave func()) []tai.Option {
			return []tai.Option{tai.WithGates(tai.GateFunc(func(context.Context, string) error { return nil }), waitingGate(leave))}
		}, tai.StagePolicy, nil},
		{"two-step guard", func(j *journal, leave func()) []tai.Option {
			return []tai.Option{tai.WithGuards(&stepGuard{name: "breaker", j: j}, waitGuard{leave})}
		}, tai.StageAction, []string{"policy", "breaker allow", "breaker done *fmt.wrapError"}},
		{"wrapped guard", func(j *journal, leave func()) []tai.Option {
			return []tai.Option{tai.WithGuards(wrapOnly{&stepGuard{name: "breaker", j: j}}, waitGuard{leave})}
		}, tai.StageAction, []string{"policy", "breaker allow", "breaker done *fmt.wrapError"}},
	} {
		t.Run(tt.name+"/canceled", func(t *testing.T) {
			j := &journal{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var rec tai.Record
			opts := append(tt.opts(j, cancel), tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { rec = r })))
			p, err := tai.New(allowPolicy(j), doubleAction(j), opts...)
			require.NoError(t, err)
			res, err := p.Process(ctx, sig())
			assert.Equal(t, tai.Failed, res.Outcome, "%v", err)
			assert.Equal(t, tai.Failed, rec.Outcome)
			require.ErrorIs(t, err, context.Canceled)
			assert.NotErrorIs(t, err, tai.ErrRejected, "a caller that left is not shed load")
			var se *tai.StageError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tt.stage, se.Stage)
			assert.Contains(t, err.Error(), "context canceled")
			assert.Equal(t, tt.journal, j.get(), "neither the action nor what follows the hook ran")
		})
		t.Run(tt.name+"/deadline", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				j := &journal{}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				p, err := tai.New(allowPolicy(j), doubleAction(j), tt.opts(j, func() {})...)
				require.NoError(t, err)
				res, err := p.Process(ctx, sig())
				assert.Equal(t, tai.Rejected, res.Outcome, "%v", err)
				require.ErrorIs(t, err, context.DeadlineExceeded)
				var rej *tai.RejectedError
				require.ErrorAs(t, err, &rej)
			})
		})
	}
	// A wait that a deadline of the guards' own ends, while the caller
	// still waits for an answer, is a refusal: the signal is shed.
	t.Run("the guards' own deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			deadline := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				return fn(ctx)
			})
			j := &journal{}
			p, err := tai.New(allowPolicy(j), doubleAction(j), tai.WithGuards(deadline, waitGuard{func() {}}))
			require.NoError(t, err)
			res, err := p.Process(context.Background(), sig())
			assert.Equal(t, tai.Rejected, res.Outcome, "%v", err)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			var rej *tai.RejectedError
			require.ErrorAs(t, err, &rej)
			assert.Equal(t, "bulkhead", rej.Hook)
		})
	})
}

func TestAbandonedGuard(t *testing.T) {
	release := make(chan struct{})
	finished := make(chan struct{})
	abandon := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		go func() {
			defer close(finished)
			_ = fn(ctx)
		}()
		return errors.New("timed out")
	})
	action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
		<-release
		return 1, nil
	})
	p, err := tai.New(fixed(allow, nil), action, tai.WithGuards(abandon))
	require.NoError(t, err)
	// The guard's goroutine may not have started the action yet; the
	// pipeline then sees a guard that never ran it.
	res, err := p.Process(context.Background(), sig())
	require.Error(t, err)
	assert.NotEqual(t, tai.Succeeded, res.Outcome)
	close(release)
	<-finished
	// Later signals are unaffected by the late result.
	ok, err := tai.New(fixed(allow, nil), doubleAction(&journal{}), tai.WithGuards(taitest.NopGuard{}))
	require.NoError(t, err)
	res2, err := ok.Process(context.Background(), tai.NewSignal("test", "k", 5))
	require.NoError(t, err)
	assert.Equal(t, 10, res2.Value)
}

func TestAbandonedWhileRunning(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	finished := make(chan struct{})
	abandon := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		go func() {
			defer close(finished)
			_ = fn(ctx)
		}()
		<-started
		return errors.New("timed out")
	})
	action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
		close(started)
		<-release
		return 1, nil
	})
	p, err := tai.New(fixed(allow, nil), action, tai.WithGuards(abandon))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), sig())
	require.ErrorIs(t, err, tai.ErrAbandoned)
	assert.Equal(t, tai.Failed, res.Outcome)
	close(release)
	<-finished
}

// The error a guard returned as it abandoned the action (a timeout's
// deadline) stays in the signal's error beside ErrAbandoned, so that a
// caller can tell a timeout from another failure (an HTTP 504, not a
// 500); the signal is Failed whatever that error wraps, another
// pipeline's rejection included, since the action may still run.
func TestAbandonedKeepsTheGuardsError(t *testing.T) {
	other := &tai.RejectedError{Stage: tai.StageGate, Err: errors.New("limited")}
	for _, tt := range []struct {
		name string
		err  error
		is   error
	}{
		{"deadline", fmt.Errorf("gave up: %w", context.DeadlineExceeded), context.DeadlineExceeded},
		{"a rejection", other, tai.ErrRejected},
	} {
		t.Run(tt.name, func(t *testing.T) {
			started, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
			abandon := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
				go func() {
					defer close(finished)
					_ = fn(ctx)
				}()
				<-started
				return tt.err
			})
			action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
				close(started)
				<-release
				return 1, nil
			})
			p, err := tai.New(fixed(allow, nil), action, tai.WithGuards(abandon))
			require.NoError(t, err)
			res, err := p.Process(context.Background(), sig())
			close(release)
			<-finished
			require.ErrorIs(t, err, tai.ErrAbandoned)
			assert.ErrorIs(t, err, tt.is, "the guard's error is kept")
			assert.ErrorContains(t, err, tt.err.Error())
			assert.Equal(t, tai.Failed, res.Outcome)
			assert.Equal(t, tai.Failed, tai.OutcomeOf(err))
		})
	}
}

func TestGuardThatSkipsTheAction(t *testing.T) {
	skip := tai.GuardFunc(func(context.Context, func(context.Context) error) error { return nil })
	p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}), tai.WithGuards(skip))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), sig())
	require.ErrorContains(t, err, "guard returned without running the action")
	assert.Equal(t, tai.Rejected, res.Outcome)
}

func TestRecord(t *testing.T) {
	for _, stages := range []bool{false, true} {
		t.Run(fmt.Sprintf("stages=%v", stages), func(t *testing.T) {
			obs := &recObserver{j: &journal{}, stages: stages}
			p, err := tai.New(fixed(deny8, nil), doubleAction(&journal{}), tai.WithObservers(obs), tai.WithGates(taitest.NopGate{}))
			require.NoError(t, err)
			s := tai.NewSignal("payment", "cust_1", 1)
			_, err = p.Process(context.Background(), s)
			require.ErrorIs(t, err, tai.ErrDenied)
			r := obs.last(t)
			assert.Equal(t, s.ID, r.ID)
			assert.Equal(t, "payment", r.Kind)
			assert.Equal(t, "cust_1", r.Key)
			assert.Equal(t, tai.Denied, r.Outcome)
			assert.Equal(t, deny8, r.Decision)
			assert.Equal(t, err, r.Err)
			assert.Equal(t, r.Duration, r.StageDuration(tai.StageSignal))
			assert.Zero(t, r.StageDuration(tai.StageAction), "the action was not reached")
			assert.Zero(t, r.StageDuration(tai.Stage(9)))
		})
	}
}

// sleepy returns hooks that each take a time of their own on the clock of
// a synctest bubble: the gate 1s, the policy 2s, the action 3s.
func sleepy() (tai.Gate, tai.Policy[int], tai.Action[int, int]) {
	gate := tai.GateFunc(func(context.Context, string) error { time.Sleep(time.Second); return nil })
	policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		time.Sleep(2 * time.Second)
		return allow, nil
	})
	action := tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) {
		time.Sleep(3 * time.Second)
		return s.Payload, nil
	})
	return gate, policy, action
}

// TestRecordTimes: Start is the wall clock when Process began, and
// Duration and Stages are the time each stage took, exactly, on the clock
// of a synctest bubble.
func TestRecordTimes(t *testing.T) {
	for _, stages := range []bool{false, true} {
		t.Run(fmt.Sprintf("stages=%v", stages), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				obs := &recObserver{j: &journal{}, stages: stages}
				gate, policy, action := sleepy()
				p, err := tai.New(policy, action, tai.WithGates(gate), tai.WithObservers(obs))
				require.NoError(t, err)
				for range 2 {
					time.Sleep(time.Hour) // each record has its own start
					start := time.Now()
					_, err = p.Process(context.Background(), sig())
					require.NoError(t, err)
					r := obs.last(t)
					assert.True(t, r.Start.Equal(start), "Start %v, want %v", r.Start, start)
					assert.Equal(t, start.UnixNano(), r.Start.UnixNano())
					assert.Equal(t, 6*time.Second, r.Duration)
					want := [...]time.Duration{6 * time.Second, 0, 0, 0}
					if stages {
						want = [...]time.Duration{6 * time.Second, time.Second, 2 * time.Second, 3 * time.Second}
					}
					assert.Equal(t, want, r.Stages)
				}
			})
		})
	}
}

// TestRecordTimesOfAnUnfinishedStage: the stage a signal ended in is
// timed up to its end.
func TestRecordTimesOfAnUnfinishedStage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := &recObserver{j: &journal{}, stages: true}
		gate, _, action := sleepy()
		denySlowly := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			time.Sleep(2 * time.Second)
			return deny, nil
		})
		p, err := tai.New(denySlowly, action, tai.WithGates(gate), tai.WithObservers(obs))
		require.NoError(t, err)
		_, err = p.Process(context.Background(), sig())
		require.ErrorIs(t, err, tai.ErrDenied)
		assert.Equal(t, [...]time.Duration{3 * time.Second, time.Second, 2 * time.Second, 0}, obs.last(t).Stages)

		refuse := tai.GateFunc(func(context.Context, string) error { time.Sleep(time.Second); return errors.New("no") })
		p, err = tai.New(denySlowly, action, tai.WithGates(taitest.NopGate{}, refuse), tai.WithObservers(obs))
		require.NoError(t, err)
		_, err = p.Process(context.Background(), sig())
		require.ErrorIs(t, err, tai.ErrRejected)
		assert.Equal(t, [...]time.Duration{time.Second, time.Second, 0, 0}, obs.last(t).Stages)
	})
}

func TestConcurrentSignals(t *testing.T) {
	var gates, guards, observed, actions atomic.Int64
	p, err := tai.New(
		tai.All(fixed(allow, nil), tai.PolicyFunc[int](func(_ context.Context, s tai.Signal[int]) (tai.Decision, error) {
			if s.Payload%10 == 0 {
				return tai.Decision{Verdict: tai.Deny, Policy: "tens"}, nil
			}
			return allow, nil
		})),
		tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) {
			actions.Add(1)
			return s.Payload, nil
		}),
		tai.WithGates(tai.GateFunc(func(context.Context, string) error { gates.Add(1); return nil })),
		tai.WithGuards(tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error { guards.Add(1); return fn(ctx) })),
		tai.WithObservers(tai.ObserverFunc(func(context.Context, tai.Record) { observed.Add(1) })),
		tai.WithTracer(&spanTracer{j: &journal{}, withCtx: true}),
	)
	require.NoError(t, err)
	const n = 1000
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for i := range n {
		wg.Go(func() {
			for k := range 5 {
				v := i*5 + k
				res, err := p.Process(context.Background(), tai.NewSignal("test", "k", v))
				switch {
				case v%10 == 0 && (res.Outcome != tai.Denied || !errors.Is(err, tai.ErrDenied)):
					wrong.Add(1)
				case v%10 != 0 && (err != nil || res.Value != v):
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Zero(t, wrong.Load())
	assert.EqualValues(t, 5*n, gates.Load())
	assert.EqualValues(t, 5*n, observed.Load())
	assert.EqualValues(t, 4500, actions.Load())
	assert.EqualValues(t, 4500, guards.Load())
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "stage(7)", tai.Stage(7).String())
	var id tai.TraceID
	assert.False(t, id.IsValid())
	assert.Equal(t, "", id.String())
	var sid tai.SpanID
	assert.Equal(t, "", sid.String())
	sid[0] = 1
	assert.Equal(t, "0100000000000000", sid.String())
	assert.Nil(t, tai.TracerFromContext(context.Background()))
	ctx, span := tai.StartSpan(context.Background(), tai.SpanInfo{Name: "x"})
	assert.Nil(t, span)
	assert.NotNil(t, ctx)
	tai.EndSpan(nil, nil) // a nil span is fine
}

func TestNewSignal(t *testing.T) {
	a, b := tai.NewSignal("payment", "cust", 1), tai.NewSignal("payment", "cust", 1)
	assert.Len(t, a.ID, 32)
	assert.Regexp(t, "^[0-9a-f]{32}$", a.ID)
	assert.NotEqual(t, a.ID, b.ID)
	assert.WithinDuration(t, time.Now(), a.Time, time.Minute)
	assert.Equal(t, "payment", a.Kind)
	assert.Equal(t, "cust", a.Key)
}

// TestFailedResultHasNoValue: whatever an action returns along with an
// error, the Result's Value is the zero R.
func TestFailedResultHasNoValue(t *testing.T) {
	boom := errors.New("half done")
	action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 42, boom })
	for name, opts := range map[string][]tai.Option{
		"bare":    nil,
		"guarded": {tai.WithGuards(tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }))},
		"stepped": {tai.WithGuards(taitest.NopGuard{})},
	} {
		p, err := tai.New(fixed(allow, nil), action, opts...)
		require.NoError(t, err)
		res, err := p.Process(context.Background(), sig())
		require.ErrorIs(t, err, boom, name)
		assert.Equal(t, tai.Failed, res.Outcome, name)
		assert.Zero(t, res.Value, name)
	}
}

// panicTracer panics when asked to open a span for stage panicAt.
type panicTracer struct {
	*spanTracer
	panicAt tai.Stage
}

func (t panicTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage == t.panicAt {
		panic("tracer bug")
	}
	return t.spanTracer.Start(ctx, info)
}

// TestTracerPanic: a Tracer that panics fails the signal like any other
// hook, and every span it did open is ended exactly once.
func TestTracerPanic(t *testing.T) {
	for _, at := range []tai.Stage{tai.StagePolicy, tai.StageAction} {
		t.Run(at.String(), func(t *testing.T) {
			j := &journal{}
			tr := panicTracer{&spanTracer{j: j}, at}
			p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}),
				tai.WithTracer(tr), tai.WithGates(namedGate{name: "g", j: &journal{}}))
			require.NoError(t, err)
			res, err := p.Process(context.Background(), sig())
			var pe *tai.PanicError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, at, pe.Stage)
			assert.Equal(t, tai.Failed, res.Outcome)
			want := []string{
				"start signal:test parent -",
				"start gate:g parent signal:test", "end gate:g ok",
			}
			if at == tai.StageAction {
				want = append(want, "start policy:policy parent signal:test", "end policy:policy ok")
			}
			assert.Equal(t, append(want, "end signal:test failed"), j.get())
		})
	}
}

// TestPolicyErrorNames: a policy's error is a *PolicyError naming the
// policy that failed — the one its decision names, else the pipeline's
// policy — and an error that already is one, or a panic, is not wrapped
// again.
// velocityFails is an unnamed policy that names itself in its decision,
// and errs with err.
func velocityFails(err error) tai.Policy[int] {
	return tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Policy: "velocity"}, err
	})
}

func TestPolicyErrorNames(t *testing.T) {
	boom := errors.New("store down")
	tests := []struct {
		name   string
		policy tai.Policy[int]
		want   string // PolicyError.Policy
		msg    string
	}{
		{"unnamed", failing(boom), "policy", `tai: policy "policy" failed: store down`},
		{"named", tai.Named("geo", failing(boom)), "geo", `tai: policy "geo" failed: store down`},
		{"the decision names it", tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Policy: "velocity"}, boom
		}), "velocity", `tai: policy "velocity" failed: store down`},
		{"an Allow with an error", tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow, Policy: "velocity"}, boom
		}), "velocity", `tai: policy "velocity" failed: store down`},
		{"inside All", tai.All(fixed(allow, nil), tai.Named("geo", failing(boom))), "geo", `tai: policy "geo" failed: store down`},
		{"inside Any", tai.Any(fixed(deny, nil), failing(boom)), "#1", `tai: policy "#1" failed: store down`},
		{"inside All inside All", tai.All(fixed(allow, nil), tai.All(tai.Named("geo", failing(boom)))), "geo", `tai: policy "geo" failed: store down`},
		{"inside a named All inside Any", tai.Any(fixed(deny, nil), tai.Named("checks", tai.All(failing(boom)))), "#0", `tai: policy "#0" failed: store down`},
		{"inside All, the decision names it", tai.All(fixed(allow, nil), velocityFails(boom)), "velocity", `tai: policy "velocity" failed: store down`},
		{"inside Any, the decision names it", tai.Any(fixed(deny, nil), velocityFails(boom)), "velocity", `tai: policy "velocity" failed: store down`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tai.New(tt.policy, doubleAction(&journal{}))
			require.NoError(t, err)
			res, err := p.Process(context.Background(), sig())
			require.ErrorIs(t, err, boom)
			var pe *tai.PolicyError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tt.want, pe.Policy)
			assert.Equal(t, tt.msg, err.Error())
			assert.Equal(t, tai.Failed, res.Outcome)
		})
	}
	t.Run("a panicking rule", func(t *testing.T) {
		scored, err := tai.NewScored(tai.ScoredOptions{Name: "fraud"}, tai.Rule[int]{Name: "geo", Weight: 1,
			Check: func(context.Context, tai.Signal[int]) (float64, string, error) { panic("rule bug") }})
		require.NoError(t, err)
		for _, policy := range []tai.Policy[int]{scored, tai.All(fixed(allow, nil), scored), tai.Any(fixed(deny, nil), tai.All(scored))} {
			p, err := tai.New(policy, doubleAction(&journal{}))
			require.NoError(t, err)
			_, err = p.Process(context.Background(), sig())
			var pa *tai.PanicError
			require.ErrorAs(t, err, &pa)
			assert.Equal(t, tai.StagePolicy, pa.Stage)
			var pe *tai.PolicyError
			assert.False(t, errors.As(err, &pe), "a panic is not wrapped as a policy error: %v", err)
		}
	})
}

// TestObserverPanicWithoutLogger: without WithLogger, an observer's panic
// goes to slog.Default().
func TestObserverPanicWithoutLogger(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}), tai.WithObservers(panicObserver{}))
	require.NoError(t, err)
	s := sig()
	_, err = p.Process(context.Background(), s)
	require.NoError(t, err)
	assert.Contains(t, buf.String(), "observer panicked")
	assert.Contains(t, buf.String(), "signal_id="+s.ID)
}

// slowTracer takes a second to open the root span, on a synctest clock.
type slowTracer struct{ taitest.NopTracer }

func (t slowTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage == tai.StageSignal {
		time.Sleep(time.Second)
	}
	return t.NopTracer.Start(ctx, info)
}

// TestStageTimesAddUp: the stage times add up to Duration, and a pipeline
// without gates spends no time at the gate stage.
func TestStageTimesAddUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := &recObserver{j: &journal{}, stages: true}
		_, policy, action := sleepy()
		p, err := tai.New(policy, action, tai.WithObservers(obs), tai.WithTracer(slowTracer{}))
		require.NoError(t, err)
		_, err = p.Process(context.Background(), sig())
		require.NoError(t, err)
		r := obs.last(t)
		assert.Equal(t, 6*time.Second, r.Duration)
		assert.Zero(t, r.Stages[tai.StageGate])
		assert.Equal(t, r.Duration, r.Stages[tai.StageGate]+r.Stages[tai.StagePolicy]+r.Stages[tai.StageAction])
	})
}

// TestObserverSeesTheSignalSpan: an observer's context carries the
// signal's root span, so what it logs joins the trace at the signal.
func TestObserverSeesTheSignalSpan(t *testing.T) {
	var got string
	obs := tai.ObserverFunc(func(ctx context.Context, _ tai.Record) {
		if s, ok := ctx.Value(spanKey{}).(*recSpan); ok {
			got = s.name
		}
	})
	p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}),
		tai.WithTracer(&spanTracer{j: &journal{}}), tai.WithObservers(obs))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, "signal:test", got)
}

// A gate, policy or action that ends its goroutine with runtime.Goexit
// (t.FailNow in a test's hook) never returns to Process, but the observers
// still hear of the signal, as a failure: a *PanicError of that stage with
// no value, as DoTwoStep reports it. Neither a metric nor an audit line
// counts it as a success.
func TestGoexitIsObservedAsAFailure(t *testing.T) {
	for _, stage := range []tai.Stage{tai.StageGate, tai.StagePolicy, tai.StageAction} {
		t.Run(stage.String(), func(t *testing.T) {
			exitIn := func(st tai.Stage) {
				if st == stage {
					runtime.Goexit()
				}
			}
			gate := tai.GateFunc(func(context.Context, string) error { exitIn(tai.StageGate); return nil })
			policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
				exitIn(tai.StagePolicy)
				return allow, nil
			})
			action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
				exitIn(tai.StageAction)
				return 1, nil
			})
			recs := make(chan tai.Record, 1)
			obs := tai.ObserverFunc(func(_ context.Context, r tai.Record) { recs <- r })
			p, err := tai.New(policy, action, tai.WithGates(gate), tai.WithObservers(obs))
			require.NoError(t, err)
			processEnding(t, p, sig())
			rec := <-recs
			assert.Equal(t, tai.Failed, rec.Outcome)
			var pe *tai.PanicError
			require.ErrorAs(t, rec.Err, &pe)
			assert.Equal(t, stage, pe.Stage)
			assert.Nil(t, pe.Value)
			assert.Equal(t, "tai: runtime.Goexit in "+stage.String(), rec.Err.Error(), "no panic(nil) to look for")
		})
	}
}

// A guard that keeps fn and calls it after its Do returned breaks its
// contract in a way the pipeline cannot see: the signal has ended as the
// guard's Do said, and the late call runs the action with the state the
// pipeline reuses, never with the signal that ended.
func TestCallOfTheActionAfterTheGuardReturned(t *testing.T) {
	release := make(chan struct{})
	finished := make(chan struct{})
	var once sync.Once
	keep := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		once.Do(func() {
			go func() {
				defer close(finished)
				<-release
				_ = fn(ctx)
			}()
		})
		return fn(ctx)
	})
	seen := make(chan string, 2)
	action := tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) {
		seen <- s.ID
		return s.Payload * 2, nil
	})
	p, err := tai.New(fixed(allow, nil), action, tai.WithGuards(keep))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.Signal[int]{ID: "first", Kind: "k", Payload: 21})
	require.NoError(t, err, "a call made after Do returned cannot be detected")
	assert.Equal(t, 42, res.Value)
	assert.Equal(t, "first", <-seen)
	close(release)
	<-finished
	assert.NotEqual(t, "first", <-seen, "the late call ran the action with the signal that had ended")
}

// A context that ended before Process began ends the signal before its
// gates as before its policy: no gate spends a token of the key's budget
// on it, and a gate that would have answered with the context's error (a
// store's round trip) does not turn the signal into a Rejected one, the
// outcome that says the line shed load.
func TestCancellationBeforeTheGates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, opts := range map[string]func(j *journal) []tai.Option{
		"a gate": func(j *journal) []tai.Option { return []tai.Option{tai.WithGates(namedGate{name: "limit", j: j})} },
		"a gate that asks a store": func(j *journal) []tai.Option {
			return []tai.Option{tai.WithGates(tai.GateFunc(func(ctx context.Context, key string) error {
				j.add("gate " + key)
				return ctx.Err()
			}))}
		},
		"hooked": func(j *journal) []tai.Option {
			return []tai.Option{tai.WithGates(namedGate{name: "limit", j: j}), tai.WithObservers(taitest.NopObserver{})}
		},
	} {
		t.Run(name, func(t *testing.T) {
			j := &journal{}
			p, err := tai.New(allowPolicy(j), doubleAction(j), opts(j)...)
			require.NoError(t, err)
			res, err := p.Process(ctx, sig())
			require.ErrorIs(t, err, context.Canceled)
			assert.Equal(t, tai.Failed, res.Outcome)
			var se *tai.StageError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tai.StageGate, se.Stage)
			assert.Empty(t, j.get(), "no gate, policy or action ran")
		})
	}
}

// A stage the context ended before has no time in Record.Stages: a
// histogram per stage (kaizenprom's) counts only the stages that ran. The
// time from the end of the last stage to the check goes to that stage, so
// the stages still add up to the Duration.
func TestStageTimesOfACanceledSignal(t *testing.T) {
	gate := tai.GateFunc(func(context.Context, string) error { return nil })
	for _, c := range []struct {
		name   string
		cancel tai.Stage // the stage whose hook cancels; StageSignal before Process
		opts   []tai.Option
		ran    []tai.Stage
	}{
		{"before the gates", tai.StageSignal, []tai.Option{tai.WithGates(gate)}, nil},
		{"before the policy", tai.StageSignal, nil, nil},
		{"in a gate", tai.StageGate, nil, []tai.Stage{tai.StageGate}},
		{"in the policy", tai.StagePolicy, nil, []tai.Stage{tai.StagePolicy}},
		{"in the policy, after gates", tai.StagePolicy, []tai.Option{tai.WithGates(gate)}, []tai.Stage{tai.StageGate, tai.StagePolicy}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.cancel == tai.StageSignal {
				cancel()
			}
			policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
				if c.cancel == tai.StagePolicy {
					cancel()
				}
				return allow, nil
			})
			opts := c.opts
			if c.cancel == tai.StageGate {
				opts = []tai.Option{tai.WithGates(tai.GateFunc(func(context.Context, string) error { cancel(); return nil }))}
			}
			obs := &recObserver{j: &journal{}, stages: true}
			p, err := tai.New(policy, doubleAction(&journal{}), append(opts, tai.WithObservers(obs))...)
			require.NoError(t, err)
			_, err = p.Process(ctx, sig())
			require.ErrorIs(t, err, context.Canceled)
			r := obs.last(t)
			var sum time.Duration
			for _, st := range []tai.Stage{tai.StageGate, tai.StagePolicy, tai.StageAction} {
				sum += r.Stages[st]
				if !slices.Contains(c.ran, st) {
					assert.Zero(t, r.Stages[st], "the %s stage did not run", st)
				}
			}
			if len(c.ran) > 0 {
				assert.Equal(t, r.Duration, sum, "the stages add up to the Duration")
			}
		})
	}
}

// renamedPolicy is a policy whose name can change, as a taicel Loader's
// does when it loads a renamed rule set; it fails when err is set.
type renamedPolicy struct {
	name atomic.Pointer[string]
	err  error
}

func (p *renamedPolicy) Name() string { return *p.name.Load() }
func (p *renamedPolicy) Evaluate(context.Context, tai.Signal[int]) (tai.Decision, error) {
	if p.err != nil {
		return tai.Decision{}, p.err
	}
	return tai.Decision{Verdict: tai.Allow}, nil
}

// The pipeline asks its policy for its name at each signal: a policy
// renamed after New names the policy span, and the *PolicyError of a
// failure, with its name of the moment.
func TestPolicyRenamedAfterNew(t *testing.T) {
	pol := &renamedPolicy{}
	first, second := "orders", "payments"
	pol.name.Store(&first)
	j := &journal{}
	p, err := tai.New[int, int](pol, doubleAction(&journal{}), tai.WithTracer(&spanTracer{j: j}))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	require.NoError(t, err)
	pol.name.Store(&second)
	_, err = p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	require.NoError(t, err)
	assert.Contains(t, j.get(), "start policy:orders parent signal:payment")
	assert.Contains(t, j.get(), "start policy:payments parent signal:payment")
	assert.NotContains(t, j.get()[len(j.get())/2:], "start policy:orders parent signal:payment")

	pol.err = errors.New("store down")
	_, err = p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	var pe *tai.PolicyError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "payments", pe.Policy)
}

// Record.Reached marks the stages a signal entered, so a stage timed at
// zero, as every stage is under testing/synctest, is told from one the
// signal never reached.
func TestRecordReachedMarksTheStagesEntered(t *testing.T) {
	gate := tai.GateFunc(func(context.Context, string) error { return nil })
	shut := tai.GateFunc(func(context.Context, string) error { return errors.New("shut") })
	deny := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Deny}, nil
	})
	panics := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) { panic("boom") })
	for _, c := range []struct {
		name   string
		policy tai.Policy[int]
		gates  []tai.Gate
		want   [4]bool // signal, gate, policy, action
	}{
		{"all stages", fixed(allow, nil), []tai.Gate{gate}, [4]bool{true, true, true, true}},
		{"no gates", fixed(allow, nil), nil, [4]bool{true, false, true, true}},
		{"rejected", fixed(allow, nil), []tai.Gate{shut}, [4]bool{true, true, false, false}},
		{"denied", deny, []tai.Gate{gate}, [4]bool{true, true, true, false}},
		{"policy panicked", panics, nil, [4]bool{true, false, true, false}},
	} {
		for _, stages := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stages=%v", c.name, stages), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					obs := &recObserver{j: &journal{}, stages: stages}
					p, err := tai.New(c.policy, doubleAction(&journal{}), tai.WithGates(c.gates...), tai.WithObservers(obs))
					require.NoError(t, err)
					_, _ = p.Process(context.Background(), sig())
					r := obs.last(t)
					assert.Equal(t, c.want, r.Reached)
					assert.Equal(t, stages, r.StagesTimed, "the stages are timed only for a StageObserver")
					for st := range r.Stages {
						assert.Zero(t, r.Stages[st], "no time passes in the bubble")
					}
				})
			})
		}
	}
	t.Run("canceled before the policy", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		obs := &recObserver{j: &journal{}, stages: true}
		p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}), tai.WithObservers(obs))
		require.NoError(t, err)
		_, _ = p.Process(ctx, sig())
		assert.Equal(t, [4]bool{true, false, false, false}, obs.last(t).Reached)
	})
}

// reloadedPolicy is renamed while it evaluates a signal, as a rule set
// reloaded under another name at that moment is, and then fails.
type reloadedPolicy struct {
	renamedPolicy
	next string
}

func (p *reloadedPolicy) Evaluate(context.Context, tai.Signal[int]) (tai.Decision, error) {
	p.name.Store(&p.next)
	return tai.Decision{}, errors.New("store down")
}

// A policy renamed while it evaluates a signal names that signal's span
// and its *PolicyError alike: with the name it had when the stage began.
func TestPolicyRenamedDuringASignalNamesItOnce(t *testing.T) {
	pol := &reloadedPolicy{next: "payments"}
	first := "orders"
	pol.name.Store(&first)
	j := &journal{}
	p, err := tai.New[int, int](pol, doubleAction(&journal{}), tai.WithTracer(&spanTracer{j: j}))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	assert.Contains(t, j.get(), "start policy:orders parent signal:payment")
	var pe *tai.PolicyError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "orders", pe.Policy, "the name of the policy span")
}

// countedGate counts the calls of its Name.
type countedGate struct {
	taitest.NopGate
	names *int
}

func (g countedGate) Name() string { *g.names++; return "limit" }

// New asks a gate for its name once, as Namer says.
func TestNewAsksAGateItsNameOnce(t *testing.T) {
	names := 0
	_, err := tai.New(allowAll, doubleAction(&journal{}), tai.WithGates(countedGate{names: &names}))
	require.NoError(t, err)
	assert.Equal(t, 1, names)
}

// A child policy of All renamed while it evaluates a signal names its
// span and its *PolicyError alike, as the pipeline's policy does.
func TestChildPolicyRenamedDuringASignalNamesItOnce(t *testing.T) {
	child := &reloadedPolicy{next: "payments"}
	first := "orders"
	child.name.Store(&first)
	j := &journal{}
	p, err := tai.New(tai.All[int](allowAll, child), doubleAction(&journal{}), tai.WithTracer(&spanTracer{j: j, withCtx: true}))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.NewSignal("payment", "k", 1))
	assert.Contains(t, j.get(), "start policy:orders parent policy:all")
	var pe *tai.PolicyError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "orders", pe.Policy, "the name of the child's span")
}
