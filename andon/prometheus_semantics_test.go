package andon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// These tests state what a rule does in the cases Prometheus's alerting
// rules are known by: for, keep_firing_for, a condition that flaps while
// pending, one that fails, and the times an alert carries.

// scripted is a condition whose value at each minute after base is the
// next of values; it holds above 50, as the PromQL "level > 50" does.
type scripted struct {
	mu     sync.Mutex
	base   time.Time
	values []float64
	errAt  map[time.Duration]error
}

func (s *scripted) Measure(_ context.Context, now time.Time) (andon.Measurement, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := now.Sub(s.base)
	if err := s.errAt[at]; err != nil {
		return andon.Measurement{}, err
	}
	i := int(at / time.Minute)
	v := s.values[min(i, len(s.values)-1)]
	return andon.Measurement{Active: v > 50, Value: v, Threshold: 50, Samples: 1}, nil
}

// promCase is a scripted rule of the shape of Prometheus's own tests: a
// series sampled every minute, "level > 50", with for and
// keep_firing_for.
type promCase struct {
	name         string // the alert name, and the series' "case" label
	forDur, keep time.Duration
	values       []float64
	want         []andon.AlertState // after the evaluation at each minute
}

var promCases = []promCase{
	{
		// Prometheus's TestKeepFiringFor: keep_firing_for counts from the
		// first evaluation that sees the condition no longer hold, and the
		// alert resolves once that long has passed.
		name: "KeepFiring", forDur: time.Minute, keep: time.Minute,
		values: []float64{75, 85, 70, 70, 10, 10, 10, 10, 10},
		want: []andon.AlertState{andon.Pending, andon.Firing, andon.Firing, andon.Firing,
			andon.Firing, andon.Resolved, andon.Resolved, andon.Resolved, andon.Resolved},
	},
	{
		// Prometheus's TestPendingAndKeepFiringFor: keep_firing_for keeps
		// only a firing alert; a pending one is dropped at once.
		name: "PendingKeep", forDur: time.Minute, keep: time.Minute,
		values: []float64{75, 10, 10},
		want:   []andon.AlertState{andon.Pending, andon.Inactive, andon.Inactive},
	},
	{
		// A condition that flaps while pending starts For again: the
		// alert is active anew, from the evaluation that sees it hold.
		name: "FlapDuringFor", forDur: 2 * time.Minute,
		values: []float64{75, 10, 75, 75, 75, 10, 75},
		want: []andon.AlertState{andon.Pending, andon.Inactive, andon.Pending, andon.Pending,
			andon.Firing, andon.Resolved, andon.Pending},
	},
	{
		// keep_firing_for starts again each time the condition stops
		// holding after it held again.
		name: "KeepFlap", keep: 2 * time.Minute,
		values: []float64{75, 10, 75, 10, 10, 10},
		want: []andon.AlertState{andon.Firing, andon.Firing, andon.Firing, andon.Firing,
			andon.Firing, andon.Resolved},
	},
}

// epoch is where promtool's tests start, at Unix time 0.
var epoch = time.Unix(0, 0).UTC()

func (c promCase) rule(cond andon.Condition) andon.Rule {
	return andon.Rule{Name: c.name, Severity: andon.Page, For: c.forDur, KeepFiringFor: c.keep, Condition: cond,
		Summary: "level {{ $value }}", Expr: fmt.Sprintf(`andon_level{case=%q} > 50`, c.name)}
}

func TestStatesAsPrometheus(t *testing.T) {
	for _, c := range promCases {
		t.Run(c.name, func(t *testing.T) {
			cond := &scripted{base: epoch, values: c.values}
			e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{c.rule(cond)}})
			for i, want := range c.want {
				e.EvaluateAt(context.Background(), epoch.Add(time.Duration(i)*time.Minute))
				a, _ := e.Alert(c.name)
				require.Equal(t, want, a.State, "at %dm", i)
			}
		})
	}
}

// The times an alert carries, as Prometheus's: ActiveAt from the first
// evaluation that saw the condition hold, FiredAt from the one that found
// it held for For, KeepFiringSince from the first that saw it stop, and
// ResolvedAt from the one that resolved it. A resolved alert keeps when it
// was active and fired; one active again is a new alert.
func TestTimesAsPrometheus(t *testing.T) {
	c := promCases[0]
	cond := &scripted{base: epoch, values: append(c.values, 75)}
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{c.rule(cond)}})
	m := func(n int) time.Time { return epoch.Add(time.Duration(n) * time.Minute) }
	type times struct{ active, fired, keepSince, resolved time.Time }
	want := []times{
		{active: m(0)},
		{active: m(0), fired: m(1)},
		{active: m(0), fired: m(1)},
		{active: m(0), fired: m(1)},
		{active: m(0), fired: m(1), keepSince: m(4)},
		{active: m(0), fired: m(1), resolved: m(5)},
	}
	for i, w := range want {
		e.EvaluateAt(context.Background(), m(i))
		a, _ := e.Alert(c.name)
		assert.Equal(t, w, times{a.ActiveAt, a.FiredAt, a.KeepFiringSince, a.ResolvedAt}, "at %dm", i)
	}
	e.EvaluateAt(context.Background(), m(9))
	a, _ := e.Alert(c.name)
	assert.Equal(t, times{active: m(9)}, times{a.ActiveAt, a.FiredAt, a.KeepFiringSince, a.ResolvedAt},
		"active again: a new alert")
}

// A condition that fails leaves the rule as it was, as a Prometheus rule
// whose query fails does: For goes on counting from when the alert became
// active, it fires at the first evaluation that measures after For has
// passed, and keep_firing_for goes on counting through the failures.
func TestConditionErrorAsPrometheus(t *testing.T) {
	down := errors.New("source down")
	m := func(n int) time.Duration { return time.Duration(n) * time.Minute }
	cond := &scripted{base: epoch, values: []float64{75, 75, 75, 75, 10, 10, 10, 10, 10},
		errAt: map[time.Duration]error{m(1): down, m(2): down, m(5): down, m(6): down}}
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page,
		For: 2 * time.Minute, KeepFiringFor: 2 * time.Minute, Condition: cond}}})
	var got []string
	for i := range 9 {
		e.EvaluateAt(context.Background(), epoch.Add(m(i)))
		a, _ := e.Alert("R")
		got = append(got, a.State.String())
	}
	assert.Equal(t, []string{
		"pending", "pending", "pending", // For has passed at 2m, but that evaluation failed
		"firing",           // at 3m, the first evaluation that measures
		"firing",           // stops holding at 4m: keeps firing
		"firing", "firing", // the failures at 5m and 6m change nothing
		"resolved", "resolved", // at 7m, 3m have passed since 4m
	}, got)
}

// The exported rules behave in Prometheus as the rules do in process: at
// each evaluation, Prometheus's ALERTS series says pending or firing when
// the rule in process is Pending or Firing, and its ALERTS_FOR_STATE
// carries the same ActiveAt.
func TestPromtoolStatesAsInProcess(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	var rules []andon.Rule
	var series, exprTests strings.Builder
	for _, c := range promCases {
		cond := &scripted{base: epoch, values: c.values}
		rules = append(rules, c.rule(cond))
		vals := make([]string, len(c.values))
		for i, v := range c.values {
			vals[i] = fmt.Sprint(v)
		}
		fmt.Fprintf(&series, "      - series: 'andon_level{case=%q}'\n        values: '%s'\n", c.name, strings.Join(vals, " "))

		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{c.rule(cond)}})
		for i := range c.want {
			e.EvaluateAt(context.Background(), epoch.Add(time.Duration(i)*time.Minute))
			a, _ := e.Alert(c.name)
			require.Equal(t, c.want[i], a.State, "%s at %dm", c.name, i)
			alerts, forState := "      exp_samples: []\n", "      exp_samples: []\n"
			if a.State == andon.Pending || a.State == andon.Firing {
				alerts = fmt.Sprintf("      exp_samples:\n        - labels: 'ALERTS{alertname=%q,alertstate=%q,case=%q,severity=\"page\"}'\n          value: 1\n",
					c.name, a.State.String(), c.name)
				forState = fmt.Sprintf("      exp_samples:\n        - labels: 'ALERTS_FOR_STATE{alertname=%q,case=%q,severity=\"page\"}'\n          value: %d\n",
					c.name, c.name, a.ActiveAt.Unix())
			}
			fmt.Fprintf(&exprTests, "    - expr: 'ALERTS{alertname=%q}'\n      eval_time: %dm\n%s", c.name, i, alerts)
			fmt.Fprintf(&exprTests, "    - expr: 'ALERTS_FOR_STATE{alertname=%q}'\n      eval_time: %dm\n%s", c.name, i, forState)
		}
	}
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "states", rules, andon.ExportOptions{}))
	test := "rule_files:\n  - rules.yml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n" +
		series.String() + "    promql_expr_test:\n" + exprTests.String()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b.Bytes(), 0o600))
	assert.Contains(t, runPromtoolTest(t, promtool, dir, test, b.String()), "SUCCESS")
}

// A firing alert kept by KeepFiringFor, and a resolved one, show what was
// measured last, in Value and in the annotations rendered from it, where
// Prometheus keeps those of the last evaluation at which the condition
// held: the board shows the value against the threshold as it is now.
func TestKeptAndResolvedAlertsShowTheLastValue(t *testing.T) {
	c := promCases[0] // 75 85 70 70 10 …: kept firing at 4m, resolved at 5m
	cond := &scripted{base: epoch, values: c.values}
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{c.rule(cond)}})
	for i := range 6 {
		e.EvaluateAt(context.Background(), epoch.Add(time.Duration(i)*time.Minute))
		a, _ := e.Alert(c.name)
		want := fmt.Sprint(c.values[i])
		assert.Equal(t, c.values[i], a.Value, "at %dm", i)
		assert.Equal(t, "level "+want, a.Annotations["summary"], "at %dm", i)
	}
}

// The template variables $externalLabels and $externalURL, which
// Prometheus defines from its configuration, are defined in process too,
// empty: a template that reads them parses, and renders them as nothing.
func TestTemplateExternalVariablesAreEmpty(t *testing.T) {
	cond := newSwitch()
	cond.Set(true)
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
		Summary: "[{{ $externalLabels.cluster }}][{{ $externalURL }}] {{ $labels.alertname }} at {{ $value }}"}}})
	e.EvaluateAt(context.Background(), t0)
	a, _ := e.Alert("R")
	assert.Equal(t, "[][] R at 0.1", a.Annotations["summary"])
}

// A regexp matcher matches the whole value, as Alertmanager's do: an
// alternation is anchored as a whole, and a label the alert does not have
// is the empty value. Alertmanager's amtool routes the same labels by the
// same matchers to tell.
func TestMatchersAgreeWithAlertmanagerRouting(t *testing.T) {
	amtool := needBinary(t, "/usr/bin/amtool", "amtool")
	dir := t.TempDir()
	for _, tt := range []struct {
		matcher string
		team    string // "" for an alert without the label
		want    bool
	}{
		{`team=~"pay|fraud"`, "payments", false},
		{`team=~"pay|fraud"`, "pay", true},
		{`team=~"pay|fraud"`, "fraud", true},
		{`team=~"pay|fraud"`, "", false},
		{`team=~"pay.*"`, "payments", true},
		{`team=~".*pay"`, "prepayment", false},
		{`team!~"pay|fraud"`, "payments", true},
		{`team!~"pay|fraud"`, "", true},
		{`team=~""`, "", true},
		{`team=~"(?i)PAY"`, "pay", true},
		{`team!="pay"`, "", true},
	} {
		t.Run(tt.matcher+" "+tt.team, func(t *testing.T) {
			m, err := andon.ParseMatcher(tt.matcher)
			require.NoError(t, err)
			labels := map[string]string{"alertname": "R"}
			if tt.team != "" {
				labels["team"] = tt.team
			}
			assert.Equal(t, tt.want, m.Matches(labels), "andon")

			in, err := json.Marshal(tt.matcher) // a JSON string is a YAML one
			require.NoError(t, err)
			config := "route:\n  receiver: other\n  routes:\n    - receiver: hit\n      matchers: [" + string(in) + "]\n" +
				"receivers:\n  - name: other\n  - name: hit\n"
			path := filepath.Join(dir, "alertmanager.yml")
			require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
			args := []string{"config", "routes", "test", "--config.file=" + path, "alertname=R"}
			if tt.team != "" {
				args = append(args, "team="+tt.team)
			}
			out, err := exec.Command(amtool, args...).Output()
			require.NoError(t, err, "amtool %v", args)
			assert.Equal(t, tt.want, strings.TrimSpace(string(out)) == "hit", "amtool routes to %s", out)
		})
	}
}
