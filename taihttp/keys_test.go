package taihttp_test

import (
	"net"
	"net/http"
	"net/netip"
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

func TestRemoteIPMapped(t *testing.T) {
	// An IPv4 client seen through an IPv6 socket, in the form
	// netip.AddrPort prints, is the same client as in dotted form: one
	// key, not two.
	for addr, want := range map[string]string{
		"[::ffff:192.0.2.1]:1234":       "192.0.2.1",
		"[::FFFF:192.0.2.1]:1234":       "192.0.2.1",
		"[::ffff:c000:201]:1234":        "192.0.2.1",
		"[::ffff:192.0.2.1]":            "[::ffff:192.0.2.1]", // no port: RemoteAddr whole
		"[::ffff]:80":                   "::ffff",
		"[::ffff:1:2:3]:80":             "::ffff:1:2:3",
		"[0:0:0:0:0:FfFf:192.0.2.1]:80": "192.0.2.1",
		"[::ffff:192.0.2.1%eth0]:80":    "::ffff:192.0.2.1%eth0", // zoned: not an IPv4 client
		"[64:ff9b::192.0.2.1]:80":       "64:ff9b::192.0.2.1",    // NAT64 is another address
	} {
		got := taihttp.RemoteIP(&http.Request{RemoteAddr: addr})
		assert.Equal(t, want, got, "%q", addr)
	}
}

func FuzzRemoteIP(f *testing.F) {
	for _, s := range []string{"192.0.2.1:1234", "[2001:db8::1]:443", "::1", "[x]:1", "[::ffff:1.2.3.4]:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		got := taihttp.RemoteIP(&http.Request{RemoteAddr: addr})
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && a.Is4In6() && a.Zone() == "" {
				host = a.Unmap().String()
			}
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
