package andon

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/taipattern/taikit/internal/typednil"
)

// Rule says what is wrong, how loudly and for how long before anyone is
// told. It follows Prometheus alerting rules: the condition must hold for
// For before the rule fires (Pending until then), and a firing rule keeps
// firing for KeepFiringFor after the condition stops holding.
type Rule struct {
	// Name names the rule and is the "alertname" label. Required, valid
	// UTF-8 and unique within an evaluator; exported rules need it to be
	// a valid Prometheus metric name ("HighFraudRate").
	Name string
	// Severity is Page, Ticket or Info. Required.
	Severity Severity
	// Condition measures and decides. Required; a nil pointer or function
	// (a nil ConditionFunc), or a built-in condition over a nil
	// *kaizen.Stats, *jidoka.Breaker or *jidoka.Line, is refused.
	Condition Condition
	// For is how long the condition must hold before the rule fires. Zero
	// fires at the first evaluation that sees it hold.
	For time.Duration
	// KeepFiringFor keeps a firing rule firing that long after its
	// condition stopped holding, so a flapping signal does not resolve and
	// fire again. Zero resolves at once.
	KeepFiringFor time.Duration
	// MinSamples is the fewest signals the condition's value must rest on.
	// Below it the rule neither fires nor resolves, and its Alert says
	// InsufficientData. Zero means any amount of data will do.
	MinSamples uint64
	// Labels are added to the alert's labels ("team": "payments"). Names
	// must be valid Prometheus label names and values valid UTF-8, as
	// Prometheus and Alertmanager require; "alertname" and "severity"
	// are set by the rule. A label whose value is empty is no label, as
	// in Prometheus and Alertmanager: the alert does not have it, and its
	// Fingerprint is that of the labels that have values.
	Labels map[string]string
	// Summary is the one-line text of the alert, a text/template with the
	// value filled in. Empty means a summary made from the condition
	// ("deny rate of payment over 5m is 3.1% (threshold 2%)").
	//
	// Templates see .Value (float64), .Labels, and the variables $value
	// and $labels, with Prometheus's functions humanize, humanize1024,
	// humanizePercentage, humanizeDuration, humanizeTimestamp, title,
	// toUpper and toLower, so
	// the same text works in an exported Prometheus rule:
	// "fraud rate {{ $value | humanizePercentage }}". They also see
	// .Threshold and .Detail, which Prometheus does not have. The
	// variables $externalLabels and $externalURL, which Prometheus fills
	// from its configuration, are defined but empty in process.
	Summary string
	// Description is a longer text, a template like Summary. Optional.
	Description string
	// RunbookURL links to what to do; it is the "runbook_url" annotation.
	// The Board links it, as it links a panel's row, when it is an http
	// or https URL (the scheme in any case) or a path on the board's own
	// site beginning with a single "/"; it shows no link for any other
	// (javascript:, data:, a relative path, a protocol-relative "//host/x",
	// which would take the page's scheme), and leaves it out of
	// BoardRule.RunbookURL. Notifiers send it as it is.
	RunbookURL string
	// Annotations are further annotations, each a template like Summary.
	Annotations map[string]string
	// Hooks run when this rule fires and resolves, after
	// EvaluatorOptions.Hooks. A nil one, one that holds a nil pointer or
	// function, or StopLine of a nil line, is refused.
	Hooks []Hook
	// Expr is the PromQL of the condition for PrometheusRules, which
	// writes "Expr" as the alert's expr. Required to export a rule whose
	// Condition has no PromQL form of its own (a ConditionFunc); it
	// replaces the built-in form otherwise.
	Expr string
}

var (
	labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	// metricName matches the part of a metric name a program chooses, as
	// kaizenprom takes it: without the colons Prometheus keeps for the
	// names of recording rules.
	metricName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// validate checks the rule's fields; errors name the field.
func (r *Rule) validate() error {
	if r.Name == "" {
		return errors.New("Rule.Name is empty")
	}
	if !utf8.ValidString(r.Name) {
		return fmt.Errorf("Rule.Name %q is not valid UTF-8", r.Name)
	}
	if err := r.Severity.validate("Rule.Severity"); err != nil {
		return err
	}
	if r.Condition == nil {
		return errors.New("Rule.Condition is nil")
	}
	if typednil.Holds(r.Condition) {
		// Measure, and String for the default summary, would panic.
		return fmt.Errorf("Rule.Condition is a nil %T", r.Condition)
	}
	if v, ok := r.Condition.(validator); ok {
		if err := v.validate(); err != nil {
			return fmt.Errorf("Rule.Condition: %w", err)
		}
	}
	if _, ok := r.Condition.(stateCondition); ok && r.MinSamples > 1 {
		return fmt.Errorf("Rule.MinSamples %d is above 1 on a condition on a state, which has one sample; it could never fire", r.MinSamples)
	}
	if r.For < 0 {
		return fmt.Errorf("Rule.For %v is negative", r.For)
	}
	if r.KeepFiringFor < 0 {
		return fmt.Errorf("Rule.KeepFiringFor %v is negative", r.KeepFiringFor)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Labels)) {
		if err := checkLabelName(name); err != nil {
			return fmt.Errorf("Rule.Labels: %w", err)
		}
		if name == "alertname" || name == "severity" {
			return fmt.Errorf("Rule.Labels: label %q is set by the rule; use Name or Severity", name)
		}
		if err := checkLabelValue(name, r.Labels[name]); err != nil {
			return fmt.Errorf("Rule.Labels: %w", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Annotations)) {
		if err := checkLabelName(name); err != nil {
			return fmt.Errorf("Rule.Annotations: %w", err)
		}
		switch name {
		case "summary", "description", "runbook_url":
			return fmt.Errorf("Rule.Annotations: %q is set by the rule's field; use Summary, Description or RunbookURL", name)
		}
	}
	return nil
}

func checkLabelName(name string) error {
	if !labelName.MatchString(name) {
		return fmt.Errorf("name %q is not a valid label name", name)
	}
	if len(name) >= 2 && name[:2] == "__" {
		return fmt.Errorf("name %q is reserved (it starts with __)", name)
	}
	return nil
}

// checkLabelValue reports a label value that is not valid UTF-8, as
// Prometheus and Alertmanager refuse it. Encoded as JSON it would reach a
// receiver with U+FFFD for each bad byte, under another fingerprint than
// the alert's; and in the fingerprint, whose separator 0xff is no byte of
// valid UTF-8, two label sets could share one.
func checkLabelValue(name, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("value %q of label %q is not valid UTF-8", value, name)
	}
	return nil
}

// labels returns the alert's labels: the rule's that have a value, with
// alertname and severity. Prometheus drops a label set to the empty
// value from its alerts, and Alertmanager from those it is sent before
// it fingerprints them; kept, it would give the alert another
// fingerprint than theirs.
func (r *Rule) labels() map[string]string {
	l := make(map[string]string, len(r.Labels)+2)
	for k, v := range r.Labels {
		if v != "" {
			l[k] = v
		}
	}
	l["alertname"] = r.Name
	l["severity"] = string(r.Severity)
	return l
}

// fingerprint hashes a label set, sorted by name, with FNV-1a; two alerts
// with the same labels have the same fingerprint.
func fingerprint(labels map[string]string) string {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte(k))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0xff})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// describe returns the condition's description, or the rule's name.
func (r *Rule) describe() string {
	if s, ok := r.Condition.(fmt.Stringer); ok {
		return s.String()
	}
	return r.Name
}

// defaultSummary is the summary of a rule without one.
func defaultSummary(r *Rule, m Measurement) string {
	if m.Unit == UnitState && m.Detail != "" {
		return m.Detail
	}
	return r.describe() + " is " + m.Unit.Format(m.Value) + " (threshold " + m.Unit.Format(m.Threshold) + ")"
}
