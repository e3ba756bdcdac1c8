package taihttp_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		} else if addr == "[::1]" {
			want = "::1" // an IPv6 address in brackets: the address
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
		"[::ffff:192.0.2.1]":            "192.0.2.1", // no port, in brackets as RFC 7239 writes it
		"[::ffff]:80":                   "::ffff",
		"[::ffff:1:2:3]:80":             "::ffff:1:2:3",
		"[0:0:0:0:0:FfFf:192.0.2.1]:80": "192.0.2.1",
		"[::ffff:192.0.2.1%eth0]:80":    "::ffff:192.0.2.1%eth0", // zoned: not an IPv4 client
		"[64:ff9b::192.0.2.1]:80":       "64:ff9b::192.0.2.1",    // NAT64 is another address
		"::ffff:192.0.2.1":              "192.0.2.1",             // no port, as a proxy's header gives it
		"::ffff:192.0.2.1%eth0":         "::ffff:192.0.2.1%eth0",
	} {
		got := taihttp.RemoteIP(&http.Request{RemoteAddr: addr})
		assert.Equal(t, want, got, "%q", addr)
	}
}

func FuzzRemoteIP(f *testing.F) {
	for _, s := range []string{"192.0.2.1:1234", "[2001:db8::1]:443", "::1", "[x]:1", "[::ffff:1.2.3.4]:5", "[2001:db8::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		got := taihttp.RemoteIP(&http.Request{RemoteAddr: addr})
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && a.Is4In6() && a.Zone() == "" {
				host = a.Unmap().String()
			}
			assert.Equal(t, host, got)
		} else if n := len(addr); n > 2 && addr[0] == '[' && addr[n-1] == ']' {
			// In brackets without a port: the address, when it is an
			// IPv6 one.
			if a, err := netip.ParseAddr(addr[1 : n-1]); err == nil && a.Is6() {
				want := addr[1 : n-1]
				if a.Is4In6() && a.Zone() == "" {
					want = a.Unmap().String()
				}
				assert.Equal(t, want, got, "%q", addr)
			}
		}
	})
}

func TestRemoteNetwork(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1:1234":             "192.0.2.1",
		"[::ffff:192.0.2.1]:1234":    "192.0.2.1", // an IPv4 client: its address
		"[2001:db8:1:2::1]:443":      "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9]:443": "2001:db8:1:2::/64", // the same host's other address
		"[2001:DB8:1:3::1]:443":      "2001:db8:1:3::/64",
		"[::1]:80":                   "::/64",
		"[fe80::1%eth0]:80":          "fe80::%eth0/64", // the zone names the link
		"[fe80::1%eth1]:80":          "fe80::%eth1/64",
		"[::ffff:192.0.2.1%eth0]:80": "::%eth0/64",
		"localhost:80":               "localhost",
		"2001:db8::1":                "2001:db8::/64", // no port: RemoteAddr whole, an address still
		"::ffff:192.0.2.1":           "192.0.2.1",     // no port, an IPv4 client still: not "::/64"
		"::ffff:198.51.100.7":        "198.51.100.7",
		"[2001:db8::1]":              "2001:db8::/64",     // no port, in brackets as RFC 7239 writes it
		"[2001:db8::1]:80]":          "[2001:db8::1]:80]", // RemoteAddr whole, not an address
		"[x]":                        "[x]",
		"[x:y]:80":                   "x:y", // not an address: as RemoteIP
		"":                           "",
	} {
		got := taihttp.RemoteNetwork(&http.Request{RemoteAddr: addr})
		assert.Equal(t, want, got, "%q", addr)
	}
}

func FuzzRemoteNetwork(f *testing.F) {
	for _, s := range []string{"192.0.2.1:1234", "[2001:db8::1]:443", "[fe80::1%eth0]:80", "[x]:1", "[::ffff:1.2.3.4]:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		r := &http.Request{RemoteAddr: addr}
		got, ip := taihttp.RemoteNetwork(r), taihttp.RemoteIP(r)
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is6() {
			assert.Equal(t, ip, got, "not an IPv6 address: RemoteIP's key")
			return
		}
		// Every address of a /64 has the key of the /64, and no other
		// address has it.
		p, err := netip.ParsePrefix(strings.Replace(got, "%"+a.Zone()+"/", "/", 1))
		require.NoError(t, err, "%q gave %q", addr, got)
		assert.Equal(t, 64, p.Bits())
		assert.True(t, p.Contains(a.WithZone("")), "%q gave %q", addr, got)
		assert.Equal(t, p.Masked(), p)
	})
}

func TestHeaderKey(t *testing.T) {
	r := &http.Request{Header: http.Header{}}
	assert.Equal(t, "", taihttp.Header("X-Api-Key")(r))
	r.Header.Set("X-Api-Key", "k1")
	assert.Equal(t, "k1", taihttp.Header("x-api-key")(r))
}

// A server's request has its Host field in r.Host, not in r.Header:
// Header("Host") keys each request by it, as a limit per virtual host
// needs, where it gave every request the key "".
func TestHeaderHost(t *testing.T) {
	for _, name := range []string{"Host", "host"} {
		a := httptest.NewRequest(http.MethodGet, "http://a.example/", nil)
		b := httptest.NewRequest(http.MethodGet, "http://b.example:8080/", nil)
		assert.Equal(t, "a.example", taihttp.Header(name)(a))
		assert.Equal(t, "b.example:8080", taihttp.Header(name)(b))
	}
}

// Only an IPv6 address loses its brackets when there is no port: what
// is not one, in brackets or not, is RemoteAddr whole, as SplitHostPort
// fails it, and RemoteNetwork keys it as it is.
func TestRemoteIPBracketsAroundANonAddress(t *testing.T) {
	for _, addr := range []string{"[:]", "[x:y]", "[1.2.3.4:80]", "[::1::2]", "[:::]"} {
		r := &http.Request{RemoteAddr: addr}
		assert.Equal(t, addr, taihttp.RemoteIP(r), "%q", addr)
		assert.Equal(t, addr, taihttp.RemoteNetwork(r), "%q", addr)
	}
}
