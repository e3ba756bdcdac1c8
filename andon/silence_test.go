package andon_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/internal/servers"
)

// matcherQuoteTests are matchers whose value is quoted or escaped, with
// the value Alertmanager reads, or the error it gives ("" for none).
var matcherQuoteTests = []struct {
	in, value, err string
}{
	{in: `alertname=Foo`, value: "Foo"},
	{in: `alertname="Foo"`, value: "Foo"},
	{in: ` team = " pay ments " `, value: " pay ments "},
	{in: `a=`, value: ""},
	{in: `a=""`, value: ""},
	{in: `a="\""`, value: `"`},
	{in: `a="x\.y"`, value: `x\.y`},
	{in: `a="x\ny"`, value: "x\ny"},
	{in: `a="foo\\"`, value: `foo\`},
	{in: `a=foo\`, value: `foo\`},
	{in: `a=b\"c`, value: `b"c`},
	{in: `a=x\\y`, value: `x\y`},
	{in: `a=x\ny`, value: "x\ny"},
	{in: `alertname="Foo`, err: "opening quote and no closing one"},
	{in: `a="`, err: "opening quote and no closing one"},
	{in: `a="foo\"`, err: "opening quote and no closing one"},
	{in: `a=Foo"`, err: "quote that is not escaped"},
	{in: `a=b"c`, err: "quote that is not escaped"},
	{in: `a="b"c"`, err: "quote that is not escaped"},
	{in: `a="b" "c"`, err: "quote that is not escaped"},
}

func TestParseMatcherQuotes(t *testing.T) {
	for _, tt := range matcherQuoteTests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := andon.ParseMatcher(tt.in)
			if tt.err != "" {
				require.Error(t, err, "parsed as %+v", m)
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.value, m.Value)
			back, err := andon.ParseMatcher(m.String())
			require.NoError(t, err, "reading back %s", m)
			assert.Equal(t, m.Value, back.Value, "read back from %s", m)
		})
	}
	_, err := andon.ParseMatcher("a=\"\xff\"")
	assert.ErrorContains(t, err, "not valid UTF-8")
}

// TestParseMatcherAgreesWithAmtool checks with Alertmanager's amtool that
// it takes and refuses the same matchers as ParseMatcher, in an
// inhibition rule.
func TestParseMatcherAgreesWithAmtool(t *testing.T) {
	amtool := servers.Binary(t, "prometheus-alertmanager", "amtool")
	dir := t.TempDir()
	for _, tt := range matcherQuoteTests {
		t.Run(tt.in, func(t *testing.T) {
			in, err := json.Marshal(tt.in) // a JSON string is a YAML one
			require.NoError(t, err)
			config := "route:\n  receiver: r\nreceivers:\n  - name: r\ninhibit_rules:\n" +
				"  - source_matchers: [" + string(in) + "]\n    target_matchers: [severity=info]\n"
			path := filepath.Join(dir, "alertmanager.yml")
			require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
			out, amErr := exec.Command(amtool, "check-config", path).CombinedOutput()
			_, err = andon.ParseMatcher(tt.in)
			assert.Equal(t, amErr == nil, err == nil, "amtool check-config: %v\n%s\nParseMatcher: %v", amErr, out, err)
		})
	}
}

// A silence whose every matcher matches an empty value is refused, as
// Alertmanager refuses it: {team!="payments"} alone would mute every
// alert without a team, the cord's among them. One matcher that needs a
// value is enough.
func TestSilenceMatchingTheEmptyValueIsRefused(t *testing.T) {
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	for _, ms := range [][]andon.Matcher{
		{{Name: "team", Type: andon.MatchNotEqual, Value: "payments"}},
		{{Name: "team", Type: andon.MatchEqual, Value: ""}},
		{{Name: "team", Type: andon.MatchRegexp, Value: ".*"}},
		{{Name: "team", Type: andon.MatchNotRegexp, Value: "pay.*"}, {Name: "env", Type: andon.MatchRegexp, Value: "prod|"}},
	} {
		_, err := e.Silence(andon.Silence{Matchers: ms, Duration: time.Hour})
		require.Error(t, err, "%v", ms)
		assert.Contains(t, err.Error(), "andon: Silence.Matchers all match an empty value")
	}
	assert.Empty(t, e.Silences())

	_, err = e.Silence(andon.Silence{Duration: time.Hour, Matchers: []andon.Matcher{
		{Name: "team", Type: andon.MatchNotEqual, Value: "payments"}, {Name: "alertname", Value: "HighErrorRate"}}})
	require.NoError(t, err)
	_, err = e.Silence(andon.Silence{Duration: time.Hour, Matchers: []andon.Matcher{{Name: "team", Type: andon.MatchRegexp, Value: ".+"}}})
	require.NoError(t, err)
}

// A silence mutes from StartsAt up to, not at, EndsAt; overlapping
// silences mute while any is in force; one added while the alert fires
// mutes what the receiver has not heard yet, and a resolution of what it
// heard goes out.
func TestSilenceEdges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		rec := &recorder{}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
			Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: cond, Labels: map[string]string{"team": "payments"}}}})
		ctx := context.Background()
		step := func(active bool) bool {
			t.Helper()
			cond.Set(active)
			e.Evaluate(ctx)
			require.NoError(t, e.Flush(ctx))
			a, _ := e.Alert("A")
			return a.Silenced
		}
		start := time.Now()
		// Two overlapping silences, one from later on.
		_, err := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "team", Value: "payments"}},
			StartsAt: start.Add(time.Minute), EndsAt: start.Add(3 * time.Minute)})
		require.NoError(t, err)
		_, err = e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Type: andon.MatchRegexp, Value: "A|B"}},
			EndsAt: start.Add(2 * time.Minute)})
		require.NoError(t, err)
		assert.True(t, step(true), "the second silence is in force now")
		time.Sleep(2 * time.Minute) // the second's end: the first holds
		assert.True(t, step(true))
		assert.Len(t, e.Silences(), 1, "a silence is over at its EndsAt")
		time.Sleep(time.Minute - time.Nanosecond)
		assert.True(t, step(true), "a nanosecond before its end")
		assert.Empty(t, rec.events())
		time.Sleep(time.Nanosecond)
		assert.False(t, step(true), "over at its EndsAt")
		assert.Empty(t, e.Silences())
		assert.Equal(t, []string{"A firing"}, rec.events(), "the alert that still fires is sent when the silences end")

		// Added while the alert fires and was sent: the receiver hears of
		// the resolution, not of the alert firing again.
		_, err = e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "team", Value: "payments"}}, Duration: time.Hour})
		require.NoError(t, err)
		assert.True(t, step(true))
		assert.True(t, step(false))
		assert.True(t, step(true))
		assert.Equal(t, []string{"A firing", "A resolved"}, rec.events())
	})
}
