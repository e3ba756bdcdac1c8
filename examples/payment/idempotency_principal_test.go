package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// runOnDataDir starts the service on cfg's data directory (its embedded
// NATS, so the idempotency keys of earlier runs are there) and returns it
// with the function that stops it: the test's runs follow one another, as
// restarts of one service do.
func runOnDataDir(t *testing.T, cfg Config) (*testService, func()) {
	t.Helper()
	s, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	ts := &testService{Service: s, URL: srv.URL, http: srv, logs: &syncBuffer{}}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	}
	t.Cleanup(stop)
	return ts, stop
}

// bearer is the headers of a payment with key sent with token ("" for
// none).
func bearer(key, token string) []string {
	h := []string{"Idempotency-Key", key}
	if token != "" {
		h = append(h, "Authorization", "Bearer "+token)
	}
	return h
}

// Idempotency keys belong to the API principal, not to its token: a
// client that retries a payment after the token was rotated (the service
// restarted with another one), or after a token was set or dropped, gets
// the first answer and is not charged again. Another principal's key of
// the same name is another payment.
func TestIdempotencyScopeSurvivesTokenChanges(t *testing.T) {
	base := testConfig(t)
	run := func(token, previous, principal string) (*testService, func()) {
		cfg := base
		cfg.APIToken = svc.NewSecret(token)
		cfg.APITokenPrevious = svc.NewSecret(previous)
		cfg.APIPrincipal = principal
		return runOnDataDir(t, cfg)
	}
	ts, stop := run("token-a", "", defaultPrincipal)
	first := ts.pay(t, "cust_rot", 7, nil, bearer("rotated", "token-a")...)
	require.Equal(t, http.StatusOK, first.Code, string(first.Raw))
	stop()

	for _, step := range []struct {
		name, token, previous, send string
	}{
		{"rotated to another token", "token-b", "", "token-b"},
		{"rotating: the new token, the old one still taken", "token-c", "token-b", "token-c"},
		{"rotating: the old token", "token-c", "token-b", "token-b"},
		{"no token", "", "", ""},
		{"a token again", "token-d", "", "token-d"},
	} {
		ts, stop := run(step.token, step.previous, defaultPrincipal)
		again := ts.pay(t, "cust_rot", 7, nil, bearer("rotated", step.send)...)
		assert.Equal(t, string(first.Raw), string(again.Raw), "%s: the first answer", step.name)
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"), step.name)
		assert.EqualValues(t, 0, ts.gateway.Calls(), "%s: charged once", step.name)
		stop()
	}

	// Another principal on the same store: the same key is its own.
	ts, stop = run("token-e", "", "shop-2")
	other := ts.pay(t, "cust_rot", 7, nil, bearer("rotated", "token-e")...)
	require.Equal(t, http.StatusOK, other.Code, string(other.Raw))
	assert.Empty(t, other.Header.Get("Idempotent-Replayed"), "another principal's key is another payment")
	assert.NotEqual(t, first.str("transaction_id"), other.str("transaction_id"))
	assert.EqualValues(t, 1, ts.gateway.Calls())
	stop()
	// ... and rotating its token keeps its keys too.
	ts, _ = run("token-f", "", "shop-2")
	again := ts.pay(t, "cust_rot", 7, nil, bearer("rotated", "token-f")...)
	assert.Equal(t, string(other.Raw), string(again.Raw))
	assert.EqualValues(t, 0, ts.gateway.Calls())
}

// While a token is rotated, the API takes it and the previous one, and
// nothing else.
func TestAPITokenPreviousTakenWhileRotating(t *testing.T) {
	cfg := testConfig(t)
	cfg.APIToken, cfg.APITokenPrevious = svc.NewSecret("token-new"), svc.NewSecret("token-old")
	ts := startService(t, cfg)
	for _, tc := range []struct {
		token string
		want  int
	}{{"token-new", http.StatusOK}, {"token-old", http.StatusOK}, {"token-other", http.StatusUnauthorized}, {"", http.StatusUnauthorized}} {
		var h []string
		if tc.token != "" {
			h = []string{"Authorization", "Bearer " + tc.token}
		}
		r := ts.pay(t, "cust_"+tc.token, 3, nil, h...)
		assert.Equal(t, tc.want, r.Code, "%q: %s", tc.token, r.Raw)
	}
}

func TestAPIPrincipalAndPreviousTokenAreChecked(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "previous.token")
	require.NoError(t, os.WriteFile(file, []byte("token-old\n"), 0o600))
	parse := func(args ...string) (Config, error) {
		return parseConfig(append([]string{"-data-dir", dir, "-instance", "test"}, args...), func(string) string { return "" })
	}
	c, err := parse()
	require.NoError(t, err)
	assert.Equal(t, defaultPrincipal, c.APIPrincipal)
	c, err = parse("-api-token", "token-new", "-api-token-previous-file", file, "-api-principal", "shop-2.eu")
	require.NoError(t, err)
	assert.Equal(t, "token-old", c.APITokenPrevious.Reveal())
	assert.Equal(t, "shop-2.eu", c.APIPrincipal)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-api-token-previous", "token-old"}, "-api-token-previous needs -api-token"},
		{[]string{"-api-token", "token-new", "-api-token-previous", "token-new"}, "-api-token-previous is -api-token"},
		{[]string{"-api-token", "token-new", "-admin-token", "token-old", "-api-token-previous", "token-old"}, "-api-token-previous: the admin token must differ from the API token"},
		{[]string{"-api-token", "token-new", "-api-token-previous", " token-old"}, "-api-token-previous: the API token has leading or trailing white space"},
		{[]string{"-api-token", "token-new", "-api-token-previous", "token-old", "-api-token-previous-file", file}, "-api-token-previous and -api-token-previous-file are both set"},
		{[]string{"-api-principal", ""}, `-api-principal "" must be 1 to 64 letters`},
		{[]string{"-api-principal", "shop 2"}, `-api-principal "shop 2" must be 1 to 64 letters`},
		{[]string{"-api-principal", "shop:2"}, `-api-principal "shop:2" must be 1 to 64 letters`},
	} {
		_, err := parse(tc.args...)
		require.Error(t, err, "%q", tc.args)
		assert.Contains(t, err.Error(), tc.want, "%q", tc.args)
	}
}
