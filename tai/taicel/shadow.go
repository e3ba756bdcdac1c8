package taicel

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/taipattern/taikit/tai"
)

// Source is a rule set that may change: a *Set (which is its own
// current set) or a *Loader (the set of its file in force).
type Source[T any] interface {
	// Current returns the set in force. It is never nil.
	Current() *Set[T]
}

// ShadowOptions configures a Shadow. The zero value is useful: the live
// set's name, disagreements only counted.
type ShadowOptions[T any] struct {
	// Name is the policy's name, for spans and combinators. Empty means
	// the live set's name. The decisions keep the live set's name.
	Name string
	// OnDisagree, if set, receives each signal the two sets judge with
	// different verdicts, with both decisions (each with its inputs,
	// under Options.RecordInputs): to log it, or to write it to an audit
	// trail of its own. It is called synchronously, after the signal is
	// counted and before Evaluate returns, so it must be quick.
	OnDisagree func(sig tai.Signal[T], live, candidate tai.Decision)
	// OnError, if set, receives each error that kept the candidate from
	// judging a signal, also called synchronously. Such errors are never
	// returned.
	OnError func(sig tai.Signal[T], err error)
	// Logger receives a panic of OnDisagree or OnError, as a *PanicError
	// with its stack: the panic is recovered, so that a faulty callback
	// never fails the live signal. Nil means slog.Default().
	Logger *slog.Logger
}

// Shadow runs a candidate rule set beside the live one, on live traffic.
// It is a tai.Policy: Evaluate returns the live set's decision and error
// only, exactly as the live set alone would. The candidate judges the
// same signal with the same variables (Lookup runs once, for both) and
// its decision is compared and counted, never acted on; its errors are
// counted, never returned.
//
// Both sets must come from one Env, so that they read the same variables.
// Either may be a Loader: each signal is judged by the sets in force when
// its evaluation begins. Evaluate is safe for concurrent use; its counters
// are atomic, and only a disagreement takes a lock, to count the rules.
type Shadow[T any] struct {
	live, candidate Source[T]
	opts            ShadowOptions[T]

	signals, agreements, disagreements, errs, liveErrs atomic.Uint64

	mu     sync.Mutex
	byRule map[string]uint64
}

// errOtherEnv is the candidate's error when a Source hands out a set of
// another Env than the live set's.
var errOtherEnv = errors.New("taicel: the candidate set comes from another Env than the live set")

// NewShadow returns a Shadow of candidate beside live. It returns an error
// when either is nil or their sets come from different Envs.
func NewShadow[T any](live, candidate Source[T], opts ShadowOptions[T]) (*Shadow[T], error) {
	if live == nil || candidate == nil {
		return nil, errors.New("taicel: NewShadow: nil Source")
	}
	ls, cs := live.Current(), candidate.Current()
	if ls == nil || cs == nil {
		return nil, errors.New("taicel: NewShadow: a Source has no set")
	}
	if ls.env != cs.env {
		return nil, errors.New("taicel: NewShadow: the live and candidate sets come from different Envs")
	}
	return &Shadow[T]{live: live, candidate: candidate, opts: opts, byRule: map[string]uint64{}}, nil
}

// Name returns ShadowOptions.Name, or the live set's name.
func (sh *Shadow[T]) Name() string {
	if sh.opts.Name != "" {
		return sh.opts.Name
	}
	return sh.live.Current().Name()
}

// Evaluate judges sig with both sets and returns the live set's decision.
func (sh *Shadow[T]) Evaluate(ctx context.Context, sig tai.Signal[T]) (tai.Decision, error) {
	live, cand := sh.live.Current(), sh.candidate.Current()
	sh.signals.Add(1)
	act, err := live.env.activate(ctx, sig)
	if err != nil {
		sh.liveErrs.Add(1)
		sh.candidateFailed(sig, err)
		return tai.Decision{Policy: live.name}, err
	}
	ld, lrule, lerr := live.decide(ctx, act)
	var cd tai.Decision
	crule, cerr := -1, errOtherEnv
	if cand.env == live.env {
		cd, crule, cerr = cand.decide(ctx, act)
	}
	if cerr != nil {
		sh.candidateFailed(sig, cerr)
	}
	if lerr != nil {
		sh.liveErrs.Add(1)
		return tai.Decision{Policy: live.name}, lerr
	}
	disagree := cerr == nil && ld.Verdict != cd.Verdict
	if live.env.record {
		bp := bufs.Get().(*[]byte)
		b, err := live.env.appendInputs((*bp)[:0], act)
		if err == nil {
			ld.Inputs = closeInputs(b, live.ruleName(lrule))
			if disagree && sh.opts.OnDisagree != nil {
				cd.Inputs = closeInputs(b, cand.ruleName(crule))
			}
		}
		*bp = b[:0]
		bufs.Put(bp)
		if err != nil {
			sh.liveErrs.Add(1)
			return tai.Decision{Policy: live.name}, err
		}
	}
	switch {
	case cerr != nil:
	case !disagree:
		sh.agreements.Add(1)
	default:
		sh.disagreements.Add(1)
		sh.mu.Lock()
		diffFirings(firing{live.ruleName(lrule), ld.Verdict, ld.Contributions}, firing{cand.ruleName(crule), cd.Verdict, cd.Contributions}, func(rule string, _ firingDiff) {
			sh.byRule[rule]++
		})
		sh.mu.Unlock()
		if sh.opts.OnDisagree != nil {
			callSafely(sh.opts.Logger, "OnDisagree", func() { sh.opts.OnDisagree(sig, ld, cd) }, "signal_id", sig.ID)
		}
	}
	return ld, nil
}

func (sh *Shadow[T]) candidateFailed(sig tai.Signal[T], err error) {
	sh.errs.Add(1)
	if sh.opts.OnError != nil {
		callSafely(sh.opts.Logger, "OnError", func() { sh.opts.OnError(sig, err) }, "signal_id", sig.ID)
	}
}

// ShadowStats are a Shadow's counts since it was made.
type ShadowStats struct {
	// LiveVersion and CandidateVersion are the versions of the sets in
	// force now.
	LiveVersion, CandidateVersion string
	// Signals counts the signals evaluated.
	Signals uint64
	// Agreements and Disagreements count the signals both sets judged,
	// with the same verdict and with different verdicts.
	Agreements, Disagreements uint64
	// Errors counts the signals the candidate could not judge: its rules
	// failed, the lookup both sets share failed, or its set came from
	// another Env.
	Errors uint64
	// LiveErrors counts the signals the live set failed: the errors
	// Evaluate returned.
	LiveErrors uint64
	// ByRule counts, per rule, the disagreements in which its firing
	// differs between the sets: a verdict rule that decided in one and
	// not the other, or in both with different verdicts; a scored rule
	// that contributed in one and not the other or contributed a
	// different score.
	ByRule map[string]uint64
}

// DisagreementRate returns Disagreements / (Agreements + Disagreements),
// or 0 before any signal both sets judged.
func (st ShadowStats) DisagreementRate() float64 {
	n := st.Agreements + st.Disagreements
	if n == 0 {
		return 0
	}
	return float64(st.Disagreements) / float64(n)
}

// Stats returns the counts so far. Each counter is read atomically; a
// signal being evaluated meanwhile may be counted in some and not yet in
// others.
func (sh *Shadow[T]) Stats() ShadowStats {
	st := ShadowStats{
		LiveVersion:      sh.live.Current().Version(),
		CandidateVersion: sh.candidate.Current().Version(),
		Signals:          sh.signals.Load(),
		Agreements:       sh.agreements.Load(),
		Disagreements:    sh.disagreements.Load(),
		Errors:           sh.errs.Load(),
		LiveErrors:       sh.liveErrs.Load(),
	}
	sh.mu.Lock()
	st.ByRule = maps.Clone(sh.byRule)
	sh.mu.Unlock()
	return st
}

// firingDiff is how a rule's firing differs between two decisions.
type firingDiff uint8

const (
	firedOnlyA firingDiff = iota // in the first decision only
	firedOnlyB                   // in the second only
	firedBoth                    // in both, differently
)

// firing is how a decision came about: the verdict rule that decided
// (or "") with the verdict, and the scored rules' contributions.
type firing struct {
	rule    string
	verdict tai.Verdict
	cs      []tai.Contribution
}

// find returns how the rule name fired in f: the verdict it decided, or
// the score it contributed; ok is false when it did neither.
func (f *firing) find(name string) (verdict tai.Verdict, score float64, ok bool) {
	if f.rule != "" && f.rule == name {
		return f.verdict, 0, true
	}
	for i := range f.cs {
		if f.cs[i].Rule == name {
			return 0, f.cs[i].Score, true
		}
	}
	return 0, 0, false
}

// diffFirings calls fn with each rule whose firing differs between two
// decisions: a verdict rule that decided in one only, or in both with
// different verdicts; a scored rule that contributed to one only, or to
// both with different scores. It names the first decision's rules in
// order, then the second's.
func diffFirings(a, b firing, fn func(rule string, d firingDiff)) {
	check := func(name string, verdict tai.Verdict, score float64) {
		v, s, ok := b.find(name)
		switch {
		case !ok:
			fn(name, firedOnlyA)
		case v != verdict || s != score:
			fn(name, firedBoth)
		}
	}
	if a.rule != "" {
		check(a.rule, a.verdict, 0)
	}
	for i := range a.cs {
		check(a.cs[i].Rule, 0, a.cs[i].Score)
	}
	if b.rule != "" {
		if _, _, ok := a.find(b.rule); !ok {
			fn(b.rule, firedOnlyB)
		}
	}
	for i := range b.cs {
		if _, _, ok := a.find(b.cs[i].Rule); !ok {
			fn(b.cs[i].Rule, firedOnlyB)
		}
	}
}

var _ tai.Policy[struct{}] = (*Shadow[struct{}])(nil)
