package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/taipattern/taikit/jidoka"
)

// These tests drive a jidoka.Breaker and a gobreaker.TwoStepCircuitBreaker
// configured alike through the same calls and time, and compare what each
// admits and which state it is in. Where the two differ, the test pins
// jidoka's documented behaviour and names the option that makes it so, for
// users moving from gobreaker.
//
// The mapping used:
//
//	gobreaker                                  jidoka
//	ReadyToTrip: ConsecutiveFailures >= n      ConsecutiveFailures: n
//	  (the default trips at > 5, i.e. 6)         (the default trips at 5)
//	Interval: 0 (counts never cleared)         no window: consecutive rule only
//	Timeout                                    OpenDuration (no MaxOpenDuration)
//	MaxRequests: m                             HalfOpenProbes: m, HalfOpenSuccesses: m
//	IsSuccessful                               IsFailure (negated)
//	IsExcluded                                 Ignore (default: context.Canceled)
//	Interval + BucketPeriod, ReadyToTrip on    WindowDuration, WindowBuckets,
//	  TotalFailures/Requests and Requests        FailureRate, MinimumCalls

const (
	cmpFailures = 5
	cmpOpen     = 30 * time.Second
	cmpProbes   = 3
)

var errCmp = errors.New("dependency failed")

// cmpPair is a jidoka breaker and a gobreaker configured alike.
type cmpPair struct {
	t  *testing.T
	jk *jidoka.Breaker
	gb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

func newConsecutivePair(t *testing.T) *cmpPair {
	t.Helper()
	jk, err := jidoka.NewBreaker(jidoka.BreakerOptions{
		ConsecutiveFailures: cmpFailures,
		OpenDuration:        cmpOpen,
		HalfOpenProbes:      cmpProbes,
		HalfOpenSuccesses:   cmpProbes,
	})
	if err != nil {
		t.Fatal(err)
	}
	gb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		MaxRequests: cmpProbes,
		Timeout:     cmpOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cmpFailures },
	})
	return &cmpPair{t: t, jk: jk, gb: gb}
}

// admitted is one call admitted by both breakers, to be reported by both.
type admitted struct {
	jk func(error)
	gb func(error)
}

func (a admitted) done(err error) { a.jk(err); a.gb(err) }

// allow asks both breakers to admit a call and fails the test unless they
// agree; it returns the call when both admit it.
func (p *cmpPair) allow() (admitted, bool) {
	p.t.Helper()
	jd, jerr := p.jk.Allow(context.Background())
	gd, gerr := p.gb.Allow()
	if (jerr == nil) != (gerr == nil) {
		p.t.Fatalf("admission differs: jidoka %v, gobreaker %v", jerr, gerr)
	}
	return admitted{jk: jd, gb: gd}, jerr == nil
}

// call runs one call through both breakers with result err; both must
// admit it.
func (p *cmpPair) call(err error) {
	p.t.Helper()
	a, ok := p.allow()
	if !ok {
		p.t.Fatalf("call refused by both, want admitted")
	}
	a.done(err)
}

// refused checks that both breakers refuse a call.
func (p *cmpPair) refused() {
	p.t.Helper()
	if _, ok := p.allow(); ok {
		p.t.Fatalf("call admitted by both, want refused")
	}
}

var gbStates = map[gobreaker.State]jidoka.State{
	gobreaker.StateClosed:   jidoka.StateClosed,
	gobreaker.StateHalfOpen: jidoka.StateHalfOpen,
	gobreaker.StateOpen:     jidoka.StateOpen,
}

// state checks that both breakers are in want.
func (p *cmpPair) state(want jidoka.State) {
	p.t.Helper()
	synctest.Wait() // let jidoka's open timer run
	if got := p.jk.State(); got != want {
		p.t.Fatalf("jidoka state %v, want %v", got, want)
	}
	if got := gbStates[p.gb.State()]; got != want {
		p.t.Fatalf("gobreaker state %v, want %v", got, want)
	}
}

func TestJidokaGobreakerTripPoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newConsecutivePair(t)
		for range cmpFailures - 1 {
			p.call(errCmp)
		}
		p.call(nil) // a success ends the run in both
		p.state(jidoka.StateClosed)
		for range cmpFailures - 1 {
			p.call(errCmp)
		}
		p.state(jidoka.StateClosed)
		p.call(errCmp)
		p.state(jidoka.StateOpen)
		p.refused()
	})
}

func TestJidokaGobreakerOpenDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newConsecutivePair(t)
		for range cmpFailures {
			p.call(errCmp)
		}
		time.Sleep(cmpOpen - time.Nanosecond)
		p.state(jidoka.StateOpen)
		p.refused()

		// At exactly OpenDuration jidoka's timer has turned it half-open;
		// gobreaker turns half-open only once its expiry is strictly
		// before now. jidoka's OpenError.RetryAfter points at this instant.
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := p.jk.State(); got != jidoka.StateHalfOpen {
			t.Fatalf("jidoka at OpenDuration: %v, want half-open", got)
		}
		if got := p.gb.State(); got != gobreaker.StateOpen {
			t.Fatalf("gobreaker at Timeout: %v, want open", got)
		}
		time.Sleep(time.Nanosecond)
		p.state(jidoka.StateHalfOpen)
	})
}

// openPair returns a pair whose open period has just ended.
func openPair(t *testing.T) *cmpPair {
	t.Helper()
	p := newConsecutivePair(t)
	for range cmpFailures {
		p.call(errCmp)
	}
	time.Sleep(cmpOpen + time.Nanosecond)
	p.state(jidoka.StateHalfOpen)
	return p
}

func TestJidokaGobreakerHalfOpenCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := openPair(t)
		for range cmpProbes - 1 {
			p.call(nil)
			p.state(jidoka.StateHalfOpen)
		}
		p.call(nil)
		p.state(jidoka.StateClosed)
		if s := p.jk.Snapshot(); s.ConsecutiveFailures != 0 || s.Trips != 0 {
			t.Fatalf("jidoka counts after closing: %+v", s)
		}
		// The counts start afresh: a full run is needed to trip again.
		for range cmpFailures - 1 {
			p.call(errCmp)
		}
		p.state(jidoka.StateClosed)
		p.call(errCmp)
		p.state(jidoka.StateOpen)
	})
}

func TestJidokaGobreakerHalfOpenProbeFailureReopens(t *testing.T) {
	for _, successesFirst := range []int{0, 1, cmpProbes - 1} {
		synctest.Test(t, func(t *testing.T) {
			p := openPair(t)
			for range successesFirst {
				p.call(nil)
			}
			p.call(errCmp)
			p.state(jidoka.StateOpen)
			p.refused()
			// Without MaxOpenDuration the second open period is as long
			// as the first, as gobreaker's Timeout.
			time.Sleep(cmpOpen - time.Nanosecond)
			p.state(jidoka.StateOpen)
			time.Sleep(2 * time.Nanosecond)
			p.state(jidoka.StateHalfOpen)
			// The probe successes before the failure do not carry over.
			for range cmpProbes - 1 {
				p.call(nil)
			}
			p.state(jidoka.StateHalfOpen)
			p.call(nil)
			p.state(jidoka.StateClosed)
		})
	}
}

func TestJidokaGobreakerHalfOpenAdmissions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := openPair(t)
		var calls []admitted
		for range cmpProbes {
			a, ok := p.allow()
			if !ok {
				t.Fatal("probe refused")
			}
			calls = append(calls, a)
		}
		p.refused() // both: at most cmpProbes probes in flight

		// A probe that reports frees its lease in jidoka: HalfOpenProbes
		// bounds the probes in flight, HalfOpenSuccesses the successes
		// that close it. gobreaker's MaxRequests bounds the requests of
		// the whole half-open state, so it refuses until it closes.
		calls[0].done(nil)
		jd, err := p.jk.Allow(context.Background())
		if err != nil {
			t.Fatalf("jidoka after a probe reported: %v, want a new probe admitted", err)
		}
		if _, err := p.gb.Allow(); !errors.Is(err, gobreaker.ErrTooManyRequests) {
			t.Fatalf("gobreaker after a probe reported: %v, want ErrTooManyRequests", err)
		}
		calls[1].done(nil)
		calls[2].done(nil)
		p.state(jidoka.StateClosed)
		jd(errCmp) // a probe of the half-open period: ignored once closed
		if s := p.jk.Snapshot(); s.ConsecutiveFailures != 0 {
			t.Fatalf("late probe counted in the closed state: %+v", s)
		}
	})
}

func TestJidokaGobreakerHalfOpenIgnoredProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := openPair(t)
		// context.Canceled is ignored by jidoka by default; gobreaker
		// needs IsExcluded. Set it so both ignore the same error.
		gb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			MaxRequests: cmpProbes,
			Timeout:     cmpOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cmpFailures },
			IsExcluded:  func(err error) bool { return errors.Is(err, context.Canceled) },
		})
		p.gb = gb
		for range cmpFailures {
			done, err := gb.Allow()
			if err != nil {
				t.Fatal(err)
			}
			done(errCmp)
		}
		time.Sleep(cmpOpen + time.Nanosecond)
		p.state(jidoka.StateHalfOpen)

		var calls []admitted
		for range cmpProbes {
			a, ok := p.allow()
			if !ok {
				t.Fatal("probe refused")
			}
			calls = append(calls, a)
		}
		p.refused()
		// An ignored probe gives its place back in both, and neither
		// counts it as a success or a failure.
		calls[0].done(context.Canceled)
		p.state(jidoka.StateHalfOpen)
		extra, ok := p.allow()
		if !ok {
			t.Fatal("probe refused after an ignored probe")
		}
		calls[1].done(nil)
		calls[2].done(nil)
		p.state(jidoka.StateHalfOpen)
		extra.done(nil)
		p.state(jidoka.StateClosed)
	})
}

func TestJidokaGobreakerGenerations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newConsecutivePair(t)
		early, _ := p.allow()
		for range cmpFailures {
			p.call(errCmp)
		}
		p.state(jidoka.StateOpen)
		early.done(nil) // admitted while closed: ignored by both once open
		time.Sleep(cmpOpen + time.Nanosecond)
		p.state(jidoka.StateHalfOpen)
		late, _ := p.allow()
		for range cmpProbes - 1 {
			p.call(nil)
		}
		late.done(nil) // closes both
		p.state(jidoka.StateClosed)
	})
}

func TestJidokaGobreakerDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jk, err := jidoka.NewBreaker(jidoka.BreakerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		gb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{})
		fail := func() (struct{}, error) { return struct{}{}, errCmp }
		for range jidoka.DefaultConsecutiveFailures {
			_ = jk.Do(context.Background(), func(context.Context) error { return errCmp })
			_, _ = gb.Execute(fail)
		}
		// jidoka trips at DefaultConsecutiveFailures (5) failures in a
		// row; gobreaker's default ReadyToTrip at more than 5.
		if jk.State() != jidoka.StateOpen || gb.State() != gobreaker.StateClosed {
			t.Fatalf("after 5 failures: jidoka %v, gobreaker %v", jk.State(), gb.State())
		}
		_, _ = gb.Execute(fail)
		if gb.State() != gobreaker.StateOpen {
			t.Fatalf("gobreaker after 6 failures: %v", gb.State())
		}
		// DefaultOpenDuration is 30 s; gobreaker's default Timeout 60 s.
		time.Sleep(jidoka.DefaultOpenDuration + time.Nanosecond)
		synctest.Wait()
		if jk.State() != jidoka.StateHalfOpen || gb.State() != gobreaker.StateOpen {
			t.Fatalf("after 30 s: jidoka %v, gobreaker %v", jk.State(), gb.State())
		}
		// jidoka lets one probe at a time and closes after
		// DefaultHalfOpenSuccesses (3); gobreaker's MaxRequests 0 means 1
		// probe, and one success closes it.
		for i := range jidoka.DefaultHalfOpenSuccesses {
			done, err := jk.Allow(context.Background())
			if err != nil {
				t.Fatalf("probe %d: %v", i, err)
			}
			if _, err := jk.Allow(context.Background()); !errors.Is(err, jidoka.ErrOpen) {
				t.Fatalf("second probe in flight: %v, want ErrOpen", err)
			}
			done(nil)
		}
		if jk.State() != jidoka.StateClosed {
			t.Fatalf("jidoka after 3 probe successes: %v", jk.State())
		}
	})
}

// A panic counts as a failure in both, and is passed on.
func TestJidokaGobreakerPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jk, _ := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1})
		gb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
		})
		mustPanic(t, func() { _ = jk.Do(context.Background(), func(context.Context) error { panic("boom") }) })
		mustPanic(t, func() { _, _ = gb.Execute(func() (struct{}, error) { panic("boom") }) })
		if jk.State() != jidoka.StateOpen || gb.State() != gobreaker.StateOpen {
			t.Fatalf("after a panic: jidoka %v, gobreaker %v", jk.State(), gb.State())
		}
	})
}

func mustPanic(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic passed on")
		}
	}()
	f()
}

// The closest gobreaker form of a failure-rate rule: a rolling window of
// Interval in BucketPeriod buckets, and a ReadyToTrip on the rate once
// MinimumCalls requests are counted.
func newRatePair(t *testing.T) *cmpPair {
	t.Helper()
	jk, err := jidoka.NewBreaker(jidoka.BreakerOptions{
		FailureRate:       0.5,
		MinimumCalls:      10,
		WindowDuration:    10 * time.Second,
		WindowBuckets:     10,
		OpenDuration:      cmpOpen,
		HalfOpenProbes:    cmpProbes,
		HalfOpenSuccesses: cmpProbes,
	})
	if err != nil {
		t.Fatal(err)
	}
	gb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		MaxRequests:  cmpProbes,
		Interval:     10 * time.Second,
		BucketPeriod: time.Second,
		Timeout:      cmpOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= 10 && float64(c.TotalFailures)/float64(c.Requests) >= 0.5
		},
	})
	return &cmpPair{t: t, jk: jk, gb: gb}
}

func TestJidokaGobreakerFailureRate(t *testing.T) {
	t.Run("failure reaches the rate", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newRatePair(t)
			for range 5 {
				p.call(nil)
			}
			for range 4 {
				p.call(errCmp)
			}
			p.state(jidoka.StateClosed) // 9 calls: under the minimum
			p.call(errCmp)
			p.state(jidoka.StateOpen)
		})
	})
	t.Run("success reaches the minimum", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newRatePair(t)
			for range 5 {
				p.call(errCmp)
			}
			for range 4 {
				p.call(nil)
			}
			p.state(jidoka.StateClosed)
			// The tenth call, a success, fills the minimum at a rate of
			// 0.5: jidoka checks the rates after every counted call and
			// trips; gobreaker asks ReadyToTrip only after a failure.
			p.call(nil)
			synctest.Wait()
			if got := p.jk.State(); got != jidoka.StateOpen {
				t.Fatalf("jidoka after the tenth call: %v, want open", got)
			}
			if got := p.gb.State(); got != gobreaker.StateClosed {
				t.Fatalf("gobreaker after the tenth call: %v, want closed", got)
			}
		})
	})
	t.Run("failures expire", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newRatePair(t)
			for range 5 {
				p.call(errCmp)
			}
			time.Sleep(10 * time.Second) // the failures leave both windows
			for range 5 {
				p.call(nil)
			}
			for range 4 {
				p.call(errCmp)
			}
			p.state(jidoka.StateClosed)
			p.call(nil)
			p.state(jidoka.StateClosed)
		})
	})
}

// An ignored (gobreaker: excluded) error in the closed state neither
// counts as a failure nor ends a run of failures, in both.
func TestJidokaGobreakerIgnoredInRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newConsecutivePair(t)
		p.gb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			MaxRequests: cmpProbes,
			Timeout:     cmpOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cmpFailures },
			IsExcluded:  func(err error) bool { return errors.Is(err, context.Canceled) },
		})
		for range cmpFailures - 1 {
			p.call(errCmp)
			p.call(context.Canceled)
		}
		p.state(jidoka.StateClosed)
		p.call(errCmp)
		p.state(jidoka.StateOpen)
	})
}

// A refusal by a guard inside the breaker (here another breaker) is never
// counted by jidoka, whatever IsFailure says; gobreaker counts every error
// IsSuccessful rejects, the refusal of an inner breaker included.
func TestJidokaGobreakerInnerRefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner, _ := jidoka.NewBreaker(jidoka.BreakerOptions{})
		inner.ForceOpen("maintenance")
		refusal := inner.Do(context.Background(), func(context.Context) error { return nil })
		p := newConsecutivePair(t)
		for range cmpFailures {
			jd, err := p.jk.Allow(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			jd(refusal)
			gd, err := p.gb.Allow()
			if err != nil {
				t.Fatal(err)
			}
			gd(refusal)
		}
		synctest.Wait()
		if p.jk.State() != jidoka.StateClosed || p.gb.State() != gobreaker.StateOpen {
			t.Fatalf("after 5 inner refusals: jidoka %v, gobreaker %v", p.jk.State(), p.gb.State())
		}
	})
}

// Both report the same changes, in the same order; gobreaker reports the
// end of the open period only when it is next asked (a call or State),
// jidoka when its open timer fires.
func TestJidokaGobreakerEvents(t *testing.T) {
	type change struct{ from, to jidoka.State }
	synctest.Test(t, func(t *testing.T) {
		var jkEvents, gbEvents []change
		jk, err := jidoka.NewBreaker(jidoka.BreakerOptions{
			ConsecutiveFailures: cmpFailures, OpenDuration: cmpOpen,
			HalfOpenProbes: 1, HalfOpenSuccesses: 1,
			OnStateChange: func(ev jidoka.Event) { jkEvents = append(jkEvents, change{ev.From, ev.To}) },
		})
		if err != nil {
			t.Fatal(err)
		}
		gb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Timeout:     cmpOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cmpFailures },
			OnStateChange: func(_ string, from, to gobreaker.State) {
				gbEvents = append(gbEvents, change{gbStates[from], gbStates[to]})
			},
		})
		p := &cmpPair{t: t, jk: jk, gb: gb}
		for range cmpFailures {
			p.call(errCmp)
		}
		time.Sleep(cmpOpen + time.Nanosecond)
		synctest.Wait()
		if len(jkEvents) != 2 || len(gbEvents) != 1 {
			t.Fatalf("before the next call: jidoka %v, gobreaker %v", jkEvents, gbEvents)
		}
		p.call(errCmp) // the probe fails
		time.Sleep(cmpOpen + time.Nanosecond)
		p.call(nil) // the probe succeeds
		want := []change{
			{jidoka.StateClosed, jidoka.StateOpen},
			{jidoka.StateOpen, jidoka.StateHalfOpen},
			{jidoka.StateHalfOpen, jidoka.StateOpen},
			{jidoka.StateOpen, jidoka.StateHalfOpen},
			{jidoka.StateHalfOpen, jidoka.StateClosed},
		}
		for name, got := range map[string][]change{"jidoka": jkEvents, "gobreaker": gbEvents} {
			if len(got) != len(want) {
				t.Fatalf("%s events %v, want %v", name, got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s events %v, want %v", name, got, want)
				}
			}
		}
	})
}

// Random sequences of successes, failures, ignored results, time and calls
// left in flight across state changes: the two agree on every admission
// and state. Time moves in steps of whole seconds plus a nanosecond, so no
// call falls on the instant an open period ends (where they differ, see
// TestJidokaGobreakerOpenDuration), and probes report before the next
// call (where they differ, see TestJidokaGobreakerHalfOpenAdmissions).
func TestJidokaGobreakerRandom(t *testing.T) {
	for seed := range uint64(50) {
		synctest.Test(t, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			p := newConsecutivePair(t)
			p.gb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
				MaxRequests: cmpProbes,
				Timeout:     cmpOpen,
				ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cmpFailures },
				IsExcluded:  func(err error) bool { return errors.Is(err, context.Canceled) },
			})
			results := []error{nil, errCmp, context.Canceled}
			var held []admitted
			for range 400 {
				switch op := rng.IntN(10); {
				case op < 6:
					state := p.jk.State()
					a, ok := p.allow()
					if !ok {
						continue
					}
					if state == jidoka.StateClosed && rng.IntN(4) == 0 {
						held = append(held, a)
						continue
					}
					a.done(results[rng.IntN(len(results))])
				case op < 8 && len(held) > 0:
					i := rng.IntN(len(held))
					held[i].done(results[rng.IntN(len(results))])
					held = append(held[:i], held[i+1:]...)
				default:
					time.Sleep(time.Duration(rng.IntN(40))*time.Second + time.Nanosecond)
				}
				synctest.Wait()
				if j, g := p.jk.State(), gbStates[p.gb.State()]; j != g {
					t.Fatalf("seed %d: jidoka %v, gobreaker %v", seed, j, g)
				}
			}
		})
	}
}

// Random sequences against the failure-rate pair. Time moves in whole
// buckets, so both windows' buckets start at the same instants, and the
// open period ends between two of them. They agree until jidoka trips on a
// success that brings the window to MinimumCalls at the rate (see
// TestJidokaGobreakerFailureRate), where gobreaker waits for a failure.
func TestJidokaGobreakerRandomRate(t *testing.T) {
	const open = 30*time.Second + time.Second/2
	for seed := range uint64(100) {
		synctest.Test(t, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			jk, err := jidoka.NewBreaker(jidoka.BreakerOptions{
				FailureRate: 0.5, MinimumCalls: 10,
				WindowDuration: 10 * time.Second, WindowBuckets: 10,
				OpenDuration: open, HalfOpenProbes: cmpProbes, HalfOpenSuccesses: cmpProbes,
			})
			if err != nil {
				t.Fatal(err)
			}
			gb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
				MaxRequests: cmpProbes, Interval: 10 * time.Second, BucketPeriod: time.Second, Timeout: open,
				ReadyToTrip: func(c gobreaker.Counts) bool {
					n := c.Requests - c.TotalExclusions
					return n >= 10 && float64(c.TotalFailures)/float64(n) >= 0.5
				},
				IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
			})
			p := &cmpPair{t: t, jk: jk, gb: gb}
			results := []error{nil, errCmp, context.Canceled}
			for range 600 {
				var res error
				called := false
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(12)) * time.Second)
				} else if a, ok := p.allow(); ok {
					res, called = results[rng.IntN(len(results))], true
					a.done(res)
				}
				synctest.Wait()
				j, g := p.jk.State(), gbStates[p.gb.State()]
				if j == g {
					continue
				}
				if called && res == nil && j == jidoka.StateOpen && g == jidoka.StateClosed {
					if c := gb.Counts(); c.Requests-c.TotalExclusions >= 10 && 2*c.TotalFailures >= c.Requests-c.TotalExclusions {
						return // tripped on a success at the rate: documented
					}
				}
				t.Fatalf("seed %d: jidoka %v, gobreaker %v (last result %v, gobreaker counts %+v, jidoka %+v)",
					seed, j, g, res, p.gb.Counts(), p.jk.Snapshot())
			}
		})
	}
}

// A probe that never reports: jidoka gives its lease to another probe
// after ProbeTimeout (30 s by default) and ignores its late report;
// gobreaker keeps counting it against MaxRequests until the state changes.
func TestJidokaGobreakerLostProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := openPair(t)
		var calls []admitted
		for range cmpProbes {
			a, _ := p.allow()
			calls = append(calls, a)
		}
		time.Sleep(jidoka.DefaultProbeTimeout)
		jd, err := p.jk.Allow(context.Background())
		if err != nil {
			t.Fatalf("jidoka after ProbeTimeout: %v, want a probe admitted", err)
		}
		if _, err := p.gb.Allow(); !errors.Is(err, gobreaker.ErrTooManyRequests) {
			t.Fatalf("gobreaker with every probe lost: %v, want ErrTooManyRequests", err)
		}
		calls[0].jk(errCmp) // its lease was given away: ignored
		if got := p.jk.State(); got != jidoka.StateHalfOpen {
			t.Fatalf("jidoka after a late report: %v, want half-open", got)
		}
		jd(nil)
		if s := p.jk.Snapshot(); s.ProbeSuccesses != 1 {
			t.Fatalf("jidoka probe successes %d, want 1", s.ProbeSuccesses)
		}
	})
}
