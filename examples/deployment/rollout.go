package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

// rollout is one deployment in one region while this process rolls it out. It
// is the Signal's payload: the policy reads it, the rollout moves it. The
// deployment's record is written only by its run, through update.
type rollout struct {
	s                *Service
	service, version string
	region           string
	index            int // the region's place in the deployment's wave
	strategy         string
	firstDeploy      bool
	thresholds       analysis.Thresholds
	limits           map[string]any // thresholds as the analysis rules read them
	stable           string         // the version serving before; set by the policy
	// refusal is the record of the region's refusal by its
	// prerequisites, counted once the refusal is stored (countRefused);
	// set and read by the run alone.
	refusal *tai.Record

	mu  sync.Mutex
	d   *Deployment
	rev uint64
	// revAt is when the record was last read or written at rev; under
	// writeMu.
	revAt time.Time
	// unanswered are the digests of the records this run sent in writes
	// that failed without an answer (a timeout) since its last write
	// answered, the latest maxUnanswered; under writeMu. Such a write may
	// be stored all the same, over rev: see landed.
	unanswered [][sha256.Size]byte
	queued     []func(d *Deployment, rr *RegionResult) // changes stored with the next update
	// writeMu serializes the record's writes (update), which run without
	// mu held.
	writeMu sync.Mutex

	// inbox holds the commands delivered and not yet acted on, in the
	// order sent, under mu. It is bounded without dropping one a person
	// was told was sent: an abort, which ends the run, takes the place of
	// every other, and a promote or a resume the place of one of its
	// kind before it. cmdReady holds a value when one came to read.
	inbox    []Command
	cmdReady chan struct{}
	// held are the resume and the promote read on a line stopped here
	// that were stored after its stop: sent on a line started elsewhere,
	// they wait for the line's next change here (waitForLine), under mu.
	held []Command
	// heldCord is the cord's channel as the first command of held was
	// kept: closed, the line has changed since, and held is read again.
	heldCord <-chan struct{}
	lastCmd  uint64 // the store revision of the last command taken
	failed   chan failure
	stage    int // index of the stage in progress in the plan; -1 before the first
	st       plannedStage
	since    time.Time // when the stage began
	// decided is set once the stage in progress has its verdict: a
	// health sample that answers after it is late (see check).
	decided bool
	paused  bool
	passed  int // conclusive passing samples since the stage began
	// lastFailed is the stage's last failing analysis (reason "" if
	// none): too few in a row for -fail-after, it is why the stage fails
	// at its limit without a passing sample.
	lastFailed failure
	span       trace.Span // the stage's span, for the analyses to note their failures on
}

// later queues a change to be stored with the next update: a stage's
// end goes with the next stage's start, saving a write per stage. A crash
// in between loses nothing a restart needs (it rolls back).
func (r *rollout) later(change func(d *Deployment, rr *RegionResult)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queued = append(r.queued, change)
}

// commandMaxAge is how old a command may be when it reaches a rollout,
// on the clock of the NATS server that stored it (Command.Stored).
const commandMaxAge = time.Hour

// deliver hands a command to the rollout, once: the same command may come
// from the store's watcher and from the read at the start. Commands stored
// over commandMaxAge (an hour) ago are stale and dropped — their age told
// by the NATS server's clock (Command.Stored), never by the time the
// replica that answered gave them (Command.At) against this one's clock:
// replicas' clocks hours apart neither drop a command just sent nor keep
// a stale one. So is a promote or a resume sent to
// another region of the wave: a command stays pending until the
// deployment ends, and a promote of the first region's canary must not
// skip the next region's. The command waits in the inbox until the run
// reads it (nextCommand), however long it is busy elsewhere (starting
// the new version, writing its record) and however many come meanwhile.
func (r *rollout) deliver(c Command) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Seq <= r.lastCmd || !c.Stored.IsZero() && time.Since(c.Stored) > commandMaxAge {
		return
	}
	if c.Action != "abort" && c.Action != "promote" && c.Action != "resume" {
		return // the end of the commands (EndCommands): no command
	}
	if c.Action != "abort" && c.Region != "" && c.Region != r.region {
		return
	}
	r.lastCmd = c.Seq
	switch {
	case c.Action == "abort":
		r.inbox, r.held, r.heldCord = append(r.inbox[:0], c), nil, nil
	case len(r.inbox) > 0 && r.inbox[0].Action == "abort":
		return // an abort is final
	default:
		r.inbox = append(slices.DeleteFunc(r.inbox, func(q Command) bool { return q.Action == c.Action }), c)
	}
	select {
	case r.cmdReady <- struct{}{}:
	default: // the run has not read the one before yet
	}
}

// lastRegion reports whether the run's region is its deployment's last.
func (r *rollout) lastRegion() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index == len(r.d.Results)-1
}

// endsWith is the status the run's deployment ends with once its region
// ends with status, the regions after it skipped (Deployment.endsWith).
func (r *rollout) endsWith(status string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.d.endsWith(r.index, status)
}

// takeAbort takes the abort waiting in the inbox, if one does (it is
// then the inbox's only command).
func (r *rollout) takeAbort() (Command, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inbox) == 0 || r.inbox[0].Action != "abort" {
		return Command{}, false
	}
	c := r.inbox[0]
	r.inbox = r.inbox[:0]
	return c, true
}

// waitForLine keeps c, a resume or a promote read while the line is
// stopped here, for the line's next change (releaseHeld), if it was
// stored after the stop in force here: it was sent on a line started
// since by another replica, which this one has yet to follow, and is not
// dropped. One stored before the stop is (false): the stop came after it.
// A line found started again is one that changed since the caller took
// the cord's channel: c is kept for that change, read at once.
func (r *rollout) waitForLine(c Command) bool {
	cord, changed := r.s.cordNow()
	if cord.Stopped && c.Seq <= cord.Rev {
		return false
	}
	if !cord.Stopped {
		changed = closedCord
	}
	r.mu.Lock()
	if len(r.held) == 0 {
		r.heldCord = changed
	}
	r.held = append(slices.DeleteFunc(r.held, func(h Command) bool { return h.Action == c.Action }), c)
	r.mu.Unlock()
	if lineWaited != nil {
		lineWaited(r)
	}
	return true
}

// closedCord is a closed channel: the cord has changed.
var closedCord = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// lineWaited, when a test sets it, runs as waitForLine has kept a
// command.
var lineWaited func(*rollout)

// releaseHeldOnChange releases the commands held for the line's change
// (waitForLine) if the cord has changed since the first of them was
// held. The caller has just taken the cord's channel: a change that came
// after a command was held but before that closed the channel taken
// before, which no one waits on any more, and the command would be held
// until the line changed again — the rollout paused on a started line,
// or resumed at the next start by a command the stop in between came
// after.
func (r *rollout) releaseHeldOnChange() {
	r.mu.Lock()
	changed := r.heldCord
	r.mu.Unlock()
	if changed == nil {
		return
	}
	select {
	case <-changed:
		r.releaseHeld()
	default:
	}
}

// releaseHeld puts the commands held for the line's change (waitForLine)
// back before the inbox's, at a change of the line: one of a kind that
// came since, or an abort, takes its place.
func (r *rollout) releaseHeld() {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := r.held
	r.held, r.heldCord = nil, nil
	if len(r.inbox) > 0 && r.inbox[0].Action == "abort" {
		return
	}
	held = slices.DeleteFunc(held, func(h Command) bool {
		return slices.ContainsFunc(r.inbox, func(q Command) bool { return q.Action == h.Action })
	})
	if len(held) == 0 {
		return
	}
	r.inbox = append(held, r.inbox...)
	select {
	case r.cmdReady <- struct{}{}:
	default:
	}
}

// nextCommand takes the inbox's first command, once cmdReady said that
// one came; false if none waits.
func (r *rollout) nextCommand() (Command, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inbox) == 0 {
		return Command{}, false
	}
	c := r.inbox[0]
	r.inbox = slices.Delete(r.inbox, 0, 1)
	if len(r.inbox) > 0 {
		select {
		case r.cmdReady <- struct{}{}:
		default:
		}
	}
	return c, true
}

// failure is a health analysis that failed, with when it was sampled.
type failure struct {
	reason string
	at     time.Time
}

// errRolledBack is the rollout's error when it rolled back: the pipeline
// counts the signal as failed.
type errRolledBack struct{ reason string }

func (e *errRolledBack) Error() string { return "rolled back: " + e.reason }

// update changes the run's record and stores it, with the changes queued
// by later before it. The run is the record's only writer while it runs,
// so a conflict means a replica took the deployment over (its lease
// lapsed): this run stops.
func (r *rollout) update(ctx context.Context, change func(d *Deployment, rr *RegionResult)) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	for _, c := range r.queued {
		c(r.d, &r.d.Results[r.index])
	}
	r.queued = r.queued[:0]
	change(r.d, &r.d.Results[r.index])
	r.mu.Unlock()
	// The record is written without holding r.mu: the health checks
	// record their samples under it, and a write may wait seconds for a
	// store that is electing a leader.
	rev, err := r.store(ctx)
	if err != nil {
		return fmt.Errorf("store deployment %s: %w", r.d.ID, err)
	}
	r.rev, r.revAt = rev, time.Now()
	r.s.notifyBoard()
	return nil
}

// stillOurs returns errMovedOn when the record has moved on from the
// revision this run last read or wrote: another consumer took the job up
// (its lease lapsed while this process was cut off from NATS, or stalled)
// and rolled the region back. A run asks before a move of the fleet that
// follows a wait, so that it stops rather than send traffic to a version
// rolled back. Within recheckAfter of the run's last read or write of the
// record it goes on without reading: a lease lapses only after its holder
// has been silent for the queue's AckWait (-rollout-lease, 3 s at the
// least), and the read costs as
// much as a write in a rollout with no bake. A server behind answers an
// earlier revision, which passes, as a write just before the other run's
// would; a record that holds a write of this run given up unanswered,
// stored after all, is the run's own (see landed). The read is retried
// as a write is while the store is out of reach.
func (r *rollout) stillOurs(ctx context.Context) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if time.Since(r.revAt) < recheckAfter {
		return nil
	}
	var e jetstream.KeyValueEntry
	err := svc.Retry(ctx, r.s.log, storeRetryFor, "reading the deployment record", []any{"deployment_id", r.d.ID}, func(ctx context.Context) (err error) {
		e, err = r.s.store.entry(ctx, r.d.ID)
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("deployment %s: record gone: %w", r.d.ID, errMovedOn)
	case err != nil:
		return fmt.Errorf("read deployment %s: %w", r.d.ID, err)
	case e.Revision() > r.rev && !r.landed(e):
		return fmt.Errorf("deployment %s at revision %d, written at %d here: %w", r.d.ID, e.Revision(), r.rev, errMovedOn)
	}
	r.revAt = time.Now()
	return nil
}

// movedOn returns errMovedOn when a successful read finds the record
// moved on from the revision this run last read or wrote: another run took the region up and ended it, and a new deployment may
// have begun there since. A rollback asks before it moves the fleet, so
// that a stale run does not take the traffic off a new deployment's
// canary or retire a version that now serves. Unlike stillOurs it reads
// once, for at most movedOnReadFor, and a read that fails (or finds no
// record: a server behind may answer so) counts as not moved on: the
// rollback of a failing version goes on rather than wait for the store,
// and at worst repeats the other run's. Within recheckAfter of the run's
// last read or write it reads nothing, and a record that holds a write of
// this run stored after it was given up is the run's own (see
// stillOurs).
func (r *rollout) movedOn(ctx context.Context) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if time.Since(r.revAt) < recheckAfter {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, movedOnReadFor)
	defer cancel()
	e, err := r.s.store.entry(ctx, r.d.ID)
	if err != nil {
		r.s.log.Warn("deployment record not read before the rollback; rolling back", "deployment_id", r.d.ID, "region", r.region, "err", err)
		return nil
	}
	if e.Revision() > r.rev && !r.landed(e) {
		return fmt.Errorf("deployment %s at revision %d, written at %d here: %w", r.d.ID, e.Revision(), r.rev, errMovedOn)
	}
	r.revAt = time.Now()
	return nil
}

// recheckAfter is how long after reading or writing its record a rollout
// moves the fleet without reading it again (stillOurs, movedOn).
const recheckAfter = time.Second

// movedOnReadFor bounds the read of a rollback's movedOn: a rollback does
// not wait for a store out of reach.
const movedOnReadFor = 2 * time.Second

// storeRetryFor bounds how long a rollout retries a write (its record,
// the stable version) while the store is out of reach: a NATS node lost
// and the bucket's group electing a new leader takes seconds.
const storeRetryFor = 30 * time.Second

// storeTryFor bounds how long one try of retryStore waits for the store's
// answer, twice what the NATS client waits for a request's by default.
const storeTryFor = 10 * time.Second

// store writes r.d over revision r.rev, retried by retryStore while the
// store is out of reach: giving up fails the job, whose redelivery finds
// the region in progress and rolls it back as cut off by a restart. A
// write that failed unanswered (timed out) may have landed, in this call
// or in one given up before: when a try is refused with the revision
// moved on, the record is read back, and if it holds one of those writes
// (landed) its revision is taken and what changed since is written over
// it. The health checks add samples to the record between the tries, so
// that the write that landed need not be the last sent.
func (r *rollout) store(ctx context.Context) (uint64, error) {
	var rev uint64
	err := r.s.retryStore(ctx, "deployment record", []any{"deployment_id", r.d.ID}, func(ctx context.Context) error {
		for {
			r.mu.Lock()
			b, err := json.Marshal(r.d)
			r.mu.Unlock()
			if err != nil {
				return err
			}
			if rev, err = r.s.store.UpdateRaw(ctx, r.d.ID, b, r.rev); err == nil {
				r.unanswered = r.unanswered[:0]
				return nil
			}
			if !isConflict(err) {
				r.sentUnanswered(b)
				return err
			}
			if len(r.unanswered) == 0 {
				return err // another run wrote the record
			}
			if e, gerr := r.s.store.entry(ctx, r.d.ID); gerr != nil || !r.landed(e) {
				return err
			}
		}
	})
	return rev, err
}

// sentUnanswered notes record b as sent in a write that failed without
// an answer: it may be stored all the same. Under writeMu.
func (r *rollout) sentUnanswered(b []byte) {
	if len(r.unanswered) == maxUnanswered {
		r.unanswered = slices.Delete(r.unanswered, 0, 1)
	}
	r.unanswered = append(r.unanswered, sha256.Sum256(b))
}

// landed reports whether e, the record as read, is at a revision past
// r.rev and holds a record this run sent in a write that failed
// unanswered (sentUnanswered): that write was stored after all, not
// another run's, and its revision becomes the run's. Every such write was
// sent over r.rev, so that no other of them can be stored since. Under
// writeMu.
func (r *rollout) landed(e jetstream.KeyValueEntry) bool {
	if e.Revision() <= r.rev || len(r.unanswered) == 0 || !slices.Contains(r.unanswered, sha256.Sum256(e.Value())) {
		return false
	}
	r.rev, r.revAt, r.unanswered = e.Revision(), time.Now(), r.unanswered[:0]
	return true
}

// maxUnanswered bounds the writes failed unanswered a rollout keeps the
// digests of (sentUnanswered); a write older than these, stored after
// all, counts as another run's: the run stops, and the region is rolled
// back when its job is delivered again.
const maxUnanswered = 64

// retryStore calls write until it succeeds or fails for a reason other
// than the store being out of reach, for storeRetryFor (svc.Retry): a
// NATS node lost and a bucket's group electing a new leader takes
// seconds. A rollout's writes go through it, the record's and the stable
// version's, so that a lost node does not fail the job and roll the
// region back as if the service had restarted. Each try waits for its
// answer for storeTryFor at most: a write whose answer was lost (stored
// or not) is waited for as long as its context lets it, which would leave
// no time to try again.
func (s *Service) retryStore(ctx context.Context, what string, attrs []any, write func(context.Context) error) error {
	try := cmp.Or(s.cfg.StoreTryFor, storeTryFor)
	return svc.Retry(ctx, s.log, storeRetryFor, "storing the "+what, attrs, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, try)
		defer cancel()
		return write(ctx)
	})
}

// plannedStage is a step of a rollout: the share of traffic on the new
// version and how long it bakes there.
type plannedStage struct {
	name    string
	percent float64
	bake    time.Duration
}

// plan is what each strategy does in the region:
//   - canary: the configured stages (5% → 25% → 100% by default), each
//     baked under analysis;
//   - blue-green: the new ("green") set takes no traffic while it is
//     analysed for the first stage's bake, then all traffic switches at
//     once and is watched for the last stage's bake;
//   - rolling: the instances are replaced in batches of a quarter, each
//     batch's share of traffic analysed for one health interval.
func (s *Service) plan(strategy, service string) []plannedStage {
	stages := s.cfg.Stages
	switch strategy {
	case BlueGreen:
		return []plannedStage{
			{"preview", 0, stages[0].Bake},
			{"switch", 100, stages[len(stages)-1].Bake},
		}
	case Rolling:
		n := max(s.catalog.Instances(service), 1)
		batch := max((n+3)/4, 1)
		var out []plannedStage
		for done, i := 0, 1; done < n; i++ {
			done = min(done+batch, n)
			pct := math.Round(float64(done)/float64(n)*10000) / 100
			out = append(out, plannedStage{fmt.Sprintf("batch-%d", i), pct, s.cfg.Interval})
		}
		return out
	}
	out := make([]plannedStage, len(stages))
	for i, st := range stages {
		out[i] = plannedStage{st.Name, st.Percent, st.Bake}
	}
	return out
}

// rollOut is the pipeline's action: the new version is started, traffic
// moves to it stage by stage while a watchdog samples its health, and a
// failed analysis, an abort or a lost run sends the traffic back.
func (s *Service) rollOut(ctx context.Context, sig tai.Signal[*rollout]) (string, error) {
	r := sig.Payload
	plan := s.plan(r.strategy, r.service)
	now := time.Now().UTC()
	r.later(func(d *Deployment, rr *RegionResult) {
		d.StagesCompleted = appendOnce(d.StagesCompleted, d.stageName(r.region, "validation"))
		rr.Status, rr.Previous, rr.StartedAt = StatusInProgress, r.stable, &now
	})
	s.auditEvent(r, "validation", tai.Succeeded, "prerequisites passed", 0)
	// An abort that came while the prerequisites were judged ends the
	// region here, before the new version starts or takes any traffic.
	if aborted, err := r.abortedEarly(ctx); aborted {
		return "", err
	}
	// A run whose job another consumer took up while the prerequisites
	// were judged stops here, before it makes sure of the version
	// serving: the other may have rolled the region out and retired that
	// version, which ensureStable would start again and send all traffic
	// to. Within recheckAfter of the job's start this reads nothing.
	if err := r.stillOurs(ctx); err != nil {
		return "", err
	}
	if err := r.ensureStable(ctx); err != nil {
		return "", err
	}
	// A run whose job another consumer took up meanwhile stops here,
	// before the new version starts (see the stages below).
	if err := r.stillOurs(ctx); err != nil {
		return "", err
	}
	// So does one aborted meanwhile: starting the version serving may
	// take as long as starting the new one.
	if aborted, err := r.abortedEarly(ctx); aborted {
		return "", err
	}
	if err := s.target.Deploy(ctx, r.service, r.region, r.version, s.catalog.Instances(r.service)); err != nil {
		return "", r.rolledBack(ctx, fmt.Sprintf("Deploy of %s %s failed: %v", r.service, r.version, err), time.Time{})
	}
	if s.local != nil {
		if url, ok := s.local.ProxyURL(r.service, r.region); ok {
			if err := r.update(ctx, func(_ *Deployment, rr *RegionResult) { rr.ProxyURL = url }); err != nil {
				return "", err
			}
		}
	}

	// The Ramp holds the traffic share of the stages that take traffic;
	// blue-green's preview holds none.
	var rampStages []heijunka.RampStage
	for _, st := range plan {
		if st.percent > 0 {
			rampStages = append(rampStages, heijunka.RampStage{Name: st.name, Percent: st.percent})
		}
	}
	ramp, err := heijunka.NewRamp(heijunka.RampOptions{Name: r.d.ID + "/" + r.region, Stages: rampStages, Salt: r.d.ID})
	if err != nil {
		return "", err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	wd, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{
		Name:     "health " + r.service + "/" + r.region,
		Check:    r.check,
		Interval: s.cfg.Interval,
		// The watchdog counts a check that outlives its Timeout as failed,
		// whatever it returns: check bounds its sample itself, at half
		// of it, so that a health source that does not answer in time
		// makes the sample inconclusive, as one that answers with an
		// error does, rather than roll the deployment back.
		Timeout:      2 * s.sampleTimeout(),
		FailAfter:    s.cfg.FailAfter,
		RecoverAfter: 1,
		OnFail: func(_ context.Context, ev jidoka.WatchdogEvent) {
			select {
			case r.failed <- failure{reason: errText(ev.Err), at: time.Now()}:
			default:
			}
		},
		Logger: s.log,
	})
	if err != nil {
		return "", err
	}
	if err := wd.Start(wctx); err != nil {
		return "", err
	}
	defer func() { _ = wd.Shutdown(context.WithoutCancel(ctx)) }()

	// A rollout that comes to start on a stopped line (queued when the
	// cord was pulled) moves no traffic until a person resumes it.
	switch verdict, reason := r.holdStart(ctx); verdict {
	case "interrupted":
		return "", r.heldForShutdown(ctx)
	case "aborted":
		return "", r.rolledBack(ctx, "Aborted: "+reason, time.Time{})
	case movedOnVerdict:
		return "", fmt.Errorf("%s: %w", reason, errMovedOn)
	}

	rampAt := -1
	var verdict, reason string // the last stage's
	for i, st := range plan {
		// No stage starts once the service is shutting down: no more
		// traffic moves to the new version.
		if s.stopping() {
			return "", r.heldForShutdown(ctx)
		}
		// An abort that came while the run read no command (it started
		// the new version, or stored the stage before's end) ends the
		// region here, before more traffic moves to the new version.
		if c, ok := r.takeAbort(); ok {
			_ = ramp.Rollback(c.Reason)
			return "", r.rolledBack(ctx, "Aborted: "+c.Reason, time.Time{})
		}
		if st.percent > 0 {
			if rampAt >= 0 {
				if err := ramp.Advance(); err != nil {
					return "", err
				}
			}
			rampAt++
		}
		// A run whose job another consumer took up while the stage
		// before baked finds here that the region was rolled back, and
		// stops before it sends traffic to the version rolled back; one
		// taken up while it started the new version (which may take
		// minutes) or was held at its start finds that the other rolled
		// the region out and retired the version before, which the
		// first stage's route would send the rest of the traffic to.
		if err := r.stillOurs(ctx); err != nil {
			return "", err
		}
		if err := s.target.Route(ctx, r.service, r.region, r.stable, r.version, st.percent); err != nil {
			return "", r.rolledBack(ctx, fmt.Sprintf("Routing %v%% to %s failed: %v", st.percent, r.version, err), time.Time{})
		}
		start := time.Now()
		r.mu.Lock()
		r.stage, r.st, r.since, r.passed, r.lastFailed, r.decided = i, st, start, 0, failure{}, false
		r.mu.Unlock()
		if err := r.update(ctx, func(d *Deployment, rr *RegionResult) {
			rr.Stage, rr.Percent = st.name, st.percent
			rr.Stages = append(rr.Stages, StageResult{Name: st.name, Percent: st.percent, StartedAt: start.UTC(), Samples: []HealthSample{}})
		}); err != nil {
			return "", err
		}
		s.auditEvent(r, st.name+".start", tai.Succeeded, fmt.Sprintf("%v%% of traffic on %s", st.percent, r.version), 0)
		_, span := s.startSpan(ctx, "stage "+st.name, attribute.String("deployment.id", r.d.ID), attribute.String("deployment.region", r.region), attribute.Float64("deployment.traffic_percent", st.percent))
		r.mu.Lock()
		r.span = span
		r.mu.Unlock()
		var at time.Time
		verdict, reason, at = r.bake(ctx, st)
		r.mu.Lock()
		r.decided = true
		r.mu.Unlock()
		span.SetAttributes(attribute.String("deployment.verdict", verdict))
		if verdict == "failed" || verdict == "aborted" {
			span.SetStatus(codes.Error, reason)
		}
		span.End()
		switch verdict {
		case "interrupted":
			return "", r.heldForShutdown(ctx)
		case movedOnVerdict:
			return "", fmt.Errorf("%s: %w", reason, errMovedOn)
		}
		end := time.Now()
		s.metrics.stage.WithLabelValues(r.strategy, st.name, verdict).Observe(end.Sub(start).Seconds())
		r.later(func(d *Deployment, rr *RegionResult) {
			sr := &rr.Stages[len(rr.Stages)-1]
			sr.EndedAt, sr.Verdict, sr.Reason = utc(end), verdict, reason
			if verdict == "passed" || verdict == "promoted" {
				d.StagesCompleted = append(d.StagesCompleted, d.stageName(r.region, st.name))
			}
		})
		outcome := tai.Succeeded
		if verdict == "failed" || verdict == "aborted" {
			outcome = tai.Failed
		}
		s.auditEvent(r, st.name+".end", outcome, verdict+": "+reason, end.Sub(start))
		switch verdict {
		case "failed":
			_ = ramp.Rollback(reason)
			return "", r.rolledBack(ctx, reason, at)
		case "aborted":
			_ = ramp.Rollback(reason)
			return "", r.rolledBack(ctx, "Aborted: "+reason, time.Time{})
		}
	}

	// Every stage passed. A run whose region another consumer rolled
	// back meanwhile stops here, before it records its version as the
	// one serving (see above).
	if err := r.stillOurs(ctx); err != nil {
		return "", err
	}
	// The last region's last stage passed: the deployment ends with the
	// region. Its commands are closed first, in the store, before the
	// version is recorded serving: an abort stored before wins, and the
	// region is rolled back; one sent after is refused as too late
	// (ErrSucceeded), not taken and then ignored while the deployment
	// ends SUCCESS. A wave that went on past a region that failed
	// (continue_on_failure) ends FAILED or ROLLED_BACK all the same, and
	// its commands are closed with that status: one sent after is refused
	// as one sent to a deployment that has ended so (ErrEnded), not as
	// one to a deployment that succeeded. The closure names the region and
	// its last stage's verdict: should the region's success not be stored
	// after it, the job's next attempt stores it (see recoverRegion),
	// rather than roll back a region whose commands were closed to end
	// SUCCESS.
	if r.lastRegion() {
		var c Command
		var aborted bool
		var rev uint64
		end := Command{Status: r.endsWith(StatusSuccess), Region: r.region, Stage: plan[len(plan)-1].name, Verdict: verdict, Reason: reason}
		if err := s.retryStore(ctx, "end of the commands", []any{"deployment_id", r.d.ID, "region", r.region}, func(ctx context.Context) (err error) {
			c, aborted, rev, err = s.store.EndCommands(ctx, r.d.ID, end)
			return err
		}); err != nil {
			return "", err
		}
		r.mu.Lock()
		r.lastCmd = max(r.lastCmd, c.Seq, rev) // taken: dropped at the deployment's end
		r.mu.Unlock()
		if aborted {
			_ = ramp.Rollback(c.Reason)
			return "", r.rolledBack(ctx, "Aborted: "+c.Reason, time.Time{})
		}
	}
	if err := r.succeed(ctx); err != nil {
		return "", err
	}
	return StatusSuccess, nil
}

// succeed stores the success of a region whose stages have all passed:
// its version is recorded as the one serving, then the region's success
// (with the changes queued by later), and the version before is retired.
// A write refused as a conflict is another consumer's: one that rolled
// the region back after the write before, and the version serving is put
// back to the one the traffic went back to, unless that consumer stored
// the region's success itself (a job delivered again whose region's
// success was decided: see recoverRegion).
func (r *rollout) succeed(ctx context.Context) error {
	s := r.s
	if err := s.retryStore(ctx, "stable version", []any{"deployment_id", r.d.ID, "region", r.region}, func(ctx context.Context) error {
		return s.store.SetStable(ctx, r.service, r.region, r.version)
	}); err != nil {
		return err
	}
	done := time.Now().UTC()
	if err := r.update(ctx, func(d *Deployment, rr *RegionResult) {
		rr.Status, rr.Stage, rr.Percent, rr.CompletedAt = StatusSuccess, "", 100, rr.endedAt(done)
	}); err != nil {
		if isConflict(err) {
			ctx := context.WithoutCancel(ctx)
			if d, _, gerr := s.store.Get(ctx, r.d.ID); gerr == nil && d.Results[r.index].Status == StatusSuccess {
				return err
			}
			if rerr := s.store.RestoreStable(ctx, r.service, r.region, r.version, r.stable); rerr != nil {
				s.log.Error("version serving not put back after the region was rolled back", "deployment_id", r.d.ID, "region", r.region, "err", rerr)
			}
		}
		return err
	}
	// The new version serves alone. The old one is retired once the
	// region's success is stored, not before: until then another
	// consumer may roll the region back to it.
	s.retireOld(ctx, r.service, r.region, r.stable)
	return nil
}

// retireOld retires the version that served before a region's rollout
// succeeded, if there was one; a failure is logged, as the new version
// serves all the same.
func (s *Service) retireOld(ctx context.Context, service, region, old string) {
	if old == "" {
		return
	}
	if err := s.target.Retire(ctx, service, region, old); err != nil {
		s.log.Warn("old version not retired", "service", service, "region", region, "version", old, "err", err)
	}
}

// heldForShutdown keeps a rollout the service's shutdown stopped until
// ctx ends at the consumer's drain deadline, and returns ctx's error: the
// consumer then releases the rollout's message, and the next start (or
// another replica) takes it up. Returned before ctx ends, the error would
// count as a failed attempt, retried while the consumer still runs.
func (r *rollout) heldForShutdown(ctx context.Context) error {
	<-ctx.Done()
	r.mu.Lock()
	stage := r.st.name
	r.mu.Unlock()
	r.s.log.Warn("rollout cut off by the shutdown; the next start takes it up", "deployment_id", r.d.ID, "region", r.region, "stage", nameOr(stage, "start"))
	return ctx.Err()
}

// bake holds a stage for its bake time while the watchdog samples health.
// It ends with passed (the bake is over and at least one sample passed),
// failed (the analysis failed: at says when it was sampled; zero when the
// stage failed for want of health data, no sample failing), aborted,
// promoted, interrupted (ctx ended: the process stops, and the
// deployment is taken up again after a restart), or moved on (a pause or
// a resume not stored over another run's write: see setPaused). While
// paused (the cord) the bake's clock stops and the traffic share is
// held. Once the service is shutting down the stage holds as when paused,
// and neither passes nor is promoted, so that no next stage starts; a
// failed analysis or an abort still rolls back.
func (r *rollout) bake(ctx context.Context, st plannedStage) (verdict, reason string, at time.Time) {
	left := st.bake
	// A stage needs a passing sample of its own; without enough traffic
	// data it waits up to its bake again (ten intervals, and a second, at
	// least) beyond its bake before it fails.
	noDataLimit := max(10*r.s.cfg.Interval, st.bake, time.Second)
	for {
		// The cord's channel is taken before the line is read: a change
		// between the two closes it, where one taken after the read would
		// miss that change and leave the stage baking on a stopped line.
		cord := r.s.cordChanged()
		r.releaseHeldOnChange()
		r.mu.Lock()
		paused := r.paused
		r.mu.Unlock()
		if !paused && r.s.line.Admit(ctx, "") != nil {
			if err := r.setPaused(ctx, true); err != nil {
				return movedOnVerdict, err.Error(), time.Time{}
			}
			paused = true
		}
		stopping := r.s.stopping()
		held := paused || stopping
		var shutdown <-chan struct{}
		if !stopping {
			shutdown = r.s.closing
		}
		var tick <-chan time.Time
		var t *time.Timer
		began := time.Now()
		if !held {
			wait := left
			if wait <= 0 {
				wait = r.s.cfg.Interval / 4
			}
			t = time.NewTimer(wait)
			tick = t.C
		}
		select {
		case <-ctx.Done():
			stopTimer(t)
			return "interrupted", "", time.Time{}
		case f := <-r.failed:
			stopTimer(t)
			return "failed", f.reason, f.at
		case <-shutdown:
			stopTimer(t)
			if !held {
				left -= time.Since(began)
			}
		case <-r.cmdReady:
			stopTimer(t)
			if !held {
				left -= time.Since(began)
			}
			c, ok := r.nextCommand()
			if !ok {
				continue
			}
			switch c.Action {
			case "abort":
				return "aborted", c.Reason, time.Time{}
			case "promote":
				if c.Stage == "" {
					// Sent for the pause before the first stage, and
					// read once that pause had ended (a second promote,
					// or a resume, came before it): it ends a pause as
					// a resume does, not a bake no one has seen.
					if r.s.line.Admit(ctx, "") == nil {
						if err := r.setPaused(ctx, false); err != nil {
							return movedOnVerdict, err.Error(), time.Time{}
						}
					} else {
						r.waitForLine(c)
					}
					continue
				}
				if c.Stage != st.name {
					// Sent for a stage that has passed since: the
					// person saw that stage, not this one.
					r.s.log.Info("promote of a stage that has ended is dropped", "deployment_id", r.d.ID, "region", r.region, "sent_for", c.Stage, "stage", st.name)
					continue
				}
				if f, ok := r.failedNow(); ok {
					return "failed", f.reason, f.at
				}
				if stopping {
					continue
				}
				if r.s.line.Admit(ctx, "") != nil {
					r.waitForLine(c)
					continue
				}
				if err := r.setPaused(ctx, false); err != nil {
					return movedOnVerdict, err.Error(), time.Time{}
				}
				return "promoted", "promoted by a person", time.Time{}
			case "resume":
				if r.s.line.Admit(ctx, "") != nil {
					r.waitForLine(c)
				} else if err := r.setPaused(ctx, false); err != nil {
					return movedOnVerdict, err.Error(), time.Time{}
				}
			}
		case <-cord:
			r.releaseHeld()
			stopTimer(t)
			if !held {
				left -= time.Since(began)
			}
		case <-tick:
			left -= time.Since(began)
			if left > 0 {
				continue
			}
			r.mu.Lock()
			passed, lastFailed := r.passed, r.lastFailed
			// Decided with the samples read: one that answers from now
			// on is late, and neither joins the stage nor fails it.
			r.decided = passed > 0
			r.mu.Unlock()
			if passed > 0 {
				if f, ok := r.failedNow(); ok {
					return "failed", f.reason, f.at
				}
				return "passed", samplesPassed(passed), time.Time{}
			}
			// Past its bake (left is negative by as much) without a
			// passing sample yet.
			if -left > noDataLimit {
				if lastFailed.reason != "" {
					return "failed", lastFailed.reason, lastFailed.at
				}
				// No sample failed: there is no failing sample to time
				// the recovery from (recovery_ms, mttr_ms).
				return "failed", fmt.Sprintf("No health data for %s %s at %s", r.service, r.version, st.name), time.Time{}
			}
		}
	}
}

// failedNow returns the failed analysis waiting, if one is. A stage is
// not passed nor promoted over one: select picks at random among the
// cases ready, and a failure that came with the bake's end or a promote
// would otherwise make a failing version the one serving.
func (r *rollout) failedNow() (failure, bool) {
	select {
	case f := <-r.failed:
		return f, true
	default:
		return failure{}, false
	}
}

// holdStart keeps a rollout from its first stage while the line is
// stopped: it pauses, as a running rollout does at the cord, until a
// resume (or a promote) on a started line lets it go on (verdict ""), an
// abort ends it, or ctx ends (interrupted). The new version's health is
// not judged meanwhile: no stage has begun, and check passes until one
// does, so that no failed analysis ends the hold.
func (r *rollout) holdStart(ctx context.Context) (verdict, reason string) {
	for {
		cord := r.s.cordChanged()
		r.releaseHeldOnChange()
		r.mu.Lock()
		paused := r.paused
		r.mu.Unlock()
		if !paused {
			if r.s.line.Admit(ctx, "") == nil {
				return "", ""
			}
			if err := r.setPaused(ctx, true); err != nil {
				return movedOnVerdict, err.Error()
			}
		}
		select {
		case <-ctx.Done():
			return "interrupted", ""
		case <-r.cmdReady:
			c, ok := r.nextCommand()
			if !ok {
				continue
			}
			switch c.Action {
			case "abort":
				return "aborted", c.Reason
			case "promote", "resume":
				if r.s.line.Admit(ctx, "") != nil {
					r.waitForLine(c)
				} else if err := r.setPaused(ctx, false); err != nil {
					return movedOnVerdict, err.Error()
				}
			}
		case <-cord:
			r.releaseHeld()
		}
	}
}

// samplesPassed is a passed stage's reason: "1 health sample passed",
// "3 health samples passed".
func samplesPassed(n int) string {
	if n == 1 {
		return "1 health sample passed"
	}
	return fmt.Sprintf("%d health samples passed", n)
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// setPaused pauses or resumes the run and records it. A write refused
// as a conflict means that another consumer took the job up and wrote the
// record (see update): the run is no longer the region's, and setPaused
// returns the error for it to stop at once (movedOnVerdict), rather than
// hold a stage, or bake one, for a deployment another run has ended. A
// write that fails otherwise (the store out of reach) is logged, and the
// run goes on, paused or not, as the line says.
func (r *rollout) setPaused(ctx context.Context, p bool) error {
	r.mu.Lock()
	changed := r.paused != p
	r.paused = p
	r.mu.Unlock()
	if !changed {
		return nil
	}
	what := "resumed"
	if p {
		what = "paused"
	}
	if err := r.update(ctx, func(d *Deployment, _ *RegionResult) { d.Paused = p }); err != nil {
		if isConflict(err) {
			return fmt.Errorf("not %s: %w", what, err)
		}
		r.s.log.Warn("pause not stored", "deployment_id", r.d.ID, "err", err)
	}
	r.s.auditEvent(r, what, tai.Succeeded, what, 0)
	return nil
}

// movedOnVerdict is the verdict of a bake, or of a hold at the start,
// whose run found its record moved on when it stored a pause or a resume
// (setPaused): its reason is the write's error.
const movedOnVerdict = "moved on"

// check is the watchdog's probe: one health sample of the new version,
// analysed. No data is inconclusive and passes the probe, and so does a
// sample the health source fails to give, with an error or by not
// answering within sampleTimeout; a reading the source gives that cannot
// be a measurement (fleet.ErrNotAMeasurement) fails. The sample
// covers the stage so far (at least a second, at most five minutes), so
// a small traffic share is judged on all its requests, not on the last
// interval's few. Before the first stage begins (a rollout held on a
// stopped line) there is nothing to judge, and the probe passes: its
// window would have covered five minutes of a stage that never ran.
func (r *rollout) check(ctx context.Context) error {
	r.mu.Lock()
	if r.since.IsZero() {
		r.mu.Unlock()
		return nil
	}
	window := r.s.sampleWindow(time.Since(r.since))
	stage := r.stage
	parent := r.span
	r.mu.Unlock()
	// Each analysis is a span of its stage's, with its verdict and figures.
	// One the watchdog takes as the first stage begins, before its span is
	// open, has no span (a no-op one).
	aspan := trace.SpanFromContext(context.Background())
	if parent != nil {
		ctx, aspan = r.s.startSpan(trace.ContextWithSpan(ctx, parent), "analysis", attribute.String("deployment.id", r.d.ID), attribute.String("deployment.region", r.region))
	}
	defer aspan.End()
	sctx, cancel := context.WithTimeout(ctx, r.s.sampleTimeout())
	sample, err := r.s.health.Sample(sctx, r.service, r.region, r.version, window)
	cancel()
	sampled := time.Now()
	hs := HealthSample{Time: sampled.UTC()}
	switch {
	case errors.Is(err, fleet.ErrNoData):
		hs.Verdict, hs.Reason = "inconclusive", "no data"
	case errors.Is(err, fleet.ErrNotAMeasurement):
		// The source answered, with a reading no healthy version gives:
		// it fails, as a NaN reading does, rather than count as a sample
		// not given.
		hs.Verdict, hs.Reason = "failed", err.Error()
	case err != nil:
		hs.Verdict, hs.Reason = "inconclusive", err.Error()
	case invalidRequests(sample) != "":
		hs.Requests, hs.ErrorRate, hs.CPU, hs.Memory = sample.Requests, sample.ErrorRate, sample.CPU, sample.Memory
		hs.P99Ms = float64(sample.P99) / float64(time.Millisecond)
		hs.Verdict, hs.Reason = "failed", invalidRequests(sample)
	case sample.Requests < r.s.cfg.MinRequests:
		hs.Requests = sample.Requests
		// Whole requests, rounded down: 9.6 rounded would read "10
		// requests, fewer than 10".
		hs.Verdict, hs.Reason = "inconclusive", fmt.Sprintf("%.0f requests, fewer than %s", math.Floor(sample.Requests), strconv.FormatFloat(r.s.cfg.MinRequests, 'f', -1, 64))
	default:
		hs.Requests, hs.ErrorRate, hs.CPU, hs.Memory = sample.Requests, sample.ErrorRate, sample.CPU, sample.Memory
		hs.P99Ms = float64(sample.P99) / float64(time.Millisecond)
		j, err := r.s.analyze(ctx, sample, r)
		if err != nil {
			// Rules that cannot judge stop the rollout, as a reading that
			// cannot be a measurement does.
			j = judgement{reason: "Analysis rules failed: " + err.Error()}
		}
		hs.Verdict = "passed"
		if !j.passed {
			hs.Verdict, hs.Reason = "failed", j.reason
		}
		for _, c := range j.checks {
			r.s.metrics.analysis.WithLabelValues(c, passFail(!slices.Contains(j.failed, c))).Inc()
		}
	}
	r.mu.Lock()
	// A sample begun in a stage that has had its verdict since (the
	// stage passed, was promoted or failed, and the next may have begun)
	// is late: it speaks for a stage decided without it, so it is not
	// added to that stage's record, counted for the stage in progress,
	// nor taken as a failure of it.
	if r.stage != stage || r.decided {
		r.mu.Unlock()
		aspan.SetAttributes(attribute.String("deployment.analysis.verdict", hs.Verdict), attribute.Bool("deployment.analysis.late", true))
		r.s.log.Info("health sample answered after its stage ended; left out", "deployment_id", r.d.ID, "region", r.region, "verdict", hs.Verdict, "reason", hs.Reason)
		return nil
	}
	if hs.Verdict == "passed" {
		r.passed++
	}
	if hs.Verdict == "failed" {
		r.lastFailed = failure{reason: hs.Reason, at: sampled}
	}
	// A sample without readings (the source's error) keeps the error
	// rate measured last.
	if hs.Verdict != "inconclusive" && err == nil {
		r.s.metrics.errorRate.WithLabelValues(r.service, r.region, r.version).Set(hs.ErrorRate)
		r.s.rollouts.setErrorRate(r.d.ID+"/"+r.region, hs.ErrorRate)
	}
	aspan.SetAttributes(attribute.String("deployment.analysis.verdict", hs.Verdict),
		attribute.Float64("deployment.analysis.requests", hs.Requests), attribute.Float64("deployment.analysis.error_rate", hs.ErrorRate),
		attribute.Float64("deployment.analysis.p99_ms", hs.P99Ms), attribute.Float64("deployment.analysis.cpu", hs.CPU),
		attribute.Float64("deployment.analysis.memory", hs.Memory))
	if hs.Verdict == "failed" {
		aspan.SetStatus(codes.Error, hs.Reason)
	}
	overdue := 0.0
	if r.st.bake > 0 {
		overdue = float64(time.Since(r.since)) / float64(r.st.bake)
	}
	canary := r.strategy == Canary && r.stage == 0
	if canary {
		r.s.metrics.overdue.WithLabelValues(r.service, r.region, r.st.name).Set(overdue)
	} else {
		// The canary's stage has passed: its ratio goes, as it goes from
		// the rule in the process (setOverdue), rather than hold the
		// exported rule at its last value through the stages after it.
		r.s.metrics.overdue.DeletePartialMatch(map[string]string{"service": r.service, "region": r.region})
	}
	r.s.rollouts.setOverdue(r.d.ID+"/"+r.region, overdue, canary)
	rr := &r.d.Results[r.index]
	if n := len(rr.Stages); n > 0 {
		st := &rr.Stages[n-1]
		st.Samples = append(st.Samples, hs)
		if len(st.Samples) > maxSamplesKept {
			st.Samples = st.Samples[len(st.Samples)-maxSamplesKept:]
		}
	}
	r.mu.Unlock()
	r.s.notifyBoard()
	if hs.Verdict == "failed" {
		r.mu.Lock()
		span := r.span
		r.mu.Unlock()
		if span != nil {
			span.AddEvent("analysis failed", trace.WithAttributes(attribute.String("deployment.reason", hs.Reason)))
		}
		r.s.auditEvent(r, "analysis", tai.Failed, hs.Reason, 0)
		return errors.New(hs.Reason)
	}
	if err != nil && !errors.Is(err, fleet.ErrNoData) && ctx.Err() == nil {
		r.s.log.Warn("health sample failed", "deployment_id", r.d.ID, "region", r.region, "err", err)
	}
	return nil
}

// sampleWindow is how far back a health sample reaches, in a stage
// baked this long so far: the stage so far, at least a health interval and
// a second, at most five minutes. The prerequisite region_health reads the
// version serving as a stage's first sample is read (sampleWindow(0)), so
// that a health interval under a second does not leave it too few
// requests to judge.
func (s *Service) sampleWindow(inStage time.Duration) time.Duration {
	return min(max(inStage, s.cfg.Interval, time.Second), 5*time.Minute)
}

// sampleTimeout bounds a rollout's health sample: a health interval, a
// second at least. A sample the health source has not answered by then is
// inconclusive (see check).
func (s *Service) sampleTimeout() time.Duration {
	return max(s.cfg.Interval, time.Second)
}

// ensureStable makes sure the version serving runs and takes all the
// traffic: a fleet that starts empty (local processes after a restart)
// starts it here. Both calls are no-ops when it does.
func (r *rollout) ensureStable(ctx context.Context) error {
	r.s.users.add(r.service, r.region)
	if r.stable == "" {
		return nil
	}
	if err := r.s.target.Deploy(ctx, r.service, r.region, r.stable, r.s.catalog.Instances(r.service)); err != nil {
		return fmt.Errorf("starting %s %s in %s: %w", r.service, r.stable, r.region, err)
	}
	if err := r.s.target.Route(ctx, r.service, r.region, r.stable, r.version, 0); err != nil {
		return fmt.Errorf("routing %s in %s to %s: %w", r.service, r.region, r.stable, err)
	}
	return nil
}

// rollBack sends all traffic back to the version that served before (for
// a first deployment, none: the region then serves nothing), retires the
// new one and records the rollback. A run whose record has moved on
// (movedOn: another run took the region up and ended it) leaves the fleet
// as it is and returns errMovedOn: a new deployment may have begun in the
// region since, whose canary the rollback would take the traffic off.
// failedAt is when the failing sample was taken, for the time to recover.
func (r *rollout) rollBack(ctx context.Context, reason string, failedAt time.Time) error {
	s := r.s
	// The rollback must finish even when the run's context is ending.
	ctx = context.WithoutCancel(ctx)
	if err := r.movedOn(ctx); err != nil {
		s.log.Warn("rollback left to the run that took the region up", "deployment_id", r.d.ID, "region", r.region, "reason", reason, "err", err)
		return err
	}
	if err := r.sendBack(ctx); err != nil {
		return err
	}
	var recovery time.Duration
	if !failedAt.IsZero() {
		recovery = time.Since(failedAt)
		s.metrics.mttr.Observe(recovery.Seconds())
	}
	if err := s.target.Retire(ctx, r.service, r.region, r.version); err != nil {
		s.log.Warn("new version not retired after rollback", "service", r.service, "region", r.region, "version", r.version, "err", err)
	}
	// Retiring a first deployment's version, the region's last, closes
	// the region's proxy: the deployment names a proxy only while there
	// is one, not an address that refuses connections.
	proxyURL := ""
	if s.local != nil {
		proxyURL, _ = s.local.ProxyURL(r.service, r.region)
	}
	now := time.Now().UTC()
	// A rollout the cord paused and then aborted (or failed, or cut off)
	// is paused no longer: nothing of it is left to resume, and the next
	// region of a wave starts unpaused.
	r.mu.Lock()
	r.paused = false
	r.mu.Unlock()
	var cut *StageResult // the stage cut off, as it ended
	err := r.update(ctx, func(d *Deployment, rr *RegionResult) {
		// A stage still open was cut off (by a restart, or by the error
		// of the attempt before the last): it ends here, with the
		// rollback's reason, in the record and in the audit trail, as a
		// stage ended by its own run does. One that ended (failed,
		// aborted) was closed by the changes stored with this one.
		if n := len(rr.Stages); n > 0 && rr.Stages[n-1].EndedAt == nil {
			st := &rr.Stages[n-1]
			st.EndedAt, st.Verdict, st.Reason = endedAt(now, st.StartedAt), "interrupted", reason
			cut = &StageResult{Name: st.Name, StartedAt: st.StartedAt, EndedAt: st.EndedAt, Verdict: st.Verdict, Reason: st.Reason}
		}
		rr.Status, rr.ErrorMessage, rr.Percent, rr.Stage, rr.CompletedAt = StatusRolledBack, reason, 0, "", rr.endedAt(now)
		rr.RecoveryMs = float64(recovery.Microseconds()) / 1000
		if s.local != nil {
			rr.ProxyURL = proxyURL
		}
		d.Paused = false
	})
	if cut != nil {
		s.stageCutOff(r, cut)
	}
	s.auditEvent(r, "rollback", tai.Failed, reason, 0)
	return err
}

// stageCutOff records the end of stage st of r's region, which a
// rollback cut off (verdict interrupted), as the run records a stage it
// ends itself: timed in the stage metric and in the audit trail, from the
// stage's start as the record holds it.
func (s *Service) stageCutOff(r *rollout, st *StageResult) {
	took := st.EndedAt.Sub(st.StartedAt)
	s.metrics.stage.WithLabelValues(r.strategy, st.Name, st.Verdict).Observe(took.Seconds())
	s.auditEventAt(r, st.Name+".end", tai.Failed, st.Verdict+": "+st.Reason, st.StartedAt, took)
}

// sendBack sends all of the region's traffic back to the version that
// served before, r.stable (for a first deployment, none: the traffic then
// goes nowhere, so that the new version can be retired).
func (r *rollout) sendBack(ctx context.Context) error {
	s := r.s
	if r.stable != "" {
		if err := s.target.Route(ctx, r.service, r.region, r.stable, r.version, 0); err != nil {
			// The fleet may have lost the stable version (local processes
			// after a restart): start it again, then route.
			if err := r.ensureStable(ctx); err != nil {
				return fmt.Errorf("rollback of %s in %s: %w", r.service, r.region, err)
			}
		}
	} else if err := s.target.Route(ctx, r.service, r.region, "", "", 0); err != nil {
		return fmt.Errorf("rollback of %s in %s: %w", r.service, r.region, err)
	}
	return nil
}

// rolledBack rolls back and returns the rollout's error for it.
func (r *rollout) rolledBack(ctx context.Context, reason string, failedAt time.Time) error {
	if err := r.rollBack(ctx, reason, failedAt); err != nil {
		return err
	}
	return &errRolledBack{reason}
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func errText(err error) string {
	if err == nil {
		return "health check failed"
	}
	return err.Error()
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}
