package taicel_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// genSignal is one payment of a generated stream and the state the
// store returns for it.
type genSignal struct {
	sig tai.Signal[Payment]
	st  state
}

// stream returns n payments: amounts over 0..25000, attempts over 0..8,
// spending so far, a blacklisted country now and then.
func stream(n int) []genSignal {
	out := make([]genSignal, n)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range out {
		p := Payment{CustomerID: fmt.Sprintf("cust_%d", i%40+10), MerchantID: "merc_2", Country: "DE", Currency: "EUR",
			Amount: float64((i*7919)%25000) + 0.25*float64(i%4)}
		if i%97 == 5 {
			p.Country = "KP"
		}
		out[i] = genSignal{
			sig: tai.Signal[Payment]{ID: fmt.Sprintf("pay-%d", i), Kind: "payment", Key: p.CustomerID, Time: base.Add(time.Duration(i) * time.Second), Payload: p},
			st:  state{attempts: int64(i * 31 % 9), spentToday: float64(i%13) * 400},
		}
	}
	return out
}

// expected is the fraud rules of testdata/fraud.yaml worked out by hand,
// with the amount rule's two limits as parameters.
type expected struct {
	verdict   tai.Verdict
	score     float64
	blacklist bool
	amount    float64 // the amount rule's contribution
}

func judgeByHand(g genSignal, high, mid float64) expected {
	p, st := g.sig.Payload, g.st
	if p.Country == "KP" || p.Country == "IR" || p.CustomerID == "cust_9" || p.MerchantID == "merc_1" {
		return expected{verdict: tai.Deny, blacklist: true}
	}
	var e expected
	switch a := p.Amount; {
	case a > high:
		e.amount = 0.6
	case a > mid:
		e.amount = 0.3
	case a > 4000:
		e.amount = 0.15
	}
	score := e.amount
	if st.attempts > 5 {
		score += 0.6
	}
	if st.spentToday+p.Amount > 5000 {
		score += 0.1
	}
	e.score = min(score, 1)
	switch {
	case e.score >= 0.5:
		e.verdict = tai.Deny
	case e.score >= 0.3:
		e.verdict = tai.Review
	default:
		e.verdict = tai.Allow
	}
	return e
}

// lowered is the fraud rules with the amount limits halved.
func lowered(s string) string {
	s = strings.Replace(s, "20000.0 ? 1.0", "10000.0 ? 1.0", 1)
	return strings.Replace(s, "5000.0 ? 0.5", "2500.0 ? 0.5", 1)
}

// writeTrail runs the stream through a real pipeline judging with the
// fraud rules (inputs recorded) into a kaizen.Audit, and adds what a
// backtest must leave alone: a reload record of the rule file, decisions
// of the same policy without inputs, decisions of another policy and
// kind. It returns the trail.
func writeTrail(t testing.TB, gs []genSignal) []byte {
	t.Helper()
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	states := make(map[string]state, len(gs))
	for _, g := range gs {
		states[g.sig.ID] = g.st
	}
	opts := fraudOptions()
	opts.Lookup = func(_ context.Context, s tai.Signal[Payment]) (map[string]any, error) {
		st := states[s.ID]
		return map[string]any{"attempts": st.attempts, "spent_today": st.spentToday, "moved_km": st.movedKm, "speed_kmh": st.speedKmh}, nil
	}
	opts.RecordInputs = true
	env, err := taicel.NewEnv(opts)
	require.NoError(t, err)
	l, err := taicel.NewLoader(env, "testdata/fraud.yaml", taicel.LoaderOptions{Interval: -1, Observer: audit})
	require.NoError(t, err)
	charge := tai.ActionFunc[Payment, string](func(context.Context, tai.Signal[Payment]) (string, error) { return "charged", nil })
	p, err := tai.New[Payment, string](l, charge, tai.WithObservers(audit))
	require.NoError(t, err)
	for _, g := range gs {
		_, err := p.Process(t.Context(), g.sig)
		var denied *tai.DeniedError
		if err != nil && !errors.As(err, &denied) {
			require.NoError(t, err)
		}
	}

	plain := fraudSet(t) // the same policy, no inputs
	p2, err := tai.New[Payment, string](plain, charge, tai.WithObservers(audit))
	require.NoError(t, err)
	other, err := env.Compile(&taicel.Spec{Version: "1", Name: "refunds", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "payload.Amount > 1.0"}}})
	require.NoError(t, err)
	p3, err := tai.New[Payment, string](other, charge, tai.WithObservers(audit))
	require.NoError(t, err)
	for i := range 3 {
		_, _ = p2.Process(t.Context(), tai.Signal[Payment]{ID: fmt.Sprintf("plain-%d", i), Kind: "payment", Payload: Payment{Amount: 10}})
		_, _ = p3.Process(t.Context(), tai.Signal[Payment]{ID: fmt.Sprintf("refund-%d", i), Kind: "refund", Payload: Payment{Amount: 10}})
	}
	require.NoError(t, l.Shutdown(t.Context()))
	require.NoError(t, audit.Shutdown(t.Context()))
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(trail.Bytes())))
	return trail.Bytes()
}

func candidateSet(t testing.TB, edit func(string) string) *taicel.Set[Payment] {
	t.Helper()
	env, err := taicel.NewEnv(fraudOptions())
	require.NoError(t, err)
	return compileFraud(t, env, edit)
}

func TestBacktestSameSet(t *testing.T) {
	gs := stream(500)
	trail := writeTrail(t, gs)
	rep, err := taicel.Backtest(context.Background(), candidateSet(t, nil), bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount"})
	require.NoError(t, err)
	assert.Equal(t, 500+1+3+3, rep.Read)
	assert.Equal(t, 500, rep.Replayed)
	assert.Equal(t, 3, rep.Skipped)
	assert.Equal(t, 4, rep.Filtered, "a reload record and three refunds")
	assert.Zero(t, rep.Errors)
	assert.Zero(t, rep.Changed)
	assert.Zero(t, rep.ScoreChanged)
	assert.Empty(t, rep.Flips)
	assert.Empty(t, rep.Rules)
	assert.Nil(t, rep.Labels)
	assert.Equal(t, "fraud", rep.Candidate)
	assert.Equal(t, "fraud", rep.Policy)

	// Any policy: the refunds' decisions are replayed too, and differ.
	rep, err = taicel.Backtest(context.Background(), candidateSet(t, nil), bytes.NewReader(trail), taicel.BacktestOptions{Policy: "*"})
	require.NoError(t, err)
	assert.Equal(t, 503, rep.Replayed)
	assert.Equal(t, 1, rep.Filtered)
	// Only one kind.
	rep, err = taicel.Backtest(context.Background(), candidateSet(t, nil), bytes.NewReader(trail), taicel.BacktestOptions{Policy: "*", Kind: "refund"})
	require.NoError(t, err)
	assert.Equal(t, 3, rep.Replayed)
	assert.Equal(t, 3, rep.Changed, "refunds denied, the fraud rules allow them")
}

func TestBacktestLoweredLimits(t *testing.T) {
	gs := stream(2000)
	trail := writeTrail(t, gs)

	// What the candidate must find, worked out without taicel.
	type flipKey struct{ from, to tai.Verdict }
	wantFlips := map[flipKey]int{}
	wantAmounts := map[flipKey]float64{}
	var wantChanged, wantScoreChanged, amountOnlyNew, amountDifferent int
	var firstFlipped, flipped []string
	for _, g := range gs {
		old, cand := judgeByHand(g, 20000, 5000), judgeByHand(g, 10000, 2500)
		if old.verdict == cand.verdict {
			if old.score != cand.score {
				wantScoreChanged++
			}
			continue
		}
		wantChanged++
		flipped = append(flipped, g.sig.ID)
		k := flipKey{old.verdict, cand.verdict}
		wantFlips[k]++
		wantAmounts[k] += g.sig.Payload.Amount
		if k == (flipKey{tai.Allow, tai.Deny}) && len(firstFlipped) < 3 {
			firstFlipped = append(firstFlipped, g.sig.ID)
		}
		switch {
		case old.amount == 0 && cand.amount > 0:
			amountOnlyNew++
		case old.amount != cand.amount:
			amountDifferent++
		}
	}
	require.NotZero(t, wantChanged)

	rep, err := taicel.Backtest(context.Background(), candidateSet(t, lowered), bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount", Examples: 3})
	require.NoError(t, err)
	assert.Equal(t, 2000, rep.Replayed)
	assert.Equal(t, wantChanged, rep.Changed)
	assert.Equal(t, wantScoreChanged, rep.ScoreChanged)
	got := map[flipKey]int{}
	for _, f := range rep.Flips {
		k := flipKey{f.From, f.To}
		got[k] = f.Count
		assert.InDelta(t, wantAmounts[k], f.Amount, 1e-6, "%v", k)
		assert.LessOrEqual(t, len(f.Examples), 3)
		assert.Less(t, f.From, f.To, "lower limits only raise verdicts")
	}
	assert.Equal(t, wantFlips, got)
	for _, f := range rep.Flips {
		if f.From == tai.Allow && f.To == tai.Deny {
			var ids []string
			for _, ex := range f.Examples {
				ids = append(ids, ex.ID)
				assert.NotEqual(t, ex.OldScore, ex.NewScore)
				assert.Contains(t, ex.NewReason, "over the limit")
			}
			assert.Equal(t, firstFlipped, ids)
		}
	}
	require.Len(t, rep.Rules, 1, "only the amount rule's firing differs")
	assert.Equal(t, "amount", rep.Rules[0].Rule)
	assert.Equal(t, amountOnlyNew, rep.Rules[0].OnlyNew)
	assert.Equal(t, amountDifferent, rep.Rules[0].Different)
	assert.Zero(t, rep.Rules[0].OnlyOld)
	var total float64
	for _, a := range wantAmounts {
		total += a
	}
	assert.InDelta(t, total, rep.Rules[0].OnlyNewAmount+rep.Rules[0].DifferentAmount, 1e-6)
	t.Logf("%d changed: %v", rep.Changed, got)

	// With room for every example, they are exactly the flips expected.
	rep, err = taicel.Backtest(context.Background(), candidateSet(t, lowered), bytes.NewReader(trail), taicel.BacktestOptions{Examples: 1 << 20})
	require.NoError(t, err)
	var ids []string
	for _, f := range rep.Flips {
		for _, ex := range f.Examples {
			ids = append(ids, ex.ID)
		}
	}
	assert.ElementsMatch(t, flipped, ids)
}

func TestBacktestLabels(t *testing.T) {
	gs := stream(1000)
	trail := writeTrail(t, gs)
	// The truth: fraud was confirmed for many attempts or a large amount.
	labels := map[string]bool{"pay-never-seen": true, "pay-3": false}
	for _, g := range gs {
		if g.st.attempts > 6 || g.sig.Payload.Amount > 15000 {
			labels[g.sig.ID] = true
		}
	}
	for _, positive := range []tai.Verdict{tai.Deny, tai.Review} {
		t.Run(positive.String(), func(t *testing.T) {
			var old, cand taicel.Confusion
			count := func(c *taicel.Confusion, flagged, pos bool) {
				switch {
				case flagged && pos:
					c.TP++
				case flagged:
					c.FP++
				case pos:
					c.FN++
				default:
					c.TN++
				}
			}
			labelled := 0
			for _, g := range gs {
				pos := labels[g.sig.ID]
				if pos {
					labelled++
				}
				count(&old, judgeByHand(g, 20000, 5000).verdict >= positive, pos)
				count(&cand, judgeByHand(g, 10000, 2500).verdict >= positive, pos)
			}
			rep, err := taicel.Backtest(context.Background(), candidateSet(t, lowered), bytes.NewReader(trail), taicel.BacktestOptions{Labels: labels, Positive: positive})
			require.NoError(t, err)
			require.NotNil(t, rep.Labels)
			assert.Equal(t, positive, rep.Labels.Positive)
			assert.Equal(t, labelled+1, rep.Labels.Labelled)
			assert.Equal(t, 1, rep.Labels.Unseen)
			for _, c := range []struct {
				got  taicel.Confusion
				want taicel.Confusion
			}{{rep.Labels.Recorded, old}, {rep.Labels.Candidate, cand}} {
				assert.Equal(t, [4]int{c.want.TP, c.want.FP, c.want.FN, c.want.TN}, [4]int{c.got.TP, c.got.FP, c.got.FN, c.got.TN})
				assert.InDelta(t, float64(c.want.TP)/float64(c.want.TP+c.want.FP), c.got.Precision, 1e-12)
				assert.InDelta(t, float64(c.want.TP)/float64(c.want.TP+c.want.FN), c.got.Recall, 1e-12)
			}
			assert.GreaterOrEqual(t, rep.Labels.Candidate.Recall, rep.Labels.Recorded.Recall, "lower limits catch as much or more")
		})
	}
}

func TestBacktestDeterministic(t *testing.T) {
	trail := writeTrail(t, stream(3000))
	var reports [][]byte
	for _, workers := range []int{1, 4, 3} {
		rep, err := taicel.Backtest(context.Background(), candidateSet(t, lowered), bytes.NewReader(trail), taicel.BacktestOptions{
			Workers: workers, Amount: "payload.Amount * 1.1", Labels: map[string]bool{"pay-7": true, "pay-70": true}})
		require.NoError(t, err)
		b, err := json.Marshal(rep)
		require.NoError(t, err)
		reports = append(reports, b)
	}
	assert.Equal(t, string(reports[0]), string(reports[1]))
	assert.Equal(t, string(reports[0]), string(reports[2]))
}

func TestBacktestMalformedLines(t *testing.T) {
	trail := writeTrail(t, stream(600))
	lines := strings.SplitAfter(string(trail), "\n")
	for _, tc := range []struct {
		name, bad, want string
		at              int
	}{
		{"not JSON", "{\"id\" 7}\n", "not an audit trail entry: offset 6: want ':'", 421},
		{"torn", lines[300][:50] + "\n", "not an audit trail entry: ", 301},
		{"wrong type", `{"id": 7}` + "\n", "not an audit trail entry: id: offset 7: want a string", 2},
		{"bad verdict", `{"decision": {"verdict": "maybe"}}` + "\n", `not an audit trail entry: decision: verdict: tai: unknown verdict "maybe"`, 599},
		{"trailing", lines[5][:len(lines[5])-1] + "}\n", "not an audit trail entry: offset", 6},
		{"trailing NUL", lines[7][:len(lines[7])-1] + "\x00junk\n", `unexpected '\x00' after the value`, 8},
		{"score not a number", strings.Replace(lines[9], `"score":`, `"score":"NaN","x":`, 1), "not an audit trail entry: decision: score: offset", 10},
		{"contribution score not a number", `{"decision":{"verdict":"deny","contributions":[{"rule":"r","score":"+Inf"}]}}` + "\n", "decision: contributions: score: offset", 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edited := append([]string(nil), lines...)
			edited[tc.at-1] = tc.bad
			for _, workers := range []int{1, 2} {
				rep, err := taicel.Backtest(context.Background(), candidateSet(t, nil), strings.NewReader(strings.Join(edited, "")), taicel.BacktestOptions{Workers: workers})
				require.Error(t, err)
				assert.Nil(t, rep)
				assert.Contains(t, err.Error(), fmt.Sprintf("taicel: backtest: line %d: ", tc.at))
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
	// The first bad line is named, wherever the workers are.
	edited := append([]string(nil), lines...)
	edited[500], edited[20] = "x\n", "y\n"
	_, err := taicel.Backtest(context.Background(), candidateSet(t, nil), strings.NewReader(strings.Join(edited, "")), taicel.BacktestOptions{Workers: 4})
	assert.ErrorContains(t, err, "line 21: ")

	// Files are named; blank lines are ignored.
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	require.NoError(t, os.WriteFile(a, []byte(strings.Join(lines[:100], "")+"\n  \n"), 0o600))
	require.NoError(t, os.WriteFile(b, []byte(strings.Join(lines[100:], "")+"{"), 0o600))
	_, err = taicel.BacktestFiles(context.Background(), candidateSet(t, nil), taicel.BacktestOptions{}, a, b)
	assert.ErrorContains(t, err, "taicel: backtest: "+b+":508: not an audit trail entry")
	require.NoError(t, os.WriteFile(b, []byte(strings.Join(lines[100:], "")), 0o600))
	rep, err := taicel.BacktestFiles(context.Background(), candidateSet(t, nil), taicel.BacktestOptions{}, a, b)
	require.NoError(t, err)
	assert.Equal(t, 600, rep.Replayed)
	assert.Equal(t, len(lines)-1, rep.Read) // SplitAfter leaves an empty last element
	_, err = taicel.BacktestFiles(context.Background(), candidateSet(t, nil), taicel.BacktestOptions{}, a, filepath.Join(dir, "missing.jsonl"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	// A line longer than a backtest reads.
	_, err = taicel.Backtest(context.Background(), candidateSet(t, nil), strings.NewReader(lines[0]+strings.Repeat("x", 65<<20)), taicel.BacktestOptions{})
	assert.ErrorContains(t, err, "taicel: backtest: line 2: bufio.Scanner: token too long")
}

func TestBacktestReplayErrors(t *testing.T) {
	trail := writeTrail(t, stream(300))
	// The candidate divides by the attempts, which are sometimes 0, and
	// reads an inputs object edited to have a field Payment lacks.
	cand := candidateSet(t, func(s string) string {
		return s + `  - name: per_attempt
    weight: 0.1
    expr: payload.Amount / double(attempts) > 1000.0 && 10 / attempts > 0
`
	})
	lines := strings.SplitAfter(string(trail), "\n")
	lines[9] = strings.Replace(lines[9], `"payload":{`, `"payload":{"Card":"4242",`, 1)
	rep, err := taicel.Backtest(context.Background(), cand, strings.NewReader(strings.Join(lines, "")), taicel.BacktestOptions{Examples: 2})
	require.NoError(t, err)
	zero := 0
	for _, g := range stream(300) {
		// 0/0 is NaN, not over 1000: && stops before the division by zero
		if g.st.attempts == 0 && g.sig.Payload.Amount > 0 && !judgeByHand(g, 0, 0).blacklist {
			zero++
		}
	}
	assert.Equal(t, zero+1, rep.Errors)
	assert.Equal(t, 300-zero-1, rep.Replayed)
	require.Len(t, rep.ErrorExamples, 2)
	for _, e := range rep.ErrorExamples {
		assert.NotZero(t, e.Line)
		assert.NotEmpty(t, e.ID)
	}
	var perAttempt *taicel.RuleChange
	for i := range rep.Rules {
		if rep.Rules[i].Rule == "per_attempt" {
			perAttempt = &rep.Rules[i]
		}
	}
	require.NotNil(t, perAttempt)
	assert.Equal(t, zero, perAttempt.Errors)
	assert.Contains(t, perAttempt.FirstError, `rule "per_attempt": division by zero`)
	assert.Contains(t, rep.ErrorExamples[0].Error+rep.ErrorExamples[1].Error, `taicel_test.Payment has no field "Card"`)
}

func TestBacktestOptionsErrors(t *testing.T) {
	cand := candidateSet(t, nil)
	for _, tc := range []struct {
		opts taicel.BacktestOptions
		want string
	}{
		{taicel.BacktestOptions{Positive: 7}, "BacktestOptions.Positive 7 is not a verdict"},
		{taicel.BacktestOptions{Workers: -1}, "BacktestOptions.Workers -1 is negative"},
		{taicel.BacktestOptions{Workers: 257}, "BacktestOptions.Workers 257 is more than 256"},
		{taicel.BacktestOptions{Workers: math.MaxInt}, fmt.Sprintf("BacktestOptions.Workers %d is more than 256", math.MaxInt)},
		{taicel.BacktestOptions{Amount: "payload.Amont"}, `BacktestOptions.Amount "payload.Amont": ERROR: amount:1:8: undefined field 'Amont'`},
		{taicel.BacktestOptions{Amount: "payload.Country"}, `BacktestOptions.Amount "payload.Country" returns string; want a double or an int`},
	} {
		_, err := taicel.Backtest(context.Background(), cand, strings.NewReader(""), tc.opts)
		assert.ErrorContains(t, err, tc.want)
	}
	_, err := taicel.Backtest[Payment](context.Background(), nil, strings.NewReader(""), taicel.BacktestOptions{})
	assert.ErrorContains(t, err, "nil candidate Set")
	//lint:ignore SA1012 a nil context is what is tested
	_, err = taicel.Backtest(nil, cand, strings.NewReader(""), taicel.BacktestOptions{})
	assert.ErrorContains(t, err, "nil context")
	_, err = taicel.Backtest(context.Background(), cand, nil, taicel.BacktestOptions{})
	assert.ErrorContains(t, err, "nil io.Reader")
	_, err = taicel.BacktestFiles(context.Background(), cand, taicel.BacktestOptions{})
	assert.ErrorContains(t, err, "no file")
	rep, err := taicel.Backtest(context.Background(), cand, strings.NewReader(""), taicel.BacktestOptions{Amount: "attempts"})
	require.NoError(t, err)
	assert.Zero(t, rep.Read)
}

// TestBacktestDynamic replays the trail with a dynamic Env, as the taikit
// command does, and finds what the typed candidate finds.
func TestBacktestDynamic(t *testing.T) {
	trail := writeTrail(t, stream(1000))
	typed, err := taicel.Backtest(context.Background(), candidateSet(t, lowered), bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount"})
	require.NoError(t, err)

	env, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	raw, err := os.ReadFile("testdata/fraud.yaml")
	require.NoError(t, err)
	spec, err := taicel.Parse([]byte(lowered(string(raw))))
	require.NoError(t, err)
	dyn, err := env.Compile(spec)
	require.NoError(t, err)
	rep, err := taicel.Backtest(context.Background(), dyn, bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount"})
	require.NoError(t, err)
	a, _ := json.Marshal(typed)
	b, _ := json.Marshal(rep)
	assert.JSONEq(t, string(a), string(b))
	assert.NotZero(t, rep.Changed)

	// A rule reading a field no record has is reported per rule.
	blacklisted := 0
	for _, g := range stream(1000) {
		if judgeByHand(g, 0, 0).blacklist {
			blacklisted++
		}
	}
	rules := spec.Rules
	spec.Rules = append(rules, taicel.Rule{Name: "card", Weight: 0.1, Expr: `payload.CardCountry != payload.Country`})
	dyn, err = env.Compile(spec)
	require.NoError(t, err)
	rep, err = taicel.Backtest(context.Background(), dyn, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1000-blacklisted, rep.Errors, "the blacklisted are decided before")
	require.Len(t, rep.Rules, 1)
	assert.Equal(t, "card", rep.Rules[0].Rule)
	assert.Equal(t, 1000-blacklisted, rep.Rules[0].Errors)
	assert.Contains(t, rep.Rules[0].FirstError, "no such key: CardCountry")

	// So is an amount reading a variable no record has.
	spec.Rules = rules
	dyn, err = env.Compile(spec)
	require.NoError(t, err)
	rep, err = taicel.Backtest(context.Background(), dyn, bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount + extra"})
	require.NoError(t, err)
	assert.Equal(t, 1000, rep.Errors)
	assert.Empty(t, rep.Rules)
	assert.Contains(t, rep.ErrorExamples[0].Error, "taicel: amount: no such attribute")
}

func TestReportText(t *testing.T) {
	trail := writeTrail(t, stream(500))
	labels := map[string]bool{"pay-1": true, "pay-2": true}
	rep, err := taicel.Backtest(context.Background(), candidateSet(t, lowered), bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount", Labels: labels, Examples: 1})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, rep.WriteText(&out))
	text := out.String()
	t.Logf("\n%s", text)
	for _, want := range []string{
		`candidate fraud version 1 against the decisions of policy "fraud"`,
		"507 lines: 500 replayed, 3 without inputs, 4 of other kinds or policies, 0 errors",
		fmt.Sprintf("changed verdicts: %d of 500", rep.Changed),
		"flips:\n  allow  -> review ",
		"        was allow ",
		"rules in the changed decisions:",
		"only new amount",
		"labels: 2 signals labelled positive (0 not replayed); a decision of deny or more flags a signal",
		"precision", "recorded", "candidate",
	} {
		assert.Contains(t, text, want)
	}
	assert.Equal(t, errShort, rep.WriteText(failingWriter{}))
}

var errShort = errors.New("disk full")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errShort }

// FuzzBacktestLine backtests one arbitrary line: a report or an error,
// never a panic, and only JSON is taken for an entry.
func FuzzBacktestLine(f *testing.F) {
	trail := writeTrail(f, stream(20))
	for _, line := range strings.SplitAfter(string(trail), "\n")[:12] {
		f.Add([]byte(line))
	}
	f.Add([]byte(`{"decision":{"verdict":"deny","policy":"fraud","contributions":null,"inputs":{"payload":{"Amount":1e400}}}}`))
	f.Add([]byte(`{"kind":null,"decision":{"verdict":"allow","policy":"fraud","score":null,"inputs":"{\"payload\":{}}"}}`))
	cand := candidateSet(f, lowered)
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.ContainsAny(line, "\n") {
			return
		}
		rep, err := taicel.Backtest(context.Background(), cand, bytes.NewReader(line), taicel.BacktestOptions{Workers: 1, Amount: "payload.Amount"})
		if err != nil {
			require.Nil(t, rep)
			require.Contains(t, err.Error(), "line 1: ")
			return
		}
		if rep.Read == 1 {
			require.True(t, json.Valid(line), "%q taken for an entry", line)
		}
		_, err = json.Marshal(rep)
		require.NoError(t, err)
	})
}

// A backtest stops when its context ends: at once, with the context's
// cause, while the trail's reader is blocked (a pipe nobody writes to any
// more), and its reader and workers end when the blocked read returns.
func TestBacktestStopsWithItsContext(t *testing.T) {
	trail := writeTrail(t, stream(2000))
	cand := candidateSet(t, lowered)

	pr, pw := io.Pipe()
	go func() {
		// Half the trail, then silence: the reader blocks.
		_, _ = pw.Write(trail[:len(trail)/2])
	}()
	cause := errors.New("operator gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	rep, err := taicel.Backtest(ctx, cand, pr, taicel.BacktestOptions{})
	assert.Nil(t, rep)
	require.ErrorIs(t, err, cause)
	assert.Less(t, time.Since(start), 5*time.Second, "returned when the context ended, not when the trail did")
	// Closing the pipe ends the blocked read; nothing is left running.
	require.NoError(t, pw.CloseWithError(io.ErrClosedPipe))
	goleak.VerifyNone(t)

	// A context ended before the start stops it too, whatever the trail.
	done, stop := context.WithCancel(context.Background())
	stop()
	_, err = taicel.Backtest(done, cand, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.ErrorIs(t, err, context.Canceled)
}

// A long line costs its own length, not that of a batch of lines as long:
// a trail whose first line holds a large payload (here 1 MiB of blanks)
// is read in memory of the order of the line.
func TestBacktestLongLine(t *testing.T) {
	trail := writeTrail(t, stream(300))
	long := append(bytes.Repeat([]byte{' '}, 1<<20), '\n')
	in := append(append(long, trail...), long...)
	set := candidateSet(t, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rep, err := taicel.Backtest(context.Background(), set, bytes.NewReader(in), taicel.BacktestOptions{Workers: 1})
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	assert.Equal(t, 300, rep.Replayed)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(32<<20), "bytes allocated")
}

// The text report quotes the IDs, reasons and errors of the trail that
// hold a character that is not printable: a newline forged a line of the
// report, and an escape sequence reached the terminal.
func TestReportTextQuotesWhatIsNotPrintable(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{RecordInputs: true})
	require.NoError(t, err)
	compile := func(limit string, rules ...taicel.Rule) *taicel.Set[map[string]any] {
		set, err := env.Compile(&taicel.Spec{Version: "1", Name: "n", Rules: append([]taicel.Rule{
			{Name: "big", Verdict: tai.Deny, Expr: "payload.Amount > " + limit, Reason: "{{payload.Note}}"},
		}, rules...)})
		require.NoError(t, err)
		return set
	}
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(compile("100.0"), tai.ActionFunc[map[string]any, string](func(context.Context, tai.Signal[map[string]any]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)
	const forged = "\nchanged verdicts: 0 of 1\x1b[2K"
	_, _ = p.Process(t.Context(), tai.Signal[map[string]any]{ID: "a" + forged, Kind: "k", Payload: map[string]any{"Amount": 50.0, "Note": "b" + forged}})
	_, _ = p.Process(t.Context(), tai.Signal[map[string]any]{ID: "c" + forged, Kind: "k", Payload: map[string]any{"Amount": 5.0, "Note": 7}})
	require.NoError(t, audit.Shutdown(t.Context()))

	rep, err := taicel.Backtest(t.Context(), compile("10.0", taicel.Rule{Name: "note", Weight: 0.1, Expr: "payload.Note.size() > 0"}), bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{})
	require.NoError(t, err)
	require.Equal(t, 1, rep.Changed)
	require.Equal(t, 1, rep.Errors)
	var out bytes.Buffer
	require.NoError(t, rep.WriteText(&out))
	text := out.String()
	t.Logf("\n%s", text)
	assert.NotContains(t, text, "\x1b")
	assert.Len(t, regexp.MustCompile(`(?m)^changed verdicts: `).FindAllString(text, -1), 1, "no line forged")
	assert.Contains(t, text, `"a\nchanged verdicts: 0 of 1\x1b[2K"`)
	assert.Contains(t, text, `now deny   0.00 "b\nchanged verdicts: 0 of 1\x1b[2K"`)
	assert.Contains(t, text, `"c\nchanged verdicts: 0 of 1\x1b[2K": taicel: rule "note"`)
}

// Amounts that no sum can hold are refused one by one, as a NaN or an
// infinity is: two amounts of 1e308 summed to +Inf, and the report, which
// encodes as JSON, no longer did.
func TestBacktestAmountsTheSumsCanHold(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{RecordInputs: true})
	require.NoError(t, err)
	compile := func(limit string) *taicel.Set[map[string]any] {
		set, err := env.Compile(&taicel.Spec{Version: "1", Name: "n", Rules: []taicel.Rule{
			{Name: "big", Verdict: tai.Deny, Expr: "payload.Amount > " + limit},
		}})
		require.NoError(t, err)
		return set
	}
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(compile("1.7e308"), tai.ActionFunc[map[string]any, string](func(context.Context, tai.Signal[map[string]any]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)
	for i, amount := range []float64{1e308, 1e308, -1e308, 1e200, 1e280} {
		_, _ = p.Process(t.Context(), tai.Signal[map[string]any]{ID: fmt.Sprint("s", i), Kind: "k", Payload: map[string]any{"Amount": amount}})
	}
	require.NoError(t, audit.Shutdown(t.Context()))

	rep, err := taicel.Backtest(t.Context(), compile("100.0"), bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{Amount: "payload.Amount"})
	require.NoError(t, err)
	js, err := json.Marshal(rep)
	require.NoError(t, err, "the report encodes as JSON")
	assert.True(t, json.Valid(js))
	assert.Equal(t, 3, rep.Errors)
	require.NotEmpty(t, rep.ErrorExamples)
	assert.Equal(t, "taicel: amount: 1e+308 is beyond ±1e+280, more than the report's sums can hold", rep.ErrorExamples[0].Error)
	assert.Equal(t, 2, rep.Changed, "1e200 and 1e280 are summed")
	require.Len(t, rep.Flips, 1)
	assert.Equal(t, 1e200+1e280, rep.Flips[0].Amount)
}

// A backtest reads every line kaizen.Audit writes: one of
// kaizen.MaxAuditLineLen bytes too, which the reader took for one byte too
// long.
func TestBacktestReadsTheLongestAuditLine(t *testing.T) {
	trail := writeTrail(t, stream(10))
	var buf bytes.Buffer
	audit, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{})
	require.NoError(t, err)
	rec := tai.Record{ID: "long", Kind: "payment", Outcome: tai.Succeeded, Decision: tai.Decision{Verdict: tai.Allow, Policy: "other"}}
	audit.Observe(t.Context(), rec)
	require.NoError(t, audit.Flush(t.Context()))
	short := buf.Len() - 1 // the line without a reason
	rec.Decision.Reason = strings.Repeat("r", kaizen.MaxAuditLineLen-short)
	audit.Observe(t.Context(), rec)
	require.NoError(t, audit.Shutdown(t.Context()))
	require.Zero(t, audit.Unwritten())
	long := buf.Bytes()[short+1:]
	require.Len(t, long, kaizen.MaxAuditLineLen+1, "a line of MaxAuditLineLen bytes and its newline")

	rep, err := taicel.Backtest(t.Context(), candidateSet(t, nil), io.MultiReader(bytes.NewReader(long), bytes.NewReader(trail)), taicel.BacktestOptions{Workers: 1})
	require.NoError(t, err)
	assert.Equal(t, 10, rep.Replayed)
	assert.Equal(t, bytes.Count(trail, []byte("\n"))+1, rep.Read)
}

// A line longer than kaizen.MaxAuditLineLen is refused, naming it and the
// limit, having read little more of it than the limit.
func TestBacktestRefusesALineLongerThanAnAuditWrites(t *testing.T) {
	trail := writeTrail(t, stream(3))
	long := io.MultiReader(bytes.NewReader(trail), strings.NewReader(`{"time":"`), io.LimitReader(zeros{}, int64(kaizen.MaxAuditLineLen)))
	rep, err := taicel.Backtest(t.Context(), candidateSet(t, nil), long, taicel.BacktestOptions{Workers: 1})
	assert.Nil(t, rep)
	require.ErrorIs(t, err, bufio.ErrTooLong)
	assert.EqualError(t, err, fmt.Sprintf("taicel: backtest: line %d: bufio.Scanner: token too long (the line is longer than %d bytes, the most a kaizen.Audit writes)",
		bytes.Count(trail, []byte("\n"))+1, kaizen.MaxAuditLineLen))
}

// zeros reads as an endless run of '0'.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

// Rule names come from the trail too (the rule that decided, the rules
// that contributed): the text report quotes one that is not printable,
// as it does IDs, reasons and errors.
func TestReportTextQuotesRuleNames(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{RecordInputs: true})
	require.NoError(t, err)
	compile := func(rule, limit string) *taicel.Set[map[string]any] {
		set, err := env.Compile(&taicel.Spec{Version: "1", Name: "n", Rules: []taicel.Rule{
			{Name: rule, Verdict: tai.Deny, Expr: "payload.Amount > " + limit},
		}})
		require.NoError(t, err)
		return set
	}
	const forged = "big\nchanged verdicts: 0 of 1\x1b[2K"
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(compile(forged, "10.0"), tai.ActionFunc[map[string]any, string](func(context.Context, tai.Signal[map[string]any]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)
	_, _ = p.Process(t.Context(), tai.Signal[map[string]any]{ID: "a", Kind: "k", Payload: map[string]any{"Amount": 50.0}})
	require.NoError(t, audit.Shutdown(t.Context()))

	rep, err := taicel.Backtest(t.Context(), compile("big", "100.0"), bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{})
	require.NoError(t, err)
	require.Equal(t, 1, rep.Changed)
	var out bytes.Buffer
	require.NoError(t, rep.WriteText(&out))
	text := out.String()
	t.Logf("\n%s", text)
	assert.NotContains(t, text, "\x1b")
	assert.Len(t, regexp.MustCompile(`(?m)^changed verdicts: `).FindAllString(text, -1), 1, "no line forged")
	assert.Contains(t, text, "  "+strconv.Quote(forged)+" ")
}

// A candidate that changes a verdict rule's verdict flips the decisions
// that rule decided, and the report names the rule as firing in both
// differently.
func TestBacktestVerdictRuleWhoseVerdictDiffers(t *testing.T) {
	gs := stream(300)
	trail := writeTrail(t, gs)
	cand := candidateSet(t, func(s string) string { return strings.Replace(s, "verdict: deny", "verdict: review", 1) })
	rep, err := taicel.Backtest(context.Background(), cand, bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount"})
	require.NoError(t, err)
	blacklisted, amount := 0, 0.0
	for _, g := range gs {
		if g.sig.Payload.Country == "KP" {
			blacklisted++
			amount += g.sig.Payload.Amount
		}
	}
	require.Positive(t, blacklisted)
	assert.Equal(t, blacklisted, rep.Changed)
	require.Len(t, rep.Flips, 1)
	assert.Equal(t, tai.Deny, rep.Flips[0].From)
	assert.Equal(t, tai.Review, rep.Flips[0].To)
	require.Len(t, rep.Rules, 1)
	assert.Equal(t, taicel.RuleChange{Rule: "blacklist", Different: blacklisted, DifferentAmount: amount}, rep.Rules[0])
}

// Cart is a typed payload whose collections may be nil, as a Go struct's
// often are.
type Cart struct {
	Amount float64
	Items  []string
	Meta   map[string]string
	Token  []byte
	Lines  []CartLine
	Ship   CartLine
}

// CartLine is a struct nested in Cart.
type CartLine struct {
	SKU  string
	Tags []string
}

// A typed payload's nil slices, maps and []byte, which CEL reads as empty,
// were recorded as null, which a backtest without the Go type (the
// taikit command's, with a dynamic Env) reads as CEL's null: every rule
// that had read them (size(payload.Items) == 0, "k" in payload.Meta)
// failed or decided otherwise there. A dynamic backtest of the trail now
// decides each signal as it was decided, as a typed one does.
func TestBacktestDynamicReadsNilCollectionsOfATypedPayload(t *testing.T) {
	spec := &taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "items", Weight: 0.2, Expr: `size(payload.Items) == 0`},
		{Name: "meta", Weight: 0.2, Expr: `!("k" in payload.Meta) && payload.Meta == {}`},
		{Name: "token", Weight: 0.2, Expr: `size(payload.Token) == 0`},
		{Name: "lines", Weight: 0.2, Expr: `payload.Lines.all(l, size(l.Tags) == 0) && payload.Items == []`},
		{Name: "ship", Weight: 0.2, Expr: `!payload.Ship.Tags.exists(t, t == "x")`},
	}, Thresholds: taicel.Thresholds{Review: 0.3, Deny: 0.9}}
	env, err := taicel.NewEnv(taicel.Options[Cart]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)

	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Cart, string](func(context.Context, tai.Signal[Cart]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)
	carts := []Cart{
		{Amount: 1},
		{Amount: 2, Lines: []CartLine{{SKU: "a"}}},
		{Amount: 3, Items: []string{"a"}, Meta: map[string]string{"k": "v"}, Token: []byte("t"), Ship: CartLine{Tags: []string{"x"}}},
		{Amount: 4, Items: []string{}, Meta: map[string]string{}, Token: []byte{}, Lines: []CartLine{{Tags: []string{}}}},
	}
	var verdicts []tai.Verdict
	for i, c := range carts {
		res, _ := p.Process(t.Context(), tai.Signal[Cart]{ID: strconv.Itoa(i), Kind: "cart", Payload: c})
		verdicts = append(verdicts, res.Decision.Verdict)
	}
	require.NoError(t, audit.Shutdown(t.Context()))
	assert.Equal(t, []tai.Verdict{tai.Deny, tai.Deny, tai.Allow, tai.Deny}, verdicts)

	typed, err := taicel.Backtest(t.Context(), set, bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(carts), typed.Replayed)
	assert.Zero(t, typed.Errors)
	assert.Zero(t, typed.Changed)
	assert.Zero(t, typed.ScoreChanged)

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(spec)
	require.NoError(t, err)
	rep, err := taicel.Backtest(t.Context(), dset, bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(carts), rep.Replayed)
	assert.Zero(t, rep.Errors, "%+v", rep.ErrorExamples)
	assert.Zero(t, rep.Changed, "%+v", rep.Flips)
	assert.Zero(t, rep.ScoreChanged)
}

// A nil collection in a struct field is recorded empty, as CEL reads it,
// and marked in "nil": has(), which tells a nil from an empty one,
// decides on replay as it did live, wherever the field is (in a struct,
// behind a pointer, in a slice's or a map's element), and the inputs
// read back are the payload recorded.
func TestReplayTellsNilFromEmptyCollections(t *testing.T) {
	type Box struct {
		Cart  *Cart
		Carts []Cart
		ByID  map[int]Cart
	}
	rules := []taicel.Rule{
		{Name: "cart_items", Weight: 0.01, Expr: `has(payload.Cart.Items)`},
		{Name: "cart_meta", Weight: 0.02, Expr: `has(payload.Cart.Meta)`},
		{Name: "cart_token", Weight: 0.04, Expr: `has(payload.Cart.Token)`},
		{Name: "ship_tags", Weight: 0.08, Expr: `has(payload.Cart.Ship.Tags)`},
		{Name: "carts", Weight: 0.16, Expr: `payload.Carts.exists(c, has(c.Items))`},
		{Name: "lines", Weight: 0.32, Expr: `payload.Carts.exists(c, c.Lines.exists(l, has(l.Tags)))`},
		{Name: "by_id", Weight: 0.01, Expr: `has(payload.ByID[7].Meta)`},
		{Name: "carts_nil", Weight: 0.01, Expr: `has(payload.Carts)`},
	}
	env, err := taicel.NewEnv(taicel.Options[Box]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: rules})
	require.NoError(t, err)
	for i, box := range []Box{
		{Cart: &Cart{}, ByID: map[int]Cart{7: {}}},
		{Cart: &Cart{Items: []string{}, Meta: map[string]string{}, Token: []byte{}, Ship: CartLine{Tags: []string{}}},
			Carts: []Cart{{}, {Lines: []CartLine{{}, {Tags: []string{}}}}}, ByID: map[int]Cart{7: {Meta: map[string]string{}}, 8: {}}},
		{Cart: &Cart{Ship: CartLine{Tags: []string{}}}, Carts: []Cart{{Items: []string{}}, {Lines: []CartLine{{}}}}, ByID: map[int]Cart{-1: {}, 7: {}}},
	} {
		d, err := set.Evaluate(t.Context(), tai.Signal[Box]{Payload: box})
		require.NoError(t, err)
		in, again := replay(t, env, set, d)
		assert.Equal(t, box, in.Payload, "%d: %s", i, d.Inputs)
		assert.Equal(t, d, again, "%d: %s", i, d.Inputs)
	}

	// Paths that lead nowhere, or to what is not empty, are errors.
	for _, bad := range []string{
		`"nil":{"Cart":{"Items":null}}`, `"nil":{"Carts":{"0":{"Nope":null}}}`, `"nil":{"Carts":{"0":{"Amount":null}}}`,
		`"nil":{"Carts":{"1":{"Items":null}}}`, `"nil":{"Carts":{"-1":{"Items":null}}}`, `"nil":{"Carts":{"00":{"Items":null}}}`,
		`"nil":{"Carts":{"+0":{"Items":null}}}`, `"nil":{"Carts":{"x":{"Items":null}}}`, `"nil":{"Carts":{"1e0":{"Items":null}}}`,
		`"nil":{"ByID":{"8":{"Meta":null}}}`, `"nil":{"ByID":{"x":{"Meta":null}}}`, `"nil":{"ByID":null}`, `"nil":{"Carts":{"0":{"Items":null}}}`,
		`"nil":[]`, `"nil":[["Carts"]]`, `"nil":null`, `"nil":3`, `"nil":{"Carts":true}`, `"nil":{"Carts":{"0":{"Items":5}}}`,
		`"nil":{"Carts":{"0":null}}`, `"nil":{"Carts":{"0":{"Ship":{"Tags":{"0":null}}}}}`, `"nil":{"Carts":{"0":{"Amount":{"x":null}}}}`,
		`"nil":{"Carts":{"0":{"Items":{"0":null}}}}`, `"nil":{"ByID":{"7":{"Ship":null}}}`,
	} {
		_, err := env.DecodeInputs([]byte(`{"payload":{"Carts":[{"Items":["a"]}],"ByID":{"7":{}}},` + bad + `}`))
		assert.ErrorContains(t, err, "nil: ", bad)
	}
	// A map payload holds no struct: "nil" there is left alone.
	dyn, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	in, err := dyn.DecodeInputs([]byte(`{"payload":{"Items":[]},"nil":{"Items":null}}`))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"Items": []any{}}, in.Payload)
}

// Shelf holds nil slices and maps that are no struct field: elements of
// an array, of a slice, of a map, and behind a pointer.
type Shelf struct {
	Grid  [2][]string
	ByTag map[string][]string
	Rows  [][]int
	Opt   *[]string
	Raws  [][]byte
	Maps  []map[string]int
}

// A nil slice or map that is an element or a map's value tells from an
// empty one too: has() on an array field (a zero array is one whose
// elements are nil) and == on structs (reflect.DeepEqual) decide on
// replay as they did live, and the payload reads back as recorded.
func TestReplayTellsNilFromEmptyElements(t *testing.T) {
	type Shelves struct{ A, B Shelf }
	rules := []taicel.Rule{
		{Name: "grid", Weight: 0.25, Expr: `has(payload.A.Grid)`},
		{Name: "same", Weight: 0.5, Expr: `payload.A == payload.B`},
	}
	env, err := taicel.NewEnv(taicel.Options[Shelves]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: rules})
	require.NoError(t, err)
	empty := []string{}
	for i, p := range []Shelves{
		{},
		{A: Shelf{Grid: [2][]string{nil, {}}}},
		{A: Shelf{ByTag: map[string][]string{"a": nil}}, B: Shelf{ByTag: map[string][]string{"a": {}}}},
		{A: Shelf{Rows: [][]int{nil, {1}, {}}}, B: Shelf{Rows: [][]int{{}, {1}, {}}}},
		{A: Shelf{Opt: new([]string)}, B: Shelf{Opt: &empty}},
		{A: Shelf{Raws: [][]byte{nil, {}}, Maps: []map[string]int{nil, {}}}, B: Shelf{Raws: [][]byte{{}, {}}, Maps: []map[string]int{{}, {}}}},
	} {
		d, err := set.Evaluate(t.Context(), tai.Signal[Shelves]{Payload: p})
		require.NoError(t, err)
		in, again := replay(t, env, set, d)
		assert.Equal(t, p, in.Payload, "%d: %s", i, d.Inputs)
		assert.Equal(t, d, again, "%d: %s", i, d.Inputs)
	}
}

// Thread is a payload that holds itself, to any depth.
type Thread struct {
	Tags  []string
	Meta  map[string]int
	Reply *Thread
}

// Where the nil collections are is recorded in a size that grows as the
// payload does: a thread twice as deep has inputs about twice as long,
// not four times (each nil's whole path written out made the inputs of
// 2000 replies 24 MB, not 116 kB), and reads back as it was.
func TestRecordedNilsGrowAsThePayload(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Thread]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "tags", Weight: 0.5, Expr: `has(payload.Tags)`}}})
	require.NoError(t, err)
	record := func(depth int) tai.Decision {
		var p Thread
		for i := range depth {
			reply := p
			p = Thread{Reply: &reply}
			if i%2 == 0 {
				p.Tags = []string{}
			}
		}
		d, err := set.Evaluate(t.Context(), tai.Signal[Thread]{Payload: p})
		require.NoError(t, err)
		in, again := replay(t, env, set, d)
		require.Equal(t, p, in.Payload)
		require.Equal(t, d, again)
		return d
	}
	short, long := record(1000), record(2000)
	assert.Less(t, len(long.Inputs), 2*len(short.Inputs)+100, "%d bytes, then %d", len(short.Inputs), len(long.Inputs))
}

// The error that stops a backtest at a line of its trail is a
// *taicel.TrailError naming the line, and the file when there is one, so
// that a caller reading a trail from an io.Reader (a command reading its
// standard input) can name the input itself.
func TestBacktestTrailErrorNamesTheLine(t *testing.T) {
	trail := writeTrail(t, stream(20))
	lines := strings.SplitAfter(string(trail), "\n")
	bad := strings.Join(lines[:2], "") + "hello\n" + strings.Join(lines[2:], "")
	readFails := errors.New("connection reset")

	dir := t.TempDir()
	file := filepath.Join(dir, "a.jsonl")
	require.NoError(t, os.WriteFile(file, []byte(bad), 0o600))

	for _, tc := range []struct {
		name  string
		run   func() (*taicel.Report, error)
		file  string
		line  int
		cause string
		is    error
	}{
		{"a reader's line that is no entry", func() (*taicel.Report, error) {
			return taicel.Backtest(t.Context(), candidateSet(t, nil), strings.NewReader(bad), taicel.BacktestOptions{Workers: 2})
		}, "", 3, "not an audit trail entry: offset 0: ", nil},
		{"a file's line that is no entry", func() (*taicel.Report, error) {
			return taicel.BacktestFiles(t.Context(), candidateSet(t, nil), taicel.BacktestOptions{Workers: 2}, file)
		}, file, 3, "not an audit trail entry: offset 0: ", nil},
		{"a line too long", func() (*taicel.Report, error) {
			long := io.MultiReader(strings.NewReader(lines[0]), io.LimitReader(zeros{}, int64(kaizen.MaxAuditLineLen)+1))
			return taicel.Backtest(t.Context(), candidateSet(t, nil), long, taicel.BacktestOptions{Workers: 1})
		}, "", 2, "bufio.Scanner: token too long", bufio.ErrTooLong},
		{"a read that fails", func() (*taicel.Report, error) {
			r := io.MultiReader(strings.NewReader(strings.Join(lines[:4], "")), iotest.ErrReader(readFails))
			return taicel.Backtest(t.Context(), candidateSet(t, nil), r, taicel.BacktestOptions{Workers: 1})
		}, "", 5, "connection reset", readFails},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := tc.run()
			assert.Nil(t, rep)
			var te *taicel.TrailError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, tc.file, te.File)
			assert.Equal(t, tc.line, te.Line)
			assert.ErrorContains(t, te.Err, tc.cause)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			where := fmt.Sprintf("line %d", tc.line)
			if tc.file != "" {
				where = fmt.Sprintf("%s:%d", tc.file, tc.line)
			}
			assert.Equal(t, "taicel: backtest: "+where+": "+te.Err.Error(), err.Error())
		})
	}
}

// A count of one reads in the singular: "1 line", "1 error".
func TestReportTextSingular(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, (&taicel.Report{Policy: "fraud", Read: 1, Errors: 1}).WriteText(&out))
	assert.Contains(t, out.String(), "\n1 line: 0 replayed, 0 without inputs, 0 of other kinds or policies, 1 error\n")
}
