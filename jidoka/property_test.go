package jidoka_test

import (
	"context"
	"errors"
	"testing"
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
	cfg       jidoka.Config
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
}

// pendingCall is a call admitted by Allow whose result is not reported yet.
type pendingCall struct {
	done  func(error)
	gen   uint64
	lease int // 0 outside half-open
	start time.Duration
}

func (m *model) enter(to jidoka.State) {
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
	case jidoka.StateClosed:
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

func (m *model) finish(c pendingCall, err error) {
	if c.gen != m.gen {
		return
	}
	canceled := errors.Is(err, context.Canceled)
	failed := err != nil && !canceled
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

func drawConfig(t *rapid.T) jidoka.Config {
	cfg := jidoka.Config{
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
	return cfg
}

func TestBreakerMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := drawConfig(t)
		clock := newManualClock()
		cfg.Clock = clock
		b, err := jidoka.NewBreaker(cfg)
		if err != nil {
			t.Fatalf("NewBreaker: %v", err)
		}
		m := &model{cfg: cfg, gen: 1, leases: map[int]time.Duration{}}
		var pending []pendingCall
		ctx := context.Background()
		results := []error{nil, errBoom, context.Canceled}

		t.Repeat(map[string]func(*rapid.T){
			"allow": func(t *rapid.T) {
				ok, lease := m.admit()
				done, err := b.Allow(ctx)
				if ok != (err == nil) {
					t.Fatalf("model admits %v, breaker says %v in %v", ok, err, m.state)
				}
				if err != nil {
					if !errors.Is(err, jidoka.ErrOpen) {
						t.Fatalf("rejection %v does not match ErrOpen", err)
					}
					return
				}
				pending = append(pending, pendingCall{done: done, gen: m.gen, lease: lease, start: m.now})
			},
			"report": func(t *rapid.T) {
				if len(pending) == 0 {
					t.Skip("nothing in flight")
				}
				i := rapid.IntRange(0, len(pending)-1).Draw(t, "call")
				c := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				err := rapid.SampledFrom(results).Draw(t, "result")
				m.finish(c, err)
				c.done(err)
			},
			"do": func(t *rapid.T) {
				ok, lease := m.admit()
				err := rapid.SampledFrom(results).Draw(t, "result")
				took := rapid.SampledFrom([]time.Duration{0, time.Second, 3 * time.Second}).Draw(t, "took")
				c := pendingCall{gen: m.gen, lease: lease, start: m.now}
				got := b.Do(ctx, func(context.Context) error { clock.Advance(took); return err })
				if !ok {
					if !errors.Is(got, jidoka.ErrOpen) {
						t.Fatalf("model rejects in %v, breaker returned %v", m.state, got)
					}
					return
				}
				if got != err {
					t.Fatalf("Do returned %v, want the call's %v", got, err)
				}
				m.now += took // no timer is pending while calls run
				m.finish(c, err)
			},
			"advance": func(t *rapid.T) {
				d := rapid.SampledFrom([]time.Duration{time.Second, 3 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}).Draw(t, "d")
				clock.Advance(d)
				m.advance(d)
			},
			"trip":   func(*rapid.T) { b.Trip("by hand"); m.force(jidoka.StateOpen) },
			"reset":  func(*rapid.T) { b.Reset(); m.force(jidoka.StateClosed) },
			"forced": func(*rapid.T) { b.ForceOpen(""); m.force(jidoka.StateForcedOpen) },
			"metrics": func(*rapid.T) {
				b.MetricsOnly()
				m.force(jidoka.StateMetricsOnly)
			},
			"": func(t *rapid.T) {
				s := b.Snapshot()
				if s.State != m.state || s.Generation != m.gen || s.Trips != m.trips {
					t.Fatalf("breaker %v gen %d trips %d, model %v gen %d trips %d",
						s.State, s.Generation, s.Trips, m.state, m.gen, m.trips)
				}
				switch m.state {
				case jidoka.StateClosed, jidoka.StateMetricsOnly:
					calls, fails, slow := m.tally()
					if s.ConsecutiveFailures != m.consec || s.Calls != calls || s.Failures != fails || s.SlowCalls != slow {
						t.Fatalf("breaker counts %d/%d/%d/%d, model %d/%d/%d/%d (consecutive/calls/failures/slow)",
							s.ConsecutiveFailures, s.Calls, s.Failures, s.SlowCalls, m.consec, calls, fails, slow)
					}
				case jidoka.StateOpen:
					if want := clock.Now().Add(m.until - m.now); !s.NextProbe.Equal(want) {
						t.Fatalf("next probe %v, model %v", s.NextProbe, want)
					}
				case jidoka.StateHalfOpen:
					if s.ProbeSuccesses != m.successes {
						t.Fatalf("probe successes %d, model %d", s.ProbeSuccesses, m.successes)
					}
				}
			},
		})
	})
}
