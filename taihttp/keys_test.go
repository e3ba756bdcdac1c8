package taihttp_test

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/taipattern/taikit/taihttp"
)

func TestRemoteIP(t *testing.T) {
	for _, addr := range []string{
		"192.0.2.1:1234", "[2001:db8::1]:443", "[fe80::1%eth0]:80", "localhost:80", "[::1]:0",
		"192.0.2.1", "2001:db8::1", "[::1]", "", ":80", "[]:80", "a:b:c", "[::1]:80]", "x]:80", "[x:80",
	} {
		want := addr
		if host, _, err := net.SplitHostPort(addr); err == nil {
			want = host
		}
		got := taihttp.RemoteIP(&http.Request{RemoteAddr: addr})
		assert.Equal(t, want, got, "%q: as net.SplitHostPort", addr)
	}
}

func FuzzRemoteIP(f *testing.F) {
	for _, s := range []string{"192.0.2.1:1234", "[2001:db8::1]:443", "::1", "[x]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		got := taihttp.RemoteIP(&http.Request{RemoteAddr: addr})
		if host, _, err := net.SplitHostPort(addr); err == nil {
			assert.Equal(t, host, got)
		}
	})
}

func TestHeaderKey(t *testing.T) {
	r := &http.Request{Header: http.Header{}}
	assert.Equal(t, "", taihttp.Header("X-Api-Key")(r))
	r.Header.Set("X-Api-Key", "k1")
	assert.Equal(t, "k1", taihttp.Header("x-api-key")(r))
}
