package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/examples/deployment/internal/promhealth"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai/taicel"
)

// Config is the service's configuration: flags, each with an environment
// variable as fallback.
type Config struct {
	// Serving is the address, the tokens (the API token guards the deploy
	// API, the admin token abort, promote, resume and the cord), the
	// allowed hosts and the audit key.
	svc.Serving
	NATSURL svc.URL // empty: start an embedded NATS server
	// NATSReplicas is how many servers of a JetStream cluster hold each
	// stream and bucket: 1, 3 or 5.
	NATSReplicas int
	DataDir      string
	CatalogFile  string // "": the demo catalog

	// Fleet is what the service deploys to: "sim" (the simulated fleet)
	// or "local" (demoapp processes behind a proxy per service and
	// region). LocalTraffic is the requests per second the service sends
	// through each local proxy itself, so rollouts have traffic to judge
	// (0: none; curl or a load generator then provides it).
	Fleet        string
	LocalTraffic float64
	// PrometheusURL, when set, reads health from this Prometheus server
	// (PromQL over the demoapp's metrics) instead of from the fleet.
	PrometheusURL svc.URL

	// Stages are the canary rollout's stages; Interval is how often
	// health is sampled during a bake, and FailAfter how many failing
	// samples in a row roll a deployment back.
	Stages    []heijunka.RampStage
	Interval  time.Duration
	FailAfter int
	Analysis  analysis.Thresholds
	// MinRequests is the fewest requests a health sample must rest on to
	// count: below it the sample is inconclusive (a small share of
	// traffic judged on a handful of requests would pass or fail by
	// chance).
	MinRequests float64
	// Freeze lists change-freeze windows: no deployment starts inside one.
	Freeze []Window
	// Rules is where the prerequisites and the analysis come from: ""
	// for the rule files built in (rules/*.yaml), "go" for the Go rules,
	// or a directory holding prerequisites.yaml and analysis.yaml, each
	// read again every RulesInterval and reloaded when it changes.
	Rules         string
	RulesInterval time.Duration

	Workers        int           // rollouts running at once in this process (one per service/region)
	RequestTimeout time.Duration // how long a waiting POST /deploy waits before answering 202
	// RolloutLease is how long a region's rollout stays with its replica
	// without word from it: the rollout queue's AckWait, extended every
	// third of it while the rollout runs. A replica that dies or is cut
	// off from NATS for longer loses its rollouts to another, which rolls
	// them back. On a JetStream cluster a third of it must outlast a
	// leader election (see clusterRolloutLease). Every replica sharing the
	// queue takes the same: the last to start sets it for all.
	RolloutLease time.Duration
	PrintRules   bool
	OTLPEndpoint svc.URL // export traces over OTLP/HTTP here; "" keeps them in the process
	Instance     string
	LogLevel     string

	// Set by tests, not by flags: also receives every span.
	TraceProcessor sdktrace.SpanProcessor
	// Set by tests, not by flags: the delays between the attempts of a
	// region's rollout that failed (nil: kanban's default, from 100 ms
	// doubling to 30 s).
	JobBackoff kanban.Backoff
	// Set by tests, not by flags, to inject faults: WrapTarget wraps what
	// the service deploys to, WrapHealth what it reads health from, and
	// PublishFault queues each region's job in place of the service, with
	// publish, which queues it: an error it returns fails the publish,
	// whether it called publish (an acknowledgement lost) or not.
	WrapTarget   func(fleet.Target) fleet.Target
	WrapHealth   func(fleet.Health) fleet.Health
	PublishFault func(j Job, publish func() error) error
	// Set by tests, not by flags, to inject faults: WrapDeployments wraps
	// the deployments bucket, over each connection the records are
	// written over.
	WrapDeployments func(jetstream.KeyValue) jetstream.KeyValue
	// Set by tests, not by flags: WrapLocks wraps the region locks'
	// bucket (to give its server's clock another time, say).
	WrapLocks func(jetstream.KeyValue) jetstream.KeyValue
	// Set by tests, not by flags: how long one try of a write to the
	// store waits for its answer before it is tried again (0:
	// storeTryFor).
	StoreTryFor time.Duration
	// Set by tests, not by flags: how often the service looks for
	// regions held by a deployment nothing will end (0: sweepEvery).
	SweepEvery time.Duration
	// Set by tests, not by flags: how old the marker a dropped command
	// leaves in the control bucket is before a sweep removes it (0:
	// commandMarkersAge).
	CommandMarkersAge time.Duration
}

// Window is a time window, [From, To).
type Window struct {
	From, To time.Time
}

// Contains reports whether t is inside the window.
func (w Window) Contains(t time.Time) bool {
	return !t.Before(w.From) && t.Before(w.To)
}

// The rollout lease's defaults (-rollout-lease 0): soloRolloutLease where
// each stream and bucket is on one server (-nats-replicas 1), and
// clusterRolloutLease where they are replicated. A JetStream cluster
// elects a new leader for a group whose leader was lost within 4 to 9 s
// (the servers' election timeout), and the extensions of the rollouts'
// leases sent meanwhile are lost. A lease is extended at most a third of
// it after the rollout was taken up, then at most a third of it apart
// (kanban.Serve), so it outlasts an outage of its queue's consumer
// shorter than two thirds of it whenever the outage comes: at 45 s, 30 s,
// and an election is well within it. At 10 s, the lease lapsed in such elections, and a healthy
// rollout was handed to another replica and rolled back. A single server
// holds no elections, and a rollout a crash cut off there is taken up
// again by the next start at most 10 s after it was last extended (one a
// shutdown cut off is handed back, and taken up at once).
const (
	soloRolloutLease    = 10 * time.Second
	clusterRolloutLease = 45 * time.Second
)

// minRolloutLease is the shortest -rollout-lease: a run rereads its record
// before a move of the fleet when recheckAfter has passed since it last
// read or wrote it, which must come well within a lease.
const minRolloutLease = 3 * recheckAfter

// The demo profile: short bakes so a person sees a rollout finish in
// seconds. The production profile is the reference's: a five-minute
// canary, a ten-minute staging and health every ten seconds.
var (
	demoStages = "canary:5:3s,staging:25:5s,prod:100:0s"
	prodStages = "canary:5:5m,staging:25:10m,prod:100:0s"
)

func parseConfig(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("deployment", flag.ContinueOnError)
	e := svc.NewEnv(getenv)
	env, envDur, envInt, envFloat := e.String, e.Duration, e.Int, e.Float
	var errs []error
	c.Register(fs, e, 3002, svc.Usage{API: "the deploy API", Admin: "abort, promote, resume and the cord"})
	svc.URLVar(fs, &c.NATSURL, "nats-url", env("NATS_URL", ""), "NATS server to use instead of the embedded one; replicas on one NATS share the queue and the state (NATS_URL)")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", envInt("NATS_REPLICAS", 1), "servers of a JetStream cluster that hold each stream and bucket: 1, or 3 to survive losing one (NATS_REPLICAS)")
	fs.StringVar(&c.DataDir, "data-dir", env("DATA_DIR", filepath.Join(os.TempDir(), "taikit-deployment")), "embedded NATS store and audit trail (DATA_DIR)")
	var stages, freeze string
	fs.StringVar(&c.CatalogFile, "catalog", env("CATALOG", ""), "catalog of services, versions, regions and what runs where (JSON); default: the demo catalog (CATALOG)")
	fs.StringVar(&c.Fleet, "fleet", env("FLEET", "sim"), "what to deploy to: sim (a simulated fleet in this process) or local (demoapp processes on loopback ports behind a weighted proxy per service and region) (FLEET)")
	fs.Float64Var(&c.LocalTraffic, "local-traffic", envFloat("LOCAL_TRAFFIC", 200), "with -fleet local, requests per second the service sends through each proxy itself so rollouts have traffic to judge (a 5% canary then sees -min-requests within 2 s); 0 for none (LOCAL_TRAFFIC)")
	svc.URLVar(fs, &c.PrometheusURL, "prometheus-url", env("PROMETHEUS_URL", ""), "read health from this Prometheus server (PromQL over the demoapp's metrics, labelled service, region and version) instead of from the fleet (PROMETHEUS_URL)")
	demo := fs.Bool("demo", e.Bool("DEMO", true), "demo profile: bakes of seconds (canary 5% 3s, staging 25% 5s, prod) and health every 500ms; -demo=false takes the production profile (canary 5m, staging 10m, health every 10s) (DEMO)")
	fs.StringVar(&stages, "stages", env("STAGES", ""), "canary stages as name:percent:bake, comma separated; a name is 1 to 32 lower-case letters, digits, - or _, and not validation, preview, switch or batch-N (the service's own steps); default from the profile (STAGES)")
	fs.DurationVar(&c.Interval, "health-interval", envDur("HEALTH_INTERVAL", 0), "how often health is sampled during a bake, 1ms to 1h; default from the profile (HEALTH_INTERVAL)")
	fs.IntVar(&c.FailAfter, "fail-after", envInt("FAIL_AFTER", 1), "failing health samples in a row that roll a deployment back (FAIL_AFTER)")
	c.Analysis = analysis.Default()
	fs.Float64Var(&c.Analysis.MaxErrorRate, "max-error-rate", envFloat("MAX_ERROR_RATE", c.Analysis.MaxErrorRate), "analysis: highest error rate, as a share (MAX_ERROR_RATE)")
	fs.DurationVar(&c.Analysis.MaxP99, "max-p99", envDur("MAX_P99", c.Analysis.MaxP99), "analysis: highest p99 latency (MAX_P99)")
	fs.Float64Var(&c.Analysis.MaxCPU, "max-cpu", envFloat("MAX_CPU", c.Analysis.MaxCPU), "analysis: highest CPU use, as a share (MAX_CPU)")
	fs.Float64Var(&c.Analysis.MaxMemory, "max-memory", envFloat("MAX_MEMORY", c.Analysis.MaxMemory), "analysis: highest memory use, as a share (MAX_MEMORY)")
	fs.Float64Var(&c.MinRequests, "min-requests", envFloat("MIN_REQUESTS", 10), "analysis: fewest requests a health sample must rest on; fewer is inconclusive (MIN_REQUESTS)")
	fs.StringVar(&freeze, "freeze", env("FREEZE", ""), "change-freeze windows as RFC3339/RFC3339, comma separated; no deployment starts inside one (FREEZE)")
	fs.StringVar(&c.Rules, "rules", env("RULES", ""), "the prerequisites and the analysis as rules: a directory holding prerequisites.yaml and analysis.yaml, reloaded when they change, or \"go\" for the Go rules; default: the rule files built in (RULES)")
	fs.DurationVar(&c.RulesInterval, "rules-interval", envDur("RULES_INTERVAL", 5*time.Second), "how often the -rules files are read for changes (RULES_INTERVAL)")
	fs.IntVar(&c.Workers, "workers", envInt("WORKERS", 64), "rollouts running at once in this process, never two for one service and region (WORKERS)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", envDur("REQUEST_TIMEOUT", 5*time.Minute), "how long POST /deploy waits for the end before answering 202 IN_PROGRESS (REQUEST_TIMEOUT)")
	fs.DurationVar(&c.RolloutLease, "rollout-lease", envDur("ROLLOUT_LEASE", 0), "how long a rollout stays with a replica that has gone silent (dead, or cut off from NATS) before another takes it up and rolls it back, 3s to 1h, the same on every replica; on a cluster a third of it must outlast a NATS leader election (up to 9 s); 0 takes 10s with -nats-replicas 1, 45s with more (ROLLOUT_LEASE)")
	svc.URLVar(fs, &c.OTLPEndpoint, "otlp-endpoint", env("OTEL_EXPORTER_OTLP_ENDPOINT", ""), "export traces over OTLP/HTTP to this endpoint (a Jaeger or a collector); off when empty (OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.BoolVar(&c.PrintRules, "print-rules", false, "print the alert rules as a Prometheus rule file and exit")
	host, _ := os.Hostname()
	fs.StringVar(&c.Instance, "instance", env("INSTANCE", host), "this replica's name in logs, alerts and its audit trail's file name: 1 to 200 letters, digits, '_', '-' or '.' (INSTANCE)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if stages == "" {
		stages = demoStages
		if !*demo {
			stages = prodStages
		}
	}
	if c.Interval == 0 {
		c.Interval = 500 * time.Millisecond
		if !*demo {
			c.Interval = 10 * time.Second
		}
	}
	if c.RolloutLease == 0 {
		c.RolloutLease = soloRolloutLease
		if c.NATSReplicas > 1 {
			c.RolloutLease = clusterRolloutLease
		}
	}
	var err error
	if c.Stages, err = parseStages(stages); err != nil {
		errs = append(errs, fmt.Errorf("-stages: %w", err))
	}
	if c.Freeze, err = parseWindows(freeze); err != nil {
		errs = append(errs, fmt.Errorf("-freeze: %w", err))
	}
	errs = append(errs, e.Err(), c.Finish())
	errs = append(errs, c.validate())
	return c, errors.Join(errs...)
}

func (c *Config) validate() error {
	var errs []error
	if c.NATSReplicas != 1 && c.NATSReplicas != 3 && c.NATSReplicas != 5 {
		errs = append(errs, fmt.Errorf("-nats-replicas %d is not 1, 3 or 5", c.NATSReplicas))
	}
	if c.NATSReplicas > 1 && !c.NATSURL.IsSet() {
		errs = append(errs, fmt.Errorf("-nats-replicas %d needs a NATS cluster (-nats-url); the embedded server holds one replica", c.NATSReplicas))
	}
	if c.PrometheusURL.IsSet() {
		if _, err := promhealth.CheckURL(c.PrometheusURL.Reveal()); err != nil {
			errs = append(errs, fmt.Errorf("-prometheus-url %w (http://prometheus:9090)", err))
		}
	}
	if c.Fleet != "sim" && c.Fleet != "local" {
		errs = append(errs, fmt.Errorf("-fleet %q is not sim or local", c.Fleet))
	}
	// A rate is 0 (none) or one whose interval between requests a ticker
	// can hold; NaN fails every comparison.
	if lt := c.LocalTraffic; lt != 0 && !(lt >= 0.001 && lt <= 10_000) {
		errs = append(errs, fmt.Errorf("-local-traffic %v is not 0 or in [0.001, 10000]", lt))
	}
	// A stage without health data waits ten intervals for it, which an
	// interval of decades overflowed into a negative wait.
	if c.Interval < time.Millisecond {
		errs = append(errs, fmt.Errorf("-health-interval %v is below 1ms", c.Interval))
	} else if c.Interval > maxInterval {
		errs = append(errs, fmt.Errorf("-health-interval %v is above %v", c.Interval, maxInterval))
	}
	if c.FailAfter < 1 || c.FailAfter > 100 {
		errs = append(errs, fmt.Errorf("-fail-after %d is not in [1, 100]", c.FailAfter))
	}
	// Each threshold named by its flag (analysis.Thresholds.Validate would
	// name the Go field).
	for _, f := range []struct {
		name string
		v    float64
	}{{"max-error-rate", c.Analysis.MaxErrorRate}, {"max-cpu", c.Analysis.MaxCPU}, {"max-memory", c.Analysis.MaxMemory}} {
		if !(f.v > 0 && f.v <= 1) {
			errs = append(errs, fmt.Errorf("-%s %v is not a share in (0, 1]", f.name, f.v))
		}
	}
	// A deployment carries its p99 threshold as milliseconds in a
	// float64, which a duration near the largest one overflowed on the
	// way back into a negative threshold that every reading fails; an
	// hour is also the most a request's analysis.max_p99_ms may set.
	if c.Analysis.MaxP99 <= 0 {
		errs = append(errs, fmt.Errorf("-max-p99 %v must be positive", c.Analysis.MaxP99))
	} else if c.Analysis.MaxP99 > maxP99 {
		errs = append(errs, fmt.Errorf("-max-p99 %v is above %v", c.Analysis.MaxP99, maxP99))
	}
	if !(c.MinRequests >= 0) || math.IsInf(c.MinRequests, 1) {
		errs = append(errs, fmt.Errorf("-min-requests %v is not a number of requests (0 or more)", c.MinRequests))
	}
	if c.Rules != "" && c.Rules != rulesGo {
		if fi, err := os.Stat(c.Rules); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Errorf("-rules %q is not a directory (nor \"go\")", c.Rules))
		}
	}
	if c.RulesInterval < taicel.MinLoaderInterval {
		errs = append(errs, fmt.Errorf("-rules-interval %v is below %v", c.RulesInterval, taicel.MinLoaderInterval))
	}
	if c.Workers < 1 || c.Workers > 10_000 {
		errs = append(errs, fmt.Errorf("-workers %d is not in [1, 10000]", c.Workers))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-request-timeout %v must be positive", c.RequestTimeout))
	}
	if c.RolloutLease < minRolloutLease || c.RolloutLease > time.Hour {
		errs = append(errs, fmt.Errorf("-rollout-lease %v is not in [%v, 1h]", c.RolloutLease, minRolloutLease))
	}
	if !svc.ValidInstance(c.Instance) {
		errs = append(errs, fmt.Errorf("-instance %q must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.', nor ending with one or holding \"..\" (it names the audit trail's file in -data-dir)", clip(c.Instance)))
	}
	errs = append(errs, svc.CheckLogLevel(c.LogLevel))
	return errors.Join(errs...)
}

// maxInterval bounds -health-interval. A sample covers at most five
// minutes of its stage, so an hour between samples already leaves most
// of the traffic unjudged.
const maxInterval = time.Hour

// maxP99 bounds -max-p99, as it bounds a request's analysis.max_p99_ms
// (3,600,000 ms).
const maxP99 = time.Hour

// stageNameRE is what a stage's name may be: it is joined into
// region/stage in a wave's stages_completed, audit kinds
// (deployment.<stage>.start) and metric labels.
var stageNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// builtinStage reports whether name is one the service gives a step of
// its own, which a canary stage must not take: validation (every
// strategy's first step, in stages_completed), blue-green's preview and
// switch, and rolling's batch-1, batch-2, ...
func builtinStage(name string) bool {
	if n, ok := strings.CutPrefix(name, "batch-"); ok {
		_, err := strconv.ParseUint(n, 10, 64)
		return err == nil
	}
	return name == "validation" || name == "preview" || name == "switch"
}

// parseStages reads "canary:5:3s,staging:25:5s,prod:100:0s".
func parseStages(s string) ([]heijunka.RampStage, error) {
	var out []heijunka.RampStage
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		fields := strings.Split(strings.TrimSpace(part), ":")
		if len(fields) != 3 {
			return nil, fmt.Errorf("stage %q is not name:percent:bake", part)
		}
		switch name := fields[0]; {
		case !stageNameRE.MatchString(name):
			return nil, fmt.Errorf("stage %q: name %q is not 1 to 32 lower-case letters, digits, '-' or '_'", part, name)
		case builtinStage(name):
			return nil, fmt.Errorf("stage %q: name %q is one of the service's own steps (validation, preview, switch, batch-N)", part, name)
		case seen[name]:
			return nil, fmt.Errorf("stage %q: name %q is given twice", part, name)
		default:
			seen[name] = true
		}
		// A percent too large for a float64 (1e400) is out of range, not
		// "not a number": ParseFloat gives ±Inf for it, refused below.
		pct, err := strconv.ParseFloat(fields[1], 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, fmt.Errorf("stage %q: percent %q is not a number", part, fields[1])
		}
		// Said here in the flag's words; the Ramp would name its fields.
		if !(pct > 0 && pct <= 100) {
			return nil, fmt.Errorf("stage %q: percent %q is not in (0, 100]", part, fields[1])
		}
		bake, err := time.ParseDuration(fields[2])
		if err != nil {
			return nil, fmt.Errorf("stage %q: bake %q is not a duration", part, fields[2])
		}
		if bake < 0 {
			return nil, fmt.Errorf("stage %q: bake %v is negative", part, bake)
		}
		// The Ramp would say the stage must send above 100% and at most
		// 100%, a bound no number meets.
		if n := len(out); n > 0 && out[n-1].Percent == 100 {
			return nil, fmt.Errorf("stage %q comes after %q, which sends 100%% of traffic; a stage at 100%% is the last", part, out[n-1].Name)
		}
		out = append(out, heijunka.RampStage{Name: fields[0], Percent: pct, Bake: bake})
	}
	// The Ramp checks the rest (unique names, rising percents, ...).
	if _, err := heijunka.NewRamp(heijunka.RampOptions{Stages: out}); err != nil {
		return nil, err
	}
	if last := out[len(out)-1]; last.Percent != 100 {
		return nil, fmt.Errorf("the last stage %q sends %v%% of traffic; it must send 100%%", last.Name, last.Percent)
	}
	return out, nil
}

// parseWindows reads "2026-12-24T00:00:00Z/2026-12-27T00:00:00Z,...",
// in order of their start, those that overlap or meet joined into one.
func parseWindows(s string) ([]Window, error) {
	var out []Window
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		from, to, ok := strings.Cut(part, "/")
		if !ok {
			return nil, fmt.Errorf("window %q is not from/to", part)
		}
		f, err := time.Parse(time.RFC3339, from)
		if err != nil {
			return nil, fmt.Errorf("window %q: %w", part, err)
		}
		t, err := time.Parse(time.RFC3339, to)
		if err != nil {
			return nil, fmt.Errorf("window %q: %w", part, err)
		}
		if t.Equal(f) {
			return nil, fmt.Errorf("window %q is empty: it ends as it starts", part)
		}
		if t.Before(f) {
			return nil, fmt.Errorf("window %q ends before it starts", part)
		}
		// The rule files read the bounds as CEL timestamps, which hold
		// the years 1 to 9999 in UTC: beyond them every deployment's
		// validation would fail.
		for _, b := range []struct {
			text string
			at   time.Time
		}{{from, f}, {to, t}} {
			if y := b.at.UTC().Year(); y < 1 || y > 9999 {
				return nil, fmt.Errorf("window %q: %s is not between years 1 and 9999 in UTC", part, b.text)
			}
		}
		out = append(out, Window{From: f, To: t})
	}
	// Windows that overlap or meet are one freeze: a refusal says when
	// the freeze ends, and the first window's end would not be it.
	slices.SortFunc(out, func(a, b Window) int { return a.From.Compare(b.From) })
	merged := out[:0]
	for _, w := range out {
		if n := len(merged); n > 0 && !w.From.After(merged[n-1].To) {
			if w.To.After(merged[n-1].To) {
				merged[n-1].To = w.To
			}
			continue
		}
		merged = append(merged, w)
	}
	return merged, nil
}
