package tai

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
// outermost: WithGuards(breaker, timeout) runs breaker.Do(timeout.Do(action)).
func WithGuards(guards ...Guard) Option {
	return func(o *options) { o.guards = append(o.guards, guards...) }
}

// WithObservers adds observers, called in order with the Record of every
// finished signal.
func WithObservers(observers ...Observer) Option {
	return func(o *options) { o.observers = append(o.observers, observers...) }
}

// WithTracer sets the Tracer that opens a span per signal and stage. The
// last WithTracer wins; nil means no tracing.
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
// caller (a panicking Observer). Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Result is what Process returns about a signal.
type Result[R any] struct {
	// Value is the action's result; the zero R unless Outcome is Succeeded.
	Value R
	// Decision is the deciding decision of the policies (zero Verdict if
	// the signal never reached them).
	Decision Decision
	Outcome  Outcome
	// Span is the signal's root span, zero without a Tracer.
	Span SpanContext
}

// Pipeline runs signals through the stages of the TAI pattern:
//
//	gates → policy → guards around the action → observers
//
// A Pipeline is safe for concurrent use. Hooks that are not configured cost
// nothing: a pipeline with only a policy and an action does no clock reads,
// no allocation, and no work beyond the two calls and a context check
// before each.
type Pipeline[T, R any] struct {
	policy     Policy[T]
	action     Action[T, R]
	policyName string

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
	bare       bool // no gates, guards, observers or tracer
	timed      bool // observers need a Start and a Duration
	stageTimed bool // an observer asked for Record.Stages

	calls sync.Pool // *call[T, R], used only with guards
}

// New returns a pipeline that evaluates policy and, when it allows, runs
// action. It returns an error for a nil policy or action (or a nil policy
// inside All, Any, Named or FailOpen) and for a nil hook, naming which.
func New[T, R any](policy Policy[T], action Action[T, R], opts ...Option) (*Pipeline[T, R], error) {
	if err := validatePolicy(policy); err != nil {
		return nil, fmt.Errorf("tai.New: policy: %w", err)
	}
	if action == nil {
		return nil, errors.New("tai.New: action is nil")
	}
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	p := &Pipeline[T, R]{
		policy:     policy,
		action:     action,
		policyName: nameOf(policy, "policy"),
		gates:      o.gates,
		guards:     o.guards,
		observers:  o.observers,
		tracer:     o.tracer,
		hold:       o.hold,
		logger:     o.logger,
	}
	for i, g := range p.gates {
		if g == nil {
			return nil, fmt.Errorf("tai.New: gate %d is nil", i)
		}
		p.gateNames = append(p.gateNames, nameOf(g, ""))
		p.gateSpans = append(p.gateSpans, nameOf(g, StageGate.String()))
	}
	for i, g := range p.guards {
		if g == nil {
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
		if ob == nil {
			return nil, fmt.Errorf("tai.New: observer %d is nil", i)
		}
		if so, ok := ob.(StageObserver); ok && so.ObservesStages() {
			p.stageTimed = true
		}
	}
	p.timed = len(p.observers) > 0
	p.bare = len(p.gates) == 0 && len(p.guards) == 0 && len(p.observers) == 0 && p.tracer == nil
	p.calls.New = func() any { return p.newCall() }
	return p, nil
}

// Process runs one signal through the pipeline and returns its result. The
// error is nil when the outcome is Succeeded; otherwise OutcomeOf(err) equals
// the Result's Outcome:
//
//   - Rejected: a *RejectedError from a gate or guard (or ErrInvalidSignal
//     for a signal without an ID or Kind; such a signal reaches no hook);
//   - Denied: a *DeniedError carrying the Decision;
//   - Failed: a *PolicyError, a *PanicError, a *StageError when ctx ended
//     between stages, or the action's own error.
func (p *Pipeline[T, R]) Process(ctx context.Context, s Signal[T]) (res Result[R], err error) {
	if s.ID == "" || s.Kind == "" {
		return Result[R]{Outcome: Rejected}, invalidSignal(&s)
	}
	if !p.bare {
		err = p.process(ctx, &s, &res)
		return res, err
	}
	// The bare path: one deferred recover for both calls, no copies of
	// the decision beyond the one in res.
	stage := StagePolicy
	defer func() {
		if v := recover(); v != nil {
			var zero R
			res.Value, res.Outcome, err = zero, Failed, newPanicError(stage, v)
		}
	}()
	if err = ctx.Err(); err != nil {
		return res, p.fail(&res, &StageError{Stage: StagePolicy, Err: err})
	}
	res.Decision, err = p.policy.Evaluate(ctx, s)
	if err != nil || res.Decision.Verdict != Allow {
		if err = p.judge(&res.Decision, err); err != nil {
			return res, p.fail(&res, err)
		}
	}
	if err = ctx.Err(); err != nil {
		return res, p.fail(&res, &StageError{Stage: StageAction, Err: err})
	}
	stage = StageAction
	if res.Value, err = p.action.Execute(ctx, s); err != nil {
		res.Outcome = Failed
	}
	return res, err
}

// fail sets the outcome of err on res and returns err.
func (p *Pipeline[T, R]) fail(res *Result[R], err error) error {
	res.Outcome = OutcomeOf(err)
	return err
}

// judge turns a policy's answer that is not a plain Allow into the error
// Process returns: a *PolicyError for an error or a missing verdict, a
// *DeniedError for a Deny (or a Review when held). It returns nil for a
// Review that proceeds.
func (p *Pipeline[T, R]) judge(d *Decision, err error) error {
	if err == nil && !d.Verdict.Valid() {
		err = errNoVerdict(d.Verdict)
	}
	if err != nil {
		var pe *PolicyError
		var pa *PanicError
		if !errors.As(err, &pe) && !errors.As(err, &pa) {
			err = &PolicyError{Policy: nameOrDecision(p.policyName, d.Policy), Err: err}
		}
		return err
	}
	if d.Verdict == Deny || (d.Verdict == Review && p.hold) {
		return &DeniedError{Decision: *d}
	}
	return nil
}

func invalidSignal[T any](s *Signal[T]) error {
	field := "ID"
	if s.ID != "" {
		field = "Kind"
	}
	return &RejectedError{Stage: StageSignal, Err: fmt.Errorf("%w: empty %s", ErrInvalidSignal, field)}
}

// process is the path with hooks. One deferred function recovers a panic
// from any hook and finishes the signal: outcome, root span, observers. It
// writes the result through res, so Process copies it once.
//
// The layout follows what the processor does with it: a struct copied right
// after it was written field by field waits for those stores to land. So
// the span infos are built before the first clock read, the root span's
// identifiers are read into a variable of their own and copied into res
// only at the end, and the Record is built in place (see finish).
func (p *Pipeline[T, R]) process(ctx context.Context, s *Signal[T], res *Result[R]) (err error) {
	var (
		stage  = StageSignal
		span   Span // the open stage span, if any
		root   Span
		t0, t  time.Duration
		stages [numStages]time.Duration
		info   [numStages]SpanInfo
		steps  stepState // two-step guards passed, whose done is owed
	)
	if p.tracer != nil {
		p.spanInfos(&info, s)
	}
	if p.timed {
		t0 = monotonic()
		t = t0
	}
	if p.tracer != nil {
		ctx, root = p.tracer.Start(ctx, info[StageSignal])
	}
	defer func() {
		if v := recover(); v != nil {
			var zero R
			res.Value, err = zero, newPanicError(stage, v)
			steps.report(err) // the guards count a panicking action as a failure
			if span != nil {
				span.End(err)
			}
		}
		if err != nil {
			res.Outcome = OutcomeOf(err)
		}
		p.finish(ctx, s, res, err, root, stage, t0, t, &stages)
	}()

	stage = StageGate
	for i, g := range p.gates {
		gctx := ctx
		if p.tracer != nil {
			if i > 0 {
				info[StageGate].Name = p.gateSpans[i]
			}
			gctx, span = p.tracer.Start(ctx, info[StageGate])
		}
		if err = g.Admit(gctx, s.Key); err != nil {
			err = &RejectedError{Stage: StageGate, Hook: p.gateNames[i], Err: err}
		}
		if span != nil {
			span.End(err)
			span = nil
		}
		if err != nil {
			return err
		}
	}
	if p.stageTimed && len(p.gates) > 0 {
		now := monotonic()
		stages[StageGate], t = max(0, now-t), now
	}

	stage = StagePolicy
	if err = ctx.Err(); err != nil {
		return &StageError{Stage: StagePolicy, Err: err}
	}
	pctx := ctx
	if p.tracer != nil {
		pctx, span = p.tracer.Start(ctx, info[StagePolicy])
	}
	res.Decision, err = p.policy.Evaluate(pctx, *s)
	if err != nil || res.Decision.Verdict != Allow {
		err = p.judge(&res.Decision, err)
	}
	if span != nil {
		span.End(err)
		span = nil
	}
	if err != nil {
		return err
	}
	if p.stageTimed {
		now := monotonic()
		stages[StagePolicy], t = max(0, now-t), now
	}

	stage = StageAction
	if err = ctx.Err(); err != nil {
		return &StageError{Stage: StageAction, Err: err}
	}
	if p.tracer != nil {
		ctx, span = p.tracer.Start(ctx, info[StageAction])
	}
	switch {
	case len(p.guards) == 0:
		res.Value, err = p.action.Execute(ctx, *s)
	case p.steps != nil:
		res.Value, err = p.stepped(ctx, s, &steps)
	default:
		res.Value, err = p.guarded(ctx, s)
	}
	if span != nil {
		span.End(err)
		span = nil
	}
	return err
}

// spanInfos fills info with the span of each stage of s; the gate entry
// names the first gate.
func (p *Pipeline[T, R]) spanInfos(info *[numStages]SpanInfo, s *Signal[T]) {
	for st := range info {
		in := &info[st]
		in.Stage, in.Kind, in.SignalID = Stage(st), s.Kind, s.ID
	}
	info[StageSignal].Name = s.Kind
	if len(p.gateSpans) > 0 {
		info[StageGate].Name = p.gateSpans[0]
	}
	info[StagePolicy].Name = p.policyName
	info[StageAction].Name = "action"
}

func nameOrStage(name string, st Stage) string {
	if name != "" {
		return name
	}
	return st.String()
}

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
// would have run it (see TwoStepGuard). The guards passed are kept in st,
// which belongs to process: should the action panic, process's deferred
// recover reports the *PanicError to them.
func (p *Pipeline[T, R]) stepped(ctx context.Context, s *Signal[T], st *stepState) (r R, err error) {
	for i, g := range p.steps {
		done, aerr := g.Allow(ctx)
		if aerr != nil {
			st.report(aerr)
			return r, &RejectedError{Stage: StageAction, Hook: p.guardNames[i], Err: aerr}
		}
		st.dones[st.n] = done
		st.n++
	}
	r, err = p.action.Execute(ctx, *s)
	st.report(err)
	return r, err
}

// stepState holds the done of each two-step guard a signal has passed.
type stepState struct {
	dones [maxSteps]func(error)
	n     int
}

// report tells err to the guards passed, innermost first, each once: a
// done that panics is not called again, and the ones outside it are told
// the panic.
func (st *stepState) report(err error) {
	for st.n > 0 {
		st.n--
		if done := st.dones[st.n]; done != nil {
			done(err)
		}
	}
}

// call is the per-signal state of a guarded action. Its links are closures
// bound once, when the call is made for the pool, so a guard can be handed
// a func(context.Context) error without an allocation per signal.
type call[T, R any] struct {
	p   *Pipeline[T, R]
	sig Signal[T]
	val R
	// state is gen+callIdle, gen+callRunning or gen+callDone. Each use of
	// the call advances gen by callDone, so a recycled call is idle
	// without another atomic store (each one is a full fence).
	state   atomic.Uint32
	gen     uint32       // written only by the goroutine holding the call
	reached atomic.Int32 // index of the innermost guard entered
	links   []func(context.Context) error
}

const (
	callIdle uint32 = iota
	callRunning
	callDone
)

func (p *Pipeline[T, R]) newCall() *call[T, R] {
	c := &call[T, R]{p: p}
	n := len(p.guards)
	c.links = make([]func(context.Context) error, n+1)
	c.links[n] = c.run
	for i := n - 1; i >= 0; i-- {
		g, next := p.guards[i], c.links[i+1]
		c.links[i] = func(ctx context.Context) error {
			if c.reached.Load() != int32(i) {
				c.reached.Store(int32(i))
			}
			return g.Do(ctx, next)
		}
	}
	return c
}

// run is the innermost link: the action itself. It recovers a panic into
// an error, so the guard (a breaker) counts it as a failure.
func (c *call[T, R]) run(ctx context.Context) (err error) {
	c.state.Store(c.gen + callRunning)
	defer func() {
		if v := recover(); v != nil {
			var zero R
			c.val, err = zero, newPanicError(StageAction, v)
		}
		c.state.Store(c.gen + callDone)
	}()
	c.val, err = c.p.action.Execute(ctx, c.sig)
	return err
}

func (p *Pipeline[T, R]) guarded(ctx context.Context, s *Signal[T]) (r R, err error) {
	c := p.calls.Get().(*call[T, R])
	c.sig = *s
	err = c.links[0](ctx)
	hook := p.guardNames[c.reached.Load()]
	switch c.state.Load() - c.gen {
	case callIdle:
		// The action never ran. c is not reused: a guard that broke its
		// contract could still call the action it was handed, and must
		// then find this signal, not another one. Rejections pay for a
		// fresh call; the success path recycles.
		if err == nil {
			err = errors.New("guard returned without running the action")
		}
		return r, &RejectedError{Stage: StageAction, Hook: hook, Err: err}
	case callRunning:
		// Abandoned: the action still runs and owns c.
		return r, fmt.Errorf("%w (guard %s)", ErrAbandoned, strconv.Quote(nameOrStage(hook, StageAction)))
	}
	r = c.val
	var zs Signal[T]
	var zr R
	c.sig, c.val = zs, zr
	if c.reached.Load() != 0 {
		c.reached.Store(0)
	}
	c.gen += callDone
	p.calls.Put(c)
	return r, err
}

// finish ends the root span and hands the Record of the signal to every
// observer. The Record is filled field by field, most of it before the
// last clock read, and handed to the observers from where it was built:
// copied again while its stores are in flight, it would stall the
// processor.
func (p *Pipeline[T, R]) finish(ctx context.Context, s *Signal[T], res *Result[R], err error, root Span, stage Stage, t0, t time.Duration, stages *[numStages]time.Duration) {
	if root != nil {
		res.Span = root.SpanContext()
	}
	if !p.timed {
		if root != nil {
			root.End(err)
		}
		return
	}
	var rec Record
	rec.ID, rec.Kind, rec.Key = s.ID, s.Kind, s.Key
	rec.Outcome, rec.Err = res.Outcome, err
	rec.Decision = res.Decision
	rec.Start = time.Unix(0, epochWall+int64(t0))
	rec.Span = res.Span
	if p.stageTimed {
		rec.Stages = *stages
	}
	end := monotonic()
	if p.stageTimed {
		rec.Stages[stage] = max(0, end-t)
	}
	rec.Duration = max(0, end-t0) // see monotonic
	rec.Stages[StageSignal] = rec.Duration
	if root != nil {
		root.End(err)
	}
	i := 0
	defer func() {
		if v := recover(); v != nil {
			p.observerPanicked(i, v, &rec)
			p.observeFrom(ctx, &rec, i+1)
		}
	}()
	for ; i < len(p.observers); i++ {
		p.observers[i].Observe(ctx, rec)
	}
}

// observeFrom hands rec to the observers from the i-th on, after one of
// them panicked.
func (p *Pipeline[T, R]) observeFrom(ctx context.Context, rec *Record, i int) {
	defer func() {
		if v := recover(); v != nil {
			p.observerPanicked(i, v, rec)
			p.observeFrom(ctx, rec, i+1)
		}
	}()
	for ; i < len(p.observers); i++ {
		p.observers[i].Observe(ctx, *rec)
	}
}

// observerPanicked logs the panic v of the i-th observer: a panicking
// observer never changes the result of a signal.
func (p *Pipeline[T, R]) observerPanicked(i int, v any, rec *Record) {
	l := p.logger
	if l == nil {
		l = slog.Default()
	}
	l.Error("tai: observer panicked", "observer", fmt.Sprintf("%T", p.observers[i]), "panic", v, "signal_id", rec.ID)
}
