package tai_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taitest"
)

// endTracer counts spans and their End calls; the span of stage panicAt
// panics in End.
type endTracer struct {
	mu      sync.Mutex
	panicAt tai.Stage
	panics  bool
	started int
	ends    map[*endSpan]int
}

type endSpan struct {
	t     *endTracer
	stage tai.Stage
}

func (t *endTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started++
	if info.Stage == tai.StageSignal {
		ctx = tai.ContextWithTracer(ctx, t)
	}
	return ctx, &endSpan{t: t, stage: info.Stage}
}

func (s *endSpan) End(error) {
	s.t.mu.Lock()
	if s.t.ends == nil {
		s.t.ends = map[*endSpan]int{}
	}
	s.t.ends[s]++
	s.t.mu.Unlock()
	if s.t.panics && s.stage == s.t.panicAt {
		panic("end " + s.stage.String())
	}
}

func (s *endSpan) SpanContext() tai.SpanContext { return tai.SpanContext{} }

func (t *endTracer) check(tb testing.TB) {
	tb.Helper()
	if len(t.ends) != t.started {
		tb.Errorf("started=%d ended=%d", t.started, len(t.ends))
	}
	for s, n := range t.ends {
		if n != 1 {
			tb.Errorf("span of %s ended %d times", s.stage, n)
		}
	}
}

func TestSpanEndPanicGivesPanicError(t *testing.T) {
	allow := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	deny := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Deny}, nil
	})
	ok := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil })
	boom := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { panic("action") })
	gate := tai.GateFunc(func(context.Context, string) error { return nil })
	for _, st := range []tai.Stage{tai.StageSignal, tai.StageGate, tai.StagePolicy, tai.StageAction} {
		for _, c := range []struct {
			name   string
			policy tai.Policy[int]
			action tai.Action[int, int]
			want   tai.Stage // the stage of the *PanicError
		}{
			{"allowed", allow, ok, st},
			{"denied", deny, ok, st},
			{"action panics", allow, boom, st},
		} {
			t.Run(fmt.Sprintf("%s/%s", st, c.name), func(t *testing.T) {
				tr := &endTracer{panicAt: st, panics: true}
				var rec tai.Record
				p, err := tai.New(c.policy, c.action, tai.WithTracer(tr), tai.WithGates(gate),
					tai.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
					tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { rec = r })))
				if err != nil {
					t.Fatal(err)
				}
				res, err := p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
				reached := !(c.name == "denied" && st == tai.StageAction)
				var pe *tai.PanicError
				switch {
				case !reached:
					if tai.OutcomeOf(err) != tai.Denied {
						t.Fatalf("err = %v", err)
					}
				case !errors.As(err, &pe):
					t.Fatalf("err = %v, want a *PanicError", err)
				case c.name == "action panics" && (st == tai.StageSignal || st == tai.StageAction):
					if pe.Value != "action" {
						t.Errorf("panic value %v, want the first panic", pe.Value)
					}
				case pe.Stage != c.want:
					t.Errorf("panic in %s, want %s", pe.Stage, c.want)
				}
				if res.Outcome != tai.OutcomeOf(err) || rec.Outcome != res.Outcome || rec.Err != err {
					t.Errorf("outcome %v, record %v %v; err %v", res.Outcome, rec.Outcome, rec.Err, err)
				}
				if res.Value != 0 && err != nil {
					t.Errorf("value %d with an error", res.Value)
				}
				tr.check(t)
			})
		}
	}
}

func TestPanickingChildPolicyEndsItsSpan(t *testing.T) {
	panics := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) { panic("child") })
	allow := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	deny := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Deny}, nil
	})
	ok := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil })
	for name, pol := range map[string]tai.Policy[int]{
		"all": tai.All(allow, panics),
		"any": tai.Any(deny, tai.All(panics)),
	} {
		t.Run(name, func(t *testing.T) {
			tr := &endTracer{}
			p, err := tai.New(pol, ok, tai.WithTracer(tr))
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
			var pe *tai.PanicError
			if !errors.As(err, &pe) || pe.Stage != tai.StagePolicy || pe.Value != "child" {
				t.Fatalf("err = %v, want a *PanicError of the policy", err)
			}
			tr.check(t)
		})
	}
}

func TestFailedPolicyHasNoVerdict(t *testing.T) {
	errStore := errors.New("store down")
	ok := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil })
	for name, pol := range map[string]tai.Policy[int]{
		"deny with error": tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Deny, Policy: "p"}, errStore
		}),
		"invalid verdict": tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: 9, Policy: "p"}, nil
		}),
		"child of all": tai.All(tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow, Policy: "p"}, errStore
		})),
	} {
		t.Run(name, func(t *testing.T) {
			var rec tai.Record
			p, err := tai.New(pol, ok, tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { rec = r })))
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
			if tai.OutcomeOf(err) != tai.Failed {
				t.Fatalf("err = %v, want Failed", err)
			}
			if res.Decision.Verdict != 0 || rec.Decision.Verdict != 0 {
				t.Errorf("verdict %v in result, %v in record; want none", res.Decision.Verdict, rec.Decision.Verdict)
			}
		})
	}
}

func TestScoredThresholdBoundaries(t *testing.T) {
	cases := []struct {
		weights      []float64
		review, deny float64
		want         tai.Verdict
	}{
		{[]float64{0.7, 0.2, 0.1}, 0, 1, tai.Deny},
		{[]float64{0.1, 0.2, 0.7}, 0, 1, tai.Deny},
		{[]float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, 0, 1, tai.Deny},
		{[]float64{0.1, 0.2}, 0, 0.3, tai.Deny},
		{[]float64{0.35, 0.2, 0.05}, 0.6, 0.9, tai.Review},
		{[]float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, 0.7, 0.9, tai.Review},
		{[]float64{0.7, 0.2, 0.1}, 1, 1, tai.Deny},
		{[]float64{0.3, 0.3, 0.1}, 0.5, 0.7, tai.Deny},
		{[]float64{0.6, 0.1, 0.2}, 0.5, 0.9, tai.Deny},
		{[]float64{0.3, 0.2}, 0.5, 0.9, tai.Review},
		{[]float64{0.49999999}, 0.5, 0.9, tai.Allow}, // short by far more than the tolerance
	}
	for _, c := range cases {
		var rules []tai.Rule[int]
		sum := 0.0
		for i, w := range c.weights {
			sum += w
			rules = append(rules, tai.Rule[int]{Name: fmt.Sprint(i), Weight: w,
				Check: func(context.Context, tai.Signal[int]) (float64, string, error) { return 1, "", nil }})
		}
		p, err := tai.NewScored(tai.ScoredOptions{Review: c.review, Deny: c.deny}, rules...)
		if err != nil {
			t.Fatal(err)
		}
		d, err := p.Evaluate(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Verdict != c.want {
			t.Errorf("weights %v (sum %.17g), review %v, deny %v: verdict %v, want %v", c.weights, sum, c.review, c.deny, d.Verdict, c.want)
		}
		if th := map[tai.Verdict]float64{tai.Deny: c.deny, tai.Review: c.review}[d.Verdict]; d.Score < th {
			t.Errorf("weights %v: score %.17g below the threshold %v of its verdict", c.weights, d.Score, th)
		}
	}
}

// A score of 0 reaches no threshold, however small: ScoreTolerance absorbs
// rounding, and a score no rule added to has none.
func TestScoredZeroScoreReachesNoThreshold(t *testing.T) {
	none := tai.Rule[int]{Name: "quiet", Weight: 1,
		Check: func(context.Context, tai.Signal[int]) (float64, string, error) { return 0, "", nil }}
	for _, o := range []tai.ScoredOptions{{Deny: 1e-10}, {Review: 1e-12, Deny: 0.5}, {Review: tai.ScoreTolerance, Deny: tai.ScoreTolerance}} {
		p, err := tai.NewScored(o, none)
		require.NoError(t, err)
		d, err := p.Evaluate(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
		require.NoError(t, err)
		assert.Equal(t, tai.Allow, d.Verdict, "%+v", o)
		assert.Zero(t, d.Score, "%+v", o)
	}
}

// A child policy or a scored rule that ends its goroutine with
// runtime.Goexit (t.FailNow in a test's policy) ends its span as a
// failure, as the pipeline ends the policy's and the signal's: the trace
// shows where the signal stopped, not a child that succeeded.
func TestGoexitInAChildPolicyEndsItsSpanAsAFailure(t *testing.T) {
	exits := tai.Named("exits", tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		runtime.Goexit()
		return tai.Decision{}, nil
	}))
	scored, err := tai.NewScored(tai.ScoredOptions{Name: "fraud"}, tai.Rule[int]{Name: "exits", Weight: 1,
		Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
			runtime.Goexit()
			return 0, "", nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ok := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil })
	for name, c := range map[string]struct {
		policy tai.Policy[int]
		span   string
	}{
		"all":    {tai.All(exits), "end policy:exits failed"},
		"any":    {tai.Any(exits), "end policy:exits failed"},
		"scored": {scored, "end policy:fraud/exits failed"},
	} {
		t.Run(name, func(t *testing.T) {
			j := &journal{}
			p, err := tai.New(c.policy, ok, tai.WithTracer(&spanTracer{j: j, withCtx: true}))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
			}()
			<-done
			got := j.get()
			if !slices.Contains(got, c.span) {
				t.Errorf("spans %q, want %q", got, c.span)
			}
		})
	}
}

// An observer that ends its goroutine with runtime.Goexit (t.FailNow in a
// test's observer) cannot be stopped from ending it, but the observers
// after it still see the signal, as they do after one that panics, and
// the logger says which observer ended it.
func TestObserversAfterOneThatCallsGoexitStillRun(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	exits := tai.ObserverFunc(func(context.Context, tai.Record) { runtime.Goexit() })
	first, after := &recObserver{j: &journal{}}, &recObserver{j: &journal{}}
	p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}),
		tai.WithObservers(first, exits, panicObserver{}, exits, after), tai.WithLogger(logger))
	require.NoError(t, err)
	s := sig()
	processEnding(t, p, s)
	assert.Equal(t, s.ID, first.last(t).ID)
	assert.Equal(t, s.ID, after.last(t).ID, "the observers after the one that ended its goroutine still run")
	assert.Len(t, after.records, 1, "once")
	assert.Contains(t, buf.String(), "runtime.Goexit")
	assert.Contains(t, buf.String(), "observer panicked", "the panicking observer after it is logged too")
}

// exitTracer opens a root span whose End (or, with inEnd false, whose
// SpanContext) ends its goroutine with runtime.Goexit, as a test's tracer
// calling t.FailNow does.
type exitTracer struct{ inEnd bool }

func (t exitTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage == tai.StageSignal {
		return ctx, exitSpan(t)
	}
	return ctx, taitest.NopSpan{}
}

type exitSpan struct{ inEnd bool }

func (s exitSpan) End(error) {
	if s.inEnd {
		runtime.Goexit()
	}
}

func (s exitSpan) SpanContext() tai.SpanContext {
	if !s.inEnd {
		runtime.Goexit()
	}
	return tai.SpanContext{}
}

// A root span that ends the goroutine with runtime.Goexit fails the
// signal as a panic in it does, and the observers are told so: they see
// every finished signal.
func TestGoexitInTheRootSpanIsObserved(t *testing.T) {
	boom := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { panic("action") })
	for _, tt := range []struct {
		name   string
		inEnd  bool
		action tai.Action[int, int]
		want   string
	}{
		{"End", true, doubleAction(&journal{}), "tai: runtime.Goexit in signal"},
		{"SpanContext", false, doubleAction(&journal{}), "tai: runtime.Goexit in signal"},
		{"End after a panic", true, boom, "tai: panic in action: action"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var recs []tai.Record
			var buf bytes.Buffer
			p, err := tai.New(fixed(allow, nil), tt.action, tai.WithTracer(exitTracer{tt.inEnd}),
				tai.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))),
				tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { recs = append(recs, r) })))
			require.NoError(t, err)
			processEnding(t, p, sig())
			require.Len(t, recs, 1, "the observer sees the signal once")
			assert.Equal(t, tai.Failed, recs[0].Outcome)
			var pe *tai.PanicError
			require.ErrorAs(t, recs[0].Err, &pe)
			assert.Equal(t, tt.want, pe.Error())
			if pe.Stage == tai.StageAction {
				assert.Contains(t, buf.String(), "tai: span called runtime.Goexit", "the later Goexit is logged")
			}
		})
	}
}

// stageExitTracer opens stage spans whose End ends the goroutine with
// runtime.Goexit when the stage failed, as a test's tracer asserting the
// stage's error with require does; its root span counts its Ends.
type stageExitTracer struct{ rootEnds *int }

func (t stageExitTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage == tai.StageSignal {
		return ctx, rootCounter{t.rootEnds}
	}
	return ctx, exitOnErrorSpan{}
}

type rootCounter struct{ ends *int }

func (s rootCounter) End(error)                    { *s.ends++ }
func (s rootCounter) SpanContext() tai.SpanContext { return tai.SpanContext{} }

type exitOnErrorSpan struct{}

func (exitOnErrorSpan) End(err error) {
	if err != nil {
		runtime.Goexit()
	}
}

func (exitOnErrorSpan) SpanContext() tai.SpanContext { return tai.SpanContext{} }

// A stage span that ends the goroutine with runtime.Goexit while it is
// ended with the panic of its stage does not keep the signal from being
// finished: the root span ends, the observers see the signal failed with
// the stage's panic, and the Goexit is logged.
func TestGoexitInTheSpanOfAPanickedStageIsObserved(t *testing.T) {
	for _, st := range []tai.Stage{tai.StageGate, tai.StagePolicy, tai.StageAction} {
		t.Run(st.String(), func(t *testing.T) {
			boom := func(at tai.Stage) {
				if at == st {
					panic("boom")
				}
			}
			var recs []tai.Record
			var buf bytes.Buffer
			rootEnds := 0
			p, err := tai.New(
				tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
					boom(tai.StagePolicy)
					return tai.Decision{Verdict: tai.Allow}, nil
				}),
				tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
					boom(tai.StageAction)
					return 1, nil
				}),
				tai.WithGates(tai.GateFunc(func(context.Context, string) error {
					boom(tai.StageGate)
					return nil
				})),
				tai.WithTracer(stageExitTracer{&rootEnds}),
				tai.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))),
				tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { recs = append(recs, r) })))
			require.NoError(t, err)
			processEnding(t, p, sig())
			require.Len(t, recs, 1, "the observer sees the signal once")
			assert.Equal(t, tai.Failed, recs[0].Outcome)
			var pe *tai.PanicError
			require.ErrorAs(t, recs[0].Err, &pe)
			assert.Equal(t, "tai: panic in "+st.String()+": boom", pe.Error())
			assert.Equal(t, 1, rootEnds, "the root span ends once")
			assert.Contains(t, buf.String(), "tai: span End called runtime.Goexit", "the Goexit is logged")
		})
	}
}

// exitContextSpan ends its goroutine with runtime.Goexit in SpanContext,
// and, with exitEnd, in End too; it counts its Ends.
type exitContextSpan struct {
	ends    *int
	exitEnd bool
}

func (s exitContextSpan) End(error) {
	*s.ends++
	if s.exitEnd {
		runtime.Goexit()
	}
}

func (s exitContextSpan) SpanContext() tai.SpanContext {
	runtime.Goexit()
	return tai.SpanContext{}
}

type exitContextTracer struct{ span exitContextSpan }

func (t exitContextTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage == tai.StageSignal {
		return ctx, t.span
	}
	return ctx, taitest.NopSpan{}
}

// A root span whose SpanContext ends the goroutine with runtime.Goexit is
// still ended, once, and the signal observed once, even when its End ends
// the goroutine too.
func TestRootSpanEndsWhenItsSpanContextCallsGoexit(t *testing.T) {
	for _, exitEnd := range []bool{false, true} {
		t.Run(fmt.Sprintf("exit in End=%v", exitEnd), func(t *testing.T) {
			ends := 0
			var recs []tai.Record
			p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}),
				tai.WithTracer(exitContextTracer{exitContextSpan{&ends, exitEnd}}),
				tai.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
				tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { recs = append(recs, r) })))
			require.NoError(t, err)
			processEnding(t, p, sig())
			assert.Equal(t, 1, ends, "the root span ends once")
			require.Len(t, recs, 1, "the observer sees the signal once")
			assert.Equal(t, tai.Failed, recs[0].Outcome)
			assert.EqualError(t, recs[0].Err, "tai: runtime.Goexit in signal")
		})
	}
}

// processEnding runs p.Process(s) on a goroutine of its own, which a
// callback ends (runtime.Goexit), and waits for it to end: the test fails
// if Process returns instead.
func processEnding[T, R any](t *testing.T, p *tai.Pipeline[T, R], s tai.Signal[T]) {
	t.Helper()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_, _ = p.Process(context.Background(), s)
		t.Error("Process returned from a goroutine that ended")
	}()
	<-ended
}

// childExitTracer carries itself in the signal's context, so combinators
// open a span per child; the span of a child named exitOn ends its
// goroutine with runtime.Goexit when it is ended with an error, as a
// test's tracer asserting the child's error with require does.
type childExitTracer struct{ exitOn string }

func (t childExitTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage == tai.StageSignal {
		ctx = tai.ContextWithTracer(ctx, t)
	}
	if info.Name == t.exitOn {
		return ctx, exitOnErrorSpan{}
	}
	return ctx, taitest.NopSpan{}
}

// A child of a combinator, or a rule of a scored policy, that panics
// fails the signal with its panic even when the child's span ends the
// goroutine with runtime.Goexit as it is ended with that panic: the
// observers see the panic, not a Goexit without a value.
func TestChildPanicSurvivesAGoexitInItsSpan(t *testing.T) {
	boom := tai.Named("boom", tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		panic("boom")
	}))
	scored, err := tai.NewScored(tai.ScoredOptions{Name: "fraud"}, tai.Rule[int]{Name: "boom", Weight: 1,
		Check: func(context.Context, tai.Signal[int]) (float64, string, error) { panic("boom") }})
	require.NoError(t, err)
	for name, c := range map[string]struct {
		policy tai.Policy[int]
		span   string
	}{
		"all":    {tai.All(boom), "boom"},
		"any":    {tai.Any(boom), "boom"},
		"scored": {scored, "fraud/boom"},
	} {
		t.Run(name, func(t *testing.T) {
			var recs []tai.Record
			p, err := tai.New(c.policy, doubleAction(&journal{}), tai.WithTracer(childExitTracer{exitOn: c.span}),
				tai.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
				tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { recs = append(recs, r) })))
			require.NoError(t, err)
			processEnding(t, p, sig())
			require.Len(t, recs, 1, "the observer sees the signal once")
			assert.Equal(t, tai.Failed, recs[0].Outcome)
			var pe *tai.PanicError
			require.ErrorAs(t, recs[0].Err, &pe)
			assert.Equal(t, "boom", pe.Value, "the child's panic is the signal's error: %v", recs[0].Err)
			assert.Equal(t, tai.StagePolicy, pe.Stage)
		})
	}
}
