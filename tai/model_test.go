package tai_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/tai"
)

// The behaviours of the hooks of a generated pipeline.
const (
	bPass = iota
	bRefuse
	bPanic
	bCancel    // a gate that admits and ends the context; a policy that allows and ends it
	bSwallow   // a wrapping guard that calls fn and returns nil (a fallback)
	bNilDone   // a two-step guard that wants no report
	bDonePanic // a two-step guard whose done panics
)

const (
	pAllow = iota
	pReview
	pDeny
	pErr
	pPanic
	pNoVerdict
	pAllowCancel
)

const (
	aOK = iota
	aFail
	aPanic
)

// mErr is the model of an error: nil, the action's, guard who's refusal,
// or a *tai.PanicError with value pv.
type mErr struct {
	kind int // 0 nil, 1 action, 2 refusal, 3 panic
	who  int
	pv   string
}

func (e mErr) String() string {
	switch e.kind {
	case 0:
		return "<nil>"
	case 1:
		return "action"
	case 2:
		return "refusal " + strconv.Itoa(e.who)
	}
	return "panic " + e.pv
}

// mRes is what a level of the guard chain ends with in the model.
type mRes struct {
	err       mErr
	panicking bool
	pv        string
	ran       bool
}

type modelGuard struct {
	twoStep bool
	b       int
}

type modelCase struct {
	cancelled bool
	gates     []int
	policy    int
	hold      bool
	guards    []modelGuard
	action    int
	observers []bool // true: the observer panics
	stages    bool   // an observer is a StageObserver
	tracer    bool
}

var errAction = errors.New("action failed")

func refusalErr(i int) error { return fmt.Errorf("guard %d refuses", i) }
func gateErr(i int) error    { return fmt.Errorf("gate %d refuses", i) }

// matches reports whether err, what a guard was told, is e.
func (e mErr) matches(err error) bool {
	switch e.kind {
	case 0:
		return err == nil
	case 1:
		return err == errAction
	case 2:
		return err != nil && err.Error() == refusalErr(e.who).Error()
	}
	var pe *tai.PanicError
	return errors.As(err, &pe) && pe.Stage == tai.StageAction && fmt.Sprint(pe.Value) == e.pv
}

// simDo is the model of the guards from i in, called through Do. saw
// gets what each guard is told of the call inside it.
func (c *modelCase) simDo(i int, saw [][]mErr) mRes {
	if i == len(c.guards) {
		switch c.action {
		case aOK:
			return mRes{ran: true}
		case aFail:
			return mRes{err: mErr{kind: 1}, ran: true}
		}
		// The innermost link recovers the action's panic into an error.
		return mRes{err: mErr{kind: 3, pv: "action"}, ran: true}
	}
	g := c.guards[i]
	if !g.twoStep {
		switch g.b {
		case bRefuse:
			return mRes{err: mErr{kind: 2, who: i}}
		case bPanic:
			return mRes{panicking: true, pv: "guard " + strconv.Itoa(i)}
		}
		r := c.simDo(i+1, saw)
		if r.panicking {
			return r
		}
		saw[i] = append(saw[i], r.err)
		if g.b == bSwallow {
			r.err = mErr{}
		}
		return r
	}
	switch g.b {
	case bRefuse:
		return mRes{err: mErr{kind: 2, who: i}}
	case bPanic:
		return mRes{panicking: true, pv: "allow " + strconv.Itoa(i)}
	}
	r := c.simDo(i+1, saw)
	told := r.err
	if r.panicking {
		told = mErr{kind: 3, pv: r.pv}
	}
	if g.b != bNilDone {
		saw[i] = append(saw[i], told)
	}
	if g.b == bDonePanic {
		return mRes{panicking: true, pv: "done " + strconv.Itoa(i), ran: r.ran}
	}
	return r
}

// propGuard is a guard of a generated pipeline: it journals what it is
// told of the call inside it.
type propGuard struct {
	i   int
	b   int
	mu  *sync.Mutex
	saw *[][]error
}

func (g *propGuard) Name() string { return "guard" + strconv.Itoa(g.i) }

func (g *propGuard) note(err error) {
	g.mu.Lock()
	(*g.saw)[g.i] = append((*g.saw)[g.i], err)
	g.mu.Unlock()
}

func (g *propGuard) Do(ctx context.Context, fn func(context.Context) error) error {
	switch g.b {
	case bRefuse:
		return refusalErr(g.i)
	case bPanic:
		panic("guard " + strconv.Itoa(g.i))
	}
	err := fn(ctx)
	g.note(err)
	if g.b == bSwallow {
		return nil
	}
	return err
}

type propStepGuard struct{ propGuard }

func (g *propStepGuard) Allow(context.Context) (func(error), error) {
	switch g.b {
	case bRefuse:
		return nil, refusalErr(g.i)
	case bPanic:
		panic("allow " + strconv.Itoa(g.i))
	case bNilDone:
		return nil, nil
	}
	return func(err error) {
		g.note(err)
		if g.b == bDonePanic {
			panic("done " + strconv.Itoa(g.i))
		}
	}, nil
}

func (g *propStepGuard) Do(ctx context.Context, fn func(context.Context) error) error {
	return tai.DoTwoStep(ctx, g, fn)
}

type propObserver struct {
	mu     *sync.Mutex
	recs   *[]tai.Record
	panics bool
	stages bool
}

func (o *propObserver) Observe(_ context.Context, r tai.Record) {
	o.mu.Lock()
	*o.recs = append(*o.recs, r)
	o.mu.Unlock()
	if o.panics {
		panic("observer")
	}
}

func (o *propObserver) ObservesStages() bool { return o.stages }

type propTracer struct {
	mu    sync.Mutex
	spans []*propSpan
}

type propSpan struct {
	t     *propTracer
	info  tai.SpanInfo
	ended int
	err   error
}

func (t *propTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &propSpan{t: t, info: info}
	t.spans = append(t.spans, s)
	return ctx, s
}

func (s *propSpan) End(err error) {
	s.t.mu.Lock()
	s.ended++
	s.err = err
	s.t.mu.Unlock()
}

func (s *propSpan) SpanContext() tai.SpanContext { return tai.SpanContext{Sampled: true} }

func genModelCase(t *rapid.T) *modelCase {
	c := &modelCase{
		cancelled: rapid.IntRange(0, 9).Draw(t, "cancelledEarly") == 0,
		gates:     rapid.SliceOfN(rapid.IntRange(bPass, bCancel), 0, 3).Draw(t, "gates"),
		policy:    rapid.IntRange(pAllow, pAllowCancel).Draw(t, "policy"),
		hold:      rapid.Bool().Draw(t, "hold"),
		action:    rapid.IntRange(aOK, aPanic).Draw(t, "action"),
		observers: rapid.SliceOfN(rapid.Bool(), 0, 3).Draw(t, "observerPanics"),
		stages:    rapid.Bool().Draw(t, "stages"),
		tracer:    rapid.Bool().Draw(t, "tracer"),
	}
	allTwo := rapid.Bool().Draw(t, "allTwoStep")
	n := rapid.IntRange(0, 10).Draw(t, "guards")
	for i := range n {
		two := allTwo || rapid.Bool().Draw(t, "twoStep"+strconv.Itoa(i))
		var b int
		if two {
			b = rapid.SampledFrom([]int{bPass, bRefuse, bPanic, bNilDone, bDonePanic}).Draw(t, "b"+strconv.Itoa(i))
		} else {
			b = rapid.SampledFrom([]int{bPass, bRefuse, bPanic, bSwallow}).Draw(t, "b"+strconv.Itoa(i))
		}
		c.guards = append(c.guards, modelGuard{twoStep: two, b: b})
	}
	return c
}

// TestPipelineMatchesModel runs random pipelines — gates that admit,
// refuse, panic or end the context, every kind of policy answer, stacks
// of wrapping and two-step guards that pass, refuse, panic or swallow,
// actions that succeed, fail or panic — and checks the outcome, the
// error, the Result, the Record each observer gets, what each guard was
// told, and the spans, against a model of the documented behaviour.
func TestPipelineMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genModelCase(t)
		var mu sync.Mutex
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if c.cancelled {
			cancel()
		}
		var gateCalls []int
		var opts []tai.Option
		for i, b := range c.gates {
			opts = append(opts, tai.WithGates(tai.GateFunc(func(context.Context, string) error {
				gateCalls = append(gateCalls, i)
				switch b {
				case bRefuse:
					return gateErr(i)
				case bPanic:
					panic("gate " + strconv.Itoa(i))
				case bCancel:
					cancel()
				}
				return nil
			})))
		}
		saw := make([][]error, len(c.guards))
		for i, g := range c.guards {
			pg := propGuard{i: i, b: g.b, mu: &mu, saw: &saw}
			if g.twoStep {
				opts = append(opts, tai.WithGuards(&propStepGuard{pg}))
			} else {
				opts = append(opts, tai.WithGuards(&pg))
			}
		}
		var recs []tai.Record
		for _, panics := range c.observers {
			opts = append(opts, tai.WithObservers(&propObserver{mu: &mu, recs: &recs, panics: panics, stages: c.stages}))
		}
		tr := &propTracer{}
		if c.tracer {
			opts = append(opts, tai.WithTracer(tr))
		}
		if c.hold {
			opts = append(opts, tai.WithHoldOnReview())
		}
		opts = append(opts, tai.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		errPolicy := errors.New("policy down")
		policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			switch c.policy {
			case pAllow:
				return tai.Decision{Verdict: tai.Allow, Reason: "ok"}, nil
			case pReview:
				return tai.Decision{Verdict: tai.Review, Reason: "look", Score: 0.6}, nil
			case pDeny:
				return tai.Decision{Verdict: tai.Deny, Reason: "no", Score: 0.9}, nil
			case pErr:
				return tai.Decision{Verdict: tai.Deny}, errPolicy
			case pPanic:
				panic("policy")
			case pNoVerdict:
				return tai.Decision{}, nil
			}
			cancel()
			return tai.Decision{Verdict: tai.Allow}, nil
		})
		actionRuns := 0
		action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
			actionRuns++
			switch c.action {
			case aOK:
				return 7, nil
			case aFail:
				return 9, errAction
			}
			panic("action")
		})
		p, err := tai.New[int, int](policy, action, opts...)
		if err != nil {
			t.Fatal(err)
		}
		sig := tai.Signal[int]{ID: "id1", Kind: "k", Key: "key", Payload: 1}
		res, err := p.Process(ctx, sig)

		// The model.
		wantSaw := make([][]mErr, len(c.guards))
		var (
			outcome     tai.Outcome
			check       func(error) string
			reached     = tai.StageSignal
			wantGates   []int
			wantVerdict tai.Verdict
			wantValue   int
			wantRuns    int
		)
		stageErr := func(st tai.Stage) func(error) string {
			return func(err error) string {
				var se *tai.StageError
				if !errors.As(err, &se) || se.Stage != st || !errors.Is(err, context.Canceled) {
					return fmt.Sprintf("want a *StageError before %v, got %v", st, err)
				}
				return ""
			}
		}
		panicErr := func(st tai.Stage, v string) func(error) string {
			return func(err error) string {
				var pe *tai.PanicError
				if !errors.As(err, &pe) || pe.Stage != st || fmt.Sprint(pe.Value) != v {
					return fmt.Sprintf("want a *PanicError in %v of %q, got %#v", st, v, err)
				}
				return ""
			}
		}
		rejected := func(st tai.Stage, hook string, inner error) func(error) string {
			return func(err error) string {
				var re *tai.RejectedError
				if !errors.As(err, &re) || re.Stage != st || re.Hook != hook || !errors.Is(err, tai.ErrRejected) ||
					re.Err == nil || re.Err.Error() != inner.Error() {
					return fmt.Sprintf("want a *RejectedError at %v %q of %v, got %#v", st, hook, inner, err)
				}
				return ""
			}
		}
		func() {
			if len(c.gates) > 0 {
				if c.cancelled {
					outcome, check, reached = tai.Failed, stageErr(tai.StageGate), tai.StageSignal
					return
				}
				reached = tai.StageGate
				for i, b := range c.gates {
					wantGates = append(wantGates, i)
					switch b {
					case bRefuse:
						outcome, check = tai.Rejected, rejected(tai.StageGate, "", gateErr(i))
						return
					case bPanic:
						outcome, check = tai.Failed, panicErr(tai.StageGate, "gate "+strconv.Itoa(i))
						return
					case bCancel:
						c.cancelled = true
					}
				}
			}
			if c.cancelled {
				outcome, check = tai.Failed, stageErr(tai.StagePolicy)
				return
			}
			reached = tai.StagePolicy
			switch c.policy {
			case pErr, pNoVerdict:
				outcome = tai.Failed
				check = func(err error) string {
					var pe *tai.PolicyError
					if !errors.As(err, &pe) || pe.Policy != "policy" || (c.policy == pErr && !errors.Is(err, errPolicy)) {
						return fmt.Sprintf("want a *PolicyError, got %#v", err)
					}
					return ""
				}
				return
			case pPanic:
				outcome, check = tai.Failed, panicErr(tai.StagePolicy, "policy")
				return
			case pDeny:
				outcome, wantVerdict = tai.Denied, tai.Deny
			case pReview:
				wantVerdict = tai.Review
				if c.hold {
					outcome = tai.Denied
				}
			default:
				wantVerdict = tai.Allow
			}
			if outcome == tai.Denied {
				check = func(err error) string {
					var de *tai.DeniedError
					if !errors.As(err, &de) || !errors.Is(err, tai.ErrDenied) || de.Decision.Verdict != wantVerdict {
						return fmt.Sprintf("want a *DeniedError of %v, got %#v", wantVerdict, err)
					}
					return ""
				}
				return
			}
			if c.policy == pAllowCancel {
				outcome, check = tai.Failed, stageErr(tai.StageAction)
				return
			}
			reached = tai.StageAction
			r := c.simGuards(wantSaw)
			if r.ran {
				wantRuns = 1
			}
			switch {
			case r.panicking:
				outcome, check = tai.Failed, panicErr(tai.StageAction, r.pv)
			case !r.ran:
				who := r.err.who
				if r.err.kind != 2 {
					// Swallowed by a fallback: the refusal all the same.
					who = c.refuser()
				}
				outcome, check = tai.Rejected, rejected(tai.StageAction, "guard"+strconv.Itoa(who), refusalErr(who))
			case r.err.kind == 0:
				outcome = tai.Succeeded
				switch c.action {
				case aOK:
					wantValue = 7
				case aFail:
					wantValue = 9
				}
				check = func(err error) string {
					if err != nil {
						return fmt.Sprintf("want no error, got %v", err)
					}
					return ""
				}
			case r.err.kind == 1:
				outcome = tai.Failed
				check = func(err error) string {
					if err != errAction {
						return fmt.Sprintf("want the action's error as it is, got %#v", err)
					}
					return ""
				}
			case r.err.kind == 3:
				outcome, check = tai.Failed, panicErr(tai.StageAction, r.err.pv)
			default:
				t.Fatalf("model: ran and refused: %v", r.err)
			}
		}()

		if res.Outcome != outcome || tai.OutcomeOf(err) != outcome {
			t.Fatalf("outcome %v (OutcomeOf %v), want %v; err %v", res.Outcome, tai.OutcomeOf(err), outcome, err)
		}
		if msg := check(err); msg != "" {
			t.Fatal(msg)
		}
		if res.Value != wantValue {
			t.Fatalf("Value %d, want %d", res.Value, wantValue)
		}
		if res.Decision.Verdict != wantVerdict {
			t.Fatalf("Decision.Verdict %v, want %v", res.Decision.Verdict, wantVerdict)
		}
		if fmt.Sprint(gateCalls) != fmt.Sprint(wantGates) {
			t.Fatalf("gates called %v, want %v", gateCalls, wantGates)
		}
		if actionRuns != wantRuns {
			t.Fatalf("action ran %d times, want %d", actionRuns, wantRuns)
		}
		for i := range c.guards {
			if len(saw[i]) != len(wantSaw[i]) {
				t.Fatalf("guard %d told %v, want %v", i, saw[i], wantSaw[i])
			}
			for j, e := range wantSaw[i] {
				if !e.matches(saw[i][j]) {
					t.Fatalf("guard %d told %#v, want %v", i, saw[i][j], e)
				}
			}
		}
		if len(recs) != len(c.observers) {
			t.Fatalf("%d records for %d observers", len(recs), len(c.observers))
		}
		for _, r := range recs {
			if r.ID != sig.ID || r.Kind != sig.Kind || r.Key != sig.Key {
				t.Fatalf("record names %q %q %q", r.ID, r.Kind, r.Key)
			}
			if r.Outcome != res.Outcome || r.Err != err || r.Decision.Verdict != res.Decision.Verdict ||
				r.Decision.Reason != res.Decision.Reason || r.Span != res.Span {
				t.Fatalf("record %+v does not match the result %+v, %v", r, res, err)
			}
			if r.Start.IsZero() || r.Duration < 0 || r.Stages[tai.StageSignal] != r.Duration {
				t.Fatalf("record times %v %v %v", r.Start, r.Duration, r.Stages)
			}
			if r.StagesTimed != c.stages {
				t.Fatalf("record StagesTimed %v, want %v", r.StagesTimed, c.stages)
			}
			for st := tai.StageSignal; st <= tai.StageAction; st++ {
				want := st == tai.StageSignal || (st <= reached && (st != tai.StageGate || len(c.gates) > 0))
				if r.Reached[st] != want {
					t.Fatalf("Reached[%v] %v, want %v (reached %v)", st, r.Reached[st], want, reached)
				}
			}
		}
		if c.tracer {
			if len(tr.spans) == 0 || tr.spans[0].info.Stage != tai.StageSignal {
				t.Fatalf("no root span")
			}
			if tr.spans[0].err != err {
				t.Fatalf("root span ended with %v, want %v", tr.spans[0].err, err)
			}
			for _, s := range tr.spans {
				if s.ended != 1 {
					t.Fatalf("span %+v ended %d times", s.info, s.ended)
				}
			}
		}
	})
}

// simGuards is the model of the guard stage: through Do, or, when every
// guard is a TwoStepGuard and there are at most eight, in two steps,
// which must come to the same.
func (c *modelCase) simGuards(saw [][]mErr) mRes {
	return c.simDo(0, saw)
}

// refuser returns the guard that refused in a chain where a fallback
// turned the refusal into nil.
func (c *modelCase) refuser() int {
	for i, g := range c.guards {
		if g.b == bRefuse {
			return i
		}
	}
	return -1
}
