package svc_test

import (
	"bytes"
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// TestHelpHidesSecrets: -h shows neither token taken from the
// environment, nor the password of a URL; the values are still the
// environment's unless a flag sets them.
func TestHelpHidesSecrets(t *testing.T) {
	env := map[string]string{"API_TOKEN": "api-sekrit-4711", "ADMIN_TOKEN": "admin-sekrit-0815"}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var s svc.Serving
	s.Register(fs, svc.NewEnv(func(k string) string { return env[k] }), 3001, svc.Usage{API: "the API", Admin: "the admin API"})
	var nats, plain svc.URL
	svc.URLVar(fs, &nats, "nats-url", "nats://svc:pw-sekrit-42@nats.example:4222", "NATS")
	svc.URLVar(fs, &plain, "plain-url", "", "nothing")
	var help bytes.Buffer
	fs.SetOutput(&help)
	fs.PrintDefaults()
	for _, secret := range []string{"api-sekrit-4711", "admin-sekrit-0815", "pw-sekrit-42"} {
		assert.NotContains(t, help.String(), secret)
	}
	assert.Contains(t, help.String(), `(default "nats://svc:xxxxx@nats.example:4222")`)
	assert.NotContains(t, help.String(), `-plain-url string`+"\n    \tnothing (default")

	require.NoError(t, fs.Parse([]string{"-admin-token", "flag-admin"}))
	assert.Equal(t, "api-sekrit-4711", s.APIToken.Reveal(), "the environment's, with no flag")
	assert.Equal(t, "flag-admin", s.AdminToken.Reveal(), "the flag's")
	assert.Equal(t, "nats://svc:pw-sekrit-42@nats.example:4222", nats.Reveal())
	assert.Empty(t, plain.Reveal())
}
