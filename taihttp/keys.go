package taihttp

import (
	"net"
	"net/http"
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
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Header returns the KeyFunc of a request header's value, such as an API
// key's header; requests without it share the key "".
func Header(name string) KeyFunc {
	return func(r *http.Request) string { return r.Header.Get(name) }
}
