package tai

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Verdict is what a policy says of a signal. Verdicts are ordered by
// severity: Allow < Review < Deny. The zero Verdict is not a verdict at all;
// a policy that returns it fails the signal, so a forgotten field can never
// let something through.
type Verdict uint8

// The verdicts.
const (
	// Allow lets the signal go on to the action.
	Allow Verdict = iota + 1
	// Review marks a signal for a closer look. By default the action still
	// runs and the Result says Review; WithHoldOnReview stops it instead.
	Review
	// Deny stops the signal; Process returns a *DeniedError.
	Deny
)

// String returns "allow", "review", "deny", or "none" for the zero Verdict.
func (v Verdict) String() string {
	switch v {
	case 0:
		return "none"
	case Allow:
		return "allow"
	case Review:
		return "review"
	case Deny:
		return "deny"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Valid reports whether v is Allow, Review or Deny.
func (v Verdict) Valid() bool { return v >= Allow && v <= Deny }

// MarshalText encodes the verdict as its String: "allow", "review",
// "deny", or "none" for the zero Verdict. It returns an error for a value
// above Deny, which UnmarshalText could not decode.
func (v Verdict) MarshalText() ([]byte, error) {
	if v > Deny {
		return nil, fmt.Errorf("tai: invalid verdict %d", uint8(v))
	}
	return []byte(v.String()), nil
}

// UnmarshalText decodes "allow", "review", "deny" or "none" (or an empty
// text, also the zero Verdict).
func (v *Verdict) UnmarshalText(b []byte) error {
	switch string(b) {
	case "none", "":
		*v = 0
	case "allow":
		*v = Allow
	case "review":
		*v = Review
	case "deny":
		*v = Deny
	default:
		return fmt.Errorf("tai: unknown verdict %q", b)
	}
	return nil
}

// Decision is a policy's answer about one signal.
type Decision struct {
	// Verdict is Allow, Review or Deny; a policy that leaves it zero fails
	// the signal.
	Verdict Verdict `json:"verdict"`
	Policy  string  `json:"policy,omitempty"` // which policy decided
	Reason  string  `json:"reason,omitempty"` // why, for people and audit trails
	// Score is a risk score in [0, 1] where the policy computes one
	// (Scored does); zero otherwise.
	Score float64 `json:"score"`
	// Contributions lists the rules of a scored policy that added to the
	// score, in rule order. Nil for other policies.
	Contributions []Contribution `json:"contributions,omitempty"`
	// FailedOpen reports that a policy marked with FailOpen (or a rule
	// marked FailOpen) erred and was counted as allowing.
	FailedOpen bool `json:"failed_open,omitempty"`
	// Inputs holds what the policy read to decide, as compact JSON, where
	// the policy records it (a taicel rule set with RecordInputs does):
	// enough to replay the decision later with another rule set. An audit
	// trail writes it with the decision. Nil otherwise.
	Inputs json.RawMessage `json:"inputs,omitempty"`
}

// Contribution is one rule's share of a scored decision.
type Contribution struct {
	Rule   string  `json:"rule"`   // the rule's Name
	Weight float64 `json:"weight"` // the rule's Weight
	Risk   float64 `json:"risk"`   // what the rule reported, in [0, 1]
	Score  float64 `json:"score"`  // Weight × Risk: what it added
	Reason string  `json:"reason,omitempty"`
}
