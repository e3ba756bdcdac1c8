package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
	"github.com/taipattern/taikit/examples/internal/httpapi"
)

// DeployRequest is the body of POST /deploy. The first four fields are the
// reference's, taken as it sends them; the rest are optional.
type DeployRequest struct {
	Service         string `json:"service"`
	Version         string `json:"version"`
	TargetRegion    string `json:"target_region"`
	RolloutStrategy string `json:"rollout_strategy"`
	// TargetRegions deploys to several regions, one after another, each
	// waiting for the one before to succeed. With TargetRegion as well,
	// TargetRegion must be the first of them.
	TargetRegions []string `json:"target_regions"`
	// ContinueOnFailure carries a wave on past a region that failed or
	// rolled back, instead of stopping it there.
	ContinueOnFailure bool `json:"continue_on_failure"`
	// FirstDeploy allows a deployment with no version running in a region
	// to roll back to (the rollback then takes all traffic away).
	FirstDeploy bool              `json:"first_deploy"`
	Analysis    *AnalysisRequest  `json:"analysis"`
	Metadata    map[string]string `json:"metadata"`
}

// AnalysisRequest overrides the service's analysis thresholds for one
// deployment; a zero field keeps the service's.
type AnalysisRequest struct {
	MaxErrorRate float64 `json:"max_error_rate"`
	MaxP99Ms     float64 `json:"max_p99_ms"`
	MaxCPU       float64 `json:"max_cpu"`
	MaxMemory    float64 `json:"max_memory"`
}

// The rollout strategies.
const (
	Canary    = "canary"
	BlueGreen = "blue-green"
	Rolling   = "rolling"
)

// The statuses of a deployment and of each of its regions. SKIPPED is a
// region's only: a wave stopped before it.
const (
	StatusInProgress = "IN_PROGRESS"
	StatusSuccess    = "SUCCESS"
	StatusRolledBack = "ROLLED_BACK"
	StatusFailed     = "FAILED"
	StatusSkipped    = "SKIPPED"
	StatusPending    = "PENDING"
)

// Deployment is a deployment as stored and as answered.
type Deployment struct {
	ID              string            `json:"deployment_id"`
	Service         string            `json:"service"`
	Version         string            `json:"version"`
	TargetRegion    string            `json:"target_region"`
	Regions         []string          `json:"target_regions"`
	Strategy        string            `json:"rollout_strategy"`
	Status          string            `json:"status"`
	StartedAt       time.Time         `json:"started_at"`
	CompletedAt     *time.Time        `json:"completed_at"`
	DurationSecs    float64           `json:"duration_secs"`
	StagesCompleted []string          `json:"stages_completed"`
	ErrorMessage    *string           `json:"error_message"`
	RegionsDone     []string          `json:"regions_completed"`
	Results         []RegionResult    `json:"regions"`
	Paused          bool              `json:"paused"`
	TraceID         string            `json:"trace_id,omitempty"`
	ContinueOn      bool              `json:"continue_on_failure,omitempty"`
	FirstDeploy     bool              `json:"first_deploy,omitempty"`
	Analysis        Thresholds        `json:"analysis"`
	Metadata        map[string]string `json:"metadata,omitempty"`
}

// Thresholds are the analysis thresholds a deployment runs with, in the
// API's units.
type Thresholds struct {
	MaxErrorRate float64 `json:"max_error_rate"`
	MaxP99Ms     float64 `json:"max_p99_ms"`
	MaxCPU       float64 `json:"max_cpu"`
	MaxMemory    float64 `json:"max_memory"`
}

func thresholdsOf(t analysis.Thresholds) Thresholds {
	return Thresholds{t.MaxErrorRate, float64(t.MaxP99) / float64(time.Millisecond), t.MaxCPU, t.MaxMemory}
}

// analysis is t in the analysis' units. The p99's milliseconds are
// rounded to the nanosecond: truncated, a threshold such as 4.1 ms
// (4.0999999… in a float64) would be 4.099999 ms, and a reading exactly at
// the threshold asked for would fail. A threshold past the largest
// duration, as a record may hold (one written with a -max-p99 near the
// largest duration, whose milliseconds in a float64 round past it), is
// the largest duration, which no reading exceeds: converted as it is, it
// would overflow into a negative threshold that every reading fails.
func (t Thresholds) analysis() analysis.Thresholds {
	ns := math.Round(t.MaxP99Ms * float64(time.Millisecond))
	p99 := time.Duration(math.MaxInt64)
	if !(ns >= float64(math.MaxInt64)) { // 2⁶³, one past the largest duration
		p99 = time.Duration(ns)
	}
	return analysis.Thresholds{
		MaxErrorRate: t.MaxErrorRate,
		MaxP99:       p99,
		MaxCPU:       t.MaxCPU, MaxMemory: t.MaxMemory,
	}
}

// RegionResult is how a deployment went in one region.
type RegionResult struct {
	Region       string        `json:"region"`
	Status       string        `json:"status"`
	Previous     string        `json:"previous_version,omitempty"` // the version rolled back to
	Stage        string        `json:"stage,omitempty"`            // the stage in progress
	Percent      float64       `json:"traffic_percent"`            // share of traffic on the new version now
	ProxyURL     string        `json:"proxy_url,omitempty"`        // with -fleet local: where to curl the service; none once nothing is deployed there
	Stages       []StageResult `json:"stages"`
	Decision     string        `json:"validation,omitempty"` // why the prerequisites failed
	ErrorMessage string        `json:"error_message,omitempty"`
	// RecoveryMs is, after a rollback on a failed analysis, the time
	// from the failing sample to the traffic back on the old version.
	RecoveryMs  float64    `json:"recovery_ms,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
}

// StageResult is one stage of a rollout in a region.
type StageResult struct {
	Name      string         `json:"name"`
	Percent   float64        `json:"traffic_percent"`
	StartedAt time.Time      `json:"started_at"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	Verdict   string         `json:"verdict,omitempty"` // passed, failed, aborted, promoted, interrupted (cut off, then rolled back)
	Reason    string         `json:"reason,omitempty"`
	Samples   []HealthSample `json:"health_samples"`
}

// HealthSample is one health reading during a bake, with its analysis. A
// reading that is not a finite number (NaN or ±Inf, from a broken health
// source: the analysis fails it, or judges it as it is) is written as
// null in JSON, which holds no such number, and read back as NaN.
type HealthSample struct {
	Time      time.Time `json:"time"`
	Requests  float64   `json:"requests"`
	ErrorRate float64   `json:"error_rate"`
	P99Ms     float64   `json:"p99_ms"`
	CPU       float64   `json:"cpu"`
	Memory    float64   `json:"memory"`
	// Verdict is passed, failed or inconclusive (no data).
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
}

// healthSampleJSON is a HealthSample as JSON holds it: each reading a
// pointer, nil (null) for one that is not a finite number, which JSON
// cannot carry.
type healthSampleJSON struct {
	healthSampleFields
	Requests  *float64 `json:"requests"`
	ErrorRate *float64 `json:"error_rate"`
	P99Ms     *float64 `json:"p99_ms"`
	CPU       *float64 `json:"cpu"`
	Memory    *float64 `json:"memory"`
}

// healthSampleFields is HealthSample without its JSON methods.
type healthSampleFields HealthSample

// MarshalJSON writes the sample, each reading that is not a finite
// number as null: a record holding one could not be stored at all.
func (h HealthSample) MarshalJSON() ([]byte, error) {
	finite := func(f float64) *float64 {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return &f
	}
	return json.Marshal(healthSampleJSON{healthSampleFields(h),
		finite(h.Requests), finite(h.ErrorRate), finite(h.P99Ms), finite(h.CPU), finite(h.Memory)})
}

// UnmarshalJSON reads a sample as MarshalJSON writes it: a reading that
// is null is NaN.
func (h *HealthSample) UnmarshalJSON(b []byte) error {
	var v healthSampleJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	reading := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	*h = HealthSample(v.healthSampleFields)
	h.Requests, h.ErrorRate, h.P99Ms, h.CPU, h.Memory = reading(v.Requests), reading(v.ErrorRate), reading(v.P99Ms), reading(v.CPU), reading(v.Memory)
	return nil
}

// maxSamplesKept bounds the samples a stage keeps in its record (the
// latest ones); the metrics and the audit trail count them all.
const maxSamplesKept = 20

// newDeploymentID makes "dpl_" and 32 lowercase hex digits.
func newDeploymentID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "dpl_" + hex.EncodeToString(b[:])
}

var (
	deploymentIDRE = regexp.MustCompile(`^dpl_[0-9a-f]{32}$`)
	serviceRE      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	regionRE       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)
	versionRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)
	metaKeyRE      = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,63}$`)
)

// requestNames checks that a request can name every region, service and
// version of c: the catalog takes names (a region of 63 letters, a
// version v1.0.0~rc1) that validate refuses, and a deployment of them
// could only be a 400.
func requestNames(c *catalog.Catalog) error {
	var errs []error
	refuse := func(path, kind, name string, re *regexp.Regexp) {
		if !re.MatchString(name) {
			errs = append(errs, fmt.Errorf("catalog: %s: %s %q is not a name a request takes (%s)", path, kind, name, re))
		}
	}
	for _, region := range c.RegionNames() {
		refuse("regions."+region, "region", region, regionRE)
	}
	for _, service := range c.ServiceNames() {
		refuse("services."+service, "service", service, serviceRE)
		for _, version := range c.VersionNames(service) {
			refuse("services."+service+".versions."+version, "version", version, versionRE)
		}
	}
	return errors.Join(errs...)
}

// maxRegions bounds a wave.
const maxRegions = 16

// validate checks a request's fields and returns the regions in order and
// the strategy, or a 400 naming the field. Whether the service, version
// and regions exist is the policy's to say (422).
func (r *DeployRequest) validate() (regions []string, strategy string, err error) {
	if r.Service == "" {
		return nil, "", httpapi.Invalid("service", "service is required")
	}
	if !serviceRE.MatchString(r.Service) {
		return nil, "", httpapi.Invalid("service", "service %q is not a service name (lowercase letters, digits and '-', at most 63)", clip(r.Service))
	}
	if r.Version == "" {
		return nil, "", httpapi.Invalid("version", "version is required")
	}
	if !versionRE.MatchString(r.Version) {
		return nil, "", httpapi.Invalid("version", "version %q is not a version (letters, digits, '.', '_', '+', '-', at most 128)", clip(r.Version))
	}
	regions = slices.Clone(r.TargetRegions)
	switch {
	case len(regions) == 0 && r.TargetRegion == "":
		return nil, "", httpapi.Invalid("target_region", "target_region (or target_regions) is required")
	case len(regions) == 0:
		regions = []string{r.TargetRegion}
	case r.TargetRegion != "" && regions[0] != r.TargetRegion:
		return nil, "", httpapi.Invalid("target_region", "target_region %q is not the first of target_regions", clip(r.TargetRegion))
	}
	if len(regions) > maxRegions {
		return nil, "", httpapi.Invalid("target_regions", "%d regions; at most %d", len(regions), maxRegions)
	}
	for i, reg := range regions {
		// The field that gave the region: target_region alone, or an
		// element of target_regions, named as the decoder names one.
		field := fmt.Sprintf("target_regions[%d]", i)
		if len(r.TargetRegions) == 0 {
			field = "target_region"
		}
		if !regionRE.MatchString(reg) {
			return nil, "", httpapi.Invalid(field, "region %q is not a region name (lowercase letters, digits and '-', at most 32)", clip(reg))
		}
		if slices.Index(regions, reg) != i {
			return nil, "", httpapi.Invalid(field, "region %q is listed twice", reg)
		}
	}
	strategy = r.RolloutStrategy
	switch strategy {
	case "":
		strategy = Canary
	case Canary, BlueGreen, Rolling:
	default:
		return nil, "", httpapi.Invalid("rollout_strategy", "rollout_strategy %q is not one of canary, blue-green, rolling", clip(strategy))
	}
	if a := r.Analysis; a != nil {
		for _, f := range []struct {
			name string
			v    float64
			max  float64
		}{{"max_error_rate", a.MaxErrorRate, 1}, {"max_cpu", a.MaxCPU, 1}, {"max_memory", a.MaxMemory, 1}, {"max_p99_ms", a.MaxP99Ms, 3_600_000}} {
			if math.IsNaN(f.v) || f.v < 0 || f.v > f.max {
				return nil, "", httpapi.Invalid("analysis."+f.name, "analysis.%s %v is not in [0, %v] (0 keeps the service's)", f.name, f.v, f.max)
			}
		}
		// Under half a nanosecond the p99's threshold would be 0, which
		// every reading but 0 exceeds.
		if a.MaxP99Ms > 0 && a.MaxP99Ms < 1e-6 {
			return nil, "", httpapi.Invalid("analysis.max_p99_ms", "analysis.max_p99_ms %v is under a nanosecond (0 keeps the service's)", a.MaxP99Ms)
		}
	}
	if len(r.Metadata) > 32 {
		return nil, "", httpapi.Invalid("metadata", "%d metadata entries; at most 32", len(r.Metadata))
	}
	// In the keys' order, so that a request is refused alike each time.
	for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
		v := r.Metadata[k]
		if !metaKeyRE.MatchString(k) {
			return nil, "", httpapi.Invalid("metadata", "metadata key %q is not a key (letters, digits, '.', '_', '/', '-', at most 63)", clip(k))
		}
		if len(v) > 256 {
			return nil, "", httpapi.Invalid("metadata", "metadata %q is %d bytes; at most 256", k, len(v))
		}
		if hasControl(v) {
			return nil, "", httpapi.Invalid("metadata", "metadata %q holds a control character, a bidi override or a line separator", k)
		}
	}
	return regions, strategy, nil
}

// hasControl reports whether s, text a person gave (a reason, a metadata
// value), holds a control character (C0, DEL, C1: a tab, a new line, an
// escape), a character that changes how the text around it is laid out
// (a bidi embedding, override or isolate, which shows "abort\u202etxt.exe"
// as "abortexe.txt"; a line or paragraph separator), or is not valid
// UTF-8. Such text goes into the logs, the audit trail, the deployment
// and the board, which refuses it for its own cord alike.
func hasControl(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) ||
			r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069' || // bidi embeddings, overrides, isolates
			r == '\u2028' || r == '\u2029' // line and paragraph separators
	})
}

// checkReason refuses the reason of a command or of the cord that is
// longer than 512 bytes or holds what hasControl reports.
func checkReason(reason string) error {
	if len(reason) > 512 {
		return httpapi.Invalid("reason", "reason is %d bytes; at most 512", len(reason))
	}
	if hasControl(reason) {
		return httpapi.Invalid("reason", "reason holds a control character, a bidi override or a line separator")
	}
	return nil
}

// thresholds are the service's thresholds with the request's overrides.
func (r *DeployRequest) thresholds(base analysis.Thresholds) Thresholds {
	t := thresholdsOf(base)
	if a := r.Analysis; a != nil {
		if a.MaxErrorRate > 0 {
			t.MaxErrorRate = a.MaxErrorRate
		}
		if a.MaxP99Ms > 0 {
			t.MaxP99Ms = a.MaxP99Ms
		}
		if a.MaxCPU > 0 {
			t.MaxCPU = a.MaxCPU
		}
		if a.MaxMemory > 0 {
			t.MaxMemory = a.MaxMemory
		}
	}
	return t
}

// clip shortens what a client sent before it goes into an error message,
// to at most 64 bytes and whole characters.
func clip(s string) string { return httpapi.Clip(s, 64) }

// terminal reports whether a status is final.
func terminal(status string) bool {
	switch status {
	case StatusSuccess, StatusRolledBack, StatusFailed, StatusSkipped:
		return true
	}
	return false
}

// httpStatus is the HTTP status a deployment is answered with: 422 for
// one a prerequisite refused (the request's fault), 500 for one that
// failed for the service's own reasons (see failedOnServer).
func (d *Deployment) httpStatus() int {
	switch d.Status {
	case StatusSuccess:
		return 200
	case StatusRolledBack, StatusInProgress:
		return 202
	case StatusFailed:
		if d.failedOnServer() {
			return 500
		}
		return 422
	}
	return 500
}

// failedOnServer reports whether d ended FAILED for the service's own
// reasons rather than refused by a prerequisite: a region FAILED without
// a prerequisite's verdict (Decision) failed because the store, the
// queue, the health source or the fleet could not be reached, or its job
// was given up.
func (d *Deployment) failedOnServer() bool {
	if d.Status != StatusFailed {
		return false
	}
	refused := false
	for _, rr := range d.Results {
		if rr.Status != StatusFailed {
			continue
		}
		if rr.Decision == "" {
			return true
		}
		refused = true
	}
	return !refused
}

// finish sets the deployment's status from its regions' and closes it:
// ROLLED_BACK if a region rolled back, else FAILED if one failed, else
// SUCCESS. Its error message is that of the first region with that
// status, so that a wave going on past a refused region
// (continue_on_failure) and then rolled back says why it rolled back.
//
// now is the finishing replica's clock and StartedAt the requesting
// one's: a finish that reads earlier than the start (clocks apart) is
// taken at the start, so that completed_at never precedes started_at
// and duration_secs, and the duration histogram, never go negative.
func (d *Deployment) finish(now time.Time) {
	now = now.UTC()
	if now.Before(d.StartedAt) {
		now = d.StartedAt.UTC()
	}
	status := endStatus(d.Results)
	d.RegionsDone = d.RegionsDone[:0]
	for _, r := range d.Results {
		if r.Status == StatusSuccess {
			d.RegionsDone = append(d.RegionsDone, r.Region)
		}
	}
	d.Status = status
	if i := slices.IndexFunc(d.Results, func(r RegionResult) bool { return r.Status == status }); i >= 0 && status != StatusSuccess {
		msg := d.Results[i].ErrorMessage
		if len(d.Results) > 1 {
			msg = d.Results[i].Region + ": " + msg
		}
		if msg != "" {
			d.ErrorMessage = &msg
		}
	}
	d.CompletedAt = &now
	d.DurationSecs = now.Sub(d.StartedAt).Seconds()
}

// endStatus is the status of a deployment whose regions ended as results
// say: ROLLED_BACK if one rolled back, else FAILED if one failed, else
// SUCCESS.
func endStatus(results []RegionResult) string {
	status := StatusSuccess
	for _, r := range results {
		switch r.Status {
		case StatusRolledBack:
			return StatusRolledBack
		case StatusFailed:
			status = StatusFailed
		}
	}
	return status
}

// endsWith is the status d ends with once its region i ends with status,
// the regions after it skipped: the status its commands are closed with
// when that end is decided (see Store.EndCommands).
func (d *Deployment) endsWith(i int, status string) string {
	results := slices.Clone(d.Results[:i+1])
	results[i].Status = status
	return endStatus(results)
}

// utc is t in UTC, as every time of a deployment is written: a time in
// the machine's zone would be written with its offset.
func utc(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}

// endedAt is when a stage or a region that began at start ends, now on
// the clock of the replica that ends it: no earlier than start. A replica
// whose clock is behind that of the one that began it (taking the region
// up after a crash, or giving up its job) would end it before it began,
// and its time would go into the stage metric and /kaizen negative; it
// ends at its start then, as a deployment does (finish).
func endedAt(now, start time.Time) *time.Time {
	if now.Before(start) {
		now = start
	}
	return utc(now)
}

// endedAt is when region rr ends, now on the clock of the replica that
// ends it: no earlier than it began, if it did (see endedAt).
func (rr *RegionResult) endedAt(now time.Time) *time.Time {
	if rr.StartedAt == nil {
		return utc(now)
	}
	return endedAt(now, *rr.StartedAt)
}

// stageName is how a region's stage is listed in stages_completed: the
// stage's own name for one region, region/stage in a wave.
func (d *Deployment) stageName(region, stage string) string {
	if len(d.Regions) > 1 {
		return fmt.Sprintf("%s/%s", region, stage)
	}
	return stage
}

// decodeStrict decodes a request body as the API does (see httpapi.Decode).
func decodeStrict(body []byte, v any) error { return httpapi.Decode(body, v) }
