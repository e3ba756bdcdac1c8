// Package sim is a simulated fleet that lives in the process: it implements
// fleet.Target and fleet.Health over a catalog.Catalog, for tests and for
// the deployment service's demo.
//
// Nothing runs: a deployed version is a record of its instance count and
// the time it became ready, and its health is what the catalog says its
// profile is at that age (so a version with a DegradeAfter turns bad once
// it has run that long). Each service carries a nominal RequestRate
// requests per second in each region, split between a stable and a next
// version as Route says. There is no randomness: the same calls at the
// same times give the same answers. Time is read with time.Now, so tests
// move it with testing/synctest.
//
// A Fleet is safe for concurrent use.
package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

var (
	_ fleet.Target = (*Fleet)(nil)
	_ fleet.Health = (*Fleet)(nil)
)

// RequestRate is the traffic every service gets in every region it runs
// in, in requests per second, before Route splits it.
const RequestRate = 100

// PreviewRate is the traffic a running version gets while it takes no
// share of the service's traffic, in requests per second: the smoke tests
// of a preview, as a blue-green deployment's new set has before the
// switch.
const PreviewRate = 5

// ErrCapacity is returned (wrapped) by Deploy when the region cannot run
// the instances asked for beside those it runs already.
var ErrCapacity = errors.New("sim: region capacity exceeded")

// Options tunes a Fleet. The zero value is a fleet that deploys at once.
type Options struct {
	// DeployDelay is how long Deploy takes before a new version's
	// instances are ready. Meanwhile they count against the region's
	// capacity but take no traffic. Zero: ready at once.
	DeployDelay time.Duration
}

// Fleet is a simulated fleet. Create one with New or NewWithOptions.
type Fleet struct {
	catalog *catalog.Catalog
	opts    Options

	mu     sync.Mutex
	places map[place]*state
}

// place is a service in a region.
type place struct{ service, region string }

// state is what runs at a place and how its traffic is split: percent of
// it to next and the rest to stable. With next == "" all of it goes to
// stable; with stable == "" all of it goes to next.
type state struct {
	versions map[string]*deployment
	stable   string
	next     string
	percent  float64
}

// deployment is a version running (or starting) at a place.
type deployment struct {
	instances int
	since     time.Time     // when it became ready
	starting  bool          // Deploy is still waiting out DeployDelay
	ready     chan struct{} // closed when starting ends, either way
}

// New returns a fleet running what c says runs now: in every region a
// service's Running version names, c.Instances(service) instances of it,
// taking all the service's traffic there. c should be valid (as Parse
// returns it); the fleet reads it and never changes it, so nobody else
// may change it while the fleet is in use.
func New(c *catalog.Catalog) *Fleet {
	f, _ := NewWithOptions(c, Options{}) // the zero Options are valid
	return f
}

// NewWithOptions is New with options. It fails only on a negative
// DeployDelay.
func NewWithOptions(c *catalog.Catalog, opts Options) (*Fleet, error) {
	if opts.DeployDelay < 0 {
		return nil, fmt.Errorf("sim: Options.DeployDelay must not be negative, got %v", opts.DeployDelay)
	}
	if c == nil {
		c = &catalog.Catalog{}
	}
	f := &Fleet{catalog: c, opts: opts, places: map[place]*state{}}
	now := time.Now()
	for service, s := range c.Services {
		for region, version := range s.Running {
			f.places[place{service, region}] = &state{
				versions: map[string]*deployment{version: {instances: c.Instances(service), since: now}},
				stable:   version,
			}
		}
	}
	return f, nil
}

// Deploy makes sure instances instances of version of service run in
// region. A version not running there yet is ready after
// Options.DeployDelay (or when ctx ends first, with ctx's error, leaving
// nothing behind); one running already is set to instances at once, and
// one another Deploy is starting is waited for. Unknown names and an
// instance count below 1 are errors; asking for more than the region has
// room for is an error wrapping ErrCapacity.
func (f *Fleet) Deploy(ctx context.Context, service, region, version string, instances int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.known(service, region); err != nil {
		return err
	}
	if !f.catalog.HasImage(service, version) {
		return fmt.Errorf("sim: %s has no version %q", service, version)
	}
	if instances < 1 {
		return fmt.Errorf("sim: deploy %s %s in %s: instances must be at least 1, got %d", service, version, region, instances)
	}
	for {
		f.mu.Lock()
		st := f.state(service, region)
		d := st.versions[version]
		if d != nil && d.starting {
			f.mu.Unlock()
			select {
			case <-d.ready:
				continue // look again: ready, or abandoned by its Deploy
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		have := 0
		if d != nil {
			have = d.instances
		}
		if err := f.fits(region, instances-have); err != nil {
			f.mu.Unlock()
			return fmt.Errorf("%w: deploy %s %s in %s: %v", ErrCapacity, service, version, region, err)
		}
		if d != nil {
			d.instances = instances
			f.mu.Unlock()
			return nil
		}
		if f.opts.DeployDelay == 0 {
			st.versions[version] = &deployment{instances: instances, since: time.Now()}
			f.mu.Unlock()
			return nil
		}
		d = &deployment{instances: instances, starting: true, ready: make(chan struct{})}
		st.versions[version] = d
		f.mu.Unlock()
		return f.start(ctx, st, version, d)
	}
}

// start waits out DeployDelay for d, then marks it ready; if ctx ends
// first, it takes d away again.
func (f *Fleet) start(ctx context.Context, st *state, version string, d *deployment) error {
	timer := time.NewTimer(f.opts.DeployDelay)
	defer timer.Stop()
	var err error
	select {
	case <-timer.C:
	case <-ctx.Done():
		err = ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		delete(st.versions, version)
	} else {
		d.since = time.Now()
	}
	d.starting = false
	close(d.ready)
	return err
}

// Route sends percent (0 to 100) of service's traffic in region to next
// and the rest to stable; with stable == "" (a first deployment) all of it
// goes to next, whatever percent says, and with stable == next all of it
// goes to that version. Both versions must be running there, except a next
// given 0% with a stable: that is a rollback, which a restarted caller may
// repeat after the next version is gone.
func (f *Fleet) Route(ctx context.Context, service, region, stable, next string, percent float64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.known(service, region); err != nil {
		return err
	}
	if !(percent >= 0 && percent <= 100) {
		return fmt.Errorf("sim: route %s in %s: percent must be in [0,100], got %v", service, region, percent)
	}
	if next == "" && stable != "" {
		return fmt.Errorf("sim: route %s in %s: next version is empty", service, region)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.places[place{service, region}]
	if next == "" { // nothing serves: a first deployment rolled back
		if st != nil {
			st.stable, st.next, st.percent = "", "", 0
		}
		return nil
	}
	for _, v := range []string{stable, next} {
		if v == "" || (v == next && percent == 0 && stable != "") {
			// A next version given no traffic need not run: a rollback
			// repeated after a restart names one that is gone.
			continue
		}
		if st == nil || st.versions[v] == nil || st.versions[v].starting {
			return fmt.Errorf("sim: route %s in %s: version %q is not running there", service, region, v)
		}
	}
	switch {
	case stable == "":
		st.stable, st.next, st.percent = "", next, 100
	case stable == next || (percent == 0 && (st.versions[next] == nil || st.versions[next].starting)):
		st.stable, st.next, st.percent = stable, "", 0
	default:
		st.stable, st.next, st.percent = stable, next, percent
	}
	return nil
}

// Retire stops version of service in region. Retiring a version that does
// not run there does nothing; one that still takes traffic, or that a
// Deploy is starting, is an error. A retired version leaves the split:
// the other version takes all the traffic.
func (f *Fleet) Retire(ctx context.Context, service, region, version string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.known(service, region); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.places[place{service, region}]
	if st == nil || st.versions[version] == nil {
		return nil
	}
	if st.versions[version].starting {
		return fmt.Errorf("sim: retire %s %s in %s: it is still being deployed", service, version, region)
	}
	if percent := st.percentOf(version); percent > 0 {
		return fmt.Errorf("sim: retire %s %s in %s: it still takes %v%% of the traffic", service, version, region, percent)
	}
	delete(st.versions, version)
	switch version {
	case st.stable:
		st.stable, st.next, st.percent = st.next, "", 0
	case st.next:
		st.next, st.percent = "", 0
	}
	return nil
}

// Sample returns version's health in region over the window ending now:
// its catalog profile at its age (now minus when it became ready), and
// Requests = RequestRate × its share of the traffic × window in seconds,
// or PreviewRate × window in seconds while it takes no share. A version
// that does not run there (or is still starting) has no data: the error
// wraps fleet.ErrNoData.
func (f *Fleet) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	if err := ctx.Err(); err != nil {
		return fleet.Sample{}, err
	}
	if err := f.known(service, region); err != nil {
		return fleet.Sample{}, err
	}
	if window <= 0 {
		return fleet.Sample{}, fmt.Errorf("sim: sample %s %s in %s: window must be positive, got %v", service, version, region, window)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.places[place{service, region}]
	var d *deployment
	if st != nil {
		d = st.versions[version]
	}
	if d == nil || d.starting {
		return fleet.Sample{}, fmt.Errorf("sim: %s %s is not running in %s: %w", service, version, region, fleet.ErrNoData)
	}
	rate := RequestRate * st.percentOf(version) / 100
	if rate == 0 {
		rate = PreviewRate
	}
	now := time.Now()
	p, ok := f.catalog.Profile(service, version, region, now.Sub(d.since))
	if !ok { // cannot happen: Deploy checked the names
		return fleet.Sample{}, fmt.Errorf("sim: %s %s has no profile in %s: %w", service, version, region, fleet.ErrNoData)
	}
	return fleet.Sample{
		Time:      now,
		Requests:  rate * window.Seconds(),
		ErrorRate: p.ErrorRate,
		P99:       p.P99,
		CPU:       p.CPU,
		Memory:    p.Memory,
	}, nil
}

// Split returns how service's traffic in region is routed: percent of it
// to next and the rest to stable. next is "" when no other version shares
// stable's traffic, and still named, with percent 0, when Route gave a
// running next 0% (a rollback before its Retire); stable is "" (and
// percent 100) when next takes it all. All three are zero when the
// service runs nothing there, or routes nothing.
func (f *Fleet) Split(service, region string) (stable, next string, percent float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.places[place{service, region}]
	if st == nil {
		return "", "", 0
	}
	return st.stable, st.next, st.percent
}

// Versions returns the versions of service running in region, sorted;
// versions still starting are not among them.
func (f *Fleet) Versions(service, region string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.places[place{service, region}]
	if st == nil {
		return nil
	}
	var names []string
	for v, d := range st.versions {
		if !d.starting {
			names = append(names, v)
		}
	}
	slices.Sort(names)
	return names
}

// InUse returns the instances region runs, of all services and versions,
// those still starting included.
func (f *Fleet) InUse(region string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inUse(region)
}

func (f *Fleet) inUse(region string) int {
	n := 0
	for p, st := range f.places {
		if p.region == region {
			for _, d := range st.versions {
				n += d.instances
			}
		}
	}
	return n
}

// fits says whether region has room for more instances beside those it
// runs; f.mu is held.
func (f *Fleet) fits(region string, more int) error {
	if more <= 0 {
		return nil
	}
	r, _ := f.catalog.Region(region)
	if used := f.inUse(region); more > r.Capacity-used { // not used+more: it overflows for a count near math.MaxInt
		return fmt.Errorf("%s runs %d of its %d instances, %d more do not fit", region, used, r.Capacity, more)
	}
	return nil
}

// known checks that the catalog knows service and region.
func (f *Fleet) known(service, region string) error {
	if _, ok := f.catalog.Services[service]; !ok {
		return fmt.Errorf("sim: unknown service %q", service)
	}
	if _, ok := f.catalog.Region(region); !ok {
		return fmt.Errorf("sim: unknown region %q", region)
	}
	return nil
}

// state returns the state of a place, creating it; f.mu is held.
func (f *Fleet) state(service, region string) *state {
	p := place{service, region}
	st := f.places[p]
	if st == nil {
		st = &state{versions: map[string]*deployment{}}
		f.places[p] = st
	}
	return st
}

// percentOf is the percentage of the place's traffic version takes.
func (st *state) percentOf(version string) float64 {
	switch {
	case version == "":
		return 0
	case version == st.next:
		return st.percent
	case version == st.stable:
		return 100 - st.percent // st.percent is 0 when next is ""
	default:
		return 0
	}
}
