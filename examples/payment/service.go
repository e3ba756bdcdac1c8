package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/internal/datadir"
	"github.com/taipattern/taikit/examples/internal/httpapi"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/redisgcra"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kaizen/kaizenotel"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanhttp"
	"github.com/taipattern/taikit/kanban/kanbanotel"
	"github.com/taipattern/taikit/kanban/natsjs"
	"github.com/taipattern/taikit/tai"
)

// Confirmation is the message a successful charge leaves on the
// confirmation queue (the outbox); the consumer posts it to the ledger and
// marks the payment confirmed. It carries the payment as stored, so that a
// confirmation whose payment record was lost with its process (killed
// between the two writes) puts the record back.
type Confirmation struct {
	TransactionID string        `json:"transaction_id"`
	CustomerID    string        `json:"customer_id"`
	MerchantID    string        `json:"merchant_id"`
	Minor         int64         `json:"amount_minor"`
	Currency      string        `json:"currency"`
	ChargedAt     time.Time     `json:"charged_at"` // its answer's timestamp
	Payment       storedPayment `json:"payment"`
}

// Service is the payment service: the pipeline and everything around it.
type Service struct {
	cfg      Config
	log      *slog.Logger
	pipeline *tai.Pipeline[Payment, Charge]

	gateway *SimulatedGateway
	breaker *jidoka.Breaker
	line    *jidoka.Line
	limiter *heijunka.Keyed
	state   CustomerState
	rules   *fraudRules // the fraud policy: the Go rules or a CEL rule set
	idem    IdempotencyStore
	records *PaymentRecords
	// confirmer is the payments bucket as the confirmation consumer
	// reaches it, on connections of its own.
	confirmer *PaymentRecords
	owner     string // this run, as idempotency claims name it: "instance/boot"
	scope     string // prefix of idempotency keys: the API principal's (principalScope)

	queue     *natsjs.Queue[Confirmation]
	nc        *nats.Conn            // the queue's, and the service's own requests
	js        jetstream.JetStream   // on nc
	kvJS      []jetstream.JetStream // the payments' key-value traffic, each on a connection of its own
	confirmJS []jetstream.JetStream // the confirmation consumer's, likewise
	nats      *svc.NATS             // the server in use
	rdb       *redis.Client

	registry  *prometheus.Registry
	stats     *kaizen.Stats
	audit     *kaizen.Audit
	tracing   *sdktrace.TracerProvider
	tracer    trace.Tracer
	propagate propagation.TextMapPropagator

	transactions *prometheus.CounterVec
	fraud        prometheus.Counter
	badRequests  *prometheus.CounterVec
	confirmed    *prometheus.CounterVec
	fraudRules   *prometheus.CounterVec
	storeRefused *prometheus.CounterVec
	pendingGauge prometheus.Gauge
	storeBytes   *prometheus.GaugeVec
	storeLimit   *prometheus.GaugeVec
	levels       *storeLevels

	andon      *andon.Evaluator
	board      *andon.Board
	stopLine   andon.Hook
	queueOps   *kanbanhttp.Handler // the confirmation queue's dead letters: admin API and board panels
	stopAlerts context.CancelFunc
	alerting   sync.WaitGroup

	ready atomic.Bool
	// draining is set when the HTTP server begins to shut down: a
	// payment whose body arrives after it is refused.
	draining atomic.Bool
	consumer sync.WaitGroup
	stop     context.CancelFunc // stops the consumer
	heads    *auditHeads        // publishes the audit trail's head
	// headRevision is the revision of the head checkAuditHead found at
	// the start, which the first publication replaces; 0: none.
	headRevision    uint64
	instanceClashes prometheus.Counter // heads of this instance another process wrote
	// auditPath is the trail's first file, and auditState what
	// OpenAuditFile found in its last: the head published before the
	// start is checked against them.
	auditPath  string
	auditState kaizen.AuditFileState
	closers    []func(context.Context) error
	// Commits that failed after the money moved are retried in the
	// background (commitLater) until stored or Close.
	bg      context.Context
	stopBG  context.CancelFunc
	pending backgroundCommits
	// committing holds the transaction IDs being committed in the
	// background: their idempotency claims are alive, however old.
	committing sync.Map
	// recordLookedUp, when set (by a test), runs after a retry with a
	// claimed key looked its record up and found none.
	recordLookedUp func()
	// releasing counts idempotency keys freed (released, or their leases
	// ended) by retries in the background: freeLater. freeing is how many
	// run, at most maxFrees; freesClosed is set by Close, after which
	// none starts (nor a republish: confirmAgain); all three under freeMu.
	releasing    sync.WaitGroup
	freeMu       sync.Mutex
	freeing      int
	maxFrees     int
	freesClosed  bool
	freesDropped prometheus.Counter
	// republishing holds the transaction IDs whose confirmations are
	// stored again in the background (confirmAgain), each once, at most
	// maxRepublishes; republishes counts them. None starts once
	// freesClosed is set; republishN (how many run) under freeMu.
	republishing   sync.Map
	republishes    sync.WaitGroup
	republishN     int
	maxRepublishes int
	lock           *datadir.Lock // the data directory, held until Close
}

// NewService builds the service from cfg: it takes the data directory for
// this process (datadir.Acquire), then NATS (embedded unless NATSURL),
// Redis when RedisURL is set, the pipeline, and the confirmation consumer,
// which starts at once. Close releases it all, the directory last.
func NewService(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return newService(ctx, cfg, log, lock)
}

// newService is NewService on a data directory already held: it owns lock
// from here on, and releases it on Close (or when it fails).
func newService(ctx context.Context, cfg Config, log *slog.Logger, lock *datadir.Lock) (*Service, error) {
	s := &Service{cfg: cfg, log: log, lock: lock, owner: cfg.Instance + "/" + tai.NewID()[:12], maxFrees: maxBackgroundFrees,
		maxRepublishes: maxBackgroundFrees}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	s.scope = principalScope(cfg.APIPrincipal)
	ok := false
	defer func() {
		if !ok {
			_ = s.Close(context.Background())
		}
	}()
	if err := s.connectNATS(ctx); err != nil {
		return nil, err
	}
	if err := s.openRecords(ctx); err != nil {
		return nil, err
	}
	if err := s.connectRedis(ctx); err != nil {
		return nil, err
	}
	if err := s.customerState(ctx); err != nil {
		return nil, err
	}
	if err := s.measure(); err != nil {
		return nil, err
	}
	// Before anything is written to the trail: a start it refuses leaves
	// the trail as it found it.
	if err := svc.Setup(ctx, s.log, "checking the audit trail against its published head", s.checkAuditHead); err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	var err error
	if s.gateway, err = NewSimulatedGateway(cfg.GatewayFail, cfg.GatewayDelay); err != nil {
		return nil, err
	}
	if err := s.buildPipeline(ctx); err != nil {
		return nil, err
	}
	if err := s.startConsumer(ctx); err != nil {
		return nil, err
	}
	// The stores a payment writes are read once before the first payment:
	// the payments that arrive while the first read is under way would be
	// admitted unchecked otherwise, and a store that is full already found
	// full only once they were charged. A store that cannot be read fails
	// the start, as one that cannot be opened does (tried again while
	// JetStream is out of reach): the storage gate has no level of it to
	// go by, and would admit payments unchecked until a read got through.
	// Later, a store that cannot be read keeps its last level.
	if err := svc.Setup(ctx, s.log, "reading the stores' levels", func(ctx context.Context) error {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return s.levels.refresh(rctx)
	}); err != nil {
		return nil, fmt.Errorf("reading how full the stores a payment writes are: %w", err)
	}
	if err := s.startAlerts(ctx, "http://"+svc.PublicHostPort(cfg.Addr)+"/andon/"); err != nil {
		return nil, err
	}
	if err := s.startAuditHeads(ctx); err != nil {
		return nil, err
	}
	s.ready.Store(true)
	ok = true
	return s, nil
}

func (s *Service) connectNATS(ctx context.Context) error {
	var err error
	if s.nats, err = svc.StartNATS(ctx, s.cfg.NATSURL.Reveal(), s.cfg.DataDir, "payment "+s.cfg.Instance, s.log); err != nil {
		return err
	}
	s.closers = append(s.closers, s.nats.Shutdown)
	// One connection's writes go one at a time (an in-process one waits
	// for the server to read each), so the key-value traffic of payments
	// — records and idempotency keys — is spread over a few connections of
	// its own, and the confirmation consumer's over others, apart from the
	// queue's: confirming never holds up a payment's answer.
	for i := range 1 + kvConns + confirmConns {
		nc, err := s.nats.Connect()
		if err != nil {
			return err
		}
		s.closers = append(s.closers, svc.CloseConn(nc))
		if i == 0 {
			s.nc = nc
			continue
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		if i <= kvConns {
			s.kvJS = append(s.kvJS, js)
		} else {
			s.confirmJS = append(s.confirmJS, js)
		}
	}
	return nil
}

// The connections the key-value traffic of payments, and of the
// confirmation consumer, is spread over.
const (
	kvConns      = 4
	confirmConns = 2
)

// openRecords opens the payments bucket, where every decided payment is
// kept for GET /payment/{id}.
func (s *Service) openRecords(ctx context.Context) error {
	var err error
	if s.js, err = jetstream.New(s.nc); err != nil {
		return err
	}
	opts := RecordOptions{MaxBytes: s.cfg.PaymentsMaxBytes, MaxAge: s.cfg.PaymentsMaxAge, Replicas: s.cfg.NATSReplicas}
	return svc.Setup(ctx, s.log, "opening the payments bucket", func(ctx context.Context) (err error) {
		if s.records, err = NewPaymentRecords(ctx, s.kvJS, opts); err != nil {
			return err
		}
		if s.confirmer, err = NewPaymentRecords(ctx, s.confirmJS, opts); err != nil {
			return err
		}
		// The consumer confirms the charges the requests stored at the
		// revisions they were stored at, without reading them first.
		s.confirmer.created = s.records.created
		return nil
	})
}

func (s *Service) connectRedis(ctx context.Context) error {
	if !s.cfg.RedisURL.IsSet() {
		return nil
	}
	opts, err := redis.ParseURL(s.cfg.RedisURL.Reveal())
	if err != nil {
		// The error may quote the URL, password and all.
		return fmt.Errorf("-redis-url %s is not a Redis URL", svc.RedactURL(s.cfg.RedisURL.Reveal()))
	}
	// Every call is given a deadline of its own: the client ends it there
	// (go-redis waits for its own read timeout otherwise).
	opts.ContextTimeoutEnabled = true
	s.rdb = redis.NewClient(opts)
	rdb := s.rdb
	s.closers = append(s.closers, func(context.Context) error { return rdb.Close() })
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", svc.RedactURL(s.cfg.RedisURL.Reveal()), err)
	}
	// A cluster node answers a single-server client until the first key
	// of another node's slot, or the first script over a customer's keys,
	// which a cluster refuses unless they share a slot: every payment
	// would fail. A server that does not answer INFO (a proxy) is taken
	// at its word.
	if info, err := s.rdb.Info(ctx, "cluster").Result(); err == nil && strings.Contains(info, "cluster_enabled:1") {
		return fmt.Errorf("redis %s is a Redis Cluster node: the service needs one Redis server (a primary), as a customer's scripts touch several of its keys at once", svc.RedactURL(s.cfg.RedisURL.Reveal()))
	}
	return nil
}

// customerState picks where the fraud rules keep per-customer state:
// Redis or a NATS key-value bucket to share it across replicas, memory for
// one replica. A shared store that fails fails the payments it cannot
// check: the fraud rules do not run blind.
func (s *Service) customerState(ctx context.Context) error {
	if s.cfg.State != nil {
		s.state = s.cfg.State
		return nil
	}
	mode := s.cfg.CustomerState
	if mode == "auto" {
		// Durable by default, like the payments: the velocity and daily
		// limits must not start afresh when the process does.
		mode = "nats"
		if s.rdb != nil {
			mode = "redis"
		}
	}
	switch mode {
	case "redis":
		if s.rdb == nil {
			return errors.New("-customer-state redis needs -redis-url")
		}
		s.state = boundedState{NewRedisState(s.rdb, "payment:"), s.commitTimeout()}
	case "nats":
		js, err := jetstream.New(s.nc)
		if err != nil {
			return err
		}
		var st *NATSState
		if err := svc.Setup(ctx, s.log, "opening the customer state bucket", func(ctx context.Context) (err error) {
			st, err = NewNATSState(ctx, js, "payment_customers", s.cfg.StateMaxBytes, s.cfg.NATSReplicas)
			return err
		}); err != nil {
			return err
		}
		s.state = boundedState{st, s.commitTimeout()}
	default:
		s.state = NewMemoryState(s.cfg.StateMaxBytes)
	}
	return nil
}

// measure sets up metrics, stats, tracing and the audit trail.
func (s *Service) measure() error {
	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())
	s.transactions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payment_transaction_total", Help: "Payments answered, by status.",
	}, []string{"status"})
	s.fraud = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "payment_fraud_detected_total", Help: "Payments the fraud policy blocked or held for review.",
	})
	s.badRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payment_invalid_requests_total", Help: "Requests refused before processing, by HTTP status.",
	}, []string{"code"})
	for _, st := range []string{StatusSuccess, StatusFraudBlocked, StatusReview, StatusFailed, StatusRateLimited} {
		s.transactions.WithLabelValues(st)
	}
	s.confirmed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payment_confirmations_total", Help: "Confirmations handled: confirmed (the first), duplicate (already confirmed), refused (not a successful charge).",
	}, []string{"result"})
	s.storeRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payment_store_refused_total", Help: "Payments refused because a bounded store was full (at its byte limit or, for the confirmation queue, its message cap), and writes such a store refused, by store.",
	}, []string{"store"})
	s.freesDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "payment_idempotency_frees_dropped_total", Help: "Idempotency keys of requests that decided nothing left to their claims' leases, not freed in the background, as 1,024 keys were being freed there already.",
	})
	s.instanceClashes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "payment_instance_clashes_total", Help: "Audit heads of this -instance found written by another process since this one last wrote or read its own: two processes run as one -instance, and take over each other's idempotency claims.",
	})
	s.pendingGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "payment_commits_pending", Help: "Charged payments whose record or confirmation is still being stored in the background.",
	})
	s.storeBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "payment_store_bytes", Help: "Bytes a bounded JetStream store holds, by store (read at most once a second).",
	}, []string{"store"})
	s.storeLimit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "payment_store_limit_bytes", Help: "The byte limit of a bounded JetStream store, by store.",
	}, []string{"store"})
	for _, r := range []string{"confirmed", "duplicate", "refused"} {
		s.confirmed.WithLabelValues(r)
	}
	for _, st := range []string{"payments", "confirmations", "idempotency"} {
		s.storeRefused.WithLabelValues(st)
	}
	s.fraudRules = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payment_fraud_rule_hits_total", Help: "Payments a fraud rule added to the score of, by rule, whatever the verdict.",
	}, []string{"rule"})
	for _, r := range []string{"blacklist", "velocity", "amount", "daily_amount", "impossible_travel"} {
		s.fraudRules.WithLabelValues(r)
	}
	s.registry.MustRegister(s.fraudRules)
	s.registry.MustRegister(s.transactions, s.fraud, s.badRequests, s.confirmed, s.storeRefused, s.freesDropped, s.instanceClashes, s.pendingGauge, s.storeBytes, s.storeLimit)
	if m, ok := s.state.(*MemoryState); ok {
		s.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "payment_customer_state_evicted_total", Help: "Customers the in-memory fraud state forgot to stay within its byte limit, the least recently seen first.",
		}, func() float64 { return float64(m.Evicted()) }))
	}

	var err error
	if s.stats, err = newStats(); err != nil {
		return err
	}
	if s.tracing, err = newTracerProvider(s.cfg); err != nil {
		return err
	}
	tp := s.tracing
	s.tracer = tp.Tracer("github.com/taipattern/taikit/examples/payment")
	s.closers = append(s.closers, tp.Shutdown)
	s.propagate = propagation.TraceContext{}

	// The trail continues across restarts: OpenAuditFile checks the lines
	// already there, cuts a line a crash left half written, and goes on
	// with the chain, in a new file every svc.AuditFileBytes, so that a
	// start checks one file of bounded size. A trail that fails its check
	// stops the start, and the file is left as it is for inspection.
	path := filepath.Join(s.cfg.DataDir, "audit-"+s.cfg.Instance+".jsonl")
	audit, state, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Logger: s.log, Key: s.cfg.AuditKey.Reveal(), RotateBytes: svc.AuditFileBytes, Redact: s.cfg.auditWrite})
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	s.audit, s.auditPath, s.auditState = audit, path, state
	s.log.Info("audit trail opened", "path", state.File, "lines", state.Lines, "cut_bytes", state.Cut, "keyed", s.cfg.AuditKey.IsSet())
	return nil
}

func (s *Service) buildPipeline(ctx context.Context) error {
	var err error
	opts := heijunka.KeyedOptions{Name: "customer"}
	if s.rdb != nil {
		// Shared by every replica; a Redis outage lets payments through
		// (the fraud policy still sees them) rather than stopping sales.
		if opts.Store, err = redisgcra.New(redisgcra.Options{Client: s.rdb, Prefix: "payment:limit:", OnError: redisgcra.FailOpen}); err != nil {
			return err
		}
	} else if opts.Store, err = heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1_000_000}); err != nil {
		return err
	}
	opts.OnStoreError = func(_ string, err error) {
		s.log.Warn("rate limit store failed; letting payments through", "err", err)
	}
	s.limiter, err = heijunka.NewKeyed(heijunka.PerMinute(s.cfg.CustomerLimit), opts)
	if err != nil {
		return err
	}
	s.line, err = jidoka.NewLine(jidoka.LineOptions{Name: "payments", OnChange: func(ev jidoka.LineEvent) {
		// A start's Reason is that of the stop it ends: logged as such,
		// not as the reason of the line's state now.
		if ev.Stopped {
			s.log.Warn("payment line stopped", "stopped", true, "reason", ev.Reason)
			return
		}
		s.log.Warn("payment line started again", "stopped", false, "ended_stop", ev.Reason)
	}})
	if err != nil {
		return err
	}
	s.breaker, err = newBreaker(s.cfg.BreakerOpen, func(ev jidoka.Event) {
		s.log.Warn("gateway breaker changed", "from", ev.From, "to", ev.To, "reason", ev.Reason)
	})
	if err != nil {
		return err
	}

	if s.idem, err = s.idempotencyStore(ctx); err != nil {
		return err
	}
	if s.rules, err = newFraudRules(s.cfg, s.state, s.audit, s.log, s.registry); err != nil {
		return err
	}
	metrics, err := kaizenprom.NewMetrics(s.registry, kaizenprom.MetricsOptions{
		// A payment takes well under a millisecond when nothing waits:
		// buckets from 50 µs, and a native histogram for any resolution.
		Buckets:                     durationBuckets(),
		NativeHistogramBucketFactor: 1.1,
	})
	if err != nil {
		return err
	}
	jc, err := kaizenprom.NewJidokaCollector(s.registry, kaizenprom.CollectorOptions{})
	if err != nil {
		return err
	}
	if err := errors.Join(jc.AddBreaker(s.breaker), jc.AddLine(s.line)); err != nil {
		return err
	}
	hc, err := kaizenprom.NewHeijunkaCollector(s.registry, kaizenprom.CollectorOptions{})
	if err != nil {
		return err
	}
	if err := hc.AddKeyed(s.limiter); err != nil {
		return err
	}
	levelsJS := s.js
	if s.cfg.levelsJS != nil {
		levelsJS = s.cfg.levelsJS(levelsJS)
	}
	s.levels = &storeLevels{
		js:       levelsJS,
		stores:   []boundedStore{{"payments", "KV_payments"}, {"confirmations", confirmStream}},
		interval: time.Second,
		bytes:    s.storeBytes, limit: s.storeLimit, refused: s.storeRefused,
	}
	// The line first: a payment refused while it is stopped takes
	// nothing — not a place in the stores, nor one of its customer's
	// payments a minute, which would leave a customer who retried through
	// a stop rate limited once the line runs again. So does one the open
	// breaker would refuse (breakerGate). The customer's limit last, so
	// that a payment the stores refuse does not spend it either.
	s.pipeline, err = tai.New[Payment, Charge](s.rules.policy, tai.ActionFunc[Payment, Charge](s.charge),
		tai.WithGates(s.line, breakerGate{s.breaker}, storeGate{s.levels}, hc.Gate(customerGate{s.limiter, s.cfg.now})),
		tai.WithGuards(s.breaker),
		tai.WithObservers(metrics, s.stats, s.audit),
		tai.WithTracer(metrics.Tracer(kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: s.tracing}))),
		tai.WithHoldOnReview(),
		tai.WithLogger(s.log),
	)
	return err
}

// idempotencyStore opens where idempotency keys live: JetStream (the
// default; through restarts and across replicas) or, when asked for, this
// process's memory, which forgets them on restart.
func (s *Service) idempotencyStore(ctx context.Context) (IdempotencyStore, error) {
	if s.cfg.Idempotency == "memory" {
		s.log.Warn("idempotency keys are kept in memory: a restart forgets them, and a request retried after it charges again")
		return NewMemoryIdempotency(s.cfg.IdemMaxBytes, s.cfg.now), nil
	}
	var st *NATSIdempotency
	if err := svc.Setup(ctx, s.log, "opening the idempotency bucket", func(ctx context.Context) (err error) {
		st, err = NewNATSIdempotency(ctx, s.kvJS, IdemOptions{MaxBytes: s.cfg.IdemMaxBytes, Replicas: s.cfg.NATSReplicas}, s.cfg.now)
		return err
	}); err != nil {
		return nil, err
	}
	if !st.ShortMarkers() {
		s.log.Warn("the NATS server has no per-message TTLs (nats-server 2.11 or later has): a released idempotency key holds room in its bucket for a day")
	}
	return st, nil
}

// charge is the action: the gateway call, then the bookkeeping of a
// successful charge — the day's spend, unless the fraud rules held it
// already as they judged the payment (the Go rules and the CEL rules'
// lookup do, through reservePayment; see pay). Only the gateway's answer decides
// the outcome (and what the breaker counts): once money has moved, a
// failure to book the day's spend is logged, not returned. The payment's
// record and its confirmation are stored by the caller (commit), which
// has the answer.
func (s *Service) charge(ctx context.Context, sig tai.Signal[Payment]) (Charge, error) {
	p := &sig.Payload
	if sent, ok := ctx.Value(gatewayCallKey{}).(*gatewayCall); ok {
		sent.Store(true)
	}
	gr, err := s.gateway.Charge(ctx, sig.ID, *p)
	if err != nil {
		return Charge{}, err
	}
	if h, ok := ctx.Value(spendHoldKey{}).(*spendHold); ok {
		if hs, held := h.taken(); held && !hs.unanswered {
			return Charge{Gateway: gr}, nil // the day's spend was held as it was judged
		}
	}
	// The money moved: book it however little of the payment's deadline
	// is left (a shared store's call gets a deadline of its own:
	// boundedState).
	if err := s.state.AddSpend(context.WithoutCancel(ctx), p.CustomerID, p.Currency, p.Minor, s.cfg.now()); err != nil {
		s.log.Error("daily spend not recorded", "transaction_id", sig.ID, "err", err)
	}
	return Charge{Gateway: gr}, nil
}

// publishConfirmation stores a charge's confirmation in the JetStream
// queue and waits for the stream's acknowledgement. Its ID is the
// transaction ID, so a confirmation sent again (a retried commit) within
// the stream's deduplication window is stored once, and one that comes
// later finds its payment confirmed already.
func (s *Service) publishConfirmation(ctx context.Context, msg kanban.Message[Confirmation]) error {
	return s.sendConfirmation(ctx, msg, s.queue.Publish)
}

// sendConfirmation stores msg with publish (the queue's Publish, which
// waits for room, or TryPublish, which does not), in a span of its own.
func (s *Service) sendConfirmation(ctx context.Context, msg kanban.Message[Confirmation],
	publish func(context.Context, kanban.Message[Confirmation]) error) error {
	ctx, span := s.tracer.Start(ctx, "send "+confirmStream, trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() { // most spans are not: their attributes would be made for nothing
		span.SetAttributes(messagingAttrs("send", msg.ID)...)
	}
	if err := publish(ctx, msg); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return storeError("confirmations", err)
	}
	return nil
}

// A confirmation is tried confirmAttempts times, confirmBackoff apart:
// 0.25 s doubling to 15 s, about 90 s in all, before it is dead-lettered.
const confirmAttempts = 12

var confirmBackoff = kanban.Exponential{Initial: 250 * time.Millisecond, Max: 15 * time.Second}

// confirmStream is the confirmation queue's stream.
const confirmStream = "PAYMENT_CONFIRMATIONS"

// defaultConfirmCapacity is how many confirmations the queue holds: a
// payment is refused, as for a full store, before it would be the one
// more than that.
const defaultConfirmCapacity = 5_000_000

func (s *Service) startConsumer(ctx context.Context) error {
	opts := natsjs.Options{
		Replicas: s.cfg.NATSReplicas,
		Stream:   confirmStream,
		// Room for a backlog of minutes at full speed: under a burst the
		// consumer falls behind, and confirmations wait rather than fail.
		Capacity: cmp.Or(s.cfg.confirmCapacity, defaultConfirmCapacity),
		// Bounded by bytes too: beyond ConfirmMaxBytes new confirmations
		// are refused (the storage gate refuses payments before that), and
		// one left unprocessed is dropped after as long as payments are
		// kept.
		MaxBytes:         s.cfg.ConfirmMaxBytes,
		MaxAge:           s.cfg.PaymentsMaxAge,
		Durable:          "confirmer",
		DeadLetterStream: "PAYMENT_CONFIRMATIONS_DEAD",
		// Message IDs are remembered 10 s, not the default 2 minutes. A
		// confirmation sent again after the window finds its payment
		// confirmed (confirm counts it a duplicate), so the window
		// saves only that work; and at thousands of payments a second a
		// 2-minute window holds hundreds of thousands of IDs, tens of
		// megabytes of the embedded server's heap that every garbage
		// collection walks, which lengthens the latency tail.
		DedupWindow: 10 * time.Second,
		// Confirmations are published and waited for (Publish,
		// TryPublish), never with PublishAsync, whose re-publishing
		// would have to end within DedupWindow.
		AsyncAttempts: 1,
		// The W3C trace context alone: a caller's baggage stays out of
		// the messages.
		Propagator: kanbanotel.TraceContext(),
		Logger:     s.log,
		// Confirming is quick, and long handlers keep their lease anyway:
		// a short AckWait means acknowledgements lost in a NATS restart
		// hold their WIP slots for seconds, not half a minute.
		AckWait: 5 * time.Second,
	}
	if err := svc.Setup(ctx, s.log, "opening the confirmation queue", func(ctx context.Context) (err error) {
		s.queue, err = natsjs.New[Confirmation](ctx, s.nc, opts)
		return err
	}); err != nil {
		return fmt.Errorf("confirmation queue: %w", err)
	}
	kc, err := kaizenprom.NewKanbanCollector(s.registry, kaizenprom.CollectorOptions{})
	if err != nil {
		return err
	}
	if err := kc.AddQueue("confirmations", s.queue); err != nil {
		return err
	}
	observe, err := kc.HandlerObserver("confirmations")
	if err != nil {
		return err
	}
	// The queue's dead letters, through the admin API (listed, redriven,
	// deleted, with the admin token: their payloads are payments) and on
	// the board.
	s.queueOps, err = kanbanhttp.New(kanbanhttp.Options{Prefix: "/admin", AuthorizeReads: true, Logger: s.log,
		// Handler puts the queues behind requireAdmin, which answers a
		// request without the token itself; Authorize keeps them closed
		// to a request that reaches them any other way.
		Authorize: func(r *http.Request) error {
			if !httpapi.MatchesAdmin(r, s.cfg.AdminToken.Reveal()) {
				return errors.New("the queues need the admin token")
			}
			return nil
		},
		OnRefresh: func() {
			if s.board != nil {
				s.board.Notify()
			}
		}})
	if err != nil {
		return err
	}
	if err := s.queueOps.AddQueue("confirmations", s.queue); err != nil {
		return err
	}
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	s.consumer.Add(1)
	go func() {
		defer s.consumer.Done()
		err := s.queue.Consume(cctx, s.confirm, kanban.ConsumeOptions{
			WIP: s.cfg.ConfirmWIP,
			// A confirmation fails while the payments bucket is out of
			// reach: a NATS node lost, its groups electing new leaders,
			// takes seconds. Retried for about a minute and a half before
			// it is dead-lettered, it outlives that; five quick attempts
			// did not, and left charges unconfirmed.
			MaxAttempts:  confirmAttempts,
			Backoff:      confirmBackoff,
			DrainTimeout: 10 * time.Second,
			Logger:       s.log,
			Observer:     observe,
		})
		if err != nil {
			s.log.Error("confirmation consumer stopped", "err", err)
		}
	}()
	return nil
}

// confirm handles one confirmation: it posts the payment to the ledger
// (here: marks its record confirmed, once, by compare-and-set). Only a
// successful charge is confirmed; anything else is dead-lettered.
func (s *Service) confirm(ctx context.Context, d kanban.Delivery[Confirmation]) error {
	ctx, span := s.tracer.Start(ctx, "process "+confirmStream, trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(append(messagingAttrs("process", d.ID),
			attribute.String("messaging.consumer.group.name", "confirmer"), attribute.Int("messaging.delivery.attempt", d.Attempt))...)
	}
	c := d.Payload
	if c.TransactionID == "" || c.TransactionID != d.ID {
		return kanban.Permanent(fmt.Errorf("confirmation %q names transaction %q", d.ID, c.TransactionID))
	}
	if s.cfg.confirmWait != nil {
		s.cfg.confirmWait(c.TransactionID)
	}
	first, err := s.confirmer.Confirm(ctx, c.TransactionID, s.cfg.now(), c.Payment)
	switch {
	case errors.Is(err, ErrNotCharged):
		s.confirmed.WithLabelValues("refused").Inc()
		return kanban.Permanent(err)
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
		return err
	case first:
		s.confirmed.WithLabelValues("confirmed").Inc()
	default:
		s.confirmed.WithLabelValues("duplicate").Inc()
	}
	return nil
}

// newStats keeps the rolling windows the alerts and /kaizen read.
func newStats() (*kaizen.Stats, error) {
	return kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, alertWindow, time.Hour}})
}

// newBreaker guards the gateway: it opens after 5 consecutive failures,
// probes after open (30 s by default), and closes after 3 successful
// probes.
func newBreaker(open time.Duration, onChange func(jidoka.Event)) (*jidoka.Breaker, error) {
	return jidoka.NewBreaker(jidoka.BreakerOptions{
		Name:                "gateway",
		ConsecutiveFailures: 5,
		OpenDuration:        open,
		HalfOpenSuccesses:   3,
		OnStateChange:       onChange,
	})
}

// customerGate admits a payment when its customer is within the per-customer
// limit at the service's clock, so the limit and the fraud rules that
// count attempts agree on what time it is.
type customerGate struct {
	limiter *heijunka.Keyed
	now     func() time.Time
}

func (g customerGate) Name() string { return g.limiter.Name() }

func (g customerGate) Admit(ctx context.Context, key string) error {
	d, err := g.limiter.AllowN(ctx, g.now(), key, 1)
	switch {
	case err != nil:
		return fmt.Errorf("customer limit: %w", err)
	case d.Allowed:
		return nil
	}
	return &heijunka.LimitedError{Name: g.limiter.Name(), Decision: d}
}

// breakerGate refuses a payment while the gateway's breaker is open, as the
// breaker itself would once the payment reached the gateway call: before
// the customer's limit and the fraud rules, so that a payment that cannot
// reach the gateway spends nothing of its customer's payments a minute and
// is no attempt the velocity rule counts. A customer who retried through
// an outage is then neither rate limited nor blocked as too fast when the
// gateway is back. A half-open or closed breaker admits: the guard around
// the gateway call decides, and counts, as before.
type breakerGate struct{ breaker *jidoka.Breaker }

func (g breakerGate) Name() string { return g.breaker.Name() }

func (g breakerGate) Admit(ctx context.Context, _ string) error {
	if st := g.breaker.State(); st != jidoka.StateOpen && st != jidoka.StateForcedOpen {
		return nil
	}
	// Allow returns the open period's rejection (with its Retry-After).
	// Should the breaker have begun probing meanwhile, the probe's lease
	// is given back uncounted (a refusal, ErrOpen, is never counted) and
	// the guard takes the payment.
	done, err := g.breaker.Allow(ctx)
	if err != nil {
		return err
	}
	done(jidoka.ErrOpen)
	return nil
}

// Handler returns the service's HTTP API. With an API token, the payment
// API needs it (or the previous one, while that is set); the admin API
// (/admin/gateway, /admin/queues) needs the admin token, as a Bearer token
// or as the HTTP Basic password, and is off (403) without one; the board
// needs it too when it is set; metrics,
// statistics and health are open. A request for a Host not allowed gets
// 421, an unknown route or method a JSON 404 or 405.
func (s *Service) Handler() http.Handler {
	tokens := s.cfg.Tokens()
	reject := func(_ *http.Request, e *httpapi.Error) {
		s.badRequests.WithLabelValues(strconv.Itoa(e.Status)).Inc()
	}
	api := func(h http.HandlerFunc) http.Handler { return s.requireAPI(tokens, h, reject) }
	admin := func(h http.HandlerFunc) http.Handler { return s.requireAdmin(h) }
	mux := http.NewServeMux()
	mux.Handle("POST /payment", api(s.handlePayment))
	mux.Handle("GET /payment/{id}", api(s.handleGetPayment))
	mux.Handle("GET /admin/gateway", admin(s.handleGatewayAdmin))
	mux.Handle("POST /admin/gateway", admin(s.handleGatewayAdmin))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.Handle("GET /kaizen", statsHandler(s.stats))
	health := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /healthz", health)
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("/andon/", s.boardHandler()) // the board answers its errors in the schema
	queues := s.requireAdmin(s.queueOps)
	mux.Handle("/admin/queues", queues)
	mux.Handle("/admin/queues/", queues)
	return s.traceHTTP(mux, httpapi.AllowHosts(s.cfg.AllowedHosts, httpapi.JSONErrors(mux)))
}

// statsHandler serves the rolling statistics (h: the Stats), with its
// refusals in the one error schema: kaizen answers a kind it has no
// statistics of (none yet, or never) with a plain-text 404.
func statsHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&statsErrorWriter{ResponseWriter: w, r: r}, r)
	})
}

// statsErrorWriter replaces a plain-text error answer of the statistics
// with one in the error schema.
type statsErrorWriter struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool
}

func (e *statsErrorWriter) WriteHeader(code int) {
	if code < http.StatusBadRequest {
		e.ResponseWriter.WriteHeader(code)
		return
	}
	e.replaced = true
	var err *requestError
	switch code {
	case http.StatusBadRequest:
		msg := "the query gives kind more than once"
		if _, qerr := url.ParseQuery(e.r.URL.RawQuery); qerr != nil {
			msg = "the query does not parse: " + clip(qerr.Error())
		}
		err = &requestError{Status: code, Code: "invalid_request", Field: "kind", Message: msg}
	case http.StatusNotFound:
		err = &requestError{Status: code, Code: "not_found", Field: "kind",
			Message: fmt.Sprintf("no statistics of kind %q here (yet)", clip(e.r.URL.Query().Get("kind")))}
	case http.StatusMethodNotAllowed:
		err = &requestError{Status: code, Code: "method_not_allowed", Message: e.r.Method + " is not allowed on " + e.r.URL.Path}
	default:
		err = &requestError{Status: code, Code: "internal", Message: "internal error"}
	}
	writeError(e.ResponseWriter, err)
}

func (e *statsErrorWriter) Write(b []byte) (int, error) {
	if e.replaced {
		return len(b), nil
	}
	return e.ResponseWriter.Write(b)
}

// ConfigureServer sets srv up for the service: as soon as srv begins to
// shut down, payments not yet begun are refused (draining) and the board's
// event streams end (they would hold its Shutdown until their clients
// left).
func (s *Service) ConfigureServer(srv *http.Server) {
	srv.RegisterOnShutdown(func() {
		s.draining.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.board.Shutdown(ctx); err != nil {
			s.log.Warn("board event streams still open", "err", err)
		}
	})
}

// handleReady serves GET /readyz: ready while the service runs and its
// stores answer — NATS connected with JetStream answering (a server
// restarted without JetStream, or one that turned it off, keeps the
// connection up while every payment fails), and Redis when it is used.
func (s *Service) handleReady(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"nats": "ok", "jetstream": "ok"}
	ok := s.ready.Load()
	if !ok {
		checks["service"] = "starting or stopping"
	}
	if st := s.nc.Status(); st != nats.CONNECTED {
		checks["nats"], ok = st.String(), false
		checks["jetstream"] = "unknown"
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		_, err := s.js.AccountInfo(ctx)
		cancel()
		if err != nil {
			checks["jetstream"], ok = "unavailable", false
		}
	}
	if s.rdb != nil {
		checks["redis"] = "ok"
		if err := s.rdb.Ping(r.Context()).Err(); err != nil {
			checks["redis"], ok = "unreachable", false
		}
	}
	if stopped, reason := s.line.Stopped(); stopped {
		checks["line"] = "stopped: " + reason
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, checks)
}

// readyTimeout bounds GET /readyz's check of JetStream.
const readyTimeout = 2 * time.Second

func (s *Service) countPayment(status string) {
	s.transactions.WithLabelValues(status).Inc()
	if status == StatusFraudBlocked || status == StatusReview {
		s.fraud.Inc()
	}
}

func (s *Service) countRequestError(err error) {
	var re *requestError
	if errors.As(err, &re) {
		s.badRequests.WithLabelValues(fmt.Sprint(re.Status)).Inc()
	}
}

// Close stops the consumer (draining what it pulled), flushes the queue
// and the audit trail, and closes connections, in that order.
func (s *Service) Close(ctx context.Context) error {
	s.ready.Store(false)
	var errs []error
	if s.stopAlerts != nil {
		s.stopAlerts()
		s.alerting.Wait()
	}
	if s.board != nil {
		errs = append(errs, s.board.Shutdown(ctx))
	}
	if s.andon != nil {
		errs = append(errs, s.andon.Shutdown(ctx))
	}
	// Rule files stop being watched before the audit trail, which their
	// reloads are written to, closes.
	if s.rules != nil {
		errs = append(errs, s.rules.Shutdown(ctx))
	}
	// Commits still retrying in the background get until ctx ends.
	if s.stopBG != nil {
		if err := s.pending.wait(ctx); err != nil {
			s.log.Error("payments charged but not yet recorded at shutdown; their idempotency keys stay claimed", "err", err)
		}
		s.pending.close()
		s.freeMu.Lock()
		s.freesClosed = true
		s.freeMu.Unlock()
		s.stopBG()
		_ = s.pending.wait(context.Background())
		s.releasing.Wait()
		s.republishes.Wait()
	}
	if s.stop != nil {
		s.stop()
		s.consumer.Wait()
	}
	if s.queue != nil {
		errs = append(errs, s.queue.Shutdown(ctx))
	}
	if s.heads != nil {
		s.heads.stop()
		s.heads.wg.Wait()
	}
	if s.audit != nil {
		errs = append(errs, s.audit.Shutdown(ctx))
		if s.heads != nil {
			// The trail's final head, before NATS closes below.
			errs = append(errs, s.putAuditHead(ctx))
		}
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i](ctx))
	}
	// Last: nothing of this process touches the directory any more.
	errs = append(errs, s.lock.Release())
	return errors.Join(errs...)
}

// backgroundCommits counts the commits retried in the background
// (commitLater), which Close waits for. Unlike a sync.WaitGroup's, its
// count may rise while it is waited for: a request cut off at shutdown
// may still be finishing its payment as Close begins. Once closed, no
// commit begins.
type backgroundCommits struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n falls to 0 while waited for
}

// begin counts a commit in, and reports false once closed.
func (c *backgroundCommits) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.n++
	return true
}

// end counts a commit out.
func (c *backgroundCommits) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n--; c.n == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

// close lets no commit begin from now on.
func (c *backgroundCommits) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// wait returns once no commit runs, or with ctx's error when it ends
// first.
func (c *backgroundCommits) wait(ctx context.Context) error {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return nil
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NATSLocation says which NATS server is in use, for the log: the
// configured URL without its credentials, or "embedded (in-process)".
func (s *Service) NATSLocation() string { return s.nats.Location() }

// messagingAttrs are the OpenTelemetry messaging attributes of a
// confirmation's send or processing.
func messagingAttrs(operation, id string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", confirmStream),
		attribute.String("messaging.operation.type", operation),
		attribute.String("messaging.operation.name", operation),
		attribute.String("messaging.message.id", id),
	}
}

// durationBuckets are the duration histogram's bounds in seconds: from
// 50 µs, about 2.5 times apart, to 30 s.
func durationBuckets() []float64 {
	return []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}
