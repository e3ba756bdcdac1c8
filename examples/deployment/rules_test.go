package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/internal/datadir"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// ruleProbe is a payload for the rule sets' own tests.
type ruleProbe struct {
	A, B, C bool
	N       float64
}

// TestRuleSetSteps: a rule set judged step by step decides as the whole
// set does — verdict rules in order, an allow rule deciding outright, a
// review, then the scored rules — and names the part of the rule that
// decided.
func TestRuleSetSteps(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[ruleProbe]{})
	require.NoError(t, err)
	rs, err := compileRules(env, []byte(`
version: "7"
name: probe
thresholds: {review: 0.3, deny: 0.5}
rules:
  - {name: a.one, verdict: deny, expr: payload.A, reason: "a one"}
  - {name: b, verdict: allow, expr: payload.B}
  - {name: a.two, verdict: deny, expr: payload.C, reason: "a two"}
  - {name: rev, verdict: review, expr: payload.N > 8.0, reason: "review {{payload.N}}"}
  - {name: risk.n, weight: 0.6, expr: payload.N / 10.0, reason: "risk {{payload.N}}"}
`), "test")
	require.NoError(t, err)
	var names []string
	for _, st := range rs.steps {
		names = append(names, st.name)
	}
	assert.Equal(t, []string{"a", "b", "a", "rev", "probe"}, names, "a run of rules per step, the scored rules last")
	assert.Equal(t, []string{"a", "b", "rev", "risk"}, rs.parts)
	assert.Equal(t, "test", rs.source)
	assert.Len(t, rs.hash, 64)

	policies := map[string]int{}
	for _, a := range []bool{false, true} {
		for _, b := range []bool{false, true} {
			for _, c := range []bool{false, true} {
				for _, n := range []float64{0, 4, 6, 9} {
					sig := tai.Signal[ruleProbe]{Payload: ruleProbe{A: a, B: b, C: c, N: n}}
					whole, err := rs.whole.Evaluate(t.Context(), sig)
					require.NoError(t, err)
					d, err := rs.decide(t.Context(), sig)
					require.NoError(t, err)
					want := "probe"
					switch {
					case a:
						want = "a"
					case b:
						want = "b"
					case c:
						want = "a"
					case n > 8:
						want = "rev"
					}
					assert.Equal(t, want, d.Policy, "%+v", sig.Payload)
					policies[d.Policy]++
					d.Policy = whole.Policy
					assert.Equal(t, whole, d, "%+v", sig.Payload)
				}
			}
		}
	}
	assert.Len(t, policies, 4)

	// Without scored rules, nothing firing allows as the first step.
	rs, err = compileRules(env, []byte(`{version: "1", rules: [{name: x.y, verdict: deny, expr: payload.A}, {name: z, verdict: deny, expr: payload.B}]}`), "test")
	require.NoError(t, err)
	d, err := rs.decide(t.Context(), tai.Signal[ruleProbe]{})
	require.NoError(t, err)
	assert.Equal(t, tai.Decision{Verdict: tai.Allow, Policy: "x"}, d)
	d, err = rs.decide(t.Context(), tai.Signal[ruleProbe]{Payload: ruleProbe{B: true}})
	require.NoError(t, err)
	assert.Equal(t, tai.Decision{Verdict: tai.Deny, Policy: "z", Reason: "z"}, d, "a rule without a reason gives its name")

	// A rule that fails at evaluation fails the signal, naming its step.
	rs, err = compileRules(env, []byte(`{version: "1", rules: [{name: ok, verdict: deny, expr: payload.A}, {name: div.zero, verdict: deny, expr: "int(payload.N) / 0 > 1"}]}`), "test")
	require.NoError(t, err)
	_, err = rs.decide(t.Context(), tai.Signal[ruleProbe]{})
	var pe *tai.PolicyError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "div", pe.Policy)
	assert.ErrorContains(t, err, "division by zero")
}

// TestRuleFileRefusals: a rule file that cannot be read, parsed or
// compiled is refused with its error, at start.
func TestRuleFileRefusals(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[ruleProbe]{})
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err = openRuleFile(env, ruleFileOptions{Name: "probe", BuiltIn: []byte("version: 1\nrules:\n  - {name: x, verdict: deny, expr: payload.D}\n"), Logger: log})
	assert.ErrorContains(t, err, `probe rules built in: taicel: rule "x" at 1:8 (file line 3)`)
	_, err = openRuleFile(env, ruleFileOptions{Name: "probe", BuiltIn: []byte("rules: []\n"), Logger: log})
	assert.ErrorContains(t, err, "no version")
	dir := t.TempDir()
	_, err = openRuleFile(env, ruleFileOptions{Name: "probe", Dir: dir, Interval: -1, Logger: log})
	assert.ErrorContains(t, err, filepath.Join(dir, "probe.yaml"))
	writeRules(t, dir, "probe.yaml", "version: 1\nrules:\n  - {name: x, verdict: dany, expr: payload.A}\n")
	_, err = openRuleFile(env, ruleFileOptions{Name: "probe", Dir: dir, Interval: -1, Logger: log})
	assert.ErrorContains(t, err, "dany")
}

// TestRuleFileRefusedAtStartIsNotSaidToKeepRunning: a -rules file that
// does not compile at start is logged as refused with nothing in force,
// not with "the rules in force keep running": there are none, and the
// service does not start.
func TestRuleFileRefusedAtStartIsNotSaidToKeepRunning(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[ruleProbe]{})
	require.NoError(t, err)
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	dir := t.TempDir()
	writeRules(t, dir, "probe.yaml", "version: 1\nrules:\n  - {name: x, verdict: deny, expr: payload.D}\n")
	_, err = openRuleFile(env, ruleFileOptions{Name: "probe", Dir: dir, Interval: -1, Logger: log})
	require.ErrorContains(t, err, `rule "x"`)
	assert.NotContains(t, logs.String(), "keep running")
	assert.Contains(t, logs.String(), `msg="rules refused; no rules in force, the service does not start" rules=probe`)
}

// writeRules replaces a rule file whole, as a person should: a new file
// renamed over the old.
func writeRules(t *testing.T, dir, name, text string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(text), 0o600))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, name)))
}

// rulesDir is a -rules directory holding copies of the files built in.
func rulesDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeRules(t, dir, prerequisitesFile, string(defaultPrerequisites))
	writeRules(t, dir, analysisFile, string(defaultAnalysis))
	return dir
}

// rulesRow waits for the board's rule panel to show a row of these rules
// that satisfies cond, and returns it.
func rulesRow(t *testing.T, base, rules string, cond func(andon.PanelRow) bool) andon.PanelRow {
	t.Helper()
	var last andon.PanelRow
	require.Eventually(t, func() bool {
		for _, row := range boardPanelTitled(t, base, "Rules in force on this replica").Rows {
			if row.Cells[0] == rules {
				last = row
				return cond(row)
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "the board never showed the %s rules as wanted; last: %v", rules, last.Cells)
	return last
}

// TestRulesReload: with -rules DIR the service follows its rule files. A
// tighter error rate in analysis.yaml rolls back a version the file
// before let through; a prerequisite added to prerequisites.yaml refuses
// a deployment it let through; a file that does not compile is refused —
// logged, written to the audit trail, shown on the board — and the set
// before keeps deciding.
func TestRulesReload(t *testing.T) {
	rules := rulesDir(t)
	dir := t.TempDir()
	ts := startServiceIn(t, dir, append(fastArgs, "-rules", rules, "-rules-interval", "20ms")...)
	row := rulesRow(t, ts.URL, "prerequisites", func(andon.PanelRow) bool { return true })
	assert.Equal(t, []string{"prerequisites", "1", sha256Hex(defaultPrerequisites)[:12], filepath.Join(rules, prerequisitesFile)}, row.Cells[:4])
	assert.Equal(t, "green", row.Color)
	assert.Empty(t, row.Cells[5])

	deployTo := func(version, region string) Deployment {
		t.Helper()
		r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": version, "target_region": region})
		return r.deployment(t)
	}
	d := deployTo("v2.0.0", "us-east-1")
	require.Equal(t, StatusSuccess, d.Status, "the error rate of 0.70%% passes 5%%: %+v", d)

	// The error rate's threshold, from the rule file: 0.75%, between the
	// version serving now (0.70%: the region's health, judged by the same
	// file, passes) and the next (0.80%).
	tight := strings.ReplaceAll(string(defaultAnalysis), "max_error_rate", "0.0075")
	tight = strings.Replace(tight, `version: "1"`, `version: "2-tight"`, 1)
	writeRules(t, rules, analysisFile, tight)
	rulesRow(t, ts.URL, "analysis", func(r andon.PanelRow) bool { return r.Cells[1] == "2-tight" })
	d = deployTo("v2.1.0", "us-east-1")
	require.Equal(t, StatusRolledBack, d.Status, "%+v", d)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Error rate 0.80% exceeds threshold 0.75%", *d.ErrorMessage)

	// A freeze of eu-west-1, written in the file.
	before := deployTo("v3.0.0", "eu-west-1")
	require.Equal(t, StatusRolledBack, before.Status, "the prerequisites pass (the analysis refuses 0.90%%): %+v", before)
	frozen := strings.Replace(string(defaultPrerequisites), "  - name: change_freeze\n", `  - name: change_freeze.eu
    verdict: deny
    expr: payload.Region == "eu-west-1"
    reason: "Change freeze in {{payload.Region}} for the audit"
  - name: change_freeze
`, 1)
	require.NotEqual(t, string(defaultPrerequisites), frozen)
	frozen = strings.Replace(frozen, `version: "1"`, `version: "2-freeze"`, 1)
	writeRules(t, rules, prerequisitesFile, frozen)
	rulesRow(t, ts.URL, "prerequisites", func(r andon.PanelRow) bool { return r.Cells[1] == "2-freeze" })
	refused := func() {
		t.Helper()
		r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "eu-west-1"})
		require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
		d := r.deployment(t)
		require.NotNil(t, d.ErrorMessage)
		assert.Equal(t, "Change freeze in eu-west-1 for the audit", *d.ErrorMessage)
		assert.Equal(t, "change_freeze", d.Results[0].Decision, "the prerequisite, as the Go rules name it")
	}
	refused()

	// A misspelt field: refused, and the freeze holds.
	broken := strings.Replace(frozen, `payload.Region == "eu-west-1"`, `payload.Regoin == "eu-west-1"`, 1)
	broken = strings.Replace(broken, `version: "2-freeze"`, `version: "3-broken"`, 1)
	writeRules(t, rules, prerequisitesFile, broken)
	row = rulesRow(t, ts.URL, "prerequisites", func(r andon.PanelRow) bool { return r.Cells[5] != "" })
	assert.Equal(t, "red", row.Color)
	assert.Equal(t, "2-freeze", row.Cells[1], "the set before runs on")
	assert.Contains(t, row.Cells[5], `version 3-broken refused: `)
	assert.Contains(t, row.Cells[5], `rule "change_freeze.eu"`)
	assert.Contains(t, row.Cells[5], "undefined field 'Regoin'")
	refused()
	assert.Contains(t, ts.logs.String(), `msg="rules refused; the rules in force keep running" rules=prerequisites`)
	assert.Contains(t, ts.logs.String(), "running_version=2-freeze")

	// Mended: loaded, and the board is green again.
	writeRules(t, rules, prerequisitesFile, strings.Replace(frozen, `version: "2-freeze"`, `version: "4"`, 1))
	row = rulesRow(t, ts.URL, "prerequisites", func(r andon.PanelRow) bool { return r.Cells[1] == "4" })
	assert.Equal(t, "green", row.Color)
	assert.Empty(t, row.Cells[5])
	refused()

	// Every load and the refusal are in the audit trail, which verifies.
	require.NoError(t, ts.audit.Flush(t.Context()))
	path := filepath.Join(dir, "audit-test.jsonl")
	_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
	require.NoError(t, err)
	var loads []string
	for _, l := range auditRecords(t, path) {
		if l.Kind == taicel.ReloadKind {
			loads = append(loads, filepath.Base(l.Key)+" "+l.Outcome+" "+strings.Fields(l.Decision.Reason)[1])
			if l.Outcome == tai.Failed.String() {
				assert.Contains(t, l.Error, "undefined field 'Regoin'")
			}
		}
	}
	assert.Equal(t, []string{
		"analysis.yaml succeeded 1", "prerequisites.yaml succeeded 1",
		"analysis.yaml succeeded 2-tight", "prerequisites.yaml succeeded 2-freeze",
		"prerequisites.yaml failed 3-broken", "prerequisites.yaml succeeded 4",
	}, loads)
}

type auditRecord struct {
	Time     time.Time     `json:"time"`
	ID       string        `json:"id"`
	Kind     string        `json:"kind"`
	Key      string        `json:"key"`
	Outcome  string        `json:"outcome"`
	Decision tai.Decision  `json:"decision"`
	Error    string        `json:"error"`
	Duration time.Duration `json:"duration_ns"`
}

func auditRecords(t *testing.T, path string) []auditRecord {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r auditRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		out = append(out, r)
	}
	require.NoError(t, sc.Err())
	return out
}

// TestRulesAnswerAsGo: the API answers a refused deployment alike with
// the Go rules (-rules go) and the rule files built in: the same status,
// message and prerequisite.
func TestRulesAnswerAsGo(t *testing.T) {
	// A freeze now: a deployment every other prerequisite lets through
	// meets it.
	freeze := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + "/" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	goSvc := startService(t, append(fastArgs, "-rules", "go", "-freeze", freeze)...)
	celSvc := startService(t, append(fastArgs, "-freeze", freeze)...)
	for _, req := range []map[string]any{
		{"service": "api-service", "version": "v9.9.9", "target_region": "us-west-2"},
		{"service": "api-service", "version": "v2.0.0", "target_region": "mars-1"},
		{"service": "api-service", "version": "v2.0.0", "target_region": "ap-south-1", "first_deploy": true},
		{"service": "api-service", "version": "v1.0.0", "target_region": "us-west-2"},
		{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"},
		{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-east-1", "mars-1"}},
	} {
		answer := func(base string) (int, Deployment) {
			r := deploy(t, base, req)
			d := r.deployment(t)
			for i := range d.Results {
				d.Results[i].StartedAt, d.Results[i].CompletedAt = nil, nil
			}
			d.ID, d.StartedAt, d.CompletedAt, d.DurationSecs, d.TraceID = "", time.Time{}, nil, 0, ""
			return r.Code, d
		}
		goCode, goAnswer := answer(goSvc.URL)
		celCode, celAnswer := answer(celSvc.URL)
		assert.Equal(t, http.StatusUnprocessableEntity, goCode, "%v", req)
		assert.Equal(t, goCode, celCode, "%v", req)
		assert.Equal(t, goAnswer, celAnswer, "%v", req)
		assert.NotEmpty(t, goAnswer.Results[0].Decision, "%v", req)
	}
	rows := boardPanelTitled(t, goSvc.URL, "Rules in force on this replica").Rows
	require.Len(t, rows, 2)
	assert.Equal(t, []string{"prerequisites", "go", "", "policy.go (-rules go)", "", ""}, rows[0].Cells)
	rows = boardPanelTitled(t, celSvc.URL, "Rules in force on this replica").Rows
	require.Len(t, rows, 2)
	assert.Equal(t, []string{"analysis", "1", sha256Hex(defaultAnalysis)[:12], builtIn}, rows[1].Cells[:4])
}

// TestRulesAtStart: a -rules directory whose files are missing or do not
// compile stops the service from starting, naming the file.
func TestRulesAtStart(t *testing.T) {
	empty := t.TempDir()
	broken := rulesDir(t)
	writeRules(t, broken, analysisFile, strings.Replace(string(defaultAnalysis), "payload.CPU > max_cpu", "payload.CPU > max_cpus", 1))
	for _, tc := range []struct {
		dir, want string
	}{
		{empty, filepath.Join(empty, analysisFile) + ": no such file"},
		{broken, `rule "cpu"`},
	} {
		dir := t.TempDir()
		cfg, err := parseConfig([]string{"-data-dir", dir, "-instance", "test", "-rules", tc.dir}, func(string) string { return "" })
		require.NoError(t, err)
		lock, err := datadir.Acquire(dir)
		require.NoError(t, err)
		_, err = newService(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), lock)
		require.Error(t, err)
		assert.ErrorContains(t, err, "-rules: ")
		assert.ErrorContains(t, err, tc.want)
	}
}

func TestRulesFlagRefusals(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(file, defaultAnalysis, 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-rules", file}, `-rules "` + file + `" is not a directory (nor "go")`},
		{[]string{"-rules", "/nonexistent"}, `-rules "/nonexistent" is not a directory`},
		{[]string{"-rules-interval", "0s"}, "-rules-interval 0s is below 10ms"},
		{[]string{"-rules-interval", "9ms"}, "-rules-interval 9ms is below 10ms"},
	} {
		_, err := parseConfig(append([]string{"-data-dir", t.TempDir()}, tc.args...), func(string) string { return "" })
		assert.ErrorContains(t, err, tc.want)
	}
	c, err := parseConfig([]string{"-data-dir", t.TempDir()}, func(k string) string { return map[string]string{"RULES": "go"}[k] })
	require.NoError(t, err)
	assert.Equal(t, rulesGo, c.Rules)
	assert.Equal(t, 5*time.Second, c.RulesInterval)
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestPrerequisitesBacktest: the rule file's decisions are recorded with
// what they were made on, so a change to the file can be tried on the
// audit trail before it runs: a freeze of eu-west-1 would have refused
// the deployment there, and nothing else.
func TestPrerequisitesBacktest(t *testing.T) {
	dir := t.TempDir()
	// A freeze to come: the windows are in the inputs, and read back.
	ts := startServiceIn(t, dir, append(fastArgs, "-freeze", "2030-01-01T00:00:00Z/2030-01-02T00:00:00.5+01:00")...)
	for _, req := range []struct {
		version, region string
		code            int
	}{{"v2.0.0", "us-west-2", http.StatusOK}, {"v9.9.9", "us-west-2", http.StatusUnprocessableEntity}, {"v2.0.0", "eu-west-1", http.StatusOK}} {
		r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": req.version, "target_region": req.region})
		require.Equal(t, req.code, r.Code, "%s", r.Body)
	}
	require.NoError(t, ts.audit.Flush(t.Context()))

	env, err := newPrerequisiteEnv(ts.prerequisiteLookup)
	require.NoError(t, err)
	frozen := strings.Replace(string(defaultPrerequisites), "  - name: change_freeze\n", `  - name: change_freeze.eu
    verdict: deny
    expr: payload.Region == "eu-west-1" && signal.time > timestamp("2026-01-01T00:00:00Z")
    reason: "Change freeze in {{payload.Region}}"
  - name: change_freeze
`, 1)
	candidate, err := compileRules(env, []byte(frozen), "candidate")
	require.NoError(t, err)
	f, err := os.Open(filepath.Join(dir, "audit-test.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	// The decisions name the prerequisite that decided, not the set.
	rep, err := taicel.Backtest(context.Background(), candidate.whole, f, taicel.BacktestOptions{Kind: "deployment", Policy: "*"})
	require.NoError(t, err)
	assert.Equal(t, 3, rep.Replayed, "%+v", rep)
	assert.Zero(t, rep.Skipped+rep.Errors, "%+v", rep)
	require.Len(t, rep.Flips, 1, "%+v", rep)
	assert.Equal(t, tai.Allow, rep.Flips[0].From)
	assert.Equal(t, tai.Deny, rep.Flips[0].To)
	require.Len(t, rep.Flips[0].Examples, 1)
	assert.Equal(t, "Change freeze in eu-west-1", rep.Flips[0].Examples[0].NewReason)
	require.Len(t, rep.Rules, 1)
	assert.Equal(t, "change_freeze.eu", rep.Rules[0].Rule)
	assert.Equal(t, 1, rep.Rules[0].OnlyNew)
}

// TestPrerequisiteRuleThatErrs: a prerequisite rule that fails at
// evaluation — here one that reads the first freeze window when there is
// none — fails the deployment's validation at once, naming the rule, as
// a failing analysis rule fails its sample: the same rule would fail
// every retry, and a deployment left in progress would hold its region.
func TestPrerequisiteRuleThatErrs(t *testing.T) {
	rules := rulesDir(t)
	erring := strings.Replace(string(defaultPrerequisites), "  - name: change_freeze\n", `  - name: change_freeze.first
    verdict: deny
    expr: timestamp(freeze_windows[0].from) <= signal.time
    reason: "Frozen"
  - name: change_freeze
`, 1)
	require.NotEqual(t, string(defaultPrerequisites), erring)
	writeRules(t, rules, prerequisitesFile, erring)
	ts := startService(t, append(fastArgs, "-rules", rules)...)

	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, r.deployment(t).ID, ended)
	assert.Equal(t, StatusFailed, d.Status, "%+v", d)
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "Prerequisite rules failed: ")
	assert.Contains(t, *d.ErrorMessage, `rule "change_freeze.first"`)
	assert.Equal(t, "change_freeze", d.Results[0].Decision, "the prerequisite of the rule that failed")
	assert.Empty(t, d.Results[0].Stages, "no traffic moved")
	assert.Equal(t, "v1.0.0", stableOf(t, ts, "api-service", "us-west-2"))

	// The region is free again, and a waiting request is answered 422.
	again := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	assert.Equal(t, http.StatusUnprocessableEntity, again.Code, "%s", again.Body)
}

// TestRuleFailure: a rule of the prerequisites file that failed is told
// from a lookup that failed, even one that failed in the analysis rules
// judging the region's health: the lookup's failures are retried.
func TestRuleFailure(t *testing.T) {
	rerr := &taicel.RuleError{Rule: "change_freeze.first", Err: errors.New("no such key: 0")}
	policy, got, ok := ruleFailure(&tai.PolicyError{Policy: "prerequisites", Err: &tai.PolicyError{Policy: "change_freeze", Err: rerr}})
	assert.True(t, ok)
	assert.Equal(t, "change_freeze", policy)
	assert.Same(t, rerr, got)

	inLookup := fmt.Errorf("taicel: lookup: health of api-service v1.0.0 in us-west-2: %w", &taicel.RuleError{Rule: "error_rate", Err: taicel.ErrCostLimit})
	_, _, ok = ruleFailure(&tai.PolicyError{Policy: "prerequisites", Err: &tai.PolicyError{Policy: "image_exists", Err: inLookup}})
	assert.False(t, ok, "a lookup that failed is retried")
	_, _, ok = ruleFailure(&tai.PolicyError{Policy: "prerequisites", Err: errors.New("store down")})
	assert.False(t, ok)
}

// TestPrerequisiteReviewRefuses: a prerequisite rule whose verdict is
// review refuses the deployment, as the first rule that fires does: the
// service has no one to review it, and a rollout that went on would make
// the rule's hold a note no one reads.
func TestPrerequisiteReviewRefuses(t *testing.T) {
	rules := rulesDir(t)
	review := strings.Replace(string(defaultPrerequisites), "  - name: change_freeze\n", `  - name: change_freeze.eu
    verdict: review
    expr: payload.Region == "eu-west-1"
    reason: "A change in {{payload.Region}} needs a second pair of eyes"
  - name: change_freeze
`, 1)
	require.NotEqual(t, string(defaultPrerequisites), review)
	writeRules(t, rules, prerequisitesFile, review)
	ts := startService(t, append(fastArgs, "-rules", rules)...)

	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "eu-west-1"})
	require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
	d := r.deployment(t)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "A change in eu-west-1 needs a second pair of eyes", *d.ErrorMessage)
	assert.Equal(t, "change_freeze", d.Results[0].Decision)
	assert.Equal(t, "v1.0.0", stableOf(t, ts, "api-service", "eu-west-1"))

	r = deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	assert.Equal(t, http.StatusOK, r.Code, "the rule reviews eu-west-1 only: %s", r.Body)
}
