package taihttp

import (
	"net/http"
	"net/netip"
	"strings"
)

// Middleware wraps a handler, as func(http.Handler) http.Handler does in
// every Go router: the constructors of this package return one.
type Middleware = func(http.Handler) http.Handler

// A KeyFunc tells what a request is about: the key a per-key limit
// counts it under, the Key of its tai signal. An empty key is a key like
// any other: the requests for which a KeyFunc returns "" share it.
type KeyFunc func(r *http.Request) string

// RemoteIP is the KeyFunc of the client's address: the host of
// r.RemoteAddr, without the port. Behind a proxy that address is the
// proxy's; use a KeyFunc that reads the header your proxy sets (and
// overwrites), never one a client could choose.
//
// It returns the host net.SplitHostPort would return, and RemoteAddr
// whole where SplitHostPort fails (no port, a malformed address), except
// for an IPv6 address in brackets without a port, [2001:db8::1] (as RFC
// 7239's Forwarded header writes it), which is the address, 2001:db8::1;
// an IPv4-mapped IPv6 host, [::ffff:192.0.2.1]:443, or such an address
// without a port, ::ffff:192.0.2.1 (as middleware that copies a proxy's
// header into RemoteAddr leaves it), gives the IPv4 address, 192.0.2.1,
// the key of the same client seen through an IPv4 socket.
func RemoteIP(r *http.Request) string {
	host, _ := remoteHost(r.RemoteAddr)
	return host
}

// remoteHost returns RemoteIP's key for the RemoteAddr a, and whether it
// may be an IPv6 address (it holds a colon); an IPv4 address or a name
// says no without another look at it.
func remoteHost(a string) (host string, colon bool) {
	if host, ok := ipv4Host(a); ok {
		return host, false
	}
	if n := len(a); n > 2 && a[0] == '[' && a[n-1] == ']' && !hasBracket(a[1:n-1]) && strings.IndexByte(a, ':') >= 0 {
		// An IPv6 address in brackets without a port, as RFC 7239's
		// Forwarded header writes one and middleware that copies it
		// into RemoteAddr leaves it: the address, or RemoteNetwork would
		// give each address of a /64 a key of its own. Anything else in
		// brackets ("[:]") is malformed, and whole.
		if ip, err := netip.ParseAddr(a[1 : n-1]); err != nil || !ip.Is6() {
			return a, true
		}
		host = unmap(a[1 : n-1])
		return host, strings.IndexByte(host, ':') >= 0
	}
	i := strings.LastIndexByte(a, ':')
	if i < 0 || hasBracket(a[i+1:]) {
		return a, i >= 0
	}
	host = a[:i]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
		if hasBracket(host) {
			return a, true
		}
		host = unmap(host)
		return host, strings.IndexByte(host, ':') >= 0
	}
	if hasBracket(host) || strings.IndexByte(host, ':') >= 0 {
		// An IPv6 address without a port (as a proxy's header gives
		// it), or a malformed one: whole, but a mapped IPv4 address
		// unmapped, or RemoteNetwork would put every IPv4 client in ::/64.
		if hasBracket(a) {
			return a, true
		}
		host = unmap(a)
		return host, strings.IndexByte(host, ':') >= 0
	}
	return host, false
}

// ipv4Host returns the host of a when a is what the net/http server sets
// for an IPv4 client, digits and dots, a colon and a port in digits
// ("192.0.2.1:1234"), and false for anything else, which remoteHost parses
// in full. It is one pass over a's bytes, the whole cost of the key for
// most requests; SplitHostPort gives the same host for every address it
// accepts.
func ipv4Host(a string) (string, bool) {
	i := 0
	for i < len(a) && (a[i] >= '0' && a[i] <= '9' || a[i] == '.') {
		i++
	}
	if i == 0 || i >= len(a)-1 || a[i] != ':' {
		return "", false
	}
	for j := i + 1; j < len(a); j++ {
		if a[j] < '0' || a[j] > '9' {
			return "", false
		}
	}
	return a[:i], true
}

// RemoteNetwork is the KeyFunc of the client's network: RemoteIP's key
// for an IPv4 client (192.0.2.1), and for an IPv6 client the /64 prefix
// of its address, "2001:db8:1:2::/64". It is the default key of
// RateLimit, Gate and Pipeline.
//
// A limit keyed by IPv6 address counts nothing: a host is usually given a
// /64 of its own and may send from any of its 2^64 addresses, each a fresh
// quota (and, in a bounded store, a new key pushing the keys of other
// clients out). The clients of one /64 share its quota, as the hosts behind
// one IPv4 NAT share theirs. Use RemoteIP to count each address, or a
// KeyFunc of your own for a wider prefix.
//
// A zoned address (fe80::1%eth0) keeps its zone, as the zone names the
// link the client is on: "fe80::%eth0/64". Whatever RemoteIP returns
// that is not an IPv6 address (a name, a malformed RemoteAddr) is the key
// as it is.
func RemoteNetwork(r *http.Request) string {
	host, colon := remoteHost(r.RemoteAddr)
	if !colon {
		return host // IPv4 (mapped ones unmapped) or a name
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is6() {
		return host
	}
	zone := ip.Zone()
	p, err := ip.WithZone("").Prefix(64)
	if err != nil {
		return host
	}
	if zone == "" {
		return p.String()
	}
	return p.Addr().WithZone(zone).String() + "/64"
}

// unmap returns the IPv4 address of an IPv4-mapped IPv6 host
// (::ffff:192.0.2.1), so that a client has one key whichever socket it
// came through; any other host as it is. Only a host that spells ffff is
// parsed: every mapped one does, and most others do not.
func unmap(host string) string {
	if !hasFFFF(host) {
		return host
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4In6() && ip.Zone() == "" {
		return ip.Unmap().String()
	}
	return host
}

// hasFFFF reports whether s holds "ffff" in any case.
func hasFFFF(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i]|0x20 == 'f' {
			if n++; n == 4 {
				return true
			}
		} else {
			n = 0
		}
	}
	return false
}

// hasBracket reports whether s holds '[' or ']'. A loop over the bytes:
// strings.ContainsAny builds a set for each call, which costs more than
// an address is long.
func hasBracket(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '[' || s[i] == ']' {
			return true
		}
	}
	return false
}

// Header returns the KeyFunc of a request header's value, such as an API
// key's header; requests without it share the key "". Header("Host")
// returns r.Host, where net/http keeps the Host of a request it received
// (the field is not in r.Header), so that each host has a key of its own.
func Header(name string) KeyFunc {
	if http.CanonicalHeaderKey(name) == "Host" {
		return func(r *http.Request) string { return r.Host }
	}
	return func(r *http.Request) string { return r.Header.Get(name) }
}
