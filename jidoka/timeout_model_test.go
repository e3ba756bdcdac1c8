package jidoka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/jidoka"
)

// The context a Timeout gives a call against its model, the standard
// library's: context.WithDeadline(parent, the same deadline), cancelled as
// the call returns. Random sequences of questions to the context and to
// contexts derived from it, ends of the caller's context and moves of the
// clock, in the call and after it, must find the two alike in all they
// show: Err, Done, Deadline, Value, Cause, the functions given to
// AfterFunc and what stopping them reports, and Do's error.

const (
	modelTimeout = 10 * time.Second
	modelEarlier = 5 * time.Second  // a caller's deadline before the Timeout's
	modelLater   = 20 * time.Second // and one after it
)

// The kinds of caller's context.
const (
	parentBackground = iota
	parentCancelable // context.WithCancelCause
	parentEarlier    // context.WithTimeout, modelEarlier
	parentLater      // context.WithTimeout, modelLater
	parentCustom     // a type of its own, without an AfterFunc method
	parentTimeout    // another Timeout's context, modelEarlier or modelLater
	parentKinds
)

// The operations on the contexts.
const (
	opErr = iota
	opDone
	opDeadline
	opValue
	opCause
	opWithCancel
	opWithTimeout
	opWithValue
	opWithoutCancel
	opAfterFunc
	opStop       // stops an AfterFunc
	opCancel     // cancels a context derived with WithCancel or WithTimeout
	opCancelCall // the caller's context ends
	opSleep
	opReturn // the call returns; later operations run after it
	opKinds
)

type timeoutOp struct{ kind, a, b int }

// The instants, since the call began, a sleep may go to.
var modelInstants = []time.Duration{
	time.Second, modelEarlier - 1, modelEarlier, modelTimeout - 1, modelTimeout, modelTimeout + 1,
	modelLater, modelLater + time.Second,
}

// The durations of a context.WithTimeout derived from the call's.
var modelChildTimeouts = []time.Duration{time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second, 30 * time.Second}

type (
	modelKey      struct{}
	modelChildKey struct{}
)

var (
	errModelCause = errors.New("the caller's cause")
	errModelCall  = errors.New("the call failed")
)

// customParent is a caller's context of a type of its own: the context
// package watches it with a goroutine.
type customParent struct {
	context.Context
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func newCustomParent() *customParent {
	return &customParent{Context: context.Background(), done: make(chan struct{})}
}

func (p *customParent) Done() <-chan struct{} { return p.done }

func (p *customParent) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *customParent) cancel() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = context.Canceled
		close(p.done)
	}
}

// ctxPair is a context derived from the Timeout's and the same one derived
// from the model's.
type ctxPair struct {
	name                string
	real, model         context.Context
	doneReal, doneModel <-chan struct{} // once asked for
	cancelReal          context.CancelFunc
	cancelModel         context.CancelFunc
	cancelable          bool // Done may be asked without asking the Timeout's
}

// afterPair is a function given to AfterFunc of both.
type afterPair struct {
	name                string
	stopReal, stopModel func() bool
	ranReal, ranModel   atomic.Int32
}

type timeoutModelRun struct {
	start   time.Time
	pairs   []*ctxPair
	afters  []*afterPair
	failure atomic.Pointer[string]
}

func (m *timeoutModelRun) failf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	m.failure.CompareAndSwap(nil, &msg)
}

func (m *timeoutModelRun) failed() bool { return m.failure.Load() != nil }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// check compares what can be seen without asking the Timeout's context
// anything it could act on: the Done channels asked for, and the functions
// given to AfterFunc.
func (m *timeoutModelRun) check(when string) {
	for _, p := range m.pairs {
		if p.doneReal == nil {
			continue
		}
		real, model := isClosed(p.doneReal), isClosed(p.doneModel)
		if real != model {
			m.failf("%s: %s: Done closed %v, want %v", when, p.name, real, model)
		}
		if real && p.real.Err() == nil {
			m.failf("%s: %s: Done closed and Err nil", when, p.name)
		}
	}
	for _, a := range m.afters {
		real, model := a.ranReal.Load(), a.ranModel.Load()
		if real != model {
			m.failf("%s: %s: ran %d times, want %d", when, a.name, real, model)
		}
	}
}

func (m *timeoutModelRun) pick(i int) *ctxPair { return m.pairs[i%len(m.pairs)] }

// apply runs op on both; it reports whether the call is to return.
func (m *timeoutModelRun) apply(op timeoutOp, cancelCall func()) (ret bool) {
	p := m.pick(op.a)
	when := fmt.Sprintf("at %v, op %d on %s", time.Since(m.start), op.kind, p.name)
	switch op.kind {
	case opErr:
		real, model := p.real.Err(), p.model.Err()
		if real != model {
			m.failf("%s: Err %v, want %v", when, real, model)
		}
		if real != nil && p.doneReal != nil && !isClosed(p.doneReal) {
			m.failf("%s: Err %v while Done is open", when, real)
		}
	case opDone:
		d := p.real.Done()
		if p.doneReal != nil && d != p.doneReal {
			m.failf("%s: Done gave another channel", when)
		}
		p.doneReal, p.doneModel = d, p.model.Done()
		if (d == nil) != (p.doneModel == nil) {
			m.failf("%s: Done nil %v, want %v", when, d == nil, p.doneModel == nil)
			p.doneReal = nil
			break
		}
		if d != nil && isClosed(d) && p.real.Err() == nil {
			m.failf("%s: Done closed and Err nil", when)
		}
	case opDeadline:
		dr, okr := p.real.Deadline()
		dm, okm := p.model.Deadline()
		if okr != okm || !dr.Equal(dm) {
			m.failf("%s: Deadline %v %v, want %v %v", when, dr, okr, dm, okm)
		}
	case opValue:
		for _, k := range []any{modelKey{}, modelChildKey{}} {
			if real, model := p.real.Value(k), p.model.Value(k); real != model {
				m.failf("%s: Value(%T) %v, want %v", when, k, real, model)
			}
		}
	case opCause:
		if real, model := context.Cause(p.real), context.Cause(p.model); real != model {
			m.failf("%s: Cause %v, want %v", when, real, model)
		}
	case opWithCancel:
		cr, cancelR := context.WithCancel(p.real)
		cm, cancelM := context.WithCancel(p.model)
		m.pairs = append(m.pairs, &ctxPair{name: p.name + "/cancel", real: cr, model: cm, cancelReal: cancelR, cancelModel: cancelM, cancelable: true})
	case opWithTimeout:
		d := modelChildTimeouts[op.b%len(modelChildTimeouts)]
		cr, cancelR := context.WithTimeout(p.real, d)
		cm, cancelM := context.WithTimeout(p.model, d)
		m.pairs = append(m.pairs, &ctxPair{name: fmt.Sprintf("%s/timeout(%v)", p.name, d), real: cr, model: cm, cancelReal: cancelR, cancelModel: cancelM, cancelable: true})
	case opWithValue:
		m.pairs = append(m.pairs, &ctxPair{name: p.name + "/value",
			real: context.WithValue(p.real, modelChildKey{}, p.name), model: context.WithValue(p.model, modelChildKey{}, p.name)})
	case opWithoutCancel:
		m.pairs = append(m.pairs, &ctxPair{name: p.name + "/without", real: context.WithoutCancel(p.real), model: context.WithoutCancel(p.model)})
	case opAfterFunc:
		a := &afterPair{name: fmt.Sprintf("AfterFunc %d of %s", len(m.afters), p.name)}
		real, model := p.real, p.model
		a.stopReal = context.AfterFunc(real, func() {
			if real.Err() == nil {
				m.failf("%s ran before its context ended", a.name)
			}
			a.ranReal.Add(1)
		})
		a.stopModel = context.AfterFunc(model, func() { a.ranModel.Add(1) })
		m.afters = append(m.afters, a)
	case opStop:
		if len(m.afters) == 0 {
			break
		}
		a := m.afters[op.b%len(m.afters)]
		if real, model := a.stopReal(), a.stopModel(); real != model {
			m.failf("%s: stop of %s gave %v, want %v", when, a.name, real, model)
		}
	case opCancel:
		if p.cancelReal != nil {
			p.cancelReal()
			p.cancelModel()
		}
	case opCancelCall:
		cancelCall()
	case opSleep:
		if op.b < len(modelInstants) {
			if left := modelInstants[op.b] - time.Since(m.start); left > 0 {
				time.Sleep(left)
			}
		} else {
			time.Sleep([]time.Duration{time.Nanosecond, time.Second, 2500 * time.Millisecond}[op.b%3])
		}
	case opReturn:
		return true
	}
	synctest.Wait()
	m.check(when)
	return false
}

// timeoutScenario is one call: its caller's context, what it returns, and
// the operations in it and after it.
type timeoutScenario struct {
	kind      int           // of the caller's context
	outer     time.Duration // of a parentTimeout
	withValue bool          // the caller's context carries a value
	cause     bool          // a parentCancelable ends with a cause of its own
	returns   int           // the call returns nil, an error, or ctx.Err()
	ops       []timeoutOp
}

func TestTimeoutContextModel(t *testing.T) {
	scenario := rapid.Custom(func(t *rapid.T) timeoutScenario {
		return timeoutScenario{
			kind:      rapid.IntRange(0, parentKinds-1).Draw(t, "parent"),
			outer:     []time.Duration{modelEarlier, modelLater}[rapid.IntRange(0, 1).Draw(t, "outer")],
			withValue: rapid.Bool().Draw(t, "withValue"),
			cause:     rapid.Bool().Draw(t, "cause"),
			returns:   rapid.IntRange(0, 2).Draw(t, "returns"),
			ops: rapid.SliceOfN(rapid.Custom(func(t *rapid.T) timeoutOp {
				return timeoutOp{
					kind: rapid.IntRange(0, opKinds-1).Draw(t, "kind"),
					a:    rapid.IntRange(0, 7).Draw(t, "a"),
					b:    rapid.IntRange(0, 10).Draw(t, "b"),
				}
			}), 0, 40).Draw(t, "ops"),
		}
	})
	rapid.Check(t, func(rt *rapid.T) {
		// Calls one after another, on one Timeout: the timer a call left
		// set serves the next.
		scenarios := rapid.SliceOfN(scenario, 1, 3).Draw(rt, "calls")
		var failure string
		synctest.Test(t, func(t *testing.T) {
			to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Name: "model", Duration: modelTimeout})
			if err != nil {
				t.Fatal(err)
			}
			for i, sc := range scenarios {
				if failure = runTimeoutScenario(t, to, sc); failure != "" {
					failure = fmt.Sprintf("call %d: %s", i, failure)
					return
				}
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}

// runTimeoutScenario makes the call of sc with to and with its model, and
// returns the first difference between them, or "".
func runTimeoutScenario(t *testing.T, to *jidoka.Timeout, sc timeoutScenario) string {
	m := &timeoutModelRun{start: time.Now()}
	kind, ops := sc.kind, sc.ops
	parentDeadline := time.Duration(0) // none
	var parentR, parentM context.Context
	cancelCall := func() {}
	switch kind {
	case parentBackground, parentTimeout:
		parentR, parentM = context.Background(), context.Background()
	case parentCancelable:
		var cr, cm context.CancelCauseFunc
		parentR, cr = context.WithCancelCause(context.Background())
		parentM, cm = context.WithCancelCause(context.Background())
		var c error
		if sc.cause {
			c = errModelCause
		}
		cancelCall = func() { cr(c); cm(c) }
	case parentEarlier, parentLater:
		parentDeadline = modelEarlier
		if kind == parentLater {
			parentDeadline = modelLater
		}
		var cr, cm context.CancelFunc
		parentR, cr = context.WithTimeout(context.Background(), parentDeadline)
		parentM, cm = context.WithTimeout(context.Background(), parentDeadline)
		cancelCall = func() { cr(); cm() }
	case parentCustom:
		pr, pm := newCustomParent(), newCustomParent()
		parentR, parentM = pr, pm
		cancelCall = func() { pr.cancel(); pm.cancel() }
	}
	if sc.withValue {
		parentR = context.WithValue(parentR, modelKey{}, "caller")
		parentM = context.WithValue(parentM, modelKey{}, "caller")
	}

	run := func(parentR, parentM context.Context) error {
		ctxM, cancelM := context.WithDeadline(parentM, m.start.Add(modelTimeout))
		var retR, retM error
		var errAtReturn error // the model's Err as the call returned
		returned := false
		errR := to.Do(parentR, func(ctx context.Context) error {
			m.pairs = append(m.pairs, &ctxPair{name: "call", real: ctx, model: ctxM})
			for len(ops) > 0 && !m.failed() {
				op := ops[0]
				ops = ops[1:]
				if m.apply(op, cancelCall) {
					break
				}
			}
			switch sc.returns {
			case 1:
				retR, retM = errModelCall, errModelCall
			case 2:
				retR, retM = ctx.Err(), ctxM.Err()
			}
			errAtReturn = ctxM.Err()
			returned = true
			return retR
		})
		cancelM()
		if retR != retM {
			m.failf("the call returned %v, the model's %v", retR, retM)
		}
		if !returned {
			m.failf("the call was not made")
			return errR
		}
		synctest.Wait()
		m.check("as the call returned")
		ours := parentDeadline == 0 || parentDeadline > modelTimeout
		if kind == parentTimeout {
			ours = sc.outer > modelTimeout
		}
		switch {
		case retR == nil:
			if errR != nil {
				m.failf("Do returned %v for a call that returned nil", errR)
			}
		case errAtReturn == context.DeadlineExceeded && ours:
			var te *jidoka.TimeoutError
			if !errors.As(errR, &te) || te.Err != retR || te.Duration != modelTimeout {
				m.failf("Do returned %v, want a TimeoutError of %v (the model's Err %v)", errR, retR, errAtReturn)
			}
		default:
			if errR != retR {
				m.failf("Do returned %v, want %v (the model's Err %v)", errR, retR, errAtReturn)
			}
		}
		for _, op := range ops {
			if m.failed() {
				break
			}
			m.apply(op, cancelCall)
		}
		return errR
	}

	if kind == parentTimeout {
		outerTo, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Name: "outer", Duration: sc.outer})
		if err != nil {
			t.Fatal(err)
		}
		outerM, cancelOuterM := context.WithDeadline(parentM, m.start.Add(sc.outer))
		_ = outerTo.Do(parentR, func(ctx context.Context) error { return run(ctx, outerM) })
		cancelOuterM()
	} else {
		run(parentR, parentM)
	}

	cancelCall()
	for _, p := range m.pairs {
		if p.cancelReal != nil {
			p.cancelReal()
			p.cancelModel()
		}
	}
	synctest.Wait()
	m.check("at the end")
	for _, a := range m.afters {
		if n := a.ranReal.Load(); n > 1 {
			m.failf("%s ran %d times", a.name, n)
		}
	}
	if f := m.failure.Load(); f != nil {
		return *f
	}
	return ""
}
