package kaizen

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/taipattern/taikit/jidoka"
)

// JidokaCollector exports the state of jidoka breakers, lines and
// watchdogs, read at every scrape (so a series exists from the first
// scrape, not only after a change). With namespace "taikit":
//
//	taikit_breaker_state{breaker, state}        gauge, 1 for the current state, 0 for the others
//	taikit_breaker_transitions_total{breaker}   counter, state changes (Snapshot.Generation - 1)
//	taikit_breaker_failure_ratio{breaker}       gauge, failures / calls in the window
//	taikit_breaker_slow_call_ratio{breaker}     gauge, slow calls / calls in the window
//	taikit_line_stopped{line}                   gauge, 1 while the line is stopped
//	taikit_line_stops_total{line}               counter, stops
//	taikit_watchdog_healthy{watchdog}           gauge, 1 while healthy
//	taikit_watchdog_checks_total{watchdog}      counter, checks run
//
// Every breaker, line and watchdog needs a unique, non-empty Name: it is
// the label value.
type JidokaCollector struct {
	state, transitions, failureRatio, slowRatio *prometheus.Desc
	stopped, stops                              *prometheus.Desc
	healthy, checks                             *prometheus.Desc

	mu        sync.Mutex
	breakers  []*jidoka.Breaker
	lines     []*jidoka.Line
	watchdogs []*jidoka.Watchdog
}

var breakerStates = []jidoka.State{
	jidoka.StateClosed, jidoka.StateHalfOpen, jidoka.StateOpen,
	jidoka.StateForcedOpen, jidoka.StateDisabled, jidoka.StateMetricsOnly,
}

// NewJidokaCollector creates a JidokaCollector and registers it with reg.
// A nil reg is an error. When reg already holds a JidokaCollector with the
// same options, that one is returned, so breakers added through either
// are exported once.
func NewJidokaCollector(reg prometheus.Registerer, opts CollectorOptions) (*JidokaCollector, error) {
	const who = "NewJidokaCollector"
	if err := checkRegisterer(reg, who); err != nil {
		return nil, err
	}
	ns, err := opts.namespace(who)
	if err != nil {
		return nil, err
	}
	c := &JidokaCollector{
		state:        opts.desc(ns, "breaker_state", "State of a circuit breaker: 1 for the current state, 0 for the others.", "breaker", "state"),
		transitions:  opts.desc(ns, "breaker_transitions_total", "State changes of a circuit breaker.", "breaker"),
		failureRatio: opts.desc(ns, "breaker_failure_ratio", "Failed calls over calls in the breaker's window.", "breaker"),
		slowRatio:    opts.desc(ns, "breaker_slow_call_ratio", "Slow calls over calls in the breaker's window.", "breaker"),
		stopped:      opts.desc(ns, "line_stopped", "1 while the line is stopped, 0 while it runs.", "line"),
		stops:        opts.desc(ns, "line_stops_total", "Stops of the line.", "line"),
		healthy:      opts.desc(ns, "watchdog_healthy", "1 while the watchdog is healthy, 0 when it is not.", "watchdog"),
		checks:       opts.desc(ns, "watchdog_checks_total", "Health checks the watchdog ran.", "watchdog"),
	}
	return register(reg, c)
}

// AddBreaker exports b. It returns an error if b is nil, has no Name, or
// a breaker of the same Name is exported already.
func (c *JidokaCollector) AddBreaker(b *jidoka.Breaker) error {
	if b == nil {
		return errors.New("kaizen: AddBreaker: nil breaker")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkName("breaker", b.Name(), slices.ContainsFunc(c.breakers, func(x *jidoka.Breaker) bool { return x.Name() == b.Name() })); err != nil {
		return err
	}
	c.breakers = append(c.breakers, b)
	return nil
}

// AddLine exports l. It returns an error if l is nil, has no Name, or a
// line of the same Name is exported already.
func (c *JidokaCollector) AddLine(l *jidoka.Line) error {
	if l == nil {
		return errors.New("kaizen: AddLine: nil line")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkName("line", l.Name(), slices.ContainsFunc(c.lines, func(x *jidoka.Line) bool { return x.Name() == l.Name() })); err != nil {
		return err
	}
	c.lines = append(c.lines, l)
	return nil
}

// AddWatchdog exports w. It returns an error if w is nil, has no Name, or
// a watchdog of the same Name is exported already.
func (c *JidokaCollector) AddWatchdog(w *jidoka.Watchdog) error {
	if w == nil {
		return errors.New("kaizen: AddWatchdog: nil watchdog")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkName("watchdog", w.Name(), slices.ContainsFunc(c.watchdogs, func(x *jidoka.Watchdog) bool { return x.Name() == w.Name() })); err != nil {
		return err
	}
	c.watchdogs = append(c.watchdogs, w)
	return nil
}

// checkName rejects an empty or duplicate label value.
func checkName(what, name string, dup bool) error {
	switch {
	case name == "":
		return fmt.Errorf("kaizen: the %s has no Name; the collector labels its series with it", what)
	case dup:
		return fmt.Errorf("kaizen: a %s named %q is collected already", what, name)
	}
	return nil
}

// Describe sends the descriptors of every metric.
func (c *JidokaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.transitions, c.failureRatio, c.slowRatio, c.stopped, c.stops, c.healthy, c.checks} {
		ch <- d
	}
}

// Collect reads every breaker, line and watchdog.
func (c *JidokaCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	breakers, lines, watchdogs := slices.Clone(c.breakers), slices.Clone(c.lines), slices.Clone(c.watchdogs)
	c.mu.Unlock()

	for _, b := range breakers {
		s := b.Snapshot()
		name := b.Name()
		for _, st := range breakerStates {
			send(ch, c.state, prometheus.GaugeValue, boolValue(st == s.State), name, st.String())
		}
		// A new breaker is in generation 1; each change adds one.
		send(ch, c.transitions, prometheus.CounterValue, float64(max(s.Generation, 1)-1), name)
		send(ch, c.failureRatio, prometheus.GaugeValue, s.FailureRate, name)
		send(ch, c.slowRatio, prometheus.GaugeValue, s.SlowCallRate, name)
	}
	for _, l := range lines {
		st := l.Status()
		send(ch, c.stopped, prometheus.GaugeValue, boolValue(st.Stopped), l.Name())
		send(ch, c.stops, prometheus.CounterValue, float64(st.Stops), l.Name())
	}
	for _, w := range watchdogs {
		st := w.Status()
		send(ch, c.healthy, prometheus.GaugeValue, boolValue(st.Healthy), w.Name())
		send(ch, c.checks, prometheus.CounterValue, float64(st.Checks), w.Name())
	}
}
