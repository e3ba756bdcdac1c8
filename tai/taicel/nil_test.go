package taicel_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

func TestNilPointerPayload(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[*Order]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "p", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "payload.Items > 1"}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[*Order]{})
	assert.EqualError(t, err, "taicel: the signal's payload is a nil pointer")
	assert.Zero(t, d.Verdict)
}
