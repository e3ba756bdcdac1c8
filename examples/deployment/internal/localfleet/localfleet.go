// Package localfleet is a fleet.Target and fleet.Health made of real local
// processes: each version of a service in a region runs as demoapp
// processes on loopback ports, and each service and region gets a reverse
// proxy on a loopback port of its own that splits requests between the
// stable and the next version by weight. Curl the proxy (ProxyURL) and
// watch the answers move from v1 to v2 as a rollout proceeds.
//
// Health is measured at the proxy: requests, the share answered 5xx and
// the p99 latency of each version, over the last seconds, with CPU and
// memory read from /proc. It needs Linux.
//
// A Fleet owns processes and goroutines; Shutdown stops them all.
package localfleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

var (
	_ fleet.Target = (*Fleet)(nil)
	_ fleet.Health = (*Fleet)(nil)
)

// ErrClosed is returned by a Fleet's methods after Shutdown.
var ErrClosed = errors.New("localfleet: fleet is shut down")

// ErrNotDeployed is returned (wrapped) when a call names a version, or a
// service in a region, that is not deployed.
var ErrNotDeployed = errors.New("localfleet: not deployed")

// AppProfile is how a version of the demoapp behaves: the knobs that make
// a bad version look bad.
type AppProfile struct {
	ErrorRate   float64       // share of requests answered 500, in [0, 1]
	Latency     time.Duration // delay added to every request
	SlowRate    float64       // share of requests delayed by SlowLatency instead, in [0, 1]
	SlowLatency time.Duration
}

func (p AppProfile) validate() error {
	if !(p.ErrorRate >= 0 && p.ErrorRate <= 1) {
		return fmt.Errorf("ErrorRate %v is not in [0, 1]", p.ErrorRate)
	}
	if !(p.SlowRate >= 0 && p.SlowRate <= 1) {
		return fmt.Errorf("SlowRate %v is not in [0, 1]", p.SlowRate)
	}
	if p.Latency < 0 || p.SlowLatency < 0 {
		return fmt.Errorf("latencies %v and %v must not be negative", p.Latency, p.SlowLatency)
	}
	return nil
}

// Options configure a Fleet. Every zero field but Binary has a default.
type Options struct {
	// Binary is the path of a built demoapp (see Build). Required.
	Binary string
	// Profile gives a version's knobs when Deploy starts it. Nil: every
	// version answers at once and never fails.
	Profile func(service, version, region string) (AppProfile, error)
	// Instances caps the processes per version of service: Deploy starts
	// min(instances, Instances(service)). Nil: a cap of 1, as each is a
	// real process.
	Instances func(service string) int
	// Window is the longest window Sample answers for; the proxy keeps
	// that many seconds of counts per version. Default 5 minutes.
	Window time.Duration
	// MemoryLimit is what memory shares are of, in bytes per process.
	// Default 256 MiB.
	MemoryLimit float64
	// StartTimeout bounds how long a process may take to print its
	// address and answer /healthz. Default 10s.
	StartTimeout time.Duration
	// StopGrace is how long a process has to exit after SIGTERM before
	// SIGKILL. Default 5s.
	StopGrace time.Duration
	// Drain bounds how long Retire waits for requests in flight to the
	// version. Default 30s.
	Drain time.Duration
	// Logger receives process starts and stops, and proxy errors. Nil:
	// discard.
	Logger *slog.Logger
	// OnExit, if set, is called when a process the fleet started has
	// exited, whatever ended it (a crash, Retire, Shutdown, a Deploy it
	// failed), once Instances no longer lists it. It is called from a
	// goroutine of the process's own, and Shutdown waits for it.
	OnExit func(service, region, version string)
}

// Fleet runs demoapp processes and the proxies in front of them. Its
// methods are safe for concurrent use, and each of Deploy, Route and
// Retire is idempotent.
type Fleet struct {
	o         Options
	log       *slog.Logger
	transport *http.Transport

	mu      sync.Mutex
	regions map[regionKey]*region
	closed  bool

	waiters sync.WaitGroup // a goroutine per process, until it is reaped and OnExit returned
	quit    chan struct{}  // closed by Shutdown to stop the CPU sampler
	sampled chan struct{}  // closed when the sampler has stopped
	down    chan struct{}  // closed when Shutdown has finished
}

type regionKey struct{ service, region string }

// New returns a Fleet that runs o.Binary. It starts nothing until Deploy.
func New(o Options) (*Fleet, error) {
	if o.Binary == "" {
		return nil, errors.New("localfleet: Options.Binary is required")
	}
	if st, err := os.Stat(o.Binary); err != nil {
		return nil, fmt.Errorf("localfleet: Options.Binary: %w", err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("localfleet: Options.Binary %s is not an executable file", o.Binary)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return nil, fmt.Errorf("localfleet: needs Linux /proc to measure processes: %w", err)
	}
	for _, d := range []struct {
		name  string
		value *time.Duration
		def   time.Duration
	}{
		{"Window", &o.Window, 5 * time.Minute},
		{"StartTimeout", &o.StartTimeout, 10 * time.Second},
		{"StopGrace", &o.StopGrace, 5 * time.Second},
		{"Drain", &o.Drain, 30 * time.Second},
	} {
		if *d.value < 0 {
			return nil, fmt.Errorf("localfleet: Options.%s %v is negative", d.name, *d.value)
		}
		if *d.value == 0 {
			*d.value = d.def
		}
	}
	if o.Window < time.Second {
		return nil, fmt.Errorf("localfleet: Options.Window %v is less than a second", o.Window)
	}
	if o.MemoryLimit == 0 {
		o.MemoryLimit = 256 << 20
	}
	if !(o.MemoryLimit > 0) || math.IsInf(o.MemoryLimit, 0) {
		return nil, fmt.Errorf("localfleet: Options.MemoryLimit %v is not a positive number of bytes", o.MemoryLimit)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{
		o:   o,
		log: log,
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256, // the proxy keeps connections to instances open under load
			IdleConnTimeout:     90 * time.Second,
		},
		regions: make(map[regionKey]*region),
		quit:    make(chan struct{}),
		sampled: make(chan struct{}),
		down:    make(chan struct{}),
	}
	go f.sampleCPU()
	return f, nil
}

// Build compiles the demoapp into dir and returns the binary's path. It
// needs the go command and this module's source, as in a checkout.
func Build(ctx context.Context, dir string) (string, error) {
	out, err := filepath.Abs(filepath.Join(dir, "demoapp"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/taipattern/taikit/examples/deployment/demoapp")
	// Build from this module's source directory if it is there, so the
	// caller's working directory does not matter.
	if _, file, _, ok := runtime.Caller(0); ok {
		if src := filepath.Join(filepath.Dir(file), "..", ".."); isDir(src) {
			cmd.Dir = src
		}
	}
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("localfleet: go build demoapp: %w\n%s", err, output)
	}
	return out, nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// Deploy makes sure version of service runs in region on min(instances,
// Options.Instances(service)) processes, starting those missing (none
// running, or exited), and that the service's proxy in region listens. It
// returns once every process answers /healthz. It never stops processes.
func (f *Fleet) Deploy(ctx context.Context, service, region, version string, instances int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkNames(service, region, version); err != nil {
		return err
	}
	if instances < 1 {
		return fmt.Errorf("localfleet: deploy %s of %s in %s: instances %d is less than 1", version, service, region, instances)
	}
	want := 1
	if f.o.Instances != nil {
		want = f.o.Instances(service)
		if want < 1 {
			return fmt.Errorf("localfleet: Options.Instances(%q) is %d, less than 1", service, want)
		}
	}
	want = min(want, instances)

	g, err := f.region(service, region)
	if err != nil {
		return err
	}
	g.ops.Lock()
	defer g.ops.Unlock()
	defer f.leave(g)
	if f.isClosed() {
		return ErrClosed
	}
	g.mu.RLock()
	v := g.versions[version]
	var running []*process
	if v != nil {
		for _, pr := range v.procs {
			if !pr.exited() {
				running = append(running, pr)
			}
		}
	}
	g.mu.RUnlock()
	if len(running) >= want {
		return nil
	}

	var profile AppProfile
	if f.o.Profile != nil {
		if profile, err = f.o.Profile(service, version, region); err != nil {
			return fmt.Errorf("localfleet: profile of %s of %s in %s: %w", version, service, region, err)
		}
	}
	if err := profile.validate(); err != nil {
		return fmt.Errorf("localfleet: profile of %s of %s in %s: %w", version, service, region, err)
	}
	var started []*process
	for len(running)+len(started) < want {
		pr, err := f.startProcess(ctx, service, region, version, profile)
		if err != nil {
			f.stopAll(started, g.log)
			return fmt.Errorf("localfleet: deploy: %w", err)
		}
		started = append(started, pr)
	}

	g.mu.Lock()
	if v == nil {
		v = &release{name: version, stats: newWindow(f.o.Window)}
		g.versions[version] = v
	}
	v.procs = append(running, started...)
	g.mu.Unlock()
	return nil
}

// Route sends percent of service's requests in region through its proxy
// to next and the rest to stable, at once for every request that has not
// yet been forwarded. Shares are exact to a hundredth of a percent and
// deterministic: requests take turns by smooth weighted round robin, so at
// 25% every fourth request goes to next, and after any whole period each
// version has had precisely its share. stable == "" or stable == next
// sends everything to next, and stable == next == "" nothing (a first
// deployment rolled back): the proxy answers 503. A version given a share
// must be deployed.
func (f *Fleet) Route(ctx context.Context, service, region, stable, next string, percent float64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if stable == "" && next == "" && service != "" && region != "" {
		g, err := f.existingRegion(service, region)
		if errors.Is(err, ErrNotDeployed) {
			return nil // nothing there to route
		}
		if err != nil {
			return err
		}
		g.mu.Lock()
		g.route = nil
		g.mu.Unlock()
		g.log.Info("route", "stable", "", "next", "", "percent", 0)
		return nil
	}
	if err := checkNames(service, region, next); err != nil {
		return err
	}
	if !(percent >= 0 && percent <= 100) {
		return fmt.Errorf("localfleet: route %s of %s in %s: percent %v is not in [0, 100]", next, service, region, percent)
	}
	if stable == next {
		stable = ""
	}
	if stable == "" {
		percent = 100
	}
	g, err := f.existingRegion(service, region)
	if err != nil {
		return err
	}
	r := newRoute(stable, next, percent)
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, name := range [2]string{stable, next} {
		if r.weights[i] == 0 {
			continue
		}
		r.versions[i] = g.versions[name]
		if r.versions[i] == nil {
			return fmt.Errorf("localfleet: route %v%% to %s of %s in %s: %w", float64(r.weights[i])/percentScale, name, service, region, ErrNotDeployed)
		}
	}
	if old := g.route; old != nil && old.stable == r.stable && old.next == r.next && old.weights == r.weights && old.versions == r.versions {
		return nil // unchanged: keep the schedule's place
	}
	g.route = r
	g.log.Info("route", "stable", stable, "next", next, "percent", float64(r.weights[1])/percentScale)
	return nil
}

// Retire stops version of service in region. The route must no longer send
// it anything. It waits for the requests in flight to it through the proxy
// to finish, up to Options.Drain or until ctx ends, then stops its
// processes: SIGTERM, and SIGKILL after Options.StopGrace. Retiring the
// last version of the region closes its proxy, unless a Deploy there is
// in progress or waiting; a later Deploy starts a new one, on another
// port. Retiring what is not deployed does nothing.
func (f *Fleet) Retire(ctx context.Context, service, region, version string) error {
	if err := checkNames(service, region, version); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	g, err := f.lockRegion(service, region)
	if errors.Is(err, ErrNotDeployed) {
		return nil
	}
	if err != nil {
		return err
	}
	defer g.ops.Unlock()
	g.mu.Lock()
	v := g.versions[version]
	if v == nil {
		g.mu.Unlock()
		return nil
	}
	if g.route != nil {
		if w := g.route.weight(version); w > 0 {
			g.mu.Unlock()
			return fmt.Errorf("localfleet: retire %s of %s in %s: it still gets %v%% of the traffic; route it away first",
				version, service, region, float64(w)/percentScale)
		}
	}
	delete(g.versions, version)
	g.mu.Unlock()

	drainCtx, cancel := context.WithTimeout(ctx, f.o.Drain)
	left, err := v.inflight.wait(drainCtx)
	cancel()
	if err != nil {
		g.log.Warn("retiring with requests in flight", "version", version, "in_flight", left, "err", err)
	}
	f.stopAll(v.procs, g.log.With("version", version))
	g.log.Info("retired", "version", version)
	f.mu.Lock()
	f.closeIfUnused(g)
	f.mu.Unlock()
	return nil
}

// Shutdown stops every proxy, letting requests in flight finish while ctx
// lasts, then every process the fleet started (SIGTERM, and SIGKILL after
// Options.StopGrace). It returns once all have ended; later calls wait for
// the first and return nil.
func (f *Fleet) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		select {
		case <-f.down:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.closed = true
	regions := make([]*region, 0, len(f.regions))
	for _, g := range f.regions {
		regions = append(regions, g)
	}
	f.mu.Unlock()
	defer close(f.down)

	close(f.quit)
	<-f.sampled
	var errs []error
	var wg sync.WaitGroup
	for _, g := range regions {
		// The proxy first: a Retire in progress waits for the requests in
		// flight through it, which closing it ends once ctx has.
		if err := g.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("localfleet: proxy of %s in %s: %w", g.service, g.name, err))
			_ = g.srv.Close()
		}
		<-g.served
		g.ops.Lock() // let a Deploy or Retire in progress finish
		g.mu.Lock()
		var procs []*process
		for _, v := range g.versions {
			procs = append(procs, v.procs...)
		}
		g.versions = map[string]*release{}
		g.route = nil
		g.mu.Unlock()
		wg.Go(func() {
			defer g.ops.Unlock()
			f.stopAll(procs, g.log)
		})
	}
	wg.Wait()
	// Deploys start processes holding their region's ops, which Shutdown
	// has held since: no process starts any more.
	f.waiters.Wait()
	f.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// ProxyURL returns the base URL of service's proxy in region, and false
// while no version of service is deployed there: before the first Deploy
// there has succeeded, or after every version was retired.
func (f *Fleet) ProxyURL(service, region string) (string, bool) {
	g, err := f.existingRegion(service, region)
	if err != nil {
		return "", false
	}
	// A Deploy starts the proxy before its processes, and closes it if
	// they fail to start and nothing else is deployed.
	g.mu.RLock()
	deployed := len(g.versions) > 0
	g.mu.RUnlock()
	if !deployed {
		return "", false
	}
	return g.url, true
}

// Previews returns the versions of service deployed in region, in order,
// that the route gives no share of the traffic: a blue-green
// deployment's new set while it is analysed, a version between its Deploy
// and its first share, or one between losing its share and its Retire.
// Requests to the proxy that name one in PreviewHeader reach it.
func (f *Fleet) Previews(service, region string) []string {
	g, err := f.existingRegion(service, region)
	if err != nil {
		return nil
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []string
	for name := range g.versions {
		if g.route == nil || g.route.weight(name) == 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Instances returns the addresses (host:port) of version's running
// processes of service in region, for scraping their /metrics; none if not
// deployed. A process that has exited is left out: its port may be another
// process's by now.
func (f *Fleet) Instances(service, region, version string) []string {
	g, err := f.existingRegion(service, region)
	if err != nil {
		return nil
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	v := g.versions[version]
	if v == nil {
		return nil
	}
	var addrs []string
	for _, pr := range v.procs {
		if !pr.exited() {
			addrs = append(addrs, pr.addr)
		}
	}
	return addrs
}

// Sample reads version's health as the proxy saw it over the window up to
// now (whole seconds, the current one included):
//
//   - Requests: requests the proxy forwarded to the version and saw
//     answered (502 if an instance could not be reached, or broke off
//     its answer midway, or if every instance had exited);
//   - ErrorRate: the share of them answered 5xx;
//   - P99: the 99th percentile of their time through the proxy, from a
//     histogram whose buckets are a fifth apart;
//   - CPU: the share of one core each process used over the window (from
//     utime and stime in /proc/<pid>/stat), the mean over the version's
//     processes, at most 1;
//   - Memory: each process's resident set (VmRSS in /proc/<pid>/status)
//     over Options.MemoryLimit, the mean, at most 1.
//
// A process that has exited counts as using neither. With no requests in
// the window it returns an error wrapping fleet.ErrNoData; for a version
// not deployed one wrapping both ErrNotDeployed and fleet.ErrNoData (there
// is nothing to judge: a health check before the first deployment, or
// after a restart, sees no data rather than a failure).
func (f *Fleet) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	if err := ctx.Err(); err != nil {
		return fleet.Sample{}, err
	}
	if window <= 0 || window > f.o.Window {
		return fleet.Sample{}, fmt.Errorf("localfleet: sample window %v is not in (0, %v] (Options.Window)", window, f.o.Window)
	}
	g, err := f.existingRegion(service, region)
	if errors.Is(err, ErrNotDeployed) {
		return fleet.Sample{}, fmt.Errorf("%w (%w)", err, fleet.ErrNoData)
	}
	if err != nil {
		return fleet.Sample{}, err
	}
	g.mu.RLock()
	v := g.versions[version]
	var procs []*process
	if v != nil {
		procs = slices.Clone(v.procs)
	}
	g.mu.RUnlock()
	if v == nil {
		return fleet.Sample{}, fmt.Errorf("localfleet: sample %s of %s in %s: %w (%w)", version, service, region, ErrNotDeployed, fleet.ErrNoData)
	}

	now := time.Now()
	r := v.stats.read(now, window)
	if r.requests == 0 {
		return fleet.Sample{}, fmt.Errorf("localfleet: no requests to %s of %s in %s in the last %v: %w", version, service, region, window, fleet.ErrNoData)
	}
	s := fleet.Sample{
		Time:      now,
		Requests:  float64(r.requests),
		ErrorRate: float64(r.errors) / float64(r.requests),
		P99:       r.p99,
	}
	for _, pr := range procs {
		pr.whileUnreaped(func(pid int) {
			if cpu, err := pr.cpuShare(now, window); err == nil {
				s.CPU += min(cpu, 1)
			}
			if rss, err := residentBytes(pid); err == nil {
				s.Memory += min(rss/f.o.MemoryLimit, 1)
			}
		})
	}
	if len(procs) > 0 {
		s.CPU /= float64(len(procs))
		s.Memory /= float64(len(procs))
	}
	return s, nil
}

// sampleCPU reads every process's CPU time once a second, so Sample can
// tell what a window's start was.
func (f *Fleet) sampleCPU() {
	defer close(f.sampled)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-f.quit:
			return
		case <-tick.C:
		}
		for _, pr := range f.processes() {
			pr.whileUnreaped(func(pid int) {
				if used, err := cpuSeconds(pid); err == nil {
					pr.cpu.add(cpuReading{at: time.Now(), seconds: used})
				}
			})
		}
	}
}

// processes returns every process the fleet runs.
func (f *Fleet) processes() []*process {
	f.mu.Lock()
	regions := make([]*region, 0, len(f.regions))
	for _, g := range f.regions {
		regions = append(regions, g)
	}
	f.mu.Unlock()
	var procs []*process
	for _, g := range regions {
		g.mu.RLock()
		for _, v := range g.versions {
			procs = append(procs, v.procs...)
		}
		g.mu.RUnlock()
	}
	return procs
}

// region returns service's region for a Deploy, starting its proxy if it
// is new. The Deploy must leave it.
func (f *Fleet) region(service, name string) (*region, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	k := regionKey{service, name}
	if g := f.regions[k]; g != nil {
		g.deploys++
		return g, nil
	}
	g := &region{
		service:  service,
		name:     name,
		log:      f.log.With("service", service, "region", name),
		versions: make(map[string]*release),
	}
	if err := g.listen(); err != nil {
		return nil, fmt.Errorf("localfleet: proxy of %s in %s: %w", service, name, err)
	}
	g.log.Info("proxy listening", "url", g.url)
	g.deploys = 1
	f.regions[k] = g
	return g, nil
}

// leave ends a Deploy's hold on region g; the Deploy holds g.ops. The last
// Deploy to leave a region where nothing is deployed (its first deploy
// failed, or a Retire took the last version while it waited) closes its
// proxy.
func (f *Fleet) leave(g *region) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g.deploys--
	f.closeIfUnused(g)
}

// closeIfUnused closes g's proxy and forgets g when nothing is deployed
// there and no Deploy holds it: the proxy, which nothing advertises then,
// would hold a port and a goroutine until Shutdown. A Deploy waiting for
// g.ops holds g, so it never finds the proxy closed under it. The caller
// holds f.mu and g.ops.
func (f *Fleet) closeIfUnused(g *region) {
	if g.deploys > 0 || f.closed || g.gone {
		return // Shutdown closes the proxy of a fleet shutting down
	}
	// Only Deploy, Retire and Shutdown change versions, each holding ops.
	g.mu.RLock()
	empty := len(g.versions) == 0
	g.mu.RUnlock()
	if !empty {
		return
	}
	g.gone = true
	delete(f.regions, regionKey{g.service, g.name})
	_ = g.srv.Close()
	<-g.served
	g.log.Info("proxy closed: nothing is deployed")
}

// lockRegion returns service's region with its ops held, for a Retire.
func (f *Fleet) lockRegion(service, name string) (*region, error) {
	for {
		g, err := f.existingRegion(service, name)
		if err != nil {
			return nil, err
		}
		g.ops.Lock()
		f.mu.Lock()
		gone := g.gone
		f.mu.Unlock()
		if !gone {
			return g, nil
		}
		// Its last version was retired while this waited: what is
		// deployed now is in the region a Deploy made since, if any.
		g.ops.Unlock()
	}
}

// existingRegion returns service's region if something was deployed there.
func (f *Fleet) existingRegion(service, name string) (*region, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	g := f.regions[regionKey{service, name}]
	if g == nil {
		return nil, fmt.Errorf("localfleet: %s in %s: %w", service, name, ErrNotDeployed)
	}
	return g, nil
}

func (f *Fleet) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func checkNames(service, region, version string) error {
	if service == "" || region == "" || version == "" {
		return fmt.Errorf("localfleet: service %q, region %q and version %q must not be empty", service, region, version)
	}
	return nil
}
