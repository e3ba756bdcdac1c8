package kaizen

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/taipattern/taikit/heijunka"
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
// Limiters need a unique Name: it is the label value.
type HeijunkaCollector struct {
	rate, burst, liveKeys, requests *prometheus.Desc

	mu       sync.Mutex
	limiters []*heijunka.Limiter
	keyed    []*heijunka.Keyed
	gates    map[string]*gateCounts
}

type gateCounts struct {
	admitted, limited, failed atomic.Uint64
}

// NewHeijunkaCollector creates a HeijunkaCollector and registers it with
// reg. A nil reg is an error. When reg already holds one with the same
// options, that one is returned.
func NewHeijunkaCollector(reg prometheus.Registerer, opts CollectorOptions) (*HeijunkaCollector, error) {
	const who = "NewHeijunkaCollector"
	if err := checkRegisterer(reg, who); err != nil {
		return nil, err
	}
	ns, err := opts.namespace(who)
	if err != nil {
		return nil, err
	}
	c := &HeijunkaCollector{
		rate:     opts.desc(ns, "limiter_rate", "Sustained rate of a limiter, in events per second.", "limiter"),
		burst:    opts.desc(ns, "limiter_burst", "Burst of a limiter: events admitted at once from full.", "limiter"),
		liveKeys: opts.desc(ns, "limiter_live_keys", "Keys held by a per-key limiter's in-memory store.", "limiter"),
		requests: opts.desc(ns, "limiter_requests_total", "Requests a limiter gate decided, by result (admitted, limited, error).", "limiter", "result"),
		gates:    map[string]*gateCounts{},
	}
	return register(reg, c)
}

// AddLimiter exports the limit of l. It returns an error for a nil
// limiter or a Name exported already.
func (c *HeijunkaCollector) AddLimiter(l *heijunka.Limiter) error {
	if l == nil {
		return errors.New("kaizen: AddLimiter: nil limiter")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLimiter(l.Name()); err != nil {
		return err
	}
	c.limiters = append(c.limiters, l)
	return nil
}

// AddKeyed exports the limit of k and, when its Store is a
// *heijunka.MemoryStore (or any store with a Len method), the number of
// keys it holds. It returns an error for a nil limiter or a Name exported
// already.
func (c *HeijunkaCollector) AddKeyed(k *heijunka.Keyed) error {
	if k == nil {
		return errors.New("kaizen: AddKeyed: nil limiter")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLimiter(k.Name()); err != nil {
		return err
	}
	c.keyed = append(c.keyed, k)
	return nil
}

func (c *HeijunkaCollector) checkLimiter(name string) error {
	dup := slices.ContainsFunc(c.limiters, func(x *heijunka.Limiter) bool { return x.Name() == name }) ||
		slices.ContainsFunc(c.keyed, func(x *heijunka.Keyed) bool { return x.Name() == name })
	return checkName("limiter", name, dup)
}

// Gate wraps a gate (a heijunka Limiter or Keyed, or any tai.Gate) so that
// its decisions are counted in taikit_limiter_requests_total under the
// gate's name (tai.Namer; "gate" without one): admitted, limited (the
// error matches heijunka.ErrLimited) or error (any other rejection). The
// wrapper keeps the gate's name for the pipeline's spans and errors, and
// adds one atomic increment to Admit. Gates of the same name share their
// counts.
func (c *HeijunkaCollector) Gate(g tai.Gate) tai.Gate {
	name := "gate"
	if n, ok := g.(tai.Namer); ok && n.Name() != "" {
		name = n.Name()
	}
	c.mu.Lock()
	counts := c.gates[name]
	if counts == nil {
		counts = new(gateCounts)
		c.gates[name] = counts
	}
	c.mu.Unlock()
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
	switch {
	case err == nil:
		g.counts.admitted.Add(1)
	case errors.Is(err, heijunka.ErrLimited):
		g.counts.limited.Add(1)
	default:
		g.counts.failed.Add(1)
	}
	return err
}

// Describe sends the descriptors of every metric.
func (c *HeijunkaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rate, c.burst, c.liveKeys, c.requests} {
		ch <- d
	}
}

// Collect reads every limiter and gate.
func (c *HeijunkaCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	limiters, keyed := slices.Clone(c.limiters), slices.Clone(c.keyed)
	gates := make(map[string]*gateCounts, len(c.gates))
	for k, v := range c.gates {
		gates[k] = v
	}
	c.mu.Unlock()

	limit := func(name string, l heijunka.Limit) {
		send(ch, c.rate, prometheus.GaugeValue, l.Rate, name)
		send(ch, c.burst, prometheus.GaugeValue, float64(l.Burst), name)
	}
	for _, l := range limiters {
		limit(l.Name(), l.Limit())
	}
	for _, k := range keyed {
		limit(k.Name(), k.Limit())
		if s, ok := k.Store().(interface{ Len() int }); ok {
			send(ch, c.liveKeys, prometheus.GaugeValue, float64(s.Len()), k.Name())
		}
	}
	for name, g := range gates {
		send(ch, c.requests, prometheus.CounterValue, float64(g.admitted.Load()), name, "admitted")
		send(ch, c.requests, prometheus.CounterValue, float64(g.limited.Load()), name, "limited")
		send(ch, c.requests, prometheus.CounterValue, float64(g.failed.Load()), name, "error")
	}
}
