package jidoka

import (
	"context"
	"fmt"
	"math"
	"time"
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
	// recent successful calls: 0.95 starts a hedge for the 5% slowest
	// calls. Zero: a fixed Delay.
	Quantile float64
	// Samples is how many latencies must be known before Quantile is
	// used. Zero means DefaultHedgeSamples (20).
	Samples int
	// Window is about how many recent latencies the quantile follows:
	// the counts are halved every Window calls. Zero means
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
// so only the slowest few calls are doubled. Every call runs on a goroutine
// of its own with a context of its own; when one succeeds the others'
// contexts are cancelled, and Do waits for them to return before it
// returns (a guard never leaves a call behind).
//
// Hedging is for slowness, not failure (that is Retry's work): a call that
// fails does not start a hedge. Do returns nil on the first success; when
// every call started has failed, it returns the first call's error. When
// ctx ends, every call's context ends with it.
//
// Hedged calls run at the same time, so fn must be safe to run
// concurrently with itself, and should only hedge what is idempotent: a
// read, or a write with an idempotency key. Do costs a goroutine, a
// context and a channel per call started; a panic in fn is passed on to
// the caller of Do once every call has returned.
type Hedge struct {
	name     string
	delay    time.Duration
	quantile float64
	samples  uint64
	hedges   int
	lat      *latencies
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
		h.lat = &latencies{window: uint64(window)}
	}
	return h, nil
}

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

type hedgeResult struct {
	i        int
	err      error
	panicked bool
	value    any // the panic value
}

// Do calls fn, and again after the hedge delay while no call has
// succeeded; see Hedge. When ctx is already done it returns ctx.Err()
// without calling fn.
func (h *Hedge) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n := h.hedges + 1
	cancels := make([]context.CancelFunc, 0, n)
	results := make(chan hedgeResult, n)
	start := func() {
		cctx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		go h.attempt(cctx, len(cancels)-1, fn, results)
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()

	delay := h.Delay()
	if delay == 0 {
		// Too few latencies are known to hedge by, and no least delay
		// was set: run the call alone, and learn its latency.
		begin := time.Now()
		err := fn(ctx)
		if err == nil {
			h.lat.add(time.Since(begin))
		}
		return err
	}
	start()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	next := timer.C
	ctxDone := ctx.Done()
	running, won := 1, false
	var firstErr error
	var panicked *hedgeResult
	for running > 0 {
		select {
		case r := <-results:
			running--
			switch {
			case r.panicked:
				if panicked == nil {
					panicked = &r
				}
				won, next = true, nil // stop the others, start no more
				cancelAll(cancels)
			case r.err == nil && !won:
				won, next = true, nil
				cancelAll(cancels)
			case r.err != nil && r.i == 0:
				firstErr = r.err
				if running == 0 {
					next = nil // the only call failed: no hedge for a failure
				}
			}
		case <-next:
			start()
			running++
			if len(cancels) == n {
				next = nil
			} else {
				timer.Reset(delay)
			}
		case <-ctxDone:
			ctxDone, next = nil, nil
		}
	}
	if panicked != nil {
		panic(panicked.value)
	}
	if won {
		return nil
	}
	return firstErr
}

func cancelAll(cancels []context.CancelFunc) {
	for _, cancel := range cancels {
		cancel()
	}
}

// attempt runs one call of fn and sends its result.
func (h *Hedge) attempt(ctx context.Context, i int, fn func(context.Context) error, results chan<- hedgeResult) {
	r := hedgeResult{i: i, panicked: true}
	var begin time.Time
	if h.lat != nil {
		begin = time.Now()
	}
	defer func() {
		if r.panicked {
			r.value = recover()
		}
		results <- r
	}()
	r.err = fn(ctx)
	r.panicked = false
	if r.err == nil && h.lat != nil {
		h.lat.add(time.Since(begin))
	}
}
