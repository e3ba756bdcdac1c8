package jidoka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/taipattern/taikit/internal/deadlines"
)

// ErrTimeout matches (errors.Is) every *TimeoutError: a call ran past the
// deadline a Timeout gave it.
var ErrTimeout = errors.New("jidoka: timed out")

// TimeoutError is the error of a call that a Timeout cut short: the
// deadline passed and the call returned an error. It matches ErrTimeout
// and context.DeadlineExceeded, and unwraps to the call's own error too.
type TimeoutError struct {
	Timeout  string        // the Timeout's Name
	Duration time.Duration // the time the call was given
	Err      error         // what the call returned
}

// Error names the timeout, its duration and the call's error.
func (e *TimeoutError) Error() string {
	msg := "jidoka: timeout"
	if e.Timeout != "" {
		msg += " " + strconv.Quote(e.Timeout)
	}
	msg += ": call timed out after " + e.Duration.String()
	if e.Err != nil && !errors.Is(e.Err, context.DeadlineExceeded) {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrTimeout or context.DeadlineExceeded.
func (e *TimeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}

// Unwrap returns the call's error.
func (e *TimeoutError) Unwrap() error { return e.Err }

// TimeoutOptions configures a Timeout.
type TimeoutOptions struct {
	// Name names the timeout in errors and tai hooks.
	Name string
	// Duration is how long a call may run. It must be positive.
	Duration time.Duration
}

// Timeout is a tai.Guard that gives each call a deadline: the context
// passed to the call ends Duration after the call starts (or at the
// caller's own deadline, if that comes first), and ends when the call
// returns in any case, as a context.WithTimeout and its deferred cancel
// would.
//
// Do waits for the call to return, as every guard must: a call that
// ignores its context runs on past the deadline. If the deadline passed
// and the call returned an error, Do returns a *TimeoutError (errors.Is
// ErrTimeout and context.DeadlineExceeded) wrapping it; a call that
// returned nil succeeded, late or not. When the caller's own context
// ends first, the call's error is returned as it is.
//
// The deadline is kept on the monotonic clock, as time.Since measures:
// a step of the wall clock does not move it. The context's Deadline reads
// as context.WithTimeout's would, by the wall clock too: the wall clock as
// it reads now plus the time left, even when the wall clock was set (or
// the machine slept) since the Timeout was made.
//
// A Timeout allocates one context per call, and sets no timer per call:
// every call gets a context of its own, never reused, since a call may hand
// it on to work that outlives it (context.WithoutCancel and
// context.WithValue keep their parent without asking it anything). A
// context that is to be woken at its deadline waits in one of a few lists
// the Timeout keeps, soonest deadline first, each with one runtime timer
// set for its first deadline; since every call of a Timeout is given the
// same Duration, a context joins its list at the end nearly always, and
// the timer, once set, is left for the next call when the list empties.
// A call that returns takes its context out of the list: nothing of the
// Timeout holds it afterwards. When the caller's context can never end
// (its Done is nil, as context.Background's), the context joins a list
// only once the call, or a context derived from it, asks for Done: a call
// that never does cannot be woken at the deadline, and its context's Err
// reads the clock instead. Make one with NewTimeout; the zero Timeout is
// not usable: its Duration is 0, and Do returns an error saying it was not
// made by NewTimeout, without calling fn.
type Timeout struct {
	name  string
	d     time.Duration
	epoch time.Time // deadlines are kept as monotonic time since epoch
	wall  wallClock // makes times of them for Deadline
	// armed keeps the contexts to be woken at their deadlines.
	armed *deadlines.Set[deadlineCtx]
}

// NewTimeout returns a Timeout configured by opts, or an error naming the
// invalid field.
func NewTimeout(opts TimeoutOptions) (*Timeout, error) {
	if opts.Duration <= 0 {
		return nil, fmt.Errorf("jidoka: TimeoutOptions.Duration is %v, want > 0", opts.Duration)
	}
	t := &Timeout{name: opts.Name, d: opts.Duration, epoch: time.Now()}
	t.armed = deadlines.New(t.epoch, t.d, runtime.GOMAXPROCS(0), ctxLinks, (*deadlineCtx).expire)
	return t, nil
}

// ctxLinks returns c's place among its Timeout's armed contexts.
func ctxLinks(c *deadlineCtx) *deadlines.Links[deadlineCtx] { return &c.links }

// errTimeoutNotMade is the error of Do on a Timeout that NewTimeout did not
// make: it has no Duration to bound a call by.
var errTimeoutNotMade = errors.New("jidoka: Timeout not made by NewTimeout")

// Name returns TimeoutOptions.Name.
func (t *Timeout) Name() string { return t.name }

// Duration returns TimeoutOptions.Duration.
func (t *Timeout) Duration() time.Duration { return t.d }

// Do calls fn with a context that ends after the Timeout's Duration; see
// Timeout. When ctx is already done it returns ctx.Err() without calling
// fn.
func (t *Timeout) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.armed == nil {
		return errTimeoutNotMade
	}
	// time.Since reads only the monotonic clock, about half the cost of
	// time.Now; Deadline makes a time.Time of it when asked.
	now := time.Since(t.epoch)
	deadline := now + t.d
	if deadline < 0 { // too long to add: the farthest time there is
		deadline = math.MaxInt64
	}
	// time.Until, not pd.Sub(t.epoch): a deadline made from the wall clock
	// alone (time.Unix, a timestamp received) is then compared with the
	// wall clock as it reads now, not as it read when t was made.
	if pd, ok := ctx.Deadline(); ok && time.Until(pd) <= deadline-now {
		// The caller's deadline comes first: it is the one that counts,
		// and its expiry is the caller's, not this Timeout's. The call
		// still gets a context of its own, with no timer, that ends when
		// it returns.
		c := &deadlineCtx{Context: ctx, to: t, inherited: true}
		err := t.call(c, fn)
		c.end()
		return err
	}
	c := &deadlineCtx{Context: ctx, to: t}
	c.links.At = deadline
	if canEnd(ctx) {
		// Which of the caller's end and the deadline came first can be
		// told only as they happen: c is ended at the deadline.
		c.armed = true
		t.armed.Add(c, now)
	}
	err := t.call(c, fn)
	expired := c.end()
	// The timer's function may not have run yet when the deadline has
	// passed, and an error the deadline caused (a connection's, set from
	// ctx.Deadline) may come first: the clock tells.
	if err != nil && (expired || c.Context.Err() == nil && time.Since(t.epoch) >= deadline) {
		err = &TimeoutError{Timeout: t.name, Duration: t.d, Err: err}
	}
	return err
}

// canEnd reports whether ctx can end: a context whose Done is nil never
// does, and the one a Timeout gives a call ends at its deadline (asking it
// for Done would arm it).
func canEnd(ctx context.Context) bool {
	if _, ok := ctx.(*deadlineCtx); ok {
		return true
	}
	return ctx.Done() != nil
}

// call runs fn; a panic in fn still ends c before it goes on, so that it
// leaves its Timeout's list and the stdlib goroutines watching c (if any)
// are released.
func (t *Timeout) call(c *deadlineCtx, fn func(context.Context) error) (err error) {
	ok := false
	defer func() {
		if !ok {
			c.end()
		}
	}()
	err = fn(c)
	ok = true
	return err
}

// deadlineCtx is the context a Timeout gives a call: the caller's context
// with a deadline. Its Done channel is made only when asked for.
//
// When the caller's context can never end, c is not armed (put in one of
// its Timeout's lists, to be ended at its deadline) until Done or
// AfterFunc is asked for: a call that asks for neither cannot be woken at
// the deadline, and Err, and the end of the call, read the clock instead.
// When the caller's context can end, c is armed as the call starts, so
// that the first of the two to end is known (see Timeout.Do).
type deadlineCtx struct {
	context.Context          // the caller's
	to              *Timeout // the Timeout that made it
	// links is c's place among the Timeout's armed contexts; links.At,
	// set when c is made, is its deadline, since to.epoch.
	links deadlines.Links[deadlineCtx]
	// inherited, set when c is made, says the deadline is the caller's
	// and c is never armed.
	inherited bool

	expired bool // it ended at its deadline; the fields from here on are mu's
	// callers says it ended because the caller's context did: its cause
	// is then the caller's (see Value).
	callers bool
	armed   bool // c was put in a list; it never is again
	mu      sync.Mutex
	done    chan struct{} // made by Done, closed when the context ends
	err     error         // set when the context ends
	stop    func() bool   // stops the watch on the caller's context
	afters  *afterFunc    // functions of AfterFunc, to run when it ends
}

// afterFunc is a function given to a deadlineCtx's AfterFunc, in its list.
type afterFunc struct {
	f    func()
	next *afterFunc
}

// closedChan is the Done of a context that had ended before Done was asked
// for.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if c.inherited {
		return c.Context.Deadline()
	}
	return c.to.wall.at(c.to.epoch, c.links.At), true
}

func (c *deadlineCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.armLocked()
	c.seeCallerEndLocked()
	if c.err != nil {
		c.done = closedChan
		return c.done
	}
	c.done = make(chan struct{})
	c.watchLocked()
	return c.done
}

// armLocked arms c, to be ended at its deadline, or ends c at once if the
// deadline has passed, unless c has ended or is armed.
func (c *deadlineCtx) armLocked() {
	if c.err != nil || c.armed || c.inherited {
		return
	}
	now := time.Since(c.to.epoch)
	if c.links.At <= now {
		c.cancelLocked(context.DeadlineExceeded, true)
		return
	}
	c.armed = true
	c.to.armed.Add(c, now)
}

// expiredLocked reports whether c, not armed, has reached its deadline.
func (c *deadlineCtx) expiredLocked() bool {
	return !c.armed && !c.inherited && time.Since(c.to.epoch) >= c.links.At
}

// watchLocked makes the end of the caller's context end c, once.
func (c *deadlineCtx) watchLocked() {
	if c.stop == nil && c.Context.Done() != nil {
		parent := c.Context
		c.stop = context.AfterFunc(parent, func() { c.cancel(parent.Err(), false) })
	}
}

// AfterFunc arranges to call f on a goroutine of its own when c ends, as
// context.AfterFunc does. The context package uses it for the contexts
// derived from c (context.WithCancel(c), an HTTP request's), which then
// need no goroutine of their own to learn that c ended.
func (c *deadlineCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armLocked()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	c.watchLocked()
	a := &afterFunc{f: f, next: c.afters}
	c.afters = a
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for p := &c.afters; *p != nil; p = &(*p).next {
			if *p == a {
				*p = a.next
				return true
			}
		}
		return false
	}
}

// Err returns nil until the context ends, and why it ended from then on.
// Once it is not nil Done is closed, as the context.Context contract has
// it: a caller's context that ended before its watch told c ends c here,
// as in Done.
func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.expiredLocked() {
		c.cancelLocked(context.DeadlineExceeded, true)
	}
	c.seeCallerEndLocked()
	return c.err
}

// seeCallerEndLocked ends c if the caller's context ended before its
// watch told c, and runs what AfterFunc arranged, which the watch, seeing
// c ended, will not.
func (c *deadlineCtx) seeCallerEndLocked() {
	if c.err != nil {
		return
	}
	if err := c.Context.Err(); err != nil {
		c.cancelLocked(err, false)
	}
}

// Value looks key up in the caller's context. context.Cause asks it for
// the nearest context.WithCancel to learn why the context ended: once it
// ended of itself (its deadline, the call's return) rather than as the
// caller's did, there is none, and Cause gives Err, as for a
// context.WithTimeout's; a later end of the caller's context does not
// change it.
func (c *deadlineCtx) Value(key any) any {
	if key == cancelCtxKey && cancelCtxKey != nil {
		c.mu.Lock()
		own := c.err != nil && !c.callers
		c.mu.Unlock()
		if own {
			return nil
		}
	}
	return c.Context.Value(key)
}

// cancelCtxKey is the key with which context.Cause asks a context for its
// nearest context.WithCancel; the context package does not export it, and
// Cause tells it to the first context that is asked. It is nil should
// Cause ask for something else: a context.WithCancel answers it with
// itself.
var cancelCtxKey = func() any {
	p := &keyProbe{Context: context.Background()}
	_ = context.Cause(p)
	cc, cancel := context.WithCancel(context.Background())
	defer cancel()
	if p.key == nil || cc.Value(p.key) != cc {
		return nil
	}
	return p.key
}()

// keyProbe is an ended context that keeps the first key it is asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Err() error { return context.Canceled }

func (p *keyProbe) Value(key any) any {
	if p.key == nil {
		p.key = key
	}
	return nil
}

// expire ends c at its deadline: its list's timer calls it.
func (c *deadlineCtx) expire() { c.cancel(context.DeadlineExceeded, true) }

// cancel ends the context with err, if it has not ended.
func (c *deadlineCtx) cancel(err error, expired bool) {
	c.mu.Lock()
	c.cancelLocked(err, expired)
	c.mu.Unlock()
}

func (c *deadlineCtx) cancelLocked(err error, expired bool) {
	if c.err != nil {
		return
	}
	if perr := c.Context.Err(); perr != nil {
		// The caller's context ended first; its error wins.
		err, expired = perr, false
		c.callers = true
	}
	c.err, c.expired = err, expired
	if c.done != nil && c.done != closedChan {
		close(c.done)
	}
	for a := c.afters; a != nil; a = a.next {
		go a.f()
	}
	c.afters = nil
}

// end ends the context when the call has returned, as a deferred cancel
// does, takes it out of its Timeout's list, and reports whether it had
// expired.
func (c *deadlineCtx) end() (expired bool) {
	c.mu.Lock()
	if c.err == nil && c.expiredLocked() {
		c.cancelLocked(context.DeadlineExceeded, true)
	}
	c.cancelLocked(context.Canceled, false)
	expired = c.expired
	stop, armed := c.stop, c.armed
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	if armed {
		c.to.armed.Remove(c)
	}
	return expired
}

func (c *deadlineCtx) String() string { return "jidoka.Timeout context" }
