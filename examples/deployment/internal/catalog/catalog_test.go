package catalog_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

var mainRegions = []string{"us-west-2", "us-east-1", "eu-west-1"}

func TestLookups(t *testing.T) {
	c := catalog.Demo()

	assert.True(t, c.HasImage("api-service", "v2.0.0"))
	assert.False(t, c.HasImage("api-service", "v9.9.9"))
	assert.False(t, c.HasImage("no-such-service", "v1.0.0"))

	r, ok := c.Region("ap-south-1")
	assert.True(t, ok)
	assert.Equal(t, catalog.Region{Capacity: 2}, r)
	_, ok = c.Region("mars-1")
	assert.False(t, ok)

	assert.Equal(t, []string{"ap-south-1", "eu-west-1", "us-east-1", "us-west-2"}, c.RegionNames())
	assert.Equal(t, []string{"v1.0.0", "v2.0.0", "v2.1.0", "v3.0.0"}, c.VersionNames("api-service"))
	assert.Nil(t, c.VersionNames("no-such-service"))

	v, ok := c.Running("bad-service", "eu-west-1")
	assert.True(t, ok)
	assert.Equal(t, "v0.9.0", v)
	_, ok = c.Running("bad-service", "ap-south-1")
	assert.False(t, ok, "nothing runs in ap-south-1")
	_, ok = c.Running("no-such-service", "us-west-2")
	assert.False(t, ok)

	assert.Equal(t, 4, c.Instances("api-service"), "given in the catalog")
	assert.Equal(t, catalog.DefaultInstances, c.Instances("checkout"), "not given")
	assert.Equal(t, 0, c.Instances("no-such-service"))
}

func TestProfile(t *testing.T) {
	c := catalog.Demo()
	ms := time.Millisecond

	p, ok := c.Profile("regional-service", "v2.0.0", "us-west-2", time.Minute)
	require.True(t, ok)
	assert.Equal(t, catalog.Profile{ErrorRate: 0.007, P99: 200 * ms, CPU: 0.40, Memory: 0.50}, p)
	p, ok = c.Profile("regional-service", "v2.0.0", "eu-west-1", time.Minute)
	require.True(t, ok)
	assert.Equal(t, catalog.Profile{ErrorRate: 0.09, P99: 220 * ms, CPU: 0.42, Memory: 0.52}, p, "the region's override")
	p, ok = c.Profile("regional-service", "v2.0.0", "ap-south-1", 0)
	require.True(t, ok)
	assert.Equal(t, 0.007, p.ErrorRate, "no override there")

	healthy := catalog.Profile{ErrorRate: 0.008, P99: 210 * ms, CPU: 0.40, Memory: 0.50}
	degraded := catalog.Profile{ErrorRate: 0.15, P99: 400 * ms, CPU: 0.45, Memory: 0.55}
	for _, tt := range []struct {
		since time.Duration
		want  catalog.Profile
	}{
		{0, healthy},
		{4*time.Second - 1, healthy},
		{4 * time.Second, degraded},
		{time.Hour, degraded},
	} {
		p, ok := c.Profile("degrading-service", "v2.0.0", "us-east-1", tt.since)
		require.True(t, ok)
		assert.Equal(t, tt.want, p, "after %v", tt.since)
	}

	for _, q := range [][3]string{
		{"no-such-service", "v1.0.0", "us-west-2"},
		{"api-service", "v9", "us-west-2"},
		{"api-service", "v1.0.0", "mars-1"},
	} {
		_, ok := c.Profile(q[0], q[1], q[2], 0)
		assert.False(t, ok, "%v", q)
	}
}

func TestDemoIsFresh(t *testing.T) {
	a, b := catalog.Demo(), catalog.Demo()
	require.Equal(t, a, b)
	v := a.Services["api-service"].Versions["v2.0.0"]
	v.ErrorRate = 0.5
	a.Services["api-service"].Versions["v2.0.0"] = v
	a.Services["api-service"].Running["us-west-2"] = "v2.0.0"
	delete(a.Regions, "ap-south-1")

	c := catalog.Demo()
	assert.Equal(t, b, c)
	assert.Equal(t, 0.007, c.Services["api-service"].Versions["v2.0.0"].ErrorRate)
}

// verdict judges version of service in region, sinceDeploy after it was
// deployed, against the default gate.
func verdict(t *testing.T, c *catalog.Catalog, service, version, region string, sinceDeploy time.Duration) analysis.Verdict {
	t.Helper()
	p, ok := c.Profile(service, version, region, sinceDeploy)
	require.True(t, ok, "%s %s in %s", service, version, region)
	return analysis.Evaluate(fleet.Sample{Requests: 600, ErrorRate: p.ErrorRate, P99: p.P99, CPU: p.CPU, Memory: p.Memory}, analysis.Default())
}

// TestDemoScenarios: the versions meant to fail fail, each for its one
// reason and only where meant; every other version passes everywhere.
func TestDemoScenarios(t *testing.T) {
	c := catalog.Demo()
	failing := map[[2]string]map[string]string{ // service, version -> region -> reason
		{"bad-service", "v1.0.0"}:      everywhere("Error rate 7.20% exceeds threshold 5.00%"),
		{"slow-service", "v2.0.0"}:     everywhere("P99 latency 1500ms exceeds threshold 1000ms"),
		{"hungry-service", "v2.0.0"}:   everywhere("CPU usage 92.00% exceeds threshold 80.00%"),
		{"leaky-service", "v2.0.0"}:    everywhere("Memory usage 90.00% exceeds threshold 85.00%"),
		{"regional-service", "v2.0.0"}: {"eu-west-1": "Error rate 9.00% exceeds threshold 5.00%"},
	}
	for _, service := range c.ServiceNames() {
		for _, version := range c.VersionNames(service) {
			for _, region := range c.RegionNames() {
				for _, since := range []time.Duration{0, time.Second, time.Hour} {
					v := verdict(t, c, service, version, region, since)
					want := failing[[2]string{service, version}][region]
					if service == "degrading-service" && version == "v2.0.0" && since >= 4*time.Second {
						want = "Error rate 15.00% exceeds threshold 5.00%"
					}
					assert.Equal(t, want, v.Reason(), "%s %s in %s after %v", service, version, region, since)
					assert.Equal(t, want == "", v.Passed)
				}
			}
		}
	}
}

func everywhere(reason string) map[string]string {
	m := map[string]string{}
	for _, r := range append(mainRegions, "ap-south-1") {
		m[r] = reason
	}
	return m
}

func TestDegradingService(t *testing.T) {
	c := catalog.Demo()
	assert.True(t, verdict(t, c, "degrading-service", "v2.0.0", "us-west-2", 3*time.Second).Passed)
	after := verdict(t, c, "degrading-service", "v2.0.0", "us-west-2", 5*time.Second)
	assert.False(t, after.Passed)
	assert.Equal(t, "Error rate 15.00% exceeds threshold 5.00%", after.Reason())
	assert.Equal(t, 4*time.Second, c.Services["degrading-service"].Versions["v2.0.0"].DegradeAfter)
}

// TestDemoShape: what the deployment service's tests rely on.
func TestDemoShape(t *testing.T) {
	c := catalog.Demo()
	names := c.ServiceNames()
	assert.GreaterOrEqual(t, len(names), 17, "50 concurrent deployments need 50 distinct service/region pairs in three regions")
	for _, s := range []string{"api-service", "bad-service", "slow-service", "regional-service", "degrading-service",
		"hungry-service", "web-frontend", "checkout", "search", "auth"} {
		assert.Contains(t, names, s)
	}
	assert.Equal(t, []string{"v2.0.0", "v2.1.0", "v3.0.0"}, without(c.VersionNames("api-service"), "v1.0.0"))

	need := map[string]int{} // region -> instances if every service ran two versions at once
	for _, service := range names {
		healthyNew := 0
		for _, region := range mainRegions {
			running, ok := c.Running(service, region)
			require.True(t, ok, "%s runs in %s", service, region)
			assert.True(t, verdict(t, c, service, running, region, time.Hour).Passed, "%s %s is healthy", service, running)
			need[region] += 2 * c.Instances(service)
		}
		running, _ := c.Running(service, "us-west-2")
		for _, version := range without(c.VersionNames(service), running) {
			healthy := true
			for _, region := range mainRegions {
				healthy = healthy && verdict(t, c, service, version, region, time.Hour).Passed
			}
			if healthy {
				healthyNew++
				checkHealthyRange(t, c, service, version)
			}
		}
		assert.GreaterOrEqual(t, healthyNew, 2, "%s has two healthy versions to deploy", service)
		checkHealthyRange(t, c, service, running)
	}
	for _, region := range mainRegions {
		r, _ := c.Region(region)
		assert.GreaterOrEqual(t, r.Capacity, need[region], region)
	}
	small, ok := c.Region("ap-south-1")
	require.True(t, ok)
	assert.Less(t, small.Capacity, c.Instances("api-service"), "too small for a deployment")
}

// checkHealthyRange: healthy versions look like healthy services do.
func checkHealthyRange(t *testing.T, c *catalog.Catalog, service, version string) {
	t.Helper()
	for _, region := range mainRegions {
		p, _ := c.Profile(service, version, region, time.Hour)
		where := service + " " + version + " in " + region
		assert.True(t, p.ErrorRate >= 0.005 && p.ErrorRate <= 0.01, "%s error rate %v", where, p.ErrorRate)
		assert.True(t, p.P99 >= 120*time.Millisecond && p.P99 <= 300*time.Millisecond, "%s p99 %v", where, p.P99)
		assert.True(t, p.CPU >= 0.3 && p.CPU <= 0.5, "%s cpu %v", where, p.CPU)
		assert.True(t, p.Memory >= 0.4 && p.Memory <= 0.6, "%s memory %v", where, p.Memory)
	}
}

func without(names []string, drop string) []string {
	var out []string
	for _, n := range names {
		if n != drop {
			out = append(out, n)
		}
	}
	return out
}
