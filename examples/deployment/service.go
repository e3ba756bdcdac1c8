package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet/sim"
	"github.com/taipattern/taikit/examples/deployment/internal/localfleet"
	"github.com/taipattern/taikit/examples/deployment/internal/promhealth"
	"github.com/taipattern/taikit/examples/internal/datadir"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kaizen/kaizenotel"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanotel"
	"github.com/taipattern/taikit/kanban/natsjs"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Service is the deployment service: the API, the queue of region
// rollouts, the rollout engine and their state.
type Service struct {
	cfg     Config
	log     *slog.Logger
	lock    *datadir.Lock
	catalog *catalog.Catalog
	target  fleet.Target
	health  fleet.Health
	local   *localfleet.Fleet // with -fleet local
	users   traffic           // the pairs the local traffic goes to

	nats   *svc.NATS // the server in use
	nc     *nats.Conn
	js     jetstream.JetStream
	moreJS []jetstream.JetStream // over further connections, for the records
	store  *Store
	queue  *natsjs.Queue[Job]

	tracing  *sdktrace.TracerProvider
	tracer   trace.Tracer
	registry *prometheus.Registry
	metrics  *deployMetrics
	stats    *kaizen.Stats
	audit    *kaizen.Audit
	pipeline *tai.Pipeline[*rollout, string]
	line     *jidoka.Line
	rollouts rolloutHealth

	// The rule files in force; both nil with -rules go, which keeps the
	// Go rules (policy.go, internal/analysis).
	prereqRules   *ruleFile[RegionRequest]
	analysisRules *ruleFile[HealthReading]
	freezeWindows []map[string]string // cfg.Freeze as the rules read it
	// versions is where the version serving in a region is read: the store.
	versions interface {
		Stable(ctx context.Context, service, region string) (string, error)
	}

	andon      *andon.Evaluator
	board      *andon.Board
	stopAlerts context.CancelFunc
	alerting   sync.WaitGroup

	// closing is closed when the service begins to shut down: at the
	// start of the HTTP server's Shutdown (closeWaiters), or at Close.
	// From then on no rollout starts, nor moves on to its next stage.
	closing     chan struct{}
	closingOnce sync.Once

	cordMu sync.Mutex
	cordCh chan struct{} // closed and replaced at every change of the cord
	// cordRev is the store revision of the latest cord state applied
	// (applyCord), which may have changed nothing.
	cordRev uint64
	cord    Cord // the stored state the line last changed for
	// cordSync tells followCord the cord changed; boardReset is set while
	// followCord resets the board's cord, so that the reset's hook does
	// not store a release of its own.
	cordSync   chan struct{}
	boardReset atomic.Bool

	runs sync.Map // deployment ID → *rollout running in this process

	cmdMu   sync.Mutex
	pending map[string]Command // deployment ID → its last command not yet dropped

	waitMu  sync.Mutex
	waiters map[string][]chan *Deployment // deployment ID → requests waiting for its end

	stableMu   sync.Mutex
	stableView map[string]string // service.region → version serving, as the store says
	ready      atomic.Bool
	watchCtx   context.Context // the watchers' and the consumer's; ends at Close
	stop       context.CancelFunc
	consumer   sync.WaitGroup
	closers    []func(context.Context) error
}

// Job is a queue message: roll deployment ID out in its index-th region.
type Job struct {
	ID     string `json:"deployment_id"`
	Index  int    `json:"index"`
	Region string `json:"region"`
}

func newService(ctx context.Context, cfg Config, log *slog.Logger, lock *datadir.Lock) (_ *Service, err error) {
	s := &Service{cfg: cfg, log: log, lock: lock, cordCh: make(chan struct{}), cordSync: make(chan struct{}, 1), closing: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = s.Close(context.WithoutCancel(ctx))
		}
	}()
	s.watchCtx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	if cfg.CatalogFile != "" {
		if s.catalog, err = catalog.Load(cfg.CatalogFile); err != nil {
			return nil, err
		}
		if err = requestNames(s.catalog); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.CatalogFile, err)
		}
	} else {
		s.catalog = catalog.Demo()
	}
	if s.tracing, err = newTracerProvider(cfg); err != nil {
		return nil, err
	}
	s.tracer = s.tracing.Tracer("github.com/taipattern/taikit/examples/deployment")
	s.closers = append(s.closers, s.tracing.Shutdown)
	if err := s.connectNATS(ctx); err != nil {
		return nil, err
	}
	if err := svc.Setup(ctx, s.log, "opening the buckets", func(ctx context.Context) (err error) {
		s.store, err = openStore(ctx, s.js, s.moreJS, StoreOptions{MaxBytes: 1 << 30, MaxAge: 30 * 24 * time.Hour, Replicas: s.cfg.NATSReplicas})
		return err
	}); err != nil {
		return nil, err
	}
	if cfg.WrapDeployments != nil {
		s.store.deployments = cfg.WrapDeployments(s.store.deployments)
		for i, kv := range s.store.writers {
			s.store.writers[i] = cfg.WrapDeployments(kv)
		}
	}
	if cfg.WrapLocks != nil {
		s.store.locks = cfg.WrapLocks(s.store.locks)
	}
	s.versions = s.store
	s.freezeWindows = freezeVar(cfg.Freeze)
	// The catalog says what serves where at first; deployments move it
	// on, and the store keeps where they left it.
	for _, region := range s.catalog.RegionNames() {
		for name := range s.catalog.Services {
			if v, ok := s.catalog.Running(name, region); ok {
				if err := svc.Setup(ctx, s.log, "seeding the stable versions", func(ctx context.Context) error {
					return s.store.SeedStable(ctx, name, region, v)
				}); err != nil {
					return nil, err
				}
			}
		}
	}
	s.stableView = map[string]string{}
	if err := s.store.WatchStable(s.watchCtx, func(key, version string) {
		s.stableMu.Lock()
		if version == "" {
			delete(s.stableView, key)
		} else {
			s.stableView[key] = version
		}
		s.stableMu.Unlock()
	}); err != nil {
		return nil, err
	}
	if err := s.startFleet(ctx); err != nil {
		return nil, err
	}
	if err := s.newMetrics(); err != nil {
		return nil, err
	}
	if err := s.openAudit(); err != nil {
		return nil, err
	}
	if s.line, err = jidoka.NewLine(jidoka.LineOptions{Name: "deployments", RetryAfter: 30 * time.Second}); err != nil {
		return nil, err
	}
	cctx := s.watchCtx
	if err := s.store.WatchCord(cctx, s.applyCord); err != nil {
		return nil, err
	}
	if err := s.store.WatchDeployments(cctx, s.waited, s.notifyWaiters); err != nil {
		return nil, err
	}
	if err := s.store.WatchCommands(cctx, s.dispatchCommand, s.dropCommand); err != nil {
		return nil, err
	}
	if err := s.startAlerts(ctx); err != nil {
		return nil, err
	}
	// The rule files report their reloads to the board: it is there now.
	if err := s.openRules(); err != nil {
		return nil, err
	}
	var prerequisites tai.Policy[*rollout] = ruledPrerequisites{s.prereqRules}
	if s.prereqRules == nil {
		prerequisites = s.prerequisites()
	}
	prerequisites = capacityReserved{s: s, inner: prerequisites}
	if s.pipeline, err = tai.New[*rollout, string](prerequisites, tai.ActionFunc[*rollout, string](s.rollOut),
		// The alert rules and the metrics count outcomes: an attempt
		// that failed with an error is counted apart (see outcomes).
		tai.WithObservers(outcomes{s.stats}, s.audit, outcomes{s.metrics.pipeline}),
		// A prerequisite that asks for a review refuses: there is no one
		// here to review a deployment before it rolls out.
		tai.WithHoldOnReview(),
		tai.WithTracer(kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: s.tracing})),
		tai.WithLogger(log),
	); err != nil {
		return nil, err
	}
	if s.local != nil && cfg.LocalTraffic > 0 {
		s.consumer.Add(1)
		go func() {
			defer s.consumer.Done()
			s.runTraffic(cctx)
		}()
	}
	if err := s.startConsumer(cctx); err != nil {
		return nil, err
	}
	// What a crash left holding regions (a start cut off, a job
	// dead-lettered) is freed before the service is ready, and then
	// every sweepEvery: no deployment need ask for one of them first. A
	// store too slow for it leaves the rest to the next sweep.
	sweepCtx, cancelSweep := context.WithTimeout(ctx, startingFor)
	s.sweepRegions(sweepCtx)
	s.sweepCommandMarkers(sweepCtx)
	cancelSweep()
	s.consumer.Add(1)
	go func() {
		defer s.consumer.Done()
		s.sweep(cctx, cfg.SweepEvery)
	}()
	s.ready.Store(true)
	return s, nil
}

// startFleet builds what the service deploys to. The simulated fleet is
// brought to the versions the store says serve, so a restarted service
// sees it as its deployments left it; local processes start when a
// rollout first needs them.
func (s *Service) startFleet(ctx context.Context) error {
	switch s.cfg.Fleet {
	case "local":
		bin, err := localfleet.Build(ctx, filepath.Join(s.cfg.DataDir, "bin"))
		if err != nil {
			return fmt.Errorf("building the demo app: %w", err)
		}
		targets := &discovered{s: s}
		f, err := localfleet.New(localfleet.Options{
			Binary: bin,
			Profile: func(service, version, region string) (localfleet.AppProfile, error) {
				p, ok := s.catalog.Profile(service, version, region, 0)
				if !ok {
					return localfleet.AppProfile{}, fmt.Errorf("no profile for %s %s in %s", service, version, region)
				}
				// 2% of requests take the profile's p99, the rest a
				// twentieth of it: the proxy then measures that p99.
				return localfleet.AppProfile{ErrorRate: p.ErrorRate, Latency: p.P99 / 20, SlowRate: 0.02, SlowLatency: p.P99}, nil
			},
			Logger: s.log,
			OnExit: targets.exited,
		})
		if err != nil {
			return err
		}
		s.closers = append(s.closers, f.Shutdown)
		s.local, s.health = f, f
		targets.Target = f
		s.target = targets
		s.log.Info("local processes are listed for Prometheus", "file_sd", filepath.Join(s.cfg.DataDir, targetsFile))
	default:
		f := sim.New(s.catalog)
		stable, err := s.store.StableAll(ctx)
		if err != nil {
			return err
		}
		for key, version := range stable {
			service, region := splitKey(key)
			if v, ok := s.catalog.Running(service, region); ok && v == version {
				continue
			}
			if err := f.Deploy(ctx, service, region, version, s.catalog.Instances(service)); err != nil {
				return fmt.Errorf("fleet: %s in %s: %w", service, region, err)
			}
			old, _ := s.catalog.Running(service, region)
			if err := f.Route(ctx, service, region, old, version, 100); err != nil {
				return err
			}
			if old != "" {
				if err := f.Retire(ctx, service, region, old); err != nil {
					return err
				}
			}
		}
		s.target, s.health = f, f
	}
	if s.cfg.PrometheusURL.IsSet() {
		h, err := promhealth.New(promhealth.Options{URL: s.cfg.PrometheusURL.Reveal()})
		if err != nil {
			return fmt.Errorf("-prometheus-url: %w", err)
		}
		s.health = h
	}
	if s.cfg.WrapTarget != nil {
		s.target = s.cfg.WrapTarget(s.target)
	}
	if s.cfg.WrapHealth != nil {
		s.health = s.cfg.WrapHealth(s.health)
	}
	return nil
}

func splitKey(key string) (service, region string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '.' {
			return key[:i], key[i+1:]
		}
	}
	return key, ""
}

func (s *Service) connectNATS(ctx context.Context) error {
	var err error
	if s.nats, err = svc.StartNATS(ctx, s.cfg.NATSURL.Reveal(), s.cfg.DataDir, "deployment "+s.cfg.Instance, s.log); err != nil {
		return err
	}
	s.closers = append(s.closers, s.nats.Shutdown)
	if s.nc, err = s.nats.Connect(); err != nil {
		return err
	}
	s.closers = append(s.closers, svc.CloseConn(s.nc))
	if s.js, err = jetstream.New(s.nc); err != nil {
		return err
	}
	// Records are written over connections of their own (see Store).
	for range storeConns {
		nc, err := s.nats.Connect()
		if err != nil {
			return err
		}
		s.closers = append(s.closers, func(context.Context) error { nc.Close(); return nil })
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		s.moreJS = append(s.moreJS, js)
	}
	return nil
}

// storeConns is how many connections the deployment records are written
// over, besides the main one.
const storeConns = 3

// queueStream is the stream of region rollouts.
const queueStream = "DEPLOYMENTS"

// queueOptions is the deployment queue's configuration.
func (s *Service) queueOptions() natsjs.Options {
	return natsjs.Options{
		Replicas:         s.cfg.NATSReplicas,
		Stream:           queueStream,
		Durable:          "rollouts",
		DeadLetterStream: "DEPLOYMENTS_DEAD",
		Capacity:         100_000,
		// A rollout holds its message for as long as it runs; the queue
		// extends the lease while the handler works. The lease hands the
		// rollout of a process that died to another (see RolloutLease).
		AckWait: s.cfg.RolloutLease,
		// Waves publish their next region long after the first: keep IDs
		// long enough that a retried publish is stored once.
		DedupWindow: 10 * time.Minute,
		// A region's rollout joins its deployment's trace.
		Propagator: kanbanotel.TraceContext(),
		Logger:     s.log,
	}
}

func (s *Service) startConsumer(ctx context.Context) error {
	opts := s.queueOptions()
	if err := svc.Setup(ctx, s.log, "opening the deployment queue", func(ctx context.Context) (err error) {
		s.queue, err = natsjs.New[Job](ctx, s.nc, opts)
		return err
	}); err != nil {
		return fmt.Errorf("deployment queue: %w", err)
	}
	// The queue's counts (deliveries again among them: a lease that
	// lapsed), depth and oldest message, as taikit_queue_* with
	// queue="rollouts". Not its handler durations: a rollout runs for
	// its bakes, past the histogram's highest bound, and its stages have
	// histograms of their own.
	kc, err := kaizenprom.NewKanbanCollector(s.registry, kaizenprom.CollectorOptions{})
	if err != nil {
		return err
	}
	if err := kc.AddQueue("rollouts", s.queue); err != nil {
		return err
	}
	s.consumer.Add(1)
	go func() {
		defer s.consumer.Done()
		err := s.queue.Consume(ctx, s.handleJob, kanban.ConsumeOptions{
			WIP: s.cfg.Workers,
			// One rollout per service and region at a time, in order.
			PerKey:      true,
			MaxAttempts: queueAttempts,
			Backoff:     s.cfg.JobBackoff,
			// A rollout cut off by shutdown is taken up after the restart:
			// waiting for it to end could take the whole bake. From the
			// shutdown's start it holds its stage (see stopping), and at
			// this deadline it returns.
			DrainTimeout: time.Second,
			Logger:       s.log,
		})
		switch {
		case err == nil, errors.Is(err, context.Canceled):
		case errors.Is(err, kanban.ErrDrainTimeout):
			// The end of a shutdown with rollouts running: their messages
			// are released for the next start.
			s.log.Info("rollout consumer stopped with rollouts running; the next start takes them up")
		default:
			s.log.Error("rollout consumer stopped", "err", err)
		}
	}()
	return nil
}

// handleJob rolls a deployment out in one region, then moves its wave on.
// A job whose region has ended already (a redelivery) only moves the wave
// on, even past its attempts; one whose region was in progress was cut off
// by a crash or a shutdown, and is rolled back (see recoverRegion), or,
// delivered past its attempts, given up (see giveUp).
func (s *Service) handleJob(ctx context.Context, m kanban.Delivery[Job]) (err error) {
	job := m.Payload
	last := m.Attempt >= jobAttempts
	defer func() {
		if err != nil && ctx.Err() == nil && !last {
			s.log.Warn("rollout job failed; it will be retried", "deployment_id", job.ID, "region", job.Region, "attempt", m.Attempt, "err", err)
		}
	}()
	err = s.runJob(ctx, m)
	if err == nil || ctx.Err() != nil || !last {
		return err
	}
	// On the last attempt a job that fails is dead-lettered, and no job
	// would run its deployment again: it ends here (giveUp). A job that
	// names a region its deployment does not have (Permanent), or a
	// deployment gone, has no deployment to end.
	if !kanban.IsPermanent(err) && !errors.Is(err, ErrNotFound) && s.giveUp(ctx, job, err) {
		return nil
	}
	return kanban.Permanent(err)
}

// queueAttempts is how many times the queue delivers a region's rollout
// before it dead-letters it unhandled. A job is run jobAttempts times at
// most: its deliveries after those, which come only when the last was cut
// off, run only the steps left after its region ended (moving the wave on,
// ending the deployment) or else end its deployment (handleJob), so that
// the queue dead-letters no job whose deployment is in progress without
// ending it. A job whose deliveries are all cut off is dead-lettered after
// queueAttempts.
const queueAttempts = 2 * jobAttempts

// runJob is handleJob's attempt at job m.
func (s *Service) runJob(ctx context.Context, m kanban.Delivery[Job]) error {
	job := m.Payload
	// A job is published after its deployment is stored, so a record not
	// found is one read from a server that is behind (a bucket's gets may
	// be answered by any of its servers, and one just restarted catches
	// up): retried, it is found; a record truly gone is dead-lettered
	// after MaxAttempts.
	d, rev, err := s.store.Get(ctx, job.ID)
	if err != nil {
		return err
	}
	if job.Index < 0 || job.Index >= len(d.Results) || d.Results[job.Index].Region != job.Region {
		return kanban.Permanent(fmt.Errorf("job %s names region %d %q the deployment does not have", job.ID, job.Index, job.Region))
	}
	r := &rollout{
		s: s, service: d.Service, version: d.Version, region: job.Region, index: job.Index,
		strategy: d.Strategy, firstDeploy: d.FirstDeploy, thresholds: d.Analysis.analysis(),
		d: d, rev: rev, revAt: time.Now(), cmdReady: make(chan struct{}, 1), failed: make(chan failure, 1), stage: -1,
	}
	if s.analysisRules != nil {
		r.limits = thresholdVars(r.thresholds)
	}
	// On the last attempt a region that failed is ended here (see
	// lastAttempt) rather than left to the queue, which would dead-letter
	// the job. A conflict is not ended here: another replica wrote the
	// record, which handleJob reads again to end the deployment (giveUp).
	last := func(err error) bool { return m.Attempt >= jobAttempts && ctx.Err() == nil && !isConflict(err) }
	// A job delivered again, or one whose region ended before it was
	// delivered (a second job of the region, queued again past the
	// stream's duplicate window), may find the next region queued
	// already (see continueWave).
	again := m.Attempt > 1
	switch rr := &d.Results[job.Index]; {
	case terminal(rr.Status):
		again = true
		// A run cut off between storing its region's success and
		// retiring the version before left that one running (idle):
		// it is retired here, while the deployment still holds the
		// region.
		if rr.Status == StatusSuccess && !terminal(d.Status) && rr.Previous != d.Version {
			s.retireOld(ctx, d.Service, rr.Region, rr.Previous)
		}
	case m.Attempt > jobAttempts:
		// Its last attempt was cut off (by a crash, or by a shutdown)
		// before its region ended: the rollout is not run again, and the
		// deployment ends as on a last attempt that failed. One whose
		// region ended runs the steps left above, which roll nothing out:
		// they move the wave on or end the deployment as its regions did.
		return fmt.Errorf("delivered %d times, its last attempt cut off", m.Attempt)
	case rr.Status == StatusInProgress:
		if err := s.recoverRegion(ctx, r); err != nil {
			if !last(err) || !r.lastAttempt(ctx, err, true) {
				return err
			}
		}
	case s.stopping():
		// No rollout starts once the service is shutting down.
		return r.heldForShutdown(ctx)
	default:
		if err := s.startRegion(ctx, r, m.Attempt > 1); err != nil {
			if !last(err) || !r.lastAttempt(ctx, err, false) {
				return err
			}
		}
	}
	if terminal(r.status()) {
		// The region has ended: the capacity its rollout reserved is
		// free again (see reserveCapacity).
		s.releaseCapacity(ctx, r)
	}
	return s.continueWave(ctx, r, again, m.Attempt >= jobAttempts && ctx.Err() == nil)
}

// jobAttempts is how many times a region's rollout is run before its
// job is given up (see handleJob).
const jobAttempts = 10

// lastAttempt ends a region whose job failed on its last attempt, and
// reports whether it did: the queue would dead-letter the job, and the
// deployment would stay in progress with its regions taken, which no
// abort could end.
//   - A region whose rollout had not begun ends FAILED (notStarted).
//   - One ended in the run whose record could not be stored then (the
//     store out of reach) is stored now.
//   - One whose rollout began and failed with an error (its record not
//     written, its fleet not answering) is rolled back now, and ends
//     ROLLED_BACK with the error when its traffic is back on the version
//     before.
//   - One whose rollback failed (recovering: the rollback of a rollout
//     cut off, tried on every attempt) ends FAILED, saying that the new
//     version may still take traffic (notRolledBack).
func (r *rollout) lastAttempt(ctx context.Context, err error, recovering bool) bool {
	status := r.status()
	switch {
	case status == StatusPending:
		return r.notStarted(ctx, err)
	case terminal(status):
		return r.storeEnd(ctx)
	case !recovering:
		r.s.log.Error("rollout failed on its last attempt; it is rolled back", "deployment_id", r.d.ID, "region", r.region, "err", err)
		r.mu.Lock()
		previous := r.d.Results[r.index].Previous
		r.mu.Unlock()
		rerr := r.s.restoreRegion(ctx, r, fmt.Sprintf("Not finished after %d attempts: %v; rolled back to %s", jobAttempts, err, nameOr(previous, "no version")))
		if rerr == nil {
			r.s.countRolledBack(r, err.Error())
			return true
		}
		if isConflict(rerr) {
			return false
		}
		if terminal(r.status()) {
			return r.storeEnd(ctx) // rolled back, its record not stored
		}
		err = rerr
	}
	return r.notRolledBack(ctx, err)
}

// status is the region's status in the run's copy of the record.
func (r *rollout) status() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.d.Results[r.index].Status
}

// storeEnd stores the run's copy of the record, whose region has ended
// but whose write failed, and reports whether it is stored. A region
// rolled back is counted once stored (countRolledBack): the attempt that
// rolled it back ended with the write's error, under kindAttempt. So are
// a region refused (countRefused) and one that succeeded
// (countSucceeded).
func (r *rollout) storeEnd(ctx context.Context) bool {
	if err := r.update(ctx, func(*Deployment, *RegionResult) {}); err != nil {
		r.s.log.Error("region's end not stored after its last attempt", "deployment_id", r.d.ID, "region", r.region, "err", err)
		return false
	}
	r.mu.Lock()
	rr := r.d.Results[r.index]
	r.mu.Unlock()
	switch {
	case rr.Status == StatusRolledBack:
		r.s.countRolledBack(r, rr.ErrorMessage)
	case r.refusal != nil:
		r.s.countRefused(*r.refusal)
	case rr.Status == StatusSuccess:
		r.s.countSucceeded(r)
	}
	return true
}

// notRolledBack ends a region whose rollback failed on its job's last
// attempt as FAILED, with the error: the new version may still take the
// share of traffic the record shows. It reports whether it did.
func (r *rollout) notRolledBack(ctx context.Context, err error) bool {
	msg := fmt.Sprintf("Not rolled back after %d attempts: %v; %s may still take traffic", jobAttempts, err, r.version)
	now := time.Now().UTC()
	r.mu.Lock()
	r.paused = false // nothing of it is left to resume
	r.mu.Unlock()
	if uerr := r.update(ctx, func(d *Deployment, rr *RegionResult) {
		rr.Status, rr.ErrorMessage, rr.CompletedAt = StatusFailed, msg, rr.endedAt(now)
		d.Paused = false
	}); uerr != nil {
		r.s.log.Error("region not ended after its last attempt", "deployment_id", r.d.ID, "region", r.region, "err", uerr)
		return false
	}
	r.s.log.Error("rollback failed on its last attempt; the region ends FAILED", "deployment_id", r.d.ID, "region", r.region, "err", err)
	r.s.auditEvent(r, "rollback", tai.Failed, msg, 0)
	return true
}

// notStarted ends a region whose last attempt failed before its rollout
// began (its validation could not judge: the store or the health source
// out of reach) as FAILED with the error, and reports whether it did.
func (r *rollout) notStarted(ctx context.Context, err error) bool {
	msg := fmt.Sprintf("Not started after %d attempts: %v", jobAttempts, err)
	now := time.Now().UTC()
	if uerr := r.update(ctx, func(_ *Deployment, rr *RegionResult) {
		rr.Status, rr.ErrorMessage, rr.CompletedAt = StatusFailed, msg, &now
	}); uerr != nil {
		r.s.log.Error("region not ended after its last attempt", "deployment_id", r.d.ID, "region", r.region, "err", uerr)
		return false
	}
	r.s.log.Error("rollout job failed on its last attempt; the region ends FAILED", "deployment_id", r.d.ID, "region", r.region, "err", err)
	return true
}

// giveUp ends the deployment of job, which failed on its last attempt
// with cause, and reports whether it did: the queue would dead-letter the
// job, and the deployment would stay in progress with its regions taken,
// which no abort could end. Its first region not ended (the job's, or the
// next one, which the job did not queue) ends FAILED with "Job given up
// after 10 attempts: " and cause, the rest skipped (see endGivenUp); it
// is counted and in the audit trail as every end is, and its regions are
// freed. The record is read again, and the end written over the revision
// read: a deployment another run or replica has ended since (a
// redelivery of the job, a second give-up of it) is left as it is, and
// giveUp reports false. A run still going whose job was given up (a
// replica whose lease lapsed) finds its record moved on at its next write
// and stops.
//
// A job whose region has ended may have queued the next one before it
// failed (a delivery of it cut off before its acknowledgement, delivered
// again): while another job of the deployment is in the queue, that job
// carries the deployment on, and giveUp leaves it (reports false). So it
// does when the queue cannot be read: the job is dead-lettered, and a
// deployment no job runs is ended by a replica's sweep, or when another
// asks for its region (see endCutOffStart).
func (s *Service) giveUp(ctx context.Context, job Job, cause error) bool {
	reason := fmt.Sprintf("Job given up after %d attempts: %v", jobAttempts, cause)
	attrs := []any{"deployment_id", job.ID, "region", job.Region}
	for try := 0; ; try++ {
		var d *Deployment
		var rev uint64
		err := s.retryStore(ctx, "deployment given up", attrs, func(ctx context.Context) (err error) {
			d, rev, err = s.store.Get(ctx, job.ID)
			return err
		})
		if err == nil && terminal(d.Status) {
			return false
		}
		if err == nil && (job.Index < 0 || job.Index >= len(d.Results) || terminal(d.Results[job.Index].Status)) {
			other, qerr := s.queuedFor(ctx, job.ID, func(index int) bool { return index != job.Index })
			if qerr != nil || other {
				s.log.Warn("rollout job given up after its region ended; another job of the deployment carries it on, or the queue was not read",
					append(attrs, "cause", cause, "queue_err", qerr)...)
				return false
			}
		}
		if err == nil {
			err = s.retryStore(ctx, "end of a deployment given up", attrs, func(ctx context.Context) error {
				return s.endGivenUp(ctx, d, rev, reason)
			})
		}
		if isConflict(err) && try < 2 {
			continue // written by another since the read
		}
		if err != nil {
			s.log.Error("deployment whose job was given up not ended", append(attrs, "cause", cause, "err", err)...)
			return false
		}
		s.log.Error("rollout job given up on its last attempt; the deployment ends", append(attrs, "err", cause)...)
		s.unlockRegions(d)
		return true
	}
}

// errJobGone is why a deployment in progress ends when none of its jobs
// is in the queue, and one of its regions has begun (see endCutOffStart):
// the job of the region in progress, or of the one after the last ended,
// was dead-lettered with the deployment not ended. Each job queues the
// next region before it is acknowledged, so that no job of it in the
// queue means no job will run it again.
var errJobGone = errors.New("its job is no longer in the queue (dead-lettered)")

// endGivenUp stores the end of deployment d, read at rev, whose job was
// given up with reason: the first region not ended that the wave was to
// run ends FAILED with reason, the others not ended SKIPPED, and the
// deployment ends FAILED, with that region's reason, whatever the regions
// before it did. A region whose rollout had begun is rolled back first,
// as a rollout cut off is (rollBackGivenUp): its reason then ends with
// "; rolled back to" the version before, or, when its traffic cannot be
// sent back, with why not and that its version may still take traffic.
// The end stored is counted and in the audit trail, and the deployment's
// command is dropped, as at every end. It returns the store's error, a
// conflict when the record has changed since rev; it releases no region.
func (s *Service) endGivenUp(ctx context.Context, d *Deployment, rev uint64, reason string) error {
	ctx = context.WithoutCancel(ctx)
	// The region the wave was at: a pending one after a region that
	// failed was never to run.
	given := -1
	for i, rr := range d.Results {
		if !terminal(rr.Status) && (rr.Status != StatusPending || i == 0 || d.ContinueOn || d.Results[i-1].Status == StatusSuccess) {
			given = i
			break
		}
	}
	msg := reason
	rolledBack := false
	if given >= 0 && d.Results[given].Status == StatusInProgress {
		// The record is written before the fleet moves, for a revision
		// of its own: a run of the region still going (a replica whose
		// lease lapsed) finds it moved on before its next move of the
		// fleet and stops, and a second give-up is refused as a conflict
		// before it moves the fleet. It carries the reason on the region,
		// which no run writes on a region in progress: written as read,
		// it would hold the same bytes as the run's last write, which the
		// run, had that write failed unanswered and been stored all the
		// same, would take for its own (see landed) and go on.
		w := *d
		w.Results = slices.Clone(d.Results)
		w.Results[given].ErrorMessage = reason
		var err error
		if rev, err = s.store.Update(ctx, &w, rev); err != nil {
			return err
		}
		var how string
		how, rolledBack = s.rollBackGivenUp(ctx, d, given)
		msg += how
	}
	now := time.Now().UTC()
	// The end is written from a copy: d stays as read, for a retry.
	f := *d
	f.Results = slices.Clone(d.Results)
	f.RegionsDone = []string{}
	f.Paused = false // nothing of it is left to resume
	// The stage the rollback cut off, as it ended.
	var cut *StageResult
	for i := range f.Results {
		rr := &f.Results[i]
		switch {
		case terminal(rr.Status):
		case i == given:
			if rolledBack {
				rr.Percent = 0
				if n := len(rr.Stages); n > 0 && rr.Stages[n-1].EndedAt == nil {
					rr.Stages = slices.Clone(rr.Stages)
					st := &rr.Stages[n-1]
					st.EndedAt, st.Verdict, st.Reason = endedAt(now, st.StartedAt), "interrupted", msg
					cut = st
				}
				if s.local != nil {
					rr.ProxyURL, _ = s.local.ProxyURL(f.Service, rr.Region)
				}
			}
			rr.Status, rr.ErrorMessage, rr.Stage, rr.CompletedAt = StatusFailed, msg, "", rr.endedAt(now)
		default:
			rr.Status = StatusSkipped
		}
	}
	f.finish(now)
	if given >= 0 {
		// Given up, the deployment failed, though a region before this
		// one rolled back (continue_on_failure).
		f.Status = StatusFailed
		if len(f.Results) > 1 {
			msg = f.Results[given].Region + ": " + msg
		}
		f.ErrorMessage = &msg
	}
	if _, err := s.store.Update(ctx, &f, rev); err != nil {
		return err
	}
	if rolledBack {
		r := &rollout{d: &f, service: f.Service, version: f.Version, region: f.Results[given].Region, strategy: f.Strategy}
		if cut != nil {
			s.stageCutOff(r, cut)
		}
		s.auditEvent(r, "rollback", tai.Failed, f.Results[given].ErrorMessage, 0)
		s.countRolledBack(r, f.Results[given].ErrorMessage)
	}
	s.countEnd(&f)
	if err := s.store.DropCommands(ctx, d.ID); err != nil {
		s.log.Warn("command of a deployment given up not dropped", "deployment_id", d.ID, "err", err)
	}
	return nil
}

// rollBackGivenUp rolls back region i of deployment d, whose rollout was
// in progress when its job was given up, as a rollout cut off is rolled
// back (restoreRegion), its record left to the caller: the version before
// is recorded as the one serving again, all traffic goes back to it, and
// the new version is retired. It returns what the region's reason says of
// it, and whether the traffic is back.
func (s *Service) rollBackGivenUp(ctx context.Context, d *Deployment, i int) (string, bool) {
	rr := d.Results[i]
	r := &rollout{s: s, service: d.Service, version: d.Version, region: rr.Region, index: i, stable: rr.Previous}
	attrs := []any{"deployment_id", d.ID, "region", rr.Region}
	err := func() error {
		if d.Version != rr.Previous {
			if err := s.retryStore(ctx, "stable version", attrs, func(ctx context.Context) error {
				return s.store.RestoreStable(ctx, d.Service, rr.Region, d.Version, rr.Previous)
			}); err != nil {
				return err
			}
		}
		return r.sendBack(ctx)
	}()
	if err != nil {
		s.log.Error("region given up not rolled back", append(attrs, "err", err)...)
		return fmt.Sprintf("; not rolled back: %v; %s may still take traffic", err, d.Version), false
	}
	if err := s.target.Retire(ctx, d.Service, rr.Region, d.Version); err != nil {
		s.log.Warn("new version not retired after rollback", "service", d.Service, "region", rr.Region, "version", d.Version, "err", err)
	}
	return "; rolled back to " + nameOr(rr.Previous, "no version"), true
}

// stopping reports whether the service has begun to shut down.
func (s *Service) stopping() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// runRegion passes a region's rollout through the pipeline: the
// prerequisites, then the rollout.
func (s *Service) runRegion(ctx context.Context, r *rollout) error {
	key := r.d.ID + "/" + r.region
	s.runs.Store(r.d.ID, r)
	s.notifyBoard()
	defer func() {
		s.runs.Delete(r.d.ID)
		s.notifyBoard()
		s.rollouts.drop(key)
		s.metrics.errorRate.DeleteLabelValues(r.service, r.region, r.version)
		s.metrics.overdue.DeletePartialMatch(map[string]string{"service": r.service, "region": r.region})
	}()
	// A command sent before this rollout began (an abort while it was
	// queued, or before a restart) is acted on; later ones come through
	// the process's watcher (dispatchCommand).
	// An abort before the region began ends it before the new version
	// starts or takes any traffic.
	if aborted, err := s.abortBeforeStart(ctx, r); aborted {
		return err
	}
	if c, ok := s.pendingCommand(r.d.ID); ok {
		r.deliver(c)
	}
	s.metrics.active.Inc()
	defer s.metrics.active.Dec()
	start := time.Now()
	res, err := s.pipeline.Process(ctx, tai.Signal[*rollout]{
		ID: key, Kind: "deployment", Key: r.service + "/" + r.region, Payload: r,
	})
	var rb *errRolledBack
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rb):
		return nil // recorded by the rollout
	}
	// The region's end, should the prerequisites decide it. A refusal is
	// counted, as the pipeline records it, once the region's end is
	// stored (outcomes leaves it out).
	var end Command
	var refusal *tai.Record
	if res.Outcome == tai.Denied {
		rec := regionRecord(r.d.ID, r.service, r.region)
		rec.Outcome, rec.Decision, rec.Start, rec.Duration, rec.Span = tai.Denied, res.Decision, start, time.Since(start), res.Span
		refusal = &rec
		end = Command{Verdict: verdictDenied, Decision: res.Decision.Policy, Reason: res.Decision.Reason}
	} else if policy, rerr, ok := ruleFailure(err); ok && ctx.Err() == nil {
		// A prerequisite rule that fails at evaluation would fail every
		// retry: the validation fails now, as a failing analysis rule
		// fails its sample, rather than leave the deployment in progress
		// and its regions taken.
		end = Command{Verdict: verdictFailed, Decision: policy, Reason: "Prerequisite rules failed: " + rerr.Error()}
	}
	if end.Verdict == "" {
		return err // retried: the queue delivers the job again
	}
	end.Region, end.At = r.region, time.Now().UTC()
	// An abort that came while the prerequisites were judged ends the
	// region as one before it began, whatever they decided: answered 202,
	// it is not left for the deployment to end FAILED. The region is then
	// counted once, as rolled back, not as refused.
	if aborted, err := s.abortAtRefusal(ctx, r, end); aborted {
		return err
	}
	return r.refused(ctx, end, refusal)
}

// refused stores the end of a region its prerequisites refused, or whose
// prerequisite rules failed, as end (an end of the commands: see
// Command.Verdict) says: FAILED, with its reason and the prerequisite.
// A refusal is counted once stored, with rec, its record
// (countRefused). Failing, it leaves the region's end to the job's next
// attempt, which stores the same end should the deployment's commands
// have been closed with it (decidedEnd), or to lastAttempt.
func (r *rollout) refused(ctx context.Context, end Command, rec *tai.Record) error {
	r.refusal = rec
	if err := r.update(ctx, func(_ *Deployment, rr *RegionResult) {
		rr.Status, rr.ErrorMessage, rr.Decision, rr.CompletedAt = StatusFailed, end.Reason, end.Decision, utc(end.At)
	}); err != nil {
		return err
	}
	if rec != nil {
		r.s.countRefused(*rec)
	}
	return nil
}

// startRegion runs a region's rollout (runRegion), unless an earlier
// attempt of its job (again) had its prerequisites refuse it, and closed
// its deployment's commands for that refusal (abortAtRefusal), but did not
// store the region's end: the store refused the write, or was out of
// reach for longer than the write was retried, or the process was cut
// off. The refusal stands, and is stored as it was decided: judged again,
// prerequisites that now let the region through would roll it out with
// the commands closed, so that no abort was taken, and a deployment
// whose abort was refused as one to a deployment that has ended FAILED
// would end otherwise.
func (s *Service) startRegion(ctx context.Context, r *rollout, again bool) error {
	if again {
		end, decided, err := s.decidedEnd(ctx, r)
		if err != nil {
			return err
		}
		if decided && end.refusal() {
			s.log.Warn("region refused on an earlier attempt of its job, its end not stored; the refusal stands", "deployment_id", r.d.ID, "region", r.region, "reason", end.Reason)
			var rec *tai.Record
			if end.Verdict == verdictDenied {
				denied := regionRecord(r.d.ID, r.service, r.region)
				denied.Outcome, denied.Start = tai.Denied, end.At
				denied.Decision = tai.Decision{Verdict: tai.Deny, Policy: end.Decision, Reason: end.Reason}
				rec = &denied
			}
			return r.refused(ctx, end, rec)
		}
	}
	return s.runRegion(ctx, r)
}

// decidedEnd returns the end of r's deployment's commands if they were
// closed for r's region (EndCommands): that region's end was decided, by
// its prerequisites or by its last stage passing, and stands on every
// later attempt of its job. The read is retried as a write is while the
// store is out of reach.
func (s *Service) decidedEnd(ctx context.Context, r *rollout) (Command, bool, error) {
	var end Command
	var closed bool
	err := svc.Retry(ctx, s.log, storeRetryFor, "reading the end of the commands", []any{"deployment_id", r.d.ID, "region", r.region}, func(ctx context.Context) (err error) {
		end, closed, err = s.store.Closed(ctx, r.d.ID)
		return err
	})
	if err != nil {
		return Command{}, false, fmt.Errorf("read the commands of deployment %s: %w", r.d.ID, err)
	}
	return end, closed && end.Region == r.region, nil
}

// ruleFailure finds, in a pipeline's error, a rule of the prerequisites
// file that failed at evaluation (a missing key, a division by zero, its
// cost limit), and the prerequisite it belongs to: the innermost policy
// that failed, whose error the rule's is. A lookup that failed (the
// store, the health source, the analysis rules judging the region's
// health) is not one: it is retried.
func ruleFailure(err error) (policy string, rerr *taicel.RuleError, ok bool) {
	var inner *tai.PolicyError
	for pe := (*tai.PolicyError)(nil); errors.As(err, &pe); err = pe.Err {
		inner = pe
	}
	if inner == nil {
		return "", nil, false
	}
	rerr, ok = inner.Err.(*taicel.RuleError)
	return inner.Policy, rerr, ok
}

// abortedBeforeStart ends a region whose deployment was aborted before
// its rollout began (while it was queued, or while its prerequisites were
// judged): nothing of the new version ran there, and the region is
// recorded rolled back with the abort's reason.
func (r *rollout) abortedBeforeStart(ctx context.Context, reason string) error {
	now := time.Now().UTC()
	reason = "Aborted: " + reason
	if err := r.update(ctx, func(_ *Deployment, rr *RegionResult) {
		rr.Status, rr.ErrorMessage, rr.CompletedAt = StatusRolledBack, reason, &now
	}); err != nil {
		return err
	}
	r.s.auditEvent(r, "rollback", tai.Failed, reason, 0)
	return nil
}

// abortedEarly ends the region, as aborted before it began
// (abortedBeforeStart), if its deployment has an abort pending: it reports
// whether it did, with the rollout's error. It is asked before the new
// version starts.
func (r *rollout) abortedEarly(ctx context.Context) (bool, error) {
	c, ok := r.s.pendingCommand(r.d.ID)
	if !ok || c.Action != "abort" {
		return false, nil
	}
	r.mu.Lock()
	r.lastCmd = max(r.lastCmd, c.Seq) // taken: dropped at the deployment's end
	r.mu.Unlock()
	if err := r.abortedBeforeStart(ctx, c.Reason); err != nil {
		return true, err
	}
	return true, &errRolledBack{"Aborted: " + c.Reason}
}

// abortBeforeStart ends the region as aborted before it began
// (abortedEarly), and counts it, if its deployment has an abort pending:
// it reports whether it did, with the store's error. Outside the
// pipeline, the region is counted as the pipeline counts an abort while
// the prerequisites are judged.
func (s *Service) abortBeforeStart(ctx context.Context, r *rollout) (bool, error) {
	aborted, err := r.abortedEarly(ctx)
	if !aborted {
		return false, nil
	}
	var rb *errRolledBack
	if !errors.As(err, &rb) {
		return true, err
	}
	s.countRolledBack(r, rb.reason)
	return true, nil
}

// abortAtRefusal is abortBeforeStart for a region its prerequisites
// refused, or whose prerequisite rules failed, end being the region's
// end: it reports whether the run stops there, the region ended aborted or
// the store failing (its error returned, and the job retried). A refusal
// that ends the deployment (of its last region, or of any region of a
// deployment that does not go on after a failure) first closes the
// deployment's commands in the store, with the status it ends with and
// end, as the success of its last region does (EndCommands): should the
// region's end not be stored after, the next attempt of its job stores
// end rather than judge the region again (startRegion). An abort stored
// before wins, also one this process has
// not heard of yet, and the region ends aborted; one sent after is
// refused as one sent to a deployment that has ended so (ErrEnded).
// Answered 202 between the refusal and the deployment's end, it was
// ignored. A refusal that does not end the deployment leaves an abort
// that comes later to the wave (continueWave) or to its next region's
// run.
func (s *Service) abortAtRefusal(ctx context.Context, r *rollout, end Command) (bool, error) {
	if aborted, err := s.abortBeforeStart(ctx, r); aborted {
		return true, err
	}
	r.mu.Lock()
	goesOn := r.d.ContinueOn && r.index < len(r.d.Results)-1
	r.mu.Unlock()
	if goesOn {
		return false, nil
	}
	end.Status = r.endsWith(StatusFailed)
	var c Command
	var aborted bool
	var rev uint64
	if err := s.retryStore(ctx, "end of the commands", []any{"deployment_id", r.d.ID, "region", r.region}, func(ctx context.Context) (err error) {
		c, aborted, rev, err = s.store.EndCommands(ctx, r.d.ID, end)
		return err
	}); err != nil {
		return true, err
	}
	r.mu.Lock()
	r.lastCmd = max(r.lastCmd, c.Seq, rev) // taken: dropped at the deployment's end
	r.mu.Unlock()
	if !aborted {
		return false, nil
	}
	if err := r.abortedBeforeStart(ctx, c.Reason); err != nil {
		return true, err
	}
	s.countRolledBack(r, "Aborted: "+c.Reason)
	return true, nil
}

// aborted reports whether deployment id has an abort pending: it does not
// go on to its next region, whatever continue_on_failure says.
func (s *Service) aborted(id string) bool {
	c, ok := s.pendingCommand(id)
	return ok && c.Action == "abort"
}

// recoverRegion ends a region whose rollout a crash or a shutdown cut
// off, or whose attempt failed with an error. It rolls back rather than
// resuming: the health samples and the time baked so far lived in the
// process that is gone, and the old version is the state known to be
// good. The new version's stage is in the record. The rollback is counted
// as one on the analysis is (countRolledBack). A region that passed its
// last stage and closed its deployment's commands to end (EndCommands),
// its success not stored after, is not rolled back: its success was
// decided, and a command sent since was refused as too late
// (ErrSucceeded); it ends SUCCESS (endPassed).
func (s *Service) recoverRegion(ctx context.Context, r *rollout) error {
	end, decided, err := s.decidedEnd(ctx, r)
	if err != nil {
		return err
	}
	if decided && end.passed() {
		return s.endPassed(ctx, r, end)
	}
	rr := r.d.Results[r.index]
	s.log.Warn("rolling back a rollout cut off by a restart", "deployment_id", r.d.ID, "region", r.region, "stage", rr.Stage)
	reason := fmt.Sprintf("Interrupted at stage %s by a restart of the service; rolled back to %s", nameOr(rr.Stage, "start"), nameOr(rr.Previous, "no version"))
	if c, ok := s.pendingCommand(r.d.ID); ok && c.Action == "abort" {
		// An abort answered before the cut, not taken by the run it cut
		// off: the region ends as the abort would have ended it, with its
		// reason.
		r.mu.Lock()
		r.lastCmd = max(r.lastCmd, c.Seq) // taken: dropped at the deployment's end
		r.mu.Unlock()
		reason = "Aborted: " + c.Reason
	}
	if err := s.restoreRegion(ctx, r, reason); err != nil {
		return err
	}
	s.countRolledBack(r, reason)
	return nil
}

// endPassed stores the success of a region whose rollout passed its last
// stage and closed its deployment's commands with end, its success not
// stored after (the store refused the write, or was out of reach for
// longer than it was retried, or the process was cut off): its last
// stage ends as end says, and the region as a rollout that passed does
// (succeed), counted as one that succeeded. The traffic is all on the new
// version since that stage began.
func (s *Service) endPassed(ctx context.Context, r *rollout, end Command) error {
	s.log.Warn("region passed its last stage on an earlier attempt of its job, its success not stored; the success stands", "deployment_id", r.d.ID, "region", r.region)
	r.mu.Lock()
	r.stable = r.d.Results[r.index].Previous
	r.mu.Unlock()
	r.later(func(d *Deployment, rr *RegionResult) {
		n := len(rr.Stages)
		if n == 0 || rr.Stages[n-1].Name != end.Stage || rr.Stages[n-1].EndedAt != nil {
			return
		}
		sr := &rr.Stages[n-1]
		sr.EndedAt, sr.Verdict, sr.Reason = utc(end.At), end.Verdict, end.Reason
		d.StagesCompleted = append(d.StagesCompleted, d.stageName(r.region, end.Stage))
	})
	if err := r.succeed(ctx); err != nil {
		return err
	}
	s.countSucceeded(r)
	return nil
}

// restoreRegion rolls back a region whose rollout began (its record says
// so, and names the version before) and records it ROLLED_BACK with
// reason. A run whose record has moved on (movedOn) touches neither the
// version recorded serving nor the fleet, and returns errMovedOn: the
// run that took the region up ended it, and a deployment of the same
// version may have rolled it out since and recorded it serving, which
// RestoreStable would put back to the version before.
func (s *Service) restoreRegion(ctx context.Context, r *rollout, reason string) error {
	if err := r.movedOn(context.WithoutCancel(ctx)); err != nil {
		s.log.Warn("rollback left to the run that took the region up", "deployment_id", r.d.ID, "region", r.region, "reason", reason, "err", err)
		return err
	}
	r.mu.Lock()
	rr := r.d.Results[r.index]
	r.mu.Unlock()
	r.stable = rr.Previous
	// A rollout that passed its last stage records its version as the
	// one serving before it stores its end; cut off between the two, the
	// record would name a version the rollback retires.
	if r.version != rr.Previous {
		if err := s.retryStore(ctx, "stable version", []any{"deployment_id", r.d.ID, "region", r.region}, func(ctx context.Context) error {
			return s.store.RestoreStable(ctx, r.service, r.region, r.version, rr.Previous)
		}); err != nil {
			return err
		}
	}
	return r.rollBack(ctx, reason, time.Time{})
}

func nameOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// continueWave moves a deployment on after one of its regions ended: the
// next region's job, or the deployment's end. It is idempotent: a job
// delivered again, or a second job of a region that had ended (again),
// calls it again, and queues the next region only if an earlier delivery
// did not (see queuedBefore); should it have, the next job's ID makes the
// publish a duplicate the stream drops, within its duplicate window. A
// next region an earlier delivery queued, which has begun or whose job
// is in the queue, is left to its run, an abort too. On the job's last
// attempt (last), a next region that cannot be queued ends FAILED with
// the error and the rest are skipped: the queue would dead-letter the
// job, and the deployment would stay in progress with its regions taken.
func (s *Service) continueWave(ctx context.Context, r *rollout, again, last bool) error {
	// The rollout's copy is the stored one unless another writer came
	// between (a replica that took the job over): then read it again.
	r.mu.Lock()
	d, rev := r.d, r.rev
	r.mu.Unlock()
	abortedNext := -1 // the next region, when an abort ends it before it began
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			var err error
			if d, rev, err = s.store.Get(ctx, r.d.ID); err != nil {
				return err
			}
		}
		if terminal(d.Status) {
			if attempt > 0 {
				return nil // ended by another consumer, which releases it
			}
			// Ended before this delivery: by a run cut off (killed)
			// between storing the end and releasing the regions and the
			// command, which are released here. Both are idempotent.
			var errs []error
			for _, res := range d.Results {
				errs = append(errs, s.store.Unlock(ctx, d.Service, res.Region, d.ID))
			}
			return errors.Join(append(errs, s.store.DropCommands(ctx, d.ID))...)
		}
		rr := d.Results[r.index]
		next := r.index + 1
		c, ok := s.pendingCommand(d.ID)
		aborted := ok && c.Action == "abort"
		abortedNext = -1
		switch {
		case next < len(d.Results) && (rr.Status == StatusSuccess || d.ContinueOn) && aborted &&
			(d.Results[next].Status != StatusPending || again && s.queuedBefore(ctx, d, next)):
			// The next region has begun, or its job is in the queue (an
			// earlier delivery of this job queued it, after this region
			// succeeded or, with continue_on_failure, failed): its run
			// takes the abort and rolls it back, before it starts the
			// new version if it has not yet, or has ended it and moves
			// the wave on. Ended here, as one that never began or as
			// skipped, a run starting the new version (the record shows
			// the region pending until its first stage) or past that
			// would find its record moved on and stop without rolling
			// back.
			return nil
		case next < len(d.Results) && rr.Status == StatusSuccess && aborted:
			// The abort came after this region's last stage passed and
			// before the next began: the next is aborted before it
			// began, as a queued one is (abortedBeforeStart), and the
			// deployment ends rolled back, not SUCCESS with the rest of
			// its wave skipped.
			r.mu.Lock()
			r.lastCmd = max(r.lastCmd, c.Seq) // taken: dropped below
			r.mu.Unlock()
			now := time.Now().UTC()
			nr := &d.Results[next]
			nr.Status, nr.ErrorMessage, nr.CompletedAt = StatusRolledBack, "Aborted: "+c.Reason, &now
			abortedNext = next
			next++
		case next < len(d.Results) && (rr.Status == StatusSuccess || d.ContinueOn) && !aborted:
			if again && s.queuedBefore(ctx, d, next) {
				return nil
			}
			err := s.publishJob(ctx, d, next)
			if err == nil || !last {
				return err
			}
			s.log.Error("next region not queued on the last attempt; the deployment ends", "deployment_id", d.ID, "region", d.Results[next].Region, "err", err)
			now := time.Now().UTC()
			nr := &d.Results[next]
			nr.Status, nr.ErrorMessage, nr.CompletedAt = StatusFailed, fmt.Sprintf("Not queued after %d attempts: %v", jobAttempts, err), &now
			next++
		}
		for i := next; i < len(d.Results); i++ {
			d.Results[i].Status = StatusSkipped
		}
		d.finish(time.Now())
		_, err := s.store.Update(ctx, d, rev)
		if isConflict(err) && attempt == 0 {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if abortedNext >= 0 {
		nr := d.Results[abortedNext]
		s.countRegionRolledBack(d.ID, d.Service, nr.Region, nr.ErrorMessage)
		s.audit.Observe(context.Background(), tai.Record{
			ID: d.ID, Kind: "deployment.rollback", Key: d.Service + "/" + nr.Region, Outcome: tai.Failed,
			Decision: tai.Decision{Verdict: tai.Allow, Policy: d.Version, Reason: nr.ErrorMessage}, Start: time.Now(),
		})
	}
	s.countEnd(d)
	var errs []error
	for _, res := range d.Results {
		errs = append(errs, s.store.Unlock(ctx, d.Service, res.Region, d.ID))
	}
	// The deployment's command, or the end of its commands (EndCommands),
	// is dropped: a command sent to an earlier region of the wave, which
	// this region's rollout does not take, would be kept for ever, and so
	// would the end stored by a run cut off before it ended the
	// deployment (this run, delivered again, did not store it).
	// DropCommands reads before it writes: a deployment with nothing
	// stored costs no write.
	return errors.Join(append(errs, s.store.DropCommands(ctx, d.ID))...)
}

// queuedBefore reports whether region next of d was queued already, by
// an earlier delivery of the job before it: the region has begun, or its
// job is in the queue. Queued again, it would rest on the stream's
// duplicate window alone, and a delivery later than that (behind a full
// queue, or after every replica was down) would queue a second job for
// the region, which a replica taking it up while another runs the first
// would roll back as a rollout cut off. A queue that cannot be read
// reports false: the region is queued again.
func (s *Service) queuedBefore(ctx context.Context, d *Deployment, next int) bool {
	if d.Results[next].Status != StatusPending {
		return true
	}
	queued, err := s.jobQueued(ctx, d.ID, next)
	if err != nil {
		s.log.Warn("queue not read; the next region is queued again", "deployment_id", d.ID, "region", d.Results[next].Region, "err", err)
	}
	return queued
}

func jobID(id string, index int) string { return fmt.Sprintf("%s.%d", id, index) }

// publishJob queues the rollout of deployment d in its index-th region.
func (s *Service) publishJob(ctx context.Context, d *Deployment, index int) error {
	job := Job{ID: d.ID, Index: index, Region: d.Results[index].Region}
	publish := func() error {
		return s.queue.Publish(ctx, kanban.Message[Job]{ID: jobID(d.ID, index), Key: d.Service + "/" + job.Region, Payload: job})
	}
	if s.cfg.PublishFault != nil {
		return s.cfg.PublishFault(job, publish)
	}
	return publish()
}

// jobQueued reports whether the queue's stream holds the job of region
// index of deployment id (of any of its regions when index is negative):
// one waiting for a consumer, or one taken by a consumer of any replica
// and not yet acknowledged (a work-queue stream keeps a message until
// then). It reads the stream's jobs one by one: they are those of the
// deployments in progress, each of which holds its regions, so few.
func (s *Service) jobQueued(ctx context.Context, id string, index int) (bool, error) {
	return s.queuedFor(ctx, id, func(i int) bool { return index < 0 || i == index })
}

// queuedFor reports whether the queue's stream holds a job of deployment
// id whose region's index match accepts, as jobQueued reads it.
func (s *Service) queuedFor(ctx context.Context, id string, match func(index int) bool) (bool, error) {
	st, err := s.js.Stream(ctx, queueStream)
	if err != nil {
		return false, err
	}
	for seq := max(st.CachedInfo().State.FirstSeq, 1); ; seq++ {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(queueStream))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var job Job
		if json.Unmarshal(m.Data, &job) == nil && job.ID == id && match(job.Index) {
			return true, nil
		}
		seq = m.Sequence
	}
}

// countEnd counts a finished deployment in the metrics and the audit trail.
func (s *Service) countEnd(d *Deployment) {
	switch d.Status {
	case StatusSuccess:
		s.metrics.success.WithLabelValues(d.Strategy).Inc()
	case StatusRolledBack:
		s.metrics.rollback.WithLabelValues(d.Strategy).Inc()
	case StatusFailed:
		s.metrics.failed.WithLabelValues(d.Strategy).Inc()
	}
	s.metrics.duration.WithLabelValues(d.Status).Observe(d.DurationSecs)
	outcome := tai.Succeeded
	if d.Status != StatusSuccess {
		outcome = tai.Failed
	}
	reason := d.Status
	if d.ErrorMessage != nil {
		reason += ": " + *d.ErrorMessage
	}
	s.audit.Observe(context.Background(), tai.Record{
		ID: d.ID, Kind: "deployment.end", Key: d.Service, Outcome: outcome,
		Decision: tai.Decision{Verdict: tai.Allow, Policy: d.Strategy, Reason: reason},
		Start:    d.StartedAt, Duration: time.Duration(d.DurationSecs * float64(time.Second)),
	})
}

// kindAttempt is the kind under which the alert rules' stats and the
// metrics count a region's rollout that failed with an error (see
// outcomes).
const kindAttempt = "deployment.attempt"

// outcomes passes the pipeline's records on to the stats the alert rules
// read and to the metrics, with a region rollout's outcome under the kind
// deployment: succeeded, denied (refused by a prerequisite) or failed
// (rolled back, or aborted). An attempt that failed with an error (the
// store or the health source out of reach, the fleet not answering, a
// prerequisite rule failing at evaluation, the shutdown) is under the kind
// deployment.attempt: it is retried, or ended on its last attempt, and
// nothing was rolled back. Counted as a failed rollout, each attempt during
// an outage of Prometheus fired DeploymentRolledBack, a page. A refusal is
// left to runRegion, which counts it once stored (countRefused): a region
// whose deployment was aborted while its prerequisites were judged ends
// aborted instead, whatever they decided, and counts once, as rolled back
// (abortAtRefusal).
type outcomes struct{ next tai.Observer }

// Observe passes r on to the next observer, under kindAttempt when it is
// a failed attempt, unless it is a refusal.
func (o outcomes) Observe(ctx context.Context, r tai.Record) {
	var rb *errRolledBack
	switch {
	case r.Outcome == tai.Denied:
		return // counted by runRegion
	case r.Outcome == tai.Failed && !errors.As(r.Err, &rb):
		r.Kind = kindAttempt
	}
	o.next.Observe(ctx, r)
}

// countRefused counts rec, the record of a region its prerequisites
// refused, in the stats the alert rules read and in the metrics, as
// outcomes passes the pipeline's records on: once the refusal is stored,
// the region having ended refused, not aborted.
func (s *Service) countRefused(rec tai.Record) {
	s.stats.Observe(context.Background(), rec)
	s.metrics.pipeline.Observe(context.Background(), rec)
}

// countSucceeded counts, as the pipeline's record of a success would be,
// a region whose success was stored outside its run's pipeline: after its
// last attempt failed to store it (storeEnd), or by the job's next
// attempt (endPassed). The attempt whose write failed is under
// kindAttempt.
func (s *Service) countSucceeded(r *rollout) {
	rec := regionRecord(r.d.ID, r.service, r.region)
	rec.Outcome, rec.Start = tai.Succeeded, time.Now()
	s.stats.Observe(context.Background(), rec)
	s.metrics.pipeline.Observe(context.Background(), rec)
}

// regionRecord is the record of the signal of deployment id's rollout
// of service in region, as the pipeline makes it, without its outcome.
func regionRecord(id, service, region string) tai.Record {
	return tai.Record{ID: id + "/" + region, Kind: "deployment", Key: service + "/" + region}
}

// countRolledBack counts, as the pipeline's record of a rollback would
// be, a region rolled back with reason outside its run's pipeline: after
// its last attempt failed (that attempt's record is under kindAttempt),
// after a restart cut its rollout off (recoverRegion), when its job was
// given up (endGivenUp), or aborted before its rollout began (runRegion,
// continueWave). The alert rules read it as they read a rollback on the
// analysis.
func (s *Service) countRolledBack(r *rollout, reason string) {
	s.countRegionRolledBack(r.d.ID, r.service, r.region, reason)
}

// countRegionRolledBack is countRolledBack for the region of deployment
// id in region, of service, with no rollout of its own.
func (s *Service) countRegionRolledBack(id, service, region, reason string) {
	rec := regionRecord(id, service, region)
	rec.Outcome, rec.Err, rec.Start = tai.Failed, &errRolledBack{reason}, time.Now()
	s.stats.Observe(context.Background(), rec)
	s.metrics.pipeline.Observe(context.Background(), rec)
}

// auditEvent writes one step of a rollout to the audit trail: a stage's
// start or end, an analysis that failed, a rollback, a pause.
func (s *Service) auditEvent(r *rollout, what string, outcome tai.Outcome, reason string, took time.Duration) {
	s.auditEventAt(r, what, outcome, reason, time.Now().Add(-took), took)
}

// auditEventAt is auditEvent for a step that began at start: a stage
// whose start is in the record, ended by another run than the one that
// began it.
func (s *Service) auditEventAt(r *rollout, what string, outcome tai.Outcome, reason string, start time.Time, took time.Duration) {
	s.audit.Observe(context.Background(), tai.Record{
		ID: r.d.ID, Kind: "deployment." + what, Key: r.service + "/" + r.region, Outcome: outcome,
		Decision: tai.Decision{Verdict: tai.Allow, Policy: r.version, Reason: reason},
		Start:    start, Duration: took,
	})
}

// applyCord follows the cord's shared state: every replica's line stops
// and starts with it, and active rollouts pause. A stop while the line is
// stopped changes nothing: the line, and the state kept for
// GET /andon/cord, keep the first reason and time. A state older than one
// applied already (by its store revision) changes nothing either: the
// cord's watcher may read a pull late, after the release written through
// this replica's API is in force, and that pull, applied, stopped the
// line again — the rollouts resumed on the started line paused once
// more, and stayed paused once the watcher read the release. (Revisions
// only grow while the control bucket lives; one deleted and made again
// under a running service starts them anew, and its cord is followed
// again once its revisions pass the last applied, or at the next start.)
func (s *Service) applyCord(c Cord) {
	s.cordMu.Lock()
	defer s.cordMu.Unlock()
	if c.Rev < s.cordRev {
		return
	}
	s.cordRev = c.Rev
	changed := false
	if c.Stopped {
		changed = s.line.Stop(c.Reason)
	} else {
		changed = s.line.Start()
	}
	if !changed {
		return
	}
	s.cord = c
	close(s.cordCh)
	s.cordCh = make(chan struct{})
	select {
	case s.cordSync <- struct{}{}:
	default: // followCord has yet to read the last change, and reads this one with it
	}
}

// cordState is the cord's state as this replica follows it: the stored
// state its line last stopped or started for (the zero Cord before any).
func (s *Service) cordState() Cord {
	s.cordMu.Lock()
	defer s.cordMu.Unlock()
	return s.cord
}

// cordNow is the cord's state as cordState, and the channel closed at
// its next change, read together: no change comes between the two.
func (s *Service) cordNow() (Cord, <-chan struct{}) {
	s.cordMu.Lock()
	defer s.cordMu.Unlock()
	return s.cord, s.cordCh
}

// cordChanged is closed at the next change of the cord.
func (s *Service) cordChanged() <-chan struct{} {
	s.cordMu.Lock()
	defer s.cordMu.Unlock()
	return s.cordCh
}

// deployMetrics are the service's own Prometheus metrics.
type deployMetrics struct {
	pipeline                  *kaizenprom.Metrics
	success, rollback, failed *prometheus.CounterVec
	duration, stage           *prometheus.HistogramVec
	analysis                  *prometheus.CounterVec
	mttr                      prometheus.Histogram
	active                    prometheus.Gauge
	errorRate, overdue        *prometheus.GaugeVec
}

// newMetrics makes the registry, the service's metrics and the rolling
// stats the alert rules and /kaizen read.
func (s *Service) newMetrics() error {
	s.registry = prometheus.NewRegistry()
	reg := s.registry
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &deployMetrics{
		success:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deployment_success_total", Help: "Deployments that succeeded in every region."}, []string{"strategy"}),
		rollback:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deployment_rollback_total", Help: "Deployments rolled back in at least one region."}, []string{"strategy"}),
		failed:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deployment_failed_total", Help: "Deployments that ended FAILED: refused by a prerequisite, or not started or not finished in a region."}, []string{"strategy"}),
		duration:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "deployment_duration_seconds", Help: "Time from request to the end of a deployment.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 14)}, []string{"status"}),
		stage:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "deployment_stage_duration_seconds", Help: "Time spent in a rollout stage.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 14)}, []string{"strategy", "stage", "verdict"}),
		analysis:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deployment_analysis_checks_total", Help: "Health analysis checks, by check and result."}, []string{"check", "result"}),
		mttr:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "deployment_rollback_recovery_seconds", Help: "From the failing health sample to traffic back on the old version.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		active:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "deployment_active", Help: "Region rollouts running in this process."}),
		errorRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "deployment_health_error_rate", Help: "The last sampled error rate of each rollout running in this process."}, []string{"service", "region", "version"}),
		overdue:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "deployment_stage_overdue_ratio", Help: "Time in a canary's first stage over its bake, for each canary in that stage in this process."}, []string{"service", "region", "stage"}),
	}
	reg.MustRegister(m.success, m.rollback, m.failed, m.duration, m.stage, m.analysis, m.mttr, m.active, m.errorRate, m.overdue)
	var err error
	if m.pipeline, err = kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{NoStages: true}); err != nil {
		return err
	}
	s.metrics = m
	s.stats, err = kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour}})
	return err
}

// openAudit continues the audit trail in the data dir.
func (s *Service) openAudit() error {
	path := filepath.Join(s.cfg.DataDir, "audit-"+s.cfg.Instance+".jsonl")
	audit, state, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Logger: s.log, Key: s.cfg.AuditKey.Reveal(), RotateBytes: svc.AuditFileBytes})
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	s.audit = audit
	s.log.Info("audit trail opened", "path", state.File, "lines", state.Lines, "keyed", s.cfg.AuditKey.IsSet())
	return nil
}

// stableSnapshot is a copy of the versions serving, as the store's
// watcher last saw them.
func (s *Service) stableSnapshot() map[string]string {
	s.stableMu.Lock()
	defer s.stableMu.Unlock()
	out := make(map[string]string, len(s.stableView))
	for k, v := range s.stableView {
		out[k] = v
	}
	return out
}

// wait registers for the states of deployment id; unwait ends it.
func (s *Service) wait(id string) chan *Deployment {
	ch := make(chan *Deployment, 1)
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	if s.waiters == nil {
		s.waiters = map[string][]chan *Deployment{}
	}
	s.waiters[id] = append(s.waiters[id], ch)
	return ch
}

func (s *Service) unwait(id string, ch chan *Deployment) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	list := s.waiters[id]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.waiters, id)
	} else {
		s.waiters[id] = list
	}
}

// waited reports whether a request waits for deployment id.
func (s *Service) waited(id string) bool {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	return len(s.waiters[id]) > 0
}

// notifyWaiters hands a deployment's new state to the requests waiting
// for it; each keeps only the latest.
func (s *Service) notifyWaiters(d *Deployment) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	for _, ch := range s.waiters[d.ID] {
		select {
		case <-ch:
		default:
		}
		ch <- d
	}
}

// dispatchCommand keeps a command as pending for its deployment and hands
// it to the deployment's rollout, if that runs in this process. A rollout
// that starts later reads it from the pending ones (pendingCommand): it
// registers before it reads, and a command is kept before it is handed
// on, so none falls between the two.
func (s *Service) dispatchCommand(id string, c Command) {
	s.cmdMu.Lock()
	if s.pending == nil {
		s.pending = map[string]Command{}
	}
	s.pending[id] = c
	s.cmdMu.Unlock()
	if v, ok := s.runs.Load(id); ok {
		v.(*rollout).deliver(c)
	}
}

// dropCommand forgets a deployment's pending command.
func (s *Service) dropCommand(id string) {
	s.cmdMu.Lock()
	delete(s.pending, id)
	s.cmdMu.Unlock()
}

// pendingCommand returns the last command sent to deployment id that is
// still pending, if any.
func (s *Service) pendingCommand(id string) (Command, bool) {
	s.cmdMu.Lock()
	defer s.cmdMu.Unlock()
	c, ok := s.pending[id]
	return c, ok
}

// closeWaiters answers the requests waiting for their deployment's end
// and ends the event streams, the board's included: the server is
// shutting down, and its Shutdown waits for every handler.
func (s *Service) closeWaiters() {
	s.closingOnce.Do(func() { close(s.closing) })
	if s.board != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.board.Shutdown(ctx); err != nil {
			s.log.Warn("board event streams still open", "err", err)
		}
	}
}

// Close stops the consumer (rollouts in progress are taken up again at
// the next start), flushes the audit trail and closes NATS.
func (s *Service) Close(ctx context.Context) error {
	s.ready.Store(false)
	s.closingOnce.Do(func() { close(s.closing) })
	if s.stop != nil {
		s.stop()
	}
	s.consumer.Wait()
	var errs []error
	if s.stopAlerts != nil {
		s.stopAlerts()
		s.alerting.Wait()
		errs = append(errs, s.andon.Shutdown(ctx))
	}
	if s.board != nil {
		errs = append(errs, s.board.Shutdown(ctx))
	}
	if s.queue != nil {
		errs = append(errs, s.queue.Shutdown(ctx))
	}
	// Before the audit trail: a reload writes to it.
	errs = append(errs, s.closeRules(ctx))
	if s.audit != nil {
		errs = append(errs, s.audit.Shutdown(ctx))
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i](ctx))
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Release())
	}
	return errors.Join(errs...)
}
