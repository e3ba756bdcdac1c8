package kaizenprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taipattern/taikit/jidoka"
)

// JidokaCollector exports the state of jidoka breakers, lines and
// watchdogs, read at every scrape (so a series exists from the first
// scrape, not only after a change). With namespace "taikit":
//
//	taikit_breaker_state{breaker, state}        gauge, 1 for the current state, 0 for the others
//	taikit_breaker_transitions_total{breaker}   counter, state changes and Resets (Snapshot.Generation - 1)
//	taikit_breaker_failure_ratio{breaker}       gauge, failures / calls in the window
//	taikit_breaker_slow_call_ratio{breaker}     gauge, slow calls / calls in the window
//	taikit_line_stopped{line}                   gauge, 1 while the line is stopped
//	taikit_line_stops_total{line}               counter, stops
//	taikit_watchdog_healthy{watchdog}           gauge, 1 while healthy
//	taikit_watchdog_checks_total{watchdog}      counter, checks run
//
// breaker_transitions_total reads the breaker's generation, which a Reset
// of a closed breaker also starts (it clears the counts, and changes no
// state): it counts such a Reset as one, though the breaker delivers no
// Event for it.
//
// Every breaker, line and watchdog needs a unique, non-empty Name: it is
// the label value. One that is replaced (on a configuration reload) is
// removed first, with RemoveBreaker, RemoveLine or RemoveWatchdog: the
// collector holds what it exports until then.
//
// Make a JidokaCollector with NewJidokaCollector. The zero
// JidokaCollector has no metrics: its Add methods return an error saying
// so, and registered, it exports nothing.
type JidokaCollector struct {
	*families
	state, transitions, failureRatio, slowRatio *prometheus.Desc
	stopped, stops                              *prometheus.Desc
	healthy, checks                             *prometheus.Desc

	breakers  sources[*jidoka.Breaker]
	lines     sources[*jidoka.Line]
	watchdogs sources[*jidoka.Watchdog]
}

var breakerStates = []jidoka.State{
	jidoka.StateClosed, jidoka.StateHalfOpen, jidoka.StateOpen,
	jidoka.StateForcedOpen, jidoka.StateDisabled, jidoka.StateMetricsOnly,
}

// NewJidokaCollector creates a JidokaCollector and registers it with reg.
// A nil reg, or a nil *prometheus.Registry (also one behind
// prometheus.WrapRegistererWith), is an error. When reg already holds a
// JidokaCollector with the same options, that one is returned, so
// breakers added through either are exported once.
func NewJidokaCollector(reg prometheus.Registerer, opts CollectorOptions) (*JidokaCollector, error) {
	f, err := newFamilies(reg, opts, "NewJidokaCollector", "breaker", "state", "line", "watchdog")
	if err != nil {
		return nil, err
	}
	return register(reg, &JidokaCollector{
		families:     f,
		state:        f.desc("breaker_state", "State of a circuit breaker: 1 for the current state, 0 for the others.", "breaker", "state"),
		transitions:  f.desc("breaker_transitions_total", "State changes of a circuit breaker, and Resets of a closed one (which clear its counts).", "breaker"),
		failureRatio: f.desc("breaker_failure_ratio", "Failed calls over calls in the breaker's window.", "breaker"),
		slowRatio:    f.desc("breaker_slow_call_ratio", "Slow calls over calls in the breaker's window.", "breaker"),
		stopped:      f.desc("line_stopped", "1 while the line is stopped, 0 while it runs.", "line"),
		stops:        f.desc("line_stops_total", "Stops of the line.", "line"),
		healthy:      f.desc("watchdog_healthy", "1 while the watchdog is healthy, 0 when it is not.", "watchdog"),
		checks:       f.desc("watchdog_checks_total", "Health checks the watchdog ran.", "watchdog"),
	})
}

// AddBreaker exports b. It returns an error if b is nil, has no Name, or
// a breaker of the same Name is exported already.
func (c *JidokaCollector) AddBreaker(b *jidoka.Breaker) error {
	if c.families == nil {
		return errNotMade("AddBreaker", "JidokaCollector")
	}
	if b == nil {
		return errNil("AddBreaker", "breaker")
	}
	return c.breakers.add("breaker", b.Name(), b)
}

// AddLine exports l. It returns an error if l is nil, has no Name, or a
// line of the same Name is exported already.
func (c *JidokaCollector) AddLine(l *jidoka.Line) error {
	if c.families == nil {
		return errNotMade("AddLine", "JidokaCollector")
	}
	if l == nil {
		return errNil("AddLine", "line")
	}
	return c.lines.add("line", l.Name(), l)
}

// AddWatchdog exports w. It returns an error if w is nil, has no Name, or
// a watchdog of the same Name is exported already.
func (c *JidokaCollector) AddWatchdog(w *jidoka.Watchdog) error {
	if c.families == nil {
		return errNotMade("AddWatchdog", "JidokaCollector")
	}
	if w == nil {
		return errNil("AddWatchdog", "watchdog")
	}
	return c.watchdogs.add("watchdog", w.Name(), w)
}

// RemoveBreaker stops exporting the breaker named name, whose series
// leave the next scrape, and frees the name for another breaker. It
// reports whether one was exported.
func (c *JidokaCollector) RemoveBreaker(name string) bool { return c.breakers.remove(name) }

// RemoveLine stops exporting the line named name, whose series leave the
// next scrape, and frees the name for another line. It reports whether
// one was exported.
func (c *JidokaCollector) RemoveLine(name string) bool { return c.lines.remove(name) }

// RemoveWatchdog stops exporting the watchdog named name, whose series
// leave the next scrape, and frees the name for another watchdog. It
// reports whether one was exported.
func (c *JidokaCollector) RemoveWatchdog(name string) bool { return c.watchdogs.remove(name) }

// Collect reads every breaker, line and watchdog.
func (c *JidokaCollector) Collect(ch chan<- prometheus.Metric) {
	if c.families == nil {
		return
	}
	for _, b := range c.breakers.list() {
		s := b.src.Snapshot()
		for _, st := range breakerStates {
			send(ch, c.state, prometheus.GaugeValue, boolValue(st == s.State), b.name, st.String())
		}
		// A new breaker is in generation 1; each change adds one.
		send(ch, c.transitions, prometheus.CounterValue, float64(max(s.Generation, 1)-1), b.name)
		send(ch, c.failureRatio, prometheus.GaugeValue, s.FailureRate, b.name)
		send(ch, c.slowRatio, prometheus.GaugeValue, s.SlowCallRate, b.name)
	}
	for _, l := range c.lines.list() {
		st := l.src.Status()
		send(ch, c.stopped, prometheus.GaugeValue, boolValue(st.Stopped), l.name)
		send(ch, c.stops, prometheus.CounterValue, float64(st.Stops), l.name)
	}
	for _, w := range c.watchdogs.list() {
		st := w.src.Status()
		send(ch, c.healthy, prometheus.GaugeValue, boolValue(st.Healthy), w.name)
		send(ch, c.checks, prometheus.CounterValue, float64(st.Checks), w.name)
	}
}
