package natsjs_test

import (
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// startProxy starts a TCP proxy to the server at rawURL and returns the
// URL to connect to it with. Each chunk the client sends goes to up, if
// not nil, before the server gets it; each the server sends goes to the
// client if down, when not nil, returns true for it, and is dropped
// otherwise. It stops when the test ends.
func startProxy(t *testing.T, rawURL string, up func([]byte), down func([]byte) bool) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Go(func() {
				pass(s, c, func(b []byte) bool {
					if up != nil {
						up(b)
					}
					return true
				})
			})
			wg.Go(func() { pass(c, s, down) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	u.Host = ln.Addr().String()
	return u.String()
}

// pass copies from src to dst the chunks that keep, if not nil, returns
// true for, until either fails.
func pass(dst, src net.Conn, keep func([]byte) bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && (keep == nil || keep(buf[:n])) {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
