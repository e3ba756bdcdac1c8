//go:build unix && !aix

package main

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// looksAtIdle is whether closedWhileIdle can tell.
const looksAtIdle = true

// closedWhileIdle reports whether conn, a kept connection with no request
// on it, has something to read: the server's end of file or reset, or
// bytes it sent unasked (a TLS close_notify before its end of file). Such
// a connection carries no further request. It looks without waiting and
// consumes nothing.
func closedWhileIdle(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	var rerr error
	if err := raw.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return true
	}
	// Nothing to read is EAGAIN; an end of file reads 0 bytes, nil.
	return !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EINTR)
}
