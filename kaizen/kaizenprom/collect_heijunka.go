package kaizenprom

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/internal/utf8text"
	"github.com/taipattern/taikit/tai"
)

// HeijunkaCollector exports heijunka limiters. Their limits and live keys
// are read at every scrape; admissions are counted by the gates Gate
// returns, since a limiter keeps no counts of its own. With namespace
// "taikit":
//
//	taikit_limiter_rate{limiter}                gauge, sustained rate in events per second (+Inf: unlimited)
//	taikit_limiter_burst{limiter}               gauge, burst
//	taikit_limiter_live_keys{limiter}           gauge, keys a Keyed limiter's in-memory store holds
//	taikit_limiter_requests_total{limiter, result}  counter, result admitted, limited or error (needs Gate)
//
// Limiters need a unique Name: it is the label value. One that is
// replaced is removed first, with RemoveLimiter.
//
// Make a HeijunkaCollector with NewHeijunkaCollector. The zero
// HeijunkaCollector has no metrics: its Add methods return an error
// saying so, its Gate returns the gate as it is, uncounted, and
// registered, it exports nothing.
type HeijunkaCollector struct {
	*families
	rate, burst, liveKeys, requests *prometheus.Desc

	limiters sources[limited]

	mu    sync.Mutex // guards gates
	gates map[string]*gateCounts
}

// limited is what the collector reads of a Limiter or a Keyed.
type limited interface {
	Limit() heijunka.Limit
}

type gateCounts struct {
	admitted, limited, failed atomic.Uint64
}

// NewHeijunkaCollector creates a HeijunkaCollector and registers it with
// reg. A nil reg, or a nil *prometheus.Registry (also one behind
// prometheus.WrapRegistererWith), is an error. When reg already holds one
// with the same options, that one is returned.
func NewHeijunkaCollector(reg prometheus.Registerer, opts CollectorOptions) (*HeijunkaCollector, error) {
	f, err := newFamilies(reg, opts, "NewHeijunkaCollector", "limiter", "result")
	if err != nil {
		return nil, err
	}
	return register(reg, &HeijunkaCollector{
		families: f,
		rate:     f.desc("limiter_rate", "Sustained rate of a limiter, in events per second.", "limiter"),
		burst:    f.desc("limiter_burst", "Burst of a limiter: events admitted at once from full.", "limiter"),
		liveKeys: f.desc("limiter_live_keys", "Keys held by a per-key limiter's in-memory store.", "limiter"),
		requests: f.desc("limiter_requests_total", "Requests a limiter gate decided, by result (admitted, limited, error).", "limiter", "result"),
		gates:    map[string]*gateCounts{},
	})
}

// AddLimiter exports the limit of l. It returns an error for a nil
// limiter, an empty Name or a Name exported already (by a Limiter or a
// Keyed).
func (c *HeijunkaCollector) AddLimiter(l *heijunka.Limiter) error {
	if c.families == nil {
		return errNotMade("AddLimiter", "HeijunkaCollector")
	}
	if l == nil {
		return errNil("AddLimiter", "limiter")
	}
	return c.limiters.add("limiter", l.Name(), l)
}

// AddKeyed exports the limit of k and, when its Store is a
// *heijunka.MemoryStore (or any store with a Len method), the number of
// keys it holds. It returns an error for a nil limiter, an empty Name or
// a Name exported already (by a Limiter or a Keyed).
func (c *HeijunkaCollector) AddKeyed(k *heijunka.Keyed) error {
	if c.families == nil {
		return errNotMade("AddKeyed", "HeijunkaCollector")
	}
	if k == nil {
		return errNil("AddKeyed", "limiter")
	}
	return c.limiters.add("limiter", k.Name(), k)
}

// RemoveLimiter stops exporting the limit and live keys of the Limiter or
// Keyed named name, whose series leave the next scrape, and frees the
// name for another. It reports whether one was exported. The counts of a
// Gate of that name go on.
func (c *HeijunkaCollector) RemoveLimiter(name string) bool { return c.limiters.remove(name) }

// Gate wraps a gate (a heijunka Limiter or Keyed, or any tai.Gate) so that
// its decisions are counted in taikit_limiter_requests_total under the
// gate's name (tai.Namer; "gate" without one): admitted, limited (the
// error matches heijunka.ErrLimited) or error (any other rejection, and
// one whose chain panics when read). The wrapper keeps the gate's name
// for the pipeline's spans and errors (no name for a gate without one),
// returns the gate's error as it is, and adds one atomic increment to
// Admit. Gates of the same name share their counts. A gate this
// collector's Gate returned is returned as it is, not counted twice. A
// name that is not valid UTF-8 is counted with U+FFFD in place of its bad
// bytes, as Metrics does with a Kind.
//
// A nil g, or a nil pointer or func in it (a limiter left unset), is
// returned as it is, unwrapped, so that tai.New refuses it as a nil gate:
// wrapped, it would pass for a gate and fail every signal.
func (c *HeijunkaCollector) Gate(g tai.Gate) tai.Gate {
	if g == nil || typednil.Holds(g) || c.families == nil {
		return g
	}
	var name string // the gate's own: "" when it has none, as tai takes it
	if n, ok := g.(tai.Namer); ok {
		name = n.Name()
	}
	label := utf8text.Clean(cmp.Or(name, "gate"))
	c.mu.Lock()
	counts := c.gates[label]
	if counts == nil {
		counts = new(gateCounts)
		c.gates[label] = counts
	}
	c.mu.Unlock()
	if cg, ok := g.(*countingGate); ok && cg.counts == counts {
		return g // counted here already: wrapped again, it would count twice
	}
	return &countingGate{gate: g, name: name, counts: counts}
}

type countingGate struct {
	gate   tai.Gate
	name   string
	counts *gateCounts
}

func (g *countingGate) Name() string { return g.name }

func (g *countingGate) Admit(ctx context.Context, key string) error {
	err := g.gate.Admit(ctx, key)
	if err == nil {
		g.counts.admitted.Add(1)
		return nil
	}
	g.counts.reject(err)
	return err
}

// reject counts err, a gate's rejection, as limited or as an error.
// Reading its chain may panic (a typed nil whose Unwrap or Is reads its
// receiver): it is then counted as an error, and the rejection goes on to
// the pipeline as it would from the gate unwrapped, rather than turn into
// a panic of the gate.
func (c *gateCounts) reject(err error) {
	read := false
	defer func() {
		if !read {
			_ = recover()
			c.failed.Add(1)
		}
	}()
	limited := errors.Is(err, heijunka.ErrLimited)
	read = true
	if limited {
		c.limited.Add(1)
	} else {
		c.failed.Add(1)
	}
}

// Collect reads every limiter and gate. A Store's Len that panics or
// calls runtime.Goexit leaves limiter_live_keys of its limiter out of the
// scrape, which goes on with the rest.
func (c *HeijunkaCollector) Collect(ch chan<- prometheus.Metric) {
	if c.families == nil {
		return
	}
	for _, l := range c.limiters.list() {
		lim := l.src.Limit()
		send(ch, c.rate, prometheus.GaugeValue, lim.Rate, l.name)
		send(ch, c.burst, prometheus.GaugeValue, float64(lim.Burst), l.name)
		if k, ok := l.src.(*heijunka.Keyed); ok {
			// A Store's Len is the program's code: one that panics
			// or calls runtime.Goexit leaves the series out rather
			// than end the process or hang the scrape.
			var n int
			if s, ok := k.Store().(interface{ Len() int }); ok && !fails(func() { n = s.Len() }) {
				send(ch, c.liveKeys, prometheus.GaugeValue, float64(n), l.name)
			}
		}
	}
	c.mu.Lock()
	gates := make(map[string]*gateCounts, len(c.gates))
	for k, v := range c.gates {
		gates[k] = v
	}
	c.mu.Unlock()
	for name, g := range gates {
		send(ch, c.requests, prometheus.CounterValue, float64(g.admitted.Load()), name, "admitted")
		send(ch, c.requests, prometheus.CounterValue, float64(g.limited.Load()), name, "limited")
		send(ch, c.requests, prometheus.CounterValue, float64(g.failed.Load()), name, "error")
	}
}
