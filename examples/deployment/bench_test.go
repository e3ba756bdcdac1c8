package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkEngine measures the engine end to end with zero bakes on the
// simulated fleet: HTTP, the prerequisites, the queue, the durable state,
// the rollout's three stages (each waiting for a health sample, taken
// every millisecond) and the audit trail. Each of 48 service/region
// pairs deploys one version after another; the figure is deployments/s.
func BenchmarkEngine(b *testing.B) {
	ts := startService(b, "-stages", "canary:5:0s,staging:25:0s,prod:100:0s", "-health-interval", "1ms", "-min-requests", "0", "-workers", "64")
	var pairs [][2]string
	for _, name := range ts.catalog.ServiceNames() {
		if slices.Contains([]string{"bad-service", "slow-service", "degrading-service", "hungry-service", "regional-service", "leaky-service"}, name) {
			continue
		}
		for _, region := range []string{"us-west-2", "us-east-1", "eu-west-1"} {
			pairs = append(pairs, [2]string{name, region})
		}
	}
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			versions := ts.catalog.VersionNames(p[0])
			for i := 1; next.Add(1) <= int64(b.N); i++ {
				stable, _ := ts.store.Stable(b.Context(), p[0], p[1])
				v := versions[i%len(versions)]
				if v == stable {
					v = versions[(i+1)%len(versions)]
				}
				if code, body := benchDeploy(ts.URL, p[0], v, p[1]); code != http.StatusOK {
					failed.Add(1)
					b.Logf("%s %s in %s: %d %s", p[0], v, p[1], code, body)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deployments/s")
	if failed.Load() > 0 {
		b.Fatalf("%d deployments did not succeed", failed.Load())
	}
}

func benchDeploy(base, service, version, region string) (int, string) {
	body := fmt.Sprintf(`{"service":%q,"version":%q,"target_region":%q}`, service, version, region)
	resp, err := http.Post(base+"/deploy", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}
