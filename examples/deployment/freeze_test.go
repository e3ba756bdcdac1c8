package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFreezeUntilTheEnd: windows that overlap or meet are one freeze, and
// a refusal says when it ends, not when the first of them does; with the
// rule files and with the Go rules.
func TestFreezeUntilTheEnd(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	windows := strings.Join([]string{
		at(-time.Hour) + "/" + at(time.Hour),
		at(30*time.Minute) + "/" + at(2*time.Hour), // overlaps the first
		at(2*time.Hour) + "/" + at(3*time.Hour),    // meets the second
		at(5*time.Hour) + "/" + at(6*time.Hour),    // apart
	}, ",")
	c, err := parseConfig([]string{"-data-dir", t.TempDir(), "-freeze", windows}, func(string) string { return "" })
	require.NoError(t, err)
	assert.Len(t, c.Freeze, 2)
	for _, rules := range []string{"", rulesGo} {
		args := append([]string{"-freeze", windows}, fastArgs...)
		if rules != "" {
			args = append(args, "-rules", rules)
		}
		ts := startService(t, args...)
		r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"})
		require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
		d := r.deployment(t)
		require.NotNil(t, d.ErrorMessage)
		assert.Equal(t, "Change freeze until "+at(3*time.Hour), *d.ErrorMessage, "rules %q", rules)
	}
}

// TestFreezeBeyondTheRules: a window the rule files cannot read (a bound
// before year 1 or after 9999 in UTC) is refused at the start, naming
// it; the service took it, and every deployment then failed its
// validation for "timestamp overflow" and was retried without end. A
// freeze until the last second of 9999 is read by both rules alike.
func TestFreezeBeyondTheRules(t *testing.T) {
	for _, tc := range []struct{ window, want string }{
		{"2020-01-01T00:00:00Z/9999-12-31T23:59:59-01:00", `-freeze: window "2020-01-01T00:00:00Z/9999-12-31T23:59:59-01:00": 9999-12-31T23:59:59-01:00 is not between years 1 and 9999 in UTC`},
		{"0000-01-01T00:00:00Z/2020-01-01T00:00:00Z", `-freeze: window "0000-01-01T00:00:00Z/2020-01-01T00:00:00Z": 0000-01-01T00:00:00Z is not between years 1 and 9999 in UTC`},
		{"0001-01-01T00:30:00+01:00/2020-01-01T00:00:00Z", `0001-01-01T00:30:00+01:00 is not between years 1 and 9999 in UTC`},
	} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-freeze", tc.window}, func(string) string { return "" })
		require.Error(t, err, tc.window)
		assert.ErrorContains(t, err, tc.want)
	}
	window := "2020-01-01T00:00:00Z/9999-12-31T23:59:59Z"
	for _, rules := range []string{"", rulesGo} {
		args := append([]string{"-freeze", window}, fastArgs...)
		if rules != "" {
			args = append(args, "-rules", rules)
		}
		ts := startService(t, args...)
		r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"})
		require.Equal(t, http.StatusUnprocessableEntity, r.Code, "rules %q: %s", rules, r.Body)
		d := r.deployment(t)
		require.NotNil(t, d.ErrorMessage)
		assert.Equal(t, "Change freeze until 9999-12-31T23:59:59Z", *d.ErrorMessage, "rules %q", rules)
	}
}
