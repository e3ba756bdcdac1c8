//lint:file-ignore SA1019 the classic dashboard schema (dashboard, not dashboardv2) is the one every Grafana imports and provisions from files; v2 needs Grafana 12's new dashboard API

package check

//go:generate go run ./cmd/dashboards -dir ../grafana/dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Objective is the share of signals the TAI overview dashboard's error
// budget expects to end without failing: 99.9%.
const Objective = 0.999

// Dashboard is one Grafana dashboard of the services, as Grafana stores it.
type Dashboard struct {
	// File is its name under deploy/grafana/dashboards.
	File string
	// Model is the dashboard, built with Grafana's foundation SDK.
	Model dashboard.Dashboard
}

// query is one PromQL expression of a panel, and the legend of its series.
type query struct{ expr, legend string }

// panel is what a dashboard's panel shows: a graph over time, or a stat
// (the latest value).
type panel struct {
	title, description, unit string
	stat                     bool
	// statName shows a stat's series name (its legend) rather than its
	// value: the state a state metric is in.
	statName bool
	queries  []query
}

// row is a titled group of panels.
type row struct {
	title  string
	panels []panel
}

// board is a dashboard before it is built.
type board struct {
	file, uid, title, description string
	tags                          []string
	rows                          []row
}

// The panels' expressions use the two variables Grafana fills in itself:
// $__rate_interval (a window of at least four scrapes) and $__range (the
// dashboard's time range). Every one reads a metric the services export
// (examples/payment and examples/deployment's /metrics); a sum over series
// that exist only once something happened ends in "or vector(0)" (or,
// for a sum by a label, "or on () vector(0)", which adds the zero only
// when there is no series at all), so an idle service shows zero rather
// than "No data".
var boards = []board{
	{
		file: "payment.json", uid: "taikit-payment", title: "taikit / payment",
		description: "The payment service: transactions, fraud rules, latency, the gateway's breaker and the confirmation queue.",
		tags:        []string{"taikit", "payment"},
		rows: []row{
			{"Transactions", []panel{
				{title: "Transactions by status", unit: "reqps",
					description: "Payments answered per second, by status (payment_transaction_total).",
					queries:     []query{{`sum by (status) (rate(payment_transaction_total[$__rate_interval]))`, "{{status}}"}}},
				{title: "Latency quantiles", unit: "s",
					description: "Time from request to answer, whatever the outcome (taikit_signal_duration_seconds, kind=payment).",
					queries: []query{
						{`histogram_quantile(0.5, sum by (le) (rate(taikit_signal_duration_seconds_bucket{kind="payment"}[$__rate_interval])))`, "p50"},
						{`histogram_quantile(0.95, sum by (le) (rate(taikit_signal_duration_seconds_bucket{kind="payment"}[$__rate_interval])))`, "p95"},
						{`histogram_quantile(0.99, sum by (le) (rate(taikit_signal_duration_seconds_bucket{kind="payment"}[$__rate_interval])))`, "p99"},
					}},
			}},
			{"Fraud", []panel{
				{title: "Fraud rule hits by rule", unit: "percentunit",
					description: "Share of the payments the fraud rules scored that each rule added to (payment_fraud_rule_hits_total over the fraud policy's decisions).",
					queries: []query{{`sum by (rule) (rate(payment_fraud_rule_hits_total[$__rate_interval]))
  / on () group_left ()
clamp_min(sum(rate(taikit_decisions_total{kind="payment", policy="fraud"}[$__rate_interval])), 1e-9)`, "{{rule}}"}}},
				{title: "Blocked by fraud", unit: "percentunit", stat: true,
					description: "Share of the scored payments the fraud policy blocked, over the dashboard's range.",
					queries: []query{{`(sum(increase(payment_fraud_detected_total[$__range])) or vector(0))
  /
clamp_min(sum(increase(taikit_decisions_total{kind="payment", policy="fraud"}[$__range])) or vector(0), 1)`, "blocked"}}},
			}},
			{"Gateway and confirmations", []panel{
				{title: "Gateway breaker state", stat: true, statName: true,
					description: "The state each replica's gateway breaker is in (taikit_breaker_state is 1 for the current state).",
					queries:     []query{{`max by (state) (taikit_breaker_state{breaker="gateway"} == 1)`, "{{state}}"}}},
				{title: "Gateway breaker transitions", unit: "short",
					description: "Times the gateway breaker changed state within each window.",
					queries:     []query{{`sum(increase(taikit_breaker_transitions_total{breaker="gateway"}[$__rate_interval])) or vector(0)`, "transitions"}}},
				{title: "Confirmation backlog", unit: "short",
					description: "Confirmations waiting, in progress and dead-lettered (taikit_queue_*, queue=confirmations).",
					queries: []query{
						{`sum(taikit_queue_depth{queue="confirmations"})`, "waiting"},
						{`sum(taikit_queue_in_flight{queue="confirmations"})`, "in progress"},
						{`sum(taikit_queue_dead_letters{queue="confirmations"})`, "dead letters"},
					}},
				{title: "Oldest confirmation waiting", unit: "s",
					description: "Age of the oldest confirmation not yet handled.",
					queries:     []query{{`max(taikit_queue_oldest_age_seconds{queue="confirmations"})`, "oldest"}}},
			}},
		},
	},
	{
		file: "deployment.json", uid: "taikit-deployment", title: "taikit / deployment",
		description: "The deployment service: rollouts running, how they end, their stages and the time a rollback takes.",
		tags:        []string{"taikit", "deployment"},
		rows: []row{
			{"Rollouts", []panel{
				{title: "Active rollouts", unit: "short", stat: true,
					description: "Rollouts running now, across replicas (deployment_active).",
					queries:     []query{{`sum(deployment_active)`, "active"}}},
				{title: "Rollback share", unit: "percentunit", stat: true,
					description: "Share of the rollouts that ended over the dashboard's range that were rolled back.",
					queries: []query{{`(sum(increase(deployment_rollback_total[$__range])) or vector(0))
  /
clamp_min((sum(increase(deployment_success_total[$__range])) or vector(0)) + (sum(increase(deployment_rollback_total[$__range])) or vector(0)), 1)`, "rolled back"}}},
				{title: "Successes and rollbacks", unit: "ops",
					description: "Rollouts that went through every stage, and rollouts sent back to the old version, per second (deployment_success_total, deployment_rollback_total).",
					queries: []query{
						{`sum(rate(deployment_success_total[$__rate_interval])) or vector(0)`, "succeeded"},
						{`sum(rate(deployment_rollback_total[$__rate_interval])) or vector(0)`, "rolled back"},
					}},
				{title: "Deployments by outcome", unit: "short",
					description: "Deployments that ended within each window, by status (deployment_duration_seconds_count).",
					queries:     []query{{`sum by (status) (increase(deployment_duration_seconds_count[$__rate_interval]))`, "{{status}}"}}},
			}},
			{"Stages and recovery", []panel{
				{title: "Stage durations (p95)", unit: "s",
					description: "How long each stage of a rollout took, its 95th percentile (deployment_stage_duration_seconds).",
					queries:     []query{{`histogram_quantile(0.95, sum by (stage, le) (rate(deployment_stage_duration_seconds_bucket[$__rate_interval])))`, "{{stage}}"}}},
				{title: "Mean stage duration", unit: "s",
					description: "Mean time of each stage over the dashboard's range.",
					queries: []query{{`sum by (stage) (increase(deployment_stage_duration_seconds_sum[$__range]))
  /
sum by (stage) (increase(deployment_stage_duration_seconds_count[$__range]))`, "{{stage}}"}}},
				{title: "Mean time to recover (rollback)", unit: "s", stat: true,
					description: "Mean time from the failing health sample to the traffic back on the old version, over the dashboard's range (deployment_rollback_recovery_seconds).",
					queries: []query{{`sum(increase(deployment_rollback_recovery_seconds_sum[$__range]))
  /
clamp_min(sum(increase(deployment_rollback_recovery_seconds_count[$__range])), 1)`, "MTTR"}}},
				{title: "Failed health checks", unit: "ops",
					description: "Health analysis checks that failed, per second, by check (deployment_analysis_checks_total).",
					queries:     []query{{`sum by (check) (rate(deployment_analysis_checks_total{result="fail"}[$__rate_interval])) or on () vector(0)`, "{{check}}"}}},
			}},
		},
	},
	{
		file: "tai.json", uid: "taikit-tai", title: "taikit / TAI overview",
		description: "Every signal pipeline of the services: how signals end, and the error budget of a 99.9% objective.",
		tags:        []string{"taikit"},
		rows: []row{
			{"Signals", []panel{
				{title: "Outcomes by pipeline", unit: "ops",
					description: "Signals that ended per second, by pipeline (kind) and outcome (taikit_signals_total).",
					queries:     []query{{`sum by (kind, outcome) (rate(taikit_signals_total[$__rate_interval]))`, "{{kind}} {{outcome}}"}}},
				{title: "Signals in flight", unit: "short",
					description: "Signals between policy and result now.",
					queries:     []query{{`sum by (kind) (taikit_signals_in_flight) or on () vector(0)`, "{{kind}}"}}},
			}},
			{"Error budget (99.9% of signals not failed)", []panel{
				{title: "Error budget left", unit: "percentunit", stat: true,
					description: "Share of the error budget (0.1% of signals may fail) not spent over the dashboard's range; below 0 it is overspent. Denied and rejected signals are answers, not failures.",
					queries: []query{{fmt.Sprintf(`1 - (
  sum by (kind) (increase(taikit_signals_total{outcome="failed"}[$__range]))
    /
  clamp_min(sum by (kind) (increase(taikit_signals_total[$__range])), 1)
) / %g`, 1-Objective), "{{kind}}"}}},
				{title: "Burn rate", unit: "short",
					description: "How fast the error budget burns: 1 spends it exactly over the objective's period; the 5m and 1h windows of a multiwindow alert.",
					queries: []query{
						{burn("5m"), "{{kind}} 5m"},
						{burn("1h"), "{{kind}} 1h"},
					}},
			}},
		},
	},
}

// burn is the error budget's burn rate over a window.
func burn(window string) string {
	return fmt.Sprintf(`(
  sum by (kind) (increase(taikit_signals_total{outcome="failed"}[%[1]s]))
    /
  clamp_min(sum by (kind) (increase(taikit_signals_total[%[1]s])), 1)
) / %[2]g`, window, 1-Objective)
}

// datasource is the Prometheus the panels query: the dashboard's
// datasource variable, so an imported dashboard works with any.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

// build builds a board with the foundation SDK.
func (b board) build() (dashboard.Dashboard, error) {
	d := dashboard.NewDashboardBuilder(b.title).
		Uid(b.uid).
		Description(b.description).
		Tags(b.tags).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus"))
	// Panels fill each row left to right, a new line when one is full:
	// graphs half the width, stats a quarter.
	var id, y uint32
	for _, r := range b.rows {
		id++
		d.WithRow(dashboard.NewRowBuilder(r.title).Id(id).GridPos(dashboard.GridPos{X: 0, Y: y, W: 24, H: 1}))
		y++
		var x, lineHeight uint32
		for _, p := range r.panels {
			id++
			w, h := uint32(12), uint32(8)
			if p.stat {
				w, h = 6, 8
			}
			if x+w > 24 {
				x, y = 0, y+lineHeight
			}
			pos := dashboard.GridPos{X: x, Y: y, W: w, H: h}
			x, lineHeight = x+w, max(lineHeight, h)
			var targets []cog.Builder[variants.Dataquery]
			for i, q := range p.queries {
				t := prometheus.NewDataqueryBuilder().
					RefId(string(rune('A' + i))).
					Datasource(datasource()).
					Expr(q.expr).
					LegendFormat(q.legend)
				if p.stat {
					t.Instant()
				}
				targets = append(targets, t)
			}
			if p.stat {
				sb := stat.NewPanelBuilder().Id(id).Title(p.title).Description(p.description).
					Datasource(datasource()).Targets(targets).GridPos(pos).
					ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
				if p.statName {
					sb.TextMode(common.BigValueTextModeName).GraphMode(common.BigValueGraphModeNone)
				}
				if p.unit != "" {
					sb.Unit(p.unit)
				}
				d.WithPanel(sb)
				continue
			}
			tb := timeseries.NewPanelBuilder().Id(id).Title(p.title).Description(p.description).
				Datasource(datasource()).Targets(targets).GridPos(pos).
				Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).
					DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom)).
				Tooltip(common.NewVizTooltipOptionsBuilder().
					Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
			if p.unit != "" {
				tb.Unit(p.unit)
			}
			d.WithPanel(tb)
		}
		y += lineHeight
	}
	return d.Build()
}

// Dashboards builds the services' dashboards: payment.json,
// deployment.json and tai.json (the signal pipelines of both and their
// error budget).
func Dashboards() ([]Dashboard, error) {
	out := make([]Dashboard, 0, len(boards))
	for _, b := range boards {
		m, err := b.build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", b.file, err)
		}
		out = append(out, Dashboard{File: b.file, Model: m})
	}
	return out, nil
}

// Marshal returns the dashboard as the JSON file Grafana imports or
// provisions: indented, ending in a newline.
func (d Dashboard) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(d.Model, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", d.File, err)
	}
	return append(b, '\n'), nil
}

// WriteDashboards writes every dashboard of Dashboards into dir, which
// must exist.
func WriteDashboards(dir string) error {
	ds, err := Dashboards()
	if err != nil {
		return err
	}
	for _, d := range ds {
		b, err := d.Marshal()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, d.File), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// PanelQuery is one PromQL expression of a dashboard's panel.
type PanelQuery struct {
	// Panel is the panel's title.
	Panel string
	// RefID names the query within the panel (A, B, ...).
	RefID string
	// Expr is the PromQL expression, with Grafana's variables
	// ($__rate_interval, $__range) as the dashboard holds them.
	Expr string
}

// DashboardQueries returns every PromQL expression of the panels of a
// dashboard's JSON, rows' nested panels included. A panel of the
// Prometheus datasource that holds a query without an expression is an
// error, as is JSON that is no dashboard.
func DashboardQueries(dashboardJSON []byte) ([]PanelQuery, error) {
	type panelJSON struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Title  *string           `json:"title"`
		Panels []json.RawMessage `json:"panels"`
	}
	dec := json.NewDecoder(bytes.NewReader(dashboardJSON))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("not a dashboard: %w", err)
	}
	if d.Title == nil {
		return nil, errors.New("not a dashboard: no title")
	}
	var out []PanelQuery
	var walk func(raw []json.RawMessage) error
	walk = func(raw []json.RawMessage) error {
		for _, r := range raw {
			var p panelJSON
			if err := json.Unmarshal(r, &p); err != nil {
				return fmt.Errorf("dashboard %q: a panel: %w", *d.Title, err)
			}
			for _, t := range p.Targets {
				if t.Expr == "" {
					return fmt.Errorf("dashboard %q: panel %q: query %q has no expression", *d.Title, p.Title, t.RefID)
				}
				out = append(out, PanelQuery{Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	return out, nil
}
