package andon_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/andon"
)

// TestLabelsMustBeUTF8 checks that a name or label value that is not
// valid UTF-8 is refused, as Prometheus refuses it in a rule file. Kept,
// it would not reach a receiver as it is (JSON turns each bad byte into
// U+FFFD), and two rules could share a fingerprint, the byte 0xff that
// separates labels in it being one of their values' bytes: each rule
// below would mute the other's notifications.
func TestLabelsMustBeUTF8(t *testing.T) {
	cond := newSwitch()
	tests := []struct {
		name string
		opts andon.EvaluatorOptions
		want string
	}{
		{"rule name", andon.EvaluatorOptions{Rules: []andon.Rule{
			{Name: "A\xffseverity\xffpage\xffz\xff1", Severity: andon.Ticket, Condition: cond},
		}}, `andon: rule "A\xffseverity\xffpage\xffz\xff1": Rule.Name "A\xffseverity\xffpage\xffz\xff1" is not valid UTF-8`},
		{"label value", andon.EvaluatorOptions{Rules: []andon.Rule{
			{Name: "A", Severity: andon.Page, Condition: cond, Labels: map[string]string{"z": "1\xffseverity\xffticket"}},
		}}, `andon: rule "A": Rule.Labels: value "1\xffseverity\xffticket" of label "z" is not valid UTF-8`},
		{"cord name", andon.EvaluatorOptions{Cord: andon.CordOptions{Name: "Cord\xc3"}},
			`andon: EvaluatorOptions.Cord.Name "Cord\xc3" is not valid UTF-8`},
		{"cord label value", andon.EvaluatorOptions{Cord: andon.CordOptions{Labels: map[string]string{"team": "ops\xed\xa0\x80"}}},
			`andon: EvaluatorOptions.Cord.Labels: value "ops\xed\xa0\x80" of label "team" is not valid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := andon.NewEvaluator(tt.opts)
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
		})
	}

	// Valid UTF-8 of any script, and a huge value, are labels like any.
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "Überlast 過負荷", Severity: andon.Page, Condition: cond, Labels: map[string]string{"team": "支払い 💳", "big": string(make([]byte, 1<<16))}},
	}})
	a, ok := e.Alert("Überlast 過負荷")
	require.True(t, ok)
	assert.Equal(t, "支払い 💳", a.Labels["team"])
}
