package andon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taipattern/taikit/internal/utf8text"
)

// ExportOptions configures PrometheusRules. The zero value reads the
// metrics of a kaizenprom.Metrics made with default options.
type ExportOptions struct {
	// Namespace and Subsystem are those of kaizenprom.MetricsOptions: the
	// rules read <namespace>_<subsystem>_signals_total and the other
	// families. Empty Namespace means "taikit". Each is letters, digits
	// and underscores, not starting with a digit, as kaizenprom takes
	// them.
	Namespace, Subsystem string
	// Matchers are label matchers added to every selector, such as
	// {"job": "payment"} when several services export the same families;
	// values must be valid UTF-8. Each matches its value as it is, like
	// the breaker and line names of the conditions; a condition's signal
	// kind is matched by the label value kaizenprom.Metrics gives it (its
	// first kaizenprom.MaxLabelValueLen bytes, U+FFFD for bytes that are
	// not UTF-8).
	// The alerts, and the recording rules of a BurnRate, carry them as
	// labels, so that services that export the same rules under different
	// matchers have alerts and series of their own.
	Matchers map[string]string
	// Interval is the group's evaluation interval. Zero leaves it to the
	// Prometheus server's global setting.
	Interval time.Duration
	// SkipUnsupported leaves out the rules that have no PromQL form (a
	// ConditionFunc without Rule.Expr) instead of failing.
	SkipUnsupported bool
}

// PrometheusRules writes rules as a Prometheus rule file with one group
// named group, over the metric families kaizenprom.Metrics exports:
//
//   - OutcomeRate, ErrorRate and VerdictRate become ratios of rates of
//     signals_total{kind, outcome} and decisions_total{kind, verdict};
//   - LatencyQuantile becomes histogram_quantile over
//     signal_duration_seconds_bucket{kind} (summed over outcomes);
//   - BurnRate becomes recording rules slo:sli_error:ratio_rate<window>
//     (labels slo and kind, and the ExportOptions.Matchers), one per
//     window, and a multiwindow alert over them whose value is the long
//     window's burn rate, as sloth and pyrra write them;
//   - BreakerOpen and LineStopped read the gauges of kaizen's
//     JidokaCollector, breaker_state{breaker, state} and
//     line_stopped{line};
//   - MinSamples adds "and on()" a count of the signals over the window;
//   - Rule.Expr, when set, is the alert's expression as is.
//
// Alerts keep For (for), KeepFiringFor (keep_firing_for), labels and
// annotations, and carry the ExportOptions.Matchers as labels too (a
// rule's label of the same name is kept); a rule without a Summary gets
// one that renders the value with Prometheus's humanize functions (that
// of a burn rate of several pairs gives each pair's threshold, as the
// value is that of whichever pair holds). Prometheus gives annotation
// templates only the labels of the expression's result, so the expression
// of a rule whose annotations read $labels (or .Labels) is wrapped in
// label_replace calls that add the rule's labels, alertname and severity,
// which the templates see in process. Prometheus expands label values and
// annotations as templates: Summary, Description and Annotations are
// templates in process too, and the label values and RunbookURL, which are
// not, are written so that they expand to themselves. Prometheus evaluates the same
// conditions with its own semantics: quantiles are interpolated from
// histogram buckets, and a rule whose series disappear resolves instead
// of waiting for samples.
//
// The output is checked with "promtool check rules". Errors name the rule.
func PrometheusRules(w io.Writer, group string, rules []Rule, opts ExportOptions) error {
	if group == "" {
		return fmt.Errorf("andon: PrometheusRules: group name is empty")
	}
	ns := opts.Namespace
	if ns == "" {
		ns = "taikit"
	}
	if !metricName.MatchString(ns) {
		return fmt.Errorf("andon: ExportOptions.Namespace %q is not a valid metric name", opts.Namespace)
	}
	if opts.Subsystem != "" && !metricName.MatchString(opts.Subsystem) {
		return fmt.Errorf("andon: ExportOptions.Subsystem %q is not a valid metric name", opts.Subsystem)
	}
	for _, k := range slices.Sorted(maps.Keys(opts.Matchers)) {
		if err := checkLabelName(k); err != nil {
			return fmt.Errorf("andon: ExportOptions.Matchers: %w", err)
		}
		if err := checkLabelValue(k, opts.Matchers[k]); err != nil {
			return fmt.Errorf("andon: ExportOptions.Matchers: %w", err)
		}
	}
	if opts.Interval < 0 || opts.Interval%time.Millisecond != 0 {
		return fmt.Errorf("andon: ExportOptions.Interval %v is not a whole number of milliseconds ≥ 0", opts.Interval)
	}
	x := exporter{opts: opts, prefix: ns + "_", ns: ns + "_"}
	if opts.Subsystem != "" {
		x.prefix += opts.Subsystem + "_"
	}
	var records []promRule
	recordExprs := map[string]string{} // record name + slo → expr
	var alerts []promRule
	names := map[string]bool{}
	for i := range rules {
		r := &rules[i]
		if err := r.validate(); err != nil {
			return fmt.Errorf("andon: rule %q: %w", r.Name, err)
		}
		if names[r.Name] {
			return fmt.Errorf("andon: rule %q: Rule.Name is used by another rule", r.Name)
		}
		names[r.Name] = true
		if _, err := compileAnnotations(r); err != nil {
			return fmt.Errorf("andon: rule %q: %w", r.Name, err)
		}
		for _, d := range []struct {
			field string
			v     time.Duration
		}{{"For", r.For}, {"KeepFiringFor", r.KeepFiringFor}} {
			if d.v%time.Millisecond != 0 {
				return fmt.Errorf("andon: rule %q: %s %v is not a whole number of milliseconds", r.Name, d.field, d.v)
			}
		}
		// A Stats may keep a window that Prometheus, whose durations are
		// whole milliseconds, cannot read: the rule would read a shorter
		// window than it is evaluated over, or not parse.
		for _, w := range exportedWindows(r) {
			if w%time.Millisecond != 0 {
				return fmt.Errorf("andon: rule %q: window %v is not a whole number of milliseconds, as Prometheus durations are", r.Name, w)
			}
		}
		expr, recs, unit, err := x.expr(r)
		if err != nil {
			if opts.SkipUnsupported {
				continue
			}
			return fmt.Errorf("andon: rule %q: %w", r.Name, err)
		}
		for _, rec := range recs {
			key := rec.record + "\x00" + rec.labels["slo"]
			if prev, ok := recordExprs[key]; ok {
				if prev != rec.expr {
					return fmt.Errorf("andon: rule %q: SLO %q is defined twice with different kinds or errors", r.Name, rec.labels["slo"])
				}
				continue
			}
			recordExprs[key] = rec.expr
			records = append(records, rec)
		}
		ann := map[string]string{}
		maps.Copy(ann, r.Annotations)
		switch {
		case r.Summary != "":
			ann["summary"] = r.Summary
		default:
			ann["summary"] = templateText(r.describe()) + " is " + valueTemplate(unit) + thresholdText(r, unit)
		}
		if r.Description != "" {
			ann["description"] = r.Description
		}
		if r.RunbookURL != "" {
			ann["runbook_url"] = templateText(r.RunbookURL)
		}
		labels := r.labels()
		if readsLabels(r) {
			expr = withLabels(expr, labels)
		}
		delete(labels, "alertname") // Prometheus adds it
		// The matchers tell this service's alerts from another's that
		// exports a rule of the same name: the expressions sum their
		// labels away, and Alertmanager tells alerts apart by labels.
		for k, v := range opts.Matchers {
			if _, ok := labels[k]; !ok {
				labels[k] = v
			}
		}
		for k, v := range labels {
			labels[k] = templateText(v)
		}
		alerts = append(alerts, promRule{alert: r.Name, expr: expr, forDur: r.For, keepFiring: r.KeepFiringFor,
			labels: labels, annotations: ann})
	}

	var b bytes.Buffer
	b.WriteString("groups:\n")
	fmt.Fprintf(&b, "  - name: %s\n", yamlString(group))
	if opts.Interval > 0 {
		fmt.Fprintf(&b, "    interval: %s\n", promDuration(opts.Interval))
	}
	b.WriteString("    rules:\n")
	if len(records)+len(alerts) == 0 {
		b.Truncate(b.Len() - 1)
		b.WriteString(" []\n")
	}
	for _, r := range append(records, alerts...) {
		r.write(&b)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// exportedWindows returns the windows of r's condition that the rule file
// writes: none when Rule.Expr replaces the condition's expression, but for
// a burn rate, whose recording rules are written all the same.
func exportedWindows(r *Rule) []time.Duration {
	if c, ok := r.Condition.(*burnRate); ok {
		ws := make([]time.Duration, 0, 2*len(c.pairs))
		for _, p := range c.pairs {
			ws = append(ws, p.Long, p.Short)
		}
		return ws
	}
	if r.Expr != "" {
		return nil
	}
	switch c := r.Condition.(type) {
	case *outcomeRate:
		return []time.Duration{c.window}
	case *verdictRate:
		return []time.Duration{c.window}
	case *latencyQuantile:
		return []time.Duration{c.window}
	}
	return nil
}

// promRule is one rule of the file.
type promRule struct {
	record, alert      string
	expr               string
	forDur, keepFiring time.Duration
	labels             map[string]string
	annotations        map[string]string
}

func (r promRule) write(b *bytes.Buffer) {
	if r.record != "" {
		fmt.Fprintf(b, "      - record: %s\n", yamlString(r.record))
	} else {
		fmt.Fprintf(b, "      - alert: %s\n", yamlString(r.alert))
	}
	fmt.Fprintf(b, "        expr: %s\n", yamlString(r.expr))
	if r.forDur > 0 {
		fmt.Fprintf(b, "        for: %s\n", promDuration(r.forDur))
	}
	if r.keepFiring > 0 {
		fmt.Fprintf(b, "        keep_firing_for: %s\n", promDuration(r.keepFiring))
	}
	writeMap(b, "labels", r.labels)
	writeMap(b, "annotations", r.annotations)
}

func writeMap(b *bytes.Buffer, name string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(b, "        %s:\n", name)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, "          %s: %s\n", yamlKey(k), yamlString(m[k]))
	}
}

// yamlKey writes a label or annotation name as a YAML key: as it is, or
// quoted where YAML would read it as a word of its own ("null", which
// Prometheus drops with its value, or a boolean such as "on").
func yamlKey(name string) string {
	switch strings.ToLower(name) {
	case "null", "true", "false", "yes", "no", "on", "off", "y", "n":
		return yamlString(name)
	}
	return name
}

// yamlString quotes s as a YAML double-quoted scalar (a JSON string is
// one), keeping <, > and & as they are.
func yamlString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// templateText writes s as a Prometheus template that expands to s.
// Prometheus expands the labels and annotations of alerting rules as
// templates, while the evaluator takes labels, runbook URLs and condition
// descriptions as they are: "{{" in them would not parse, or would expand.
func templateText(s string) string {
	return strings.ReplaceAll(s, "{{", `{{ "{{" }}`)
}

// readsLabels reports whether an annotation template of r reads the
// labels ($labels or .Labels).
func readsLabels(r *Rule) bool {
	texts := append([]string{r.Summary, r.Description}, slices.Collect(maps.Values(r.Annotations))...)
	return slices.ContainsFunc(texts, func(s string) bool {
		return strings.Contains(s, "$labels") || strings.Contains(s, ".Labels")
	})
}

// withLabels wraps expr in label_replace calls that give each of its
// results the labels, with their values as they are. Prometheus gives
// annotation templates only the labels of the expression's result, which
// lacks the rule's labels, alertname and severity that the evaluator's
// templates see; a "$" in a value is doubled, as label_replace expands
// $1 and ${name} in its replacement.
func withLabels(expr string, labels map[string]string) string {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		expr = fmt.Sprintf(`label_replace(%s, %s, %s, "", "")`, expr, promQuote(k), promQuote(strings.ReplaceAll(labels[k], "$", "$$")))
	}
	return expr
}

// exporter turns conditions into PromQL.
type exporter struct {
	opts   ExportOptions
	prefix string // of kaizenprom.Metrics' families: namespace and subsystem
	ns     string // of kaizen's collectors: namespace only
}

// expr returns the alert expression of r, the recording rules it needs and
// the unit of its value.
func (x *exporter) expr(r *Rule) (string, []promRule, Unit, error) {
	unit := UnitNone
	var (
		expr, count string
		recs        []promRule
	)
	switch c := r.Condition.(type) {
	case *outcomeRate:
		unit = UnitRatio
		total := x.rate("signals_total", c.window, kindIs(c.kind))
		expr = fmt.Sprintf("sum(%s) / sum(%s) > %s", x.rate("signals_total", c.window, kindIs(c.kind), labelMatch("outcome", c.outcomes)), total, promFloat(c.threshold))
		count = x.count("signals_total", c.window, kindIs(c.kind))
	case *verdictRate:
		unit = UnitRatio
		expr = fmt.Sprintf("sum(%s) / sum(%s) > %s", x.rate("decisions_total", c.window, kindIs(c.kind), labelMatch("verdict", c.verdicts)),
			x.rate("decisions_total", c.window, kindIs(c.kind)), promFloat(c.threshold))
		count = x.count("decisions_total", c.window, kindIs(c.kind))
	case *latencyQuantile:
		unit = UnitSeconds
		expr = fmt.Sprintf("histogram_quantile(%s, sum by (le) (%s)) > %s", promFloat(c.q),
			x.rate("signal_duration_seconds_bucket", c.window, kindIs(c.kind)), promFloat(c.threshold.Seconds()))
		count = x.count("signal_duration_seconds_count", c.window, kindIs(c.kind))
	case *burnRate:
		unit = UnitFactor
		expr, recs = x.burn(c)
		var longest time.Duration
		for _, p := range c.pairs {
			longest = max(longest, p.Long)
		}
		count = x.count("signals_total", longest, kindIs(c.slo.Kind))
	case *breakerOpen:
		// kaizen.JidokaCollector's gauge: 1 for the breaker's state.
		unit = UnitState
		expr = fmt.Sprintf("max(%s) > 0", x.collected("breaker_state", eq("breaker", c.b.Snapshot().Name), matcher{"state", "=~", "open|forced-open|half-open"}))
	case *lineStopped:
		unit = UnitState
		expr = fmt.Sprintf("max(%s) > 0", x.collected("line_stopped", eq("line", c.line.Name())))
	}
	if r.Expr != "" {
		return r.Expr, recs, unit, nil
	}
	if expr == "" {
		return "", nil, unit, fmt.Errorf("condition %s has no PromQL form; set Rule.Expr", r.describe())
	}
	if r.MinSamples > 0 && count != "" { // a state has one sample
		// on() matches the count, which has no labels, with any labels
		// of the expression: the slo and kind of a burn rate's records.
		expr = fmt.Sprintf("(%s) and on() %s >= %d", expr, count, r.MinSamples)
	}
	return expr, recs, unit, nil
}

// burn returns the multiwindow alert expression of c and its recording
// rules.
func (x *exporter) burn(c *burnRate) (string, []promRule) {
	slo := c.slo.name()
	budget := "(1 - " + promFloat(c.slo.Objective) + ")"
	var recs []promRule
	// The records carry ExportOptions.Matchers as labels, and the alert
	// reads them by all their labels: two services that export the same
	// SLO name and kind under different matchers ({job="payment"},
	// {job="refund"}) write records of their own, rather than the same
	// series twice, and each alert reads its own service's.
	labels := maps.Clone(x.opts.Matchers)
	if labels == nil {
		labels = make(map[string]string, 2)
	}
	labels["slo"], labels["kind"] = slo, kindLabel(c.slo.Kind)
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+promQuote(labels[k]))
	}
	sel := strings.Join(parts, ",")
	// A window used twice makes its recording rule twice; PrometheusRules
	// keeps the first of each record name and SLO.
	record := func(w time.Duration) string {
		name := "slo:sli_error:ratio_rate" + promDuration(w)
		errs := x.rate("signals_total", w, kindIs(c.slo.Kind), labelMatch("outcome", c.slo.errors()))
		recs = append(recs, promRule{record: name,
			expr:   fmt.Sprintf("(sum(%s) or vector(0)) / sum(%s)", errs, x.rate("signals_total", w, kindIs(c.slo.Kind))),
			labels: labels})
		return fmt.Sprintf("%s{%s} / %s", name, sel, budget)
	}
	var alts []string
	for _, p := range c.pairs {
		f := promFloat(p.Factor)
		alts = append(alts, fmt.Sprintf("(%s > %s and %s > %s)", record(p.Long), f, record(p.Short), f))
	}
	return strings.Join(alts, " or "), recs
}

// matcher is one label matcher of a selector: op is "=" or "=~".
type matcher struct{ name, op, value string }

// eq matches the label name with the value as it is: a breaker's name.
func eq(name, value string) matcher { return matcher{name, "=", value} }

// kindIs matches a signal kind by the label value kaizenprom gives it.
func kindIs(kind string) matcher { return eq("kind", kindLabel(kind)) }

// kindLabel is the label value kaizenprom.Metrics gives a signal kind:
// U+FFFD for bytes that are not UTF-8, and no more than its first
// kaizenprom.MaxLabelValueLen bytes, cut at a character boundary.
func kindLabel(kind string) string { return utf8text.Cut(kind, utf8text.LabelValueLen) }

// promQuote writes s as a double-quoted PromQL string. Its escapes are
// Go's, but for U+FFFD, which Go's quoting keeps as it is and PromQL's
// lexer refuses ("invalid UTF-8 rune"): it is written \ufffd.
func promQuote(s string) string {
	return strings.ReplaceAll(strconv.Quote(s), "\uFFFD", `\ufffd`)
}

// rate returns rate(metric{matchers}[window]).
func (x *exporter) rate(metric string, window time.Duration, ms ...matcher) string {
	return fmt.Sprintf("rate(%s[%s])", x.selector(metric, ms...), promDuration(window))
}

// count returns the number of signals over window.
func (x *exporter) count(metric string, window time.Duration, ms ...matcher) string {
	return fmt.Sprintf("sum(increase(%s[%s]))", x.selector(metric, ms...), promDuration(window))
}

// collected is the selector of a family of kaizen's collectors, which
// have a namespace but no subsystem.
func (x *exporter) collected(metric string, ms ...matcher) string {
	return x.ns + strings.TrimPrefix(x.selector(metric, ms...), x.prefix)
}

// selector returns metric{matchers}, with ExportOptions.Matchers, sorted
// by label name; ms replace an option's matcher of the same name.
func (x *exporter) selector(metric string, ms ...matcher) string {
	m := make(map[string]matcher, len(x.opts.Matchers)+len(ms))
	for k, v := range x.opts.Matchers {
		m[k] = eq(k, v)
	}
	for _, mt := range ms {
		m[mt.name] = mt
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+m[k].op+promQuote(m[k].value))
	}
	return x.prefix + metric + "{" + strings.Join(parts, ",") + "}"
}

// labelMatch matches the label name with any of vs (outcomes or
// verdicts): name="failed", or name=~"failed|rejected" for several.
func labelMatch[T fmt.Stringer](name string, vs []T) matcher {
	names := uniqueNames(vs)
	if len(names) == 1 {
		return eq(name, names[0])
	}
	return matcher{name, "=~", strings.Join(names, "|")}
}

// valueTemplate renders $value in unit with Prometheus's functions.
func valueTemplate(u Unit) string {
	switch u {
	case UnitRatio:
		return "{{ $value | humanizePercentage }}"
	case UnitSeconds:
		return "{{ $value | humanizeDuration }}"
	case UnitFactor:
		return "{{ $value | humanize }}×"
	}
	return "{{ $value | humanize }}"
}

// thresholdText is " (threshold 2%)" for the conditions that have one.
// A burn rate of several pairs names each pair's Factor by its long
// window, " (threshold 14.4× over 1h, 6× over 6h)": $value is the burn
// rate of whichever pair holds, which the template cannot tell.
func thresholdText(r *Rule, u Unit) string {
	if c, ok := r.Condition.(*burnRate); ok && len(c.pairs) > 1 {
		parts := make([]string, len(c.pairs))
		for i, p := range c.pairs {
			parts[i] = u.Format(p.Factor) + " over " + promDuration(p.Long)
		}
		return " (threshold " + strings.Join(parts, ", ") + ")"
	}
	var t float64
	switch c := r.Condition.(type) {
	case *outcomeRate:
		t = c.threshold
	case *verdictRate:
		t = c.threshold
	case *latencyQuantile:
		t = c.threshold.Seconds()
	case *burnRate:
		t = c.pairs[0].Factor
	default:
		return ""
	}
	return " (threshold " + u.Format(t) + ")"
}

func promFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// promDuration writes d as Prometheus writes durations: "5m", "1h30m",
// "3d", "250ms".
func promDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	units := []struct {
		d      time.Duration
		suffix string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}}
	for _, u := range units {
		if n := d / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.suffix)
			d -= n * u.d
		}
	}
	if b.Len() == 0 {
		return d.String()
	}
	return b.String()
}
