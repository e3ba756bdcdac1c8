package taihttp

import (
	"net/http"
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
// whole where SplitHostPort fails (no port, a malformed address).
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
		return host
	}
	if hasBracket(host) || strings.IndexByte(host, ':') >= 0 {
		return a // an IPv6 address without a port, or a malformed one
	}
	return host
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
