package andon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// paymentRules are the rules of the payment example: fraud rate, error
// rate, p99 latency and a page on the error budget.
func paymentRules(stats *kaizen.Stats) []andon.Rule {
	return []andon.Rule{
		{
			Name: "HighFraudRate", Severity: andon.Page, For: 2 * time.Minute, KeepFiringFor: 5 * time.Minute,
			Condition:  andon.VerdictRate(stats, "payment", 5*time.Minute, 0.02, tai.Deny),
			Labels:     map[string]string{"team": "payments"},
			Summary:    "fraud rate {{ $value | humanizePercentage }}",
			RunbookURL: "https://runbooks.example/fraud",
		},
		{
			Name: "HighErrorRate", Severity: andon.Page, MinSamples: 10,
			Condition: andon.ErrorRate(stats, "payment", 5*time.Minute, 0.05),
		},
		{
			Name: "SlowPayments", Severity: andon.Ticket, For: time.Minute,
			Condition: andon.LatencyQuantile(stats, "payment", 5*time.Minute, 0.99, 5*time.Second),
		},
		{
			Name: "PaymentBudgetBurn", Severity: andon.Page,
			Condition: andon.BurnRate(stats, andon.SLO{Name: "payment-availability", Kind: "payment", Objective: 0.999}, andon.PageBurnWindows()...),
			Summary:   "error budget burning {{ $value | humanize }}× too fast",
		},
	}
}

func exportStats(t *testing.T) *kaizen.Stats {
	return newStats(t, andon.BurnWindowsOf(andon.PageBurnWindows())...)
}

func TestPrometheusRulesText(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "payment", paymentRules(exportStats(t)), andon.ExportOptions{Interval: 30 * time.Second}))
	out := b.String()
	for _, want := range []string{
		"groups:\n  - name: \"payment\"\n    interval: 30s\n    rules:\n",
		`      - record: "slo:sli_error:ratio_rate1h"` + "\n" +
			`        expr: "(sum(rate(taikit_signals_total{kind=\"payment\",outcome=\"failed\"}[1h])) or vector(0)) / sum(rate(taikit_signals_total{kind=\"payment\"}[1h]))"` + "\n" +
			"        labels:\n          kind: \"payment\"\n          slo: \"payment-availability\"\n",
		`      - alert: "HighFraudRate"` + "\n" +
			`        expr: "sum(rate(taikit_decisions_total{kind=\"payment\",verdict=\"deny\"}[5m])) / sum(rate(taikit_decisions_total{kind=\"payment\"}[5m])) > 0.02"` + "\n" +
			"        for: 2m\n        keep_firing_for: 5m\n" +
			"        labels:\n          severity: \"page\"\n          team: \"payments\"\n" +
			"        annotations:\n          runbook_url: \"https://runbooks.example/fraud\"\n          summary: \"fraud rate {{ $value | humanizePercentage }}\"\n",
		`(sum(rate(taikit_signals_total{kind=\"payment\",outcome=\"failed\"}[5m])) / sum(rate(taikit_signals_total{kind=\"payment\"}[5m])) > 0.05) and on() sum(increase(taikit_signals_total{kind=\"payment\"}[5m])) >= 10`,
		`summary: "error rate of payment over 5m is {{ $value | humanizePercentage }} (threshold 5%)"`,
		`histogram_quantile(0.99, sum by (le) (rate(taikit_signal_duration_seconds_bucket{kind=\"payment\"}[5m]))) > 5`,
		`(slo:sli_error:ratio_rate1h{kind=\"payment\",slo=\"payment-availability\"} / (1 - 0.999) > 14.4 and slo:sli_error:ratio_rate5m{kind=\"payment\",slo=\"payment-availability\"} / (1 - 0.999) > 14.4) or (slo:sli_error:ratio_rate6h{kind=\"payment\",slo=\"payment-availability\"} / (1 - 0.999) > 6 and slo:sli_error:ratio_rate30m{kind=\"payment\",slo=\"payment-availability\"} / (1 - 0.999) > 6)`,
	} {
		assert.Contains(t, out, want)
	}
	assert.Equal(t, 4, bytes.Count(b.Bytes(), []byte("- record:")), "one recording rule per window")
	assert.NotContains(t, out, "alertname", "Prometheus adds alertname itself")
}

func TestPrometheusRulesOptions(t *testing.T) {
	stats := exportStats(t)
	line := newLine("checkout")
	custom := andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) { return andon.Measurement{}, nil })
	rules := []andon.Rule{
		{Name: "Errors", Severity: andon.Page, Condition: andon.ErrorRate(stats, "payment", 5*time.Minute, 0.05)},
		{Name: "Custom", Severity: andon.Ticket, Condition: custom},
	}
	var b bytes.Buffer
	err := andon.PrometheusRules(&b, "g", rules, andon.ExportOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `andon: rule "Custom": condition`)
	assert.Contains(t, err.Error(), `has no PromQL form; set Rule.Expr`)

	b.Reset()
	require.NoError(t, andon.PrometheusRules(&b, "g", rules, andon.ExportOptions{SkipUnsupported: true,
		Namespace: "shop", Subsystem: "api", Matchers: map[string]string{"job": "payment"}}))
	assert.Contains(t, b.String(), `shop_api_signals_total{job=\"payment\",kind=\"payment\",outcome=\"failed\"}`)
	assert.NotContains(t, b.String(), "Custom")

	rules[1].Expr = `vector(1) > 2`
	b.Reset()
	require.NoError(t, andon.PrometheusRules(&b, "g", rules, andon.ExportOptions{}))
	assert.Contains(t, b.String(), `expr: "vector(1) > 2"`)

	// Breaker and line states read kaizen's collector gauges, which have
	// the namespace but no subsystem.
	breaker, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway"})
	require.NoError(t, err)
	state := []andon.Rule{
		{Name: "LineDown", Severity: andon.Ticket, Condition: andon.LineStopped(line)},
		{Name: "GatewayOpen", Severity: andon.Page, Condition: andon.BreakerOpen(breaker)},
	}
	b.Reset()
	require.NoError(t, andon.PrometheusRules(&b, "g", state, andon.ExportOptions{Namespace: "shop", Subsystem: "api"}))
	assert.Contains(t, b.String(), `expr: "max(shop_line_stopped{line=\"checkout\"}) > 0"`)
	assert.Contains(t, b.String(), `expr: "max(shop_breaker_state{breaker=\"gateway\",state=~\"open|forced-open|half-open\"}) > 0"`)

	for _, tt := range []struct {
		group string
		rules []andon.Rule
		opts  andon.ExportOptions
		want  string
	}{
		{"", nil, andon.ExportOptions{}, "group name is empty"},
		{"g", nil, andon.ExportOptions{Namespace: "a-b"}, `ExportOptions.Namespace "a-b" is not a valid metric name`},
		// kaizenprom refuses a colon, which Prometheus keeps for the names
		// of recording rules: the rules would read families no Metrics
		// exports.
		{"g", nil, andon.ExportOptions{Namespace: "shop:api"}, `ExportOptions.Namespace "shop:api" is not a valid metric name`},
		{"g", nil, andon.ExportOptions{Subsystem: "a:b"}, `ExportOptions.Subsystem "a:b" is not a valid metric name`},
		{"g", nil, andon.ExportOptions{Matchers: map[string]string{"1x": "y"}}, `ExportOptions.Matchers: name "1x" is not a valid label name`},
		{"g", nil, andon.ExportOptions{Matchers: map[string]string{"job": "pay\xffment"}}, `ExportOptions.Matchers: value "pay\xffment" of label "job" is not valid UTF-8`},
		{"g", []andon.Rule{rules[0], rules[0]}, andon.ExportOptions{}, `rule "Errors": Rule.Name is used by another rule`},
		{"g", []andon.Rule{{Name: "X", Severity: andon.Page, Condition: rules[0].Condition, For: time.Microsecond}}, andon.ExportOptions{}, "For 1µs is not a whole number of milliseconds"},
	} {
		err := andon.PrometheusRules(&b, tt.group, tt.rules, tt.opts)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tt.want)
	}
}

// promtoolTest proves with promtool that the exported rules fire on
// synthetic series, with the annotations the in-process rules render.
const promtoolTest = `rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taikit_decisions_total{kind="payment",policy="fraud",verdict="deny"}'
        values: '0+5x120'
      - series: 'taikit_decisions_total{kind="payment",policy="fraud",verdict="allow"}'
        values: '0+95x120'
      - series: 'taikit_signals_total{kind="payment",outcome="succeeded"}'
        values: '0+980x120'
      - series: 'taikit_signals_total{kind="payment",outcome="failed"}'
        values: '0+20x120'
      - series: 'taikit_signal_duration_seconds_bucket{kind="payment",le="5"}'
        values: '0+90x120'
      - series: 'taikit_signal_duration_seconds_bucket{kind="payment",le="10"}'
        values: '0+100x120'
      - series: 'taikit_signal_duration_seconds_bucket{kind="payment",le="+Inf"}'
        values: '0+100x120'
    alert_rule_test:
      - eval_time: 1m
        alertname: HighFraudRate
        exp_alerts: []
      - eval_time: 10m
        alertname: HighFraudRate
        exp_alerts:
          - exp_labels:
              severity: page
              team: payments
            exp_annotations:
              summary: "fraud rate 5%"
              runbook_url: "https://runbooks.example/fraud"
      - eval_time: 10m
        alertname: HighErrorRate
        exp_alerts: []
      - eval_time: 10m
        alertname: SlowPayments
        exp_alerts:
          - exp_labels:
              severity: ticket
            exp_annotations:
              summary: "p99 latency of payment over 5m is 9.5s (threshold 5s)"
      - eval_time: 10m
        alertname: PaymentBudgetBurn
        exp_alerts:
          - exp_labels:
              severity: page
              slo: payment-availability
              kind: payment
            exp_annotations:
              summary: "error budget burning 20× too fast"
`

func TestPromtool(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	dir := t.TempDir()
	stats := exportStats(t)
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "payment", paymentRules(stats), andon.ExportOptions{}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b.Bytes(), 0o600))

	out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yml")).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s\n%s", out, b.String())
	assert.Contains(t, string(out), "SUCCESS: 8 rules found")

	assert.Contains(t, runPromtoolTest(t, promtool, dir, promtoolTest, b.String()), "SUCCESS")

	// The same templates render the same text in-process.
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "F", Severity: andon.Page,
		Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			return andon.Measurement{Active: true, Value: 0.05, Samples: 100}, nil
		}), Summary: paymentRules(stats)[0].Summary}}})
	e.EvaluateAt(context.Background(), t0)
	a, _ := e.Alert("F")
	assert.Equal(t, "fraud rate 5%", a.Annotations["summary"])
}

func TestPromtoolRejectsBrokenRules(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	dir := t.TempDir()
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{{Name: "Broken", Severity: andon.Page,
		Condition: newSwitch(), Expr: "sum(rate(x[5m]) >"}}, andon.ExportOptions{}))
	path := filepath.Join(dir, "rules.yml")
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	assert.Error(t, err, "the check can fail: %s", out)
}

// exportAllRules are rules of every kind with every option, for the exact
// output test and promtool.
func exportAllRules(t *testing.T) []andon.Rule {
	stats := newStats(t, append(andon.BurnWindowsOf(andon.PageBurnWindows(), andon.TicketBurnWindows()), 90*time.Minute)...)
	slo := andon.SLO{Kind: "payment", Objective: 0.995, Errors: []tai.Outcome{tai.Failed, tai.Rejected}}
	return []andon.Rule{
		{Name: "Shed", Severity: andon.Ticket, MinSamples: 100, KeepFiringFor: 90 * time.Minute,
			Condition:   andon.OutcomeRate(stats, "payment", 90*time.Minute, 0.1, tai.Rejected, tai.Failed, tai.Rejected),
			Description: "{{ $labels.team }} sheds", Annotations: map[string]string{"dashboard": "https://d.example/{{ $labels.team }}"},
			Labels: map[string]string{"team": "payments"}},
		{Name: "Review", Severity: andon.Info, MinSamples: 5, For: 1500 * time.Millisecond,
			Condition: andon.VerdictRate(stats, "payment", 5*time.Minute, 0.25, tai.Review, tai.Deny, tai.Review)},
		{Name: "Slow", Severity: andon.Ticket, MinSamples: 7,
			Condition: andon.LatencyQuantile(stats, "payment", 30*time.Minute, 0.999, 250*time.Millisecond)},
		{Name: "BurnPage", Severity: andon.Page, MinSamples: 1000,
			Condition: andon.BurnRate(stats, slo, andon.PageBurnWindows()...)},
		{Name: "BurnTicket", Severity: andon.Ticket, // shares the 6h recording rule
			Condition: andon.BurnRate(stats, slo, andon.TicketBurnWindows()...)},
		{Name: "GatewayOpen", Severity: andon.Page, MinSamples: 1, Condition: andon.BreakerOpen(newBreaker(t, "gateway"))},
	}
}

// exportAllText is what PrometheusRules writes for exportAllRules with
// exportAllOptions, checked by hand and by promtool.
const exportAllText = `groups:
  - name: "all"
    interval: 1m30s
    rules:
      - record: "slo:sli_error:ratio_rate1h"
        expr: "(sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\",outcome=~\"failed|rejected\"}[1h])) or vector(0)) / sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[1h]))"
        labels:
          job: "pay"
          kind: "payment"
          slo: "payment"
      - record: "slo:sli_error:ratio_rate5m"
        expr: "(sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\",outcome=~\"failed|rejected\"}[5m])) or vector(0)) / sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[5m]))"
        labels:
          job: "pay"
          kind: "payment"
          slo: "payment"
      - record: "slo:sli_error:ratio_rate6h"
        expr: "(sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\",outcome=~\"failed|rejected\"}[6h])) or vector(0)) / sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[6h]))"
        labels:
          job: "pay"
          kind: "payment"
          slo: "payment"
      - record: "slo:sli_error:ratio_rate30m"
        expr: "(sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\",outcome=~\"failed|rejected\"}[30m])) or vector(0)) / sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[30m]))"
        labels:
          job: "pay"
          kind: "payment"
          slo: "payment"
      - record: "slo:sli_error:ratio_rate1d"
        expr: "(sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\",outcome=~\"failed|rejected\"}[1d])) or vector(0)) / sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[1d]))"
        labels:
          job: "pay"
          kind: "payment"
          slo: "payment"
      - record: "slo:sli_error:ratio_rate2h"
        expr: "(sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\",outcome=~\"failed|rejected\"}[2h])) or vector(0)) / sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[2h]))"
        labels:
          job: "pay"
          kind: "payment"
          slo: "payment"
      - record: "slo:sli_error:ratio_rate3d"
        expr: "(sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\",outcome=~\"failed|rejected\"}[3d])) or vector(0)) / sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[3d]))"
        labels:
          job: "pay"
          kind: "payment"
          slo: "payment"
      - alert: "Shed"
        expr: "label_replace(label_replace(label_replace((sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\",outcome=~\"rejected|failed\"}[1h30m])) / sum(rate(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[1h30m])) > 0.1) and on() sum(increase(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[1h30m])) >= 100, \"alertname\", \"Shed\", \"\", \"\"), \"severity\", \"ticket\", \"\", \"\"), \"team\", \"payments\", \"\", \"\")"
        keep_firing_for: 1h30m
        labels:
          job: "pay"
          severity: "ticket"
          team: "payments"
        annotations:
          dashboard: "https://d.example/{{ $labels.team }}"
          description: "{{ $labels.team }} sheds"
          summary: "rejected+failed rate of payment over 1h30m is {{ $value | humanizePercentage }} (threshold 10%)"
      - alert: "Review"
        expr: "(sum(rate(taikit_api_decisions_total{job=\"pay\",kind=\"payment\",verdict=~\"review|deny\"}[5m])) / sum(rate(taikit_api_decisions_total{job=\"pay\",kind=\"payment\"}[5m])) > 0.25) and on() sum(increase(taikit_api_decisions_total{job=\"pay\",kind=\"payment\"}[5m])) >= 5"
        for: 1s500ms
        labels:
          job: "pay"
          severity: "info"
        annotations:
          summary: "review+deny verdict rate of payment over 5m is {{ $value | humanizePercentage }} (threshold 25%)"
      - alert: "Slow"
        expr: "(histogram_quantile(0.999, sum by (le) (rate(taikit_api_signal_duration_seconds_bucket{job=\"pay\",kind=\"payment\"}[30m]))) > 0.25) and on() sum(increase(taikit_api_signal_duration_seconds_count{job=\"pay\",kind=\"payment\"}[30m])) >= 7"
        labels:
          job: "pay"
          severity: "ticket"
        annotations:
          summary: "p99.9 latency of payment over 30m is {{ $value | humanizeDuration }} (threshold 250ms)"
      - alert: "BurnPage"
        expr: "((slo:sli_error:ratio_rate1h{job=\"pay\",kind=\"payment\",slo=\"payment\"} / (1 - 0.995) > 14.4 and slo:sli_error:ratio_rate5m{job=\"pay\",kind=\"payment\",slo=\"payment\"} / (1 - 0.995) > 14.4) or (slo:sli_error:ratio_rate6h{job=\"pay\",kind=\"payment\",slo=\"payment\"} / (1 - 0.995) > 6 and slo:sli_error:ratio_rate30m{job=\"pay\",kind=\"payment\",slo=\"payment\"} / (1 - 0.995) > 6)) and on() sum(increase(taikit_api_signals_total{job=\"pay\",kind=\"payment\"}[6h])) >= 1000"
        labels:
          job: "pay"
          severity: "page"
        annotations:
          summary: "error budget burn rate of payment (99.5%) is {{ $value | humanize }}× (threshold 14.4× over 1h, 6× over 6h)"
      - alert: "BurnTicket"
        expr: "(slo:sli_error:ratio_rate1d{job=\"pay\",kind=\"payment\",slo=\"payment\"} / (1 - 0.995) > 3 and slo:sli_error:ratio_rate2h{job=\"pay\",kind=\"payment\",slo=\"payment\"} / (1 - 0.995) > 3) or (slo:sli_error:ratio_rate3d{job=\"pay\",kind=\"payment\",slo=\"payment\"} / (1 - 0.995) > 1 and slo:sli_error:ratio_rate6h{job=\"pay\",kind=\"payment\",slo=\"payment\"} / (1 - 0.995) > 1)"
        labels:
          job: "pay"
          severity: "ticket"
        annotations:
          summary: "error budget burn rate of payment (99.5%) is {{ $value | humanize }}× (threshold 3× over 1d, 1× over 3d)"
      - alert: "GatewayOpen"
        expr: "max(taikit_breaker_state{breaker=\"gateway\",job=\"pay\",state=~\"open|forced-open|half-open\"}) > 0"
        labels:
          job: "pay"
          severity: "page"
        annotations:
          summary: "breaker gateway open is {{ $value | humanize }}"
`

var exportAllOptions = andon.ExportOptions{Interval: 90 * time.Second, Subsystem: "api", Matchers: map[string]string{"job": "pay"}}

func TestPrometheusRulesExactly(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "all", exportAllRules(t), exportAllOptions))
	assert.Equal(t, exportAllText, b.String())
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	path := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	assert.Contains(t, string(out), "SUCCESS: 13 rules found")
}

func TestPrometheusRulesEdges(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "none", nil, andon.ExportOptions{}))
	assert.Equal(t, "groups:\n  - name: \"none\"\n    rules: []\n", b.String())
	full := errors.New("disk full")
	assert.ErrorIs(t, andon.PrometheusRules(failingWriter{full}, "none", nil, andon.ExportOptions{}), full,
		"the writer's error is returned")

	stats := exportStats(t)
	errs := andon.ErrorRate(stats, "payment", 5*time.Minute, 0.05)
	for _, tt := range []struct {
		rules []andon.Rule
		opts  andon.ExportOptions
		want  string
	}{
		{nil, andon.ExportOptions{Subsystem: "a-b"}, `andon: ExportOptions.Subsystem "a-b" is not a valid metric name`},
		{nil, andon.ExportOptions{Interval: -time.Second}, "andon: ExportOptions.Interval -1s is not a whole number of milliseconds ≥ 0"},
		{nil, andon.ExportOptions{Interval: 1500 * time.Microsecond}, "andon: ExportOptions.Interval 1.5ms is not a whole number of milliseconds ≥ 0"},
		{[]andon.Rule{{Name: "X", Severity: andon.Page, Condition: errs, KeepFiringFor: time.Microsecond}}, andon.ExportOptions{},
			`andon: rule "X": KeepFiringFor 1µs is not a whole number of milliseconds`},
		{[]andon.Rule{{Name: "X", Severity: andon.Page, Condition: errs, Summary: "{{ .Nope "}}, andon.ExportOptions{}, `andon: rule "X": Summary template`},
		{[]andon.Rule{{Name: "X", Condition: errs}}, andon.ExportOptions{}, `andon: rule "X": Rule.Severity is empty`},
		{[]andon.Rule{
			{Name: "A", Severity: andon.Page, Condition: andon.BurnRate(stats, andon.SLO{Name: "s", Kind: "payment", Objective: 0.99}, andon.PageBurnWindows()...)},
			{Name: "B", Severity: andon.Page, Condition: andon.BurnRate(stats, andon.SLO{Name: "s", Kind: "refund", Objective: 0.99}, andon.PageBurnWindows()...)},
		}, andon.ExportOptions{}, `andon: rule "B": SLO "s" is defined twice with different kinds or errors`},
	} {
		b.Reset()
		err := andon.PrometheusRules(&b, "g", tt.rules, tt.opts)
		assert.ErrorContains(t, err, tt.want)
		assert.Regexp(t, "^andon: ", err.Error())
		assert.Zero(t, b.Len(), "nothing written on error")
	}
	// The same SLO under two names is two sets of recording rules.
	b.Reset()
	require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{
		{Name: "A", Severity: andon.Page, Condition: andon.BurnRate(stats, andon.SLO{Name: "a", Kind: "payment", Objective: 0.99}, andon.PageBurnWindows()...)},
		{Name: "B", Severity: andon.Page, Condition: andon.BurnRate(stats, andon.SLO{Name: "b", Kind: "payment", Objective: 0.99}, andon.PageBurnWindows()...)},
	}, andon.ExportOptions{}))
	assert.Equal(t, 8, strings.Count(b.String(), "- record:"))
}

// failingWriter fails every Write with err.
type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// promtoolMinSamplesTest proves that MinSamples lets an alert fire once
// there are enough signals, and keeps it silent below them: the count has
// no labels, so it must match a burn rate's slo and kind with on().
const promtoolMinSamplesTest = `rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taikit_signals_total{kind="payment",outcome="succeeded"}'
        values: '0+10x120'
      - series: 'taikit_signals_total{kind="payment",outcome="failed"}'
        values: '0+10x120'
    alert_rule_test:
      - eval_time: 10m
        alertname: BurnMin
        exp_alerts:
          - exp_labels:
              severity: page
              slo: avail
              kind: payment
            exp_annotations:
              summary: burn
      - eval_time: 10m
        alertname: ErrorsMin
        exp_alerts:
          - exp_labels:
              severity: page
            exp_annotations:
              summary: errors
  - interval: 1m
    input_series:
      - series: 'taikit_signals_total{kind="payment",outcome="succeeded"}'
        values: '0+0.05x120'
      - series: 'taikit_signals_total{kind="payment",outcome="failed"}'
        values: '0+0.05x120'
    alert_rule_test:
      - eval_time: 60m
        alertname: BurnMin
        exp_alerts: []
      - eval_time: 60m
        alertname: ErrorsMin
        exp_alerts: []
      - eval_time: 60m
        alertname: BurnAny
        exp_alerts:
          - exp_labels:
              severity: page
              slo: avail
              kind: payment
            exp_annotations:
              summary: burn
`

func TestPromtoolMinSamples(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	dir := t.TempDir()
	stats := newStats(t, 5*time.Minute, time.Hour)
	slo := andon.SLO{Name: "avail", Kind: "payment", Objective: 0.99}
	window := andon.BurnWindow{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4}
	rules := []andon.Rule{
		{Name: "BurnMin", Severity: andon.Page, MinSamples: 10, Summary: "burn",
			Condition: andon.BurnRate(stats, slo, window)},
		{Name: "ErrorsMin", Severity: andon.Page, MinSamples: 10, Summary: "errors",
			Condition: andon.ErrorRate(stats, "payment", 5*time.Minute, 0.05)},
		{Name: "BurnAny", Severity: andon.Page, Summary: "burn", // the same burn without MinSamples
			Condition: andon.BurnRate(stats, slo, window)},
	}
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "min", rules, andon.ExportOptions{}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b.Bytes(), 0o600))

	assert.Contains(t, runPromtoolTest(t, promtool, dir, promtoolMinSamplesTest, b.String()), "SUCCESS")
}

// promtoolLiteralTest proves that label values, a runbook URL and the
// default summary reach Prometheus as the literal text they are in
// process, although Prometheus expands templates in all of them.
const promtoolLiteralTest = `rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taikit_signals_total{kind="pay{{ment",outcome="succeeded"}'
        values: '0+6x10'
      - series: 'taikit_signals_total{kind="pay{{ment",outcome="failed"}'
        values: '0+6x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: Literal
        exp_alerts:
          - exp_labels:
              severity: page
              team: "{{ $value }}"
            exp_annotations:
              summary: "error rate of pay{{ment over 5m is 50% (threshold 5%)"
              runbook_url: "https://runbooks.example/{{"
`

func TestPromtoolLiteralText(t *testing.T) {
	rules := []andon.Rule{{Name: "Literal", Severity: andon.Page, Labels: map[string]string{"team": "{{ $value }}"},
		RunbookURL: "https://runbooks.example/{{", Condition: andon.ErrorRate(exportStats(t), "pay{{ment", 5*time.Minute, 0.05)}}
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", rules, andon.ExportOptions{}))
	assert.Contains(t, b.String(), `team: "{{ \"{{\" }} $value }}"`)

	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b.Bytes(), 0o600))
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yml")).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s\n%s", out, b.String())
	runPromtoolTest(t, promtool, dir, promtoolLiteralTest, b.String())
}

// promtoolTildeTest has a kind "~pay.*" that is healthy beside a kind
// "payment" that fails: a regexp pay.* would fire the alert.
const promtoolTildeTest = `rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taikit_signals_total{job="~x",kind="~pay.*",outcome="succeeded"}'
        values: '0+6x10'
      - series: 'taikit_signals_total{job="~x",kind="payment",outcome="failed"}'
        values: '0+6x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: Tilde
        exp_alerts: []
`

func TestPrometheusRulesValuesStartingWithTilde(t *testing.T) {
	rules := []andon.Rule{
		{Name: "Tilde", Severity: andon.Page, Condition: andon.ErrorRate(exportStats(t), "~pay.*", 5*time.Minute, 0.05)},
		{Name: "Line", Severity: andon.Page, Condition: andon.LineStopped(newLine("~l"))},
		{Name: "Breaker", Severity: andon.Page, Condition: andon.BreakerOpen(newBreaker(t, "~gw"))},
	}
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", rules, andon.ExportOptions{Matchers: map[string]string{"job": "~x"}}))
	for _, want := range []string{
		`taikit_signals_total{job=\"~x\",kind=\"~pay.*\",outcome=\"failed\"}`,
		`taikit_line_stopped{job=\"~x\",line=\"~l\"}`,
		`taikit_breaker_state{breaker=\"~gw\",job=\"~x\",state=~\"open|forced-open|half-open\"}`,
	} {
		assert.Contains(t, b.String(), want)
	}

	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b.Bytes(), 0o600))
	runPromtoolTest(t, promtool, dir, promtoolTildeTest, b.String())
}

// promtoolMinutesTest proves that the summary Prometheus renders for a
// latency of minutes reads as the one the same rule has in process.
const promtoolMinutesTest = `rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taikit_signal_duration_seconds_bucket{kind="payment",le="60"}'
        values: '0x10'
      - series: 'taikit_signal_duration_seconds_bucket{kind="payment",le="120"}'
        values: '0+100x10'
      - series: 'taikit_signal_duration_seconds_bucket{kind="payment",le="+Inf"}'
        values: '0+100x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: SlowExports
        exp_alerts:
          - exp_labels:
              severity: ticket
            exp_annotations:
              summary: "p99 latency of payment over 5m is 1m 59s (threshold 1m 30s)"
`

// fixedDescribed is a condition with a description, measuring m.
type fixedDescribed struct {
	desc string
	m    andon.Measurement
}

func (c fixedDescribed) String() string { return c.desc }

func (c fixedDescribed) Measure(context.Context, time.Time) (andon.Measurement, error) {
	return c.m, nil
}

// TestDefaultSummaryOfMinutesReadsAlike: a latency rule of a threshold of
// 90 s whose p99 is 119.4 s is summed up alike by Prometheus, from the
// exported rule, and in process, and in one way within the summary:
// "is 1m 59s (threshold 1m 30s)". Prometheus wrote "is 1m 59s (threshold
// 90s)", and the board and the in-process notifications "is 119s
// (threshold 90s)".
func TestDefaultSummaryOfMinutesReadsAlike(t *testing.T) {
	const want = "p99 latency of payment over 5m is 1m 59s (threshold 1m 30s)"
	rule := andon.Rule{Name: "SlowExports", Severity: andon.Ticket,
		Condition: andon.LatencyQuantile(exportStats(t), "payment", 5*time.Minute, 0.99, 90*time.Second)}

	// In process, the same description and value.
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: rule.Name, Severity: rule.Severity,
		Condition: fixedDescribed{desc: rule.Condition.(fmt.Stringer).String(),
			m: andon.Measurement{Active: true, Value: 119.4, Threshold: 90, Unit: andon.UnitSeconds, Samples: 100}}}}})
	e.EvaluateAt(context.Background(), t0)
	a, ok := e.Alert(rule.Name)
	require.True(t, ok)
	assert.Equal(t, want, a.Annotations["summary"], "in process")
	assert.Equal(t, "1m 59s", a.ValueText(), "on the board")
	assert.Equal(t, "1m 30s", a.ThresholdText(), "on the board")

	// In Prometheus.
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{rule}, andon.ExportOptions{}))
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b.Bytes(), 0o600))
	runPromtoolTest(t, promtool, dir, promtoolMinutesTest, b.String())
}

// promtoolLabelsTest proves that annotation templates reading $labels
// render the rule's labels, alertname and severity in Prometheus as they
// do in process: Prometheus gives its templates only the labels of the
// expression's result, which has none of them.
const promtoolLabelsTest = `rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taikit_signals_total{kind="payment",outcome="succeeded"}'
        values: '0+6x10'
      - series: 'taikit_signals_total{kind="payment",outcome="failed"}'
        values: '0+6x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: Labelled
        exp_alerts:
          - exp_labels:
              severity: ticket
              team: "pay$1ments"
            exp_annotations:
              summary: "Labelled ticket pay$1ments 50%"
              description: "team pay$1ments"
              owner: "pay$1ments"
`

func TestPromtoolTemplatesSeeTheRuleLabels(t *testing.T) {
	rule := andon.Rule{Name: "Labelled", Severity: andon.Ticket, Labels: map[string]string{"team": "pay$1ments"},
		Condition:   andon.ErrorRate(exportStats(t), "payment", 5*time.Minute, 0.05),
		Summary:     "{{ $labels.alertname }} {{ $labels.severity }} {{ $labels.team }} {{ $value | humanizePercentage }}",
		Description: "team {{ .Labels.team }}", Annotations: map[string]string{"owner": `{{ index $labels "team" }}`}}

	// In process.
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: rule.Name, Severity: rule.Severity, Labels: rule.Labels,
		Summary: rule.Summary, Description: rule.Description, Annotations: rule.Annotations,
		Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			return andon.Measurement{Active: true, Value: 0.5, Samples: 100}, nil
		})}}})
	e.EvaluateAt(context.Background(), t0)
	a, _ := e.Alert(rule.Name)
	assert.Equal(t, map[string]string{"summary": "Labelled ticket pay$1ments 50%", "description": "team pay$1ments", "owner": "pay$1ments"},
		a.Annotations)

	// In Prometheus.
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{rule}, andon.ExportOptions{}))
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b.Bytes(), 0o600))
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yml")).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s\n%s", out, b.String())
	runPromtoolTest(t, promtool, dir, promtoolLabelsTest, b.String())
}

// promtoolMatchersBurnTest proves that two services exporting the same
// SLO under different ExportOptions.Matchers have recording rules of their
// own, and that each alert reads its own service's: the service whose
// signals all fail pages, the one whose signals all succeed does not.
const promtoolMatchersBurnTest = `rule_files:
  - a.yml
  - b.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taikit_signals_total{job="a",kind="http",outcome="succeeded"}'
        values: '0+10x120'
      - series: 'taikit_signals_total{job="b",kind="http",outcome="failed"}'
        values: '0+10x120'
    alert_rule_test:
      - eval_time: 60m
        alertname: BurnA
        exp_alerts: []
      - eval_time: 60m
        alertname: BurnB
        exp_alerts:
          - exp_labels:
              severity: page
              slo: http
              kind: http
              job: b
            exp_annotations:
              summary: burn
`

func TestPromtoolBurnRateUnderMatchers(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	stats := exportStats(t)
	dir := t.TempDir()
	for _, svc := range []string{"a", "b"} {
		var b bytes.Buffer
		require.NoError(t, andon.PrometheusRules(&b, svc, []andon.Rule{{Name: "Burn" + strings.ToUpper(svc), Severity: andon.Page,
			Condition: andon.BurnRate(stats, andon.SLO{Kind: "http", Objective: 0.999}, andon.PageBurnWindows()...), Summary: "burn"}},
			andon.ExportOptions{Matchers: map[string]string{"job": svc}}))
		assert.Contains(t, b.String(), `slo:sli_error:ratio_rate1h{job=\"`+svc+`\",kind=\"http\",slo=\"http\"}`)
		require.NoError(t, os.WriteFile(filepath.Join(dir, svc+".yml"), b.Bytes(), 0o600))
	}
	runPromtoolTest(t, promtool, dir, promtoolMatchersBurnTest)
}

// promtoolMatchersAlertTest proves that the alerts of two services that
// export a rule of the same name under different ExportOptions.Matchers
// have label sets of their own: Alertmanager, which tells alerts apart by
// their labels, would take them for one.
const promtoolMatchersAlertTest = `rule_files:
  - a.yml
  - b.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'taikit_signals_total{job="a",kind="http",outcome="failed"}'
        values: '0+10x20'
      - series: 'taikit_signals_total{job="b",kind="http",outcome="failed"}'
        values: '0+10x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: Errors
        exp_alerts:
          - exp_labels:
              severity: page
              job: a
            exp_annotations:
              summary: errors
          - exp_labels:
              severity: page
              job: b
            exp_annotations:
              summary: errors
`

func TestPromtoolAlertsUnderMatchers(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	stats := exportStats(t)
	dir := t.TempDir()
	for _, svc := range []string{"a", "b"} {
		var b bytes.Buffer
		require.NoError(t, andon.PrometheusRules(&b, svc, []andon.Rule{{Name: "Errors", Severity: andon.Page,
			Condition: andon.ErrorRate(stats, "http", 5*time.Minute, 0.05), Summary: "errors"}},
			andon.ExportOptions{Matchers: map[string]string{"job": svc}}))
		require.NoError(t, os.WriteFile(filepath.Join(dir, svc+".yml"), b.Bytes(), 0o600))
	}
	runPromtoolTest(t, promtool, dir, promtoolMatchersAlertTest)

	// A label of the rule's own of the same name is the rule's.
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{{Name: "Errors", Severity: andon.Page,
		Condition: andon.ErrorRate(stats, "http", 5*time.Minute, 0.05), Labels: map[string]string{"job": "mine"}}},
		andon.ExportOptions{Matchers: map[string]string{"job": "a", "env": "prod"}}))
	assert.Contains(t, b.String(), "        labels:\n          env: \"prod\"\n          job: \"mine\"\n          severity: \"page\"\n")
}

// TestPrometheusRulesWindowNotWholeMilliseconds: Prometheus durations are
// whole milliseconds, and a Stats may keep a window that is not one; the
// export refuses it, naming the rule and the window, rather than write a
// shorter window than the rule evaluates ("1m" for 1m0.0005s) or a
// duration Prometheus cannot read ("500µs").
func TestPrometheusRulesWindowNotWholeMilliseconds(t *testing.T) {
	odd := time.Minute + 500*time.Microsecond
	stats := newStats(t, odd, 5*time.Minute, time.Hour)
	for _, tt := range []struct {
		name string
		cond andon.Condition
		want string
	}{
		{"error rate", andon.ErrorRate(stats, "payment", odd, 0.05), `andon: rule "X": window 1m0.0005s is not a whole number of milliseconds`},
		{"verdict rate", andon.VerdictRate(stats, "payment", odd, 0.05, tai.Deny), `andon: rule "X": window 1m0.0005s is not a whole number of milliseconds`},
		{"latency", andon.LatencyQuantile(stats, "payment", odd, 0.99, time.Second), `andon: rule "X": window 1m0.0005s is not a whole number of milliseconds`},
		{"burn rate", andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}, andon.BurnWindow{Long: time.Hour, Short: odd, Factor: 2}),
			`andon: rule "X": window 1m0.0005s is not a whole number of milliseconds`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			rule := andon.Rule{Name: "X", Severity: andon.Page, Condition: tt.cond}
			assert.ErrorContains(t, andon.PrometheusRules(&b, "g", []andon.Rule{rule}, andon.ExportOptions{}), tt.want)
			assert.ErrorContains(t, andon.PrometheusRules(&b, "g", []andon.Rule{rule}, andon.ExportOptions{SkipUnsupported: true}), tt.want,
				"the rule has a PromQL form: SkipUnsupported does not leave it out")
		})
	}
	// A rule whose Expr replaces the condition's form reads no window,
	// unless its condition is a burn rate, whose records are written all
	// the same.
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{{Name: "X", Severity: andon.Page,
		Condition: andon.ErrorRate(stats, "payment", odd, 0.05), Expr: "vector(1) > 0"}}, andon.ExportOptions{}))
	assert.NotContains(t, b.String(), "1m]")
}

// TestPromtoolKeepsLabelsNamedLikeYAMLWords proves that a label or
// annotation whose name YAML reads as a word of its own (null, ~, a
// boolean) reaches Prometheus under its name.
func TestPromtoolKeepsLabelsNamedLikeYAMLWords(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	dir := t.TempDir()
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{{Name: "Words", Severity: andon.Page,
		Condition: newSwitch(), Expr: "vector(1)",
		Labels:      map[string]string{"null": "a", "NULL": "b", "Null": "c", "true": "d", "off": "e", "yes": "f"},
		Annotations: map[string]string{"null": "g", "False": "h"}}}, andon.ExportOptions{}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), b.Bytes(), 0o600))
	const test = `rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series: []
    alert_rule_test:
      - eval_time: 1m
        alertname: Words
        exp_alerts:
          - exp_labels: {severity: page, "null": a, "NULL": b, "Null": c, "true": d, "off": e, "yes": f}
            exp_annotations: {"null": g, "False": h, summary: "Words is 1"}
`
	runPromtoolTest(t, promtool, dir, test, b.String())
}

// The default summary of an exported burn rate of several pairs does not
// give the first pair's Factor as the threshold: Prometheus's $value is
// the long window's burn rate of whichever pair holds, 7× when only the
// 6× pair does, which "(threshold 14.4×)" would read as below it. It
// names the threshold of each pair by its long window.
func TestPrometheusRulesBurnRateSummaryNamesEachPair(t *testing.T) {
	stats := newStats(t, andon.BurnWindowsOf(andon.PageBurnWindows())...)
	slo := andon.SLO{Kind: "payment", Objective: 0.999}
	var b bytes.Buffer
	require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{
		{Name: "Burn", Severity: andon.Page, Condition: andon.BurnRate(stats, slo, andon.PageBurnWindows()...)},
		{Name: "BurnOne", Severity: andon.Page, Condition: andon.BurnRate(stats, slo, andon.PageBurnWindows()[1])},
	}, andon.ExportOptions{}))
	assert.Contains(t, b.String(), `summary: "error budget burn rate of payment (99.9%) is {{ $value | humanize }}× (threshold 14.4× over 1h, 6× over 6h)"`)
	assert.Contains(t, b.String(), `summary: "error budget burn rate of payment (99.9%) is {{ $value | humanize }}× (threshold 6×)"`,
		"one pair: its threshold alone")
}

// TestPrometheusRulesMatchKindsAsKaizenpromLabelsThem: kaizenprom labels
// a kind with its first 128 bytes, cut at a character boundary, and with
// U+FFFD for bytes that are not UTF-8; an exported rule matches the kind
// by that label value, or it would match no series at all, and writes
// U+FFFD as \ufffd, which PromQL's lexer takes (it refuses the character
// itself), as promtool checks.
func TestPrometheusRulesMatchKindsAsKaizenpromLabelsThem(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	stats := exportStats(t)
	k127 := strings.Repeat("k", 127)
	for _, c := range []struct {
		kind, matcher, label string // as the YAML file writes them
	}{
		{k127 + "€" + strings.Repeat("x", 100), `kind=\"` + k127 + `\"`, `kind: "` + k127 + `"`},
		{"refund\xff", `kind=\"refund\\ufffd\"`, "kind: \"refund\uFFFD\""},
		{"refund\uFFFD", `kind=\"refund\\ufffd\"`, "kind: \"refund\uFFFD\""},
	} {
		var b bytes.Buffer
		require.NoError(t, andon.PrometheusRules(&b, "g", []andon.Rule{
			{Name: "Errors", Severity: andon.Page, Condition: andon.ErrorRate(stats, c.kind, 5*time.Minute, 0.05)},
			{Name: "Burn", Severity: andon.Page, Condition: andon.BurnRate(stats, andon.SLO{Name: "s", Kind: c.kind, Objective: 0.99}, andon.PageBurnWindows()...)},
		}, andon.ExportOptions{Matchers: map[string]string{"job": "pay\uFFFD"}}))
		out := b.String()
		assert.Equal(t, 14, strings.Count(out, c.matcher), "every selector matches the label value:\n%s", out)
		assert.Equal(t, 4, strings.Count(out, c.label), "the burn rate's recording rules label their series with it")
		assert.NotRegexp(t, `kind=\\"k+€`, out, "no more of the kind than its label value")
		assert.NotContains(t, out, `\\xff`)
		path := filepath.Join(t.TempDir(), "rules.yml")
		require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
		check, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
		require.NoError(t, err, "promtool check rules:\n%s\n%s", check, out)
	}
}
