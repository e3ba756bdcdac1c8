package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// The corpora are generated from the Go rules by the cases below:
//
//	go test ./examples/deployment -run 'Corpus' -update
var update = flag.Bool("update", false, "rewrite testdata/*_corpus.jsonl from the Go rules")

const (
	prereqCorpus   = "testdata/prereq_corpus.jsonl"
	analysisCorpus = "testdata/analysis_corpus.jsonl"
)

// TestPrerequisiteCorpus replays every recorded case through the Go rules
// (policy.go) and the rule file built in (rules/prerequisites.yaml, with
// rules/analysis.yaml for the region's health): both decide as recorded,
// with the same verdict, prerequisite and reason, and fail alike.
func TestPrerequisiteCorpus(t *testing.T) {
	cases := readCorpus[prereqCase](t, prereqCorpus, genPrereqCases)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			s := c.World.service(t)
			assert.Equal(t, c.Want, c.judge(t, s.prerequisites()), "the Go rules")
			rules := s.prerequisiteRules(t)
			assert.Equal(t, c.Want, c.judge(t, ruledPrerequisites{rules}), "the rule file")
			// The file judged as one set decides alike; only the policy
			// is the set's.
			whole := c.judge(t, tai.PolicyFunc[*rollout](func(ctx context.Context, sig tai.Signal[*rollout]) (tai.Decision, error) {
				r := sig.Payload
				d, err := rules.current().whole.Evaluate(ctx, tai.Signal[RegionRequest]{Time: time.Now(), Payload: RegionRequest{
					Service: r.service, Version: r.version, Region: r.region, FirstDeploy: r.firstDeploy, facts: &regionFacts{r: r}}})
				if d.Verdict == tai.Deny {
					d.Policy = c.Want.Policy
				}
				return d, err
			}))
			if c.Want.Verdict == tai.Allow.String() {
				whole.Policy = c.Want.Policy
			}
			assert.Equal(t, c.Want, whole, "the rule file as one set")
		})
	}
	for _, b := range []struct{ policy, reason string }{
		{"image_exists", ""}, {"image_exists", "Image not found: "},
		{"region_capacity", "Unknown region: "}, {"region_capacity", "Insufficient capacity in "},
		{"rollback_plan", " already serves in "}, {"rollback_plan", "No rollback plan: "},
		{"change_freeze", "Change freeze until "}, {"region_health", " unhealthy before the change "},
	} {
		found := false
		for _, c := range cases {
			found = found || c.Want.Policy == b.policy && strings.Contains(c.Want.Reason, b.reason) && (b.reason == "") == (c.Want.Verdict == "allow")
		}
		assert.True(t, found, "no case in the corpus where %s answers %q", b.policy, b.reason)
	}
	errs := 0
	for _, c := range cases {
		if c.Want.Error != "" {
			errs++
		}
	}
	assert.Equal(t, 2, errs, "a store and a health source that fail")
}

// TestAnalysisCorpus replays every recorded health sample through
// analysis.Evaluate and the rule file built in (rules/analysis.yaml):
// both pass or fail it alike, with the same reason and failed checks.
func TestAnalysisCorpus(t *testing.T) {
	cases := readCorpus[analysisCase](t, analysisCorpus, genAnalysisCases)
	rs, err := compileRules(mustAnalysisEnv(t), defaultAnalysis, builtIn)
	require.NoError(t, err)
	failed := map[string]bool{}
	var passed, together, atThreshold, invalid int
	for _, c := range cases {
		s, th := c.Sample.sample(), c.Thresholds.thresholds()
		assert.Equal(t, c.Want, outcomeOf(judgementOf(analysis.Evaluate(s, th))), "%s: the Go analysis", c.Name)
		j, err := judgeReading(t.Context(), rs, s, thresholdVars(th))
		require.NoError(t, err, c.Name)
		assert.Equal(t, c.Want, outcomeOf(j), "%s: the rule file", c.Name)
		assert.Equal(t, goChecks, j.checks, c.Name)
		for _, f := range c.Want.Failed {
			failed[f] = true
		}
		switch {
		case c.Want.Passed:
			passed++
		case len(c.Want.Failed) > 1:
			together++
		}
		if strings.Contains(c.Name, "at the threshold") {
			atThreshold++
		}
		if strings.Contains(c.Want.Reason, "not a valid reading") {
			invalid++
		}
	}
	for _, check := range goChecks {
		assert.True(t, failed[check], "no case fails %s", check)
	}
	assert.Positive(t, passed)
	assert.Positive(t, together, "no case fails checks together")
	assert.GreaterOrEqual(t, atThreshold, 4, "cases exactly at each threshold")
	assert.Positive(t, invalid, "no case with a reading that cannot be one")
}

// readCorpus reads a corpus, after rewriting it from gen with -update. A
// corpus that is not what gen makes (edited by hand, or gen changed
// without -update) fails the test.
func readCorpus[C any](t *testing.T, path string, gen func(*testing.T) []C) []C {
	t.Helper()
	var want bytes.Buffer
	for _, c := range gen(t) {
		line, err := json.Marshal(c)
		require.NoError(t, err)
		want.Write(line)
		want.WriteByte('\n')
	}
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, want.Bytes(), 0o644))
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to generate it")
	require.Equal(t, want.String(), string(data), "%s is not what its cases generate: run with -update", path)
	var out []C
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var c C
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
		out = append(out, c)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out)
	return out
}

func mustAnalysisEnv(t testing.TB) *taicel.Env[HealthReading] {
	t.Helper()
	env, err := newAnalysisEnv()
	require.NoError(t, err)
	return env
}

// --- the prerequisites ---

// prereqCase is a deployment in a region, the world it meets (what the
// Go rules read from the service), and the decision recorded.
type prereqCase struct {
	Name    string        `json:"case"`
	Request prereqRequest `json:"request"`
	World   prereqWorld   `json:"world"`
	Want    prereqOutcome `json:"want"`
}

type prereqRequest struct {
	Service     string `json:"service"`
	Version     string `json:"version"`
	Region      string `json:"region"`
	FirstDeploy bool   `json:"first_deploy,omitempty"`
}

type prereqWorld struct {
	Now      time.Time               `json:"now"`
	Regions  map[string]int          `json:"regions"`  // capacity of each region
	Services map[string]worldService `json:"services"` // what the catalog has
	Serving  map[string]string       `json:"serving"`  // service.region -> version serving
	Freeze   []worldWindow           `json:"freeze,omitempty"`
	// Health is the sample of the version serving; nil is no data.
	Health      *sampleJSON    `json:"health,omitempty"`
	HealthError string         `json:"health_error,omitempty"` // the health source fails so
	StoreError  string         `json:"store_error,omitempty"`  // reading the version serving fails so
	Thresholds  thresholdsJSON `json:"thresholds"`
}

type worldService struct {
	Instances int      `json:"instances,omitempty"`
	Versions  []string `json:"versions"`
}

type worldWindow struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// prereqOutcome is a decision as the API shows it: its verdict, the
// prerequisite that refused and why; or that the evaluation failed; and
// the version the rollout would roll back to, when allowed.
type prereqOutcome struct {
	Verdict string `json:"verdict,omitempty"`
	Policy  string `json:"policy,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Error   string `json:"error,omitempty"` // the cause, which both errors name
	Stable  string `json:"stable,omitempty"`
}

// service builds a service that sees the world w: its catalog, the
// versions serving (watched and stored), the freeze windows, the health of
// the version serving; and the analysis rules built in.
func (w prereqWorld) service(t testing.TB) *Service {
	t.Helper()
	cat := &catalog.Catalog{Services: map[string]catalog.Service{}, Regions: map[string]catalog.Region{}}
	for name, c := range w.Regions {
		cat.Regions[name] = catalog.Region{Capacity: c}
	}
	for name, ws := range w.Services {
		versions := map[string]catalog.Version{}
		for _, v := range ws.Versions {
			versions[v] = catalog.Version{}
		}
		cat.Services[name] = catalog.Service{Instances: ws.Instances, Versions: versions}
	}
	var windows []Window
	for _, fw := range w.Freeze {
		windows = append(windows, Window(fw))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &Service{
		cfg: Config{Freeze: windows, Interval: time.Second}, log: log, catalog: cat,
		stableView: w.Serving, versions: worldVersions(w), health: worldHealth(w), freezeWindows: freezeVar(windows),
	}
	var err error
	s.analysisRules, err = openRuleFile(mustAnalysisEnv(t), ruleFileOptions{Name: "analysis", BuiltIn: defaultAnalysis, Logger: log})
	require.NoError(t, err)
	return s
}

// prerequisiteRules is the prerequisite rule file built in, looking up
// in s.
func (s *Service) prerequisiteRules(t testing.TB) *ruleFile[RegionRequest] {
	t.Helper()
	env, err := newPrerequisiteEnv(s.prerequisiteLookup)
	require.NoError(t, err)
	rules, err := openRuleFile(env, ruleFileOptions{Name: "prerequisites", BuiltIn: defaultPrerequisites, Logger: s.log})
	require.NoError(t, err)
	return rules
}

type worldVersions prereqWorld

func (w worldVersions) Stable(_ context.Context, service, region string) (string, error) {
	if w.StoreError != "" {
		return "", errors.New(w.StoreError)
	}
	return w.Serving[service+"."+region], nil
}

type worldHealth prereqWorld

func (w worldHealth) Sample(context.Context, string, string, string, time.Duration) (fleet.Sample, error) {
	switch {
	case w.HealthError != "":
		return fleet.Sample{}, errors.New(w.HealthError)
	case w.Health == nil:
		return fleet.Sample{}, fmt.Errorf("sampling: %w", fleet.ErrNoData)
	}
	return w.Health.sample(), nil
}

// judge evaluates p on the case's rollout at the case's time: in a
// bubble, whose clock starts in 2000, moved on to it.
func (c prereqCase) judge(t *testing.T, p tai.Policy[*rollout]) (out prereqOutcome) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Until(c.World.Now))
		require.True(t, time.Now().Equal(c.World.Now), "the case's time is after 2000-01-01")
		th := c.World.Thresholds.thresholds()
		r := &rollout{service: c.Request.Service, version: c.Request.Version, region: c.Request.Region,
			firstDeploy: c.Request.FirstDeploy, thresholds: th, limits: thresholdVars(th)}
		d, err := p.Evaluate(context.Background(), tai.Signal[*rollout]{ID: "t", Kind: "deployment", Key: r.service + "/" + r.region, Payload: r})
		out = prereqOutcome{Verdict: d.Verdict.String(), Policy: d.Policy, Reason: d.Reason}
		switch {
		case err != nil:
			// The errors around the world's own differ: the Go rules
			// fail in the rule that reads, the rule file in its lookup.
			out = prereqOutcome{Error: err.Error()}
			for _, cause := range []string{c.World.StoreError, c.World.HealthError} {
				if cause != "" && strings.HasSuffix(err.Error(), ": "+cause) {
					out.Error = cause
				}
			}
		case d.Verdict == tai.Allow:
			out.Stable = r.stable
		}
	})
	return out
}

// prereqBaseWorld is the world of the prerequisite corpus before each
// case changes it: three regions, one of them tiny, three services, the
// version serving healthy, no freeze.
func prereqBaseWorld() prereqWorld {
	return prereqWorld{
		Now:     time.Date(2026, 12, 20, 12, 0, 0, 0, time.UTC),
		Regions: map[string]int{"us-west-2": 200, "eu-west-1": 16, "tiny": 2},
		Services: map[string]worldService{
			"api-service": {Instances: 4, Versions: []string{"v1.0.0", "v2.0.0", "v3.0.0"}},
			"db":          {Instances: 8, Versions: []string{"v1.0.0"}},
			"web":         {Versions: []string{"v1.0.0", "v1.1.0"}},
		},
		Serving: map[string]string{
			"api-service.us-west-2": "v1.0.0", "db.us-west-2": "v1.0.0",
			"api-service.eu-west-1": "v1.0.0", "db.eu-west-1": "v1.0.0",
		},
		Health:     &sampleJSON{Requests: 100, ErrorRate: 0.006, P99: "150ms", CPU: 0.35, Memory: 0.45},
		Thresholds: thresholdsJSONOf(analysis.Default()),
	}
}

// genPrereqCases makes the prerequisite corpus: every branch of every
// prerequisite, their order when several refuse, and the boundaries of
// the capacity and of the freeze windows. The decisions are the Go
// rules'.
func genPrereqCases(t *testing.T) []prereqCase {
	base := prereqBaseWorld
	req := func(service, version, region string) prereqRequest {
		return prereqRequest{Service: service, Version: version, Region: region}
	}
	api := req("api-service", "v2.0.0", "us-west-2")
	freeze := func(from, to string) worldWindow {
		f, err := time.Parse(time.RFC3339Nano, from)
		if err != nil {
			panic(err)
		}
		u, err := time.Parse(time.RFC3339Nano, to)
		if err != nil {
			panic(err)
		}
		return worldWindow{From: f, To: u}
	}
	christmas := freeze("2026-12-19T00:00:00Z", "2026-12-27T00:00:00Z")
	type tweak func(*prereqWorld, *prereqRequest)
	cases := []struct {
		name string
		req  prereqRequest
		set  tweak
	}{
		{"all pass", api, nil},
		{"all pass, a later version", req("api-service", "v3.0.0", "us-west-2"), nil},
		{"image missing", req("api-service", "v9.9.9", "us-west-2"), nil},
		{"image of an unknown service", req("nosuch", "v1.0.0", "us-west-2"), nil},
		{"unknown region", req("api-service", "v2.0.0", "mars-1"), nil},
		{"capacity short", req("api-service", "v2.0.0", "tiny"), func(w *prereqWorld, _ *prereqRequest) { w.Serving["web.tiny"] = "v1.0.0" }},
		{"capacity short in an empty region", req("api-service", "v2.0.0", "tiny"), func(_ *prereqWorld, r *prereqRequest) { r.FirstDeploy = true }},
		// eu-west-1 holds 16: api-service (4) and db (8) serve there.
		{"capacity exactly enough", req("api-service", "v2.0.0", "eu-west-1"), nil},
		{"capacity one short", req("api-service", "v2.0.0", "eu-west-1"), func(w *prereqWorld, _ *prereqRequest) { w.Regions["eu-west-1"] = 15 }},
		{"capacity overfull", req("api-service", "v2.0.0", "eu-west-1"), func(w *prereqWorld, _ *prereqRequest) { w.Regions["eu-west-1"] = 10 }},
		{"capacity counts the default instances", req("web", "v1.1.0", "eu-west-1"), func(w *prereqWorld, r *prereqRequest) {
			w.Serving["web.eu-west-1"] = "v1.0.0"
			w.Regions["eu-west-1"] = 19
		}},
		{"capacity of the default instances enough", req("web", "v1.1.0", "eu-west-1"), func(w *prereqWorld, r *prereqRequest) {
			w.Serving["web.eu-west-1"] = "v1.0.0"
			w.Regions["eu-west-1"] = 20
		}},
		{"version already serving", req("api-service", "v1.0.0", "us-west-2"), nil},
		{"no rollback plan", req("web", "v1.1.0", "us-west-2"), nil},
		{"first deploy", req("web", "v1.1.0", "us-west-2"), func(_ *prereqWorld, r *prereqRequest) { r.FirstDeploy = true }},
		{"first deploy with a version serving", api, func(_ *prereqWorld, r *prereqRequest) { r.FirstDeploy = true }},
		{"first deploy of the version serving", req("api-service", "v1.0.0", "us-west-2"), func(_ *prereqWorld, r *prereqRequest) { r.FirstDeploy = true }},
		{"freeze active", api, func(w *prereqWorld, _ *prereqRequest) { w.Freeze = []worldWindow{christmas} }},
		{"freeze not yet", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Now = christmas.From.Add(-time.Nanosecond)
			w.Freeze = []worldWindow{christmas}
		}},
		{"freeze from its first instant", api, func(w *prereqWorld, _ *prereqRequest) { w.Now = christmas.From; w.Freeze = []worldWindow{christmas} }},
		{"freeze to its last instant", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Now = christmas.To.Add(-time.Nanosecond)
			w.Freeze = []worldWindow{christmas}
		}},
		{"freeze over at its end", api, func(w *prereqWorld, _ *prereqRequest) { w.Now = christmas.To; w.Freeze = []worldWindow{christmas} }},
		{"freeze inactive", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Freeze = []worldWindow{freeze("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"), freeze("2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z")}
		}},
		{"freeze in the second window", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Freeze = []worldWindow{freeze("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"), freeze("2026-12-20T11:00:00Z", "2026-12-20T13:30:00Z")}
		}},
		{"freeze in overlapping windows: the first listed", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Freeze = []worldWindow{freeze("2026-12-20T00:00:00Z", "2026-12-31T00:00:00Z"), christmas}
		}},
		{"freeze given in another zone, to a fraction of a second", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Freeze = []worldWindow{freeze("2026-12-20T09:00:00+02:00", "2026-12-20T15:30:00.75+02:00")}
		}},
		{"unhealthy region", api, func(w *prereqWorld, _ *prereqRequest) { w.Health.ErrorRate = 0.072 }},
		{"unhealthy region on every check", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Health = &sampleJSON{Requests: 100, ErrorRate: 0.2, P99: "1.5s", CPU: 0.95, Memory: 0.9}
		}},
		{"unhealthy region by the request's thresholds", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Thresholds.MaxErrorRate, w.Thresholds.MaxP99 = 0.005, "120ms"
		}},
		{"healthy region at its thresholds", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Health = &sampleJSON{Requests: 100, ErrorRate: 0.05, P99: "1s", CPU: 0.8, Memory: 0.85}
		}},
		{"region with a broken reading", api, func(w *prereqWorld, _ *prereqRequest) { w.Health.CPU = jsonFloat(math.NaN()) }},
		{"region without health data", api, func(w *prereqWorld, _ *prereqRequest) { w.Health = nil }},
		{"region health unknown for a first deploy", req("web", "v1.1.0", "us-west-2"), func(w *prereqWorld, r *prereqRequest) {
			r.FirstDeploy, w.Health.ErrorRate = true, 0.5
		}},
		{"health source fails", api, func(w *prereqWorld, _ *prereqRequest) { w.HealthError = "prometheus unreachable" }},
		{"store fails", api, func(w *prereqWorld, _ *prereqRequest) { w.StoreError = "nats timeout" }},
		// Several refuse: the first in order answers.
		{"image missing in an unknown region in a freeze", req("api-service", "v9", "mars-1"), func(w *prereqWorld, _ *prereqRequest) { w.Freeze = []worldWindow{christmas} }},
		{"capacity short in a freeze", req("api-service", "v2.0.0", "tiny"), func(w *prereqWorld, r *prereqRequest) {
			r.FirstDeploy, w.Freeze = true, []worldWindow{christmas}
		}},
		{"already serving in an unhealthy region", req("api-service", "v1.0.0", "us-west-2"), func(w *prereqWorld, _ *prereqRequest) { w.Health.ErrorRate = 0.5 }},
		{"freeze in an unhealthy region", api, func(w *prereqWorld, _ *prereqRequest) {
			w.Freeze, w.Health.ErrorRate = []worldWindow{christmas}, 0.5
		}},
	}
	out := make([]prereqCase, 0, len(cases))
	for _, tc := range cases {
		c := prereqCase{Name: tc.name, Request: tc.req, World: base()}
		if tc.set != nil {
			tc.set(&c.World, &c.Request)
		}
		c.Want = c.judge(t, c.World.service(t).prerequisites())
		out = append(out, c)
	}
	return out
}

// --- the analysis ---

// analysisCase is a health sample, the thresholds it is held against, and
// the outcome recorded.
type analysisCase struct {
	Name       string          `json:"case"`
	Sample     sampleJSON      `json:"sample"`
	Thresholds thresholdsJSON  `json:"thresholds"`
	Want       analysisOutcome `json:"want"`
}

type analysisOutcome struct {
	Passed bool     `json:"passed"`
	Reason string   `json:"reason,omitempty"`
	Failed []string `json:"failed,omitempty"`
}

func judgementOf(v analysis.Verdict) judgement {
	j := judgement{passed: v.Passed, reason: v.Reason(), checks: goChecks}
	for _, c := range v.Failed {
		j.failed = append(j.failed, c.Name)
	}
	return j
}

func outcomeOf(j judgement) analysisOutcome {
	return analysisOutcome{Passed: j.passed, Reason: j.reason, Failed: j.failed}
}

// sampleJSON is a fleet.Sample in the corpus: the shares as numbers (or
// "NaN", "+Inf", "-Inf"), p99 as a Go duration.
type sampleJSON struct {
	Requests  jsonFloat `json:"requests"`
	ErrorRate jsonFloat `json:"error_rate"`
	P99       string    `json:"p99"`
	CPU       jsonFloat `json:"cpu"`
	Memory    jsonFloat `json:"memory"`
}

func (s sampleJSON) sample() fleet.Sample {
	p99, err := time.ParseDuration(s.P99)
	if err != nil {
		panic(err)
	}
	return fleet.Sample{Requests: float64(s.Requests), ErrorRate: float64(s.ErrorRate), P99: p99, CPU: float64(s.CPU), Memory: float64(s.Memory)}
}

// thresholdsJSON is an analysis.Thresholds in the corpus.
type thresholdsJSON struct {
	MaxErrorRate float64 `json:"max_error_rate"`
	MaxP99       string  `json:"max_p99"`
	MaxCPU       float64 `json:"max_cpu"`
	MaxMemory    float64 `json:"max_memory"`
}

func thresholdsJSONOf(t analysis.Thresholds) thresholdsJSON {
	return thresholdsJSON{t.MaxErrorRate, t.MaxP99.String(), t.MaxCPU, t.MaxMemory}
}

func (t thresholdsJSON) thresholds() analysis.Thresholds {
	p99, err := time.ParseDuration(t.MaxP99)
	if err != nil {
		panic(err)
	}
	return analysis.Thresholds{MaxErrorRate: t.MaxErrorRate, MaxP99: p99, MaxCPU: t.MaxCPU, MaxMemory: t.MaxMemory}
}

// jsonFloat is a float64 that JSON carries even when it is NaN or
// infinite, as a string then.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return json.Marshal(strconv.FormatFloat(v, 'g', -1, 64))
	}
	return json.Marshal(v)
}

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := strconv.ParseFloat(s, 64)
		*f = jsonFloat(v)
		return err
	}
	var v float64
	err := json.Unmarshal(b, &v)
	*f = jsonFloat(v)
	return err
}

// genAnalysisCases makes the analysis corpus: each check failing alone and
// with others, each reading exactly at its threshold and just over it,
// readings that cannot be measurements, thresholds a request set, and a
// seeded sweep of readings close to the thresholds.
func genAnalysisCases(*testing.T) []analysisCase {
	def := thresholdsJSONOf(analysis.Default())
	healthy := sampleJSON{Requests: 100, ErrorRate: 0.006, P99: "180ms", CPU: 0.35, Memory: 0.45}
	type tweak func(*sampleJSON, *thresholdsJSON)
	cases := []struct {
		name string
		set  tweak
	}{
		{"healthy", nil},
		{"no requests", func(s *sampleJSON, _ *thresholdsJSON) { *s = sampleJSON{P99: "0s"} }},
		{"error rate over", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate = 0.072 }},
		{"p99 over", func(s *sampleJSON, _ *thresholdsJSON) { s.P99 = "1.5s" }},
		{"cpu over", func(s *sampleJSON, _ *thresholdsJSON) { s.CPU = 0.92 }},
		{"memory over", func(s *sampleJSON, _ *thresholdsJSON) { s.Memory = 0.9 }},
		{"error rate and p99 over", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate, s.P99 = 0.15, "2.25s" }},
		{"cpu and memory over", func(s *sampleJSON, _ *thresholdsJSON) { s.CPU, s.Memory = 0.99, 0.97 }},
		{"all four over", func(s *sampleJSON, _ *thresholdsJSON) {
			*s = sampleJSON{Requests: 50, ErrorRate: 1, P99: "30s", CPU: 1, Memory: 1}
		}},
		{"error rate at the threshold", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate = 0.05 }},
		{"p99 at the threshold", func(s *sampleJSON, _ *thresholdsJSON) { s.P99 = "1s" }},
		{"cpu at the threshold", func(s *sampleJSON, _ *thresholdsJSON) { s.CPU = 0.8 }},
		{"memory at the threshold", func(s *sampleJSON, _ *thresholdsJSON) { s.Memory = 0.85 }},
		{"all four at the threshold", func(s *sampleJSON, _ *thresholdsJSON) {
			*s = sampleJSON{ErrorRate: 0.05, P99: "1s", CPU: 0.8, Memory: 0.85}
		}},
		{"error rate just over", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate = 0.050001 }},
		{"error rate a hair over", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate = jsonFloat(0.05 + 1e-12) }},
		{"error rate just under", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate = 0.0499999 }},
		{"p99 a nanosecond over", func(s *sampleJSON, _ *thresholdsJSON) { s.P99 = "1.000000001s" }},
		{"cpu just over", func(s *sampleJSON, _ *thresholdsJSON) { s.CPU = 0.8000001 }},
		{"memory just over", func(s *sampleJSON, _ *thresholdsJSON) { s.Memory = 0.85000001 }},
		{"memory a millionth of a percent over", func(s *sampleJSON, _ *thresholdsJSON) { s.Memory = 0.8500000001 }},
		{"all four just over", func(s *sampleJSON, _ *thresholdsJSON) {
			*s = sampleJSON{ErrorRate: 0.0500001, P99: "1.0000005s", CPU: 0.800001, Memory: 0.8500001}
		}},
		{"error rate NaN", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate = jsonFloat(math.NaN()) }},
		{"error rate negative", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate = -0.01 }},
		{"error rate negative zero", func(s *sampleJSON, _ *thresholdsJSON) { s.ErrorRate = jsonFloat(math.Copysign(0, -1)) }},
		{"p99 negative", func(s *sampleJSON, _ *thresholdsJSON) { s.P99 = "-5ms" }},
		{"cpu infinite", func(s *sampleJSON, _ *thresholdsJSON) { s.CPU = jsonFloat(math.Inf(1)) }},
		{"memory minus infinity", func(s *sampleJSON, _ *thresholdsJSON) { s.Memory = jsonFloat(math.Inf(-1)) }},
		{"memory NaN and error rate over", func(s *sampleJSON, _ *thresholdsJSON) { s.Memory, s.ErrorRate = jsonFloat(math.NaN()), 0.3 }},
		{"request thresholds, error rate over", func(s *sampleJSON, t *thresholdsJSON) { s.ErrorRate, t.MaxErrorRate = 0.012, 0.01 }},
		{"request thresholds, fractional p99", func(s *sampleJSON, t *thresholdsJSON) { s.P99, t.MaxP99 = "250.500001ms", "250.5ms" }},
		{"request thresholds, p99 at a fractional threshold", func(s *sampleJSON, t *thresholdsJSON) { s.P99, t.MaxP99 = "250.5ms", "250.5ms" }},
		{"request thresholds, all tight", func(s *sampleJSON, t *thresholdsJSON) {
			*t = thresholdsJSON{MaxErrorRate: 0.001, MaxP99: "100ms", MaxCPU: 0.1, MaxMemory: 0.2}
		}},
		{"request thresholds, all loose", func(s *sampleJSON, t *thresholdsJSON) {
			*s, *t = sampleJSON{ErrorRate: 0.99, P99: "59m", CPU: 0.99, Memory: 0.99}, thresholdsJSON{MaxErrorRate: 1, MaxP99: "1h", MaxCPU: 1, MaxMemory: 1}
		}},
	}
	var out []analysisCase
	for _, tc := range cases {
		c := analysisCase{Name: tc.name, Sample: healthy, Thresholds: def}
		if tc.set != nil {
			tc.set(&c.Sample, &c.Thresholds)
		}
		out = append(out, c)
	}
	// Readings a few ulps to a few hundredths of a percent around the
	// thresholds, where the messages need more decimals.
	rng := rand.New(rand.NewPCG(19, 2026))
	near := func(th float64) jsonFloat {
		switch rng.IntN(4) {
		case 0:
			return jsonFloat(th)
		case 1:
			return jsonFloat(th + float64(rng.IntN(2000)-1000)*1e-9)
		case 2:
			return jsonFloat(th + float64(rng.IntN(2000)-1000)*1e-6)
		default:
			return jsonFloat(math.Nextafter(th, th+float64(rng.IntN(3)-1)))
		}
	}
	for i := range 200 {
		t := def
		if i%4 == 3 { // thresholds a request set
			t = thresholdsJSON{MaxErrorRate: float64(1+rng.IntN(100)) / 1000, MaxP99: fmt.Sprintf("%dus", 1000+rng.IntN(2_000_000)),
				MaxCPU: float64(1+rng.IntN(100)) / 100, MaxMemory: float64(1+rng.IntN(100)) / 100}
		}
		p99 := t.thresholds().MaxP99 + time.Duration(rng.IntN(2001)-1000)*time.Duration(rng.IntN(2)*999+1)
		c := analysisCase{
			Name:       fmt.Sprintf("sweep %03d", i),
			Sample:     sampleJSON{Requests: jsonFloat(rng.IntN(1000)), ErrorRate: near(t.MaxErrorRate), P99: p99.String(), CPU: near(t.MaxCPU), Memory: near(t.MaxMemory)},
			Thresholds: t,
		}
		out = append(out, c)
	}
	for i := range out {
		j := judgementOf(analysis.Evaluate(out[i].Sample.sample(), out[i].Thresholds.thresholds()))
		out[i].Want = outcomeOf(j)
	}
	return out
}
