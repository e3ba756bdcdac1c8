package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/datadir"
)

// Bad flags and environment values are refused with a message naming
// them; nothing starts.
func TestParseConfigRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-fleet", "k8s"}, nil, `-fleet "k8s" is not sim or local`},
		{[]string{"-fail-after", "0"}, nil, "-fail-after 0 is not in [1, 100]"},
		{[]string{"-health-interval", "1us"}, nil, "-health-interval 1µs is below 1ms"},
		{[]string{"-nats-replicas", "2"}, nil, "-nats-replicas 2 is not 1, 3 or 5"},
		{[]string{"-nats-replicas", "3"}, nil, "-nats-replicas 3 needs a NATS cluster (-nats-url)"},
		{[]string{"-addr", ":8080"}, nil, "-addr :8080 listens beyond loopback without -api-token"},
		{nil, map[string]string{"WORKERS": "many"}, `WORKERS="many" is not an integer`},
		{nil, map[string]string{"HEALTH_INTERVAL": "soon"}, `HEALTH_INTERVAL="soon" is not a duration`},
		{nil, map[string]string{"DEMO": "yes"}, `DEMO="yes" is not a boolean (true or false, 1 or 0)`},
		{[]string{"extra"}, nil, `unexpected arguments ["extra"]`},
		// NaN passes every comparison: every sample, on no requests at
		// all, would count. +Inf makes every sample inconclusive.
		{[]string{"-min-requests", "NaN"}, nil, "-min-requests NaN is not a number of requests (0 or more)"},
		{nil, map[string]string{"MIN_REQUESTS": "+Inf"}, "-min-requests +Inf is not a number of requests (0 or more)"},
		{[]string{"-min-requests", "-1"}, nil, "-min-requests -1 is not a number of requests (0 or more)"},
		// The traffic's ticker takes one request's interval: a rate so low
		// that it overflows a time.Duration panicked at the start.
		{[]string{"-local-traffic", "1e-12"}, nil, "-local-traffic 1e-12 is not 0 or in [0.001, 10000]"},
		{[]string{"-local-traffic", "NaN"}, nil, "-local-traffic NaN is not 0 or in [0.001, 10000]"},
		{[]string{"-local-traffic", "10001"}, nil, "-local-traffic 10001 is not 0 or in [0.001, 10000]"},
		{nil, map[string]string{"LOG_LEVEL": "nonsense"}, `-log-level "nonsense" must be debug, info, warn or error`},
		// A stage's name goes into region/stage, audit kinds and metric
		// labels, and must not be that of a step of the service's own.
		{[]string{"-stages", "validation:5:1s,prod:100:0s"}, nil, `-stages: stage "validation:5:1s": name "validation" is one of the service's own steps`},
		{[]string{"-stages", "preview:5:1s,prod:100:0s"}, nil, `name "preview" is one of the service's own steps`},
		{[]string{"-stages", "canary:5:1s,batch-2:25:1s,prod:100:0s"}, nil, `name "batch-2" is one of the service's own steps`},
		{[]string{"-stages", "canary:5:1s,canary:25:1s,prod:100:0s"}, nil, `-stages: stage "canary:25:1s": name "canary" is given twice`},
		{[]string{"-stages", "a/b:5:1s,prod:100:0s"}, nil, `-stages: stage "a/b:5:1s": name "a/b" is not 1 to 32 lower-case letters, digits, '-' or '_'`},
		{[]string{"-stages", "Canary Stage:5:1s,prod:100:0s"}, nil, `name "Canary Stage" is not 1 to 32`},
		{[]string{"-stages", "abcdefghijklmnopqrstuvwxyz0123456:5:1s,prod:100:0s"}, nil, `is not 1 to 32`},
		{[]string{"-stages", ":5:1s,prod:100:0s"}, nil, `name "" is not 1 to 32`},
		{[]string{"-stages", "canary:5:1s,prod:100:0s,soak:100:1h"}, nil, `-stages: stage "soak:100:1h" comes after "prod", which sends 100% of traffic; a stage at 100% is the last`},
		// A stage's percent and bake are named as the flag gives them,
		// not as the Ramp's fields.
		{[]string{"-stages", "canary:5:-1s,prod:100:0s"}, nil, `-stages: stage "canary:5:-1s": bake -1s is negative`},
		{[]string{"-stages", "canary:5:1s,prod:100:-1ms"}, nil, `-stages: stage "prod:100:-1ms": bake -1ms is negative`},
		{[]string{"-stages", "canary:0:1s,prod:100:0s"}, nil, `-stages: stage "canary:0:1s": percent "0" is not in (0, 100]`},
		{[]string{"-stages", "canary:-5:1s,prod:100:0s"}, nil, `-stages: stage "canary:-5:1s": percent "-5" is not in (0, 100]`},
		{[]string{"-stages", "canary:NaN:1s,prod:100:0s"}, nil, `-stages: stage "canary:NaN:1s": percent "NaN" is not in (0, 100]`},
		{[]string{"-stages", "prod:150:1s"}, nil, `-stages: stage "prod:150:1s": percent "150" is not in (0, 100]`},
		{[]string{"-stages", "canary:5:1s,prod:1e400:0s"}, nil, `-stages: stage "prod:1e400:0s": percent "1e400" is not in (0, 100]`},
		{[]string{"-stages", "canary:5:1s,prod:five:0s"}, nil, `-stages: stage "prod:five:0s": percent "five" is not a number`},
		{[]string{"-stages", "canary:5:1s,,prod:100:0s"}, nil, `-stages: stage "" is not name:percent:bake`},
		// Ten intervals, how long a stage waits for health data, must
		// not overflow a time.Duration: that made the wait negative.
		{[]string{"-health-interval", "300000h"}, nil, "-health-interval 300000h0m0s is above 1h0m0s"},
		// The analysis flags are named as given, not as the Go fields.
		{[]string{"-max-cpu", "2"}, nil, "-max-cpu 2 is not a share in (0, 1]"},
		{[]string{"-max-error-rate", "0"}, nil, "-max-error-rate 0 is not a share in (0, 1]"},
		{nil, map[string]string{"MAX_MEMORY": "NaN"}, "-max-memory NaN is not a share in (0, 1]"},
		{[]string{"-max-p99", "-1s"}, nil, "-max-p99 -1s must be positive"},
		// Carried in a deployment as milliseconds in a float64, a p99
		// near the largest time.Duration came back negative: every
		// reading failed it.
		{[]string{"-max-p99", "2562047h47m16.854775807s"}, nil, "-max-p99 2562047h47m16.854775807s is above 1h0m0s"},
		{nil, map[string]string{"MAX_P99": "1h0m0.001s"}, "-max-p99 1h0m0.001s is above 1h0m0s"},
		// A window that ends as it starts holds no instant; one whose
		// end comes first is named as such.
		{[]string{"-freeze", "2026-12-24T00:00:00Z/2026-12-24T01:00:00+01:00"}, nil, `-freeze: window "2026-12-24T00:00:00Z/2026-12-24T01:00:00+01:00" is empty: it ends as it starts`},
		{[]string{"-freeze", "2026-12-24T00:00:00Z/2026-12-23T00:00:00Z"}, nil, `-freeze: window "2026-12-24T00:00:00Z/2026-12-23T00:00:00Z" ends before it starts`},
		// The replica's name names its audit trail's file in the data
		// dir: one with a '/' put it elsewhere (../x: beside the data
		// dir), and none at all made audit-.jsonl.
		{[]string{"-instance", ""}, nil, `-instance "" must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.'`},
		{[]string{"-instance", "eu/1"}, nil, `-instance "eu/1" must be 1 to 200 letters, digits, '_', '-' or '.'`},
		{[]string{"-instance", "../x"}, nil, `-instance "../x" must be 1 to 200 letters, digits, '_', '-' or '.'`},
		{nil, map[string]string{"INSTANCE": "a b"}, `-instance "a b" must be 1 to 200 letters, digits, '_', '-' or '.'`},
		// A lease within which a run rereads its record before a move
		// of the fleet (recheckAfter) many times over, and not days.
		{[]string{"-rollout-lease", "2999ms"}, nil, "-rollout-lease 2.999s is not in [3s, 1h]"},
		{[]string{"-rollout-lease", "1ns"}, nil, "-rollout-lease 1ns is not in [3s, 1h]"},
		{nil, map[string]string{"ROLLOUT_LEASE": "-45s"}, "-rollout-lease -45s is not in [3s, 1h]"},
		{[]string{"-rollout-lease", "1h0m1s"}, nil, "-rollout-lease 1h0m1s is not in [3s, 1h]"},
		{nil, map[string]string{"ROLLOUT_LEASE": "long"}, `ROLLOUT_LEASE="long" is not a duration`},
	} {
		_, err := parseConfig(append([]string{"-data-dir", t.TempDir()}, tc.args...), func(k string) string { return tc.env[k] })
		require.Error(t, err, "%v %v", tc.args, tc.env)
		assert.ErrorContains(t, err, tc.want)
	}
	c, err := parseConfig([]string{"-data-dir", t.TempDir(), "-nats-url", "nats://127.0.0.1:4222", "-nats-replicas", "3"}, func(string) string { return "" })
	require.NoError(t, err)
	assert.Equal(t, 3, c.NATSReplicas)
	assert.Equal(t, "127.0.0.1:3002", c.Addr, "loopback without a token")
	assert.Equal(t, 45*time.Second, c.RolloutLease, "on a cluster, the lease outlasts an election")
	// The rollout queue's AckWait is the lease.
	assert.Equal(t, 45*time.Second, (&Service{cfg: c}).queueOptions().AckWait)
	c, err = parseConfig([]string{"-data-dir", t.TempDir(), "-rollout-lease", "0"}, func(string) string { return "" })
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, c.RolloutLease, "on one server, which holds no elections")
	c, err = parseConfig([]string{"-data-dir", t.TempDir(), "-nats-url", "nats://127.0.0.1:4222", "-nats-replicas", "5", "-rollout-lease", "20s"}, func(string) string { return "" })
	require.NoError(t, err)
	assert.Equal(t, 20*time.Second, c.RolloutLease, "as given")
	for _, lease := range []time.Duration{3 * time.Second, time.Hour} {
		c, err = parseConfig([]string{"-data-dir", t.TempDir(), "-rollout-lease", lease.String()}, func(string) string { return "" })
		require.NoError(t, err, lease)
		assert.Equal(t, lease, c.RolloutLease)
	}
	c, err = parseConfig([]string{"-data-dir", t.TempDir(), "-stages", "pre_check:1:1s,batch-b:5:1s,wave-2:50:1s,abcdefghijklmnopqrstuvwxyz012345:100:0s"}, func(string) string { return "" })
	require.NoError(t, err)
	assert.Len(t, c.Stages, 4)
	// The highest -max-p99 comes back from a deployment as it was given.
	c, err = parseConfig([]string{"-data-dir", t.TempDir(), "-max-p99", "1h"}, func(string) string { return "" })
	require.NoError(t, err)
	assert.Equal(t, time.Hour, (&DeployRequest{}).thresholds(c.Analysis).analysis().MaxP99)
}

// DEMO takes what strconv.ParseBool does, as -demo does: 1 is the demo
// profile and 0 the production one.
func TestDemoVariable(t *testing.T) {
	for _, tc := range []struct {
		value    string
		interval time.Duration
	}{{"", 500 * time.Millisecond}, {"true", 500 * time.Millisecond}, {"1", 500 * time.Millisecond}, {"TRUE", 500 * time.Millisecond},
		{"false", 10 * time.Second}, {"0", 10 * time.Second}, {"F", 10 * time.Second}} {
		c, err := parseConfig([]string{"-data-dir", t.TempDir()}, func(k string) string { return map[string]string{"DEMO": tc.value}[k] })
		require.NoError(t, err, "DEMO=%q", tc.value)
		assert.Equal(t, tc.interval, c.Interval, "DEMO=%q", tc.value)
	}
}

// TestCatalogNamesARequestTakes: a -catalog file whose service, region or
// version names a request could not name is refused at the start, naming
// each; the service took it, listed them in GET /catalog, and answered
// every deployment of them 400 (a region of 40 letters, a version
// v1.0.0~rc1, a service -svc).
func TestCatalogNamesARequestTakes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "catalog.json")
	long := strings.Repeat("a", 40)
	require.NoError(t, os.WriteFile(file, []byte(`{
  "regions": {"us-west-2": {"capacity": 20}, "`+long+`": {"capacity": 20}},
  "services": {
    "api-service": {"running": {"us-west-2": "v1.0.0"}, "versions": {
      "v1.0.0": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5},
      "v1.0.0~rc1": {"error_rate": 0.007, "p99_ms": 180, "cpu": 0.4, "memory": 0.6}}},
    "-svc": {"versions": {"v1": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5}}}}
}`), 0o600))
	dir := t.TempDir()
	cfg, err := parseConfig([]string{"-data-dir", dir, "-instance", "test", "-catalog", file}, func(string) string { return "" })
	require.NoError(t, err)
	lock, err := datadir.Acquire(dir)
	require.NoError(t, err)
	defer lock.Release()
	svc, err := newService(context.Background(), cfg, slog.New(slog.DiscardHandler), lock)
	if err == nil {
		require.NoError(t, svc.Close(context.Background()))
	}
	require.Error(t, err)
	assert.ErrorContains(t, err, `regions.`+long+`: region "`+long+`" is not a name a request takes`)
	assert.ErrorContains(t, err, `services.api-service.versions.v1.0.0~rc1: version "v1.0.0~rc1" is not a name a request takes`)
	assert.ErrorContains(t, err, `services.-svc: service "-svc" is not a name a request takes`)
}

// A -prometheus-url the health reader cannot use is refused at the start
// with the URL named redacted: the password in it, or a token in its
// query, was printed whole in the error the service stopped with.
func TestPrometheusURLRefusedWithoutItsSecret(t *testing.T) {
	for _, bad := range []string{
		"ftp://reader:s3cret@prom:9090",
		"http://reader:s3cret@prom:port",
		"prom:s3cret@prom:9090",
		"http:///?token=s3cret",
	} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-prometheus-url", bad}, func(string) string { return "" })
		require.Error(t, err, bad)
		assert.ErrorContains(t, err, "-prometheus-url", bad)
		assert.NotContains(t, err.Error(), "s3cret", bad)
	}
	c, err := parseConfig([]string{"-data-dir", t.TempDir()}, func(k string) string {
		return map[string]string{"PROMETHEUS_URL": "https://reader:s3cret@prom:9090/prometheus?token=s3cret"}[k]
	})
	require.NoError(t, err)
	assert.Equal(t, "https://reader:s3cret@prom:9090/prometheus?token=s3cret", c.PrometheusURL.Reveal())
}

// A -prometheus-url whose password holds a '/', '?' or '#', not escaped,
// is refused without a piece of the password, which url.Parse reads as
// the port or the host.
func TestPrometheusURLRefusedWithoutAPasswordPiece(t *testing.T) {
	for _, bad := range []string{"http://reader:s3cret/x@prom:9090", "ftp://reader:s3cret?x@prom:9090"} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-prometheus-url", bad}, func(string) string { return "" })
		require.ErrorContains(t, err, "-prometheus-url", bad)
		assert.NotContains(t, err.Error(), "s3cret", bad)
	}
}
