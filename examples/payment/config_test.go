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
		{[]string{"-store-capacity", "0"}, "-store-capacity 0 is outside [1, 100000000]"},
		{[]string{"-store-capacity", "3000000000"}, "-store-capacity 3000000000 is outside [1, 100000000]"},
		{[]string{"-confirm-wip", "0"}, "-confirm-wip 0 is outside [1, 10000]"},
		{[]string{"-log-level", "loud"}, `-log-level "loud" must be debug, info, warn or error`},
	} {
		_, err := parseConfig(append(tc.args, "-data-dir", t.TempDir()), noEnv)
		require.Error(t, err, "%v", tc.args)
		assert.Contains(t, err.Error(), tc.want)
	}
	c, err := parseConfig([]string{"-store-capacity", "100000000", "-data-dir", t.TempDir()}, noEnv)
	require.NoError(t, err)
	assert.Equal(t, 100_000_000, c.StoreCapacity)
}
