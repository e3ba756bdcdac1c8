package andon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/url"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/tai"
)

// errEvaluatorNotMade is the error of Run and Shutdown on an Evaluator
// that NewEvaluator did not make: it has nothing to run or stop.
var errEvaluatorNotMade = errors.New("andon: Evaluator not made by NewEvaluator")

// ErrClosed is returned by Run once Shutdown has been called.
var ErrClosed = errors.New("andon: evaluator shut down")

// EvaluatorOptions configures an Evaluator. Only Rules is needed; every zero field
// has the default its comment names.
type EvaluatorOptions struct {
	// Rules are evaluated in order. Names must be unique (the cord's
	// included).
	Rules []Rule
	// Interval is how often Run evaluates. Zero means 15s; otherwise at
	// least 1ms.
	Interval time.Duration
	// EvaluationTimeout bounds the conditions of every evaluation: their
	// context ends this long after the evaluation began, or sooner when
	// the caller's context does (Evaluate, EvaluateAt) or, under Run, at
	// Interval. So an evaluation ends in bounded time whatever a condition
	// does, even with a context that never ends (see Condition), and the
	// rule of a condition that has not returned has an error naming it.
	// Each hook's context ends as long after the hook is called (see
	// Hook). Zero means Interval; otherwise at least 1ms.
	EvaluationTimeout time.Duration
	// Hooks run for every rule (the cord included) when it fires and
	// resolves, before the rule's own hooks. A nil one, one that holds a
	// nil pointer or function, or StopLine of a nil line, is refused.
	Hooks []Hook
	// Notifiers hear of alerts that fire and resolve, each through its
	// own bounded queue and worker goroutine. A nil one, or one that
	// holds a nil pointer or function, is refused.
	Notifiers []Notifier
	// Notify configures delivery to Notifiers.
	Notify NotifyOptions
	// Cord configures the andon cord.
	Cord CordOptions
	// HistorySize is the number of transitions History keeps. Zero means
	// 256; otherwise from 1 to 1048576 (1<<20).
	HistorySize int
	// RecentValues is the number of recent values kept per rule for the
	// board's sparklines, 140 pixels wide. Zero means 60; otherwise from
	// 1 to 1000: each rule holds that many from the start, and every
	// board state, every event of its streams too, carries all of them
	// for every rule.
	RecentValues int
	// GeneratorURL is where the alerts are shown, usually the board's URL;
	// each Alert's GeneratorURL is it with "#rule-" and the rule's name,
	// escaped as a URL fragment, appended, so it must be a URL without a
	// fragment: an absolute URL ("https://ops.example.com/andon/") or a
	// path ("/andon/"), as Alertmanager takes. Empty leaves GeneratorURL
	// empty.
	GeneratorURL string
	// Logger receives dropped and failed notifications, the panics of
	// hooks and conditions, with their stacks, and conditions given up
	// for not returning. Nil means slog.Default().
	Logger *slog.Logger
}

// Evaluator evaluates rules, keeps their states as Prometheus does, pulls
// the cord, runs hooks and hands alerts to notifiers. Evaluate and
// EvaluateAt evaluate once; Run evaluates on an interval until its context
// ends. Shutdown delivers what is queued and stops the notifier workers;
// an Evaluator is safe for concurrent use.
//
// The evaluator reads time.Now (Run, Evaluate, Pull, Reset, silences);
// EvaluateAt takes the time from its caller. Tests that need time to pass
// run in a testing/synctest bubble.
//
// Evaluations, Pull and Reset are serialized, so hooks see transitions in
// order. Conditions are measured with no lock held, each on a goroutine of
// its own, and an evaluation waits for none past its context (see
// Condition); states change under a short lock; hooks run after it, then
// notifications are queued without waiting for delivery.
//
// Make one with NewEvaluator; the zero Evaluator is not usable: it has no
// rule and no cord, Evaluate and EvaluateAt make no transition, Pull and
// Reset report false, and Run and Shutdown return an error saying it was
// not made by NewEvaluator.
type Evaluator struct {
	interval time.Duration
	// timeout is EvaluationTimeout; the causes are the errors the
	// conditions' context ends with at it and, under Run, at interval.
	timeout                     time.Duration
	timeoutCause, intervalCause error
	log                         *slog.Logger
	validFor                    time.Duration

	// evalSlot holds a token while an evaluation runs: evaluations are
	// serialized, so hooks run in order, and Shutdown can wait for the
	// one in progress with a deadline.
	evalSlot chan struct{}

	mu       sync.Mutex // guards the fields below and every ruleState
	rules    []*ruleState
	byName   map[string]*ruleState
	history  ring[Transition]
	silences []Silence
	changed  chan struct{} // closed and replaced on every change
	closed   bool          // Shutdown was called

	cord     *cord // its own lock, taken under mu or alone, never the other way
	cordRule *ruleState

	dispatchers []*dispatcher
	// owed counts the resolutions the dispatchers dropped or gave up and
	// hold until they go out; while it is zero, evaluations offer them
	// only the firing and resolved alerts.
	owed atomic.Int64
	stop context.CancelFunc // cancels the notifier workers
	done chan struct{}      // closed by Shutdown
}

// ruleState is a rule with its compiled parts and its current Alert.
type ruleState struct {
	rule   Rule
	hooks  []Hook
	tmpl   annotationTemplates
	labels map[string]string
	alert  Alert
	recent ring[Point]
	// out is the call of the condition in progress, until it returns;
	// no evaluation calls the condition while one is out.
	out atomic.Pointer[measurement]
}

// Point is one value of a rule at one evaluation, for sparklines. In its
// JSON form, a Value that is NaN or an infinity is the string "NaN",
// "+Inf" or "-Inf", as an Alert's is.
type Point struct {
	Time  time.Time `json:"t"`
	Value float64   `json:"v"`
}

// NewEvaluator checks opts and returns an Evaluator, with a worker
// goroutine per notifier; Shutdown stops them. Errors name the bad field and
// value: a rule whose window the Stats does not keep, a duplicate name, a
// template that does not parse, a method of the program's that panics
// when it is read (a notifier's Name or Refreshes, the Windows of a
// condition's StatsSource, the String of a Condition).
func NewEvaluator(opts EvaluatorOptions) (*Evaluator, error) {
	e := &Evaluator{interval: opts.Interval, log: opts.Logger, byName: map[string]*ruleState{},
		evalSlot: make(chan struct{}, 1), changed: make(chan struct{}), done: make(chan struct{})}
	switch {
	case e.interval == 0:
		e.interval = 15 * time.Second
	case e.interval < time.Millisecond:
		return nil, fmt.Errorf("andon: EvaluatorOptions.Interval %v is below 1ms", opts.Interval)
	}
	switch e.timeout = opts.EvaluationTimeout; {
	case e.timeout == 0:
		e.timeout = e.interval
	case e.timeout < time.Millisecond:
		return nil, fmt.Errorf("andon: EvaluatorOptions.EvaluationTimeout %v is below 1ms", opts.EvaluationTimeout)
	}
	e.timeoutCause = fmt.Errorf("%w (EvaluationTimeout %v)", context.DeadlineExceeded, e.timeout)
	e.intervalCause = fmt.Errorf("%w (Interval %v)", context.DeadlineExceeded, e.interval)
	if e.log == nil {
		e.log = slog.Default()
	}
	historySize, err := sizeOption("HistorySize", opts.HistorySize, 256, 1<<20)
	if err != nil {
		return nil, err
	}
	recent, err := sizeOption("RecentValues", opts.RecentValues, 60, maxRecentValues)
	if err != nil {
		return nil, err
	}
	e.history = newRing[Transition](historySize)
	notify, err := opts.Notify.withDefaults()
	if err != nil {
		return nil, err
	}
	// Four intervals, as Prometheus sets endsAt; an interval too long to
	// multiply is as far ahead as a duration goes, not a wrapped one that
	// ends before the alert fired.
	e.validFor = math.MaxInt64
	if d := max(notify.ResendInterval, e.interval); d <= math.MaxInt64/4 {
		e.validFor = 4 * d
	}
	if opts.GeneratorURL != "" {
		// Alertmanager refuses an alert whose generatorURL does not parse,
		// or is neither an absolute URL nor a path (a URL whose scheme was
		// forgotten): every notification to it would fail for good.
		if _, err := url.Parse(opts.GeneratorURL); err != nil {
			return nil, fmt.Errorf("andon: EvaluatorOptions.GeneratorURL %q is not a URL", opts.GeneratorURL)
		}
		if _, err := url.ParseRequestURI(opts.GeneratorURL); err != nil {
			return nil, fmt.Errorf("andon: EvaluatorOptions.GeneratorURL %q is not an absolute URL or a path starting with /", opts.GeneratorURL)
		}
		if strings.Contains(opts.GeneratorURL, "#") {
			return nil, fmt.Errorf("andon: EvaluatorOptions.GeneratorURL %q has a fragment; each alert's, #rule- and its name, is appended", opts.GeneratorURL)
		}
	}
	for i, h := range opts.Hooks {
		if err := checkHook(h); err != nil {
			return nil, fmt.Errorf("andon: EvaluatorOptions.Hooks[%d] %w", i, err)
		}
	}
	for i, n := range opts.Notifiers {
		if n == nil {
			return nil, fmt.Errorf("andon: EvaluatorOptions.Notifiers[%d] is nil", i)
		}
		if typednil.Holds(n) {
			// Every Notify call would panic, failing each batch for good.
			return nil, fmt.Errorf("andon: EvaluatorOptions.Notifiers[%d] is a nil %T", i, n)
		}
	}
	// Read before any worker starts, so that an error leaves none behind.
	traits := make([]notifierTraits, len(opts.Notifiers))
	for i, n := range opts.Notifiers {
		if traits[i], err = readNotifierTraits(i, n); err != nil {
			return nil, fmt.Errorf("andon: %w", err)
		}
	}

	for i := range opts.Rules {
		// addRule copies what it keeps of the rule's maps and slices.
		r := opts.Rules[i]
		if err := e.addRule(r, opts.Hooks, recent, opts.GeneratorURL); err != nil {
			name := r.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i)
			}
			return nil, fmt.Errorf("andon: rule %q: %w", name, err)
		}
	}
	e.cord = &cord{}
	cr := Rule{Name: opts.Cord.Name, Severity: opts.Cord.Severity, Condition: e.cord, Labels: opts.Cord.Labels,
		RunbookURL: opts.Cord.RunbookURL, Hooks: opts.Cord.Hooks}
	if cr.Name == "" {
		cr.Name = "AndonCord"
	}
	if cr.Severity == "" {
		cr.Severity = Page
	}
	if err := e.checkCord(cr); err != nil {
		return nil, err
	}
	if err := e.addRule(cr, opts.Hooks, recent, opts.GeneratorURL); err != nil {
		return nil, fmt.Errorf("andon: EvaluatorOptions.Cord: %w", err)
	}
	e.cordRule = e.rules[len(e.rules)-1]

	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	for i, n := range opts.Notifiers {
		d := newDispatcher(ctx, n, traits[i], notify, e.log, &e.owed)
		e.dispatchers = append(e.dispatchers, d)
		go d.run()
	}
	return e, nil
}

// checkCord checks the fields of CordOptions that the cord's rule, cr,
// takes from them, with errors that name those fields rather than the
// rule's.
func (e *Evaluator) checkCord(cr Rule) error {
	if _, dup := e.byName[cr.Name]; dup {
		return fmt.Errorf("andon: EvaluatorOptions.Cord.Name %q is used by a rule; the cord's alertname must be its own", cr.Name)
	}
	if !utf8.ValidString(cr.Name) {
		return fmt.Errorf("andon: EvaluatorOptions.Cord.Name %q is not valid UTF-8", cr.Name)
	}
	if err := cr.Severity.validate("EvaluatorOptions.Cord.Severity"); err != nil {
		return fmt.Errorf("andon: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(cr.Labels)) {
		if err := checkLabelName(name); err != nil {
			return fmt.Errorf("andon: EvaluatorOptions.Cord.Labels: %w", err)
		}
		if name == "alertname" || name == "severity" {
			return fmt.Errorf("andon: EvaluatorOptions.Cord.Labels: label %q is set by the cord; use Name or Severity", name)
		}
		if err := checkLabelValue(name, cr.Labels[name]); err != nil {
			return fmt.Errorf("andon: EvaluatorOptions.Cord.Labels: %w", err)
		}
	}
	for i, h := range cr.Hooks {
		if err := checkHook(h); err != nil {
			return fmt.Errorf("andon: EvaluatorOptions.Cord.Hooks[%d] %w", i, err)
		}
	}
	return nil
}

// maxRecentValues bounds EvaluatorOptions.RecentValues: every board state
// carries every rule's recent values, and is sent whole on every change.
const maxRecentValues = 1000

// sizeOption returns the value of the size option name: v, def for zero,
// or an error if v is outside [1, limit].
func sizeOption(name string, v, def, limit int) (int, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0 || v > limit:
		return 0, fmt.Errorf("andon: EvaluatorOptions.%s %d is outside [1, %d]", name, v, limit)
	}
	return v, nil
}

func (e *Evaluator) addRule(r Rule, hooks []Hook, recent int, genURL string) error {
	if err := r.validate(); err != nil {
		return err
	}
	if _, dup := e.byName[r.Name]; dup {
		return fmt.Errorf("Rule.Name %q is used by another rule", r.Name)
	}
	for i, h := range r.Hooks {
		if err := checkHook(h); err != nil {
			return fmt.Errorf("Rule.Hooks[%d] %w", i, err)
		}
	}
	tmpl, err := compileAnnotations(&r)
	if err != nil {
		return err
	}
	summary, err := firstSummary(&r)
	if err != nil {
		return err
	}
	labels := r.labels()
	rs := &ruleState{rule: r, hooks: append(slices.Clone(hooks), r.Hooks...), tmpl: tmpl, labels: labels, recent: newRing[Point](recent)}
	rs.alert = Alert{Name: r.Name, Severity: r.Severity, Labels: labels, Fingerprint: fingerprint(labels),
		MinSamples: r.MinSamples, Annotations: map[string]string{"summary": summary}}
	if r.RunbookURL != "" {
		rs.alert.Annotations["runbook_url"] = r.RunbookURL
	}
	if genURL != "" {
		// Escaped, as a name may hold spaces or a "%": Alertmanager refuses
		// an alert whose generatorURL does not parse.
		rs.alert.GeneratorURL = genURL + "#" + (&url.URL{Fragment: "rule-" + r.Name}).EscapedFragment()
	}
	e.rules = append(e.rules, rs)
	e.byName[r.Name] = rs
	return nil
}

// firstSummary returns the summary a rule shows before its first
// evaluation, its condition's description, or an error should the
// condition's String method panic.
func firstSummary(r *Rule) (s string, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the String method of Rule.Condition (%T) panicked: %v", r.Condition, v)
		}
	}()
	return r.describe(), nil
}

// checkHook reports a hook that would panic each time it ran: nil, a nil
// pointer or function, or StopLine of a nil line. Its error follows the
// field's name.
func checkHook(h Hook) error {
	switch {
	case h == nil:
		return errors.New("is nil")
	case typednil.Holds(h):
		return fmt.Errorf("is a nil %T", h)
	}
	if ls, ok := h.(*lineStopper); ok && (ls.line == nil || typednil.Holds(ls.line)) {
		return fmt.Errorf("is StopLine of a nil line (%T)", ls.line)
	}
	return nil
}

// Run evaluates every Interval, starting at once, until ctx ends (it
// returns ctx.Err(), at once and without evaluating if ctx has ended
// before Run is called) or Shutdown is called (ErrClosed). Each evaluation
// runs on a goroutine of its own, which Run waits for: a condition or
// hook that ends it with runtime.Goexit (t.FailNow in a test's callback)
// is logged, as a panic is, and does not end Run. The context the
// conditions are given ends Interval, or EvaluationTimeout if it is
// shorter, after the evaluation began, and each hook's that long after
// it is called (see Hook): a condition that waits on it (a request to a
// server that does not answer) fails with its error then, and one that
// ignores it is given up soon after (see Condition), so neither the next
// evaluation nor a pull of the cord is held up for longer.
func (e *Evaluator) Run(ctx context.Context) error {
	if e.evalSlot == nil {
		return errEvaluatorNotMade
	}
	t := time.NewTicker(e.interval)
	defer t.Stop()
	bound, cause := e.timeout, e.timeoutCause
	if e.interval < bound {
		bound, cause = e.interval, e.intervalCause
	}
	for {
		// A context that has ended (before Run, or as a tick came) stops
		// Run before it evaluates: a rule would otherwise fire, and its
		// hooks stop a line, after the program was told to stop.
		if err := ctx.Err(); err != nil {
			return err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			now := time.Now()
			e.evaluate(ctx, now, now, e.allRules(), bound, cause)
		}()
		<-done
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.done:
			return ErrClosed
		case <-t.C:
		}
	}
}

// Evaluate evaluates every rule at time.Now() and returns the transitions
// it made. The conditions are given ctx, ended EvaluationTimeout after
// the evaluation began if it has not ended before: then so does the
// evaluation, with an error for each rule whose condition has not
// returned (see Condition).
func (e *Evaluator) Evaluate(ctx context.Context) []Transition {
	now := time.Now()
	return e.evaluate(ctx, now, now, e.allRules(), e.timeout, e.timeoutCause)
}

// EvaluateAt evaluates every rule as of now and returns the transitions it
// made, in rule order; nothing after Shutdown, or when ctx ends while
// another evaluation runs. The For and KeepFiringFor clocks run on the
// times given here, for callers that replay or schedule evaluations
// themselves; the conditions on kaizen Stats still read the Stats as it
// is, and silences are in force or not as of time.Now, as Silence and
// Expire see them. The conditions are given ctx, bounded by
// EvaluationTimeout, as Evaluate gives it.
func (e *Evaluator) EvaluateAt(ctx context.Context, now time.Time) []Transition {
	return e.evaluate(ctx, now, time.Now(), e.allRules(), e.timeout, e.timeoutCause)
}

func (e *Evaluator) allRules() []*ruleState {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rules
}

// evaluate evaluates rules at now: measure, change states, run hooks,
// queue notifications, wake the board. Silences are checked at wall, the
// time of the clock. A positive bound ends the conditions' context that
// long after the measuring began, with cause.
func (e *Evaluator) evaluate(ctx context.Context, now, wall time.Time, rules []*ruleState, bound time.Duration, cause error) []Transition {
	if e.evalSlot == nil {
		return nil // the zero Evaluator: no slot would ever be free
	}
	if !e.acquire(ctx) {
		return nil
	}
	defer e.release()
	if e.isClosed() {
		return nil
	}
	return e.evaluateHeld(ctx, now, wall, rules, bound, cause)
}

// acquire takes the evaluation slot, and reports false if ctx ends while
// another evaluation holds it. A free slot is taken whatever ctx: ctx
// bounds only the wait.
func (e *Evaluator) acquire(ctx context.Context) bool {
	select {
	case e.evalSlot <- struct{}{}:
		return true
	default:
	}
	select {
	case e.evalSlot <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// release gives the evaluation slot back.
func (e *Evaluator) release() { <-e.evalSlot }

// result is what a rule's condition measured.
type result struct {
	m           Measurement
	annotations map[string]string
	err         error       // nil or a conditionError
	panic       *PanicError // the panic or Goexit whose text err holds
}

// evaluateHeld is evaluate with the slot held and the evaluator open.
// Should a condition end its goroutine with runtime.Goexit, the
// evaluation is finished, that condition's Goexit its rule's error, and
// then the calling goroutine ends too, as it would have had the condition
// run on it.
func (e *Evaluator) evaluateHeld(ctx context.Context, now, wall time.Time, rules []*ruleState, bound time.Duration, cause error) []Transition {
	results := make([]result, len(rules))
	mctx := ctx
	if bound > 0 {
		var cancel context.CancelFunc
		mctx, cancel = context.WithTimeoutCause(ctx, bound, cause)
		defer cancel()
	}
	goexit := e.measureAll(mctx, rules, now, results)
	// Each hook is given ctx ended after the evaluation's bound, or
	// after EvaluationTimeout for a pull or reset of the cord, which
	// measures with none: a hook that waits on it does not hold the
	// evaluator past that.
	hooks := hookBound{e.timeout, e.timeoutCause}
	if bound > 0 {
		hooks = hookBound{bound, cause}
	}
	trs := e.settle(ctx, now, wall, rules, results, hooks)
	if goexit {
		runtime.Goexit()
	}
	return trs
}

// measurement is a call of a rule's condition, made on a goroutine of its
// own so that the evaluation can end without it.
type measurement struct {
	at    time.Time    // the time of the evaluation that made it
	state atomic.Int32 // callWaiting, callRunning, and then one of the others
	res   result       // set before the state is callReturned
	batch *batch
}

// The states of a measurement.
const (
	callWaiting   int32 = iota // the goroutine has not called the condition yet
	callRunning                // the condition has been called
	callReturned               // it returned (or ended the goroutine): res is its result
	callDropped                // the evaluation ended before it was called: it is not
	callAbandoned              // the evaluation ended while it ran: what it returns is dropped
)

// batch counts the calls of an evaluation that have not returned, and
// closes all once none is left.
type batch struct {
	left atomic.Int64
	all  chan struct{}
	// unbegun counts the calls whose goroutine has not begun yet, and
	// begun is closed once none is left.
	unbegun atomic.Int64
	begun   chan struct{}
}

func (b *batch) finish() {
	if b.left.Add(-1) == 0 {
		close(b.all)
	}
}

func (b *batch) begin() {
	if b.unbegun.Add(-1) == 0 {
		close(b.begun)
	}
}

// lateReturn is how long after their context ended the evaluation waits
// for conditions that have not returned: a tenth of the time they had,
// within [minLate, maxLate], so that one that returns when its context
// ends (a request cancelled) gives its own result rather than being
// taken for one that does not return.
func lateReturn(had time.Duration) time.Duration {
	return min(max(had/10, minLate), maxLate)
}

const (
	minLate = time.Millisecond
	maxLate = 100 * time.Millisecond
)

// measureAll measures rules into results, each condition on a goroutine of
// its own, all at once, and waits for them until ctx ends and then for
// lateReturn more. A condition that has not returned by then has an error
// with the context's as its result, and stays out: until it returns, later
// evaluations do not call it again and have an error for it, and what it
// returns is dropped. It reports whether a condition ended its goroutine
// with runtime.Goexit.
func (e *Evaluator) measureAll(ctx context.Context, rules []*ruleState, now time.Time, results []result) (goexit bool) {
	begun := time.Now()
	calls := make([]*measurement, len(rules))
	b := &batch{all: make(chan struct{}), begun: make(chan struct{})}
	b.left.Store(1) // this evaluation's, until every call is made
	b.unbegun.Store(1)
	for i, rs := range rules {
		if rs == e.cordRule {
			// The cord's condition reads its status under a short lock:
			// it returns, and a pull measured with an ended ctx fires.
			results[i] = measureResult(ctx, rs, now)
			continue
		}
		if m := rs.out.Load(); m != nil {
			results[i] = result{err: conditionError{"andon: condition of rule " + rs.rule.Name +
				" has not returned since its evaluation at " + m.at.Format(time.RFC3339Nano)}}
			continue
		}
		m := &measurement{at: now, batch: b}
		rs.out.Store(m)
		calls[i] = m
		b.left.Add(1)
		b.unbegun.Add(1)
		go m.run(ctx, rs, now)
	}
	b.finish()
	b.begin()
	select {
	case <-b.all: // results at hand are taken, whatever ctx
	default:
		select {
		case <-b.all:
		case <-ctx.Done():
			// The time left to the calls counts from when every one
			// has begun: a goroutine the scheduler has not run yet
			// (ctx ended before the evaluation, a busy machine) is not
			// a condition that does not return.
			select {
			case <-b.all:
			case <-b.begun:
			}
			late := time.NewTimer(lateReturn(time.Since(begun)))
			select {
			case <-b.all:
			case <-late.C:
			}
			late.Stop()
		}
	}
	for i, m := range calls {
		if m == nil {
			continue
		}
		rs := rules[i]
		switch m.end() {
		case callReturned:
			rs.out.CompareAndSwap(m, nil) // taken: the next evaluation calls it again
			results[i] = m.res
			if p := m.res.panic; p != nil && p.Value == nil {
				goexit = true
			}
			continue
		case callDropped:
			rs.out.CompareAndSwap(m, nil) // never called: nothing is out
		case callAbandoned:
			e.log.Error("andon: condition did not return when its context ended; it is not called again until it does",
				"where", "condition of rule "+rs.rule.Name, "err", ctx.Err())
		}
		results[i] = result{err: conditionError{"andon: condition of rule " + rs.rule.Name +
			" did not return when its context ended: " + causeText(ctx)}}
	}
	return goexit
}

// causeText says why ctx, which has ended, ended: the text of its
// cause, or of its error should the cause not make one. A cause the
// caller gave may be a nil pointer of an error type, or have an Error
// method that panics or calls runtime.Goexit; that method runs on a
// goroutine of its own, which a Goexit ends alone, and does not end the
// evaluation.
func causeText(ctx context.Context) string {
	text := ctx.Err().Error()
	cause := context.Cause(ctx)
	if cause == ctx.Err() {
		return text
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		text = cause.Error()
	}()
	<-done
	return text
}

// end ends the evaluation's wait for the call and returns its state then:
// callReturned, or callDropped if it was not made yet, or callAbandoned if
// it runs.
func (m *measurement) end() int32 {
	for {
		switch st := m.state.Load(); st {
		case callWaiting:
			if m.state.CompareAndSwap(callWaiting, callDropped) {
				return callDropped
			}
		case callRunning:
			if m.state.CompareAndSwap(callRunning, callAbandoned) {
				return callAbandoned
			}
		default:
			return st
		}
	}
}

// run calls the rule's condition, unless the evaluation ended before it
// could, and sets res; a condition that ends the goroutine with
// runtime.Goexit has it as its error, a *PanicError with no Value.
func (m *measurement) run(ctx context.Context, rs *ruleState, now time.Time) {
	if !m.state.CompareAndSwap(callWaiting, callRunning) {
		return
	}
	m.batch.begin()
	returned := false
	defer func() {
		if !returned {
			p := newPanicError("condition of rule "+rs.rule.Name, nil)
			m.res = result{err: conditionError{p.Error()}, panic: p}
		}
		m.state.CompareAndSwap(callRunning, callReturned) // or abandoned: dropped
		rs.out.CompareAndSwap(m, nil)
		m.batch.finish()
	}()
	m.res = measureResult(ctx, rs, now)
	returned = true
}

// measureResult measures the rule's condition; the text of a panic's
// error, which the panic value's own methods make, is made here, not
// under e.mu.
func measureResult(ctx context.Context, rs *ruleState, now time.Time) result {
	var r result
	r.m, r.annotations, r.err = measure(ctx, rs, now)
	if p, ok := r.err.(*PanicError); ok {
		r.err, r.panic = conditionError{p.Error()}, p
	}
	return r
}

// settle changes the states of rules with what their conditions measured,
// runs the hooks and offers the alerts to the notifiers.
func (e *Evaluator) settle(ctx context.Context, now, wall time.Time, rules []*ruleState, results []result, hb hookBound) []Transition {
	var (
		trs    []Transition
		calls  []hookCall
		offers []Alert
	)
	// A notifier owed a resolution is offered the alert in every state:
	// once the alert is pending or inactive again, no resolved alert
	// comes to send it with.
	owed := e.owed.Load() > 0
	e.mu.Lock()
	e.pruneSilences(wall)
	var panics []*PanicError
	for i, rs := range rules {
		from := rs.alert.State
		// An error is a conditionError, its text read already: no method
		// of the condition's, or of its panic's value, runs under the lock.
		if p := results[i].panic; p != nil && rs.alert.LastError != results[i].err.Error() {
			panics = append(panics, p) // logged once for a run of the same panic
		}
		rs.apply(now, results[i].m, results[i].annotations, results[i].err)
		rs.alert.Silenced = e.silenced(rs.labels, wall)
		if results[i].err == nil {
			// Only a measurement says the alert still fires: a rule whose
			// data source is down keeps the ValidUntil of its last one,
			// and a receiver lets the alert expire, as Prometheus sends
			// nothing for a rule whose evaluation failed.
			rs.alert.ValidUntil = now.Add(e.validFor)
		}
		to := rs.alert.State
		if to != from {
			tr := Transition{Rule: rs.rule.Name, From: from, To: to, At: now, Value: rs.alert.Value}
			trs = append(trs, tr)
			e.history.push(tr)
		}
		switch {
		case to == Firing && from != Firing:
			calls = append(calls, hookCall{rs.hooks, rs.alert.clone(), true})
		case from == Firing && to != Firing:
			calls = append(calls, hookCall{rs.hooks, rs.alert.clone(), false})
		}
		if to == Firing || to == Resolved {
			offers = append(offers, rs.alert.clone())
		} else if owed {
			// The state alone, without the maps: a notifier sends the
			// resolution it holds, not this.
			offers = append(offers, Alert{Name: rs.alert.Name, Fingerprint: rs.alert.Fingerprint, State: to})
		}
	}
	e.mu.Unlock()

	for _, p := range panics {
		if p.Value == nil {
			e.log.Error("andon: condition called runtime.Goexit", "where", p.Where, "stack", string(p.Stack))
			continue
		}
		e.log.Error("andon: condition panicked", "where", p.Where, "panic", panicText(p.Value), "stack", string(p.Stack))
	}
	// The notifiers hear of the alerts, and the board of the evaluation,
	// even if a hook ends the goroutine with runtime.Goexit.
	defer func() {
		for _, d := range e.dispatchers {
			d.offer(now, offers)
		}
		e.mu.Lock()
		e.broadcast()
		e.mu.Unlock()
	}()
	e.runHooks(ctx, calls, 0, 0, hb)
	return trs
}

// hookCall is a rule's hooks to call with its alert, which fired or
// resolved.
type hookCall struct {
	hooks []Hook
	alert Alert
	fire  bool
}

// hookBound is how long each hook's context lasts, and the cause it ends
// with then.
type hookBound struct {
	d     time.Duration
	cause error
}

// runHooks runs the hooks of calls, from the j-th hook of the i-th call
// on. One that ends the goroutine with runtime.Goexit is logged, and the
// ones after it still run; the goroutine goes on ending once they have.
func (e *Evaluator) runHooks(ctx context.Context, calls []hookCall, i, j int, hb hookBound) {
	defer func() {
		if i < len(calls) {
			// The loop stopped short: a hook did not return (runHook
			// recovers a panic).
			h := calls[i].hooks[j]
			e.log.Error("andon: hook called runtime.Goexit", "hook", hookName(h), "alertname", calls[i].alert.Name,
				"stack", string(debug.Stack()))
			e.runHooks(ctx, calls, i, j+1, hb)
		}
	}()
	for ; i < len(calls); i, j = i+1, 0 {
		for ; j < len(calls[i].hooks); j++ {
			e.runHook(ctx, calls[i].hooks[j], calls[i].alert, calls[i].fire, hb)
		}
	}
}

// hookName names a hook in logs: by its Name method (tai.Namer), or its
// type, also when that method panics (StopLine's calls its line's): it is
// called while a panic of the hook's is being reported.
func hookName(h Hook) (name string) {
	name = fmt.Sprintf("%T", h)
	defer func() { _ = recover() }()
	if n, ok := h.(tai.Namer); ok {
		name = n.Name()
	}
	return name
}

// measure calls the rule's condition and renders the annotations with
// what it measured, with no lock held, turning a panic into a
// *PanicError: the default summary calls the condition's String method.
func measure(ctx context.Context, rs *ruleState, now time.Time) (m Measurement, annotations map[string]string, err error) {
	defer func() {
		if v := recover(); v != nil {
			m, annotations, err = Measurement{}, nil, newPanicError("condition of rule "+rs.rule.Name, v)
		}
	}()
	if m, err = rs.rule.Condition.Measure(ctx, now); err != nil {
		// Its text is read here, where a panic in its methods (a nil
		// pointer of an error type) is recovered, not under e.mu.
		return m, nil, conditionError{err.Error()}
	}
	return m, rs.tmpl.render(&rs.rule, rs.labels, m), nil
}

// conditionError is the error a condition returned, as the evaluator
// keeps it: its text.
type conditionError struct{ text string }

func (e conditionError) Error() string { return e.text }

// runHook calls a hook with ctx ended after hb, logging a panic with its
// stack.
func (e *Evaluator) runHook(ctx context.Context, h Hook, a Alert, fire bool, hb hookBound) {
	ctx, cancel := context.WithTimeoutCause(ctx, hb.d, hb.cause)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			name := hookName(h)
			p := newPanicError("hook "+name, v)
			e.log.Error("andon: hook panicked", "hook", name, "alertname", a.Name, "panic", panicText(v), "stack", string(p.Stack))
		}
	}()
	if fire {
		h.Fire(ctx, a)
	} else {
		h.Resolve(ctx, a)
	}
}

// apply moves the rule's state with a new measurement and the annotations
// rendered from it, as Prometheus's alerting rules do.
func (rs *ruleState) apply(now time.Time, m Measurement, annotations map[string]string, err error) {
	a := &rs.alert
	a.LastEval = now
	if err != nil {
		a.LastError = err.Error()
		return
	}
	a.LastError = ""
	a.Value, a.Threshold, a.Unit, a.Samples, a.Detail = m.Value, m.Threshold, m.Unit, m.Samples, m.Detail
	a.Annotations = annotations
	rs.recent.push(Point{Time: now, Value: m.Value})
	if a.InsufficientData = m.Samples < rs.rule.MinSamples; a.InsufficientData {
		return
	}
	if m.Active {
		switch a.State {
		case Inactive, Resolved:
			a.State, a.ActiveAt = Pending, now
			a.FiredAt, a.ResolvedAt, a.KeepFiringSince = time.Time{}, time.Time{}, time.Time{}
		case Firing:
			a.KeepFiringSince = time.Time{}
		}
		if a.State == Pending && now.Sub(a.ActiveAt) >= rs.rule.For {
			a.State, a.FiredAt = Firing, now
		}
		return
	}
	switch a.State {
	case Pending:
		a.State, a.ActiveAt = Inactive, time.Time{}
	case Firing:
		if rs.rule.KeepFiringFor > 0 {
			if a.KeepFiringSince.IsZero() {
				a.KeepFiringSince = now
			}
			if now.Sub(a.KeepFiringSince) < rs.rule.KeepFiringFor {
				return
			}
		}
		a.State, a.ResolvedAt, a.KeepFiringSince = Resolved, now, time.Time{}
	}
}

// broadcast wakes whoever waits on changed; e.mu is held.
func (e *Evaluator) broadcast() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// watch returns a channel closed at the next change of state.
func (e *Evaluator) watch() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

func (e *Evaluator) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// Alerts returns the state of every rule, in rule order, the cord last.
// Silenced is as of now: a silence that began or ended since the last
// evaluation shows at once.
func (e *Evaluator) Alerts() []Alert {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Alert, len(e.rules))
	for i, rs := range e.rules {
		out[i] = e.alertAt(rs, now)
	}
	return out
}

// Alert returns the state of the rule named name, Silenced as of now, as
// Alerts does.
func (e *Evaluator) Alert(name string) (Alert, bool) {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	rs, ok := e.byName[name]
	if !ok {
		return Alert{}, false
	}
	return e.alertAt(rs, now), true
}

// alertAt returns a copy of the rule's alert with Silenced as of now;
// e.mu is held. The silences are checked, not taken from the last
// evaluation, so that one that ends on its own does not show the alert
// silenced until the next.
func (e *Evaluator) alertAt(rs *ruleState, now time.Time) Alert {
	a := rs.alert.clone()
	a.Silenced = e.silenced(rs.labels, now)
	return a
}

// Recent returns the last values of the rule named name, oldest first
// (EvaluatorOptions.RecentValues of them at most).
func (e *Evaluator) Recent(name string) []Point {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs, ok := e.byName[name]
	if !ok {
		return nil
	}
	return rs.recent.values()
}

// boardSnapshot returns the alerts, as Alerts does, with each rule's
// recent values, and the last n transitions, all in one hold of e.mu: an
// evaluation between separate reads would show a transition, or a
// sparkline's point, that the rule's state does not.
func (e *Evaluator) boardSnapshot(n int) (alerts []Alert, recent [][]Point, history []Transition) {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	alerts, recent = make([]Alert, len(e.rules)), make([][]Point, len(e.rules))
	for i, rs := range e.rules {
		alerts[i] = e.alertAt(rs, now)
		recent[i] = rs.recent.values()
	}
	return alerts, recent, e.history.last(n)
}

// History returns the last transitions of every rule, oldest first
// (EvaluatorOptions.HistorySize of them at most).
func (e *Evaluator) History() []Transition {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.history.values()
}

// NotifierStats returns the delivery counts of each notifier, in
// EvaluatorOptions.Notifiers order.
func (e *Evaluator) NotifierStats() []NotifierStats {
	out := make([]NotifierStats, len(e.dispatchers))
	for i, d := range e.dispatchers {
		out[i] = d.snapshot()
	}
	return out
}

// Flush waits until every queued notification has been delivered or given
// up, or ctx ends.
func (e *Evaluator) Flush(ctx context.Context) error {
	for _, d := range e.dispatchers {
		if err := d.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Shutdown stops the evaluator gracefully, as http.Server.Shutdown stops
// a server: evaluation stops at once (Run returns ErrClosed; Evaluate,
// EvaluateAt, Pull and Reset do nothing), an evaluation in progress
// finishes queuing its notifications, what is queued is delivered (or
// given up after its retries), and the notifier workers exit.
//
// If ctx ends first, Shutdown cancels the Notify calls in progress (their
// batches fail, counted in NotifierStats.Failed), drops the notifications
// still queued or waiting for a retry (counted in NotifierStats.Dropped
// and logged) and returns ctx.Err(); the workers then exit on their own, as
// soon as the notifiers honour the cancellation. Shutdown may be called
// again: it waits for the workers, bounded by its own ctx, and returns nil
// once none remains. A condition given up for not returning (see
// Condition) is not waited for: its goroutine ends when it returns.
func (e *Evaluator) Shutdown(ctx context.Context) error {
	if e.evalSlot == nil {
		return errEvaluatorNotMade
	}
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.done)
		e.broadcast()
	}
	e.mu.Unlock()
	defer e.stop()
	// Each wait looks first at what it waits for: a ctx that has ended
	// does not fail a Shutdown that has nothing left to wait for.
	select { // let an evaluation in progress finish queuing
	case e.evalSlot <- struct{}{}:
		<-e.evalSlot
	default:
		select {
		case e.evalSlot <- struct{}{}:
			<-e.evalSlot
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := e.Flush(ctx); err != nil {
		return err
	}
	e.stop()
	for _, d := range e.dispatchers {
		select {
		case <-d.exited:
			continue
		default:
		}
		select {
		case <-d.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Silence mutes the notifications of matching alerts for a while and
// returns its ID, a random string that no other silence has, in this
// evaluator or another, before a restart or after (an ID in s is
// replaced). Errors name the bad field.
func (e *Evaluator) Silence(s Silence) (string, error) {
	s.Matchers = slices.Clone(s.Matchers)
	now := time.Now()
	if err := s.prepare(now); err != nil {
		return "", err
	}
	s.ID = rand.Text()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.silences = append(e.silences, s)
	e.broadcast() // the board shows it at once: reads check the silences
	return s.ID, nil
}

// Expire ends the silence with the given ID and reports whether it
// existed and had not ended yet (one that ended on its own is not ended
// again, as Silences no longer lists it). The alerts it muted are
// notified at the next evaluation if they still fire.
func (e *Evaluator) Expire(id string) bool {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	// One that ended on its own is gone, as Silences shows it, whether or
	// not an evaluation has forgotten it yet.
	e.pruneSilences(now)
	i := slices.IndexFunc(e.silences, func(s Silence) bool { return s.ID == id })
	if i < 0 {
		return false
	}
	e.silences = slices.Delete(e.silences, i, i+1)
	e.broadcast()
	return true
}

// Silences returns the silences not yet ended, in the order they were
// made.
func (e *Evaluator) Silences() []Silence {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pruneSilences(time.Now())
	out := slices.Clone(e.silences)
	for i := range out {
		out[i].Matchers = slices.Clone(out[i].Matchers)
	}
	return out
}

// silenced reports whether a silence in force at now matches labels; e.mu
// is held.
func (e *Evaluator) silenced(labels map[string]string, now time.Time) bool {
	for i := range e.silences {
		if e.silences[i].activeAt(now) && e.silences[i].matches(labels) {
			return true
		}
	}
	return false
}

// pruneSilences forgets the silences ended by now; e.mu is held.
func (e *Evaluator) pruneSilences(now time.Time) {
	e.silences = slices.DeleteFunc(e.silences, func(s Silence) bool { return !now.Before(s.EndsAt) })
}
