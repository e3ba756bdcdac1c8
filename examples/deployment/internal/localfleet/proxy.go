package localfleet

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// region is one service in one region: its versions' processes and the
// weighted reverse proxy in front of them.
type region struct {
	service, name string
	url           string // the proxy's
	srv           *http.Server
	served        chan struct{} // closed when srv.Serve has returned
	log           *slog.Logger

	// deploys counts the Deploys that hold the region (running or
	// waiting for ops), guarded by Fleet.mu: the last one to leave closes
	// the proxy if nothing is deployed.
	deploys int
	// gone is set, guarded by Fleet.mu, once the proxy is closed and the
	// region forgotten because nothing is deployed there any more.
	gone bool

	// ops serializes Deploy and Retire here, which take long (starting
	// processes, draining); the proxy and Route do not wait for it.
	ops sync.Mutex

	// mu guards what the proxy reads. Retire removes a version under it
	// only once the route sends it nothing, and the proxy counts a request
	// in flight before it lets go, so a retired version's in-flight count
	// only falls.
	mu       sync.RWMutex
	versions map[string]*release
	route    *route // nil until the first Route
}

// release is one version's processes in a region, and what its traffic
// through the proxy looked like.
type release struct {
	name     string
	procs    []*process // guarded by region.mu
	next     atomic.Uint64
	inflight inflight
	stats    *window
}

// listen starts the region's proxy on a loopback port.
func (g *region) listen() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	g.url = "http://" + ln.Addr().String()
	g.srv = &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	g.served = make(chan struct{})
	go func() {
		defer close(g.served)
		_ = g.srv.Serve(ln)
	}()
	return nil
}

// PreviewHeader, in a request to a proxy, names a version of the
// region's service for the request to go to, whatever the route gives
// that version: a version that takes no share of the traffic (a
// blue-green deployment's new set while it is analysed) is tried on
// such requests, which Sample counts as the version's. A request that
// names a version not deployed in the region is answered 404.
const PreviewHeader = "Preview-Version"

// ServeHTTP forwards the request to an instance of the version the route
// picks, or of the one it names in PreviewHeader, and records how it
// went. With every instance of the version exited it answers 502 itself.
func (g *region) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	version := r.Header.Get(PreviewHeader)
	v, pr := g.pick(version)
	if v == nil {
		if version != "" {
			http.Error(w, "version "+version+" of "+g.service+" is not deployed in "+g.name, http.StatusNotFound)
			return
		}
		http.Error(w, "no version of "+g.service+" is routed in "+g.name, http.StatusServiceUnavailable)
		return
	}
	defer v.inflight.done()
	start := time.Now()
	if pr == nil {
		// Every instance has exited: their ports may be other processes'
		// by now, which must not answer for the version.
		g.log.Warn("no instance running", "version", v.name)
		http.Error(w, "no instance of version "+v.name+" of "+g.service+" runs in "+g.name, http.StatusBadGateway)
		end := time.Now()
		v.stats.record(end, http.StatusBadGateway, end.Sub(start))
		return
	}
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	defer func() {
		// The proxy panics with http.ErrAbortHandler when an answer breaks
		// off midway: the request failed, whatever status it began with.
		if p := recover(); p != nil {
			code := http.StatusBadGateway
			if r.Context().Err() != nil {
				code = statusClientGone
			}
			end := time.Now()
			v.stats.record(end, code, end.Sub(start))
			panic(p)
		}
	}()
	pr.proxy.ServeHTTP(rec, r)
	end := time.Now()
	v.stats.record(end, rec.code, end.Sub(start))
}

// pick chooses the version, version if not "" and else by the route, and
// an instance of it round robin, skipping exited ones, counting the
// request in flight for the version. It returns nil if the route sends
// traffic nowhere, or version is not deployed, and a nil process if every
// instance of the version has exited.
func (g *region) pick(version string) (*release, *process) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var v *release
	switch {
	case version != "":
		v = g.versions[version]
	case g.route != nil:
		v = g.route.pick()
	}
	if v == nil || len(v.procs) == 0 {
		return nil, nil
	}
	n := v.next.Add(1)
	var pr *process
	for i := range uint64(len(v.procs)) {
		if p := v.procs[(n+i)%uint64(len(v.procs))]; !p.exited() {
			pr = p
			break
		}
	}
	v.inflight.add()
	return v, pr
}

// recorder remembers the status code a response was given.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// statusClientGone is recorded for a request whose client left before an
// instance answered: not the instance's failure.
const statusClientGone = 499

// proxyError answers 502 when an instance cannot be reached.
func proxyError(log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if r.Context().Err() != nil {
			w.WriteHeader(statusClientGone)
			return
		}
		log.Warn("instance unreachable", "err", err)
		w.WriteHeader(http.StatusBadGateway)
	}
}

// route splits traffic between two versions by smooth weighted round
// robin: a fixed schedule, one period of which gives each version exactly
// its share, spread as evenly as the weights allow (25% is S S N S, over
// and over). Requests take the schedule's slots in turn.
type route struct {
	stable, next string
	weights      [2]int      // stable's and next's, in hundredths of a percent
	versions     [2]*release // nil where the weight is 0
	schedule     []uint8     // indexes into versions
	n            atomic.Uint64
}

// percentScale is the weights' unit: hundredths of a percent.
const percentScale = 100

// newRoute returns a route giving percent to next and the rest to stable.
func newRoute(stable, next string, percent float64) *route {
	wn := int(percent*percentScale + 0.5)
	r := &route{stable: stable, next: next, weights: [2]int{100*percentScale - wn, wn}}
	r.schedule = schedule(r.weights)
	return r
}

// pick returns the version for the next request.
func (r *route) pick() *release {
	i := r.n.Add(1) - 1
	return r.versions[r.schedule[i%uint64(len(r.schedule))]]
}

// weight returns the share in hundredths of a percent the route gives
// version.
func (r *route) weight(version string) int {
	w := 0
	if r.stable == version {
		w += r.weights[0]
	}
	if r.next == version {
		w += r.weights[1]
	}
	return w
}

// schedule returns one period of smooth weighted round robin over two
// weights, not both zero: each step adds every weight to its current
// value and picks the largest (the first on a tie), which then gives back
// the total. The period is the total over the weights' greatest common
// divisor.
func schedule(weights [2]int) []uint8 {
	g := gcd(weights[0], weights[1])
	w := [2]int{weights[0] / g, weights[1] / g}
	total := w[0] + w[1]
	out := make([]uint8, total)
	var current [2]int
	for i := range out {
		current[0] += w[0]
		current[1] += w[1]
		pick := uint8(0)
		if current[1] > current[0] {
			pick = 1
		}
		current[pick] -= total
		out[i] = pick
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// inflight counts requests being answered and lets a caller wait for none.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n falls to 0; nil unless someone waits
}

func (c *inflight) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *inflight) done() {
	c.mu.Lock()
	c.n--
	if c.n == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
}

func (c *inflight) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// wait returns once no request is in flight, or when ctx ends with the
// number still in flight and ctx's error.
func (c *inflight) wait(ctx context.Context) (int, error) {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return 0, nil
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return 0, nil
	case <-ctx.Done():
		return c.count(), ctx.Err()
	}
}
