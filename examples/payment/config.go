package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taipattern/taikit/examples/internal/httpapi"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/kaizen"
)

// demoBlacklist is the blacklist of a service started without one: the
// customer the quick-start scenarios block, and the country the load
// generator's fraud comes from.
const demoBlacklist = "customer:cust_blacklist,country:KP"

// Config is the service's configuration: flags, each with an environment
// variable as fallback.
type Config struct {
	// Serving is the address, the tokens (the API token guards the
	// payment API, the admin token the admin API, the cord and the
	// board), the allowed hosts and the audit key.
	svc.Serving
	// APIPrincipal names who the API's callers are: the owner of their
	// idempotency keys, whichever token they send. "default" (or "")
	// is the principal of a service that names none.
	APIPrincipal string
	// APITokenPrevious is taken as the API token too: the token clients
	// move away from while the API token is rotated. Only with an API
	// token.
	APITokenPrevious svc.Secret
	NATSURL          svc.URL // empty: start an embedded NATS server
	NATSReplicas     int     // servers of a JetStream cluster holding each stream and bucket: 1, 3 or 5
	RedisURL         svc.URL // empty: limits and customer state in memory
	DataDir          string
	Idempotency      string
	CustomerState    string
	GatewayFail      float64
	GatewayDelay     time.Duration
	BreakerOpen      time.Duration // how long the gateway breaker stays open before it probes
	CustomerLimit    float64       // payments per minute per customer
	Fraud            FraudConfig
	BlacklistFile    string
	Blacklist        string
	ConfirmWIP       int
	AlertFraud       float64
	AlertP99         time.Duration
	AlertErrors      float64
	Alertmanager     svc.URL
	AlertLabels      map[string]string // added to every alert
	AlertInterval    time.Duration
	FraudStopsLine   bool
	// AuditAcceptLostHead starts the service even when its audit trail
	// no longer holds the head published for its instance.
	AuditAcceptLostHead bool
	PrintRules          bool
	OTLPEndpoint        svc.URL
	TraceSample         float64
	PaymentsMaxBytes    int64         // the payments bucket's byte limit
	PaymentsMaxAge      time.Duration // how long payments are kept
	IdemMaxBytes        int64         // the idempotency store's byte limit
	ConfirmMaxBytes     int64         // the confirmation stream's byte limit
	StateMaxBytes       int64         // the customer state's byte limit
	RequestTimeout      time.Duration // a payment's deadline, commit included
	Instance            string
	LogLevel            string
	DebugAddr           string

	// FraudRules is the fraud rules in force: "embedded" or empty
	// (rules/fraud.yaml, built in), "go" (the Go rules of fraud.go, with
	// the limits of Fraud), or the path of a CEL rule file, reloaded when
	// it changes.
	FraudRules string
	// FraudRulesInterval is how often a rule file is checked for changes.
	FraudRulesInterval time.Duration
	// FraudShadow, if set, is a candidate rule file ("embedded": the
	// built-in one) judged beside the live CEL rules in shadow mode:
	// compared and counted, never acted on. It is reloaded as FraudRules
	// is.
	FraudShadow string

	// Set by tests, not by flags.
	Clock          Clock                  // the service's clock; nil: the system clock
	TraceProcessor sdktrace.SpanProcessor // also receives every span
	State          CustomerState          // the fraud rules' per-customer state instead of -customer-state
	// auditWrite runs on the audit trail's writer before each line is
	// written (kaizen.AuditOptions.Redact): a slow disk, in tests.
	auditWrite func(*kaizen.AuditEntry)
	// confirmWait runs in the confirmation consumer before it confirms
	// a transaction: a consumer that lags behind the requests, in tests.
	confirmWait func(txnID string)
	// confirmCapacity caps the confirmation queue's messages; 0:
	// defaultConfirmCapacity.
	confirmCapacity int64
	// levelsJS wraps the JetStream context the storage gate reads the
	// stores' levels through: a store that cannot be read, in tests.
	levelsJS func(jetstream.JetStream) jetstream.JetStream
	// auditHeadEvery is how often the audit trail's head is published;
	// 0: auditHeadEvery.
	auditHeadEvery time.Duration
}

// Clock tells the service the time. It drives the fraud rules, the
// per-customer limit, idempotency expiry and audit timestamps; tests set
// one that moves only when told to.
type Clock interface {
	Now() time.Time
}

// now reads the configured clock.
func (c *Config) now() time.Time {
	if c.Clock != nil {
		return c.Clock.Now()
	}
	return time.Now()
}

// parseConfig reads flags from args, with environment fallbacks looked up
// through getenv.
func parseConfig(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("payment", flag.ContinueOnError)
	e := svc.NewEnv(getenv)
	env, envDur, envInt, envFloat, envBool := e.String, e.Duration, e.Int, e.Float, e.Bool
	var errs []error
	c.Register(fs, e, 3001, svc.Usage{API: "POST /payment and GET /payment/{id}",
		Admin: "the admin API (/admin/gateway, /admin/queues), the cord and the board"})
	envBytes := func(name string, def int64) *int64 {
		n := def
		if v := getenv(name); v != "" {
			// A value that does not parse is reported once: the
			// default stays, rather than a 0 the checks would refuse too.
			if got, err := parseBytes(v); err != nil {
				e.Fail(fmt.Errorf("%s=%q: %w", name, v, err))
			} else {
				n = got
			}
		}
		return &n
	}
	fs.StringVar(&c.APIPrincipal, "api-principal", env("API_PRINCIPAL", defaultPrincipal), "who the API's callers are: the owner of their idempotency keys, whichever token (-api-token, -api-token-previous) they send, so that a key outlives a rotation of the token; services of different principals may share an idempotency bucket (API_PRINCIPAL)")
	svc.SecretVar(fs, &c.APITokenPrevious, "api-token-previous", env("API_TOKEN_PREVIOUS", ""), "a second token taken on the API while clients move from it to -api-token; prefer -api-token-previous-file (API_TOKEN_PREVIOUS)")
	var previousFile string
	fs.StringVar(&previousFile, "api-token-previous-file", env("API_TOKEN_PREVIOUS_FILE", ""), "read -api-token-previous from this file (API_TOKEN_PREVIOUS_FILE)")
	svc.URLVar(fs, &c.NATSURL, "nats-url", env("NATS_URL", ""), "NATS server to use instead of the embedded one (NATS_URL)")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", envInt("NATS_REPLICAS", 1), "servers of a JetStream cluster that hold each stream and bucket: 1, or 3 to survive losing one (NATS_REPLICAS)")
	svc.URLVar(fs, &c.RedisURL, "redis-url", env("REDIS_URL", ""), "Redis for per-customer limits and fraud state shared across replicas (REDIS_URL)")
	fs.StringVar(&c.DataDir, "data-dir", env("DATA_DIR", filepath.Join(os.TempDir(), "taikit-payment")), "embedded NATS store and audit trail (DATA_DIR)")
	fs.StringVar(&c.Idempotency, "idempotency", env("IDEMPOTENCY_STORE", "nats"), "where idempotency keys live: nats (JetStream, kept through restarts and shared by replicas) or memory (this process only: a restart forgets every key, and a request retried after it charges again) (IDEMPOTENCY_STORE)")
	fs.StringVar(&c.CustomerState, "customer-state", env("CUSTOMER_STATE", "auto"), "fraud rules' per-customer state: nats (a JetStream key-value bucket, kept through restarts and shared by replicas), redis, memory (this process only: a restart forgets every customer's velocity and daily spend), or auto (redis with -redis-url, else nats) (CUSTOMER_STATE)")
	fs.Float64Var(&c.GatewayFail, "gateway-failure-rate", envFloat("GATEWAY_FAILURE_RATE", 0), "simulated gateway failure rate in [0, 1] (GATEWAY_FAILURE_RATE)")
	fs.DurationVar(&c.GatewayDelay, "gateway-latency", envDur("GATEWAY_LATENCY", 0), "simulated gateway latency (GATEWAY_LATENCY)")
	fs.DurationVar(&c.BreakerOpen, "breaker-open", envDur("BREAKER_OPEN", 30*time.Second), "how long the gateway breaker stays open before it probes (BREAKER_OPEN)")
	fs.Float64Var(&c.CustomerLimit, "customer-limit", envFloat("CUSTOMER_LIMIT", 5), "payments per minute per customer (CUSTOMER_LIMIT)")
	fs.IntVar(&c.Fraud.VelocityLimit, "velocity-limit", envInt("VELOCITY_LIMIT", 5), "payment attempts per minute per customer above which the velocity rule fires, at most 255 (VELOCITY_LIMIT)")
	fs.Float64Var(&c.Fraud.MaxAmount, "max-amount", envFloat("MAX_AMOUNT", 5000), "single payment above which it is flagged (+0.3); four times it is blocked (MAX_AMOUNT)")
	fs.Float64Var(&c.Fraud.MaxDaily, "max-daily", envFloat("MAX_DAILY", 5000), "total per customer and currency per UTC day above which a payment is flagged (+0.1) (MAX_DAILY)")
	fs.Float64Var(&c.Fraud.MaxSpeedKmh, "max-speed-kmh", envFloat("MAX_SPEED_KMH", 900), "fastest plausible travel between payment locations (MAX_SPEED_KMH)")
	fs.StringVar(&c.FraudRules, "fraud-rules", env("FRAUD_RULES", fraudRulesEmbedded), "the fraud rules: embedded (rules/fraud.yaml, built in), go (the Go rules, whose limits the -velocity-limit, -max-amount, -max-daily, -max-speed-kmh and -review-threshold flags set), or a CEL rule file, reloaded when it changes (FRAUD_RULES)")
	fs.StringVar(&c.FraudShadow, "fraud-shadow", env("FRAUD_SHADOW", ""), "a candidate CEL rule file judged beside the -fraud-rules in shadow mode: its verdicts compared and counted, never acted on; reloaded when it changes (FRAUD_SHADOW)")
	fs.DurationVar(&c.FraudRulesInterval, "fraud-rules-interval", envDur("FRAUD_RULES_INTERVAL", 5*time.Second), "how often a -fraud-rules or -fraud-shadow file is checked for changes (FRAUD_RULES_INTERVAL)")
	fs.StringVar(&c.Blacklist, "blacklist", env("BLACKLIST", demoBlacklist), "blacklisted customer:ID, merchant:ID, country:CC, comma separated; the default is a demo entry, -blacklist '' clears it (BLACKLIST)")
	fs.Float64Var(&c.Fraud.Review, "review-threshold", envFloat("REVIEW_THRESHOLD", 0), "fraud score from which a payment is held for review (202 REVIEW) instead of charged, in (0, 0.5]; 0 holds none (REVIEW_THRESHOLD)")
	fs.StringVar(&c.BlacklistFile, "blacklist-file", env("BLACKLIST_FILE", ""), "file of blacklist entries, one kind:value per line, # comments (BLACKLIST_FILE)")
	fs.IntVar(&c.ConfirmWIP, "confirm-wip", envInt("CONFIRM_WIP", 128), "confirmations in progress at once, across replicas (CONFIRM_WIP)")
	fs.Float64Var(&c.AlertFraud, "alert-fraud-rate", envFloat("ALERT_FRAUD_RATE", 0.02), "alert when the share of blocked payments exceeds this (ALERT_FRAUD_RATE)")
	fs.DurationVar(&c.AlertP99, "alert-p99", envDur("ALERT_P99", 5*time.Second), "alert when p99 latency exceeds this (ALERT_P99)")
	fs.Float64Var(&c.AlertErrors, "alert-error-rate", envFloat("ALERT_ERROR_RATE", 0.05), "alert when the share of failed payments exceeds this (ALERT_ERROR_RATE)")
	fs.DurationVar(&c.AlertInterval, "alert-interval", envDur("ALERT_INTERVAL", 15*time.Second), "how often the alert rules are evaluated (ALERT_INTERVAL)")
	fs.BoolVar(&c.FraudStopsLine, "fraud-stops-line", envBool("FRAUD_STOPS_LINE", false), "stop taking payments while the fraud-rate alert fires (FRAUD_STOPS_LINE=true)")
	fs.BoolVar(&c.AuditAcceptLostHead, "audit-accept-lost-head", envBool("AUDIT_ACCEPT_LOST_HEAD", false), "start even when the audit trail no longer holds the head last published for this -instance (cut or rewritten while the service was down); the trail's own head then replaces it (AUDIT_ACCEPT_LOST_HEAD=true)")
	fs.BoolVar(&c.PrintRules, "print-rules", false, "print the alert rules as a Prometheus rule file and exit")
	var alertLabels string
	fs.StringVar(&alertLabels, "alert-labels", env("ALERT_LABELS", ""), "labels added to every alert, as name=value,name=value (cluster=eu-1,team=payments); service= replaces the alerts' service=payment (ALERT_LABELS)")
	svc.URLVar(fs, &c.Alertmanager, "alertmanager-url", env("ALERTMANAGER_URL", ""), "push alerts to this Alertmanager (ALERTMANAGER_URL)")
	svc.URLVar(fs, &c.OTLPEndpoint, "otlp-endpoint", env("OTEL_EXPORTER_OTLP_ENDPOINT", ""), "export traces over OTLP/HTTP to this endpoint; off when empty (OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.Float64Var(&c.TraceSample, "trace-sample", envFloat("TRACE_SAMPLE", -1), "share of payments whose spans are recorded, in [0, 1]; -1: all when traces are exported, none otherwise (trace IDs are made either way) (TRACE_SAMPLE)")
	paymentsMax, idemMax := envBytes("PAYMENTS_MAX_BYTES", 2<<30), envBytes("IDEMPOTENCY_MAX_BYTES", 256<<20)
	confirmMax, stateMax := envBytes("CONFIRM_MAX_BYTES", 256<<20), envBytes("CUSTOMER_STATE_MAX_BYTES", 256<<20)
	fs.Var((*byteSize)(confirmMax), "confirm-max-bytes", "size of the confirmation queue; payments are refused with 503 while it is full (CONFIRM_MAX_BYTES)")
	fs.Var((*byteSize)(stateMax), "customer-state-max-bytes", "size of the fraud rules' per-customer state (memory or nats); beyond it the customers seen least recently are forgotten (CUSTOMER_STATE_MAX_BYTES)")
	fs.Var((*byteSize)(paymentsMax), "payments-max-bytes", "size of the payments store (JetStream); new payments are refused with 503 while it is full (PAYMENTS_MAX_BYTES)")
	fs.DurationVar(&c.PaymentsMaxAge, "payments-max-age", envDur("PAYMENTS_MAX_AGE", 7*24*time.Hour), "how long payments are kept for GET /payment/{id}; at least 25h, past the idempotency keys that point at them (PAYMENTS_MAX_AGE)")
	fs.Var((*byteSize)(idemMax), "idempotency-max-bytes", "size of the idempotency store; requests with a new key are refused with 503 while it is full (IDEMPOTENCY_MAX_BYTES)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", envDur("REQUEST_TIMEOUT", 30*time.Second), "deadline of a payment, storing it included; the HTTP write timeout is 10s more (REQUEST_TIMEOUT)")
	host, _ := os.Hostname()
	fs.StringVar(&c.Instance, "instance", env("INSTANCE", host), "this replica's name in logs and alerts (INSTANCE)")
	fs.StringVar(&c.DebugAddr, "debug-addr", env("DEBUG_ADDR", ""), "serve /debug/pprof (without the command line) on this address, which must be a loopback one (127.0.0.1:6060), as the profiles are not guarded by a token; off when empty (DEBUG_ADDR)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if previous, err := httpapi.ReadToken("api-token-previous", c.APITokenPrevious.Reveal(), previousFile); err != nil {
		errs = append(errs, err)
	} else {
		c.APITokenPrevious = svc.NewSecret(previous)
	}
	for _, kv := range strings.Split(alertLabels, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !labelName.MatchString(k) || v == "" {
			errs = append(errs, fmt.Errorf("-alert-labels %q is not name=value with a Prometheus label name", kv))
			continue
		}
		if why, set := ruleLabels[k]; set {
			errs = append(errs, fmt.Errorf("-alert-labels names %q, which %s", k, why))
			continue
		}
		if _, twice := c.AlertLabels[k]; twice {
			// One of the two would be dropped without a word.
			errs = append(errs, fmt.Errorf("-alert-labels names %q twice", k))
			continue
		}
		if c.AlertLabels == nil {
			c.AlertLabels = map[string]string{}
		}
		c.AlertLabels[k] = v
	}
	c.PaymentsMaxBytes, c.IdemMaxBytes, c.ConfirmMaxBytes, c.StateMaxBytes = *paymentsMax, *idemMax, *confirmMax, *stateMax
	errs = append(errs, goLimitFlags(fs, getenv, c.FraudRules))
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	errs = append(errs, e.Err(), c.Finish(), c.validate())
	return c, errors.Join(errs...)
}

func (c *Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	// A count that is not one is refused once: as not 1, 3 or 5, or, when
	// it is 3 or 5, for want of a cluster.
	if c.NATSReplicas != 1 && c.NATSReplicas != 3 && c.NATSReplicas != 5 {
		errs = append(errs, fmt.Errorf("-nats-replicas %d is not 1, 3 or 5", c.NATSReplicas))
	} else {
		check(c.NATSReplicas == 1 || c.NATSURL.IsSet(), "-nats-replicas %d needs a NATS cluster (-nats-url); the embedded server holds one replica", c.NATSReplicas)
	}
	if err := checkPrincipal(c.APIPrincipal); err != nil {
		errs = append(errs, err)
	}
	if err := c.checkPreviousToken(); err != nil {
		errs = append(errs, err)
	}
	check(c.DataDir != "", "-data-dir is empty: give the directory of the embedded NATS store and the audit trail")
	// The instance names the audit trail's file and is the first part of
	// an idempotency claim's owner, "instance/boot".
	check(svc.ValidInstance(c.Instance), "-instance %q must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.', nor ending with one or holding \"..\" (it names the audit trail's file and its head)", clip(c.Instance))
	check(c.DebugAddr == "" || httpapi.IsLoopback(c.DebugAddr), "-debug-addr %s listens beyond loopback: the profiles it serves are open to anyone who reaches the port; listen on 127.0.0.1 (or localhost), and reach it through SSH or kubectl port-forward", c.DebugAddr)
	check(c.Idempotency == "memory" || c.Idempotency == "nats", "-idempotency %q must be nats or memory", c.Idempotency)
	check(c.CustomerState == "auto" || c.CustomerState == "memory" || c.CustomerState == "redis" || c.CustomerState == "nats", "-customer-state %q must be auto, memory, redis or nats", c.CustomerState)
	check(c.CustomerState != "redis" || c.RedisURL.IsSet(), "-customer-state redis needs -redis-url")
	check(c.GatewayFail >= 0 && c.GatewayFail <= 1, "-gateway-failure-rate %v is outside [0, 1]", c.GatewayFail)
	check(c.GatewayDelay >= 0 && c.GatewayDelay <= time.Minute, "-gateway-latency %v is outside [0, 1m]", c.GatewayDelay)
	check(c.BreakerOpen >= 100*time.Millisecond && c.BreakerOpen <= time.Hour, "-breaker-open %v is outside [100ms, 1h]", c.BreakerOpen)
	if !(c.CustomerLimit > 0) || math.IsInf(c.CustomerLimit, 0) {
		errs = append(errs, fmt.Errorf("-customer-limit %v must be a positive number", c.CustomerLimit))
	} else if err := heijunka.PerMinute(c.CustomerLimit).Validate(); err != nil {
		// Too few to refill within years, or more than one a nanosecond.
		errs = append(errs, fmt.Errorf("-customer-limit %v: %w", c.CustomerLimit, err))
	}
	check(c.ConfirmWIP >= 1 && c.ConfirmWIP <= 10000, "-confirm-wip %d is outside [1, 10000]", c.ConfirmWIP)
	check(c.AlertFraud > 0 && c.AlertFraud < 1, "-alert-fraud-rate %v is outside (0, 1)", c.AlertFraud)
	check(c.AlertErrors > 0 && c.AlertErrors < 1, "-alert-error-rate %v is outside (0, 1)", c.AlertErrors)
	check(c.AlertP99 > 0, "-alert-p99 %v must be positive", c.AlertP99)
	check(c.AlertInterval >= 100*time.Millisecond, "-alert-interval %v must be at least 100ms", c.AlertInterval)
	check(c.Fraud.Review >= 0 && c.Fraud.Review <= 0.5, "-review-threshold %v is outside [0, 0.5]", c.Fraud.Review)
	check(c.FraudRulesInterval >= 100*time.Millisecond, "-fraud-rules-interval %v must be at least 100ms", c.FraudRulesInterval)
	if c.FraudRules == fraudRulesGo && c.FraudShadow != "" {
		errs = append(errs, errShadowNeedsCEL)
	}
	check(c.TraceSample == -1 || c.TraceSample >= 0 && c.TraceSample <= 1, "-trace-sample %v is outside [0, 1] (or -1 for auto)", c.TraceSample)
	check(c.PaymentsMaxBytes >= 1<<20, "-payments-max-bytes %d is less than 1MiB", c.PaymentsMaxBytes)
	check(c.PaymentsMaxAge >= idempotencyTTL+time.Hour, "-payments-max-age %v is less than 25h", c.PaymentsMaxAge)
	check(c.IdemMaxBytes >= 64<<10, "-idempotency-max-bytes %d is less than 64KiB", c.IdemMaxBytes)
	check(c.ConfirmMaxBytes >= 1<<20, "-confirm-max-bytes %d is less than 1MiB", c.ConfirmMaxBytes)
	check(c.StateMaxBytes >= 1<<20, "-customer-state-max-bytes %d is less than 1MiB", c.StateMaxBytes)
	check(c.RequestTimeout >= time.Second && c.RequestTimeout <= 5*time.Minute, "-request-timeout %v is outside [1s, 5m]", c.RequestTimeout)
	errs = append(errs, svc.CheckLogLevel(c.LogLevel))
	bl, err := ParseBlacklist(c.Blacklist)
	if err != nil {
		errs = append(errs, fmt.Errorf("-blacklist: %w", err))
	}
	if c.BlacklistFile != "" {
		b, err := os.ReadFile(c.BlacklistFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("-blacklist-file: %w", err))
		}
		for i, line := range strings.Split(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			if strings.TrimSpace(line) == "" {
				continue
			}
			more, err := ParseBlacklist(line)
			if err != nil {
				errs = append(errs, fmt.Errorf("-blacklist-file %s line %d: %w", c.BlacklistFile, i+1, err))
				continue
			}
			for k := range more.Customers {
				bl.Customers[k] = true
			}
			for k := range more.Merchants {
				bl.Merchants[k] = true
			}
			for k := range more.Countries {
				bl.Countries[k] = true
			}
		}
	}
	c.Fraud.Blacklist = bl
	if c.FraudRules == fraudRulesGo {
		// FraudConfig reads a zero limit as unset and puts its default
		// in its place: a flag given 0 would run the Go rules with 5
		// attempts, 5,000 or 900 km/h, not what it asked for. (A negative
		// limit is refused by defaults below; with a rule file the flags
		// are refused whatever their value: goLimitFlags.)
		check(c.Fraud.VelocityLimit != 0, "-velocity-limit 0 must be at least 1")
		check(c.Fraud.MaxAmount != 0, "-max-amount 0 must be a positive number")
		check(c.Fraud.MaxDaily != 0, "-max-daily 0 must be a positive number")
		check(c.Fraud.MaxSpeedKmh != 0, "-max-speed-kmh 0 must be a positive number")
	}
	f := c.Fraud
	if err := f.defaults(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// goLimitFlags refuses the flags (or their environment variables) that
// set the Go rules' limits unless the Go rules are in force: a CEL rule
// file holds its own limits, and a flag it would ignore must not look as
// if it counted.
func goLimitFlags(fs *flag.FlagSet, getenv func(string) string, rules string) error {
	if rules == fraudRulesGo {
		return nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	file := "the built-in rules/fraud.yaml"
	if rules != fraudRulesEmbedded && rules != "" {
		file = rules
	}
	var errs []error
	for _, f := range []struct{ flag, env string }{
		{"velocity-limit", "VELOCITY_LIMIT"}, {"max-amount", "MAX_AMOUNT"}, {"max-daily", "MAX_DAILY"},
		{"max-speed-kmh", "MAX_SPEED_KMH"}, {"review-threshold", "REVIEW_THRESHOLD"},
	} {
		if given[f.flag] || getenv(f.env) != "" {
			errs = append(errs, fmt.Errorf("-%s (%s) sets a limit of the Go fraud rules, but the CEL rules of %s are in force (-fraud-rules), with their limits in the file: change it there (a copy of examples/payment/rules/fraud.yaml given to -fraud-rules), or use the Go rules with -fraud-rules go", f.flag, f.env, file))
		}
	}
	return errors.Join(errs...)
}

// ruleLabels are the labels the alert rules set themselves, which
// -alert-labels may not name, and why.
var ruleLabels = map[string]string{
	"alertname": "is the alert rule's name",
	"severity":  "the alert rules set (page)",
	"instance":  "every alert evaluated in the service carries, as -instance names it (Prometheus adds its own to the printed rules' alerts)",
}

// labelName is a Prometheus label name.
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// byteSize is a flag holding a size in bytes: a number with an optional
// unit, KiB, MiB or GiB (or KB, MB, GB, which mean the same here).
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	return formatBytes(int64(*b))
}

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// parseBytes reads "512", "64KiB", "256MiB", "2GiB".
func parseBytes(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGiBkmgb")
	unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q is not a number of bytes (like 512MiB)", s)
	}
	shift := map[string]uint{"": 0, "B": 0, "K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20, "MIB": 20, "G": 30, "GB": 30, "GIB": 30}
	sh, ok := shift[unit]
	if !ok {
		return 0, fmt.Errorf("size %q has an unknown unit (use KiB, MiB or GiB)", s)
	}
	if n > math.MaxInt64>>sh {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n << sh, nil
}

// formatBytes writes n in the largest unit that divides it.
func formatBytes(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
