package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// The API as the README tells it, against a model: random sequences of
// deployments (services, versions, waves, strategies,
// continue_on_failure, versions that fail their analysis, answered at
// their end or at once), aborts, promotes and resumes of known and unknown
// deployments, pulls and releases of the cord, and reads of a deployment
// and of the list. Each answer's status is one the model allows (409 for
// a service/region held, 404, 400 whether or not the cord is pulled, 422,
// 503 for a valid deployment with the cord pulled, 409 for a command to a
// deployment that has ended); each deployment, once ended,
// has a status and region statuses the README allows for the commands it
// took; no deployment stays in progress once the cord is released and
// its bakes promoted; its regions are free again; and GET /deployments
// counts what the model counts.

// modelAdmin is the admin token of the model's service.
const modelAdmin = "admin-token-model-0123456789"

// modelArgs make a canary hold at staging (an hour's bake) until it is
// promoted or aborted, and a blue-green or rolling rollout end on its own
// in well under a second; a request waits 200 ms for the end, then is
// answered 202 IN_PROGRESS.
var modelArgs = []string{
	"-stages", "canary:5:50ms,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0",
	"-request-timeout", "200ms", "-admin-token", modelAdmin,
}

var (
	modelRegions  = []string{"us-west-2", "us-east-1", "eu-west-1"}
	modelServices = []string{"api-service", "bad-service", "regional-service"}
	// modelVersions are the versions of the demo catalog a deployment
	// picks from; v9.9.9 is in no catalog.
	modelVersions = map[string][]string{
		"api-service":      {"v1.0.0", "v2.0.0", "v2.1.0", "v3.0.0", "v9.9.9"},
		"bad-service":      {"v0.9.0", "v0.9.1", "v1.0.0", "v1.0.1", "v9.9.9"},
		"regional-service": {"v1.0.0", "v1.1.0", "v2.0.0", "v9.9.9"},
		"ghost-service":    {"v1.0.0"},
	}
	// modelUnknownRegion is a region's name in no catalog.
	modelUnknownRegion = "mars-north-1"
	modelStatuses      = []string{StatusSuccess, StatusRolledBack, StatusFailed, StatusInProgress}
)

// failsAnalysis reports whether version of service fails its analysis in
// region, as the demo catalog makes it.
func failsAnalysis(service, version, region string) bool {
	switch {
	case service == "bad-service" && version == "v1.0.0":
		return true
	case service == "regional-service" && version == "v2.0.0":
		return region == "eu-west-1"
	}
	return false
}

// modelDeployment is a deployment the service took, as the model knows it.
type modelDeployment struct {
	id, service, version string
	strategy             string
	regions              []string
	continueOnFailure    bool
	// natural is each region's end left to itself: SUCCESS, ROLLED_BACK
	// (its analysis fails) or FAILED (a prerequisite refuses it).
	natural []string
	// aborted is set once an abort was accepted: it then ends ROLLED_BACK.
	aborted bool
	// succeeded is set once a command was refused as already_succeeded.
	succeeded bool
	// ended is its end, once read.
	ended *Deployment
}

func (m *modelDeployment) healthy() bool { return !slices.Contains(m.natural, StatusRolledBack) }

// deploymentModel is what the service holds, as the model sees it.
type deploymentModel struct {
	base        string
	auditPath   string
	serving     map[string]string // service/region → version serving
	deployments []*modelDeployment
	cord        bool
}

// holders are the deployments not seen ended that hold service/region.
func (m *deploymentModel) holders(service, region string) []*modelDeployment {
	var hs []*modelDeployment
	for _, md := range m.deployments {
		if md.ended == nil && md.service == service && slices.Contains(md.regions, region) {
			hs = append(hs, md)
		}
	}
	return hs
}

func (m *deploymentModel) byID(id string) *modelDeployment {
	for _, md := range m.deployments {
		if md.id == id {
			return md
		}
	}
	return nil
}

// observe takes d, read from the service, into the model: once it has
// ended, its end must be one the README allows.
func (m *deploymentModel) observe(t *rapid.T, md *modelDeployment, d Deployment) {
	t.Helper()
	require.Equal(t, md.id, d.ID)
	require.Equal(t, md.service, d.Service)
	require.Equal(t, md.version, d.Version)
	require.Equal(t, md.regions, d.Regions)
	if md.ended != nil {
		require.Equal(t, md.ended.Status, d.Status, "an ended deployment changed: %+v", d)
		return
	}
	if !terminal(d.Status) {
		require.Equal(t, StatusInProgress, d.Status)
		return
	}
	md.ended = &d
	checkEnd(t, md, d)
	for _, rr := range d.Results {
		if rr.Status == StatusSuccess {
			m.serving[lockKey(md.service, rr.Region)] = md.version
		}
	}
}

// checkEnd checks the end of md, read as d, against what the README
// allows: each region ends as left to itself, or, aborted, rolled back or
// skipped; the first region that does not succeed stops the wave but
// with continue_on_failure (and no abort), the rest SKIPPED; the
// deployment is ROLLED_BACK if a region rolled back, else FAILED if one
// failed, else SUCCESS, and ROLLED_BACK once an abort was accepted.
func checkEnd(t *rapid.T, md *modelDeployment, d Deployment) {
	t.Helper()
	require.NotNil(t, d.CompletedAt, "ended without completed_at: %+v", d)
	require.Len(t, d.Results, len(md.regions))
	// stopped: the regions left are skipped; maySkip: they may be, an
	// abort having come after a region that did not succeed.
	stopped, maySkip, rolledBack, failed := false, false, false, false
	for i, rr := range d.Results {
		require.Equal(t, md.regions[i], rr.Region)
		allowed := []string{md.natural[i]}
		if md.aborted {
			allowed = append(allowed, StatusRolledBack)
		}
		if maySkip {
			allowed = append(allowed, StatusSkipped)
		}
		if stopped {
			allowed = []string{StatusSkipped}
		}
		require.Contains(t, allowed, rr.Status, "deployment %s region %s (natural %v, aborted %v): %+v", d.ID, rr.Region, md.natural, md.aborted, d)
		switch rr.Status {
		case StatusSkipped:
			stopped = true
		case StatusRolledBack:
			rolledBack = true
			stopped = stopped || !md.continueOnFailure || md.aborted && strings.HasPrefix(rr.ErrorMessage, "Aborted")
			maySkip = md.aborted
		case StatusFailed:
			failed = true
			stopped = stopped || !md.continueOnFailure
			maySkip = md.aborted
		}
	}
	want := StatusSuccess
	switch {
	case rolledBack:
		want = StatusRolledBack
	case failed:
		want = StatusFailed
	}
	require.Equal(t, want, d.Status, "deployment %s status and its regions: %+v", d.ID, d)
	succeeded := []string{}
	for _, rr := range d.Results {
		if rr.Status == StatusSuccess {
			succeeded = append(succeeded, rr.Region)
		}
	}
	require.Equal(t, succeeded, d.RegionsDone, "deployment %s regions_completed: %+v", d.ID, d)
	if md.aborted && d.Status != StatusRolledBack {
		// An abort that comes once a region's prerequisites have refused
		// it, in a wave that goes on after a failure, skips the regions
		// after it and finds nothing to roll back: the deployment ends
		// FAILED. Any other ends it ROLLED_BACK: a refusal that ends the
		// deployment closes its commands first, and an abort stored
		// before wins, one sent after being refused.
		require.Equal(t, StatusFailed, d.Status, "deployment %s aborted (202) but ended: %+v", d.ID, d)
		require.True(t, md.continueOnFailure, "deployment %s aborted (202) ended FAILED without continue_on_failure: %+v", d.ID, d)
		skipped := false
		for i := 1; i < len(d.Results); i++ {
			before := d.Results[i-1]
			skipped = skipped || before.Status == StatusFailed && before.Decision != "" && d.Results[i].Status == StatusSkipped
		}
		require.True(t, skipped, "deployment %s aborted (202) ended FAILED with no region skipped after one refused by a prerequisite: %+v", d.ID, d)
	}
	if md.succeeded {
		require.Equal(t, StatusSuccess, d.Status, "deployment %s refused a command as already succeeded but ended: %+v", d.ID, d)
	}
}

func decodeAs[V any](t *rapid.T, r reply) V {
	t.Helper()
	var v V
	require.NoError(t, json.Unmarshal(r.Body, &v), "body: %s", r.Body)
	return v
}

// errorCode is the code of an error answer, which every error has.
func errorCode(t *rapid.T, r reply) string {
	t.Helper()
	e := decodeAs[struct {
		Error *struct {
			Code    string         `json:"code"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}](t, r)
	require.NotNil(t, e.Error, "an error without the error shape: %d %s", r.Code, r.Body)
	return e.Error.Code
}

var adminAuth = []string{"Authorization", "Bearer " + modelAdmin}

func (m *deploymentModel) get(t *rapid.T, id string) Deployment {
	t.Helper()
	r := do(t, "GET", m.base+"/deploy/"+id, nil)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	return decodeAs[Deployment](t, r)
}

// refresh reads md and takes it into the model.
func (m *deploymentModel) refresh(t *rapid.T, md *modelDeployment) Deployment {
	t.Helper()
	d := m.get(t, md.id)
	m.observe(t, md, d)
	return d
}

// deployRequest is a request the model draws.
type deployRequest struct {
	body     map[string]any
	service  string
	version  string
	regions  []string
	strategy string // as the service names it: canary by default
	cont     bool
	async    bool
	badInput bool // a 400
}

func drawDeploy(t *rapid.T) deployRequest {
	service := rapid.SampledFrom(append(slices.Clone(modelServices), "ghost-service")).Draw(t, "service")
	version := rapid.SampledFrom(modelVersions[service]).Draw(t, "version")
	regions := rapid.SliceOfNDistinct(rapid.SampledFrom(append(slices.Clone(modelRegions), modelUnknownRegion)), 1, 3, rapid.ID).Draw(t, "regions")
	strategy := rapid.SampledFrom([]string{"", "canary", "blue-green", "rolling"}).Draw(t, "strategy")
	dr := deployRequest{
		service: service, version: version, regions: regions, strategy: cmp.Or(strategy, "canary"),
		cont:  rapid.Bool().Draw(t, "continue_on_failure"),
		async: rapid.Bool().Draw(t, "async"),
		body:  map[string]any{"service": service, "version": version},
	}
	if len(regions) == 1 && rapid.Bool().Draw(t, "target_region") {
		dr.body["target_region"] = regions[0]
	} else {
		dr.body["target_regions"] = regions
	}
	if strategy != "" {
		dr.body["rollout_strategy"] = strategy
	}
	if dr.cont {
		dr.body["continue_on_failure"] = true
	}
	switch rapid.IntRange(0, 9).Draw(t, "bad input") {
	case 0:
		dr.body["rollout_strategy"], dr.badInput = "big-bang", true
	case 1:
		dr.body["target_regions"], dr.badInput = append(slices.Clone(regions), regions[0]), true
	case 2:
		dr.body["Service"], dr.badInput = service, true
	case 3:
		if len(regions) > 1 {
			dr.body["target_region"], dr.badInput = regions[1], true
		}
	case 4:
		dr.body["metadata"], dr.badInput = map[string]string{"ticket": "line\nbreak"}, true
	}
	return dr
}

// deploy sends dr and checks the answer against the model.
func (m *deploymentModel) deploy(t *rapid.T, dr deployRequest) *modelDeployment {
	t.Helper()
	var header []string
	if dr.async {
		header = []string{"Prefer", "respond-async"}
	}
	r := do(t, "POST", m.base+"/deploy", dr.body, header...)
	// A request refused as invalid is so whatever the cord's state; only
	// a valid one meets the stopped line, even one a deployment in
	// progress holds a region of.
	switch {
	case dr.badInput:
		require.Equal(t, http.StatusBadRequest, r.Code, "%s", r.Body)
		require.Equal(t, "invalid_request", errorCode(t, r))
		require.Empty(t, r.Header.Get("Retry-After"), "%s", r.Body)
		return nil
	case m.cord:
		require.Equal(t, http.StatusServiceUnavailable, r.Code, "the cord is pulled: %s", r.Body)
		require.NotEmpty(t, r.Header.Get("Retry-After"))
		require.Equal(t, "line_stopped", errorCode(t, r))
		return nil
	}
	var held []*modelDeployment
	for _, reg := range dr.regions {
		held = append(held, m.holders(dr.service, reg)...)
	}
	if r.Code == http.StatusConflict {
		require.Equal(t, "deployment_active", errorCode(t, r))
		e := decodeAs[struct {
			Error struct {
				Details struct {
					ID     string `json:"deployment_id"`
					Region string `json:"region"`
				} `json:"details"`
			} `json:"error"`
		}](t, r).Error.Details
		holder := m.byID(e.ID)
		require.NotNil(t, holder, "409 names a deployment the model does not know: %s", r.Body)
		require.Contains(t, held, holder, "409 names deployment %s, which ended or holds no region asked for: %s", e.ID, r.Body)
		require.Contains(t, holder.regions, e.Region)
		return nil
	}
	// Taken: whatever held one of its regions has ended.
	for _, h := range held {
		d := m.refresh(t, h)
		require.True(t, terminal(d.Status), "deployment %s taken (%d) while %s, in progress, holds a region of it: %s", dr.service, r.Code, h.id, r.Body)
	}
	require.Contains(t, []int{http.StatusOK, http.StatusAccepted, http.StatusUnprocessableEntity}, r.Code, "%s", r.Body)
	d := decodeAs[Deployment](t, r)
	md := &modelDeployment{id: d.ID, service: dr.service, version: dr.version, strategy: dr.strategy, regions: dr.regions, continueOnFailure: dr.cont}
	for _, reg := range dr.regions {
		natural := StatusSuccess
		switch {
		case dr.version == "v9.9.9" || dr.service == "ghost-service" || reg == modelUnknownRegion:
			natural = StatusFailed // no such image, or region
		case m.serving[lockKey(dr.service, reg)] == dr.version:
			natural = StatusFailed // it serves there already
		case failsAnalysis(dr.service, dr.version, reg):
			natural = StatusRolledBack
		}
		md.natural = append(md.natural, natural)
	}
	m.deployments = append(m.deployments, md)
	require.Equal(t, "/deploy/"+d.ID, r.Header.Get("Location"))
	if dr.async {
		require.Equal(t, http.StatusAccepted, r.Code)
		require.Equal(t, StatusInProgress, d.Status)
	} else {
		want := map[string]int{StatusSuccess: http.StatusOK, StatusRolledBack: http.StatusAccepted, StatusInProgress: http.StatusAccepted, StatusFailed: http.StatusUnprocessableEntity}[d.Status]
		require.Equal(t, want, r.Code, "status %s answered %d: %s", d.Status, r.Code, r.Body)
	}
	m.observe(t, md, d)
	return md
}

// command sends action to md with the admin token and checks the answer.
func (m *deploymentModel) command(t *rapid.T, md *modelDeployment, action string) reply {
	t.Helper()
	r := do(t, "POST", m.base+"/deploy/"+md.id+"/"+action, map[string]any{"reason": "model " + action}, adminAuth...)
	if r.Code == http.StatusAccepted {
		require.Nil(t, md.ended, "%s of deployment %s, ended %s, accepted", action, md.id, statusOf(md))
		require.False(t, md.aborted && action != "abort", "%s of deployment %s accepted after its abort", action, md.id)
		if action == "abort" {
			md.aborted = true
		}
		return r
	}
	require.Equal(t, http.StatusConflict, r.Code, "%s of %s: %s", action, md.id, r.Body)
	code := errorCode(t, r)
	if code == "not_in_progress" {
		d := m.refresh(t, md)
		require.True(t, terminal(d.Status), "%s of %s refused %s while it is %s", action, md.id, code, d.Status)
		return r
	}
	require.Nil(t, md.ended, "%s of %s, ended %s: %s, not not_in_progress", action, md.id, statusOf(md), r.Body)
	switch code {
	case "already_succeeded":
		md.succeeded = true
		m.refresh(t, md)
	case "aborting":
		require.True(t, md.aborted, "%s of %s refused as aborting, never aborted: %s", action, md.id, r.Body)
	case "line_stopped":
		require.True(t, m.cord, "%s refused with the cord released: %s", action, r.Body)
		require.NotEqual(t, "abort", action)
	case "not_baking":
		require.Equal(t, "promote", action)
	case "not_paused":
		require.Equal(t, "resume", action)
	default:
		t.Fatalf("%s of %s: 409 %s", action, md.id, r.Body)
	}
	return r
}

func statusOf(md *modelDeployment) string {
	if md.ended == nil {
		return StatusInProgress
	}
	return md.ended.Status
}

func (m *deploymentModel) setCord(t *rapid.T, pull bool) {
	t.Helper()
	body := map[string]any{"action": "start"}
	if pull {
		body = map[string]any{"action": "stop", "reason": "model"}
	}
	r := do(t, "POST", m.base+"/andon/cord", body, adminAuth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Equal(t, pull, decodeAs[struct {
		Stopped bool `json:"stopped"`
	}](t, r).Stopped, "%s", r.Body)
	m.cord = pull
}

// listBounds are the totals GET /deployments may answer for these
// filters: those ended are known, those not seen ended may have ended
// since with any status they may end with.
func (m *deploymentModel) listBounds(service, region, status string) (lo, hi int) {
	for _, md := range m.deployments {
		if service != "" && md.service != service || region != "" && !slices.Contains(md.regions, region) {
			continue
		}
		switch {
		case md.ended != nil:
			if status == "" || md.ended.Status == status {
				lo++
				hi++
			}
		case status == "":
			lo++
			hi++
		default:
			hi++
		}
	}
	return lo, hi
}

func (m *deploymentModel) list(t *rapid.T, service, region, status string) {
	t.Helper()
	q := url.Values{"limit": {"500"}}
	for k, v := range map[string]string{"service": service, "region": region, "status": status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	r := do(t, "GET", m.base+"/deployments?"+q.Encode(), nil)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	l := decodeAs[struct {
		Deployments []Deployment `json:"deployments"`
		Total       int          `json:"total"`
	}](t, r)
	lo, hi := m.listBounds(service, region, status)
	require.True(t, lo <= l.Total && l.Total <= hi, "GET /deployments?%s: total %d, the model %d to %d", q.Encode(), l.Total, lo, hi)
	require.Len(t, l.Deployments, min(l.Total, 500))
	for _, d := range l.Deployments {
		md := m.byID(d.ID)
		require.NotNil(t, md, "listed deployment %s the model does not know", d.ID)
		if status != "" {
			require.Equal(t, status, d.Status)
		}
		m.observe(t, md, d)
	}
}

// settle releases the cord and takes every deployment in progress to its
// end: a paused one is resumed, a healthy one's bake promoted, one whose
// region fails its analysis left to roll back. Then the regions are free,
// and the list's totals are the model's, exactly.
func (m *deploymentModel) settle(t *rapid.T) {
	t.Helper()
	if m.cord {
		// The cord pauses every rollout in progress, or one to come
		// before its first stage.
		for _, md := range m.deployments {
			if md.ended == nil {
				m.waitUntil(t, md, func(d Deployment) bool { return d.Paused || terminal(d.Status) })
			}
		}
		m.setCord(t, false)
	}
	for _, md := range m.deployments {
		deadline := time.Now().Add(30 * time.Second)
		for md.ended == nil {
			require.False(t, time.Now().After(deadline), "deployment %s still in progress: %+v", md.id, m.get(t, md.id))
			d := m.refresh(t, md)
			if md.ended != nil {
				break
			}
			region := currentRegion(&d)
			i := slices.Index(md.regions, region)
			switch {
			case d.Paused:
				m.command(t, md, "resume")
			case i >= 0 && md.natural[i] == StatusSuccess && baking(&d, region):
				// One promote at a time: the next is sent once the stage
				// it was for has ended, lest it reach the next region.
				stage := stageOf(&d, region)
				if m.command(t, md, "promote").Code == http.StatusAccepted {
					m.waitUntil(t, md, func(d Deployment) bool { return terminal(d.Status) || stageOf(&d, region) != stage })
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, service := range append(slices.Clone(modelServices), "") {
		for _, status := range append(slices.Clone(modelStatuses), "") {
			m.list(t, service, "", status)
		}
	}
	for _, region := range modelRegions {
		m.list(t, "", region, "")
	}
	m.checkRecorded(t)
}

// checkRecorded checks what the service records of each deployment's
// end a moment after its record reads ended: the counters by strategy,
// /kaizen, and one deployment.end line in the audit trail. They are
// polled for.
func (m *deploymentModel) checkRecorded(t *rapid.T) {
	t.Helper()
	want := map[string]int{}
	var kaizen Kaizen
	for _, md := range m.deployments {
		metric := map[string]string{StatusSuccess: "deployment_success_total", StatusRolledBack: "deployment_rollback_total", StatusFailed: "deployment_failed_total"}[md.ended.Status]
		want[fmt.Sprintf("%s{strategy=%q}", metric, md.strategy)]++
		kaizen.Total++
		switch md.ended.Status {
		case StatusSuccess:
			kaizen.Successful++
		case StatusRolledBack:
			kaizen.Rollbacks++
		case StatusFailed:
			kaizen.Failed++
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[string]int{}
		r := do(t, "GET", m.base+"/metrics", nil)
		require.Equal(t, http.StatusOK, r.Code)
		for _, line := range strings.Split(string(r.Body), "\n") {
			name, value, ok := strings.Cut(line, " ")
			if ok && (strings.HasPrefix(name, "deployment_success_total{") || strings.HasPrefix(name, "deployment_rollback_total{") || strings.HasPrefix(name, "deployment_failed_total{")) {
				var n int
				_, err := fmt.Sscan(value, &n)
				require.NoError(t, err, "%s", line)
				got[name] = n
			}
		}
		k := decodeAs[Kaizen](t, do(t, "GET", m.base+"/kaizen", nil))
		ends := map[string]int{}
		for _, rec := range readAudit(t, m.auditPath) {
			if rec.Kind == "deployment.end" {
				ends[rec.ID]++
			}
		}
		var unrecorded []string
		for _, md := range m.deployments {
			if ends[md.id] != 1 {
				unrecorded = append(unrecorded, fmt.Sprintf("%s: %d", md.id, ends[md.id]))
			}
		}
		sameKaizen := k.Total == kaizen.Total && k.Successful == kaizen.Successful && k.Rollbacks == kaizen.Rollbacks && k.Failed == kaizen.Failed && k.InProgress == 0
		if maps.Equal(want, got) && sameKaizen && len(unrecorded) == 0 {
			return
		}
		require.False(t, time.Now().After(deadline), "ends recorded: metrics %v, the model %v; kaizen %+v, the model %+v; deployment.end lines not one: %v", got, want, k, kaizen, unrecorded)
		time.Sleep(10 * time.Millisecond)
	}
}

// readAudit reads the audit trail at path, but for a last line still
// being written.
func readAudit(t *rapid.T, path string) []auditRecord {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []auditRecord
	for line := range strings.Lines(string(raw)) {
		if !strings.HasSuffix(line, "\n") {
			break
		}
		var r auditRecord
		require.NoError(t, json.Unmarshal([]byte(line), &r), "%s", line)
		out = append(out, r)
	}
	return out
}

func (m *deploymentModel) waitUntil(t *rapid.T, md *modelDeployment, cond func(Deployment) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d := m.refresh(t, md)
		if cond(d) {
			return
		}
		require.False(t, time.Now().After(deadline), "deployment %s never reached the state; last: %+v", md.id, d)
		time.Sleep(5 * time.Millisecond)
	}
}

// pick draws a deployment of those the model knows, preferring those not
// seen ended.
func (m *deploymentModel) pick(t *rapid.T) *modelDeployment {
	var open []*modelDeployment
	for _, md := range m.deployments {
		if md.ended == nil {
			open = append(open, md)
		}
	}
	if len(open) > 0 && rapid.IntRange(0, 3).Draw(t, "open") > 0 {
		return rapid.SampledFrom(open).Draw(t, "deployment")
	}
	return rapid.SampledFrom(m.deployments).Draw(t, "deployment")
}

// step draws one request and checks its answer.
func (m *deploymentModel) step(t *rapid.T) {
	t.Helper()
	op := rapid.SampledFrom([]string{"deploy", "deploy", "deploy", "abort", "promote", "resume", "cord", "get", "list", "page", "bad list", "bad command", "unknown"}).Draw(t, "op")
	if len(m.deployments) == 0 && op != "cord" && op != "list" && op != "page" && op != "bad list" {
		op = "deploy"
	}
	switch op {
	case "deploy":
		m.deploy(t, drawDeploy(t))
	case "abort", "resume":
		m.command(t, m.pick(t), op)
	case "promote":
		// A promote passes a stage with no sample: sent only to a
		// deployment whose every region passes its analysis, so that it
		// cannot make a failing version serve.
		if md := m.pick(t); md.healthy() {
			m.command(t, md, op)
		}
	case "cord":
		m.setCord(t, rapid.Bool().Draw(t, "pull"))
		r := do(t, "GET", m.base+"/andon/cord", nil)
		require.Equal(t, http.StatusOK, r.Code)
		require.Equal(t, m.cord, decodeAs[struct {
			Stopped bool `json:"stopped"`
		}](t, r).Stopped, "%s", r.Body)
	case "get":
		m.refresh(t, m.pick(t))
	case "list":
		service := rapid.SampledFrom(append(slices.Clone(modelServices), "")).Draw(t, "filter service")
		region := rapid.SampledFrom(append(slices.Clone(modelRegions), "")).Draw(t, "filter region")
		status := rapid.SampledFrom(append(slices.Clone(modelStatuses), "")).Draw(t, "filter status")
		m.list(t, service, region, status)
	case "page":
		limit := rapid.IntRange(1, 5).Draw(t, "limit")
		offset := rapid.IntRange(0, len(m.deployments)+2).Draw(t, "offset")
		r := do(t, "GET", fmt.Sprintf("%s/deployments?limit=%d&offset=%d", m.base, limit, offset), nil)
		require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
		l := decodeAs[struct {
			Deployments []Deployment `json:"deployments"`
			Total       int          `json:"total"`
		}](t, r)
		require.Equal(t, len(m.deployments), l.Total)
		require.Len(t, l.Deployments, max(0, min(limit, l.Total-offset)), "limit %d offset %d", limit, offset)
	case "bad list":
		q := rapid.SampledFrom([]string{"status=SKIPPED", "limit=0", "limit=501", "offset=-1", "limit=x", "sort=newest", "service=a&service=b", "region=%zz", "service=a;region=b"}).Draw(t, "bad query")
		r := do(t, "GET", m.base+"/deployments?"+q, nil)
		require.Equal(t, http.StatusBadRequest, r.Code, "%s: %s", q, r.Body)
		require.Equal(t, "invalid_request", errorCode(t, r))
	case "bad command":
		md := m.pick(t)
		action := rapid.SampledFrom([]string{"abort", "promote", "resume"}).Draw(t, "action")
		if rapid.Bool().Draw(t, "no token") {
			r := do(t, "POST", m.base+"/deploy/"+md.id+"/"+action, map[string]any{"reason": "no token"})
			require.Equal(t, http.StatusUnauthorized, r.Code, "%s", r.Body)
		} else {
			r := do(t, "POST", m.base+"/deploy/"+md.id+"/"+action, map[string]any{"reason": "bidi \u202e"}, adminAuth...)
			require.Equal(t, http.StatusBadRequest, r.Code, "%s", r.Body)
		}
	case "unknown":
		id := fmt.Sprintf("dpl_%032x", rapid.Uint64().Draw(t, "unknown id"))
		action := rapid.SampledFrom([]string{"", "/abort", "/promote", "/resume"}).Draw(t, "unknown action")
		method := map[bool]string{true: "GET", false: "POST"}[action == ""]
		r := do(t, method, m.base+"/deploy/"+id+action, nil, adminAuth...)
		require.Equal(t, http.StatusNotFound, r.Code, "%s %s: %s", method, action, r.Body)
		require.Equal(t, "not_found", errorCode(t, r))
	}
}

// modelChecks is how many sequences TestDeploymentAPIModel runs unless
// -rapid.checks says otherwise: each runs real rollouts.
const modelChecks = 10

func TestDeploymentAPIModel(t *testing.T) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if f := flag.Lookup("rapid.checks"); f != nil && !set {
		old := f.Value.String()
		require.NoError(t, f.Value.Set(fmt.Sprint(modelChecks)))
		t.Cleanup(func() { _ = f.Value.Set(old) })
	}
	rapid.Check(t, func(rt *rapid.T) {
		// Each sequence meets a service of its own, started afresh: a
		// sequence that fails shrinks to the steps that make it fail,
		// with nothing left by the sequences before it.
		m, stop := newDeploymentModel(t)
		defer stop()
		for range rapid.IntRange(1, 12).Draw(rt, "steps") {
			m.step(rt)
		}
		m.settle(rt)
	})
}

// newDeploymentModel starts a service on a data dir of its own and returns
// the model of it, and the function that stops it.
func newDeploymentModel(t *testing.T) (*deploymentModel, func()) {
	t.Helper()
	dir := t.TempDir()
	ts := startServiceIn(t, dir, modelArgs...)
	m := &deploymentModel{base: ts.URL, auditPath: filepath.Join(dir, "audit-test.jsonl"), serving: map[string]string{}}
	var cat CatalogView
	require.NoError(t, json.Unmarshal(do(t, "GET", ts.URL+"/catalog", nil).Body, &cat))
	for service, sv := range cat.Services {
		for region, version := range sv.Serving {
			m.serving[lockKey(service, region)] = version
		}
	}
	return m, ts.shutdown
}
