package promhealth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/examples/deployment/internal/localfleet"
	"github.com/taipattern/taikit/internal/servers"
)

// startPrometheus runs a Prometheus server that scrapes targets every
// second, and returns its URL once it is ready.
func startPrometheus(t *testing.T, targets []string) string {
	t.Helper()
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = strconv.Quote(target)
	}
	return servers.StartPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: demoapp
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", ")))
}

// TestAgainstPrometheus runs two versions of the demoapp, one healthy and
// one failing a fifth of its requests, has a real Prometheus scrape them,
// sends traffic at both, and reads their health back through the HTTP
// API.
func TestAgainstPrometheus(t *testing.T) {
	servers.Binary(t, "prometheus", "prometheus") // skip before building anything
	ctx := t.Context()
	binary, err := localfleet.Build(ctx, t.TempDir())
	require.NoError(t, err)
	f, err := localfleet.New(localfleet.Options{
		Binary: binary,
		Profile: func(service, version, region string) (localfleet.AppProfile, error) {
			p := localfleet.AppProfile{Latency: 5 * time.Millisecond}
			if version == "v2" {
				p.ErrorRate = 0.2
			}
			return p, nil
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		// Not t.Context(): it is canceled before cleanups run, and the
		// proxy's Shutdown then fails while the traffic's last
		// connection is still open.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, f.Shutdown(ctx))
	})
	for _, v := range []string{"v1", "v2"} {
		require.NoError(t, f.Deploy(ctx, "web", "eu", v, 1))
	}
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 50))
	targets := append(f.Instances("web", "eu", "v1"), f.Instances("web", "eu", "v2")...)
	promURL := startPrometheus(t, targets)
	proxy, _ := f.ProxyURL("web", "eu")

	// Traffic at about 100 requests a second to each version until the
	// test ends.
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	t.Cleanup(func() { close(stop); traffic.Wait() })
	c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	for range 2 {
		traffic.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if resp, err := c.Get(proxy + "/"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}

	h, err := New(Options{URL: promURL})
	require.NoError(t, err)
	const window = 10 * time.Second
	var good, bad fleet.Sample
	var lastErr error
	require.Eventually(t, func() bool {
		good, lastErr = h.Sample(ctx, "web", "eu", "v1", window)
		if lastErr != nil {
			return false
		}
		bad, lastErr = h.Sample(ctx, "web", "eu", "v2", window)
		return lastErr == nil && good.Requests >= 300 && bad.Requests >= 300
	}, 60*time.Second, 500*time.Millisecond, "no full window of data: %v", &lastErr)
	t.Logf("v1: %+v", good)
	t.Logf("v2: %+v", bad)

	assert.InDelta(t, 0, good.ErrorRate, 0.001, "the healthy version fails nothing")
	assert.InDelta(t, 0.2, bad.ErrorRate, 0.02, "the bad version fails a fifth")
	for _, s := range []fleet.Sample{good, bad} {
		assert.GreaterOrEqual(t, s.P99, 5*time.Millisecond, "at least the app's delay")
		assert.Less(t, s.P99, time.Second)
		assert.Greater(t, s.CPU, 0.0)
		assert.LessOrEqual(t, s.CPU, 1.0)
		assert.Greater(t, s.Memory, 0.0, "a Go process has some resident memory")
		assert.Less(t, s.Memory, 1.0, "and far less than 256 MiB")
		assert.WithinDuration(t, time.Now(), s.Time, 10*time.Second)
	}

	t.Run("unknown version", func(t *testing.T) {
		_, err := h.Sample(ctx, "web", "eu", "v9", window)
		assert.ErrorIs(t, err, fleet.ErrNoData)
	})
	t.Run("bad query", func(t *testing.T) {
		q := DefaultQueries()
		q.P99 = `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[{{.Window}}]))`
		h, err := New(Options{URL: promURL, Queries: q})
		require.NoError(t, err, "the template is fine; the PromQL is not")
		_, err = h.Sample(ctx, "web", "eu", "v1", window)
		var apiErr *APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
		assert.Equal(t, "bad_data", apiErr.Type)
		assert.Contains(t, apiErr.Message, "parse error")
		t.Log(err)
	})
}

// TestNamesAgainstPrometheus: whatever the service, region and version
// are, Prometheus parses the queries Sample sends, and a version it has no
// series of reads as no data, not as a bad query.
func TestNamesAgainstPrometheus(t *testing.T) {
	servers.Binary(t, "prometheus", "prometheus")
	promURL := servers.StartPrometheus(t, "global:\n  scrape_interval: 1s\n")
	h, err := New(Options{URL: promURL})
	require.NoError(t, err)
	for _, version := range []string{
		`v"2`, `v\2`, "v\n2", "v\x002", "v\x7f2", "v\u20282", "v`2", "v'2", "v{{2}}",
		"v\xff2",   // not UTF-8
		"v\uFFFD2", // the replacement character, which the lexer takes for invalid UTF-8
		"v\U0001F6002",
	} {
		_, err := h.Sample(t.Context(), "web"+version, "eu"+version, version, time.Minute)
		assert.ErrorIs(t, err, fleet.ErrNoData, "%q", version)
	}
}
