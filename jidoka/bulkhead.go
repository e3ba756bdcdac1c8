package jidoka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/tai"
)

// ErrBulkheadFull matches (errors.Is) every *BulkheadFullError.
var ErrBulkheadFull = errors.New("jidoka: bulkhead full")

// BulkheadFullError is the rejection of a Bulkhead: every slot was taken
// and the call could not wait for one (no room in the queue), or waited in
// vain (its MaxWait ran out, or its context ended). One value is made per
// Bulkhead and reason, and returned to every call refused for that reason,
// so a rejection costs no allocation; treat it as read-only.
type BulkheadFullError struct {
	Bulkhead string // the bulkhead's Name
	Limit    int    // BulkheadOptions.MaxConcurrent
	// Waited is true when the call queued for a slot and its MaxWait ran
	// out or its context ended, false when it was refused at once.
	Waited bool
	// Err is the error of the call's context when it ended while the call
	// waited (context.Canceled or context.DeadlineExceeded), and nil
	// otherwise. Unwrap returns it, so that errors.Is finds it too.
	Err error

	retryAfter time.Duration
}

// Error names the bulkhead and its limit, says whether the call waited,
// and why the wait ended when its context ended it.
func (e *BulkheadFullError) Error() string {
	msg := "jidoka: bulkhead"
	if e.Bulkhead != "" {
		msg += " " + strconv.Quote(e.Bulkhead)
	}
	msg += " is full (" + strconv.Itoa(e.Limit) + " calls running)"
	if e.Waited {
		msg += ", no slot freed in time"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrBulkheadFull.
func (e *BulkheadFullError) Is(target error) bool { return target == ErrBulkheadFull }

// Unwrap returns Err: the context's error when it ended the wait.
func (e *BulkheadFullError) Unwrap() error { return e.Err }

// RetryAfter returns BulkheadOptions.RetryAfter, the wait a refused caller
// is told to take (0 when none was set). RetryAfter and tai.RetryAfter find
// it.
func (e *BulkheadFullError) RetryAfter() time.Duration { return e.retryAfter }

// Limits of BulkheadOptions.
const (
	MaxBulkheadConcurrent = 1 << 30
	MaxBulkheadWaiting    = 1 << 20
)

// BulkheadOptions configures a Bulkhead.
type BulkheadOptions struct {
	// Name names the bulkhead in errors and tai hooks.
	Name string
	// MaxConcurrent is how many calls may run at once. It must be in
	// [1, MaxBulkheadConcurrent].
	MaxConcurrent int
	// MaxWaiting is how many calls may wait for a slot when all are
	// taken; the calls beyond it are refused at once. Zero: none waits.
	MaxWaiting int
	// MaxWait is how long a waiting call waits before it is refused. Zero
	// means until its context ends. It needs MaxWaiting: a MaxWait with
	// MaxWaiting 0, which no call would wait for, is refused.
	MaxWait time.Duration
	// RetryAfter is the hint a refusal carries (BulkheadFullError's
	// RetryAfter): about how long a call holds a slot is a good value.
	// Zero: no hint.
	RetryAfter time.Duration
}

// Bulkhead is a tai.TwoStepGuard that caps how many calls run at once, so
// that one slow dependency cannot take every goroutine, connection or
// thread of a service with it. A call takes a slot (Allow) and gives it
// back when it ends (done). When every slot is taken a call waits in line
// — first come, first served — if MaxWaiting allows it, for at most
// MaxWait; otherwise, or when its wait runs out, it is refused with a
// *BulkheadFullError (errors.Is ErrBulkheadFull, with the RetryAfter hint
// of the options). A call is refused at once only when every slot is
// taken and the line is full at the same moment: a call that arrives
// while a freed slot is on its way to the first in line waits in the
// place that one leaves. While calls wait, a newcomer does not take a
// freed slot ahead of them: the slot goes to the first in line, and the
// newcomer waits behind them, or is refused when the line is full. A
// freed slot passes over a waiting call whose context has ended, even one
// that has not returned yet, and goes to the next in line (or stays
// free), rather than be held by a call that will not run; until then such
// a call keeps its place in line. A waiting call whose context ends is
// refused too, with a *BulkheadFullError that wraps ctx.Err(), so that
// errors.Is finds context.Canceled or context.DeadlineExceeded as well as
// ErrBulkheadFull: the call never reached the dependency, and a Breaker
// around the bulkhead does not count it, whatever ended the wait (a
// Timeout's deadline, say, during a burst the line absorbs).
//
// Taking and giving back a free slot is a compare-and-swap on one counter
// each (repeated only when another call changed it meanwhile), with no
// lock and no allocation; a call that has to wait takes a lock and
// allocates its place in line. Make one with NewBulkhead; the zero
// Bulkhead is not usable: it has no slot, and Allow and Do return an
// error saying it was not made by NewBulkhead.
type Bulkhead struct {
	name     string
	limit    int64
	maxWait  int64
	waitFor  time.Duration
	full     *BulkheadFullError // refused at once
	timedOut *BulkheadFullError // waited MaxWait in vain
	canceled *BulkheadFullError // waited until ctx was canceled
	deadline *BulkheadFullError // waited until ctx's deadline passed
	doneFn   func(error)        // b.release, bound once

	running atomic.Int64 // slots taken
	waiting atomic.Int64 // calls in line

	mu   sync.Mutex
	line []*bulkheadWaiter
}

type bulkheadWaiter struct {
	ctx     context.Context // the call's: one that has ended is passed over
	ready   chan struct{}   // closed when a slot was taken for it
	granted bool            // under Bulkhead.mu
}

// NewBulkhead returns a Bulkhead configured by opts, or an error naming the
// first invalid field and its value.
func NewBulkhead(opts BulkheadOptions) (*Bulkhead, error) {
	switch {
	case opts.MaxConcurrent < 1 || opts.MaxConcurrent > MaxBulkheadConcurrent:
		return nil, fmt.Errorf("jidoka: BulkheadOptions.MaxConcurrent is %d, want a value in [1, %d]", opts.MaxConcurrent, MaxBulkheadConcurrent)
	case opts.MaxWaiting < 0 || opts.MaxWaiting > MaxBulkheadWaiting:
		return nil, fmt.Errorf("jidoka: BulkheadOptions.MaxWaiting is %d, want a value in [0, %d]", opts.MaxWaiting, MaxBulkheadWaiting)
	case opts.MaxWait < 0:
		return nil, fmt.Errorf("jidoka: BulkheadOptions.MaxWait is %v, want >= 0", opts.MaxWait)
	case opts.MaxWait > 0 && opts.MaxWaiting == 0:
		return nil, fmt.Errorf("jidoka: BulkheadOptions.MaxWait is %v, but MaxWaiting is 0: no call waits; set MaxWaiting to let calls wait in line", opts.MaxWait)
	case opts.RetryAfter < 0:
		return nil, fmt.Errorf("jidoka: BulkheadOptions.RetryAfter is %v, want >= 0", opts.RetryAfter)
	}
	b := &Bulkhead{
		name: opts.Name, limit: int64(opts.MaxConcurrent),
		maxWait: int64(opts.MaxWaiting), waitFor: opts.MaxWait,
		full:     &BulkheadFullError{Bulkhead: opts.Name, Limit: opts.MaxConcurrent, retryAfter: opts.RetryAfter},
		timedOut: &BulkheadFullError{Bulkhead: opts.Name, Limit: opts.MaxConcurrent, Waited: true, retryAfter: opts.RetryAfter},
		canceled: &BulkheadFullError{Bulkhead: opts.Name, Limit: opts.MaxConcurrent, Waited: true, Err: context.Canceled, retryAfter: opts.RetryAfter},
		deadline: &BulkheadFullError{Bulkhead: opts.Name, Limit: opts.MaxConcurrent, Waited: true, Err: context.DeadlineExceeded, retryAfter: opts.RetryAfter},
	}
	b.doneFn = b.release
	return b, nil
}

var _ tai.TwoStepGuard = (*Bulkhead)(nil)

// Name returns BulkheadOptions.Name.
func (b *Bulkhead) Name() string { return b.name }

// Running returns how many calls hold a slot now.
func (b *Bulkhead) Running() int { return int(b.running.Load()) }

// Waiting returns how many calls wait in line for a slot now.
func (b *Bulkhead) Waiting() int { return int(b.waiting.Load()) }

// Do runs fn in a slot; see Bulkhead. It returns fn's error, or the
// refusal without calling fn. When ctx is already done it returns
// ctx.Err() without calling fn. A panic in fn gives the slot back and is
// passed on.
func (b *Bulkhead) Do(ctx context.Context, fn func(context.Context) error) error {
	return tai.DoTwoStep(ctx, b, fn)
}

// Allow takes a slot, waiting for one if the options allow it, and returns
// done, which gives it back. It returns a *BulkheadFullError, one that
// wraps ctx.Err() when ctx ends while it waits, or ctx.Err() itself when
// ctx has ended before the call.
//
// Call done exactly once: Do and a tai pipeline do. The bulkhead cannot
// always tell a second call of one done from the call of another: done is
// one function shared by every call, so that a slot costs no allocation.
// A second call made while no other call holds a slot gives nothing back.
// One made while others hold slots gives back a slot that was not free:
// one call more than MaxConcurrent may then run at once, until the
// bulkhead is empty again and its count is right once more.
func (b *Bulkhead) Allow(ctx context.Context) (done func(error), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.waiting.Load() == 0 && b.tryAcquire() {
		return b.doneFn, nil
	}
	if b.maxWait == 0 {
		if b.full == nil {
			return nil, errBulkheadNotMade
		}
		return nil, b.full
	}
	return b.wait(ctx)
}

// errBulkheadNotMade is the refusal of a Bulkhead that NewBulkhead did not
// make: it has no slot, and no line to wait in.
var errBulkheadNotMade = errors.New("jidoka: Bulkhead not made by NewBulkhead")

// tryAcquire takes a free slot, if there is one.
func (b *Bulkhead) tryAcquire() bool {
	for {
		n := b.running.Load()
		if n >= b.limit {
			return false
		}
		if b.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// wait queues the call for a slot.
func (b *Bulkhead) wait(ctx context.Context) (func(error), error) {
	b.mu.Lock()
	if int64(len(b.line)) >= b.maxWait {
		// The line looks full, but a slot given back may not have reached
		// it yet: release frees the slot before it takes the lock to hand
		// it on. Hand it on here, so that the first in line leaves with it
		// and this call takes the place it leaves: a call is refused only
		// when every slot is taken and the line is full at the same moment.
		b.grantLocked()
		if int64(len(b.line)) >= b.maxWait {
			b.mu.Unlock()
			return nil, b.full
		}
	}
	w := &bulkheadWaiter{ctx: ctx, ready: make(chan struct{})}
	b.line = append(b.line, w)
	b.waiting.Add(1)
	// A slot given back before this call was in line is found here: a
	// release decrements running before it looks at waiting, and this
	// call increments waiting before it looks at running.
	b.grantLocked()
	b.mu.Unlock()

	var expire <-chan time.Time
	if b.waitFor > 0 {
		t := time.NewTimer(b.waitFor)
		defer t.Stop()
		expire = t.C
	}
	var err error
	select {
	case <-w.ready:
		cerr := ctx.Err()
		if cerr == nil {
			return b.doneFn, nil
		}
		// ctx ended as the slot came, and the wait saw the slot first:
		// the call is refused as if it had seen ctx end, and the slot
		// goes on to the next in line.
		err = b.ended(cerr)
	case <-ctx.Done():
		err = b.ended(ctx.Err())
	case <-expire:
		err = b.timedOut
	}
	b.mu.Lock()
	granted := w.granted
	if !granted {
		b.removeLocked(w)
	}
	b.mu.Unlock()
	if granted {
		if err == b.timedOut {
			// The slot came as the wait ran out: the call takes it,
			// unless its context ended then too.
			cerr := ctx.Err()
			if cerr == nil {
				return b.doneFn, nil
			}
			err = b.ended(cerr)
		}
		b.release(nil)
	}
	return nil, err
}

// ended returns the refusal of a call whose context ended with err while
// it waited.
func (b *Bulkhead) ended(err error) *BulkheadFullError {
	switch err {
	case context.Canceled:
		return b.canceled
	case context.DeadlineExceeded:
		return b.deadline
	}
	// A Context of the caller's own making may end with another error.
	e := *b.canceled
	e.Err = err
	return &e
}

// release gives a slot back, and hands free slots to the calls in line.
// A call that arrives between the two sees calls in line and does not take
// the free slot ahead of them; if the line is full it hands the slot on
// itself, in wait, rather than be refused for want of a place.
func (b *Bulkhead) release(error) {
	b.giveBack()
	if b.waiting.Load() != 0 {
		b.handOn()
	}
}

// giveBack gives a slot back. A count that would go below zero is a second
// call of done: it gives nothing back. The count is never below zero, not
// even for a moment: a call taking a slot then would find one more free
// than MaxConcurrent.
func (b *Bulkhead) giveBack() {
	for {
		n := b.running.Load()
		if n <= 0 || b.running.CompareAndSwap(n, n-1) {
			return
		}
	}
}

// handOn hands free slots to the calls in line.
func (b *Bulkhead) handOn() {
	b.mu.Lock()
	b.grantLocked()
	b.mu.Unlock()
}

// grantLocked takes free slots for the calls in line, first come first.
// A call whose context has ended is leaving without a slot, even if it
// has not seen the end yet: it leaves the line, and the slot goes on to
// the next. Handed to it, the slot would be held by a call that never
// runs until that call gives it back.
func (b *Bulkhead) grantLocked() {
	for len(b.line) > 0 && b.tryAcquire() {
		w := b.line[0]
		b.line[0] = nil
		b.line = b.line[1:]
		b.waiting.Add(-1)
		if w.ctx.Err() != nil {
			b.giveBack()
			continue
		}
		w.granted = true
		close(w.ready)
	}
	if len(b.line) == 0 {
		b.line = nil
	}
}

// removeLocked takes w out of line, if it is still in it: a call whose
// context has ended may have been taken out by grantLocked.
func (b *Bulkhead) removeLocked(w *bulkheadWaiter) {
	for i, x := range b.line {
		if x == w {
			b.line = append(b.line[:i], b.line[i+1:]...)
			b.waiting.Add(-1)
			return
		}
	}
}
