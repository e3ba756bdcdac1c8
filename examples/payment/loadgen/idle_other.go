//go:build !unix || aix

package main

import "net"

// looksAtIdle is whether closedWhileIdle can tell.
const looksAtIdle = false

// closedWhileIdle reports whether conn, a kept connection with no request
// on it, was closed by the server. Here it cannot look without reading,
// and reports false: a payment on a connection the server closed while
// it idled is a transport error.
func closedWhileIdle(net.Conn) bool { return false }
