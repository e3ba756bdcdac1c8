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
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/tai"
)

// BenchmarkEngine measures the engine end to end with zero bakes on the
// simulated fleet: HTTP, the prerequisites, the queue, the durable state,
// the rollout's three stages (each waiting for a health sample, taken
// every millisecond) and the audit trail. Each of 48 service/region
// pairs deploys one version after another; the figure is deployments/s.
// The prerequisites and the analysis are the rule files built in
// (rules=built-in, the default) or the Go rules (rules=go).
func BenchmarkEngine(b *testing.B) {
	b.Run("rules=built-in", func(b *testing.B) { benchEngine(b) })
	b.Run("rules=go", func(b *testing.B) { benchEngine(b, "-rules", "go") })
}

func benchEngine(b *testing.B, args ...string) {
	ts := startService(b, append([]string{"-stages", "canary:5:0s,staging:25:0s,prod:100:0s", "-health-interval", "1ms", "-min-requests", "0", "-workers", "64"}, args...)...)
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

// BenchmarkPrerequisites measures one region's prerequisites, all
// passing, on a world in memory (the corpus's "all pass"): the Go rules
// against the rule file built in, lookup included.
func BenchmarkPrerequisites(b *testing.B) {
	w := prereqBaseWorld()
	s := w.service(b)
	for _, p := range []struct {
		name   string
		policy tai.Policy[*rollout]
	}{{"rules=go", s.prerequisites()}, {"rules=built-in", ruledPrerequisites{s.prerequisiteRules(b)}}} {
		b.Run(p.name, func(b *testing.B) {
			th := w.Thresholds.thresholds()
			lim := thresholdVars(th)
			b.ReportAllocs()
			for b.Loop() {
				r := &rollout{service: "api-service", version: "v2.0.0", region: "us-west-2", thresholds: th, limits: lim}
				d, err := p.policy.Evaluate(b.Context(), tai.Signal[*rollout]{Payload: r})
				if err != nil || d.Verdict != tai.Allow {
					b.Fatal(d, err)
				}
			}
		})
	}
}

// BenchmarkAnalysis measures the analysis of one health sample that
// passes, and of one that fails every check: analysis.Evaluate against
// the rule file built in.
func BenchmarkAnalysis(b *testing.B) {
	env, err := newAnalysisEnv()
	if err != nil {
		b.Fatal(err)
	}
	rs, err := compileRules(env, defaultAnalysis, builtIn)
	if err != nil {
		b.Fatal(err)
	}
	th := analysis.Default()
	lim := thresholdVars(th)
	for _, sc := range []struct {
		name   string
		sample fleet.Sample
	}{
		{"passes", fleet.Sample{Requests: 100, ErrorRate: 0.006, P99: 180 * time.Millisecond, CPU: 0.35, Memory: 0.45}},
		{"fails", fleet.Sample{Requests: 100, ErrorRate: 0.072, P99: 1500 * time.Millisecond, CPU: 0.92, Memory: 0.9}},
	} {
		b.Run(sc.name+"/rules=go", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v := analysis.Evaluate(sc.sample, th); !v.Passed {
					_ = v.Reason()
				}
			}
		})
		b.Run(sc.name+"/rules=built-in", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := judgeReading(b.Context(), rs, sc.sample, lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
