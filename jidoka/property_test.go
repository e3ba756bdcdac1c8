package jidoka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/jidoka"
)

// The reference model of the breaker's state machine: a plain, single
// threaded restatement of the rules, checked against the real breaker
// driven by random calls, results, clock moves and manual changes.

const (
	modelOpen         = 10 * time.Second
	modelMaxOpen      = 40 * time.Second
	modelProbeTimeout = 5 * time.Second
	modelSlow         = 2 * time.Second
	modelWindow       = 10 * time.Second
	modelBuckets      = 5
)

type modelEntry struct {
	at         time.Duration
	fail, slow bool
}

type model struct {
	cfg       jidoka.BreakerOptions
	now       time.Duration
	state     jidoka.State
	gen       uint64
	consec    int
	window    []modelEntry
	trips     int
	until     time.Duration
	successes int
	leases    map[int]time.Duration // model lease id → start
	nextLease int
	events    []modelEvent // every change of state, in order
}

// modelEvent is what the model expects OnStateChange to be told.
type modelEvent struct {
	from, to jidoka.State
	gen      uint64
}

// The errors a case's own classifiers judge: errSkip is ignored by its
// Ignore, errBenign is a success by its IsFailure.
var (
	errSkip   = errors.New("skip")
	errBenign = errors.New("benign")
)

// pendingCall is a call admitted by Allow whose result is not reported yet.
type pendingCall struct {
	done  func(error)
	gen   uint64
	lease int // 0 outside half-open
	start time.Duration
}

func (m *model) enter(to jidoka.State) {
	if m.state != to {
		m.events = append(m.events, modelEvent{m.state, to, m.gen + 1})
	}
	m.gen++
	m.state = to
	m.consec, m.window, m.successes = 0, nil, 0
	m.leases = map[int]time.Duration{}
	if to == jidoka.StateOpen {
		d := modelOpen
		if m.cfg.MaxOpenDuration > 0 {
			for i := 1; i < m.trips; i++ {
				d = min(2*d, m.cfg.MaxOpenDuration)
			}
		}
		m.until = m.now + d
	}
}

func (m *model) force(to jidoka.State) {
	if m.state == to && to != jidoka.StateClosed {
		return
	}
	switch to {
	case jidoka.StateOpen:
		m.trips++
	case jidoka.StateClosed, jidoka.StateDisabled, jidoka.StateMetricsOnly:
		m.trips = 0
	}
	m.enter(to)
}

func (m *model) advance(d time.Duration) {
	m.now += d
	if m.state == jidoka.StateOpen && m.now >= m.until {
		m.enter(jidoka.StateHalfOpen)
	}
}

// tally counts the window as the breaker sees it now.
func (m *model) tally() (calls, fails, slow int) {
	entries := m.window
	if m.cfg.WindowSize > 0 && len(entries) > m.cfg.WindowSize {
		entries = entries[len(entries)-m.cfg.WindowSize:]
	}
	width := modelWindow / modelBuckets
	for _, e := range entries {
		if m.cfg.WindowDuration > 0 && e.at/width <= m.now/width-modelBuckets {
			continue
		}
		calls++
		if e.fail {
			fails++
		}
		if e.slow {
			slow++
		}
	}
	return calls, fails, slow
}

func (m *model) windowed() bool { return m.cfg.WindowSize > 0 || m.cfg.WindowDuration > 0 }

// admit returns whether a call is admitted now, and its lease.
func (m *model) admit() (bool, int) {
	switch m.state {
	case jidoka.StateOpen, jidoka.StateForcedOpen:
		return false, 0
	case jidoka.StateHalfOpen:
		if len(m.leases) == m.cfg.HalfOpenProbes {
			for id, start := range m.leases {
				if m.now-start >= modelProbeTimeout {
					delete(m.leases, id)
				}
			}
		}
		if len(m.leases) == m.cfg.HalfOpenProbes {
			return false, 0
		}
		m.nextLease++
		m.leases[m.nextLease] = m.now
		return true, m.nextLease
	}
	return true, 0
}

// finish reports the result err of call c; gaveUp: the caller canceled
// the context of a call made through Do.
func (m *model) finish(c pendingCall, err error, gaveUp bool) {
	if c.gen != m.gen {
		return
	}
	var canceled bool // ignored
	if m.cfg.Ignore != nil {
		canceled = errors.Is(err, errSkip)
	} else {
		canceled = errors.Is(err, context.Canceled) || err != nil && gaveUp
	}
	failed := err != nil && !canceled
	if failed && m.cfg.IsFailure != nil {
		failed = !errors.Is(err, errBenign)
	}
	slow := m.cfg.SlowCallRate > 0 && !canceled && m.now-c.start > modelSlow
	switch m.state {
	case jidoka.StateHalfOpen:
		if _, ok := m.leases[c.lease]; !ok {
			return
		}
		delete(m.leases, c.lease)
		switch {
		case canceled:
		case failed || slow:
			m.trips++
			m.enter(jidoka.StateOpen)
		default:
			m.successes++
			if m.successes >= m.cfg.HalfOpenSuccesses {
				m.trips = 0
				m.enter(jidoka.StateClosed)
			}
		}
	case jidoka.StateClosed, jidoka.StateMetricsOnly:
		if canceled {
			return
		}
		trip := false
		if failed {
			m.consec++
			trip = m.consec >= m.cfg.ConsecutiveFailures
		} else {
			m.consec = 0
		}
		if m.windowed() {
			m.window = append(m.window, modelEntry{at: m.now, fail: failed, slow: slow})
			calls, fails, slows := m.tally()
			if calls > 0 && calls >= m.cfg.MinimumCalls {
				trip = trip || float64(fails)/float64(calls) >= m.cfg.FailureRate
				trip = trip || (m.cfg.SlowCallRate > 0 && float64(slows)/float64(calls) >= m.cfg.SlowCallRate)
			}
		}
		if trip && m.state == jidoka.StateClosed {
			m.trips++
			m.enter(jidoka.StateOpen)
		}
	}
}

func drawOptions(t *rapid.T) jidoka.BreakerOptions {
	cfg := jidoka.BreakerOptions{
		ConsecutiveFailures: rapid.IntRange(1, 4).Draw(t, "consecutive"),
		OpenDuration:        modelOpen,
		HalfOpenProbes:      rapid.IntRange(1, 3).Draw(t, "probes"),
		HalfOpenSuccesses:   rapid.IntRange(1, 3).Draw(t, "successes"),
		ProbeTimeout:        modelProbeTimeout,
	}
	if rapid.Bool().Draw(t, "backoff") {
		cfg.MaxOpenDuration = modelMaxOpen
	}
	switch rapid.IntRange(0, 2).Draw(t, "window") {
	case 1:
		cfg.WindowSize = rapid.IntRange(2, 6).Draw(t, "size")
		cfg.MinimumCalls = rapid.IntRange(1, cfg.WindowSize).Draw(t, "min")
	case 2:
		cfg.WindowDuration, cfg.WindowBuckets = modelWindow, modelBuckets
		cfg.MinimumCalls = rapid.IntRange(1, 6).Draw(t, "min")
	}
	if cfg.WindowSize > 0 || cfg.WindowDuration > 0 {
		cfg.FailureRate = rapid.SampledFrom([]float64{0.25, 0.5, 0.75, 1}).Draw(t, "rate")
		if rapid.Bool().Draw(t, "slow rule") {
			cfg.SlowCallRate, cfg.SlowCallDuration = 0.5, modelSlow
		}
	}
	if rapid.Bool().Draw(t, "classifiers") {
		cfg.Ignore = func(err error) bool { return errors.Is(err, errSkip) }
		cfg.IsFailure = func(err error) bool { return !errors.Is(err, errBenign) }
	}
	return cfg
}

// An op is one step of a model case: a call, a report, a move of the
// clock or a change by hand. Cases are drawn whole before they run, so
// rapid draws and shrinks outside the synctest bubble the case runs in.
type op struct {
	kind   string
	result int           // allow and do: index into opResults
	pick   int           // report: which pending call, modulo how many there are
	d      time.Duration // do: how long the call takes; advance: how far
}

var opResults = []error{nil, errBoom, context.Canceled, errSkip, errBenign}

func drawOp(t *rapid.T) op {
	o := op{kind: rapid.SampledFrom([]string{"allow", "report", "do", "canceled", "advance", "trip", "reset", "forced", "metrics", "disable"}).Draw(t, "op")}
	switch o.kind {
	case "allow", "report":
		o.result = rapid.IntRange(0, len(opResults)-1).Draw(t, "result")
		o.pick = rapid.IntRange(0, 7).Draw(t, "pick")
	case "do", "canceled":
		o.result = rapid.IntRange(0, len(opResults)-1).Draw(t, "result")
		o.d = rapid.SampledFrom([]time.Duration{0, time.Second, 3 * time.Second}).Draw(t, "took")
	case "advance":
		o.d = rapid.SampledFrom([]time.Duration{time.Second, 3 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}).Draw(t, "d")
	}
	return o
}

// TestBreakerMatchesModel drives the breaker and the model with the same
// random ops and compares them, and the events OnStateChange was told of,
// after every op. Each case runs in a synctest
// bubble of its own: the breaker's time moves only when an op sleeps.
func TestBreakerMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := drawOptions(rt)
		// About 30 ops; a "more" of 0 ends the case, so cases shrink by
		// dropping their tails.
		ops := []op{drawOp(rt)}
		for len(ops) < 300 && rapid.IntRange(0, 29).Draw(rt, "more") > 0 {
			ops = append(ops, drawOp(rt))
		}
		var failure error
		synctest.Test(t, func(*testing.T) { failure = runModelCase(cfg, ops) })
		if failure != nil {
			rt.Fatal(failure)
		}
	})
}

// runModelCase runs ops on a new breaker and on the model, and returns how
// they first disagree.
func runModelCase(cfg jidoka.BreakerOptions, ops []op) error {
	var (
		mu     sync.Mutex // the open timer delivers events too
		events []modelEvent
	)
	cfg.OnStateChange = func(ev jidoka.Event) {
		mu.Lock()
		events = append(events, modelEvent{ev.From, ev.To, ev.Generation})
		mu.Unlock()
	}
	b, err := jidoka.NewBreaker(cfg)
	if err != nil {
		return fmt.Errorf("NewBreaker: %w", err)
	}
	m := &model{cfg: cfg, gen: 1, leases: map[int]time.Duration{}}
	var pending []pendingCall
	ctx := context.Background()
	for i, o := range ops {
		if err := m.apply(b, o, &pending, ctx); err != nil {
			return fmt.Errorf("op %d (%s): %w", i, o.kind, err)
		}
		if err := m.compare(b); err != nil {
			return fmt.Errorf("after op %d (%s): %w", i, o.kind, err)
		}
		synctest.Wait() // for an event the open timer delivers
		mu.Lock()
		same := slices.Equal(events, m.events)
		got := slices.Clone(events)
		mu.Unlock()
		if !same {
			return fmt.Errorf("after op %d (%s): events %v, model %v", i, o.kind, got, m.events)
		}
	}
	return nil
}

// apply runs o on the breaker and the model.
func (m *model) apply(b *jidoka.Breaker, o op, pending *[]pendingCall, ctx context.Context) error {
	switch o.kind {
	case "allow":
		ok, lease := m.admit()
		done, err := b.Allow(ctx)
		if ok != (err == nil) {
			return fmt.Errorf("model admits %v, breaker says %v in %v", ok, err, m.state)
		}
		if err != nil {
			if !errors.Is(err, jidoka.ErrOpen) {
				return fmt.Errorf("rejection %v does not match ErrOpen", err)
			}
			return nil
		}
		*pending = append(*pending, pendingCall{done: done, gen: m.gen, lease: lease, start: m.now})
	case "report":
		if len(*pending) == 0 {
			return nil
		}
		i := o.pick % len(*pending)
		c := (*pending)[i]
		*pending = append((*pending)[:i], (*pending)[i+1:]...)
		err := opResults[o.result]
		m.finish(c, err, false)
		c.done(err)
	case "do", "canceled":
		// canceled: the caller cancels the call's context while it runs.
		ok, lease := m.admit()
		err := opResults[o.result]
		c := pendingCall{gen: m.gen, lease: lease, start: m.now}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		got := b.Do(cctx, func(context.Context) error {
			time.Sleep(o.d)
			if o.kind == "canceled" {
				cancel()
			}
			return err
		})
		if m.state == jidoka.StateDisabled {
			if got != err {
				return fmt.Errorf("Do returned %v, want the call's %v", got, err)
			}
			m.now += o.d
			return nil
		}
		if !ok {
			if !errors.Is(got, jidoka.ErrOpen) {
				return fmt.Errorf("model rejects in %v, breaker returned %v", m.state, got)
			}
			return nil
		}
		if got != err {
			return fmt.Errorf("Do returned %v, want the call's %v", got, err)
		}
		m.now += o.d // no timer is pending while calls run
		m.finish(c, err, o.kind == "canceled")
	case "advance":
		advance(o.d)
		m.advance(o.d)
	case "trip":
		b.Trip("by hand")
		m.force(jidoka.StateOpen)
	case "reset":
		b.Reset()
		m.force(jidoka.StateClosed)
	case "forced":
		b.ForceOpen("")
		m.force(jidoka.StateForcedOpen)
	case "metrics":
		b.MetricsOnly()
		m.force(jidoka.StateMetricsOnly)
	case "disable":
		b.Disable()
		m.force(jidoka.StateDisabled)
	}
	return nil
}

// compare returns how the breaker's snapshot differs from the model.
func (m *model) compare(b *jidoka.Breaker) error {
	s := b.Snapshot()
	if s.State != m.state || s.Generation != m.gen || s.Trips != m.trips {
		return fmt.Errorf("breaker %v gen %d trips %d, model %v gen %d trips %d",
			s.State, s.Generation, s.Trips, m.state, m.gen, m.trips)
	}
	switch m.state {
	case jidoka.StateClosed, jidoka.StateMetricsOnly:
		calls, fails, slow := m.tally()
		if s.ConsecutiveFailures != m.consec || s.Calls != calls || s.Failures != fails || s.SlowCalls != slow {
			return fmt.Errorf("breaker counts %d/%d/%d/%d, model %d/%d/%d/%d (consecutive/calls/failures/slow)",
				s.ConsecutiveFailures, s.Calls, s.Failures, s.SlowCalls, m.consec, calls, fails, slow)
		}
	case jidoka.StateOpen:
		if want := time.Now().Add(m.until - m.now); !s.NextProbe.Equal(want) {
			return fmt.Errorf("next probe %v, model %v", s.NextProbe, want)
		}
	case jidoka.StateHalfOpen:
		if s.ProbeSuccesses != m.successes {
			return fmt.Errorf("probe successes %d, model %d", s.ProbeSuccesses, m.successes)
		}
	}
	return nil
}
