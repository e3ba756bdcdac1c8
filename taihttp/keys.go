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
// whole where SplitHostPort fails (no port, a malformed address); an
// IPv4-mapped IPv6 host, [::ffff:192.0.2.1]:443, gives the IPv4 address,
// 192.0.2.1, the key of the same client seen through an IPv4 socket.
func RemoteIP(r *http.Request) string {
	a := r.RemoteAddr
	i := strings.LastIndexByte(a, ':')
	if i < 0 || hasBracket(a[i+1:]) {
		return a
	}
	host := a[:i]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
		if hasBracket(host) {
			return a
		}
		return unmap(host)
	}
	if hasBracket(host) || strings.IndexByte(host, ':') >= 0 {
		return a // an IPv6 address without a port, or a malformed one
	}
	return host
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
// key's header; requests without it share the key "".
func Header(name string) KeyFunc {
	return func(r *http.Request) string { return r.Header.Get(name) }
}
