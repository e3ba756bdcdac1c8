package tai_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// fixed returns a policy that always answers d and counts its calls.
func fixed(d tai.Decision, calls *int) tai.Policy[int] {
	return tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		if calls != nil {
			*calls++
		}
		return d, nil
	})
}

func failing(err error) tai.Policy[int] {
	return tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{}, err
	})
}

var (
	allow   = tai.Decision{Verdict: tai.Allow, Policy: "a"}
	allow9  = tai.Decision{Verdict: tai.Allow, Policy: "a9", Score: 0.9}
	review  = tai.Decision{Verdict: tai.Review, Policy: "r", Score: 0.3}
	review4 = tai.Decision{Verdict: tai.Review, Policy: "r4", Score: 0.4}
	deny    = tai.Decision{Verdict: tai.Deny, Policy: "d", Score: 0.6}
	deny8   = tai.Decision{Verdict: tai.Deny, Policy: "d8", Score: 0.8}
)

func sig() tai.Signal[int] { return tai.NewSignal("test", "k", 1) }

func TestAll(t *testing.T) {
	tests := []struct {
		name  string
		in    []tai.Decision
		want  tai.Decision
		calls int // policies evaluated
	}{
		{"none allows", nil, tai.Decision{Verdict: tai.Allow, Policy: "all"}, 0},
		{"all allow keeps the highest score", []tai.Decision{allow, allow9, allow}, allow9, 3},
		{"review beats allow", []tai.Decision{allow9, review, allow}, review, 3},
		{"higher review score wins", []tai.Decision{review, review4}, review4, 2},
		{"first deny stops", []tai.Decision{allow, deny, deny8}, deny, 2},
		{"deny after review", []tai.Decision{review, deny8}, deny8, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			var ps []tai.Policy[int]
			for _, d := range tt.in {
				ps = append(ps, fixed(d, &calls))
			}
			got, err := tai.All(ps...).Evaluate(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.calls, calls)
		})
	}
}

func TestAny(t *testing.T) {
	tests := []struct {
		name  string
		in    []tai.Decision
		want  tai.Decision
		calls int
	}{
		{"none denies", nil, tai.Decision{Verdict: tai.Deny, Policy: "any", Reason: "no policy allowed"}, 0},
		{"first allow stops", []tai.Decision{deny, allow, allow9}, allow, 2},
		{"review beats deny", []tai.Decision{deny8, review, deny}, review, 3},
		{"highest deny score", []tai.Decision{deny, deny8}, deny8, 2},
		{"higher review score", []tai.Decision{review, review4, deny}, review4, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			var ps []tai.Policy[int]
			for _, d := range tt.in {
				ps = append(ps, fixed(d, &calls))
			}
			got, err := tai.Any(ps...).Evaluate(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.calls, calls)
		})
	}
}

func TestCombinatorErrors(t *testing.T) {
	boom := errors.New("store down")
	for name, p := range map[string]tai.Policy[int]{
		"all": tai.All(fixed(allow, nil), failing(boom), fixed(deny, nil)),
		"any": tai.Any(fixed(deny, nil), failing(boom), fixed(allow, nil)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := p.Evaluate(context.Background(), sig())
			require.ErrorIs(t, err, boom)
			var pe *tai.PolicyError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "#1", pe.Policy)
		})
	}
	t.Run("child without verdict", func(t *testing.T) {
		_, err := tai.All(fixed(tai.Decision{Policy: "lazy"}, nil)).Evaluate(context.Background(), sig())
		require.ErrorContains(t, err, "no verdict")
	})
}

func TestFailOpen(t *testing.T) {
	boom := errors.New("store down")
	p := tai.FailOpen(tai.Named("geo", failing(boom)))
	d, err := p.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict)
	assert.True(t, d.FailedOpen)
	assert.Equal(t, "geo", d.Policy)
	assert.Contains(t, d.Reason, "store down")

	// The flag survives combination, even when a later policy decides.
	d, err = tai.All(p, fixed(review, nil)).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, tai.Review, d.Verdict)
	assert.True(t, d.FailedOpen)

	// A decision without a verdict fails open as well.
	d, err = tai.FailOpen(fixed(tai.Decision{}, nil)).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.True(t, d.FailedOpen)

	// A healthy policy passes through untouched.
	d, err = tai.FailOpen(fixed(deny, nil)).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, deny, d)
}

func TestNamed(t *testing.T) {
	d, err := tai.Named("velocity", fixed(tai.Decision{Verdict: tai.Allow}, nil)).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, "velocity", d.Policy)
	d, err = tai.Named("outer", fixed(deny, nil)).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, "d", d.Policy, "a decision that names its policy keeps the name")
}

func risk(r float64) func(context.Context, tai.Signal[int]) (float64, string, error) {
	return func(context.Context, tai.Signal[int]) (float64, string, error) { return r, "risk", nil }
}

func TestScoredThresholds(t *testing.T) {
	tests := []struct {
		score float64
		want  tai.Verdict
	}{
		{0, tai.Allow},
		{0.2999, tai.Allow},
		{0.3, tai.Review},
		{0.4999, tai.Review},
		{0.5, tai.Deny},
		{1, tai.Deny},
	}
	for _, tt := range tests {
		p, err := tai.NewScored(tai.ScoredOptions{Review: 0.3, Deny: 0.5}, tai.Rule[int]{Name: "r", Weight: 1, Check: risk(tt.score)})
		require.NoError(t, err)
		d, err := p.Evaluate(context.Background(), sig())
		require.NoError(t, err)
		assert.Equal(t, tt.want, d.Verdict, "score %v", tt.score)
		assert.InDelta(t, tt.score, d.Score, 1e-12)
	}
}

func TestScoredContributions(t *testing.T) {
	p, err := tai.NewScored(tai.ScoredOptions{Name: "fraud", Review: 0.3, Deny: 0.5},
		tai.Rule[int]{Name: "velocity", Weight: 0.3, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
			return 1, "6 attempts in a minute", nil
		}},
		tai.Rule[int]{Name: "amount", Weight: 0.4, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
			return 0.5, "amount 7500 over 5000", nil
		}},
		tai.Rule[int]{Name: "quiet", Weight: 0.5, Check: risk(0)},
		tai.Rule[int]{Name: "clamped", Weight: 0.1, Check: risk(-3)},
	)
	require.NoError(t, err)
	d, err := p.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	assert.Equal(t, "fraud", d.Policy)
	assert.InDelta(t, 0.5, d.Score, 1e-12)
	assert.Equal(t, "6 attempts in a minute", d.Reason, "reason of the largest contribution")
	require.Len(t, d.Contributions, 2)
	assert.Equal(t, tai.Contribution{Rule: "velocity", Weight: 0.3, Risk: 1, Score: 0.3, Reason: "6 attempts in a minute"}, d.Contributions[0])
	assert.Equal(t, "amount", d.Contributions[1].Rule)
	assert.InDelta(t, 0.2, d.Contributions[1].Score, 1e-12)
}

func TestScoredClampsAndErrors(t *testing.T) {
	p, err := tai.NewScored(tai.ScoredOptions{}, tai.Rule[int]{Name: "a", Weight: 0.9, Check: risk(7)}, tai.Rule[int]{Name: "b", Weight: 0.9, Check: risk(1)})
	require.NoError(t, err)
	d, err := p.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, 1.0, d.Score, "the score is clamped to 1")
	assert.Equal(t, 0.9, d.Contributions[0].Score, "a risk is clamped to 1")
	review, deny := p.Thresholds()
	assert.Equal(t, 0.5, deny, "default deny threshold")
	assert.Equal(t, 0.5, review, "no review band by default")

	boom := errors.New("geo lookup failed")
	nan, err := tai.NewScored(tai.ScoredOptions{}, tai.Rule[int]{Name: "nan", Weight: 1, Check: risk(math.NaN())})
	require.NoError(t, err)
	_, err = nan.Evaluate(context.Background(), sig())
	require.ErrorContains(t, err, `rule "nan": risk is NaN`)

	hard, err := tai.NewScored(tai.ScoredOptions{}, tai.Rule[int]{Name: "geo", Weight: 1, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
		return 0, "", boom
	}})
	require.NoError(t, err)
	_, err = hard.Evaluate(context.Background(), sig())
	require.ErrorIs(t, err, boom)

	soft, err := tai.NewScored(tai.ScoredOptions{},
		tai.Rule[int]{Name: "geo", Weight: 1, FailOpen: true, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
			return 1, "", boom
		}},
		tai.Rule[int]{Name: "amount", Weight: 0.2, Check: risk(1)})
	require.NoError(t, err)
	d, err = soft.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.True(t, d.FailedOpen)
	assert.Equal(t, tai.Allow, d.Verdict)
	assert.InDelta(t, 0.2, d.Score, 1e-12)

	panicky, err := tai.NewScored(tai.ScoredOptions{}, tai.Rule[int]{Name: "p", Weight: 1, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
		panic("rule bug")
	}})
	require.NoError(t, err)
	_, err = panicky.Evaluate(context.Background(), sig())
	var pe *tai.PanicError
	require.ErrorAs(t, err, &pe)
}

func TestNewScoredValidation(t *testing.T) {
	ok := tai.Rule[int]{Name: "ok", Weight: 1, Check: risk(0)}
	tests := []struct {
		name  string
		cfg   tai.ScoredOptions
		rules []tai.Rule[int]
		want  string
	}{
		{"deny above one", tai.ScoredOptions{Deny: 1.5}, []tai.Rule[int]{ok}, "Deny 1.5"},
		{"deny negative", tai.ScoredOptions{Deny: -0.1}, []tai.Rule[int]{ok}, "Deny -0.1"},
		{"deny NaN", tai.ScoredOptions{Deny: math.NaN()}, []tai.Rule[int]{ok}, "Deny NaN"},
		{"review above deny", tai.ScoredOptions{Deny: 0.5, Review: 0.6}, []tai.Rule[int]{ok}, "Review 0.6"},
		{"review negative", tai.ScoredOptions{Review: -1}, []tai.Rule[int]{ok}, "Review -1"},
		{"no rules", tai.ScoredOptions{}, nil, "at least one rule"},
		{"no name", tai.ScoredOptions{}, []tai.Rule[int]{{Weight: 1, Check: risk(0)}}, "rule 0 has no Name"},
		{"blank name", tai.ScoredOptions{}, []tai.Rule[int]{{Name: " \t", Weight: 1, Check: risk(0)}}, `rule 0 has no Name: " \t" is only white space`},
		{"padded name", tai.ScoredOptions{}, []tai.Rule[int]{ok, {Name: "ok ", Weight: 1, Check: risk(0)}}, `rule 1 has Name "ok ", which begins or ends with white space`},
		{"no check", tai.ScoredOptions{}, []tai.Rule[int]{{Name: "x", Weight: 1}}, `rule "x" has no Check`},
		{"duplicate", tai.ScoredOptions{}, []tai.Rule[int]{ok, ok}, `"ok" is used twice`},
		{"negative weight", tai.ScoredOptions{}, []tai.Rule[int]{{Name: "w", Weight: -1, Check: risk(0)}}, "weight -1"},
		{"NaN weight", tai.ScoredOptions{}, []tai.Rule[int]{{Name: "w", Weight: math.NaN(), Check: risk(0)}}, "weight NaN"},
		{"infinite weight", tai.ScoredOptions{}, []tai.Rule[int]{{Name: "w", Weight: math.Inf(1), Check: risk(0)}}, "weight +Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tai.NewScored(tt.cfg, tt.rules...)
			require.ErrorContains(t, err, tt.want)
			assert.Nil(t, p)
		})
	}
}

func TestVerdictText(t *testing.T) {
	for _, v := range []tai.Verdict{0, tai.Allow, tai.Review, tai.Deny} {
		b, err := v.MarshalText()
		require.NoError(t, err)
		var back tai.Verdict
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, v, back)
	}
	_, err := tai.Verdict(9).MarshalText()
	require.Error(t, err)
	var v tai.Verdict
	require.ErrorContains(t, v.UnmarshalText([]byte("maybe")), `unknown verdict "maybe"`)
	assert.Equal(t, "verdict(9)", tai.Verdict(9).String())
	assert.False(t, tai.Verdict(0).Valid())
}

// TestCombinatorsCarryFailedOpen: when a policy failed open anywhere in a
// combination, the combined decision says so, whichever policy decided
// and however the evaluation ended.
func TestCombinatorsCarryFailedOpen(t *testing.T) {
	boom := errors.New("store down")
	openAllow := tai.FailOpen(tai.Named("geo", failing(boom)))                                      // Allow, FailedOpen
	openReview := fixed(tai.Decision{Verdict: tai.Review, Policy: "scored", FailedOpen: true}, nil) // a Scored policy whose FailOpen rule erred
	tests := []struct {
		name    string
		p       tai.Policy[int]
		verdict tai.Verdict
		policy  string
	}{
		{"all: a later deny stops", tai.All(openAllow, fixed(deny, nil)), tai.Deny, "d"},
		{"all: a later review decides", tai.All(openAllow, fixed(review, nil), fixed(allow, nil)), tai.Review, "r"},
		{"all: the failed-open allow is all there is", tai.All(fixed(allow, nil), openAllow), tai.Allow, "a"},
		{"any: a later allow stops", tai.Any(openReview, fixed(allow, nil), fixed(deny, nil)), tai.Allow, "a"},
		{"any: a later deny loses to the review", tai.Any(fixed(deny8, nil), openReview), tai.Review, "scored"},
		{"any: a review decides, the flag came earlier", tai.Any(fixed(tai.Decision{Verdict: tai.Deny, Policy: "x", FailedOpen: true}, nil), fixed(review, nil)), tai.Review, "r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.p.Evaluate(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, tt.verdict, d.Verdict)
			assert.Equal(t, tt.policy, d.Policy)
			assert.True(t, d.FailedOpen)
		})
	}
	// Without a policy failing open, the flag stays clear.
	for _, p := range []tai.Policy[int]{
		tai.All(fixed(allow, nil), fixed(deny, nil)), tai.All(fixed(review, nil)),
		tai.Any(fixed(deny, nil), fixed(allow, nil)), tai.Any(fixed(deny, nil)),
	} {
		d, err := p.Evaluate(context.Background(), sig())
		require.NoError(t, err)
		assert.False(t, d.FailedOpen, "%+v", d)
	}
}

// A policy that failed open before another failed the evaluation is still
// reported: the failed signal's decision says FailedOpen, so an audit
// trail counting the outages of an advisory check counts this one too.
func TestFailedOpenSurvivesALaterError(t *testing.T) {
	boom := errors.New("store down")
	openAllow := tai.FailOpen(tai.Named("geo", failing(boom)))
	openRule := tai.Rule[int]{Name: "geo", Weight: 1, FailOpen: true, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
		return 0, "", boom
	}}
	hardRule := tai.Rule[int]{Name: "velocity", Weight: 1, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
		return 0, "", boom
	}}
	scored, err := tai.NewScored(tai.ScoredOptions{}, openRule, hardRule)
	require.NoError(t, err)
	for name, p := range map[string]tai.Policy[int]{
		"all": tai.All(openAllow, failing(boom)),
		// Any stops at the first Allow: the failed-open check is in a
		// first alternative that denies.
		"any":    tai.Any(tai.All(openAllow, fixed(deny, nil)), failing(boom)),
		"scored": scored,
	} {
		t.Run(name, func(t *testing.T) {
			var rec tai.Record
			pl, err := tai.New(p, doubleAction(&journal{}), tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { rec = r })))
			require.NoError(t, err)
			res, err := pl.Process(context.Background(), sig())
			require.ErrorIs(t, err, boom)
			assert.Equal(t, tai.Failed, res.Outcome)
			assert.True(t, res.Decision.FailedOpen, "%+v", res.Decision)
			assert.True(t, rec.Decision.FailedOpen, "%+v", rec.Decision)
		})
	}
}

// TestAnyChoosesTheHighestScoringDeny: when every policy denies, Any's
// decision is the Deny with the highest score, the first one on a tie, so
// the reason a caller shows is that of the strongest objection.
func TestAnyChoosesTheHighestScoringDeny(t *testing.T) {
	d3 := tai.Decision{Verdict: tai.Deny, Policy: "d3", Score: 0.3}
	d8b := tai.Decision{Verdict: tai.Deny, Policy: "d8b", Score: 0.8}
	tests := []struct {
		name string
		in   []tai.Decision
		want tai.Decision
	}{
		{"highest first", []tai.Decision{deny8, deny, d3}, deny8},
		{"highest in the middle", []tai.Decision{deny, deny8, d3}, deny8},
		{"highest last", []tai.Decision{d3, deny, deny8}, deny8},
		{"the first of a tie", []tai.Decision{deny, deny8, d8b}, deny8},
		{"the first of a tie, reversed", []tai.Decision{d3, d8b, deny8}, d8b},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []tai.Policy[int]
			for _, d := range tt.in {
				ps = append(ps, fixed(d, nil))
			}
			got, err := tai.Any(ps...).Evaluate(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestAllKeepsTheDecidingChild: All's decision is one of its children's,
// the most severe, the highest-scoring among those, the first on a tie.
func TestAllKeepsTheDecidingChild(t *testing.T) {
	review3b := tai.Decision{Verdict: tai.Review, Policy: "r3b", Score: 0.3}
	allow0 := tai.Decision{Verdict: tai.Allow, Policy: "a0"}
	tests := []struct {
		name string
		in   []tai.Decision
		want tai.Decision
	}{
		{"a single allow", []tai.Decision{allow0}, allow0},
		{"the first of two plain allows", []tai.Decision{allow0, allow}, allow0},
		{"a review beats a later higher-scoring allow", []tai.Decision{review, allow9}, review},
		{"the first of a tie", []tai.Decision{review, review3b}, review},
		{"the first of a tie, reversed", []tai.Decision{review3b, review}, review3b},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []tai.Policy[int]
			for _, d := range tt.in {
				ps = append(ps, fixed(d, nil))
			}
			got, err := tai.All(ps...).Evaluate(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	got, err := tai.Any(fixed(tai.Decision{Verdict: tai.Deny, Policy: "d0"}, nil)).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, tai.Decision{Verdict: tai.Deny, Policy: "d0"}, got, "Any of one Deny is that Deny")
}

// TestInvalidVerdict: a verdict outside Allow, Review and Deny fails the
// signal wherever it comes from, and FailOpen counts it as an error.
func TestInvalidVerdict(t *testing.T) {
	bad := fixed(tai.Decision{Verdict: 9, Policy: "odd"}, nil)
	for name, p := range map[string]tai.Policy[int]{"alone": bad, "in All": tai.All(bad), "in Any": tai.Any(bad)} {
		t.Run(name, func(t *testing.T) {
			pl, err := tai.New(p, doubleAction(&journal{}))
			require.NoError(t, err)
			res, err := pl.Process(context.Background(), sig())
			require.ErrorContains(t, err, "decision has invalid verdict 9")
			assert.Equal(t, tai.Failed, res.Outcome)
		})
	}
	d, err := tai.FailOpen(bad).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict)
	assert.True(t, d.FailedOpen)
	assert.Equal(t, "failed open: decision has invalid verdict 9", d.Reason)
}

func TestScoredDefaultsAndLimits(t *testing.T) {
	p, err := tai.NewScored(tai.ScoredOptions{}, tai.Rule[int]{Name: "r", Weight: 1, Check: risk(1)})
	require.NoError(t, err)
	assert.Equal(t, "scored", p.Name())
	d, err := p.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, "scored", d.Policy)

	// The thresholds may be as high as 1: only a full score denies.
	p, err = tai.NewScored(tai.ScoredOptions{Review: 1, Deny: 1}, tai.Rule[int]{Name: "r", Weight: 0.99, Check: risk(1)})
	require.NoError(t, err)
	d, err = p.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict)
}

// TestScoredRuleOfWeightZero: a rule of weight 0 is allowed and runs, but
// never contributes, so it can be switched off without removing it.
func TestScoredRuleOfWeightZero(t *testing.T) {
	ran := false
	p, err := tai.NewScored(tai.ScoredOptions{},
		tai.Rule[int]{Name: "off", Weight: 0, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
			ran = true
			return 1, "would deny", nil
		}},
		tai.Rule[int]{Name: "on", Weight: 0.2, Check: risk(1)})
	require.NoError(t, err)
	d, err := p.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.True(t, ran)
	assert.Equal(t, tai.Allow, d.Verdict)
	require.Len(t, d.Contributions, 1)
	assert.Equal(t, "on", d.Contributions[0].Rule)
}

// A rule whose weighted risk is too small for a float64 (it rounds to 0)
// added nothing to the score, and is not listed as a contribution.
func TestScoredContributionThatRoundsToZero(t *testing.T) {
	p, err := tai.NewScored(tai.ScoredOptions{},
		tai.Rule[int]{Name: "tiny", Weight: 0.3, Check: risk(math.SmallestNonzeroFloat64)},
		tai.Rule[int]{Name: "on", Weight: 0.2, Check: risk(1)})
	require.NoError(t, err)
	d, err := p.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	require.Len(t, d.Contributions, 1)
	assert.Equal(t, "on", d.Contributions[0].Rule)
}

// TestScoredReasonOfATie: when two rules contribute the most, the reason
// is the first one's.
func TestScoredReasonOfATie(t *testing.T) {
	because := func(reason string) func(context.Context, tai.Signal[int]) (float64, string, error) {
		return func(context.Context, tai.Signal[int]) (float64, string, error) { return 1, reason, nil }
	}
	p, err := tai.NewScored(tai.ScoredOptions{},
		tai.Rule[int]{Name: "a", Weight: 0.1, Check: because("small")},
		tai.Rule[int]{Name: "b", Weight: 0.3, Check: because("first of the largest")},
		tai.Rule[int]{Name: "c", Weight: 0.3, Check: because("second of the largest")})
	require.NoError(t, err)
	d, err := p.Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, "first of the largest", d.Reason)
}

// TestScoredSpans: with a Tracer in the context, each rule runs in a span
// of its own, named policy/rule, ended with the rule's error.
func TestScoredSpans(t *testing.T) {
	j := &journal{}
	tr := &spanTracer{j: j, withCtx: true}
	p, err := tai.NewScored(tai.ScoredOptions{Name: "fraud"},
		tai.Rule[int]{Name: "amount", Weight: 0.5, Check: risk(1)},
		tai.Rule[int]{Name: "geo", Weight: 0.5, FailOpen: true, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
			return 0, "", errors.New("lookup failed")
		}})
	require.NoError(t, err)
	ctx, root := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Name: "test"})
	_, err = p.Evaluate(ctx, sig())
	require.NoError(t, err)
	root.End(nil)
	assert.Equal(t, []string{
		"start signal:test parent -",
		"start policy:fraud/amount parent signal:test", "end policy:fraud/amount ok",
		"start policy:fraud/geo parent signal:test", "end policy:fraud/geo failed",
		"end signal:test ok",
	}, j.get())
}

// All and Any keep policies of their own: a slice reused to build another
// combinator (one per region, say) changes neither the first one nor what
// New checked of it.
func TestCombinatorsCopyTheirPolicies(t *testing.T) {
	for name, combine := range map[string]func(...tai.Policy[int]) tai.Policy[int]{
		"all": tai.All[int], "any": tai.Any[int],
	} {
		t.Run(name, func(t *testing.T) {
			ps := []tai.Policy[int]{fixed(review, nil)}
			first := combine(ps...)
			ps[0] = fixed(deny8, nil)
			second := combine(ps...)
			ps[0] = nil

			d, err := first.Evaluate(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, review, d)
			d, err = second.Evaluate(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, deny8, d)
			_, err = tai.New(first, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }))
			assert.NoError(t, err)
		})
	}
}

// A score that is NaN (a policy's 0/0) is no score: among decisions of the
// same verdict, All and Any keep the one with the highest number, and a
// NaN wins only over another NaN.
func TestCombinatorsRankANaNScoreLowest(t *testing.T) {
	nan := math.NaN()
	reviewNaN := tai.Decision{Verdict: tai.Review, Policy: "rn", Score: nan}
	denyNaN := tai.Decision{Verdict: tai.Deny, Policy: "dn", Score: nan}
	tests := []struct {
		name    string
		p       tai.Policy[int]
		verdict tai.Verdict
		policy  string
	}{
		{"all: NaN first", tai.All(fixed(reviewNaN, nil), fixed(review4, nil)), tai.Review, "r4"},
		{"all: NaN last", tai.All(fixed(review4, nil), fixed(reviewNaN, nil)), tai.Review, "r4"},
		{"all: only NaNs", tai.All(fixed(reviewNaN, nil), fixed(tai.Decision{Verdict: tai.Review, Policy: "rn2", Score: nan}, nil)), tai.Review, "rn"},
		{"any: NaN first", tai.Any(fixed(denyNaN, nil), fixed(deny8, nil)), tai.Deny, "d8"},
		{"any: NaN last", tai.Any(fixed(deny8, nil), fixed(denyNaN, nil)), tai.Deny, "d8"},
		{"any: NaN review first", tai.Any(fixed(reviewNaN, nil), fixed(review, nil)), tai.Review, "r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.p.Evaluate(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, tt.verdict, d.Verdict)
			assert.Equal(t, tt.policy, d.Policy)
		})
	}
}

// A rule error that is not FailOpen ends the evaluation: the rules after
// it do not run, as Scored's doc says.
func TestScoredStopsAtAFailingRule(t *testing.T) {
	boom := errors.New("state store down")
	var ran []string
	rule := func(name string, err error) tai.Rule[int] {
		return tai.Rule[int]{Name: name, Weight: 0.5, Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
			ran = append(ran, name)
			return 0.1, name, err
		}}
	}
	p, err := tai.NewScored(tai.ScoredOptions{}, rule("first", nil), rule("broken", boom), rule("after", nil))
	require.NoError(t, err)
	_, err = p.Evaluate(context.Background(), sig())
	require.ErrorIs(t, err, boom)
	assert.ErrorContains(t, err, `rule "broken"`)
	assert.Equal(t, []string{"first", "broken"}, ran)
}

// endErrTracer keeps the error each span ended with, by span name.
type endErrTracer struct {
	mu   sync.Mutex
	ends map[string]error
}

type endErrSpan struct {
	t    *endErrTracer
	name string
}

func (t *endErrTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage == tai.StageSignal {
		ctx = tai.ContextWithTracer(ctx, t)
	}
	return ctx, &endErrSpan{t: t, name: info.Stage.String() + ":" + info.Name}
}

func (s *endErrSpan) End(err error) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.t.ends == nil {
		s.t.ends = map[string]error{}
	}
	s.t.ends[s.name] = err
}

func (s *endErrSpan) SpanContext() tai.SpanContext { return tai.SpanContext{} }

// TestChildSpanRecordsDeny: the span of a combinator's child that denied
// ends with a *DeniedError holding the child's decision, as the policy
// stage's span does, even when the combinator as a whole allows; a child
// that allowed or asked for review ends with nil.
func TestChildSpanRecordsDeny(t *testing.T) {
	denyBlack := tai.Decision{Verdict: tai.Deny, Reason: "on the blacklist", Score: 0.7}
	tests := []struct {
		name    string
		policy  tai.Policy[int]
		outcome tai.Outcome // of the signal
		denied  []string    // spans that end denied
		ok      []string    // spans that end with nil
	}{
		{"any allows", tai.Any(tai.Named("blacklist", fixed(denyBlack, nil)), tai.Named("velocity", fixed(allow, nil))),
			tai.Succeeded, []string{"policy:blacklist"}, []string{"policy:velocity", "policy:any"}},
		{"all denies", tai.All(tai.Named("velocity", fixed(review, nil)), tai.Named("blacklist", fixed(denyBlack, nil))),
			tai.Denied, []string{"policy:blacklist", "policy:all"}, []string{"policy:velocity"}},
		{"nested", tai.Any(tai.All(tai.Named("blacklist", fixed(denyBlack, nil))), tai.Named("velocity", fixed(allow, nil))),
			tai.Succeeded, []string{"policy:blacklist", "policy:all"}, []string{"policy:velocity", "policy:any"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &endErrTracer{}
			p, err := tai.New(tt.policy, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }),
				tai.WithTracer(tr))
			require.NoError(t, err)
			res, _ := p.Process(context.Background(), sig())
			assert.Equal(t, tt.outcome, res.Outcome)
			for _, name := range tt.denied {
				require.Contains(t, tr.ends, name)
				var de *tai.DeniedError
				require.ErrorAs(t, tr.ends[name], &de, name)
				assert.Equal(t, tai.Deny, de.Decision.Verdict, name)
				assert.Equal(t, "blacklist", de.Decision.Policy, name)
				assert.Equal(t, "on the blacklist", de.Decision.Reason, name)
				assert.Equal(t, 0.7, de.Decision.Score, name)
			}
			for _, name := range tt.ok {
				require.Contains(t, tr.ends, name)
				assert.NoError(t, tr.ends[name], name)
			}
		})
	}
}

// fraudPolicy is a caller's policy built on a Scored it embeds.
type fraudPolicy struct {
	tai.Scored[int]
}

// A Scored not made by NewScored has no rules and no thresholds. It must
// fail closed, as a zero Verdict does: never allow every signal because a
// constructor was forgotten. New rejects it, alone, embedded or inside a
// combinator; evaluated anyway, it errs.
func TestScoredNotMadeByNewScoredFailsClosed(t *testing.T) {
	act := doubleAction(&journal{})
	for name, pol := range map[string]tai.Policy[int]{
		"zero":            &tai.Scored[int]{},
		"embedded":        &fraudPolicy{},
		"inside All":      tai.All[int](allowAll, &tai.Scored[int]{}),
		"inside Any":      tai.Any[int](&tai.Scored[int]{}),
		"inside Named":    tai.Named[int]("fraud", &tai.Scored[int]{}),
		"inside FailOpen": tai.FailOpen[int](&tai.Scored[int]{}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tai.New(pol, act)
			require.ErrorContains(t, err, "NewScored")
		})
	}
	// A nil *Scored embedded is a nil policy, as a nil *Scored is.
	_, err := tai.New[int, int](struct{ *tai.Scored[int] }{}, act)
	require.ErrorContains(t, err, "nil policy")
	var zero tai.Scored[int]
	d, err := zero.Evaluate(context.Background(), tai.Signal[int]{ID: "1", Kind: "k", Payload: 1})
	require.ErrorContains(t, err, "NewScored")
	assert.NotEqual(t, tai.Allow, d.Verdict)
}
