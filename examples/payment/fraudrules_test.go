package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// writeRules writes the built-in rule file to path with each old string
// replaced by the new one after it (each must be there), the way a
// deployment should: a whole file renamed over the old one.
func writeRules(t *testing.T, path string, replace ...string) {
	t.Helper()
	text := string(defaultFraudRules)
	for i := 0; i+1 < len(replace); i += 2 {
		require.Contains(t, text, replace[i])
		text = strings.ReplaceAll(text, replace[i], replace[i+1])
	}
	require.NoError(t, os.WriteFile(path+".tmp", []byte(text), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
}

// reviewRules is a rule file of the built-in rules with a review band from
// 0.3, as -review-threshold 0.3 gives the Go rules.
func reviewRules(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "fraud.yaml")
	writeRules(t, path, "thresholds:\n  deny: 0.5\n", "thresholds:\n  review: 0.3\n  deny: 0.5\n")
	return path
}

// The amount rule of the built-in file with a limit of 1,000 instead of
// 5,000, as a version 2.
var lowerAmountLimit = []string{
	`version: "1"`, `version: "2"`,
	"payload.Amount > 20000.0 ? 1.0", "payload.Amount > 4000.0 ? 1.0",
	"payload.Amount > 5000.0 ? 0.5", "payload.Amount > 1000.0 ? 0.5",
	"payload.Amount > 4000.0 ? 0.25", "payload.Amount > 800.0 ? 0.25",
	`payload.Amount > 20000.0 ? "over four times the"`, `payload.Amount > 4000.0 ? "over four times the"`,
	`payload.Amount > 5000.0 ? "over"`, `payload.Amount > 1000.0 ? "over"`,
	`.format([5000.0])}}{{payload.Amount > 5000.0 && payload.Amount <= 20000.0`, `.format([1000.0])}}{{payload.Amount > 1000.0 && payload.Amount <= 4000.0`,
}

// The flags that set the Go rules' limits count only with the Go rules;
// with a rule file they are refused, naming it, rather than ignored.
func TestFraudRulesFlags(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := parseConfig([]string{"-data-dir", t.TempDir()}, none)
	require.NoError(t, err)
	assert.Equal(t, fraudRulesEmbedded, cfg.FraudRules, "the built-in rules by default")
	cfg, err = parseConfig([]string{"-data-dir", t.TempDir(), "-fraud-rules", ""}, none)
	require.NoError(t, err, "empty is the built-in rules too")
	assert.Equal(t, 5*time.Second, cfg.FraudRulesInterval)

	cfg, err = parseConfig([]string{"-data-dir", t.TempDir(), "-fraud-rules", "go", "-max-amount", "100", "-review-threshold", "0.3"}, none)
	require.NoError(t, err)
	assert.Equal(t, 100.0, cfg.Fraud.MaxAmount)

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{name: "a limit with the built-in rules", args: []string{"-max-amount", "100"},
			want: []string{"-max-amount (MAX_AMOUNT) sets a limit of the Go fraud rules", "the built-in rules/fraud.yaml", "-fraud-rules go"}},
		{name: "a limit given its default value", args: []string{"-velocity-limit", "5"},
			want: []string{"-velocity-limit (VELOCITY_LIMIT)"}},
		{name: "a limit from the environment", env: map[string]string{"MAX_SPEED_KMH": "500"},
			want: []string{"-max-speed-kmh (MAX_SPEED_KMH)"}},
		{name: "the review threshold with a rule file", args: []string{"-fraud-rules", "/etc/payment/fraud.yaml", "-review-threshold", "0.3", "-max-daily", "10"},
			want: []string{"-review-threshold (REVIEW_THRESHOLD)", "-max-daily (MAX_DAILY)", "the CEL rules of /etc/payment/fraud.yaml"}},
		{name: "an interval too short", args: []string{"-fraud-rules-interval", "10ms"},
			want: []string{"-fraud-rules-interval 10ms must be at least 100ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			_, err := parseConfig(append([]string{"-data-dir", t.TempDir()}, tc.args...), getenv)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// A configuration that sets the Go rules' limits in code, with CEL rules
// in force, is refused too.
func TestFraudRulesRefuseGoLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.Fraud.MaxAmount = 100
	cfg.Fraud.Review = 0.3
	_, err := NewService(context.Background(), cfg, discardLog())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MaxAmount, Review set for the Go rules, but CEL rules are in force")

	cfg = testConfig(t)
	cfg.FraudRules = filepath.Join(t.TempDir(), "missing.yaml")
	_, err = NewService(context.Background(), cfg, discardLog())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "-fraud-rules")
	assert.Contains(t, err.Error(), "missing.yaml")

	cfg = testConfig(t)
	cfg.FraudRules = filepath.Join(t.TempDir(), "broken.yaml")
	writeRules(t, cfg.FraudRules, "payload.CustomerID in sets.customers ||\n", "payload.Customer in sets.customers ||\n")
	_, err = NewService(context.Background(), cfg, discardLog())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `rule "blacklist"`)
	assert.Contains(t, err.Error(), "undefined field 'Customer'")
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fraudPanel returns the board's fraud rules panel.
func (ts *testService) fraudPanel(t *testing.T) andon.BoardPanel {
	t.Helper()
	var st andon.BoardState
	r := ts.do(t, http.MethodGet, "/andon/api/state", nil)
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	require.NoError(t, json.Unmarshal(r.Raw, &st))
	for _, p := range st.Panels {
		if p.Title == "Fraud rules" {
			return p
		}
	}
	require.Fail(t, "the board has no fraud rules panel", "%s", r.Raw)
	return andon.BoardPanel{}
}

// auditEntries reads the service's audit trail, flushed.
func (ts *testService) auditEntries(t *testing.T) []kaizen.AuditEntry {
	t.Helper()
	require.NoError(t, ts.audit.Flush(context.Background()))
	f, err := os.Open(filepath.Join(ts.cfg.DataDir, "audit-"+ts.cfg.Instance+".jsonl"))
	require.NoError(t, err)
	defer f.Close()
	var out []kaizen.AuditEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), sc.Text())
		out = append(out, e)
	}
	require.NoError(t, sc.Err())
	return out
}

func TestFraudRulesPanelShowsTheBuiltInRules(t *testing.T) {
	cfg := testConfig(t)
	cfg.FraudRules = "" // as in a Config made in code: the built-in rules
	ts := startService(t, cfg)
	rows := ts.fraudPanel(t).Rows
	require.Len(t, rows, 1)
	cells := rows[0].Cells
	assert.Equal(t, []string{"live", "rules/fraud.yaml (built in)", "fraud", "1", sha256Hex(defaultFraudRules)[:12]}, cells[:5])
	assert.Empty(t, cells[6], "no refusal")
	assert.Equal(t, "green", rows[0].Color)

	entries := ts.auditEntries(t)
	require.NotEmpty(t, entries)
	assert.Equal(t, taicel.ReloadKind, entries[0].Kind, "the rules put in force come first in the trail")
	assert.Equal(t, "embedded", entries[0].Key)
	assert.Equal(t, "version 1 sha256 "+sha256Hex(defaultFraudRules), entries[0].Decision.Reason)

	metrics := string(ts.do(t, http.MethodGet, "/metrics", nil).Raw)
	assert.Contains(t, metrics, `payment_fraud_rules_info{name="fraud",rules="embedded",set="live",sha256="`+sha256Hex(defaultFraudRules)+`",version="1"} 1`)
}

func TestFraudRulesPanelShowsTheGoRules(t *testing.T) {
	cfg := testConfig(t)
	cfg.FraudRules = fraudRulesGo
	ts := startService(t, cfg)
	rows := ts.fraudPanel(t).Rows
	require.Len(t, rows, 1)
	assert.Equal(t, []string{"live", "Go rules (fraud.go)", "fraud", "go", ""}, rows[0].Cells[:5])
}

// A rule file is reloaded when it changes: the next payment is judged by
// the new rules. A file that does not compile is refused — in the log,
// the audit trail, the metrics and on the board — and the rules in force
// keep running.
func TestFraudRuleFileReloads(t *testing.T) {
	cfg := testConfig(t)
	cfg.FraudRules = filepath.Join(t.TempDir(), "fraud.yaml")
	cfg.FraudRulesInterval = 20 * time.Millisecond
	writeRules(t, cfg.FraudRules)
	ts := startService(t, cfg)
	version := func() string { return ts.fraudPanel(t).Rows[0].Cells[3] }
	require.Equal(t, "1", version())
	assert.Equal(t, cfg.FraudRules, ts.fraudPanel(t).Rows[0].Cells[1])

	r := ts.pay(t, "before", 6000, nil)
	require.Equal(t, StatusSuccess, r.str("status"), "6,000 is flagged, not blocked: %s", r.Raw)
	assert.InDelta(t, 0.4, r.Body["fraud_score"], 1e-9)

	// The amount limit lowered to 1,000: 6,000 is over four times it.
	writeRules(t, cfg.FraudRules, lowerAmountLimit...)
	require.Eventually(t, func() bool { return version() == "2" }, 10*time.Second, 10*time.Millisecond, "version 2 in force")
	r = ts.pay(t, "after", 6000, nil)
	require.Equal(t, StatusFraudBlocked, r.str("status"), string(r.Raw))
	assert.Contains(t, string(r.Raw), "amount 6000.00 over four times the 1000.00 limit")

	// A file that does not compile (a misspelt field) is refused.
	writeRules(t, cfg.FraudRules, append(lowerAmountLimit, `version: "2"`, `version: "3"`, "day_total > 5000.0", "day_totl > 5000.0")...)
	require.Eventually(t, func() bool { return ts.fraudPanel(t).Rows[0].Cells[6] != "" }, 10*time.Second, 10*time.Millisecond, "the refusal on the board")
	row := ts.fraudPanel(t).Rows[0]
	assert.Equal(t, "2", row.Cells[3], "version 2 keeps running")
	assert.Contains(t, row.Cells[6], `rule "daily_amount"`)
	assert.Contains(t, row.Cells[6], "undeclared reference to 'day_totl'")
	assert.Equal(t, "amber", row.Color, "the file on disk is not the set in force")
	r = ts.pay(t, "still", 900, nil)
	assert.InDelta(t, 0.15, r.Body["fraud_score"], 1e-9, "near version 2's limit: %s", r.Raw)

	var reloads []kaizen.AuditEntry
	for _, e := range ts.auditEntries(t) {
		if e.Kind == taicel.ReloadKind {
			reloads = append(reloads, e)
		}
	}
	require.Len(t, reloads, 3, "loaded, reloaded, refused")
	assert.Equal(t, "succeeded", reloads[1].Outcome)
	assert.Contains(t, reloads[1].Decision.Reason, "version 2 sha256 ")
	assert.Equal(t, "failed", reloads[2].Outcome)
	assert.Contains(t, reloads[2].Decision.Reason, "version 3 sha256 ")
	assert.Contains(t, reloads[2].Error, "day_totl")
	assert.Equal(t, cfg.FraudRules, reloads[2].Key)

	metrics := string(ts.do(t, http.MethodGet, "/metrics", nil).Raw)
	assert.Contains(t, metrics, `payment_fraud_rules_loads_total{result="loaded",set="live"} 2`)
	assert.Contains(t, metrics, `payment_fraud_rules_loads_total{result="refused",set="live"} 1`)
	assert.Contains(t, metrics, `rules="`+cfg.FraudRules+`",set="live"`)
	assert.Contains(t, ts.logs.String(), "fraud rule file refused; the rules in force keep running")

	// Mended, it is loaded again.
	writeRules(t, cfg.FraudRules, append(lowerAmountLimit, `version: "2"`, `version: "4"`)...)
	require.Eventually(t, func() bool { return version() == "4" }, 10*time.Second, 10*time.Millisecond, "version 4 in force")
	assert.Equal(t, "green", ts.fraudPanel(t).Rows[0].Color)
}

// denyEverything is the built-in rules with, first, a verdict rule that
// denies every payment: a candidate that would stop all sales.
var denyEverything = []string{
	`version: "1"`, `version: "shadow-1"`,
	"rules:\n", "rules:\n  - name: deny_all\n    verdict: deny\n    expr: \"true\"\n    reason: everything is fraud\n",
}

// In shadow mode the candidate judges every payment beside the live
// rules and never acts: a candidate that denies everything leaves every
// payment the live rules allow approved, and its disagreements show in
// the metrics and on the board.
func TestFraudShadowNeverActs(t *testing.T) {
	cfg := testConfig(t)
	cfg.FraudShadow = filepath.Join(t.TempDir(), "candidate.yaml")
	cfg.FraudRulesInterval = 20 * time.Millisecond
	writeRules(t, cfg.FraudShadow, denyEverything...)
	ts := startService(t, cfg)

	for i := range 10 {
		r := ts.pay(t, fmt.Sprintf("shadowed_%d", i), 10, nil)
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
		assert.Equal(t, StatusSuccess, r.str("status"))
		assert.Zero(t, r.Body["fraud_score"])
	}
	r := ts.pay(t, "cust_blacklist", 10, nil)
	assert.Equal(t, StatusFraudBlocked, r.str("status"), "the live rules still decide: %s", r.Raw)
	assert.EqualValues(t, 10, ts.gateway.Calls())

	panel := ts.fraudPanel(t)
	require.Len(t, panel.Rows, 2)
	live, shadow := panel.Rows[0].Cells, panel.Rows[1].Cells
	assert.Equal(t, []string{"live", "rules/fraud.yaml (built in)", "fraud", "1"}, live[:4])
	assert.Equal(t, []string{"shadow", cfg.FraudShadow, "fraud", "shadow-1"}, shadow[:4])
	assert.Equal(t, "90.91% of 11", shadow[7], "10 disagreements, 1 agreement")
	assert.Equal(t, "grey", panel.Rows[1].Color, "the shadow decides nothing")
	var byRule andon.BoardPanel
	var st andon.BoardState
	require.NoError(t, json.Unmarshal(ts.do(t, http.MethodGet, "/andon/api/state", nil).Raw, &st))
	for _, p := range st.Panels {
		if p.Title == "Shadow disagreements by rule" {
			byRule = p
		}
	}
	require.Len(t, byRule.Rows, 1, "%+v", st.Panels)
	assert.Equal(t, []string{"deny_all", "10"}, byRule.Rows[0].Cells)

	metrics := string(ts.do(t, http.MethodGet, "/metrics", nil).Raw)
	for _, line := range []string{
		"payment_fraud_shadow_signals_total 11",
		"payment_fraud_shadow_agreements_total 1",
		"payment_fraud_shadow_disagreements_total 10",
		"payment_fraud_shadow_errors_total 0",
		`payment_fraud_shadow_rule_disagreements_total{rule="deny_all"} 10`,
		`payment_fraud_rules_info{name="fraud",rules="` + cfg.FraudShadow + `",set="shadow",sha256="`,
		`taikit_decisions_total{kind="payment",policy="fraud",verdict="allow"} 10`,
	} {
		assert.Contains(t, metrics, line)
	}

	// The candidate is reloaded as the live rules are: mended, it agrees.
	writeRules(t, cfg.FraudShadow, `version: "1"`, `version: "shadow-2"`)
	require.Eventually(t, func() bool { return ts.fraudPanel(t).Rows[1].Cells[3] == "shadow-2" }, 10*time.Second, 10*time.Millisecond)
	for i := range 9 {
		assert.Equal(t, StatusSuccess, ts.pay(t, fmt.Sprintf("agreed_%d", i), 10, nil).str("status"))
	}
	assert.Equal(t, "50.00% of 20", ts.fraudPanel(t).Rows[1].Cells[7])
}

// A shadow needs a live CEL rule set to compare with.
func TestFraudShadowNeedsCELRules(t *testing.T) {
	_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-fraud-rules", "go", "-fraud-shadow", "candidate.yaml"}, func(string) string { return "" })
	require.ErrorIs(t, err, errShadowNeedsCEL)
	cfg := testConfig(t)
	cfg.FraudRules, cfg.FraudShadow = fraudRulesGo, "candidate.yaml"
	_, err = NewService(context.Background(), cfg, discardLog())
	require.ErrorIs(t, err, errShadowNeedsCEL)

	cfg = testConfig(t)
	cfg.FraudShadow = filepath.Join(t.TempDir(), "missing.yaml")
	_, err = NewService(context.Background(), cfg, discardLog())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "-fraud-shadow")
}

// The audit trail keeps what the rules read with each decision — the
// payment without its metadata and coordinates, and the variables the
// lookup found — and a candidate rule file replays the trail: the
// built-in rules decide every payment again as recorded, and a lower
// amount limit blocks the large ones. Both ways: with the payment's Go
// type, and as the taikit backtest command does, with a payload of no
// type.
func TestAuditTrailReplaysThroughACandidate(t *testing.T) {
	cfg := testConfig(t)
	cfg.CustomerLimit = 1000 // the velocity rule, not the limiter
	ts := startService(t, cfg)
	berlin := map[string]any{"latitude": 52.52, "longitude": 13.405, "country": "DE"}
	newYork := map[string]any{"latitude": 40.7128, "longitude": -74.006, "country": "US"}
	first := ts.pay(t, "traveller", 42.5, map[string]any{"location": berlin, "metadata": map[string]string{"note": "private-note-0123"}})
	require.Equal(t, StatusSuccess, first.str("status"))
	// No time passes: New York at once is infinitely fast.
	instant := ts.pay(t, "traveller", 42.5, map[string]any{"location": newYork})
	require.Equal(t, StatusFraudBlocked, instant.str("status"), string(instant.Raw))
	assert.Contains(t, string(instant.Raw), "(+Inf km/h, limit 900)")
	require.Equal(t, StatusSuccess, ts.pay(t, "big_1", 6000, nil).str("status"))
	require.Equal(t, StatusSuccess, ts.pay(t, "big_2", 4500, nil).str("status"))
	require.Equal(t, StatusFraudBlocked, ts.pay(t, "cust_blacklist", 10, nil).str("status"))
	for i := range 6 {
		r := ts.pay(t, "rapid", 1, nil)
		assert.Equal(t, map[bool]string{false: StatusSuccess, true: StatusFraudBlocked}[i == 5], r.str("status"), "the sixth attempt in a minute")
	}

	var line kaizen.AuditEntry
	for _, e := range ts.auditEntries(t) {
		if e.ID == first.str("transaction_id") {
			line = e
		}
	}
	require.NotEmpty(t, line.Decision.Inputs, "the decision's inputs are in the trail")
	var in struct {
		Payload map[string]any `json:"payload"`
		Vars    map[string]any `json:"vars"`
	}
	require.NoError(t, json.Unmarshal(line.Decision.Inputs, &in))
	assert.Equal(t, "traveller", in.Payload["CustomerID"])
	assert.Equal(t, 42.5, in.Payload["Amount"])
	assert.Equal(t, "DE", in.Payload["Country"])
	assert.Equal(t, true, in.Payload["HasCoords"])
	for _, field := range unrecordedFields {
		assert.NotContains(t, in.Payload, field)
	}
	assert.Equal(t, map[string]any{"attempts": 1.0, "day_total": 42.5, "moved_km": 0.0, "moved_hours": 0.0, "moved_for": "0s",
		"customer_blacklisted": false, "merchant_blacklisted": false, "country_blacklisted": false}, in.Vars)
	raw, err := os.ReadFile(filepath.Join(ts.cfg.DataDir, "audit-"+ts.cfg.Instance+".jsonl"))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "private-note-0123", "no metadata in the trail")
	assert.NotContains(t, string(raw), "13.405", "no coordinates in the trail")
	require.NoError(t, ts.audit.Flush(context.Background()))
	trail := filepath.Join(ts.cfg.DataDir, "audit-"+ts.cfg.Instance+".jsonl")

	lower := filepath.Join(t.TempDir(), "lower.yaml")
	writeRules(t, lower, lowerAmountLimit...)
	same := filepath.Join(t.TempDir(), "same.yaml")
	writeRules(t, same)

	typed, err := NewFraudEnv(FraudConfig{}, NewMemoryState(0), nil)
	require.NoError(t, err)
	untyped, err := taicel.NewEnv(taicel.Options[map[string]any]{
		EnvOptions: []cel.EnvOption{ext.Math(), ext.Lists(), ext.Sets(), ext.Encoders()},
	})
	require.NoError(t, err)
	backtest := func(t *testing.T, rules string) *taicel.Report {
		t.Helper()
		spec, err := taicel.ParseFile(rules)
		require.NoError(t, err)
		set, err := typed.Compile(spec)
		require.NoError(t, err)
		rep, err := taicel.BacktestFiles(context.Background(), set, taicel.BacktestOptions{Amount: "payload.Amount"}, trail)
		require.NoError(t, err)
		dyn, err := untyped.Compile(spec)
		require.NoError(t, err)
		drep, err := taicel.BacktestFiles(context.Background(), dyn, taicel.BacktestOptions{Amount: "payload.Amount"}, trail)
		require.NoError(t, err)
		for _, r := range []*taicel.Report{rep, drep} {
			assert.Zero(t, r.Errors, "%+v", r.ErrorExamples)
			assert.Equal(t, r.Replayed+r.Skipped, r.Read-r.Filtered)
		}
		assert.Equal(t, rep.Changed, drep.Changed, "typed and untyped replays agree")
		assert.Equal(t, rep.Flips, drep.Flips)
		return rep
	}
	t.Run("the rules in force", func(t *testing.T) {
		rep := backtest(t, same)
		assert.GreaterOrEqual(t, rep.Replayed, 10, "every decided payment")
		assert.Zero(t, rep.Skipped, "every decision with its inputs")
		assert.Zero(t, rep.Changed, "decided again as recorded")
		assert.Zero(t, rep.ScoreChanged)
	})
	t.Run("a lower amount limit", func(t *testing.T) {
		rep := backtest(t, lower)
		var text strings.Builder
		require.NoError(t, rep.WriteText(&text))
		t.Logf("the report:\n%s", text.String())
		require.Len(t, rep.Flips, 1, "%+v", rep.Flips)
		f := rep.Flips[0]
		assert.Equal(t, tai.Allow, f.From)
		assert.Equal(t, tai.Deny, f.To)
		assert.Equal(t, 2, f.Count, "the 6,000 and the 4,500")
		assert.Equal(t, 10500.0, f.Amount)
	})
}

// The built-in file's sets take entries as the -blacklist flag does: a
// country in any case, with spaces around it, blocks the payments from
// it, as an upper-case one does.
func TestFraudRuleSetsTakeCountriesInAnyCase(t *testing.T) {
	env, err := NewFraudEnv(FraudConfig{}, NewMemoryState(0), nil)
	require.NoError(t, err)
	for _, entry := range []string{"KP", "kp", "Kp", `" kp "`} {
		text := strings.Replace(string(defaultFraudRules), "  countries: []", "  countries: ["+entry+"]", 1)
		set, err := compileFraudRules(env, []byte(text))
		require.NoError(t, err)
		d, err := set.Evaluate(context.Background(), tai.Signal[Payment]{ID: "t", Kind: "payment", Key: "c",
			Payload: Payment{Amount: 1, Minor: 100, Currency: "USD", CustomerID: "c_" + entry, MerchantID: "m", Country: "KP"}})
		require.NoError(t, err)
		assert.Equal(t, tai.Deny, d.Verdict, "countries: [%s]", entry)
		assert.Contains(t, d.Reason, "country KP is blacklisted", "countries: [%s]", entry)
	}
}

// A refusal quoted on the board is cut between characters: its cells are
// text, and a byte cut out of a character is none.
func TestFirstLineCutsBetweenCharacters(t *testing.T) {
	refusal := "x" + strings.Repeat("é", 150) + "\nsecond line"
	got := firstLine(refusal, 200)
	assert.True(t, utf8.ValidString(got), "%q", got)
	assert.Equal(t, "x"+strings.Repeat("é", 99)+"…", got)
	assert.Equal(t, "short", firstLine("short\nmore", 200))
}
