package jidoka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/taipattern/taikit/internal/deadlines"
)

// Defaults and limits of HedgeOptions.
const (
	DefaultHedgeSamples = 20
	DefaultHedgeWindow  = 1000
	MaxHedges           = 10
)

// HedgeOptions configures a Hedge. Delay or Quantile must be set.
type HedgeOptions struct {
	// Name names the hedge in tai hooks.
	Name string
	// Delay is how long the first call runs before a hedge is started,
	// and the time between hedges. With Quantile set it is the least
	// hedge delay, and the delay used until Samples latencies are known;
	// with Quantile and no Delay, no call is hedged until then. It must
	// not be negative.
	Delay time.Duration
	// Quantile in (0, 1) hedges after that quantile of the latencies of
	// recent successful calls (the nearest rank): 0.95 starts a hedge for
	// at most the 5% slowest calls. A call's latency is what its caller
	// saw, from Do to the first success: a call a hedge answered counts
	// as slow as the hedge delay and the hedge made it, since timing the
	// hedge alone would drop the slow calls from the latencies, and the
	// quantile would sink until every slow call was hedged. Zero: a fixed
	// Delay.
	Quantile float64
	// Samples is how many latencies must be known before Quantile is
	// used. Zero means DefaultHedgeSamples (20).
	Samples int
	// Window is about how many recent latencies the quantile follows:
	// the counts are halved every Window calls, so it must be at least
	// twice Samples: then, however the halving rounds, the counts hold
	// Samples again after at most Samples calls, and the quantile is used
	// for at least half of every Window's calls. Zero means
	// DefaultHedgeWindow (1000).
	Window int
	// MaxHedges is the most calls started besides the first. Zero means
	// 1; at most MaxHedges (the constant).
	MaxHedges int
}

// Hedge is a tai.Guard for calls whose latency has a long tail: when a call
// has not returned after a delay it starts the same call again (a hedge,
// as Dean and Barroso's "The Tail at Scale" describes), and takes the first
// success. The delay is fixed, or a quantile of recent calls' latencies,
// so only the slowest few calls are doubled. The first call runs on the
// goroutine that called Do, each hedge on a goroutine of its own, and each
// call with a context of its own; when one succeeds the others' contexts
// are cancelled, and Do waits for them to return before it returns (a
// guard never leaves a call behind).
//
// Hedging is for slowness, not failure (that is Retry's work): a call that
// fails does not start a hedge. Do returns nil on the first success; when
// every call started has failed, it returns the first call's error. When
// ctx ends, every call's context ends with it.
//
// Hedged calls run at the same time, so fn must be safe to run
// concurrently with itself, and should only hedge what is idempotent: a
// read, or a write with an idempotency key. A call that returns before
// the delay costs a context and Do's state (two allocations), no timer of
// its own and no goroutine: the calls waiting for their hedge delay are
// kept in lists, in deadline order, with one timer for each list. Each
// hedge costs a goroutine and a context. A panic in fn
// is passed on to the caller of Do once every call has returned. A call
// that ends its goroutine with runtime.Goexit did not succeed; when the
// first call does so, the hedges are cancelled and waited for before Do's
// goroutine ends. Make one with NewHedge; the zero Hedge is not usable:
// its Delay is 0, and Do returns an error saying it was not made by
// NewHedge, without calling fn.
type Hedge struct {
	name     string
	delay    time.Duration
	quantile float64
	samples  uint64
	hedges   int
	lat      *latencies
	waiting  *deadlines.Set[hedging] // calls until their next hedge
}

// NewHedge returns a Hedge configured by opts, or an error naming the first
// invalid field and its value.
func NewHedge(opts HedgeOptions) (*Hedge, error) {
	switch {
	case opts.Delay < 0:
		return nil, fmt.Errorf("jidoka: HedgeOptions.Delay is %v, want >= 0", opts.Delay)
	case math.IsNaN(opts.Quantile) || opts.Quantile < 0 || opts.Quantile >= 1:
		return nil, fmt.Errorf("jidoka: HedgeOptions.Quantile is %v, want a value in (0, 1), or 0 for a fixed Delay", opts.Quantile)
	case opts.Delay == 0 && opts.Quantile == 0:
		return nil, fmt.Errorf("jidoka: HedgeOptions.Delay and Quantile are both 0: set a delay, a quantile, or both")
	case opts.Samples < 0:
		return nil, fmt.Errorf("jidoka: HedgeOptions.Samples is %d, want >= 0", opts.Samples)
	case opts.Window < 0:
		return nil, fmt.Errorf("jidoka: HedgeOptions.Window is %d, want >= 0", opts.Window)
	case opts.MaxHedges < 0 || opts.MaxHedges > MaxHedges:
		return nil, fmt.Errorf("jidoka: HedgeOptions.MaxHedges is %d, want a value in [1, %d] (0 for 1)", opts.MaxHedges, MaxHedges)
	}
	h := &Hedge{name: opts.Name, delay: opts.Delay, quantile: opts.Quantile, hedges: max(opts.MaxHedges, 1)}
	if h.quantile > 0 {
		h.samples = uint64(opts.Samples)
		if h.samples == 0 {
			h.samples = DefaultHedgeSamples
		}
		window := opts.Window
		if window == 0 {
			window = DefaultHedgeWindow
		}
		if uint64(window) < 2*h.samples {
			// The counts are halved as the Window-th call since the last
			// halving is added, each bucket rounding down: a bucket of
			// one is emptied. They may hold fewer than Samples for most
			// of a Window, or all of it.
			return nil, fmt.Errorf("jidoka: HedgeOptions.Window is %d, want at least twice Samples (%d): the counts are halved every Window calls", window, h.samples)
		}
		h.lat = &latencies{window: uint64(window)}
	}
	h.waiting = deadlines.New(time.Now(), h.delay, runtime.GOMAXPROCS(0), hedgingLinks, (*hedging).hedge)
	return h, nil
}

// errHedgeNotMade is the error of Do on a Hedge that NewHedge did not make:
// it has neither a delay nor the latencies to find one.
var errHedgeNotMade = errors.New("jidoka: Hedge not made by NewHedge")

// Name returns HedgeOptions.Name.
func (h *Hedge) Name() string { return h.name }

// Delay returns how long a call runs now before a hedge is started: Delay,
// or the quantile of recent latencies when enough are known (never less
// than Delay). It is 0 when no call is hedged yet (a Quantile, no Delay,
// and fewer than Samples latencies known).
func (h *Hedge) Delay() time.Duration {
	if h.lat == nil {
		return h.delay
	}
	q, ok := h.lat.quantile(h.quantile, h.samples)
	if !ok {
		return h.delay
	}
	return max(q, h.delay)
}

// Do calls fn, and again after the hedge delay while no call has
// succeeded; see Hedge. When ctx is already done it returns ctx.Err()
// without calling fn.
func (h *Hedge) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	delay := h.Delay()
	if delay == 0 {
		if h.waiting == nil {
			return errHedgeNotMade
		}
		// Too few latencies are known to hedge by, and no least delay
		// was set: run the call alone, and learn its latency.
		begin := time.Now()
		err := fn(ctx)
		if err == nil {
			h.lat.add(time.Since(begin))
		}
		return err
	}
	// The first call runs on the caller's goroutine; a hedge starts each
	// other on a goroutine of its own, from the timer of the list the
	// call waits on. A call that returns before the delay costs no
	// goroutine.
	r := &hedging{h: h, ctx: ctx, fn: fn, delay: delay}
	now := h.waiting.Since()
	// now+delay wraps only for a Delay near the longest Duration (the
	// quantile stays under about 25 days), which every call then waits:
	// harmless, as the timer waits At minus the time, which the wrap
	// leaves exact, and every deadline of the Hedge is centuries away.
	r.begin, r.links.At = now, now+delay
	pctx, cancel := context.WithCancel(ctx)
	r.cancels[0], r.started = cancel, 1
	h.waiting.Add(r, now)
	pv, panicked, err := r.first(pctx)

	r.mu.Lock()
	r.closed = true // no hedge starts after the first call returned
	switch {
	case panicked:
		r.fail(pv)
	case err == nil:
		r.win()
	}
	r.mu.Unlock()
	h.waiting.Remove(r) // after closed: hedge lists r no more
	r.wg.Wait()         // for the hedges started
	r.cancelAll()
	if r.panicked {
		panic(r.pv)
	}
	if r.won {
		return nil
	}
	return err
}

// hedging is the state of one hedged Do.
type hedging struct {
	h     *Hedge
	ctx   context.Context
	fn    func(context.Context) error
	delay time.Duration
	begin time.Duration // when Do began, as h.waiting counts time
	links deadlines.Links[hedging]
	wg    sync.WaitGroup // the hedges running

	mu       sync.Mutex
	cancels  [MaxHedges + 1]context.CancelFunc
	started  int  // calls started, the first included
	closed   bool // start no more hedges
	won      bool // a call succeeded
	panicked bool // a call panicked, with pv
	pv       any
}

// first runs the first call. Should it end the goroutine (runtime.Goexit:
// t.FailNow in a test), Do does not come back to cancel and wait for the
// hedges: first does so before the goroutine ends.
func (r *hedging) first(ctx context.Context) (pv any, panicked bool, err error) {
	defer func() {
		if !panicked {
			return
		}
		if pv = recover(); pv == nil { // runtime.Goexit
			r.mu.Lock()
			r.closed = true
			r.cancelAll()
			r.mu.Unlock()
			r.h.waiting.Remove(r)
			r.wg.Wait()
		}
	}()
	panicked = true
	err = r.fn(ctx)
	panicked = false
	return nil, false, err
}

// hedgingLinks returns r's place on the lists of calls waiting for a
// hedge.
func hedgingLinks(r *hedging) *deadlines.Links[hedging] { return &r.links }

// hedge is called, from the timer of the list r waits on, when r's next
// hedge is due: it starts the hedge on a goroutine of its own and lists r
// again for the next one, unless a call has succeeded, the first call has
// returned, the caller's context has ended or every hedge has started.
func (r *hedging) hedge() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.started > r.h.hedges || r.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	r.cancels[r.started] = cancel
	r.started++
	if r.started <= r.h.hedges {
		now := r.h.waiting.Since()
		r.links.At = now + r.delay
		r.h.waiting.Add(r, now)
	}
	r.wg.Add(1)
	go r.run(ctx)
}

// run runs a hedge.
func (r *hedging) run(ctx context.Context) {
	defer r.wg.Done()
	panicked := true
	defer func() {
		if !panicked {
			return
		}
		// recover gives nil when fn ended the goroutine with
		// runtime.Goexit: a call that did not succeed, and no panic to
		// pass on (panic(nil) would be one of the runtime's own).
		if v := recover(); v != nil {
			r.mu.Lock()
			r.fail(v)
			r.mu.Unlock()
		}
	}()
	err := r.fn(ctx)
	panicked = false
	if err == nil {
		r.mu.Lock()
		r.win()
		r.mu.Unlock()
	}
}

// win records a success and cancels the other calls: the first success
// wins, and its time since Do began is the latency the quantile learns.
func (r *hedging) win() {
	if r.won || r.panicked {
		return
	}
	r.won, r.closed = true, true
	if r.h.lat != nil {
		r.h.lat.add(r.h.waiting.Since() - r.begin)
	}
	r.cancelAll()
}

// fail records a panic and cancels the other calls.
func (r *hedging) fail(v any) {
	if !r.panicked {
		r.panicked, r.pv, r.closed = true, v, true
	}
	r.cancelAll()
}

// cancelAll cancels the contexts of the calls started.
func (r *hedging) cancelAll() {
	for _, cancel := range r.cancels[:r.started] {
		cancel()
	}
}
