package tai

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// An Option configures a Pipeline. Options are not generic: only the
// policy and the action carry the payload and result types.
type Option func(*options)

type options struct {
	gates     []Gate
	guards    []Guard
	observers []Observer
	tracer    Tracer
	hold      bool
	logger    *slog.Logger
}

// WithGates adds gates, run in order before the policies. The first gate
// that returns an error rejects the signal; later gates are not asked.
func WithGates(gates ...Gate) Option {
	return func(o *options) { o.gates = append(o.gates, gates...) }
}

// WithGuards adds guards around the action. The first guard is the
// outermost: WithGuards(a, b) runs a.Do(b.Do(action)). When every guard is
// a TwoStepGuard, and there are at most eight, the pipeline calls their
// Allow in the same order instead.
func WithGuards(guards ...Guard) Option {
	return func(o *options) { o.guards = append(o.guards, guards...) }
}

// WithObservers adds observers, called in order with the Record of every
// finished signal.
func WithObservers(observers ...Observer) Option {
	return func(o *options) { o.observers = append(o.observers, observers...) }
}

// WithTracer sets the Tracer that opens a span per signal and stage. The
// last WithTracer wins; nil (or a nil pointer) means no tracing.
func WithTracer(t Tracer) Option {
	return func(o *options) { o.tracer = t }
}

// WithHoldOnReview makes a Review verdict stop the signal like a Deny: the
// action does not run and Process returns a *DeniedError whose Decision has
// Verdict Review. Without it, a reviewed signal proceeds and its Result
// says Review.
func WithHoldOnReview() Option {
	return func(o *options) { o.hold = true }
}

// WithLogger sets the logger for problems the pipeline cannot return to a
// caller: a panicking Observer (or one that calls runtime.Goexit), or a
// Span whose End panics (or calls runtime.Goexit) after an earlier panic
// already failed the signal.
// Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Result is what Process returns about a signal.
type Result[R any] struct {
	// Value is the action's result; the zero R unless Outcome is Succeeded.
	Value R
	// Decision is the deciding decision of the policies. Its Verdict is
	// zero when the signal did not reach a decision: it never reached the
	// policies, or the policy failed (whatever verdict a policy returned
	// with its error is dropped).
	Decision Decision
	// Outcome is how the signal ended, never the zero Outcome:
	// OutcomeOf of the error Process returned.
	Outcome Outcome
	// Span is the signal's root span, zero without a Tracer.
	Span SpanContext
}

// Pipeline runs signals through the stages of the TAI pattern:
//
//	gates → policy → guards around the action → observers
//
// A Pipeline is safe for concurrent use. Hooks that are not configured cost
// nothing: a pipeline with only a policy and an action reads no clock,
// allocates nothing, and does no work beyond the two calls, a context check
// before each and one deferred recover. With observers it reads the clock
// once at the start of a signal (time.Now, wall and monotonic time) and
// once at its end; with a StageObserver, at each stage boundary too.
//
// Make one with New; the zero Pipeline is not usable: it has no policy and
// no action, and Process fails every signal, reaching no hook, with an
// error saying it was not made by New.
type Pipeline[T, R any] struct {
	policy Policy[T]
	action Action[T, R]
	// namer is the policy when it has a name. Its Name is asked at each
	// signal, not once: a policy's name may change (a taicel Loader
	// takes the name of the rule set in force).
	namer Namer

	gates      []Gate
	gateNames  []string
	gateSpans  []string // span names of the gates
	guards     []Guard
	guardNames []string
	steps      []TwoStepGuard // the guards, when every one is a TwoStepGuard
	observers  []Observer
	tracer     Tracer
	hold       bool
	logger     *slog.Logger
	timed      bool // there are observers: a Record needs Start and Duration
	stageTimed bool // an observer asked for Record.Stages

	calls sync.Pool // *call[T, R], used only with guards
}

// New returns a pipeline that evaluates policy and, when it allows, runs
// action. It returns an error for a nil policy or action (or a nil policy
// inside All, Any, Named or FailOpen), for a Scored that NewScored did not
// make, and for a nil hook, naming which. A nil function or pointer is nil
// here too: a PolicyFunc(nil), or a *Scored whose NewScored error was
// ignored.
func New[T, R any](policy Policy[T], action Action[T, R], opts ...Option) (*Pipeline[T, R], error) {
	if err := validatePolicy(policy); err != nil {
		return nil, fmt.Errorf("tai.New: policy: %w", err)
	}
	if isNil(action) {
		return nil, errors.New("tai.New: action is nil")
	}
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	p := &Pipeline[T, R]{
		policy:    policy,
		action:    action,
		gates:     o.gates,
		guards:    o.guards,
		observers: o.observers,
		hold:      o.hold,
		logger:    o.logger,
	}
	for i, g := range p.gates {
		if isNil(g) {
			return nil, fmt.Errorf("tai.New: gate %d is nil", i)
		}
		name := nameOf(g, "")
		p.gateNames = append(p.gateNames, name)
		p.gateSpans = append(p.gateSpans, nameOrDefault(name, StageGate.String()))
	}
	for i, g := range p.guards {
		if isNil(g) {
			return nil, fmt.Errorf("tai.New: guard %d is nil", i)
		}
		p.guardNames = append(p.guardNames, nameOf(g, ""))
		if ts, ok := g.(TwoStepGuard); ok && len(p.guards) <= maxSteps {
			p.steps = append(p.steps, ts)
		}
	}
	if len(p.steps) != len(p.guards) {
		p.steps = nil
	}
	for i, ob := range p.observers {
		if isNil(ob) {
			return nil, fmt.Errorf("tai.New: observer %d is nil", i)
		}
		if so, ok := ob.(StageObserver); ok && so.ObservesStages() {
			p.stageTimed = true
		}
	}
	if !isNil(o.tracer) {
		p.tracer = o.tracer
	}
	p.namer, _ = policy.(Namer)
	p.timed = len(p.observers) > 0
	p.calls.New = func() any { return p.newCall() }
	return p, nil
}

// Process runs one signal through the pipeline and returns its result. The
// error is nil when the outcome is Succeeded; otherwise OutcomeOf(err) equals
// the Result's Outcome:
//
//   - Rejected: a *RejectedError from a gate or guard;
//   - Denied: a *DeniedError carrying the Decision;
//   - Failed: a *PolicyError, a *PanicError, a *StageError when ctx had
//     ended before a stage (the gates, the policy or the action; so a
//     gate never sees a signal whose caller gave up before Process
//     began) or was canceled while a gate or a guard made the signal
//     wait (the hook's error wraps context.Canceled: the caller gave up,
//     nothing was shed), the action's own error (returned as it is, so one
//     that is or wraps another pipeline's *RejectedError or *DeniedError
//     keeps that outcome), or an error matching
//     ErrInvalidSignal for a signal without an ID or a Kind (a programming
//     error: such a signal reaches no hook, not even the observers), or
//     the error of a Pipeline that New did not make.
func (p *Pipeline[T, R]) Process(ctx context.Context, s Signal[T]) (res Result[R], err error) {
	if p.action == nil {
		return Result[R]{Outcome: Failed}, errPipelineNotMade
	}
	if s.ID == "" {
		return Result[R]{Outcome: Failed}, errNoID
	}
	if s.Kind == "" {
		return Result[R]{Outcome: Failed}, errNoKind
	}
	var f flight
	returned := false
	defer func() {
		// A hook that ended the goroutine with runtime.Goexit never
		// returned, and recover gives nil: the signal failed all the same,
		// and the observers and the root span are told so.
		if v := recover(); v != nil || !returned {
			// A guard's done that panicked as the goroutine was
			// ending (f.held) is the signal's error, with the stack
			// where it panicked.
			pe := f.held
			if v != nil || pe == nil {
				pe = newPanicError(f.stage, v)
			}
			err = p.panicked(ctx, &s, &res, &f, pe)
		}
		err = p.conclude(ctx, &s, &res, err, &f)
	}()
	if p.timed {
		f.start = time.Now()
	}
	if p.tracer != nil {
		ctx, f.root = p.tracer.Start(ctx, SpanInfo{Stage: StageSignal, Name: s.Kind, Kind: s.Kind, SignalID: s.ID})
	}
	err = p.run(ctx, &s, &res, &f)
	returned = true
	return res, err
}

// flight is what Process knows of a signal in flight besides its Result:
// the stage it has reached, its open spans and its times.
type flight struct {
	stage  Stage
	root   Span                     // the signal's span, with a Tracer
	span   Span                     // the open stage span, if any
	start  time.Time                // when Process began, with an observer
	since  time.Duration            // from start to the end of the last stage timed
	stages [numStages]time.Duration // with a StageObserver, the stages passed
	// held is the panic of a TwoStepGuard's done that panicked once the
	// goroutine was ending (runtime.Goexit), which stepped cannot return.
	held *PanicError
}

// run is the stage sequence: gates, policy, guards around the action. It
// returns the error Process returns; Process's deferred function finishes
// the signal.
//
// A stage is entered (f.stage set) only once the context check before it
// passed: a stage the context ended before was not reached, and has no
// time in the Record.
func (p *Pipeline[T, R]) run(ctx context.Context, s *Signal[T], res *Result[R], f *flight) (err error) {
	if len(p.gates) > 0 {
		// A gate that admits a signal may spend a token of its key's
		// budget, and one whose store sees the ended context would
		// reject it: the signal of a caller who gave up is neither.
		if err = ctx.Err(); err != nil {
			return &StageError{Stage: StageGate, Err: err}
		}
		f.stage = StageGate
	}
	for i, g := range p.gates {
		gctx := ctx
		if p.tracer != nil {
			gctx = p.startSpan(ctx, f, StageGate, p.gateSpans[i], s)
		}
		if err = g.Admit(gctx, s.Key); err != nil {
			if gaveUp(ctx, err) {
				err = &StageError{Stage: StagePolicy, Err: err}
			} else {
				err = &RejectedError{Stage: StageGate, Hook: p.gateNames[i], Err: err}
			}
		}
		f.endSpan(err)
		if err != nil {
			return err
		}
	}
	if p.stageTimed && len(p.gates) > 0 {
		f.lap()
	}

	if err = ctx.Err(); err != nil {
		return &StageError{Stage: StagePolicy, Err: err}
	}
	f.stage = StagePolicy
	pctx, name := ctx, ""
	if p.tracer != nil {
		// The span's name names the policy's errors too: a policy
		// renamed while it evaluates (a rule set reloaded) is named
		// once per signal.
		name = p.policyName()
		pctx = p.startSpan(ctx, f, StagePolicy, name, s)
	}
	res.Decision, err = p.policy.Evaluate(pctx, *s)
	if err != nil || res.Decision.Verdict != Allow {
		err = p.judge(&res.Decision, err, name)
	}
	f.endSpan(err)
	if err != nil {
		return err
	}
	if p.stageTimed {
		f.lap()
	}

	if err = ctx.Err(); err != nil {
		return &StageError{Stage: StageAction, Err: err}
	}
	f.stage = StageAction
	actx := ctx
	if p.tracer != nil {
		actx = p.startSpan(ctx, f, StageAction, "action", s)
	}
	switch {
	case len(p.guards) == 0:
		res.Value, err = p.action.Execute(actx, *s)
	case p.steps != nil:
		res.Value, err = p.stepped(actx, s, f)
	default:
		res.Value, err = p.guarded(actx, s)
	}
	f.endSpan(err)
	return err
}

// startSpan opens the span of a stage with the pipeline's Tracer as
// f.span, and returns the context for the stage. Its callers check for a
// Tracer first: without one, a stage pays no call.
func (p *Pipeline[T, R]) startSpan(ctx context.Context, f *flight, st Stage, name string, s *Signal[T]) context.Context {
	ctx, f.span = p.tracer.Start(ctx, SpanInfo{Stage: st, Name: name, Kind: s.Kind, SignalID: s.ID})
	return ctx
}

// endSpan ends the open stage span, if any. The span is forgotten before
// End is called: should End panic, Process's recovery does not end it
// again.
func (f *flight) endSpan(err error) {
	if sp := f.span; sp != nil {
		f.span = nil
		sp.End(err)
	}
}

// settle sets the Outcome of r from err, the error Process returns, and
// clears the Value unless the signal succeeded.
func (r *Result[R]) settle(err error) {
	if err == nil {
		r.Outcome = Succeeded
		return
	}
	var zero R
	r.Value, r.Outcome = zero, OutcomeOf(err)
}

// panicked returns err, the *PanicError of a panic recovered in the stage
// f is in, after ending that stage's span with it. Should that End panic
// too, the second panic is logged: the first one is the signal's error.
// Should it end the goroutine (runtime.Goexit), that is logged too, and
// panicked finishes the signal (see finish) before the goroutine goes on
// ending, so the root span ends and the observers see the signal.
func (p *Pipeline[T, R]) panicked(ctx context.Context, s *Signal[T], res *Result[R], f *flight, err *PanicError) error {
	sp := f.span
	if sp == nil {
		return err
	}
	f.span = nil
	returned := false
	defer func() {
		if !returned {
			p.hookPanicked("span End", newPanicError(f.stage, nil))
			p.conclude(ctx, s, res, err, f)
		}
	}()
	if pe := endSafely(sp, err, f.stage); pe != nil {
		p.hookPanicked("span End", pe)
	}
	returned = true
	return err
}

// endSafely calls s.End(err) and returns a *PanicError of stage st if it
// panicked.
func endSafely(s Span, err error, st Stage) (pe *PanicError) {
	defer func() {
		if v := recover(); v != nil {
			pe = newPanicError(st, v)
		}
	}()
	s.End(err)
	return nil
}

// rootContext returns the SpanContext of s, or a *PanicError if it
// panicked.
func rootContext(s Span) (sc SpanContext, pe *PanicError) {
	defer func() {
		if v := recover(); v != nil {
			pe = newPanicError(StageSignal, v)
		}
	}()
	return s.SpanContext(), nil
}

// endRoot copies the root span's SpanContext into res and ends the span
// with err, once. It returns the signal's error: err, or a *PanicError of
// StageSignal if the span panicked and err does not already hold a panic
// (a later panic is logged; the first one is the signal's error).
//
// A span that ends the goroutine with runtime.Goexit keeps endRoot from
// returning: the signal then fails as with a panic of no value, and
// endRoot reports it (see report) before the goroutine goes on ending,
// so the observers see the signal all the same. Should SpanContext be
// the one that ended it, the span is still ended first, and the signal
// reported even should End end the goroutine too.
func (p *Pipeline[T, R]) endRoot(ctx context.Context, s *Signal[T], res *Result[R], err error, f *flight, dur time.Duration) error {
	returned, ended := false, false
	defer func() {
		if returned {
			return
		}
		err = p.firstPanic(err, newPanicError(StageSignal, nil))
		defer func() { p.report(ctx, s, res, err, f, dur) }()
		if !ended {
			ended = true
			err = p.firstPanic(err, endSafely(f.root, err, StageSignal))
		}
	}()
	sc, pe := rootContext(f.root)
	res.Span = sc
	err = p.firstPanic(err, pe)
	ended = true
	err = p.firstPanic(err, endSafely(f.root, err, StageSignal))
	returned = true
	return err
}

// firstPanic returns pe in place of err, unless pe is nil or err already
// holds a *PanicError; then it returns err and logs pe, if any.
func (p *Pipeline[T, R]) firstPanic(err error, pe *PanicError) error {
	if pe == nil {
		return err
	}
	var prior *PanicError
	if errors.As(err, &prior) {
		p.hookPanicked("span", pe)
		return err
	}
	return pe
}

// lap ends the time of the stage f is in; only a pipeline with a
// StageObserver times stages.
func (f *flight) lap() {
	now := time.Since(f.start)
	f.stages[f.stage], f.since = now-f.since, now
}

// judge turns a policy's answer that is not a plain Allow into the error
// Process returns: a *PolicyError for an error or a missing verdict, a
// *DeniedError for a Deny (or a Review when held). It returns nil for a
// Review that proceeds. A policy that failed reached no decision: judge
// zeroes d's Verdict, so records and metrics never count it as one. name
// is the policy's name as its span has it, or "" to ask the policy.
func (p *Pipeline[T, R]) judge(d *Decision, err error, name string) error {
	if err == nil && !d.Verdict.Valid() {
		err = errNoVerdict(d.Verdict)
	}
	if err != nil {
		d.Verdict = 0
		if !namesPolicy(err) {
			if name == "" {
				name = p.policyName()
			}
			err = &PolicyError{Policy: nameOrDecision(name, d.Policy), Err: err}
		}
		return err
	}
	if d.Verdict == Deny || (d.Verdict == Review && p.hold) {
		return &DeniedError{Decision: *d}
	}
	return nil
}

// policyName returns the name of the policy as it is now: its Name, or
// "policy".
func (p *Pipeline[T, R]) policyName() string {
	if p.namer != nil {
		if name := p.namer.Name(); name != "" {
			return name
		}
	}
	return "policy"
}

// errPipelineNotMade is the error of Process on a Pipeline that New did
// not make: it has no policy to judge a signal by, and no action.
var errPipelineNotMade = errors.New("tai: Pipeline not made by New")

// The errors of an invalid signal, made once: Process returns them without
// an allocation.
var (
	errNoID   = fmt.Errorf("%w: empty ID", ErrInvalidSignal)
	errNoKind = fmt.Errorf("%w: empty Kind", ErrInvalidSignal)
)

func nameOrDecision(name, decided string) string {
	if decided != "" {
		return decided
	}
	return name
}

// maxSteps is the most guards a pipeline calls in two steps (see
// TwoStepGuard); with more, it wraps the action in them.
const maxSteps = 8

// stepped runs the action between the guards' Allow and done, as their Do
// would have run it (see TwoStepGuard). Should the action or a done panic,
// the guards not yet told hear of it as a *PanicError, which stepped
// returns (the last one, when several dones panic, as nested Do calls
// would have it); should one end the goroutine (runtime.Goexit), they
// hear of it as DoTwoStep tells them, as a *PanicError with no value. A
// done that panics once the goroutine is ending fails the signal with its
// panic all the same, as it would through DoTwoStep: stepped cannot
// return it, and keeps it in f for Process.
func (p *Pipeline[T, R]) stepped(ctx context.Context, s *Signal[T], f *flight) (r R, err error) {
	st := stepState{f: f}
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover() // nil when the goroutine is ending with runtime.Goexit
		var zero R
		r, err = zero, newPanicError(StageAction, v)
		if pe := st.report(err); pe != nil {
			err = pe
			if v == nil {
				f.held = pe
			}
		}
	}()
	for i, g := range p.steps {
		done, aerr := g.Allow(ctx)
		if aerr != nil {
			err = p.rejection(ctx, i, aerr)
			if pe := st.report(aerr); pe != nil {
				err = pe
			}
			returned = true
			return r, err
		}
		st.dones[st.n] = done
		st.n++
	}
	r, err = p.action.Execute(ctx, *s)
	if pe := st.report(err); pe != nil {
		var zero R
		r, err = zero, pe
	}
	returned = true
	return r, err
}

// rejection returns the error of a signal that guard i turned away with
// err before the action ran: a *RejectedError, or, when the caller gave
// up while the guard made it wait (see gaveUp), a *StageError of the
// action stage.
func (p *Pipeline[T, R]) rejection(ctx context.Context, i int, err error) error {
	if gaveUp(ctx, err) {
		return &StageError{Stage: StageAction, Err: err}
	}
	return &RejectedError{Stage: StageAction, Hook: p.guardNames[i], Err: err}
}

// gaveUp reports whether err, the error of a gate or a guard that turned
// a signal away, comes of the caller giving up: ctx, the caller's context,
// was canceled and err is or wraps context.Canceled, as the error of a
// wait for a token or a slot that the cancellation ended does. Such a
// signal was not shed and is not Rejected. A deadline that passed while
// the hook made the signal wait is a refusal, as a wait that would
// outlast the deadline is refused at once: the line was too slow for
// the time the caller gave, and a caller still waiting for the answer is
// told to retry later. So is a context of the hook's own that ended (a
// deadline a guard outside set): ctx goes on.
func gaveUp(ctx context.Context, err error) bool {
	return errors.Is(ctx.Err(), context.Canceled) && errors.Is(err, context.Canceled)
}

// stepState holds the done of each two-step guard a signal has passed.
type stepState struct {
	dones [maxSteps]func(error)
	n     int
	f     *flight // where a panic told as the goroutine ends is kept
}

// report tells err to the guards passed, innermost first, each once. A
// done that panics is not called again, and does not keep the guards
// outside it from being told: they hear of its panic as a *PanicError, as
// their Do would have seen the panic come back from fn. report returns
// the *PanicError of the last done that panicked, nil when none did.
func (st *stepState) report(err error) (last *PanicError) {
	for st.n > 0 {
		st.n--
		if done := st.dones[st.n]; done != nil {
			if pe := st.tell(done, err); pe != nil {
				err, last = pe, pe
			}
		}
	}
	return last
}

// tell calls done(err) and returns a *PanicError if it panicked. A done
// that ends its goroutine (runtime.Goexit) does not come back here: tell
// then tells the guards left of it, as DoTwoStep tells them, with a
// *PanicError of no value, before the goroutine goes on ending, and keeps
// the panic of the last of them that panicked as the signal's error.
// (report may itself run in a deferred call, once the action panicked,
// where nothing after it would tell them.)
func (st *stepState) tell(done func(error), err error) (pe *PanicError) {
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover() // nil when done called runtime.Goexit
		pe = newPanicError(StageAction, v)
		if v == nil {
			if last := st.report(pe); last != nil {
				st.f.held = last
			}
		}
	}()
	done(err)
	returned = true
	return nil
}

// call is the per-signal state of a guarded action. Its links are closures
// bound once, when the call is made for the pool, so a guard can be handed
// a func(context.Context) error without an allocation per signal.
//
// A guard may call the action more than once, one call after another
// (a retry) or several at a time (a hedge), so the calls of one signal
// count themselves in runs and keep their value under mu.
type call[T, R any] struct {
	p   *Pipeline[T, R]
	sig Signal[T]
	// runs counts the calls of the action: each adds runStarted+1 when it
	// starts and takes 1 away when it returns, so its low 32 bits are the
	// calls running and the high ones count the calls started. A call of
	// a link a guard was handed (the guards inside it, then the action)
	// counts as running too, from when it starts to when it returns: a
	// guard inside one that gave up may still hold the call, waiting to
	// run the action (a retry's backoff, a bulkhead's queue). The count
	// is never reset: guarded compares it with its value at the start of
	// the signal.
	runs atomic.Uint64
	// reached holds, in its low 32 bits, the index of the guard entered
	// last (the first link sets it to 0), and in its high ones a count of
	// the links entered, so that each entry of a link stores a value of
	// its own: a guard's link finds the value it stored still there when
	// no link was entered after it, by its call or by one running at the
	// same time. (The count wraps after 2^32 entries.)
	reached atomic.Uint64

	mu        sync.Mutex
	val       R       // the kept value: see keep
	won       bool    // val is the value of a call that succeeded
	refusal   error   // the error of the last guard that did not call on; see refused
	refuser   int32   // the index of the guard that gave refusal
	errs      []error // by guard index, the last error the guard's Do returned; see owner
	abandoner int32   // the index of the first guard to return while a call inside it ran, or -1

	links []func(context.Context) error
}

const runStarted = 1 << 32

func (p *Pipeline[T, R]) newCall() *call[T, R] {
	n := len(p.guards)
	c := &call[T, R]{p: p, abandoner: -1, errs: make([]error, n)}
	c.links = make([]func(context.Context) error, n+1)
	c.links[n] = c.run
	for i := n - 1; i >= 0; i-- {
		g, next := p.guards[i], c.links[i+1]
		c.links[i] = func(ctx context.Context) error {
			if i > 0 {
				// The fn of the guard outside: running until it returns.
				c.runs.Add(1)
				defer c.runs.Add(^uint64(0))
			}
			mine := c.enter(i)
			err := g.Do(ctx, next)
			// Links 1 to i run now, once each (link 0 counts not
			// itself); a count above i is a call this guard left
			// running inside it.
			if uint32(c.runs.Load()) > uint32(i) {
				c.abandoned(int32(i))
			}
			if err != nil {
				c.refused(int32(i), c.reached.Load() == mine, err)
			}
			return err
		}
	}
	return c
}

// enter notes that the link of guard i is entered, and returns the value
// it stored in reached.
func (c *call[T, R]) enter(i int) uint64 {
	for {
		old := c.reached.Load()
		v := (old>>32+1)<<32 | uint64(i)
		if c.reached.CompareAndSwap(old, v) {
			return v
		}
	}
}

// last returns the index of the guard entered last.
func (c *call[T, R]) last() int32 { return int32(uint32(c.reached.Load())) }

// refused keeps err, the error the Do of guard i returned, as the reason
// the action did not run. The error of a guard that called no guard
// inside it (own: no link was entered after it) is its own refusal, and
// replaces what was kept: under a retry, the refusal of the last attempt
// is the reason (a breaker opened since a bulkhead refused the first).
// Another guard's error is kept only when none was: it passes on what the
// guard inside said, or it is that of a guard inside that panicked, or it
// comes with a call of the action, and then no refusal is asked for. (A
// refusal while another call of the signal entered a link, as under a
// hedge, is not known to be the guard's own, and is kept only when none
// was: so what is kept is named by the guard that gave it.) A guard
// outside may turn the error into nil (a fallback), and the signal is
// then Rejected with the refusal all the same. Every guard's error is
// also kept as its last one, for owner.
func (c *call[T, R]) refused(i int32, own bool, err error) {
	c.mu.Lock()
	if own || c.refusal == nil {
		c.refusal, c.refuser = err, i
	}
	c.errs[i] = err
	c.mu.Unlock()
}

// owner returns the index of the guard whose error err, the error of a
// signal whose action never ran, is: the guard that refused, when err is
// its refusal or wraps it; otherwise the innermost guard whose last error
// err is or wraps, which is a guard outside the refusing one that
// returned an error of its own (a retry that gave up with an error that
// does not wrap the last refusal), or one that passed such an error on.
// When err holds none of them (an error errors.Is cannot compare), it is
// the guard entered last. c.mu must be held.
func (c *call[T, R]) owner(err error) int32 {
	if c.refusal != nil && errors.Is(err, c.refusal) {
		return c.refuser
	}
	for i := len(c.errs) - 1; i >= 0; i-- {
		if e := c.errs[i]; e != nil && errors.Is(err, e) {
			return int32(i)
		}
	}
	return c.last()
}

// abandoned notes that the Do of guard i returned while a call it started
// still ran. The first guard to do so is the one that gave up: the guards
// outside it return after it, and see the same call running. (Calls that
// run at the same time, as a hedge starts them, count together: a guard
// inside a hedge may be noted in place of the one that gave up.)
func (c *call[T, R]) abandoned(i int32) {
	c.mu.Lock()
	if c.abandoner < 0 {
		c.abandoner = i
	}
	c.mu.Unlock()
}

// run is the innermost link: the action itself. It recovers a panic into
// an error, so the guard (a breaker) counts it as a failure. An action
// that ends its goroutine with runtime.Goexit (recover gives nil) cannot
// be stopped from ending it, but its call is kept as a failure too: on a
// goroutine a guard started for it (a hedge), the signal may still
// succeed by another call, whose value the Result must keep.
func (c *call[T, R]) run(ctx context.Context) (err error) {
	c.runs.Add(runStarted + 1)
	var v R
	returned := false
	defer func() {
		if !returned {
			var zero R
			v, err = zero, newPanicError(StageAction, recover())
		}
		c.keep(v, err)
	}()
	v, err = c.p.action.Execute(ctx, c.sig)
	returned = true
	return err
}

// keep records the value of a call that returned, and that it returned.
// The value kept is that of the first call to succeed, or, while none has,
// that of the last call to return (a value the action returned with its
// error, which a guard such as a fallback may turn into a success).
func (c *call[T, R]) keep(v R, err error) {
	c.mu.Lock()
	if !c.won {
		c.val, c.won = v, err == nil
	}
	c.runs.Add(^uint64(0)) // one call fewer running
	c.mu.Unlock()
}

// guarded runs the action inside the guards' Do, outermost first, and
// tells from the call's count whether a guard rejected the signal (the
// action never ran) or abandoned it (the action, or a guard inside the
// one that returned, still runs).
func (p *Pipeline[T, R]) guarded(ctx context.Context, s *Signal[T]) (r R, err error) {
	c := p.calls.Get().(*call[T, R])
	c.sig = *s
	before := c.runs.Load()
	err = c.links[0](ctx)
	runs := c.runs.Load()
	switch {
	case runs == before:
		// The action never ran. c is not reused: a guard that broke its
		// contract could still call the action it was handed, and must
		// then find this signal, not another one. A rejection costs a
		// fresh call; a call whose action returned is recycled.
		// Hook names the guard whose error err is; when the guards
		// returned nil (a fallback), the refusal is the error.
		hook := c.last()
		c.mu.Lock()
		if err != nil {
			hook = c.owner(err)
		} else if err = c.refusal; err != nil {
			hook = c.refuser
		}
		c.mu.Unlock()
		if err == nil {
			err = errors.New("guard returned without running the action")
		}
		return r, p.rejection(ctx, int(hook), err)
	case uint32(runs) != 0:
		// Abandoned: an action, or a guard that may yet call it, still
		// runs and owns c. The guard that gave up noted it when its Do
		// returned.
		c.mu.Lock()
		hook := c.abandoner
		c.mu.Unlock()
		if hook < 0 {
			// A call begun after the outermost guard's Do returned and
			// before the count was read: that guard let it run.
			hook = 0
		}
		return r, &abandonedError{guard: nameOrDefault(p.guardNames[hook], StageAction.String()), err: err}
	}
	// Every call of the action has returned; their keep happened before
	// the count read above reached zero.
	r = c.val
	var zs Signal[T]
	var zr R
	c.sig, c.val, c.won, c.refusal, c.abandoner = zs, zr, false, nil, -1
	clear(c.errs)
	p.calls.Put(c)
	return r, err
}

// conclude finishes the signal when the pipeline has a root span or
// observers, and otherwise only settles the Result. It returns the
// signal's error.
func (p *Pipeline[T, R]) conclude(ctx context.Context, s *Signal[T], res *Result[R], err error, f *flight) error {
	if f.root != nil || p.timed {
		return p.finish(ctx, s, res, err, f)
	}
	res.settle(err)
	return err
}

// finish ends the root span, settles the Result and hands the Record of
// the signal to every observer. It returns the signal's error: err, or a
// *PanicError if the root span panicked or ended the goroutine (see
// endRoot).
func (p *Pipeline[T, R]) finish(ctx context.Context, s *Signal[T], res *Result[R], err error, f *flight) error {
	var dur time.Duration
	if p.timed {
		dur = time.Since(f.start)
	}
	if f.root != nil {
		err = p.endRoot(ctx, s, res, err, f, dur)
	}
	return p.report(ctx, s, res, err, f, dur)
}

// report settles the Result with err, the signal's error, and hands the
// Record of the signal, which took dur, to every observer. It returns err.
func (p *Pipeline[T, R]) report(ctx context.Context, s *Signal[T], res *Result[R], err error, f *flight, dur time.Duration) error {
	res.settle(err)
	if !p.timed {
		return err
	}
	rec := Record{
		ID: s.ID, Kind: s.Kind, Key: s.Key,
		Outcome: res.Outcome, Decision: res.Decision, Err: err,
		Start: f.start, Duration: dur,
		Span: res.Span,
	}
	if p.stageTimed {
		// The time since the last lap goes to the stage the signal
		// ended in, or to the last one timed when the context ended
		// before the next.
		rec.Stages = f.stages
		rec.Stages[f.stage] += rec.Duration - f.since
		rec.StagesTimed = true
	}
	rec.Stages[StageSignal] = rec.Duration
	// The stages run in order, and f.stage is the last one entered; the
	// gate stage is entered only by a pipeline with gates.
	rec.Reached[StageSignal] = true
	rec.Reached[StageGate] = len(p.gates) > 0 && f.stage >= StageGate
	for st := StagePolicy; st <= f.stage; st++ {
		rec.Reached[st] = true
	}
	p.observe(ctx, &rec, 0)
	return err
}

// observe hands rec to the observers from the i-th on. One that panics is
// logged, and the ones after it still run. So do they after one that ends
// the goroutine with runtime.Goexit, which goes on ending it once they
// have run: the loop stops short of the end only when an observer did
// not return.
func (p *Pipeline[T, R]) observe(ctx context.Context, rec *Record, i int) {
	defer func() {
		if v := recover(); v != nil || i < len(p.observers) {
			p.observerPanicked(i, v, rec)
			p.observe(ctx, rec, i+1)
		}
	}()
	for ; i < len(p.observers); i++ {
		p.observers[i].Observe(ctx, *rec)
	}
}

// observerPanicked logs the panic v of the i-th observer, or its
// runtime.Goexit when v is nil: a panicking observer never changes the
// result of a signal.
func (p *Pipeline[T, R]) observerPanicked(i int, v any, rec *Record) {
	if v == nil {
		p.log().Error("tai: observer called runtime.Goexit", "observer", fmt.Sprintf("%T", p.observers[i]), "signal_id", rec.ID)
		return
	}
	p.log().Error("tai: observer panicked", "observer", fmt.Sprintf("%T", p.observers[i]), "panic", v, "signal_id", rec.ID)
}

// hookPanicked logs a panic (or a runtime.Goexit, when pe has no value)
// that cannot become the signal's error because an earlier panic already
// is.
func (p *Pipeline[T, R]) hookPanicked(what string, pe *PanicError) {
	if pe.Value == nil {
		p.log().Error("tai: "+what+" called runtime.Goexit", "stage", pe.Stage.String())
		return
	}
	p.log().Error("tai: "+what+" panicked", "stage", pe.Stage.String(), "panic", pe.Value)
}

func (p *Pipeline[T, R]) log() *slog.Logger {
	if p.logger != nil {
		return p.logger
	}
	return slog.Default()
}
