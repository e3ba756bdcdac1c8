package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommandWithAnEmptyChunkedBodyAndNoContentType: a command whose
// body is sent chunked and empty, with no Content-Type, has no reason,
// as one with Content-Length: 0 and no Content-Type has; it was refused
// 415 "Content-Type must be application/json". A chunked body that is
// not empty still needs its Content-Type.
func TestCommandWithAnEmptyChunkedBodyAndNoContentType(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	// Sent by hand: net/http sends an empty body of unknown length with
	// Content-Length: 0.
	send := func(action, chunks string) (int, string) {
		t.Helper()
		u, err := url.Parse(ts.URL)
		require.NoError(t, err)
		conn, err := net.Dial("tcp", u.Host)
		require.NoError(t, err)
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "POST /deploy/%s/%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%s0\r\n\r\n", id, action, u.Host, admin, chunks)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	code, body := send("abort", "2\r\n{}\r\n")
	assert.Equal(t, http.StatusUnsupportedMediaType, code, "a body with no Content-Type: %s", body)
	code, body = send("abort", "")
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	assert.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)
}
