package main

import (
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
		{[]string{"-confirm-wip", "0"}, "-confirm-wip 0 is outside [1, 10000]"},
		{[]string{"-log-level", "loud"}, `-log-level "loud" must be debug, info, warn or error`},
		{[]string{"-nats-replicas", "2"}, "-nats-replicas 2 is not 1, 3 or 5"},
		{[]string{"-nats-replicas", "3"}, "-nats-replicas 3 needs a NATS cluster (-nats-url)"},
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
