package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/internal/httpapi"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// The values of -fraud-rules that name no file.
const (
	fraudRulesEmbedded = "embedded" // rules/fraud.yaml, built in
	fraudRulesGo       = "go"       // the Go rules of fraud.go
)

// fraudRules is the service's fraud policy, and what the board and
// /metrics say of it: the Go rules, or a CEL rule set — the built-in
// file, or a file a taicel.Loader follows and reloads when it changes —
// and, in shadow mode, a candidate set judging every payment beside it,
// compared and counted, never acted on.
type fraudRules struct {
	policy  tai.Policy[Payment]
	live    *ruleSource
	shadow  *ruleSource             // the candidate; nil without -fraud-shadow
	compare *taicel.Shadow[Payment] // the policy in shadow mode; nil without
	loaders []*taicel.Loader[Payment]
	log     *slog.Logger
	reloads *prometheus.CounterVec
	board   atomic.Pointer[andon.Board] // told when a set changes; set once the board exists
}

// ruleSource is one rule set in force, as the board shows it: where it
// comes from, its name, version and SHA-256, when it was put in force,
// and the last file refused.
type ruleSource struct {
	role   string // "live" or "shadow"
	source string // "go", "embedded" or the rule file's path
	// current returns the set in force; nil for the Go rules.
	current func() *taicel.Set[Payment]

	mu      sync.Mutex
	version string
	hash    string
	loaded  time.Time
	refused time.Time
	refusal string
}

// newFraudRules builds the fraud policy cfg asks for: the Go rules with
// -fraud-rules go; otherwise the CEL rules of the built-in file or of
// cfg.FraudRules, which a Loader watches every cfg.FraudRulesInterval,
// and with cfg.FraudShadow a candidate set in shadow mode beside them.
// Every rule set put in force and every file refused is logged, counted,
// shown on the board and written to the audit trail (obs).
func newFraudRules(cfg Config, state CustomerState, obs tai.Observer, log *slog.Logger, reg prometheus.Registerer) (*fraudRules, error) {
	r := &fraudRules{log: log}
	r.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payment_fraud_rules_loads_total",
		Help: "Fraud rule sets put in force (loaded) and rule files refused (refused), by set (live, or shadow: the candidate).",
	}, []string{"set", "result"})
	for _, res := range []string{"loaded", "refused"} {
		r.reloads.WithLabelValues("live", res)
		if cfg.FraudShadow != "" {
			r.reloads.WithLabelValues("shadow", res)
		}
	}
	if err := r.build(cfg, state, obs); err != nil {
		_ = r.Shutdown(context.Background())
		return nil, err
	}
	if err := errors.Join(reg.Register(r.reloads), reg.Register(r)); err != nil {
		_ = r.Shutdown(context.Background())
		return nil, err
	}
	return r, nil
}

func (r *fraudRules) build(cfg Config, state CustomerState, obs tai.Observer) error {
	if cfg.FraudRules == fraudRulesGo && cfg.FraudShadow != "" {
		return errShadowNeedsCEL
	}
	if cfg.FraudRules == fraudRulesGo {
		pol, err := NewFraudPolicy(cfg.Fraud, state, cfg.now)
		if err != nil {
			return err
		}
		r.policy = pol
		r.live = &ruleSource{role: "live", source: fraudRulesGo, version: "go", loaded: time.Now()}
		r.log.Info("fraud rules in force", "set", "live", "rules", "go (fraud.go)")
		return nil
	}
	if err := goLimitsUnset(cfg.Fraud); err != nil {
		return err
	}
	env, err := NewFraudEnv(cfg.Fraud, state, cfg.now)
	if err != nil {
		return err
	}
	source := cfg.FraudRules
	if source == "" {
		source = fraudRulesEmbedded
	}
	live, set, err := r.open("live", "-fraud-rules", source, env, cfg.FraudRulesInterval, obs)
	if err != nil {
		return err
	}
	r.live, r.policy = live, set
	if cfg.FraudShadow == "" {
		return nil
	}
	shadow, candidate, err := r.open("shadow", "-fraud-shadow", cfg.FraudShadow, env, cfg.FraudRulesInterval, obs)
	if err != nil {
		return err
	}
	r.shadow = shadow
	r.compare, err = taicel.NewShadow[Payment](set, candidate, taicel.ShadowOptions[Payment]{
		OnDisagree: func(sig tai.Signal[Payment], live, candidate tai.Decision) {
			r.log.Debug("shadow fraud rules disagree", "transaction_id", sig.ID, "live", live.Verdict, "live_reason", live.Reason,
				"candidate", candidate.Verdict, "candidate_reason", candidate.Reason)
		},
		OnError: func(sig tai.Signal[Payment], err error) {
			r.log.Debug("shadow fraud rules could not judge a payment", "transaction_id", sig.ID, "err", err)
		},
	})
	if err != nil {
		return err
	}
	r.policy = r.compare
	return nil
}

// errShadowNeedsCEL refuses a shadow beside the Go rules: a candidate is
// compared with a live CEL rule set, on the same variables.
var errShadowNeedsCEL = errors.New("-fraud-shadow needs CEL rules in force (-fraud-rules embedded or a rule file), not the Go rules")

// ruleSet is a CEL rule set in force: the built-in one (a *taicel.Set) or
// a file's (a *taicel.Loader).
type ruleSet interface {
	tai.Policy[Payment]
	taicel.Source[Payment]
}

// open puts the rule set of source in force for role: the built-in file,
// compiled once, or a file a Loader watches. flag names the setting in
// errors.
func (r *fraudRules) open(role, flag, source string, env *taicel.Env[Payment], interval time.Duration, obs tai.Observer) (*ruleSource, ruleSet, error) {
	src := &ruleSource{role: role, source: source}
	if source == fraudRulesEmbedded {
		set, err := compileFraudRules(env, defaultFraudRules)
		if err != nil {
			return nil, nil, fmt.Errorf("the built-in fraud rules: %w", err)
		}
		src.current = func() *taicel.Set[Payment] { return set }
		r.loaded(src, taicel.Reload{Path: source, Time: time.Now(), Version: set.Version(), Hash: sha256Hex(defaultFraudRules)})
		if obs != nil {
			obs.Observe(context.Background(), loadRecord(source, set.Name(), set.Version(), sha256Hex(defaultFraudRules)))
		}
		return src, set, nil
	}
	l, err := taicel.NewLoader(env, source, taicel.LoaderOptions{
		Interval: interval,
		OnReload: func(rep taicel.Reload) { r.loaded(src, rep) },
		Observer: obs,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flag, err)
	}
	src.current = l.Current
	r.loaders = append(r.loaders, l)
	return src, l, nil
}

// loadRecord is the audit trail's record of a rule set put in force, as a
// taicel.Loader writes one for a file.
func loadRecord(source, name, version, hash string) tai.Record {
	rec := tai.Record{ID: tai.NewID(), Kind: taicel.ReloadKind, Key: source, Outcome: tai.Succeeded, Start: time.Now()}
	rec.Decision = tai.Decision{Verdict: tai.Allow, Policy: name, Reason: "version " + version + " sha256 " + hash}
	return rec
}

// loaded records a load of src's rule file: a set put in force, or a file
// refused while the set in force keeps running.
func (r *fraudRules) loaded(src *ruleSource, rep taicel.Reload) {
	src.mu.Lock()
	if rep.Err == nil {
		src.version, src.hash, src.loaded = rep.Version, rep.Hash, rep.Time
	} else {
		src.refused, src.refusal = rep.Time, rep.Err.Error()
	}
	src.mu.Unlock()
	if rep.Err == nil {
		r.reloads.WithLabelValues(src.role, "loaded").Inc()
		r.log.Info("fraud rules in force", "set", src.role, "rules", rep.Path, "version", rep.Version, "sha256", rep.Hash)
	} else {
		r.reloads.WithLabelValues(src.role, "refused").Inc()
		r.log.Warn("fraud rule file refused; the rules in force keep running", "set", src.role, "rules", rep.Path, "version", rep.Version, "sha256", rep.Hash, "err", rep.Err)
	}
	if b := r.board.Load(); b != nil {
		b.Notify()
	}
}

// Shutdown stops watching the rule files.
func (r *fraudRules) Shutdown(ctx context.Context) error {
	var errs []error
	for _, l := range r.loaders {
		errs = append(errs, l.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// ruleSourceView is a ruleSource at one moment.
type ruleSourceView struct {
	Role, Source, Name, Version, Hash string
	Loaded, Refused                   time.Time
	Refusal                           string
}

func (s *ruleSource) view() ruleSourceView {
	s.mu.Lock()
	v := ruleSourceView{Role: s.role, Source: s.source, Version: s.version, Hash: s.hash, Loaded: s.loaded, Refused: s.refused, Refusal: s.refusal}
	s.mu.Unlock()
	v.Name = "fraud"
	if s.current != nil {
		v.Name = s.current().Name()
	}
	return v
}

// describe names where a set comes from, for people.
func (v ruleSourceView) describe() string {
	switch v.Source {
	case fraudRulesGo:
		return "Go rules (fraud.go)"
	case fraudRulesEmbedded:
		return "rules/fraud.yaml (built in)"
	}
	return v.Source
}

// Panels are the board's panels of the fraud rules: the sets in force,
// and in shadow mode the rules the two sets disagree on.
func (r *fraudRules) Panels() []andon.Panel {
	panels := []andon.Panel{{
		Title:   "Fraud rules",
		Columns: []string{"set", "rules", "name", "version", "sha256", "in force since", "last refusal", "disagreement rate"},
		Rows: func() []andon.PanelRow {
			rows := []andon.PanelRow{r.row(r.live.view(), "")}
			if r.shadow != nil {
				st := r.compare.Stats()
				rate := fmt.Sprintf("%.2f%% of %d", 100*st.DisagreementRate(), st.Agreements+st.Disagreements)
				if st.Errors > 0 {
					rate += fmt.Sprintf("; %d not judged", st.Errors)
				}
				rows = append(rows, r.row(r.shadow.view(), rate))
			}
			return rows
		},
	}}
	if r.shadow == nil {
		return panels
	}
	return append(panels, andon.Panel{
		Title:   "Shadow disagreements by rule",
		Columns: []string{"rule", "disagreements"},
		Empty:   "no disagreement yet",
		Rows: func() []andon.PanelRow {
			st := r.compare.Stats()
			rules := make([]string, 0, len(st.ByRule))
			for rule := range st.ByRule {
				rules = append(rules, rule)
			}
			// The most disagreeing first.
			slices.SortFunc(rules, func(a, b string) int {
				if st.ByRule[a] != st.ByRule[b] {
					return int(st.ByRule[b]) - int(st.ByRule[a])
				}
				return strings.Compare(a, b)
			})
			rows := make([]andon.PanelRow, len(rules))
			for i, rule := range rules {
				rows[i] = andon.PanelRow{Cells: []string{rule, fmt.Sprint(st.ByRule[rule])}}
			}
			return rows
		},
	})
}

// row is a rule set on the board: amber while the last file read was
// refused (the file on disk is not the set in force); a shadow set grey
// otherwise, as it decides nothing.
func (r *fraudRules) row(v ruleSourceView, rate string) andon.PanelRow {
	hash := v.Hash
	if len(hash) > 12 {
		hash = hash[:12]
	}
	refusal := ""
	color := "green"
	if v.Role == "shadow" {
		color = "grey"
	}
	if !v.Refused.IsZero() {
		refusal = v.Refused.UTC().Format(time.RFC3339) + ": " + firstLine(v.Refusal, 200)
		if v.Refused.After(v.Loaded) {
			color = "amber"
		}
	}
	return andon.PanelRow{Color: color, Cells: []string{
		v.Role, v.describe(), v.Name, v.Version, hash, v.Loaded.UTC().Format(time.RFC3339), refusal, rate,
	}}
}

// firstLine is the first line of s, cut to at most n bytes between
// characters (httpapi.Clip).
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	return httpapi.Clip(s, n)
}

var (
	fraudRulesInfo = prometheus.NewDesc("payment_fraud_rules_info",
		"The fraud rule sets in force (1), by set (live, or shadow: the candidate), rules (go, embedded or the file's path), name, version and SHA-256.",
		[]string{"set", "rules", "name", "version", "sha256"}, nil)
	shadowSignals = prometheus.NewDesc("payment_fraud_shadow_signals_total",
		"Payments the shadow fraud rules (-fraud-shadow) were given beside the live rules.", nil, nil)
	shadowAgreements = prometheus.NewDesc("payment_fraud_shadow_agreements_total",
		"Payments the shadow fraud rules judged with the live rules' verdict.", nil, nil)
	shadowDisagreements = prometheus.NewDesc("payment_fraud_shadow_disagreements_total",
		"Payments the shadow fraud rules judged with another verdict than the live rules (never acted on).", nil, nil)
	shadowErrors = prometheus.NewDesc("payment_fraud_shadow_errors_total",
		"Payments the shadow fraud rules could not judge.", nil, nil)
	shadowRuleDisagreements = prometheus.NewDesc("payment_fraud_shadow_rule_disagreements_total",
		"Disagreements in which a rule fired differently in the shadow and the live fraud rules (in one only, or with another score), by rule.",
		[]string{"rule"}, nil)
)

// Describe implements prometheus.Collector.
func (r *fraudRules) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fraudRulesInfo, shadowSignals, shadowAgreements, shadowDisagreements, shadowErrors, shadowRuleDisagreements} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the sets in force, and in
// shadow mode the shadow's counts.
func (r *fraudRules) Collect(ch chan<- prometheus.Metric) {
	for _, src := range []*ruleSource{r.live, r.shadow} {
		if src != nil {
			v := src.view()
			ch <- prometheus.MustNewConstMetric(fraudRulesInfo, prometheus.GaugeValue, 1, v.Role, v.Source, v.Name, v.Version, v.Hash)
		}
	}
	if r.compare == nil {
		return
	}
	st := r.compare.Stats()
	ch <- prometheus.MustNewConstMetric(shadowSignals, prometheus.CounterValue, float64(st.Signals))
	ch <- prometheus.MustNewConstMetric(shadowAgreements, prometheus.CounterValue, float64(st.Agreements))
	ch <- prometheus.MustNewConstMetric(shadowDisagreements, prometheus.CounterValue, float64(st.Disagreements))
	ch <- prometheus.MustNewConstMetric(shadowErrors, prometheus.CounterValue, float64(st.Errors))
	for rule, n := range st.ByRule {
		ch <- prometheus.MustNewConstMetric(shadowRuleDisagreements, prometheus.CounterValue, float64(n), rule)
	}
}

// goLimitsUnset refuses a FraudConfig whose limits differ from the
// defaults when CEL rules are in force: those limits are the Go rules',
// and the rule file has its own.
func goLimitsUnset(c FraudConfig) error {
	def := FraudConfig{}
	if err := def.defaults(); err != nil {
		return err
	}
	if err := c.defaults(); err != nil {
		return err
	}
	var set []string
	for _, f := range []struct {
		name string
		diff bool
	}{
		{"VelocityLimit", c.VelocityLimit != def.VelocityLimit},
		{"VelocityWindow", c.VelocityWindow != def.VelocityWindow},
		{"MaxAmount", c.MaxAmount != def.MaxAmount},
		{"MaxDaily", c.MaxDaily != def.MaxDaily},
		{"MaxSpeedKmh", c.MaxSpeedKmh != def.MaxSpeedKmh},
		{"MinDistanceKm", c.MinDistanceKm != def.MinDistanceKm},
		{"Deny", c.Deny != def.Deny},
		{"Review", c.Review != def.Review},
	} {
		if f.diff {
			set = append(set, f.name)
		}
	}
	if len(set) > 0 {
		return fmt.Errorf("fraud: %s set for the Go rules, but CEL rules are in force, whose limits are in their rule file: change them there, or use the Go rules (-fraud-rules go)", strings.Join(set, ", "))
	}
	return nil
}
