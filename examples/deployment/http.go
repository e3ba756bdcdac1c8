package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"

	"github.com/taipattern/taikit/examples/internal/httpapi"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban/natsjs"
	"github.com/taipattern/taikit/tai"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// Handler is the service's HTTP API.
func (s *Service) Handler() http.Handler {
	api := func(h http.HandlerFunc) http.Handler { return s.tokens().RequireAPI(h, nil) }
	admin := s.adminOnly
	mux := http.NewServeMux()
	// The board's own routes (see andon.Board), each mounted here so that
	// a path or method it does not serve gets this mux's JSON 404 or 405.
	// Reading the board is open; its cord needs the admin token.
	mux.Handle("GET /andon/{$}", s.board)
	mux.Handle("GET /andon/assets/", s.board)
	mux.Handle("GET /andon/api/state", s.board)
	mux.Handle("GET /andon/api/events", s.board)
	mux.Handle("POST /andon/api/cord", admin(s.board))
	mux.Handle("POST /deploy", api(s.handleDeploy))
	mux.Handle("GET /deploy/{id}", api(s.handleGet))
	mux.Handle("GET /deploy/{id}/events", api(s.handleEvents))
	mux.Handle("GET /deployments", api(s.handleList))
	mux.Handle("POST /deploy/{id}/abort", admin(s.command("abort")))
	mux.Handle("POST /deploy/{id}/promote", admin(s.command("promote")))
	mux.Handle("POST /deploy/{id}/resume", admin(s.command("resume")))
	mux.Handle("GET /catalog", api(s.handleCatalog))
	mux.Handle("GET /andon/cord", api(s.handleCordGet))
	mux.Handle("POST /andon/cord", admin(http.HandlerFunc(s.handleCord)))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("GET /kaizen", s.handleKaizen)
	health := func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /healthz", health)
	mux.HandleFunc("GET /readyz", s.handleReady)
	return svc.TraceHTTP(mux, httpapi.AllowHosts(s.cfg.AllowedHosts, httpapi.JSONErrors(mux)), s.tracing, propagation.TraceContext{}, untraced)
}

// untraced reports the requests that get no server span: scrapes, probes,
// the board and the event streams, which would drown the deployments'
// traces (a stream's span would last as long as its client stays).
func untraced(r *http.Request) bool {
	switch p := r.URL.Path; {
	case p == "/metrics", p == "/health", p == "/healthz", p == "/readyz":
		return true
	case strings.HasPrefix(p, "/andon/") && p != "/andon/cord", strings.HasSuffix(p, "/events"):
		return true
	}
	return false
}

func (s *Service) tokens() httpapi.Tokens {
	return httpapi.Tokens{API: s.cfg.APIToken.Reveal(), Admin: s.cfg.AdminToken.Reveal(), Realm: "deployment admin"}
}

// adminOnly guards h with the admin token.
func (s *Service) adminOnly(h http.Handler) http.Handler { return s.tokens().RequireAdmin(h, nil) }

func (s *Service) handleReady(w http.ResponseWriter, _ *http.Request) {
	checks := map[string]string{"nats": "ok"}
	ok := s.ready.Load()
	if !ok {
		checks["service"] = "starting or stopping"
	}
	if st := s.nc.Status(); st != nats.CONNECTED {
		checks["nats"], ok = st.String(), false
	}
	if stopped, reason := s.line.Stopped(); stopped {
		checks["line"] = "stopped: " + reason
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	httpapi.WriteJSON(w, code, checks)
}

// handleDeploy takes a deployment: it checks the request (a 4xx naming
// what is wrong, whether or not the line is stopped), then the line (503
// with Retry-After while the cord is pulled), takes its service/region
// pairs (409 when another deployment holds one), stores it and queues its
// first region. It then waits for the end, as the reference does, unless
// the client sent Prefer: respond-async; a deployment still running at
// -request-timeout is answered 202, and one that ended FAILED for the
// service's own reasons 500 in the error schema.
func (s *Service) handleDeploy(w http.ResponseWriter, r *http.Request) {
	// A request that is not valid is refused as such whatever the line's
	// state: answered 503 with Retry-After, it would be sent again later
	// only to be refused then. A valid one meets a stopped line before it
	// takes its regions, as nothing is written while the line is stopped;
	// so a region held by another deployment is answered 503 then, not
	// 409: the stopped line refuses every deployment, and the holder,
	// paused by the cord, may well be aborted before the line starts.
	body, err := httpapi.ReadBody(w, r, maxBody)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	var req DeployRequest
	if err := decodeStrict(body, &req); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	regions, strategy, err := req.validate()
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if err := s.line.Admit(r.Context(), ""); err != nil {
		_, reason := s.line.Stopped()
		e := httpapi.Errorf(http.StatusServiceUnavailable, "line_stopped", "deployments are stopped: %s", reason)
		e.RetryAfter = tai.RetryAfter(err)
		httpapi.WriteError(w, e)
		return
	}
	now := time.Now().UTC()
	d := &Deployment{
		ID: newDeploymentID(), Service: req.Service, Version: req.Version,
		TargetRegion: regions[0], Regions: regions, Strategy: strategy,
		Status: StatusInProgress, StartedAt: now, StagesCompleted: []string{},
		RegionsDone: []string{}, ContinueOn: req.ContinueOnFailure, FirstDeploy: req.FirstDeploy,
		Analysis: req.thresholds(s.cfg.Analysis), Metadata: req.Metadata,
	}
	for _, reg := range regions {
		d.Results = append(d.Results, RegionResult{Region: reg, Status: StatusPending, Stages: []StageResult{}})
	}
	ctx, span := s.startSpan(r.Context(), "deploy "+d.Service, deploymentAttrs(d)...)
	defer span.End()
	d.TraceID = span.SpanContext().TraceID().String()
	done := s.wait(d.ID)
	defer s.unwait(d.ID, done)
	// The deployment's start (its regions taken, its record stored, its
	// first region queued) goes on if the client leaves: cut off between
	// two steps it would be stored and never queued, in progress for
	// ever, or end FAILED for a publish its client's leaving interrupted.
	// It has startingFor, after which its regions' locks count as stale.
	start, cancel := context.WithTimeout(context.WithoutCancel(ctx), startingFor)
	defer cancel()
	if err := s.lockRegions(start, d); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	rev, perhapsStored, err := s.createRecord(start, d)
	if err != nil {
		e := storeUnavailable(err)
		if perhapsStored {
			// The client may find it: GET /deploy/{id} shows it, if stored.
			s.log.Error("deployment not stored, or stored unanswered; it keeps its regions until it is found and ended",
				"deployment_id", d.ID, "err", err)
			e.Details = map[string]any{"deployment_id": d.ID}
		} else {
			s.unlockRegions(d)
		}
		httpapi.WriteError(w, e)
		return
	}
	if err := s.queueFirst(start, d); err != nil && s.notQueued(start, d, rev, err) {
		// It is stored, ended FAILED: GET /deploy/{id} shows why.
		e := storeUnavailable(err)
		e.Details = map[string]any{"deployment_id": d.ID}
		httpapi.WriteError(w, e)
		return
	}
	w.Header().Set("Location", "/deploy/"+d.ID)
	if preferAsync(r) {
		w.Header().Set("Preference-Applied", "respond-async")
		httpapi.WriteJSON(w, http.StatusAccepted, d)
		return
	}
	timeout := time.NewTimer(s.cfg.RequestTimeout)
	defer timeout.Stop()
	last := d
	for !terminal(last.Status) {
		select {
		case cur := <-done:
			last = cur
			continue
		case <-ctx.Done():
			return // the client left; the deployment goes on
		case <-timeout.C:
		case <-s.closing:
		}
		break
	}
	code := last.httpStatus()
	if code >= 500 {
		httpapi.WriteError(w, failedError(last, code))
		return
	}
	httpapi.WriteJSON(w, code, last)
}

// failedError is the answer, in the error schema, for deployment d that
// ended FAILED for the service's own reasons (see failedOnServer): the
// request was not at fault. It names the deployment, which GET
// /deploy/{id} shows in full.
func failedError(d *Deployment, code int) error {
	msg := "no reason recorded"
	if d.ErrorMessage != nil {
		msg = *d.ErrorMessage
	}
	e := httpapi.Errorf(code, "deployment_failed", "deployment %s failed: %s", d.ID, msg)
	e.Details = map[string]any{"deployment_id": d.ID, "status": d.Status}
	return e
}

// createRecord stores new deployment d, and tries again while the store
// is out of reach (retryStore): a create that went unanswered may have
// landed, and the next try then finds the record (Store.Create) and
// takes its revision. It returns the revision, or the error and whether
// the record may be stored all the same (a try went unanswered). Such a
// record, in progress with no job queued, must keep its regions: once
// its start is over, a replica's sweep (sweepRegions), or another
// deployment asking for one of them, finds it and ends it
// (endCutOffStart), or, never stored, its locks are stale (lockRegions).
// Freed now, nothing would ever end it.
func (s *Service) createRecord(ctx context.Context, d *Deployment) (rev uint64, perhapsStored bool, err error) {
	err = s.retryStore(ctx, "deployment", []any{"deployment_id", d.ID}, func(ctx context.Context) error {
		var cerr error
		rev, cerr = s.store.Create(ctx, d)
		perhapsStored = perhapsStored || natsjs.Unreachable(cerr)
		return cerr
	})
	return rev, perhapsStored, err
}

// queueFirst queues the first region of new deployment d, and tries
// again while the queue is out of reach (retryStore), as the request
// stores the record (createRecord): the queue's stream electing a leader
// leaves a publish unanswered for seconds, and the deployment ended
// FAILED for it (notQueued). A publish that went unanswered may have
// landed: the next one, of the same message ID, is the stream's duplicate
// (its DedupWindow far outlasts startingFor) and queues no second job.
func (s *Service) queueFirst(ctx context.Context, d *Deployment) error {
	return s.retryStore(ctx, "first region's job", []any{"deployment_id", d.ID, "region", d.Results[0].Region}, func(ctx context.Context) error {
		return s.publishJob(ctx, d, 0)
	})
}

// notQueued ends deployment d, stored at rev, whose first region could not
// be queued (err): it will not run. It ends FAILED as any other, counted
// and in the audit trail, and its regions are free again. The wave's
// other regions are never reached: skipped, as after a region that
// failed. It is written over rev, the revision created, and reports
// whether the deployment ended.
//
// A publish whose acknowledgement was lost may have queued the job all the
// same, and the job may have written the record since: it runs, and the
// write over rev is refused. notQueued then leaves the deployment to it,
// its regions taken until it ends, and reports false: the request is
// answered as a queued one. Should the write fail otherwise, the error is
// logged, the deployment is not counted as ended (its record does not say
// so), and it keeps its regions: in progress with no job, it is found and
// ended once its start is over, by a replica's sweep or by another
// deployment asking for one of them (endCutOffStart), and, should its end
// have been stored unanswered, its locks are a finished deployment's,
// which the sweep or the next lock takes (lockRegions). Freed now, a
// record still in progress would stay so for ever. It reports true: the
// request is answered as one not queued.
func (s *Service) notQueued(ctx context.Context, d *Deployment, rev uint64, err error) (ended bool) {
	switch uerr := s.endNotQueued(ctx, d, rev, err); {
	case uerr == nil:
		s.log.Error("first region not queued; the deployment ends", "deployment_id", d.ID, "region", d.Results[0].Region, "err", err)
	case isConflict(uerr):
		s.log.Warn("first region queued although its publish failed; the deployment runs", "deployment_id", d.ID, "region", d.Results[0].Region, "err", err)
		return false
	default:
		s.log.Error("first region not queued, and the deployment's end not stored; it keeps its regions until it is found and ended",
			"deployment_id", d.ID, "region", d.Results[0].Region, "err", err, "store_err", uerr)
		return true
	}
	s.unlockRegions(d)
	return true
}

// endNotQueued stores the end of deployment d, stored at rev, whose first
// region was not queued (err): that region FAILED "Not queued: ", the
// others skipped. The end stored is counted and in the audit trail, and
// the deployment's command, sent while it was in progress and taken by no
// run, is dropped (as continueWave drops a deployment's at its end). It
// returns the store's error, a conflict when the record has changed since
// rev; it releases no region.
func (s *Service) endNotQueued(ctx context.Context, d *Deployment, rev uint64, err error) error {
	ctx = context.WithoutCancel(ctx)
	// The end is written from a copy: d stays the deployment in progress
	// should the job run after all.
	f := *d
	f.Results = slices.Clone(d.Results)
	f.RegionsDone = []string{}
	now := time.Now().UTC()
	f.Results[0].Status, f.Results[0].ErrorMessage, f.Results[0].CompletedAt = StatusFailed, "Not queued: "+err.Error(), &now
	for i := 1; i < len(f.Results); i++ {
		f.Results[i].Status = StatusSkipped
	}
	f.finish(now)
	if _, uerr := s.store.Update(ctx, &f, rev); uerr != nil {
		return uerr
	}
	s.countEnd(&f)
	if derr := s.store.DropCommands(ctx, d.ID); derr != nil {
		s.log.Warn("command of a deployment never queued not dropped", "deployment_id", d.ID, "err", derr)
	}
	return nil
}

// errStartCutOff is why a deployment whose start was cut off (see
// queuedWithin) ends.
var errStartCutOff = errors.New("the service stopped between storing the deployment and queueing the region")

// queuedWithin is how long after it took its regions a deployment in
// progress none of whose regions has begun may be without a job in the
// queue. Its request queues its first region within startingFor of
// taking them, or else ends it (notQueued); one still so well past that
// was cut off between storing it and queueing the region (the process
// killed), and nothing will ever run it. The margin over startingFor
// covers a publish that was on its way at the request's deadline. The
// time is the locks' (on the NATS server's clock, see Store.locksNow),
// not the deployment's StartedAt: that is the clock of the replica that
// took the request, which another's need not agree with.
const queuedWithin = 2 * startingFor

// endCutOffStart ends deployment d, stored at rev and holding a region
// (for held, on the NATS server's clock), if its start was cut off before
// its first region was queued: it is in progress, none of its regions has
// begun, it took the region more than queuedWithin ago, and no job of it
// is in the queue (waiting, or taken by a consumer of any replica and not
// yet acknowledged). It ends FAILED as when its publish fails
// (notQueued), and every region it held is freed. It reports whether it
// ended d. A job of d taken up and
// acknowledged between the record's read and the queue's has written the
// record: the end, written over rev, is refused, and d holds its
// regions. One queued after (a publish still on its way) finds d ended,
// and runs nothing.
//
// A deployment one of whose regions has begun (its first job was
// delivered) ends so too, whatever its age, when no job of it is in the
// queue: each job queues the next region before it is acknowledged, so
// that the job of the region it is at was dead-lettered (given up on its
// last attempt while the store was out of reach, or delivered once more
// than its attempts after a restart cut its last off), and nothing will
// run it again. It ends FAILED, its job given up (endGivenUp, errJobGone).
func (s *Service) endCutOffStart(ctx context.Context, d *Deployment, rev uint64, held time.Duration) bool {
	if terminal(d.Status) {
		return false
	}
	begun := slices.ContainsFunc(d.Results, func(rr RegionResult) bool { return rr.Status != StatusPending })
	if !begun && held <= queuedWithin {
		return false
	}
	queued, err := s.jobQueued(ctx, d.ID, -1)
	if err != nil {
		s.log.Warn("queue not read for a deployment holding the region; it keeps it", "deployment_id", d.ID, "err", err)
		return false
	}
	if queued {
		return false
	}
	cause := errStartCutOff
	if begun {
		cause = errJobGone
		err = s.endGivenUp(ctx, d, rev, "Job given up: "+errJobGone.Error())
	} else {
		err = s.endNotQueued(ctx, d, rev, errStartCutOff)
	}
	if err != nil {
		if !isConflict(err) {
			s.log.Warn("end of a deployment no job runs not stored; it keeps its regions", "deployment_id", d.ID, "err", err)
		}
		return false
	}
	s.log.Error("deployment in progress with no job in the queue; it ends", "deployment_id", d.ID, "err", cause)
	s.unlockRegions(d)
	return true
}

// preferAsync reports a Prefer: respond-async header (RFC 7240), among
// other preferences, in any case, with or without ";" parameters or a
// value: a preference is its name, up to an "=" or a ";".
func preferAsync(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(p, ";")
			name, _, _ = strings.Cut(name, "=")
			if strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}

// startingFor is how long a deployment that has taken its regions may
// take to be stored: a holder not stored after it was cut off by a crash.
const startingFor = time.Minute

// lockRegions takes every service/region of d. A holder whose deployment
// has ended, or was never stored and took the lock over startingFor ago
// (a start cut off by a crash), is stale and loses its lock; one not
// stored yet is a request in flight, and holds it. A holder stored in
// progress whose first region was never queued (a start cut off between
// the two), or one begun whose job was dead-lettered (no job of it left
// in the queue), ends FAILED and frees its regions (endCutOffStart). A
// lock's age is read on the NATS server's clock (Store.locksNow). Every
// replica frees such regions by itself too, at its start and every
// sweepEvery (sweepRegions).
func (s *Service) lockRegions(ctx context.Context, d *Deployment) error {
	for i, reg := range d.Regions {
		holder, held, err := s.lockRegion(ctx, d.Service, reg, d.ID)
		if err == nil && holder != "" {
			var freed bool
			if freed, err = s.releaseStale(ctx, d.Service, reg, holder, held); freed {
				holder, _, err = s.lockRegion(ctx, d.Service, reg, d.ID)
			}
		}
		if err == nil && holder != "" {
			s.unlockRegions(&Deployment{ID: d.ID, Service: d.Service, Regions: d.Regions[:i]})
			e := httpapi.Errorf(http.StatusConflict, "deployment_active", "deployment %s of %s is already active in %s", holder, d.Service, reg)
			e.Details = map[string]any{"deployment_id": holder, "region": reg}
			return e
		}
		if err != nil {
			// This region's take may have been stored unanswered: it
			// is given back too.
			s.unlockRegions(&Deployment{ID: d.ID, Service: d.Service, Regions: d.Regions[:i+1]})
			return storeUnavailable(err)
		}
	}
	return nil
}

// lockRegion takes service/region for deployment id (Store.Lock), and tries
// again while the store is out of reach (retryStore), as the request
// stores its record (createRecord): the locks' bucket electing a leader
// leaves its writes unanswered for seconds, and a deployment asked for
// then was answered 503 without a deployment. A take that went
// unanswered may have landed: the next finds the lock its own.
func (s *Service) lockRegion(ctx context.Context, service, region, id string) (holder string, held time.Duration, err error) {
	err = s.retryStore(ctx, "region lock", []any{"deployment_id", id, "region", region}, func(ctx context.Context) error {
		var lerr error
		holder, held, lerr = s.store.Lock(ctx, service, region, id)
		return lerr
	})
	return holder, held, err
}

// releaseStale frees service/region, held by deployment holder for held
// (on the NATS server's clock, see Store.locksNow), if the holder is
// stale (see lockRegions): it has ended, or was never stored and took the
// lock over startingFor ago, or is stored in progress and nothing will
// ever run it (endCutOffStart). It reports whether the region is free,
// and the store's error should the holder's record not be read (whether
// it is stale is not known then) or the release fail.
func (s *Service) releaseStale(ctx context.Context, service, region, holder string, held time.Duration) (bool, error) {
	hd, rev, err := s.store.Get(ctx, holder)
	switch {
	case err != nil && !errors.Is(err, ErrNotFound):
		return false, err
	case errors.Is(err, ErrNotFound) && held > startingFor || (err == nil && terminal(hd.Status)):
		if err := s.store.Unlock(ctx, service, region, holder); err != nil {
			return false, err
		}
		return true, nil
	case err == nil:
		return s.endCutOffStart(ctx, hd, rev, held), nil
	}
	return false, nil
}

func (s *Service) unlockRegions(d *Deployment) {
	for _, reg := range d.Regions {
		if err := s.store.Unlock(context.Background(), d.Service, reg, d.ID); err != nil {
			s.log.Warn("region lock not released", "deployment_id", d.ID, "region", reg, "err", err)
		}
	}
}

func storeUnavailable(err error) *httpapi.Error {
	e := httpapi.Errorf(http.StatusServiceUnavailable, "store_unavailable", "the deployment store is unavailable: %v", err)
	e.RetryAfter = time.Second
	return e
}

func (s *Service) deployment(w http.ResponseWriter, r *http.Request) (*Deployment, bool) {
	id := r.PathValue("id")
	if !deploymentIDRE.MatchString(id) {
		httpapi.WriteError(w, notFound(clip(id)))
		return nil, false
	}
	d, _, err := s.store.Get(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		httpapi.WriteError(w, notFound(id))
		return nil, false
	}
	if err != nil {
		httpapi.WriteError(w, storeUnavailable(err))
		return nil, false
	}
	return d, true
}

// notFound is the 404 for a deployment ID that names none, quoted
// whether or not it has the form of an ID.
func notFound(id string) error {
	return httpapi.Errorf(http.StatusNotFound, "not_found", "no deployment %q", id)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	if d, ok := s.deployment(w, r); ok {
		httpapi.WriteJSON(w, http.StatusOK, d)
	}
}

// listParams are the query parameters of GET /deployments.
var listParams = []string{"service", "region", "status", "limit", "offset"}

// handleList answers GET /deployments?service=&region=&status=&limit=&offset=,
// newest first.
func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	// A pair that does not parse (a bad escape, a semicolon), which
	// URL.Query drops, a parameter given twice or with no value, or one
	// the list does not have, is refused: leaving out the filter it held, taking the first
	// of two filters, or none for a misspelt one, would answer a list the
	// client did not ask for, without a word.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		httpapi.WriteError(w, httpapi.Invalid("query", "query string does not parse: %v", err))
		return
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(listParams, name) {
			httpapi.WriteError(w, httpapi.Invalid(name, "query parameter %q is not one of %s", clip(name), strings.Join(listParams, ", ")))
			return
		}
		if n := len(q[name]); n > 1 {
			httpapi.WriteError(w, httpapi.Invalid(name, "query parameter %q is given %d times; give it once", name, n))
			return
		}
		// An empty value (?limit=, or ?status=$STATUS with the variable
		// unset) is refused rather than taken as not given.
		if q.Get(name) == "" {
			httpapi.WriteError(w, httpapi.Invalid(name, "query parameter %q is empty; give a value or leave it out", name))
			return
		}
	}
	service, region, status := q.Get("service"), q.Get("region"), q.Get("status")
	limit, offset := 50, 0
	for _, p := range []struct {
		name     string
		v        *int
		min, max int
	}{{"limit", &limit, 1, 500}, {"offset", &offset, 0, 1 << 30}} {
		if raw := q.Get(p.name); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < p.min || n > p.max {
				httpapi.WriteError(w, httpapi.Invalid(p.name, "%s %q is not a number in [%d, %d]", p.name, clip(raw), p.min, p.max))
				return
			}
			*p.v = n
		}
	}
	switch status {
	case "", StatusSuccess, StatusRolledBack, StatusFailed, StatusInProgress:
	default: // SKIPPED is a region's status only
		httpapi.WriteError(w, httpapi.Invalid("status", "status %q is not one of SUCCESS, ROLLED_BACK, FAILED, IN_PROGRESS", clip(status)))
		return
	}
	all, err := s.store.List(r.Context(), func(d *Deployment) bool {
		if service != "" && d.Service != service || status != "" && d.Status != status {
			return false
		}
		if region == "" {
			return true
		}
		for _, reg := range d.Regions {
			if reg == region {
				return true
			}
		}
		return false
	})
	if err != nil {
		httpapi.WriteError(w, storeUnavailable(err))
		return
	}
	page := all[min(offset, len(all)):min(offset+limit, len(all))]
	if page == nil {
		page = []*Deployment{} // an empty page is [], not null
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"deployments": page, "total": len(all), "limit": limit, "offset": offset})
}

// handleEvents streams a deployment's states as server-sent events, one
// "deployment" event per change, until it ends or the client leaves. A
// HEAD (which the GET pattern takes) gets the status and header a GET
// would, and ends: a stream with no body to send would hold the
// connection, and the client's next request on it, until the deployment
// ended.
func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.deployment(w, r); !ok {
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// The stream ends with the deployment, the client, or the server's
	// shutdown, which would otherwise wait for it.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = s.store.Watch(ctx, r.PathValue("id"), func(d *Deployment) bool {
		b, err := json.Marshal(d)
		if err != nil {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: deployment\ndata: %s\n\n", b); err != nil {
			return false
		}
		if rc.Flush() != nil {
			return false
		}
		return !terminal(d.Status)
	})
}

// command answers POST /deploy/{id}/abort, /promote and /resume: the
// command is stored, and the replica running the deployment acts on it.
func (s *Service) command(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Reason string `json:"reason"`
		}
		raw, err := commandBody(w, r)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if len(raw) > 0 {
			if err := httpapi.Decode(raw, &body); err != nil {
				httpapi.WriteError(w, err)
				return
			}
		}
		if err := checkReason(body.Reason); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		d, ok := s.deployment(w, r)
		if !ok {
			return
		}
		if d.Status != StatusInProgress {
			if terminal(d.Status) {
				httpapi.WriteError(w, endedError(d.ID, d.Status, action))
			} else {
				httpapi.WriteError(w, httpapi.Errorf(http.StatusConflict, "not_in_progress", "deployment %s is %s", d.ID, d.Status))
			}
			return
		}
		if action == "resume" || action == "promote" {
			if stopped, reason := s.line.Stopped(); stopped {
				doing := map[string]string{"resume": "resuming", "promote": "promoting"}[action]
				httpapi.WriteError(w, httpapi.Errorf(http.StatusConflict, "line_stopped", "the line is stopped (%s): start it before %s", reason, doing))
				return
			}
		}
		if body.Reason == "" {
			body.Reason = action + " requested"
		}
		c := Command{Action: action, Reason: body.Reason, At: time.Now(), Region: currentRegion(d)}
		if action == "promote" {
			c.Stage = stageOf(d, c.Region)
		}
		// A promote ends the bake in progress, or a pause. Sent to a
		// region that has begun neither (queued, or a wave's next), it
		// would wait there and end its canary at its first sample, a
		// stage no one has seen yet. A resume ends a pause: sent to a
		// deployment not paused, it would be taken for nothing, stored
		// over the command pending.
		var nothing error
		switch {
		case action == "promote" && !d.Paused && !baking(d, c.Region):
			nothing = httpapi.Errorf(http.StatusConflict, "not_baking", "deployment %s has no stage baking in %s yet: nothing to promote", d.ID, c.Region)
		case action == "resume" && !d.Paused:
			nothing = httpapi.Errorf(http.StatusConflict, "not_paused", "deployment %s is not paused: nothing to resume", d.ID)
		}
		if nothing != nil {
			httpapi.WriteError(w, s.nothingTo(r.Context(), d.ID, action, nothing))
			return
		}
		if err := s.store.SendCommand(r.Context(), d.ID, c); errors.Is(err, ErrAborting) {
			httpapi.WriteError(w, abortingError(d.ID))
			return
		} else if errors.Is(err, ErrSucceeded) {
			// Its last region passed its last stage before the command
			// was stored: the run takes no command any more.
			httpapi.WriteError(w, succeededError(d.ID, action))
			return
		} else if ended := (*EndedError)(nil); errors.As(err, &ended) {
			// It ended between the read above and the store, or its end
			// is decided and on its way (its prerequisites refused the
			// region that ends it): answered as a deployment read ended
			// is, once its record reads ended.
			httpapi.WriteError(w, endedError(d.ID, s.awaitEnd(r.Context(), d.ID, ended.Status), action))
			return
		} else if err != nil {
			httpapi.WriteError(w, storeUnavailable(err))
			return
		}
		s.audit.Observe(r.Context(), tai.Record{
			ID: d.ID, Kind: "deployment." + action, Key: d.Service, Outcome: tai.Succeeded,
			Decision: tai.Decision{Verdict: tai.Allow, Policy: "operator", Reason: body.Reason}, Start: time.Now(),
		})
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]string{"deployment_id": d.ID, "action": action, "status": "sent"})
	}
}

// nothingTo is the answer to a command (action) to deployment id, in
// progress, that has nothing to act on (nothing: a promote with no stage
// baking, a resume of a deployment not paused), unless its commands say
// why better, as SendCommand would refuse it: an abort pending
// (aborting), or the deployment's end decided (already_succeeded, or
// not_in_progress naming the status it ends with). Its last region
// passed its last stage, say, it has neither a stage baking nor a pause,
// and the answer is that it succeeded.
func (s *Service) nothingTo(ctx context.Context, id, action string, nothing error) error {
	end, closed, err := s.store.Closed(ctx, id)
	if err != nil {
		return storeUnavailable(err)
	}
	if closed {
		if end.Status == "" || end.Status == StatusSuccess {
			return succeededError(id, action)
		}
		return endedError(id, s.awaitEnd(ctx, id, end.Status), action)
	}
	aborting, err := s.store.Aborting(ctx, id)
	if err != nil {
		return storeUnavailable(err)
	}
	if aborting {
		return abortingError(id)
	}
	return nothing
}

// commandBody reads the body of a command, nil when there is none: sent
// with Content-Length: 0, or chunked and empty (no reason), with or
// without a Content-Type. A body that is not empty needs its
// Content-Type, as every request body does (httpapi.ReadBody).
func commandBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength == 0 {
		return nil, nil
	}
	if r.ContentLength < 0 && r.Header.Get("Content-Type") == "" {
		br := bufio.NewReader(r.Body)
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			return nil, nil
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{br, r.Body}
	}
	return httpapi.ReadBody(w, r, maxBody)
}

// endWait bounds how long a command refused for an end on its way waits
// for the deployment's record to show it (see awaitEnd).
const endWait = 10 * time.Second

// awaitEnd returns the status deployment id ends with, once its record
// reads ended. Its commands are closed (EndCommands) a moment before its
// end is stored, and a command refused meanwhile is answered once a read
// of the deployment shows the end it names. Should the end not come
// within endWait (the run storing it cut off, its job to be delivered
// again), or the request or the service end first, it returns status,
// the one the commands were closed with.
func (s *Service) awaitEnd(ctx context.Context, id, status string) string {
	changed := s.wait(id)
	defer s.unwait(id, changed)
	d, _, err := s.store.Get(ctx, id)
	if err != nil {
		return status
	}
	timeout := time.NewTimer(endWait)
	defer timeout.Stop()
	for !terminal(d.Status) {
		select {
		case d = <-changed:
		case <-timeout.C:
			return status
		case <-ctx.Done():
			return status
		case <-s.closing:
			return status
		}
	}
	return d.Status
}

// endedError is the answer to a command (action) sent to deployment id,
// which has ended with status: a 409 not_in_progress that names the
// status.
func endedError(id, status, action string) error {
	return httpapi.Errorf(http.StatusConflict, "not_in_progress", "deployment %s has ended %s; nothing to %s", id, status, action)
}

// abortingError is the answer to a promote or a resume sent to
// deployment id while an abort is pending: a 409 aborting.
func abortingError(id string) error {
	return httpapi.Errorf(http.StatusConflict, "aborting", "deployment %s is being aborted: an abort is final", id)
}

// succeededError is the answer to a command (action) sent to deployment
// id once its last region has passed its last stage: a 409
// already_succeeded.
func succeededError(id, action string) error {
	return httpapi.Errorf(http.StatusConflict, "already_succeeded", "deployment %s: the rollout already succeeded; nothing to %s", id, action)
}

// currentRegion is the region of a deployment in progress that a command
// is for: the one rolling out, or else the next to.
func currentRegion(d *Deployment) string {
	for _, st := range []string{StatusInProgress, StatusPending} {
		for _, rr := range d.Results {
			if rr.Status == st {
				return rr.Region
			}
		}
	}
	return ""
}

// stageOf is the stage in progress in region of d, "" if none.
func stageOf(d *Deployment, region string) string {
	for _, rr := range d.Results {
		if rr.Region == region && rr.Status == StatusInProgress {
			return rr.Stage
		}
	}
	return ""
}

// baking reports whether region of d has a stage in progress.
func baking(d *Deployment, region string) bool { return stageOf(d, region) != "" }

// setCord stores the cord's state for every replica and applies it here,
// and returns the state in force — the one stored before when the cord
// was pulled (or released) already — and whether c changed it.
func (s *Service) setCord(ctx context.Context, c Cord) (Cord, bool, error) {
	c, changed, err := s.store.SetCord(ctx, c)
	if err != nil {
		return Cord{}, false, err
	}
	s.applyCord(c)
	return c, changed, nil
}

// handleCordGet answers GET /andon/cord with the cord's state as this
// replica follows it: stopped or not, why, and when it was pulled or
// released (no "at" when it never was).
func (s *Service) handleCordGet(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, s.cordState())
}

// handleCord pulls or releases the andon cord: {"action":"stop","reason":...}
// or {"action":"start"}. Every replica follows it; a stopped line refuses
// new deployments and pauses the running ones, which a person then
// resumes or aborts one by one.
func (s *Service) handleCord(w http.ResponseWriter, r *http.Request) {
	raw, err := httpapi.ReadBody(w, r, maxBody)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	var body struct {
		Action string `json:"action"`
		Reason string `json:"reason"`
	}
	if err := httpapi.Decode(raw, &body); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	c := Cord{At: time.Now().UTC(), Reason: body.Reason}
	switch body.Action {
	case "stop":
		c.Stopped = true
		if c.Reason == "" {
			c.Reason = "cord pulled"
		}
	case "start":
	default:
		httpapi.WriteError(w, httpapi.Invalid("action", "action %q is not stop or start", clip(body.Action)))
		return
	}
	if err := checkReason(c.Reason); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	// The answer is the state in force: a pull while the cord is pulled
	// keeps the first reason and time. Only a change is in the audit
	// trail: a second pull's reason is not why the line stopped.
	inForce, changed, err := s.setCord(r.Context(), c)
	if err != nil {
		httpapi.WriteError(w, storeUnavailable(err))
		return
	}
	if changed {
		s.auditCord(r.Context(), body.Action, c.Reason, c.At)
	}
	httpapi.WriteJSON(w, http.StatusOK, inForce)
}

// auditCord writes a pull (action stop) or a release (start) of the cord
// to the audit trail, with its reason: one made with POST /andon/cord, or
// on the board (see startAlerts).
func (s *Service) auditCord(ctx context.Context, action, reason string, at time.Time) {
	s.audit.Observe(ctx, tai.Record{
		ID: tai.NewID(), Kind: "deployment.cord", Key: "cord", Outcome: tai.Succeeded,
		Decision: tai.Decision{Verdict: tai.Allow, Policy: "operator", Reason: action + ": " + reason}, Start: at,
	})
}

// Kaizen is the body of GET /kaizen: the reference's fields, over every
// deployment the store keeps, and rolling windows of this process.
type Kaizen struct {
	Total        int     `json:"total_deployments"`
	Successful   int     `json:"successful_deployments"`
	Rollbacks    int     `json:"rollback_count"`
	Failed       int     `json:"failed_count"`
	InProgress   int     `json:"in_progress"`
	SuccessRate  float64 `json:"success_rate_percent"`
	RollbackRate float64 `json:"rollback_rate_percent"`
	AvgDuration  float64 `json:"avg_duration_secs"`
	// MTTRMs is the mean time from a failing health sample to the traffic
	// back on the old version, over the rollbacks on a failed analysis.
	MTTRMs float64 `json:"mttr_ms"`
	// StageDuration is the mean time in each stage that ended, by name.
	StageDuration map[string]float64 `json:"stage_duration_secs"`
	Windows       any                `json:"windows"`
}

func (s *Service) handleKaizen(w http.ResponseWriter, r *http.Request) {
	k := Kaizen{StageDuration: map[string]float64{}}
	var total, recovery float64
	ended, recoveries := 0, 0
	stageSum, stageN := map[string]float64{}, map[string]int{}
	_, err := s.store.List(r.Context(), func(d *Deployment) bool {
		k.Total++
		for _, rr := range d.Results {
			if rr.RecoveryMs > 0 {
				recovery += rr.RecoveryMs
				recoveries++
			}
			for _, st := range rr.Stages {
				if st.EndedAt != nil {
					stageSum[st.Name] += st.EndedAt.Sub(st.StartedAt).Seconds()
					stageN[st.Name]++
				}
			}
		}
		switch d.Status {
		case StatusSuccess:
			k.Successful++
		case StatusRolledBack:
			k.Rollbacks++
		case StatusFailed:
			k.Failed++
		case StatusInProgress:
			k.InProgress++
			return false
		}
		ended++
		total += d.DurationSecs
		return false
	})
	if err != nil {
		httpapi.WriteError(w, storeUnavailable(err))
		return
	}
	if ended > 0 {
		k.SuccessRate = round2(100 * float64(k.Successful) / float64(ended))
		k.RollbackRate = round2(100 * float64(k.Rollbacks) / float64(ended))
		k.AvgDuration = round2(total / float64(ended))
	}
	if recoveries > 0 {
		k.MTTRMs = round2(recovery / float64(recoveries))
	}
	for name, sum := range stageSum {
		k.StageDuration[name] = round2(sum / float64(stageN[name]))
	}
	k.Windows = s.stats.Snapshot()
	httpapi.WriteJSON(w, http.StatusOK, k)
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// CatalogView is the body of GET /catalog: what can be deployed where, and
// which version serves in each region now.
type CatalogView struct {
	Regions  []string               `json:"regions"`
	Services map[string]ServiceView `json:"services"`
}

// ServiceView is one service in GET /catalog.
type ServiceView struct {
	Versions []string          `json:"versions"`
	Serving  map[string]string `json:"serving"` // region → version
}

func (s *Service) handleCatalog(w http.ResponseWriter, r *http.Request) {
	stable, err := s.store.StableAll(r.Context())
	if err != nil {
		httpapi.WriteError(w, storeUnavailable(err))
		return
	}
	v := CatalogView{Regions: s.catalog.RegionNames(), Services: map[string]ServiceView{}}
	for _, name := range s.catalog.ServiceNames() {
		sv := ServiceView{Versions: s.catalog.VersionNames(name), Serving: map[string]string{}}
		for _, region := range v.Regions {
			if ver, ok := stable[lockKey(name, region)]; ok {
				sv.Serving[region] = ver
			}
		}
		v.Services[name] = sv
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}
