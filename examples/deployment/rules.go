package main

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// The rule files built in: what the service runs unless -rules says
// otherwise. A -rules directory holds files of the same names.
var (
	//go:embed rules/prerequisites.yaml
	defaultPrerequisites []byte
	//go:embed rules/analysis.yaml
	defaultAnalysis []byte
)

const (
	prerequisitesFile = "prerequisites.yaml"
	analysisFile      = "analysis.yaml"
	// rulesGo is the -rules value that keeps the Go rules.
	rulesGo = "go"
	// builtIn is the source of a rule set compiled from a file built in.
	builtIn = "built in"
)

// ruleSet is one version of a rule file, compiled: the whole set, and the
// same rules cut into steps, one for each part in turn.
//
// A rule's part is its name up to the first "." (region_capacity for
// region_capacity.room): the prerequisite or the check it belongs to.
// taicel names the set, not the rule, in a decision; cutting the verdict
// rules into one set per run of rules of the same part makes the part the
// decision's Policy, as tai.Named does for the Go rules, and each step its
// own span.
type ruleSet[T any] struct {
	whole  *taicel.Set[T]
	steps  []ruleStep[T]
	parts  []string  // each part once, in the order of the file
	hash   string    // the file's SHA-256, in hex
	source string    // the file's path, or builtIn
	loaded time.Time // when it was compiled
}

// ruleStep is a run of consecutive verdict rules of one part, or all the
// scored rules (scored), compiled as a set of their own.
type ruleStep[T any] struct {
	name   string
	set    *taicel.Set[T]
	scored bool
}

// partOf is the part a rule belongs to: its name up to the first ".".
func partOf(rule string) string {
	part, _, _ := strings.Cut(rule, ".")
	return part
}

// compileRules parses and compiles a rule file's text.
func compileRules[T any](env *taicel.Env[T], data []byte, source string) (*ruleSet[T], error) {
	spec, err := taicel.Parse(data)
	if err != nil {
		return nil, err
	}
	whole, err := env.Compile(spec)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	rs := &ruleSet[T]{whole: whole, hash: hex.EncodeToString(sum[:]), source: source, loaded: time.Now()}
	step := func(name string, scored bool, rules []taicel.Rule) error {
		sub := &taicel.Spec{Version: spec.Version, Name: name, Sets: spec.Sets, Rules: rules}
		if scored {
			sub.Thresholds = spec.Thresholds
		}
		set, err := env.Compile(sub)
		if err != nil { // the rules compiled together, so they compile apart
			return fmt.Errorf("step %s: %w", name, err)
		}
		rs.steps = append(rs.steps, ruleStep[T]{name: name, set: set, scored: scored})
		return nil
	}
	var run, scored []taicel.Rule
	seen := map[string]bool{}
	for _, r := range spec.Rules {
		part := partOf(r.Name)
		if !seen[part] {
			seen[part] = true
			rs.parts = append(rs.parts, part)
		}
		if r.Verdict == 0 {
			scored = append(scored, r)
			continue
		}
		if len(run) > 0 && partOf(run[0].Name) != part {
			if err := step(partOf(run[0].Name), false, run); err != nil {
				return nil, err
			}
			run = nil
		}
		run = append(run, r)
	}
	if len(run) > 0 {
		if err := step(partOf(run[0].Name), false, run); err != nil {
			return nil, err
		}
	}
	if len(scored) > 0 {
		if err := step(whole.Name(), true, scored); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// decide judges sig step by step, as the whole set would: the verdict
// rules in order, the first that fires deciding, then the scored rules.
// Only the decision's Policy differs: the part of the rule that fired (or
// of the first step, when nothing did and there are no scored rules, as
// tai.All answers), instead of the set's name. A step whose rule fired
// has a reason (taicel gives a rule without one its name); one where
// none fired allows with none. Each step is a span of its own, and an
// error is a *tai.PolicyError naming the step.
func (rs *ruleSet[T]) decide(ctx context.Context, sig tai.Signal[T]) (tai.Decision, error) {
	var first tai.Decision
	for i := range rs.steps {
		st := &rs.steps[i]
		sctx, span := tai.StartSpan(ctx, tai.SpanInfo{Stage: tai.StagePolicy, Name: st.name, Kind: sig.Kind, SignalID: sig.ID})
		d, err := st.set.Evaluate(sctx, sig)
		if err != nil {
			err = &tai.PolicyError{Policy: st.name, Err: err}
		}
		tai.EndSpan(span, err)
		switch {
		case err != nil:
			return d, err
		case st.scored || d.Verdict != tai.Allow || d.Reason != "":
			return d, nil
		case i == 0:
			first = d
		}
	}
	return first, nil
}

// ruleFile is the rule set in force for one of the service's rule files:
// the one built in, or a file in the -rules directory that a
// taicel.Loader watches. On every change the Loader reports, the file is
// read and compiled into a ruleSet here (the Loader's own set names no
// rule in its decisions): a file that does not compile is refused, and
// the set in force keeps running.
type ruleFile[T any] struct {
	name   string // prerequisites or analysis
	env    *taicel.Env[T]
	log    *slog.Logger
	notify func() // tells the board

	cur    atomic.Pointer[ruleSet[T]]
	loader *taicel.Loader[T] // nil when built in

	mu      sync.Mutex
	refusal *taicel.Reload // the last change refused, until one is loaded
}

// ruleFileOptions says where a rule file comes from.
type ruleFileOptions struct {
	Name     string // prerequisites or analysis: the file is Name.yaml
	Dir      string // "": the file built in
	BuiltIn  []byte // the file built in
	Interval time.Duration
	Audit    tai.Observer // receives every load and refusal; may be nil
	Logger   *slog.Logger
	Notify   func() // called after each change; may be nil
}

// openRuleFile compiles the rule file built in, or loads the one in
// opts.Dir and watches it. It fails when that file cannot be read, parsed
// or compiled.
func openRuleFile[T any](env *taicel.Env[T], opts ruleFileOptions) (*ruleFile[T], error) {
	f := &ruleFile[T]{name: opts.Name, env: env, log: opts.Logger, notify: opts.Notify}
	if opts.Dir == "" {
		rs, err := compileRules(env, opts.BuiltIn, builtIn)
		if err != nil {
			return nil, fmt.Errorf("%s rules built in: %w", opts.Name, err)
		}
		f.cur.Store(rs)
		f.log.Info("rules loaded", "rules", f.name, "version", rs.whole.Version(), "sha256", rs.hash, "path", builtIn)
		return f, nil
	}
	path := filepath.Join(opts.Dir, opts.Name+".yaml")
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{
		Interval: opts.Interval,
		OnReload: f.reloaded,
		Observer: opts.Audit,
	})
	if err != nil {
		return nil, fmt.Errorf("-rules: %w", err)
	}
	f.loader = l
	if f.cur.Load() == nil {
		_ = l.Shutdown(context.Background())
		return nil, fmt.Errorf("-rules: %s changed while it was loaded; start again", path)
	}
	return f, nil
}

// reloaded takes a load the Loader reports: the first, each change and
// each refusal.
func (f *ruleFile[T]) reloaded(rep taicel.Reload) {
	if rep.Err != nil {
		f.refuse(rep)
		return
	}
	data, err := os.ReadFile(rep.Path)
	var rs *ruleSet[T]
	if err == nil {
		rs, err = compileRules(f.env, data, rep.Path)
	}
	if err != nil {
		// The file changed again since the Loader read it, to one that
		// does not compile: the Loader refuses it at its next check.
		rep.Version, rep.Hash, rep.Err = "", "", fmt.Errorf("%s changed again while it was loaded: %w", rep.Path, err)
		f.refuse(rep)
		return
	}
	f.cur.Store(rs)
	f.mu.Lock()
	f.refusal = nil
	f.mu.Unlock()
	f.log.Info("rules loaded", "rules", f.name, "version", rs.whole.Version(), "sha256", rs.hash, "path", rep.Path)
	if f.notify != nil {
		f.notify()
	}
}

func (f *ruleFile[T]) refuse(rep taicel.Reload) {
	f.mu.Lock()
	f.refusal = &rep
	f.mu.Unlock()
	args := []any{"rules", f.name, "path", rep.Path, "version", rep.Version, "sha256", rep.Hash, "err", rep.Err}
	if rs := f.cur.Load(); rs != nil {
		args = append(args, "running_version", rs.whole.Version())
		f.log.Error("rules refused; the rules in force keep running", args...)
	} else {
		// The first load: openRuleFile fails, and the service with it.
		f.log.Error("rules refused; no rules in force, the service does not start", args...)
	}
	if f.notify != nil {
		f.notify()
	}
}

// current returns the rule set in force.
func (f *ruleFile[T]) current() *ruleSet[T] { return f.cur.Load() }

// shutdown stops watching the file.
func (f *ruleFile[T]) shutdown(ctx context.Context) error {
	if f.loader == nil {
		return nil
	}
	return f.loader.Shutdown(ctx)
}

// boardRow is the rule file as the board's panel shows it: green when the
// set in force is the file's last version, red when a later one was
// refused.
func (f *ruleFile[T]) boardRow() andon.PanelRow {
	rs := f.current()
	f.mu.Lock()
	refusal := f.refusal
	f.mu.Unlock()
	row := andon.PanelRow{
		Cells: []string{f.name, rs.whole.Version(), rs.hash[:12], rs.source, rs.loaded.UTC().Format(time.RFC3339), ""},
		Color: "green",
	}
	if refusal != nil {
		msg, _, _ := strings.Cut(refusal.Err.Error(), "\n")
		what := "version " + refusal.Version
		if refusal.Version == "" {
			what = "a file"
		}
		row.Cells[5] = fmt.Sprintf("%s: %s refused: %s", refusal.Time.UTC().Format(time.RFC3339), what, msg)
		row.Color = "red"
	}
	return row
}

// ruleColumns are the headings of the board's rule panel.
var ruleColumns = []string{"Rules", "Version", "SHA-256", "Source", "Loaded", "Last refusal"}

// rulePanel lists the rule sets in force on this replica.
func (s *Service) rulePanel() []andon.PanelRow {
	if s.prereqRules == nil {
		return []andon.PanelRow{
			{Cells: []string{"prerequisites", rulesGo, "", "policy.go (-rules go)"}, Color: "grey"},
			{Cells: []string{"analysis", rulesGo, "", "internal/analysis (-rules go)"}, Color: "grey"},
		}
	}
	return []andon.PanelRow{s.prereqRules.boardRow(), s.analysisRules.boardRow()}
}

// openRules loads the rule files -rules names; with -rules go it leaves
// the Go rules in place.
func (s *Service) openRules() error {
	if s.cfg.Rules == rulesGo {
		return nil
	}
	pe, err := newPrerequisiteEnv(s.prerequisiteLookup)
	if err != nil {
		return err
	}
	ae, err := newAnalysisEnv()
	if err != nil {
		return err
	}
	opts := func(name string, builtIn []byte) ruleFileOptions {
		return ruleFileOptions{Name: name, Dir: s.cfg.Rules, BuiltIn: builtIn, Interval: s.cfg.RulesInterval,
			Audit: s.audit, Logger: s.log, Notify: s.notifyBoard}
	}
	if s.analysisRules, err = openRuleFile(ae, opts("analysis", defaultAnalysis)); err != nil {
		return err
	}
	if s.prereqRules, err = openRuleFile(pe, opts("prerequisites", defaultPrerequisites)); err != nil {
		return errors.Join(err, s.analysisRules.shutdown(context.Background()))
	}
	return nil
}

// closeRules stops watching the rule files.
func (s *Service) closeRules(ctx context.Context) error {
	var errs []error
	if s.prereqRules != nil {
		errs = append(errs, s.prereqRules.shutdown(ctx))
	}
	if s.analysisRules != nil {
		errs = append(errs, s.analysisRules.shutdown(ctx))
	}
	return errors.Join(errs...)
}
