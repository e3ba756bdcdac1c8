package andon

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
)

// AlertState is where a rule stands, with the meanings Prometheus gives
// them.
type AlertState uint8

// The states of a rule. The zero AlertState is Inactive.
const (
	// Inactive: the condition does not hold.
	Inactive AlertState = iota
	// Pending: the condition holds, for less than Rule.For so far.
	Pending
	// Firing: the condition has held for Rule.For, or stopped holding less
	// than Rule.KeepFiringFor ago.
	Firing
	// Resolved: the rule fired and its condition no longer holds. It stays
	// Resolved until the condition holds again.
	Resolved
)

var stateNames = [...]string{"inactive", "pending", "firing", "resolved"}

// String returns "inactive", "pending", "firing" or "resolved".
func (s AlertState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText encodes the state as its String.
func (s AlertState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a state's String.
func (s *AlertState) UnmarshalText(b []byte) error {
	i := slices.Index(stateNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("andon: unknown state %q", b)
	}
	*s = AlertState(i)
	return nil
}

// Alert is the state of one rule at its last evaluation: what the board
// shows, what notifiers send and what hooks receive. It is a copy; its maps
// belong to the receiver.
type Alert struct {
	// Name is the rule's Name, also its "alertname" label.
	Name     string     `json:"name"`
	Severity Severity   `json:"severity"`
	State    AlertState `json:"state"`
	// Labels are the rule's labels with "alertname" and "severity" added.
	Labels map[string]string `json:"labels"`
	// Annotations are the rule's annotations rendered with the last
	// value: "summary", "description", "runbook_url" and any others.
	// A firing alert kept by KeepFiringFor, and a resolved one, have them
	// rendered with the value measured last, below the threshold, as
	// Value is; Prometheus keeps those of the last evaluation at which
	// the condition held.
	Annotations map[string]string `json:"annotations"`
	// Fingerprint identifies the label set; notifiers deduplicate by it.
	Fingerprint string `json:"fingerprint"`

	// Value and Threshold are what the condition measured and compares
	// with, in Unit; Detail says it in words where a number does not.
	// Either may be NaN or an infinity (a quantile past a histogram's
	// last bucket is +Inf, as in Prometheus): in the Alert's JSON form,
	// which has no number for them, they are the strings "NaN", "+Inf"
	// and "-Inf", as Prometheus's HTTP API writes sample values.
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Unit      Unit    `json:"unit"`
	Detail    string  `json:"detail,omitempty"`
	// Samples is the number of signals the value rests on. While it is
	// below MinSamples, InsufficientData is true and the state stays as it
	// was: too little data neither fires nor resolves a rule.
	Samples          uint64 `json:"samples"`
	MinSamples       uint64 `json:"min_samples"`
	InsufficientData bool   `json:"insufficient_data"`
	// Silenced is true while a Silence matches the labels: a firing alert
	// is not sent to notifiers (hooks still run). The resolution of an
	// alert that was sent firing is sent all the same, as the receiver
	// would otherwise hold it firing for good, and a Refresher
	// (Alertmanager) that holds it firing is still re-sent it.
	Silenced bool `json:"silenced"`
	// LastError is the error of the last evaluation of the condition; the
	// state did not change on it. Empty when the evaluation succeeded.
	LastError string `json:"last_error,omitempty"`

	// ActiveAt is when the condition began to hold (Pending and Firing).
	ActiveAt time.Time `json:"active_at,omitzero"`
	// FiredAt is when the rule began firing.
	FiredAt time.Time `json:"fired_at,omitzero"`
	// ResolvedAt is when a Resolved rule stopped firing.
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// KeepFiringSince is when the condition of a Firing rule stopped
	// holding; it keeps firing until KeepFiringFor has passed since then.
	KeepFiringSince time.Time `json:"keep_firing_since,omitzero"`
	// LastEval is the time of the last evaluation; zero before the first.
	LastEval time.Time `json:"last_eval,omitzero"`
	// ValidUntil is how long a receiver may consider a Firing alert active
	// without hearing again: four times the longer of
	// NotifyOptions.ResendInterval and EvaluatorOptions.Interval after
	// the last evaluation that measured the condition (LastEval, unless it
	// failed), as Prometheus sets the endsAt it sends to Alertmanager, or
	// the longest time.Duration after it when that is longer. A failed
	// evaluation leaves it as it was: while a rule's data source is down,
	// its alert is not kept fresh, and Alertmanager lets it expire.
	ValidUntil time.Time `json:"valid_until,omitzero"`
	// GeneratorURL links back to where the alert is shown (the board).
	GeneratorURL string `json:"generator_url,omitempty"`
}

// Since returns when the alert entered its current state: ActiveAt while
// Pending, FiredAt while Firing, ResolvedAt when Resolved, zero when
// Inactive.
func (a Alert) Since() time.Time {
	switch a.State {
	case Pending:
		return a.ActiveAt
	case Firing:
		return a.FiredAt
	case Resolved:
		return a.ResolvedAt
	}
	return time.Time{}
}

// ValueText formats Value in its Unit: "3.1%", "5.2s", "14.4×".
func (a Alert) ValueText() string { return a.Unit.Format(a.Value) }

// ThresholdText formats Threshold in its Unit; it is empty for UnitState.
func (a Alert) ThresholdText() string {
	if a.Unit == UnitState {
		return ""
	}
	return a.Unit.Format(a.Threshold)
}

func (a Alert) clone() Alert {
	a.Labels = maps.Clone(a.Labels)
	a.Annotations = maps.Clone(a.Annotations)
	return a
}

// MarshalJSON encodes the alert with its field tags, with a Value or
// Threshold that is NaN or an infinity as the string "NaN", "+Inf" or
// "-Inf": encoding/json refuses those numbers, and a notifier of one's own
// that encodes alerts would lose them.
func (a Alert) MarshalJSON() ([]byte, error) {
	type plain Alert
	if finiteJSON(a.Value) && finiteJSON(a.Threshold) {
		return json.Marshal(plain(a))
	}
	return json.Marshal(struct {
		plain
		Value     jsonFloat `json:"value"`
		Threshold jsonFloat `json:"threshold"`
	}{plain(a), jsonFloat(a.Value), jsonFloat(a.Threshold)})
}

// UnmarshalJSON decodes what MarshalJSON encodes: a Value or Threshold
// may be a number or one of the strings "NaN", "+Inf" and "-Inf".
func (a *Alert) UnmarshalJSON(b []byte) error {
	type plain Alert
	w := struct {
		*plain
		Value     jsonFloat `json:"value"`
		Threshold jsonFloat `json:"threshold"`
	}{(*plain)(a), jsonFloat(a.Value), jsonFloat(a.Threshold)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	a.Value, a.Threshold = float64(w.Value), float64(w.Threshold)
	return nil
}

// Transition is a change of a rule's state, kept in the evaluator's
// History. In its JSON form, a Value that is NaN or an infinity is the
// string "NaN", "+Inf" or "-Inf", as an Alert's is.
type Transition struct {
	Rule  string     `json:"rule"`
	From  AlertState `json:"from"`
	To    AlertState `json:"to"`
	At    time.Time  `json:"at"`
	Value float64    `json:"value"`
}

// MarshalJSON encodes the transition with its field tags, with a Value
// that is NaN or an infinity as the string "NaN", "+Inf" or "-Inf".
func (t Transition) MarshalJSON() ([]byte, error) {
	type plain Transition
	if finiteJSON(t.Value) {
		return json.Marshal(plain(t))
	}
	return json.Marshal(struct {
		plain
		Value jsonFloat `json:"value"`
	}{plain(t), jsonFloat(t.Value)})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (t *Transition) UnmarshalJSON(b []byte) error {
	type plain Transition
	w := struct {
		*plain
		Value jsonFloat `json:"value"`
	}{(*plain)(t), jsonFloat(t.Value)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	t.Value = float64(w.Value)
	return nil
}

// MarshalJSON encodes the point with its field tags, with a Value that
// is NaN or an infinity as the string "NaN", "+Inf" or "-Inf".
func (p Point) MarshalJSON() ([]byte, error) {
	// Written out here rather than through encoding/json: a board's state
	// holds a point for each recent value of each rule, and reflecting on
	// every one of them was most of the cost of encoding the state.
	t, err := p.Time.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(t)+32)
	b = append(append(append(b, `{"t":`...), t...), `,"v":`...)
	return append(appendJSONFloat(b, p.Value), '}'), nil
}

// appendJSONFloat appends v as encoding/json writes a float64, or for NaN
// and the infinities as jsonFloat does.
func appendJSONFloat(b []byte, v float64) []byte {
	if !finiteJSON(v) {
		return append(strconv.AppendFloat(append(b, '"'), v, 'g', -1, 64), '"')
	}
	// As encoding/json's floatEncoder: the shortest form, with an
	// exponent only for very small and very large magnitudes, and no
	// leading zero in a negative exponent.
	format := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, v, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (p *Point) UnmarshalJSON(b []byte) error {
	type plain Point
	w := struct {
		*plain
		Value jsonFloat `json:"v"`
	}{(*plain)(p), jsonFloat(p.Value)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	p.Value = float64(w.Value)
	return nil
}

// finiteJSON reports whether encoding/json can write v as a number.
func finiteJSON(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// jsonFloat is a float64 whose JSON form is a number, or for NaN and the
// infinities, which JSON has no number for, the string "NaN", "+Inf" or
// "-Inf", as Prometheus's HTTP API writes them.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if finiteJSON(v) {
		return json.Marshal(v)
	}
	return []byte(`"` + strconv.FormatFloat(v, 'g', -1, 64) + `"`), nil
}

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil // as encoding/json leaves a number
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		switch s {
		case "NaN":
			*f = jsonFloat(math.NaN())
		case "+Inf", "Inf":
			*f = jsonFloat(math.Inf(1))
		case "-Inf":
			*f = jsonFloat(math.Inf(-1))
		default:
			return fmt.Errorf("andon: value %q is not a number, NaN, +Inf or -Inf", s)
		}
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = jsonFloat(v)
	return nil
}
