package sim_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet/sim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	api  = "api-service"
	west = "us-west-2"
)

// demoServices is how many services the demo catalog has, each running 4
// instances in each large region.
var demoServices = len(catalog.Demo().Services)

func TestNew(t *testing.T) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())

	stable, next, percent := f.Split(api, west)
	assert.Equal(t, "v1.0.0", stable)
	assert.Equal(t, "", next)
	assert.Equal(t, 0.0, percent)
	assert.Equal(t, []string{"v1.0.0"}, f.Versions(api, west))
	assert.Equal(t, []string{"v0.9.0"}, f.Versions("bad-service", "eu-west-1"))
	assert.Equal(t, 4*demoServices, f.InUse(west))
	assert.Equal(t, 0, f.InUse("ap-south-1"))
	assert.Equal(t, 0, f.InUse("mars-1"))
	assert.Nil(t, f.Versions(api, "ap-south-1"))
	stable, next, percent = f.Split(api, "ap-south-1")
	assert.Equal(t, [3]any{"", "", 0.0}, [3]any{stable, next, percent})

	s, err := f.Sample(ctx, api, west, "v1.0.0", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 6000.0, s.Requests, "100 requests/s for 60 s, all of them")
	assert.Equal(t, 0.006, s.ErrorRate)
	assert.Equal(t, 150*time.Millisecond, s.P99)
	assert.Equal(t, 0.35, s.CPU)
	assert.Equal(t, 0.5, s.Memory)

	empty := sim.New(nil)
	assert.Equal(t, 0, empty.InUse(west))
	assert.Error(t, empty.Deploy(ctx, api, west, "v1.0.0", 4))
}

func TestNewWithOptions(t *testing.T) {
	_, err := sim.NewWithOptions(catalog.Demo(), sim.Options{DeployDelay: -time.Second})
	assert.EqualError(t, err, "sim: Options.DeployDelay must not be negative, got -1s")
	f, err := sim.NewWithOptions(catalog.Demo(), sim.Options{})
	require.NoError(t, err)
	require.NoError(t, f.Deploy(context.Background(), api, west, "v2.0.0", 4))
	assert.Equal(t, []string{"v1.0.0", "v2.0.0"}, f.Versions(api, west), "ready at once")
}

func TestDeploy(t *testing.T) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	base := f.InUse(west)

	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 4))
	assert.Equal(t, []string{"v1.0.0", "v2.0.0"}, f.Versions(api, west))
	assert.Equal(t, base+4, f.InUse(west))
	stable, next, percent := f.Split(api, west)
	assert.Equal(t, [3]any{"v1.0.0", "", 0.0}, [3]any{stable, next, percent}, "deploying routes nothing")

	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 4), "again: nothing to do")
	assert.Equal(t, base+4, f.InUse(west))
	require.NoError(t, f.Deploy(ctx, api, west, "v1.0.0", 4), "the running version")
	assert.Equal(t, base+4, f.InUse(west))

	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 6), "scaled up")
	assert.Equal(t, base+6, f.InUse(west))
	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 2), "scaled down")
	assert.Equal(t, base+2, f.InUse(west))
	assert.Equal(t, 4*demoServices, f.InUse("us-east-1"), "other regions untouched")
}

func TestDeployErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name                     string
		ctx                      context.Context
		service, region, version string
		instances                int
		want                     string
	}{
		{"unknown service", nil, "nope", west, "v1.0.0", 4, `sim: unknown service "nope"`},
		{"unknown region", nil, api, "mars-1", "v2.0.0", 4, `sim: unknown region "mars-1"`},
		{"unknown version", nil, api, west, "v9.9.9", 4, `sim: api-service has no version "v9.9.9"`},
		{"empty version", nil, api, west, "", 4, `sim: api-service has no version ""`},
		{"no instances", nil, api, west, "v2.0.0", 0, "sim: deploy api-service v2.0.0 in us-west-2: instances must be at least 1, got 0"},
		{"negative instances", nil, api, west, "v2.0.0", -4, "instances must be at least 1, got -4"},
		{"cancelled", cancelled, api, west, "v2.0.0", 4, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := sim.New(catalog.Demo())
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := f.Deploy(ctx, tt.service, tt.region, tt.version, tt.instances)
			assert.ErrorContains(t, err, tt.want)
			assert.Equal(t, []string{"v1.0.0"}, f.Versions(api, west), "nothing deployed")
			assert.Equal(t, 4*demoServices, f.InUse(west))
		})
	}
}

func TestCapacity(t *testing.T) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())

	err := f.Deploy(ctx, api, "ap-south-1", "v2.0.0", 4)
	require.ErrorIs(t, err, sim.ErrCapacity)
	assert.EqualError(t, err, "sim: region capacity exceeded: deploy api-service v2.0.0 in ap-south-1: "+
		"ap-south-1 runs 0 of its 2 instances, 4 more do not fit")
	assert.Nil(t, f.Versions(api, "ap-south-1"))
	assert.Equal(t, 0, f.InUse("ap-south-1"))

	require.NoError(t, f.Deploy(ctx, api, "ap-south-1", "v2.0.0", 2), "exactly full")
	assert.Equal(t, 2, f.InUse("ap-south-1"))
	assert.ErrorIs(t, f.Deploy(ctx, "auth", "ap-south-1", "v1.0.0", 1), sim.ErrCapacity)
	assert.ErrorIs(t, f.Deploy(ctx, api, "ap-south-1", "v2.0.0", 3), sim.ErrCapacity, "scaling up")
	require.NoError(t, f.Deploy(ctx, api, "ap-south-1", "v2.0.0", 1), "scaling down always fits")
	require.NoError(t, f.Deploy(ctx, "auth", "ap-south-1", "v1.0.0", 1))
	assert.Equal(t, 2, f.InUse("ap-south-1"))

	// The large regions: 200 instances, 4 × every service running.
	free := 200 - f.InUse(west)
	assert.ErrorIs(t, f.Deploy(ctx, api, west, "v2.0.0", free+1), sim.ErrCapacity)
	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", free))
	assert.Equal(t, 200, f.InUse(west))
}

// TestCapacityHugeCounts: an instance count near math.MaxInt does not fit,
// and leaves the region's count as it was.
func TestCapacityHugeCounts(t *testing.T) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	before := f.InUse(west)
	for _, n := range []int{math.MaxInt, math.MaxInt - before + 1, math.MaxInt - 1} {
		err := f.Deploy(ctx, api, west, "v2.0.0", n)
		require.ErrorIs(t, err, sim.ErrCapacity, "%d instances", n)
		assert.Equal(t, before, f.InUse(west))
	}
	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 4))
	assert.ErrorIs(t, f.Deploy(ctx, api, west, "v2.0.0", math.MaxInt), sim.ErrCapacity, "scaling up")
	assert.Equal(t, before+4, f.InUse(west))
	assert.ErrorIs(t, f.Deploy(ctx, "auth", west, "v1.1.0", 200), sim.ErrCapacity, "the region is still nearly full")
}

func TestRoute(t *testing.T) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 4))

	requests := func(version string) float64 {
		t.Helper()
		s, err := f.Sample(ctx, api, west, version, time.Minute)
		if errors.Is(err, fleet.ErrNoData) {
			return 0
		}
		require.NoError(t, err)
		return s.Requests
	}
	const preview = float64(sim.PreviewRate * 60)
	split := func() [3]any {
		stable, next, percent := f.Split(api, west)
		return [3]any{stable, next, percent}
	}

	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 10))
	assert.Equal(t, [3]any{"v1.0.0", "v2.0.0", 10.0}, split())
	assert.Equal(t, 5400.0, requests("v1.0.0"))
	assert.Equal(t, 600.0, requests("v2.0.0"))

	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 10), "again: the same")
	assert.Equal(t, [3]any{"v1.0.0", "v2.0.0", 10.0}, split())

	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 33.3))
	assert.InDelta(t, 4002.0, requests("v1.0.0"), 1e-9)
	assert.InDelta(t, 1998.0, requests("v2.0.0"), 1e-9)

	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 100))
	assert.Equal(t, preview, requests("v1.0.0"), "no share: preview traffic only")
	assert.Equal(t, 6000.0, requests("v2.0.0"))

	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 0), "rolled back")
	assert.Equal(t, [3]any{"v1.0.0", "v2.0.0", 0.0}, split())
	assert.Equal(t, 6000.0, requests("v1.0.0"))
	assert.Equal(t, preview, requests("v2.0.0"), "no share: preview traffic only")

	require.NoError(t, f.Route(ctx, api, west, "", "v2.0.0", 5), "no stable: all to next")
	assert.Equal(t, [3]any{"", "v2.0.0", 100.0}, split())
	assert.Equal(t, preview, requests("v1.0.0"), "no share: preview traffic only")
	assert.Equal(t, 6000.0, requests("v2.0.0"))

	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v1.0.0", 50), "one version: all to it")
	assert.Equal(t, [3]any{"v1.0.0", "", 0.0}, split())
	assert.Equal(t, 6000.0, requests("v1.0.0"))
}

func TestRouteErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name                          string
		ctx                           context.Context
		service, region, stable, next string
		percent                       float64
		want                          string
	}{
		{"percent below 0", nil, api, west, "v1.0.0", "v2.0.0", -1, "sim: route api-service in us-west-2: percent must be in [0,100], got -1"},
		{"percent above 100", nil, api, west, "v1.0.0", "v2.0.0", 100.5, "percent must be in [0,100], got 100.5"},
		{"percent NaN", nil, api, west, "v1.0.0", "v2.0.0", math.NaN(), "percent must be in [0,100], got NaN"},
		{"percent +Inf", nil, api, west, "v1.0.0", "v2.0.0", math.Inf(1), "percent must be in [0,100], got +Inf"},
		{"no next", nil, api, west, "v1.0.0", "", 10, "sim: route api-service in us-west-2: next version is empty"},
		{"next not deployed", nil, api, west, "v1.0.0", "v2.1.0", 10, `sim: route api-service in us-west-2: version "v2.1.0" is not running there`},
		{"next unknown", nil, api, west, "v1.0.0", "v9", 10, `version "v9" is not running there`},
		{"stable not running", nil, api, west, "v3.0.0", "v2.0.0", 10, `version "v3.0.0" is not running there`},
		{"nothing runs there", nil, api, "ap-south-1", "", "v2.0.0", 100, `sim: route api-service in ap-south-1: version "v2.0.0" is not running there`},
		{"unknown service", nil, "nope", west, "v1.0.0", "v2.0.0", 10, `sim: unknown service "nope"`},
		{"unknown region", nil, api, "mars-1", "v1.0.0", "v2.0.0", 10, `sim: unknown region "mars-1"`},
		{"cancelled", cancelled, api, west, "v1.0.0", "v2.0.0", 10, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := sim.New(catalog.Demo())
			require.NoError(t, f.Deploy(context.Background(), api, west, "v2.0.0", 4))
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := f.Route(ctx, tt.service, tt.region, tt.stable, tt.next, tt.percent)
			assert.ErrorContains(t, err, tt.want)
			stable, next, percent := f.Split(api, west)
			assert.Equal(t, [3]any{"v1.0.0", "", 0.0}, [3]any{stable, next, percent}, "routing unchanged")
		})
	}
}

func TestRetire(t *testing.T) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	base := f.InUse(west)
	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 4))
	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 10))

	assert.EqualError(t, f.Retire(ctx, api, west, "v2.0.0"), "sim: retire api-service v2.0.0 in us-west-2: it still takes 10% of the traffic")
	assert.EqualError(t, f.Retire(ctx, api, west, "v1.0.0"), "sim: retire api-service v1.0.0 in us-west-2: it still takes 90% of the traffic")
	assert.Equal(t, []string{"v1.0.0", "v2.0.0"}, f.Versions(api, west))

	// Rolled back: the new version goes, and with it from the split.
	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 0))
	require.NoError(t, f.Retire(ctx, api, west, "v2.0.0"))
	assert.Equal(t, []string{"v1.0.0"}, f.Versions(api, west))
	assert.Equal(t, base, f.InUse(west))
	stable, next, percent := f.Split(api, west)
	assert.Equal(t, [3]any{"v1.0.0", "", 0.0}, [3]any{stable, next, percent})
	require.NoError(t, f.Retire(ctx, api, west, "v2.0.0"), "again: nothing to do")
	require.NoError(t, f.Retire(ctx, api, west, "v3.0.0"), "never deployed")
	require.NoError(t, f.Retire(ctx, api, west, "v9"), "not even in the catalog")
	require.NoError(t, f.Retire(ctx, api, "ap-south-1", "v1.0.0"), "nothing runs there")

	// Promoted: the old version goes, the new one is the stable.
	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 4))
	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 100))
	require.NoError(t, f.Retire(ctx, api, west, "v1.0.0"))
	stable, next, percent = f.Split(api, west)
	assert.Equal(t, [3]any{"v2.0.0", "", 0.0}, [3]any{stable, next, percent})
	assert.Equal(t, []string{"v2.0.0"}, f.Versions(api, west))
	assert.Equal(t, base, f.InUse(west))
	assert.EqualError(t, f.Retire(ctx, api, west, "v2.0.0"), "sim: retire api-service v2.0.0 in us-west-2: it still takes 100% of the traffic")

	// A first deployment rolled back routes nothing, and then retires.
	require.NoError(t, f.Deploy(ctx, api, "ap-south-1", "v2.0.0", 2))
	require.NoError(t, f.Route(ctx, api, "ap-south-1", "", "v2.0.0", 100))
	require.NoError(t, f.Route(ctx, api, "ap-south-1", "", "", 0))
	stable, next, percent = f.Split(api, "ap-south-1")
	assert.Equal(t, [3]any{"", "", 0.0}, [3]any{stable, next, percent})
	require.NoError(t, f.Retire(ctx, api, "ap-south-1", "v2.0.0"))
	assert.Empty(t, f.Versions(api, "ap-south-1"))

	assert.EqualError(t, f.Retire(ctx, "nope", west, "v1.0.0"), `sim: unknown service "nope"`)
	assert.EqualError(t, f.Retire(ctx, api, "mars-1", "v1.0.0"), `sim: unknown region "mars-1"`)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, f.Retire(cancelled, api, west, "v2.0.0"), context.Canceled)
}

// TestRouteBackToAVersionGone: a rollback repeated after a restart (a new
// Fleet, in which the next version never ran) sends everything to stable.
func TestRouteBackToAVersionGone(t *testing.T) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	require.NoError(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 0))
	stable, next, percent := f.Split(api, west)
	assert.Equal(t, [3]any{"v1.0.0", "", 0.0}, [3]any{stable, next, percent})
	assert.Error(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 5), "a share for a version that does not run")
	assert.Error(t, f.Route(ctx, api, west, "v3.0.0", "v2.0.0", 0), "the stable must run")
}

func TestSampleErrors(t *testing.T) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 4))

	s, err := f.Sample(ctx, api, west, "v2.0.0", time.Minute)
	require.NoError(t, err, "deployed, no share of the traffic: its preview traffic")
	assert.Equal(t, float64(sim.PreviewRate*60), s.Requests)

	_, err = f.Sample(ctx, api, west, "v3.0.0", time.Minute)
	assert.ErrorIs(t, err, fleet.ErrNoData, "not deployed")
	assert.EqualError(t, err, "sim: api-service v3.0.0 is not running in us-west-2: fleet: no health data")
	_, err = f.Sample(ctx, api, "ap-south-1", "v1.0.0", time.Minute)
	assert.ErrorIs(t, err, fleet.ErrNoData, "nothing runs there")

	for _, tt := range []struct {
		name                     string
		service, region, version string
		window                   time.Duration
		want                     string
	}{
		{"zero window", api, west, "v1.0.0", 0, "sim: sample api-service v1.0.0 in us-west-2: window must be positive, got 0s"},
		{"negative window", api, west, "v1.0.0", -time.Second, "window must be positive, got -1s"},
		{"unknown service", "nope", west, "v1.0.0", time.Minute, `sim: unknown service "nope"`},
		{"unknown region", api, "mars-1", "v1.0.0", time.Minute, `sim: unknown region "mars-1"`},
	} {
		_, err := f.Sample(ctx, tt.service, tt.region, tt.version, tt.window)
		assert.ErrorContains(t, err, tt.want, tt.name)
		assert.NotErrorIs(t, err, fleet.ErrNoData, "%s is a mistake, not a lack of data", tt.name)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = f.Sample(cancelled, api, west, "v1.0.0", time.Minute)
	assert.ErrorIs(t, err, context.Canceled)
}

// canary deploys version of service in region, sends it 10% of the
// traffic and judges a minute of it against the default gate.
func canary(t *testing.T, f *sim.Fleet, service, region, version string) analysis.Verdict {
	t.Helper()
	ctx := context.Background()
	stable := f.Versions(service, region)[0]
	require.NoError(t, f.Deploy(ctx, service, region, version, 4))
	require.NoError(t, f.Route(ctx, service, region, stable, version, 10))
	return judge(t, f, service, region, version)
}

func judge(t *testing.T, f *sim.Fleet, service, region, version string) analysis.Verdict {
	t.Helper()
	s, err := f.Sample(context.Background(), service, region, version, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 600.0, s.Requests)
	return analysis.Evaluate(s, analysis.Default())
}

func TestScenarios(t *testing.T) {
	tests := []struct {
		service, version string
		reasons          map[string]string // region -> reason; "" passes
	}{
		{"api-service", "v2.0.0", nil},
		{"bad-service", "v1.0.0", allRegions("Error rate 7.20% exceeds threshold 5.00%")},
		{"slow-service", "v2.0.0", allRegions("P99 latency 1500ms exceeds threshold 1000ms")},
		{"hungry-service", "v2.0.0", allRegions("CPU usage 92.00% exceeds threshold 80.00%")},
		{"leaky-service", "v2.0.0", allRegions("Memory usage 90.00% exceeds threshold 85.00%")},
		{"regional-service", "v2.0.0", map[string]string{"eu-west-1": "Error rate 9.00% exceeds threshold 5.00%"}},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			f := sim.New(catalog.Demo())
			for _, region := range []string{"us-west-2", "us-east-1", "eu-west-1"} {
				v := canary(t, f, tt.service, region, tt.version)
				assert.Equal(t, tt.reasons[region], v.Reason(), region)
			}
		})
	}
}

func allRegions(reason string) map[string]string {
	return map[string]string{"us-west-2": reason, "us-east-1": reason, "eu-west-1": reason}
}

// TestDegrading: degrading-service v2.0.0 is healthy for 4 s after it is
// deployed, then fails; its age counts from its own deployment.
func TestDegrading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := sim.New(catalog.Demo())
		time.Sleep(time.Hour) // the fleet's running versions are old; the new one is not

		v := canary(t, f, "degrading-service", west, "v2.0.0")
		assert.True(t, v.Passed, v.Reason())
		time.Sleep(4*time.Second - time.Nanosecond)
		assert.True(t, judge(t, f, "degrading-service", west, "v2.0.0").Passed)
		time.Sleep(time.Nanosecond)
		v = judge(t, f, "degrading-service", west, "v2.0.0")
		assert.False(t, v.Passed)
		assert.Equal(t, "Error rate 15.00% exceeds threshold 5.00%", v.Reason())

		s, err := f.Sample(context.Background(), "degrading-service", west, "v1.0.0", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, time.Now(), s.Time)
		assert.True(t, analysis.Evaluate(s, analysis.Default()).Passed, "the stable version does not degrade")

		// A fresh deployment elsewhere starts healthy again.
		assert.True(t, canary(t, f, "degrading-service", "eu-west-1", "v2.0.0").Passed)
	})
}

func TestDeployDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		f, err := sim.NewWithOptions(catalog.Demo(), sim.Options{DeployDelay: 2 * time.Second})
		require.NoError(t, err)
		base := f.InUse(west)

		start := time.Now()
		done := make(chan error, 2)
		for range 2 { // two callers of the same deployment share it
			go func() { done <- f.Deploy(ctx, api, west, "v2.0.0", 4) }()
		}
		synctest.Wait()
		assert.Equal(t, []string{"v1.0.0"}, f.Versions(api, west), "still starting")
		assert.Equal(t, base+4, f.InUse(west), "starting instances hold their room")
		assert.ErrorContains(t, f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 10), `version "v2.0.0" is not running there`)
		assert.EqualError(t, f.Retire(ctx, api, west, "v2.0.0"), "sim: retire api-service v2.0.0 in us-west-2: it is still being deployed")
		_, err = f.Sample(ctx, api, west, "v2.0.0", time.Minute)
		assert.ErrorIs(t, err, fleet.ErrNoData)

		require.NoError(t, <-done)
		require.NoError(t, <-done)
		assert.Equal(t, 2*time.Second, time.Since(start))
		assert.Equal(t, []string{"v1.0.0", "v2.0.0"}, f.Versions(api, west))
		assert.Equal(t, base+4, f.InUse(west), "deployed once")

		require.NoError(t, f.Deploy(ctx, api, west, "v2.0.0", 5), "running already: no delay")
		assert.Equal(t, 2*time.Second, time.Since(start))
		assert.Equal(t, base+5, f.InUse(west))

		// A version's age counts from when it is ready, not from when its
		// Deploy began.
		require.NoError(t, f.Deploy(ctx, "degrading-service", west, "v2.0.0", 4))
		require.NoError(t, f.Route(ctx, "degrading-service", west, "v1.0.0", "v2.0.0", 10))
		time.Sleep(4*time.Second - time.Nanosecond)
		assert.True(t, judge(t, f, "degrading-service", west, "v2.0.0").Passed)
		time.Sleep(time.Nanosecond)
		assert.False(t, judge(t, f, "degrading-service", west, "v2.0.0").Passed)
	})
}

func TestDeployDelayCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, err := sim.NewWithOptions(catalog.Demo(), sim.Options{DeployDelay: 2 * time.Second})
		require.NoError(t, err)
		base := f.InUse(west)

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Deploy(ctx, api, west, "v2.0.0", 4) }()
		time.Sleep(time.Second)
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
		assert.Equal(t, []string{"v1.0.0"}, f.Versions(api, west))
		assert.Equal(t, base, f.InUse(west), "nothing left behind")

		short, cancelShort := context.WithTimeout(context.Background(), time.Second)
		defer cancelShort()
		assert.ErrorIs(t, f.Deploy(short, api, west, "v2.0.0", 4), context.DeadlineExceeded)
		assert.Equal(t, base, f.InUse(west))

		// A second caller waiting on a deployment whose first caller gives
		// up starts it over, and takes its own full delay.
		first, cancelFirst := context.WithCancel(context.Background())
		firstDone := make(chan error, 1)
		go func() { firstDone <- f.Deploy(first, api, west, "v2.0.0", 4) }()
		synctest.Wait()
		start := time.Now()
		secondDone := make(chan error, 1)
		go func() { secondDone <- f.Deploy(context.Background(), api, west, "v2.0.0", 4) }()
		time.Sleep(time.Second)
		cancelFirst()
		assert.ErrorIs(t, <-firstDone, context.Canceled)
		require.NoError(t, <-secondDone)
		assert.Equal(t, 3*time.Second, time.Since(start))
		assert.Equal(t, []string{"v1.0.0", "v2.0.0"}, f.Versions(api, west))
		assert.Equal(t, base+4, f.InUse(west))
	})
}

// TestConcurrent runs a whole canary rollout in each of 50 service/region
// pairs at once, while others read the fleet. Run it with -race.
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	c := catalog.Demo()
	f := sim.New(c)

	type job struct{ service, region, from, to string }
	var jobs []job
	for _, service := range c.ServiceNames() {
		for _, region := range []string{"us-west-2", "us-east-1", "eu-west-1"} {
			from, _ := c.Running(service, region)
			to := ""
			for _, v := range c.VersionNames(service) {
				if v != from && judgeProfile(c, service, v, region) {
					to = v
				}
			}
			if len(jobs) < 50 {
				jobs = append(jobs, job{service, region, from, to})
			}
		}
	}
	require.Len(t, jobs, 50)

	var wg sync.WaitGroup
	errs := make(chan error, len(jobs))
	for _, j := range jobs {
		wg.Go(func() {
			errs <- rollout(ctx, f, j.service, j.region, j.from, j.to)
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, region := range c.RegionNames() {
					_ = f.InUse(region)
					_, _, _ = f.Split(api, region)
					_ = f.Versions(api, region)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}

	for _, j := range jobs {
		stable, next, percent := f.Split(j.service, j.region)
		assert.Equal(t, [3]any{j.to, "", 0.0}, [3]any{stable, next, percent}, "%s in %s", j.service, j.region)
		assert.Equal(t, []string{j.to}, f.Versions(j.service, j.region))
	}
	for _, region := range []string{"us-west-2", "us-east-1", "eu-west-1"} {
		assert.Equal(t, 4*len(c.Services), f.InUse(region), region)
	}
}

// rollout moves service in region from one version to another in canary
// steps, judging each, as the deployment service does.
func rollout(ctx context.Context, f *sim.Fleet, service, region, from, to string) error {
	if err := f.Deploy(ctx, service, region, to, 4); err != nil {
		return err
	}
	for _, percent := range []float64{10, 50, 100} {
		if err := f.Route(ctx, service, region, from, to, percent); err != nil {
			return err
		}
		s, err := f.Sample(ctx, service, region, to, time.Minute)
		if err != nil {
			return err
		}
		if v := analysis.Evaluate(s, analysis.Default()); !v.Passed {
			return fmt.Errorf("%s %s in %s: %s", service, to, region, v.Reason())
		}
	}
	return f.Retire(ctx, service, region, from)
}

func judgeProfile(c *catalog.Catalog, service, version, region string) bool {
	p, _ := c.Profile(service, version, region, time.Hour)
	s := fleet.Sample{Requests: 1, ErrorRate: p.ErrorRate, P99: p.P99, CPU: p.CPU, Memory: p.Memory}
	return analysis.Evaluate(s, analysis.Default()).Passed
}
