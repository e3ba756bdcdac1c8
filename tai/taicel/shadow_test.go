package taicel_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// shadowEnv is the fraud Env whose Lookup reads the state from the
// context and counts its calls.
func shadowEnv(t testing.TB, lookups *atomic.Int64, record bool) *taicel.Env[Payment] {
	t.Helper()
	opts := fraudOptions()
	inner := opts.Lookup
	opts.Lookup = func(ctx context.Context, s tai.Signal[Payment]) (map[string]any, error) {
		lookups.Add(1)
		if err, ok := ctx.Value(errKey{}).(error); ok {
			return nil, err
		}
		return inner(ctx, s)
	}
	opts.RecordInputs = record
	env, err := taicel.NewEnv(opts)
	require.NoError(t, err)
	return env
}

type errKey struct{}

// compileFraud compiles testdata/fraud.yaml with edit applied to its text.
func compileFraud(t testing.TB, env *taicel.Env[Payment], edit func(string) string) *taicel.Set[Payment] {
	t.Helper()
	raw, err := os.ReadFile("testdata/fraud.yaml")
	require.NoError(t, err)
	text := string(raw)
	if edit != nil {
		text = edit(text)
	}
	spec, err := taicel.Parse([]byte(text))
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)
	return set
}

func TestShadowNeverActs(t *testing.T) {
	var lookups atomic.Int64
	env := shadowEnv(t, &lookups, true)
	live := compileFraud(t, env, nil)
	denyAll, err := env.Compile(&taicel.Spec{Version: "deny", Name: "cand", Rules: []taicel.Rule{{Name: "all", Verdict: tai.Deny, Expr: "true"}}})
	require.NoError(t, err)
	failing, err := env.Compile(&taicel.Spec{Version: "fail", Rules: []taicel.Rule{{Name: "div", Weight: 1, Expr: "attempts / (attempts - attempts) > 1"}}})
	require.NoError(t, err)

	payments := []Payment{
		{CustomerID: "cust_1", MerchantID: "merc_2", Country: "DE", Currency: "EUR", Amount: 120},
		{CustomerID: "cust_9", MerchantID: "merc_2", Country: "DE", Currency: "EUR", Amount: 120},
		{CustomerID: "cust_1", MerchantID: "merc_2", Country: "FR", Currency: "EUR", Amount: 10000},
	}
	for _, cand := range []*taicel.Set[Payment]{denyAll, failing} {
		t.Run(cand.Version(), func(t *testing.T) {
			var disagreed, failed atomic.Int64
			sh, err := taicel.NewShadow[Payment](live, cand, taicel.ShadowOptions[Payment]{
				OnDisagree: func(_ tai.Signal[Payment], l, c tai.Decision) {
					disagreed.Add(1)
					assert.Equal(t, tai.Deny, c.Verdict)
					assert.True(t, strings.HasSuffix(string(c.Inputs), `,"verdict_rule":"all"}`))
					assert.Equal(t, strings.TrimSuffix(string(c.Inputs), `,"verdict_rule":"all"}`), strings.TrimSuffix(strings.TrimSuffix(string(l.Inputs), `}`), `,"verdict_rule":"blacklist"`))
				},
				OnError: func(_ tai.Signal[Payment], err error) {
					failed.Add(1)
					var re *taicel.RuleError
					assert.ErrorAs(t, err, &re)
				},
			})
			require.NoError(t, err)
			assert.Equal(t, "fraud", sh.Name())
			for i, p := range payments {
				for _, st := range []state{{}, {attempts: 9}} {
					ctx := context.WithValue(t.Context(), stateKey{}, st)
					want, err := live.Evaluate(ctx, signal(p))
					require.NoError(t, err)
					before := lookups.Load()
					got, err := sh.Evaluate(ctx, signal(p))
					require.NoError(t, err)
					assert.Equal(t, int64(1), lookups.Load()-before, "one Lookup for both sets")
					assert.Equal(t, want, got, "payment %d", i)
				}
			}
			st := sh.Stats()
			assert.Equal(t, uint64(6), st.Signals)
			assert.Equal(t, "1", st.LiveVersion)
			assert.Equal(t, cand.Version(), st.CandidateVersion)
			if cand == denyAll {
				// The live set denies the blacklisted customer and the
				// nine attempts; it allows the other two.
				assert.Equal(t, uint64(4), st.Agreements)
				assert.Equal(t, uint64(2), st.Disagreements)
				assert.Equal(t, int64(2), disagreed.Load())
				assert.Zero(t, st.Errors)
				assert.InDelta(t, 2.0/6, st.DisagreementRate(), 1e-12)
			} else {
				assert.Zero(t, st.Agreements+st.Disagreements)
				assert.Equal(t, uint64(6), st.Errors)
				assert.Equal(t, int64(6), failed.Load())
				assert.Zero(t, st.DisagreementRate())
			}
		})
	}
}

func TestShadowErrors(t *testing.T) {
	var lookups atomic.Int64
	env := shadowEnv(t, &lookups, false)
	live := compileFraud(t, env, nil)
	other := fraudSet(t) // the same rules, another Env
	_, err := taicel.NewShadow[Payment](live, other, taicel.ShadowOptions[Payment]{})
	assert.ErrorContains(t, err, "different Envs")
	_, err = taicel.NewShadow[Payment](nil, live, taicel.ShadowOptions[Payment]{})
	assert.ErrorContains(t, err, "nil Source")
	_, err = taicel.NewShadow[Payment](live, (*taicel.Set[Payment])(nil), taicel.ShadowOptions[Payment]{})
	assert.ErrorContains(t, err, "a Source has no set")

	// A lookup that fails fails the live set (returned) and the candidate
	// (counted).
	sh, err := taicel.NewShadow[Payment](live, live, taicel.ShadowOptions[Payment]{Name: "shadowed"})
	require.NoError(t, err)
	assert.Equal(t, "shadowed", sh.Name())
	errStore := errors.New("store down")
	d, err := sh.Evaluate(context.WithValue(t.Context(), errKey{}, errStore), signal(Payment{}))
	assert.ErrorIs(t, err, errStore)
	assert.Equal(t, tai.Decision{Policy: "fraud"}, d)
	st := sh.Stats()
	assert.Equal(t, ShadowCounts{Signals: 1, Errors: 1, LiveErrors: 1}, counts(st))

	// A live set that fails returns its error; the candidate still counts.
	failing, err := env.Compile(&taicel.Spec{Version: "fail", Rules: []taicel.Rule{{Name: "div", Verdict: tai.Deny, Expr: "attempts / attempts > 1"}}})
	require.NoError(t, err)
	sh, err = taicel.NewShadow[Payment](failing, live, taicel.ShadowOptions[Payment]{})
	require.NoError(t, err)
	d, err = sh.Evaluate(t.Context(), signal(Payment{}))
	assert.ErrorContains(t, err, `rule "div": division by zero`)
	assert.Equal(t, tai.Decision{Policy: "cel"}, d)
	assert.Equal(t, ShadowCounts{Signals: 1, LiveErrors: 1}, counts(sh.Stats()))

	// A Source handing out a set of another Env is a candidate error.
	var src swapSource
	src.set.Store(live)
	sh, err = taicel.NewShadow[Payment](live, &src, taicel.ShadowOptions[Payment]{})
	require.NoError(t, err)
	src.set.Store(other)
	_, err = sh.Evaluate(t.Context(), signal(Payment{}))
	require.NoError(t, err)
	assert.Equal(t, ShadowCounts{Signals: 1, Errors: 1}, counts(sh.Stats()))
}

type swapSource struct {
	set atomic.Pointer[taicel.Set[Payment]]
}

func (s *swapSource) Current() *taicel.Set[Payment] { return s.set.Load() }

// ShadowCounts are the counters of ShadowStats, to compare in one go.
type ShadowCounts struct{ Signals, Agreements, Disagreements, Errors, LiveErrors uint64 }

func counts(st taicel.ShadowStats) ShadowCounts {
	return ShadowCounts{st.Signals, st.Agreements, st.Disagreements, st.Errors, st.LiveErrors}
}

// TestShadowCounts runs a known stream through the fraud rules and a
// candidate that lowers the amount limits and drops the velocity rule,
// and checks every count against what the test works out by itself.
func TestShadowCounts(t *testing.T) {
	var lookups atomic.Int64
	env := shadowEnv(t, &lookups, false)
	live := compileFraud(t, env, nil)
	cand := compileFraud(t, env, func(s string) string {
		s = strings.Replace(s, "20000.0", "10000.0", 1)
		s = strings.Replace(s, "5000.0 ? 0.5", "2500.0 ? 0.5", 1)
		return strings.Replace(s, "attempts > 5", "attempts > 50", 1)
	})
	sh, err := taicel.NewShadow[Payment](live, cand, taicel.ShadowOptions[Payment]{})
	require.NoError(t, err)

	// amountRisk is the amount rule's risk with the given limits.
	amountRisk := func(a, high, mid float64) float64 {
		switch {
		case a > high:
			return 1
		case a > mid:
			return 0.5
		case a > 4000:
			return 0.25
		}
		return 0
	}
	verdict := func(score float64) tai.Verdict {
		switch {
		case score >= 0.5:
			return tai.Deny
		case score >= 0.3:
			return tai.Review
		}
		return tai.Allow
	}
	var want ShadowCounts
	wantByRule := map[string]uint64{}
	const n = 400
	for i := range n {
		amount := float64(i * 60)         // 0 .. 23940
		attempts := int64(i % 8)          // velocity fires for 6 and 7 in the live set only
		blacklisted := i%50 == 0 && i > 0 // a verdict rule decides in both
		p := Payment{CustomerID: "cust_1", MerchantID: "merc_2", Country: "DE", Currency: "EUR", Amount: amount}
		if blacklisted {
			p.Country = "KP"
		}
		st := state{attempts: attempts}
		_, err := sh.Evaluate(context.WithValue(t.Context(), stateKey{}, st), signal(p))
		require.NoError(t, err)

		want.Signals++
		if blacklisted {
			want.Agreements++
			continue
		}
		daily := 0.0
		if amount > 5000 {
			daily = 0.1
		}
		vel := 0.0
		if attempts > 5 {
			vel = 0.6
		}
		lAmount, cAmount := 0.6*amountRisk(amount, 20000, 5000), 0.6*amountRisk(amount, 10000, 2500)
		lv, cv := verdict(min(vel+lAmount+daily, 1)), verdict(min(cAmount+daily, 1))
		if lv == cv {
			want.Agreements++
			continue
		}
		want.Disagreements++
		if vel > 0 {
			wantByRule["velocity"]++
		}
		if lAmount != cAmount {
			wantByRule["amount"]++
		}
	}
	require.NotZero(t, want.Disagreements)
	st := sh.Stats()
	assert.Equal(t, want, counts(st))
	assert.Equal(t, wantByRule, st.ByRule)
	assert.Equal(t, int64(n), lookups.Load())
	t.Logf("%d signals, %d disagreements, by rule %v", st.Signals, st.Disagreements, st.ByRule)
}

// TestShadowRace evaluates from several goroutines while the candidate's
// Loader reloads its file: every signal is counted once, the returned
// decision is always the live one, and every disagreement is between the
// live set and one whole candidate set.
func TestShadowRace(t *testing.T) {
	const reloads = 200
	var lookups atomic.Int64
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{"n": cel.IntType},
		Lookup: func(context.Context, tai.Signal[Order]) (map[string]any, error) {
			lookups.Add(1)
			return map[string]any{"n": int64(1)}, nil
		},
	})
	require.NoError(t, err)
	live, err := env.Compile(&taicel.Spec{Version: "live", Name: "live", Thresholds: taicel.Thresholds{Deny: 1},
		Rules: []taicel.Rule{{Name: "r0", Weight: 0.1, Expr: "payload.Items >= 0 && n > 0", Reason: "live"}}})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, uniformRules(1))
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: -1})
	require.NoError(t, err)

	var mixed atomic.Int64
	sh, err := taicel.NewShadow[Order](live, l, taicel.ShadowOptions[Order]{
		OnDisagree: func(_ tai.Signal[Order], ld, cd tai.Decision) {
			ok := ld.Reason == "live" && len(cd.Contributions) == 4 && cd.Reason == cd.Policy
			for _, c := range cd.Contributions {
				ok = ok && c.Reason == cd.Policy
			}
			if !ok {
				mixed.Add(1)
			}
		},
	})
	require.NoError(t, err)

	var stop atomic.Bool
	var evaluated atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				d, err := sh.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Items: 1}})
				if err != nil || d.Reason != "live" || d.Verdict != tai.Allow {
					t.Errorf("got %+v, %v; want the live decision", d, err)
					return
				}
				evaluated.Add(1)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = sh.Stats()
			time.Sleep(time.Millisecond)
		}
	})
	for v := 2; v <= reloads+1; v++ {
		// Odd versions deny (weights add up to 1.2), even ones allow.
		text := uniformRules(v)
		if v%2 == 1 {
			text = strings.ReplaceAll(text, "weight: 0.1", "weight: 0.3")
		}
		writeFile(t, path, text)
		changed, err := l.Reload()
		require.NoError(t, err)
		require.True(t, changed)
	}
	stop.Store(true)
	wg.Wait()
	st := sh.Stats()
	assert.Equal(t, uint64(evaluated.Load()), st.Signals)
	assert.Equal(t, st.Signals, st.Agreements+st.Disagreements)
	assert.Equal(t, int64(st.Signals), lookups.Load())
	assert.Zero(t, mixed.Load(), "disagreements with a mixed candidate set")
	assert.Equal(t, fmt.Sprint(reloads+1), st.CandidateVersion)
	if st.Disagreements > 0 {
		assert.Equal(t, map[string]uint64{"r0": st.Disagreements, "r1": st.Disagreements, "r2": st.Disagreements, "r3": st.Disagreements}, st.ByRule)
	}
	t.Logf("%d signals, %d disagreements", st.Signals, st.Disagreements)
}

// TestShadowInPipeline puts a Shadow where the live set was: the pipeline
// acts on the live decisions only.
func TestShadowInPipeline(t *testing.T) {
	var lookups atomic.Int64
	env := shadowEnv(t, &lookups, false)
	live := compileFraud(t, env, nil)
	strict := compileFraud(t, env, func(s string) string { return strings.Replace(s, "attempts > 5", "attempts > 0", 1) })
	sh, err := taicel.NewShadow[Payment](live, strict, taicel.ShadowOptions[Payment]{})
	require.NoError(t, err)
	var ran atomic.Int64
	p, err := tai.New[Payment, string](sh, tai.ActionFunc[Payment, string](func(context.Context, tai.Signal[Payment]) (string, error) {
		ran.Add(1)
		return "ok", nil
	}))
	require.NoError(t, err)
	ctx := context.WithValue(t.Context(), stateKey{}, state{attempts: 3})
	res, err := p.Process(ctx, signal(Payment{CustomerID: "cust_1", Country: "DE", Amount: 10}))
	require.NoError(t, err)
	assert.Equal(t, "ok", res.Value)
	assert.Equal(t, tai.Allow, res.Decision.Verdict)
	assert.Equal(t, int64(1), ran.Load())
	assert.Equal(t, uint64(1), sh.Stats().Disagreements, "the candidate would have denied")
}

// A panic in OnDisagree or OnError is logged, never the live signal's:
// Evaluate returns what the live set alone would.
func TestShadowCallbackPanicsNeverReachTheLiveSignal(t *testing.T) {
	var lookups atomic.Int64
	env := shadowEnv(t, &lookups, false)
	live := compileFraud(t, env, nil)
	denyAll, err := env.Compile(&taicel.Spec{Version: "deny", Rules: []taicel.Rule{{Name: "all", Verdict: tai.Deny, Expr: "true"}}})
	require.NoError(t, err)
	failing, err := env.Compile(&taicel.Spec{Version: "fail", Rules: []taicel.Rule{{Name: "div", Weight: 1, Expr: "attempts / (attempts - attempts) > 1"}}})
	require.NoError(t, err)
	p := Payment{CustomerID: "cust_1", MerchantID: "merc_2", Country: "DE", Currency: "EUR", Amount: 120}
	ctx := context.WithValue(t.Context(), stateKey{}, state{})
	want, err := live.Evaluate(ctx, signal(p))
	require.NoError(t, err)
	require.Equal(t, tai.Allow, want.Verdict)

	for _, cand := range []*taicel.Set[Payment]{denyAll, failing} {
		t.Run(cand.Version(), func(t *testing.T) {
			var logs logRecords
			sh, err := taicel.NewShadow[Payment](live, cand, taicel.ShadowOptions[Payment]{
				Logger:     slog.New(&logs),
				OnDisagree: func(tai.Signal[Payment], tai.Decision, tai.Decision) { panic("disagree") },
				OnError:    func(tai.Signal[Payment], error) { panic("error") },
			})
			require.NoError(t, err)
			var got tai.Decision
			require.NotPanics(t, func() { got, err = sh.Evaluate(ctx, signal(p)) })
			require.NoError(t, err)
			assert.Equal(t, want, got)
			panics := logs.panics()
			require.Len(t, panics, 1)
			if cand == denyAll {
				assert.Equal(t, "OnDisagree", panics[0].Where)
				assert.Equal(t, uint64(1), sh.Stats().Disagreements)
			} else {
				assert.Equal(t, "OnError", panics[0].Where)
				assert.Equal(t, uint64(1), sh.Stats().Errors)
			}
		})
	}
}

// A verdict rule that decides in both sets with different verdicts (the
// candidate reviews what the live set denies) is the rule the
// disagreement is about: ByRule counts it, as it counts a scored rule
// whose contribution differs.
func TestShadowCountsAVerdictRuleWhoseVerdictDiffers(t *testing.T) {
	var lookups atomic.Int64
	env := shadowEnv(t, &lookups, false)
	live := compileFraud(t, env, nil)
	cand := compileFraud(t, env, func(s string) string {
		return strings.Replace(s, "verdict: deny", "verdict: review", 1)
	})
	sh, err := taicel.NewShadow[Payment](live, cand, taicel.ShadowOptions[Payment]{})
	require.NoError(t, err)
	d, err := sh.Evaluate(t.Context(), signal(Payment{CustomerID: "cust_1", MerchantID: "merc_2", Country: "KP", Amount: 10}))
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	st := sh.Stats()
	assert.Equal(t, uint64(1), st.Disagreements)
	assert.Equal(t, map[string]uint64{"blacklist": 1}, st.ByRule)
}
