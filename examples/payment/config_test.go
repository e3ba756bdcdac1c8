package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConfigRejectsValuesOutOfRange(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-payments-max-bytes", "1KiB"}, "-payments-max-bytes 1024 is less than 1MiB"},
		{[]string{"-payments-max-bytes", "12 parsecs"}, `invalid value "12 parsecs" for flag -payments-max-bytes`},
		{[]string{"-payments-max-age", "24h"}, "-payments-max-age 24h0m0s is less than 25h"},
		{[]string{"-idempotency", "auto"}, `-idempotency "auto" must be nats or memory`},
		{[]string{"-request-timeout", "10m"}, "-request-timeout 10m0s is outside [1s, 5m]"},
		{[]string{"-alert-labels", "cluster=eu,bad-name=x"}, `-alert-labels "bad-name=x" is not name=value`},
		{[]string{"-alert-labels", "cluster"}, `-alert-labels "cluster" is not name=value`},
		{[]string{"-alert-labels", "team=a,cluster=eu,team=b"}, `-alert-labels names "team" twice`},
		{[]string{"-confirm-wip", "0"}, "-confirm-wip 0 is outside [1, 10000]"},
		{[]string{"-log-level", "loud"}, `-log-level "loud" must be debug, info, warn or error`},
		{[]string{"-nats-replicas", "2"}, "-nats-replicas 2 is not 1, 3 or 5"},
		{[]string{"-nats-replicas", "3"}, "-nats-replicas 3 needs a NATS cluster (-nats-url)"},
		{[]string{"-instance", ""}, `-instance "" must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.'`},
		{[]string{"-instance", "eu/1"}, `-instance "eu/1" must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.'`},
		{[]string{"-instance", "../x"}, `-instance "../x" must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.'`},
		{[]string{"-instance", ".."}, `-instance ".." must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.'`},
		{[]string{"-instance", "eu."}, `-instance "eu." must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.', nor ending with one or holding ".."`},
		{[]string{"-instance", "eu..1"}, `-instance "eu..1" must be 1 to 200 letters`},
		{[]string{"-instance", "a b"}, `-instance "a b" must be 1 to 200 letters, digits, '_', '-' or '.', not beginning with '.'`},
		{[]string{"-instance", strings.Repeat("a", 201)}, `-instance "aaaa`},
		// A limit the per-customer limiter cannot keep is refused here,
		// naming the flag, not when the service is being built.
		{[]string{"-customer-limit", "1e-300"}, "-customer-limit 1e-300: heijunka: limit Burst 1 at Rate"},
		{[]string{"-customer-limit", "1e12"}, "-customer-limit 1e+12: heijunka: limit Rate"},
		{[]string{"-customer-limit", "0"}, "-customer-limit 0 must be a positive number"},
	} {
		_, err := parseConfig(append(tc.args, "-data-dir", t.TempDir()), noEnv)
		require.Error(t, err, "%v", tc.args)
		assert.Contains(t, err.Error(), tc.want)
	}
	c, err := parseConfig([]string{"-payments-max-bytes", "3GiB", "-data-dir", t.TempDir()}, func(k string) string {
		return map[string]string{"IDEMPOTENCY_MAX_BYTES": "64MiB"}[k]
	})
	require.NoError(t, err)
	assert.Equal(t, int64(3<<30), c.PaymentsMaxBytes)
	assert.Equal(t, int64(64<<20), c.IdemMaxBytes, "from the environment")
	assert.Equal(t, "nats", c.Idempotency, "durable by default")
	_, err = parseConfig([]string{"-data-dir", t.TempDir()}, func(k string) string {
		return map[string]string{"PAYMENTS_MAX_BYTES": "lots"}[k]
	})
	assert.ErrorContains(t, err, `PAYMENTS_MAX_BYTES="lots"`)
}

// FRAUD_STOPS_LINE takes what strconv.ParseBool does, and a value it
// cannot read is an error naming it, as every other variable's is, not
// false.
func TestBooleanEnvironmentVariables(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "true": true, "TRUE": true, "t": true, "0": false, "false": false, "FALSE": false} {
		c, err := parseConfig([]string{"-data-dir", t.TempDir()}, func(k string) string {
			return map[string]string{"FRAUD_STOPS_LINE": v}[k]
		})
		require.NoError(t, err, v)
		assert.Equal(t, want, c.FraudStopsLine, "FRAUD_STOPS_LINE=%s", v)
	}
	for _, v := range []string{"yes", "on", "2", "ture"} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir()}, func(k string) string {
			return map[string]string{"FRAUD_STOPS_LINE": v}[k]
		})
		assert.ErrorContains(t, err, `FRAUD_STOPS_LINE="`+v+`" is not a boolean`)
	}
	c, err := parseConfig([]string{"-data-dir", t.TempDir(), "-fraud-stops-line=false"}, func(k string) string {
		return map[string]string{"FRAUD_STOPS_LINE": "1"}[k]
	})
	require.NoError(t, err)
	assert.False(t, c.FraudStopsLine, "the flag over the variable")
}

// A bad value is reported once, plainly: a replica count that is not 1,
// 3 or 5 is not also said to need a cluster, and an empty -data-dir is
// refused before anything tries to create it.
func TestConfigErrorsSayOneThing(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, n := range []string{"0", "2", "-1"} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-nats-replicas", n}, noEnv)
		require.Error(t, err)
		assert.Equal(t, "-nats-replicas "+n+" is not 1, 3 or 5", err.Error())
	}
	_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-nats-replicas", "5", "-nats-url", "nats://127.0.0.1:4222"}, noEnv)
	assert.NoError(t, err)

	_, err = parseConfig([]string{"-data-dir", ""}, noEnv)
	require.Error(t, err)
	assert.Equal(t, "-data-dir is empty: give the directory of the embedded NATS store and the audit trail", err.Error())
	// A size the environment gives that does not parse is not also
	// said to be a size of 0, too small.
	for _, name := range []string{"PAYMENTS_MAX_BYTES", "IDEMPOTENCY_MAX_BYTES", "CONFIRM_MAX_BYTES", "CUSTOMER_STATE_MAX_BYTES"} {
		_, err = parseConfig([]string{"-data-dir", t.TempDir()}, func(k string) string {
			return map[string]string{name: "1XB"}[k]
		})
		require.Error(t, err)
		assert.Equal(t, name+`="1XB": size "1XB" is not a number of bytes (like 512MiB)`, err.Error())
	}
}

// The profiles are served without a token, so -debug-addr takes a
// loopback address only, as -addr does without an API token.
func TestDebugAddrIsLoopbackOnly(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, addr := range []string{"127.0.0.1:6060", "localhost:6060", "[::1]:6060"} {
		c, err := parseConfig([]string{"-data-dir", t.TempDir(), "-debug-addr", addr}, noEnv)
		require.NoError(t, err, addr)
		assert.Equal(t, addr, c.DebugAddr)
	}
	for _, addr := range []string{":6060", "0.0.0.0:6060", "10.1.2.3:6060", "pay.example:6060", "6060"} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-debug-addr", addr, "-api-token", "api-token", "-admin-token", "admin-token"}, noEnv)
		assert.ErrorContains(t, err, "-debug-addr "+addr+" listens beyond loopback", "refused even with tokens: they do not guard it")
	}
	_, err := parseConfig([]string{"-data-dir", t.TempDir()}, func(k string) string {
		return map[string]string{"DEBUG_ADDR": ":6060"}[k]
	})
	assert.ErrorContains(t, err, "-debug-addr :6060 listens beyond loopback")
}

// A blacklist entry no payment could match — a country that is not an
// ISO 3166 alpha-2 code, an ID a request could not carry — is refused, in
// the flag and in the file.
func TestBlacklistEntriesArePaymentValues(t *testing.T) {
	noEnv := func(string) string { return "" }
	for entry, want := range map[string]string{
		"country:ZZZ":          `blacklist entry "country:ZZZ": "ZZZ" is not an ISO 3166 alpha-2 code`,
		"country:K":            `blacklist entry "country:K": "K" is not an ISO 3166 alpha-2 code`,
		"country:K1":           `blacklist entry "country:K1": "K1" is not an ISO 3166 alpha-2 code`,
		"customer:cust 9":      `blacklist entry "customer:cust 9": customer "cust 9" may hold only letters, digits`,
		"merchant:merc..1":     `blacklist entry "merchant:merc..1": merchant "merc..1" may not begin or end with '.'`,
		"customer:" + longID(): `blacklist entry "customer:` + longID() + `": customer is longer than 64 bytes`,
	} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-blacklist", entry}, noEnv)
		assert.ErrorContains(t, err, "-blacklist: "+want, entry)
	}
	file := filepath.Join(t.TempDir(), "blacklist")
	require.NoError(t, os.WriteFile(file, []byte("# comment\ncountry:ru\ncountry:XYZ\n"), 0o600))
	_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-blacklist-file", file}, noEnv)
	assert.ErrorContains(t, err, "-blacklist-file "+file+` line 3: blacklist entry "country:XYZ"`)

	c, err := parseConfig([]string{"-data-dir", t.TempDir(), "-blacklist", "country:kp, customer: cust_9 ,merchant:merc-1.eu"}, noEnv)
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"KP": true}, c.Fraud.Blacklist.Countries)
	assert.Equal(t, map[string]bool{"cust_9": true}, c.Fraud.Blacklist.Customers, "space around a value is not part of it")
	assert.Equal(t, map[string]bool{"merc-1.eu": true}, c.Fraud.Blacklist.Merchants)
}

func longID() string { return strings.Repeat("c", 65) }

// usageText returns what -h prints.
func usageText(t *testing.T) []byte {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stderr := os.Stderr
	os.Stderr = w
	read := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		read <- b
	}()
	_, err = parseConfig([]string{"-h"}, func(string) string { return "" })
	os.Stderr = stderr
	require.NoError(t, w.Close())
	usage := <-read
	require.ErrorIs(t, err, flag.ErrHelp)
	return usage
}

// -h says once how the admin token is sent.
func TestAdminTokenUsageSaysItOnce(t *testing.T) {
	usage := string(usageText(t))
	_, after, ok := strings.Cut(usage, "  -admin-token string\n")
	require.True(t, ok, usage)
	help, _, _ := strings.Cut(after, "\n  -")
	assert.Equal(t, 1, strings.Count(help, "Bearer"), help)
	assert.Contains(t, help, "any user name")
}

// The README's flag table lists every flag -h prints.
func TestREADMEListsEveryFlag(t *testing.T) {
	usage := usageText(t)

	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	listed := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |"); ok && strings.HasPrefix(line, "| `-") {
			for _, m := range regexp.MustCompile("`-([a-z0-9-]+)`").FindAllStringSubmatch(first, -1) {
				listed[m[1]] = true
			}
		}
	}
	flags := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllSubmatch(usage, -1)
	require.NotEmpty(t, flags, "%s", usage)
	for _, m := range flags {
		assert.True(t, listed[string(m[1])], "-%s is not in the README's flag table", m[1])
	}
}

// A Go rules' limit of 0 is refused, naming its flag: FraudConfig reads a
// zero as unset, so the rules would run with the default limit (5
// attempts, 5,000, 900 km/h) where the flag asked for another.
func TestGoRuleLimitsOfZeroAreRefused(t *testing.T) {
	for flagName, want := range map[string]string{
		"-velocity-limit": "-velocity-limit 0 must be at least 1",
		"-max-amount":     "-max-amount 0 must be a positive number",
		"-max-daily":      "-max-daily 0 must be a positive number",
		"-max-speed-kmh":  "-max-speed-kmh 0 must be a positive number",
	} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-fraud-rules", "go", flagName, "0"}, func(string) string { return "" })
		require.Error(t, err, flagName)
		assert.Equal(t, want, err.Error())
	}
	_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-fraud-rules", "go"}, func(k string) string {
		return map[string]string{"VELOCITY_LIMIT": "0"}[k]
	})
	assert.EqualError(t, err, "-velocity-limit 0 must be at least 1", "from the environment")
	_, err = parseConfig([]string{"-data-dir", t.TempDir(), "-fraud-rules", "go", "-velocity-limit", "1", "-max-amount", "0.01",
		"-max-daily", "0.01", "-max-speed-kmh", "1", "-review-threshold", "0"}, func(string) string { return "" })
	assert.NoError(t, err)
}

// With a rule file in force a Go rules' limit flag is refused once, as
// such, whatever its value.
func TestGoRuleLimitOfZeroWithARuleFileSaysOneThing(t *testing.T) {
	_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-velocity-limit", "0"}, func(string) string { return "" })
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "\n")
	assert.Contains(t, err.Error(), "-velocity-limit (VELOCITY_LIMIT) sets a limit of the Go fraud rules")
}

// A label the alert rules set themselves is refused in -alert-labels,
// naming the flag, at once: severity and alertname failed the start later
// with an error about Go fields, and instance was dropped without a word
// from the alerts evaluated in the service but kept in the printed rules.
func TestAlertLabelsTheRulesSetAreRefused(t *testing.T) {
	for _, name := range []string{"severity", "alertname", "instance"} {
		_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-alert-labels", "team=pay," + name + "=x"}, func(string) string { return "" })
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), `-alert-labels names "`+name+`", which`)
	}
	c, err := parseConfig([]string{"-data-dir", t.TempDir(), "-alert-labels", "team=pay,cluster=eu-1"}, func(string) string { return "" })
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"team": "pay", "cluster": "eu-1"}, c.AlertLabels)
}
