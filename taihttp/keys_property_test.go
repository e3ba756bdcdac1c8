package taihttp_test

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/taihttp"
)

// remoteIPModel is RemoteIP as its documentation says it, built on
// net.SplitHostPort and net/netip: the host SplitHostPort returns, or
// RemoteAddr whole where it fails, or the address of an IPv6 address in
// brackets without a port; an IPv4-mapped host without a zone is its IPv4
// address.
func remoteIPModel(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
		if n := len(addr); n > 2 && addr[0] == '[' && addr[n-1] == ']' {
			// netip takes any byte in a zone; a bracket in one is not an
			// address's.
			inner := addr[1 : n-1]
			if a, err := netip.ParseAddr(inner); err == nil && a.Is6() && !strings.ContainsAny(inner, "[]") {
				host = inner
			}
		}
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4In6() && a.Zone() == "" {
		return a.Unmap().String()
	}
	return host
}

// remoteNetworkModel is RemoteNetwork as documented: RemoteIP's key, or
// for an IPv6 address its /64, zone kept.
func remoteNetworkModel(addr string) string {
	ip := remoteIPModel(addr)
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() {
		return ip
	}
	p := netip.PrefixFrom(a.WithZone(""), 64).Masked()
	if a.Zone() == "" {
		return p.String()
	}
	return p.Addr().WithZone(a.Zone()).String() + "/64"
}

// drawHost draws the host part of a RemoteAddr: an IPv4 or IPv6 address
// in any of its spellings (mapped, zoned, upper case, uncompressed), a
// name, or bytes of an address's alphabet.
func drawHost(t *rapid.T) string {
	switch rapid.IntRange(0, 5).Draw(t, "kind") {
	case 0:
		b := rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "v4")
		return netip.AddrFrom4([4]byte(b)).String()
	case 1, 2:
		b := rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "v6")
		if rapid.Bool().Draw(t, "mapped") {
			copy(b, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
		}
		a := netip.AddrFrom16([16]byte(b))
		if rapid.Bool().Draw(t, "zoned") {
			a = a.WithZone(rapid.SampledFrom([]string{"eth0", "1", "en0"}).Draw(t, "zone"))
		}
		s := a.String()
		switch rapid.IntRange(0, 2).Draw(t, "spelling") {
		case 1:
			s = strings.ToUpper(s)
		case 2:
			s = a.StringExpanded()
		}
		return s
	case 3:
		return rapid.SampledFrom([]string{"localhost", "example.com", "", "x"}).Draw(t, "name")
	default:
		return rapid.StringMatching(`[0-9a-fA-F:.%\[\]x]{0,12}`).Draw(t, "garbage")
	}
}

// drawRemoteAddr draws a RemoteAddr: a host with or without a port, in
// brackets or not, and now and then something more at its end.
func drawRemoteAddr(t *rapid.T) string {
	host := drawHost(t)
	port := rapid.SampledFrom([]string{"", "80", "0", "65535", "x", "1234"}).Draw(t, "port")
	var addr string
	switch rapid.IntRange(0, 3).Draw(t, "shape") {
	case 0:
		addr = net.JoinHostPort(host, port)
	case 1:
		addr = host
	case 2:
		addr = "[" + host + "]"
	default:
		addr = host + ":" + port
	}
	if rapid.IntRange(0, 9).Draw(t, "tail") == 0 {
		addr += rapid.SampledFrom([]string{"]", ":", "[", "]:1", "%"}).Draw(t, "more")
	}
	return addr
}

func TestRemoteIPModelProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		addr := drawRemoteAddr(t)
		r := &http.Request{RemoteAddr: addr}
		if got, want := taihttp.RemoteIP(r), remoteIPModel(addr); got != want {
			t.Fatalf("RemoteIP(%q) = %q, want %q", addr, got, want)
		}
		if got, want := taihttp.RemoteNetwork(r), remoteNetworkModel(addr); got != want {
			t.Fatalf("RemoteNetwork(%q) = %q, want %q", addr, got, want)
		}
	})
}

// RemoteIP and RemoteNetwork agree with their models for any RemoteAddr.
func FuzzRemoteKeysModel(f *testing.F) {
	for _, s := range []string{
		"192.0.2.1:1234", "[2001:db8::1]:443", "[fe80::1%eth0]:80", "::ffff:192.0.2.1", "[::ffff:192.0.2.1]",
		"[:]", "[x:y]", "[::1]:80]", "2001:db8::1", "localhost", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		r := &http.Request{RemoteAddr: addr}
		if got, want := taihttp.RemoteIP(r), remoteIPModel(addr); got != want {
			t.Fatalf("RemoteIP(%q) = %q, want %q", addr, got, want)
		}
		if got, want := taihttp.RemoteNetwork(r), remoteNetworkModel(addr); got != want {
			t.Fatalf("RemoteNetwork(%q) = %q, want %q", addr, got, want)
		}
	})
}
