package taicel_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// A scored rule whose weighted risk rounds to 0 (a risk too small for a
// float64 once weighted) adds nothing to the score, and is not listed as a
// contribution, as in tai.Scored; its reason, which could fail, is not
// rendered.
func TestContributionThatRoundsToZero(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "tiny", Weight: 0.3, Expr: "payload.Total", Reason: "{{1 / payload.Items}}"},
		{Name: "on", Weight: 0.2, Expr: "true"},
	}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Total: 5e-324}})
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict)
	require.Len(t, d.Contributions, 1)
	assert.Equal(t, "on", d.Contributions[0].Rule)
	assert.Equal(t, "on", d.Reason)
}

// Of several invalid variables, NewEnv names the same one each time, the
// first in name order, as Compile does of several invalid sets; before,
// it named whichever the map gave first.
func TestNewEnvNamesTheSameInvalidVariableEachTime(t *testing.T) {
	lookup := func(context.Context, tai.Signal[Order]) (map[string]any, error) { return nil, nil }
	vars := map[string]*cel.Type{"a-b": cel.IntType, "b-c": cel.IntType, "c": nil, "d": nil, "in": cel.IntType, "payload": cel.IntType}
	for range 50 {
		_, err := taicel.NewEnv(taicel.Options[Order]{Vars: vars, Lookup: lookup})
		require.EqualError(t, err, `taicel: Options.Vars: "a-b" is not an identifier`)
	}
}

// A time read from the clock carries its monotonic reading, which a
// reason wrote ("... +0000 UTC m=+0.004903991"): the reason told how long
// the process had run, and differed when the decision was replayed, its
// recorded times having none. A reason writes the time alone.
func TestReasonWritesNoMonotonicClockReading(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Shift]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true", Reason: "{{signal.time}} {{payload.Start}} {{[signal.time]}}"},
	}})
	require.NoError(t, err)
	now := time.Now()
	require.Contains(t, now.String(), " m=", "the clock's time carries a monotonic reading")
	d, err := set.Evaluate(t.Context(), tai.Signal[Shift]{Time: now, Payload: Shift{Start: now}})
	require.NoError(t, err)
	assert.NotContains(t, d.Reason, "m=")
	wall := recordedString(now)
	assert.Equal(t, wall+" "+wall+" ["+wall+"]", d.Reason)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	again, err := set.Replay(tai.Signal[Shift]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d.Reason, again.Reason)
}

// The text report quotes a candidate's name or version (from its rule
// file) that holds a character that is not printable, as it does the
// trail's IDs and reasons: a newline forged a line of the report, and an
// escape sequence reached the terminal.
func TestReportTextQuotesTheCandidatesNameAndVersion(t *testing.T) {
	rep := &taicel.Report{Candidate: "c\nchanged verdicts: 0 of 9", Version: "v\x1b[2K", Policy: "p"}
	var out strings.Builder
	require.NoError(t, rep.WriteText(&out))
	text := out.String()
	assert.NotContains(t, text, "\x1b")
	assert.Len(t, regexp.MustCompile(`(?m)^changed verdicts: `).FindAllString(text, -1), 1, "no line forged")
	assert.Contains(t, text, `candidate "c\nchanged verdicts: 0 of 9" version "v\x1b[2K" against`)
}

// A time within a list, a map or a struct that a reason writes carried
// its monotonic clock reading too ("[2026-... +0000 UTC m=+0.004903991]"),
// as a time alone did: the reason differed when the decision was
// replayed. Wherever a reason finds a time, it writes the time alone.
func TestReasonWritesNoMonotonicClockReadingWithinValues(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Shift]{
		Vars: map[string]*cel.Type{"seen": cel.MapType(cel.StringType, cel.TimestampType), "any": cel.DynType},
		Lookup: func(context.Context, tai.Signal[Shift]) (map[string]any, error) {
			now := time.Now()
			return map[string]any{"seen": map[string]time.Time{"a": now}, "any": []any{now, map[string]any{"b": now}}}, nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true",
			Reason: "{{payload.Stamps}} {{[payload.Start]}} {{ {'k': payload.Start} }} {{payload.Legs}} {{seen}} {{any}} {{payload}}"},
	}})
	require.NoError(t, err)
	now := time.Now()
	require.Contains(t, now.String(), " m=", "the clock's time carries a monotonic reading")
	sig := tai.Signal[Shift]{Time: now, Payload: Shift{Start: now, Stamps: []time.Time{now}, Legs: []Leg{{Left: now}}}}
	d, err := set.Evaluate(t.Context(), sig)
	require.NoError(t, err)
	assert.NotContains(t, d.Reason, "m=")
	wall := recordedString(now)
	assert.Contains(t, d.Reason, "["+wall+"] ["+wall+"] map[k:"+wall+"] [{"+wall+" []}]")

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	again, err := set.Replay(tai.Signal[Shift]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.NotContains(t, again.Reason, "m=")
}

// A time in a zone with a name ("+0100 CET") was written in a reason
// with that name live, and with its offset alone, or the name of the
// machine's own zone for that offset, when the decision was replayed: a
// record keeps a time's offset, not its zone's name. A time whose
// offset has seconds, which a record holds in UTC, was written in its
// zone live. A reason writes a time in the zone a record keeps, and the
// same when the decision is replayed, on any machine.
func TestReasonWritesATimesZoneAsRecorded(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Shift]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true",
			Reason: "{{signal.time}} {{payload.Start}} {{payload.Stamps}} {{ {'k': payload.Start} }}"},
	}})
	require.NoError(t, err)
	for _, c := range []struct {
		zone *time.Location
		want string
	}{
		{time.FixedZone("XST", 3600), "2026-03-01 12:00:00 +0100 +0100"},
		{time.FixedZone("XST", -(5*3600 + 30*60)), "2026-03-01 12:00:00 -0530 -0530"},
		{time.FixedZone("XMT", 3600+30), "2026-03-01 10:59:30 +0000 UTC"},
		{time.FixedZone("XUT", 0), "2026-03-01 12:00:00 +0000 UTC"},
		{time.UTC, "2026-03-01 12:00:00 +0000 UTC"},
	} {
		at := time.Date(2026, 3, 1, 12, 0, 0, 0, c.zone)
		d, err := set.Evaluate(t.Context(), tai.Signal[Shift]{Time: at, Payload: Shift{Start: at, Stamps: []time.Time{at}}})
		require.NoError(t, err)
		want := c.want + " " + c.want + " [" + c.want + "] map[k:" + c.want + "]"
		assert.Equal(t, want, d.Reason, "%v", c.zone)

		in, err := env.DecodeInputs(d.Inputs)
		require.NoError(t, err)
		again, err := set.Replay(tai.Signal[Shift]{Time: in.Time, Payload: in.Payload}, in.Vars)
		require.NoError(t, err)
		assert.Equal(t, want, again.Reason, "%v replayed", c.zone)
	}
}

// recordedString is how a reason writes t: in the zone a record keeps,
// UTC for an offset of 0 or one with seconds and otherwise its offset
// alone, without the monotonic clock reading.
func recordedString(t time.Time) string {
	if _, offset := t.Zone(); offset != 0 && offset%60 == 0 {
		return t.In(time.FixedZone("", offset)).String()
	}
	return t.UTC().String()
}
