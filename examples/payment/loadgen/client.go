package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// requestTimeout bounds one request, from the first byte written to the
// last byte read.
const requestTimeout = 10 * time.Second

// target is where the payments go.
type target struct {
	addr string // host:port to dial
	host string // the Host header
	tls  bool
}

// parseTarget reads the service's base URL: http or https, no path.
func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("%q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return target{}, fmt.Errorf("%q: the scheme must be http or https", raw)
	}
	if u.Host == "" {
		return target{}, fmt.Errorf("%q has no host", raw)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return target{}, fmt.Errorf("%q: give the base URL, without a path or query", raw)
	}
	t := target{addr: u.Host, host: u.Host, tls: u.Scheme == "https"}
	if u.Port() == "" {
		port := "80"
		if t.tls {
			port = "443"
		}
		t.addr = net.JoinHostPort(u.Hostname(), port)
	}
	return t, nil
}

// appendRequest appends a POST /payment request carrying body.
func appendRequest(b []byte, host string, body []byte, idempotencyKey, token string) []byte {
	b = append(b, "POST /payment HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if idempotencyKey != "" {
		b = append(b, "\r\nIdempotency-Key: "...)
		b = append(b, idempotencyKey...)
	}
	if token != "" {
		b = append(b, "\r\nAuthorization: Bearer "...)
		b = append(b, token...)
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// client is one keep-alive HTTP/1.1 connection, dialled on first use and
// again after an error. It is used by one goroutine; close may be called
// from another to end a request in flight.
type client struct {
	target  target
	timeout time.Duration // 0: requestTimeout
	mu      sync.Mutex    // guards conn, closed and stopDial against close
	conn    net.Conn
	closed  bool
	// stopDial ends the dial in progress, if any: close does not wait
	// for a connection that may take the whole timeout to be set up.
	stopDial context.CancelFunc
	br       *bufio.Reader
	body     []byte
	// When the last answer on conn was read: how long conn has idled.
	answered time.Time
}

// redialAfterIdle is how long a kept connection must have idled for a
// request to look first whether the server closed it meanwhile. A
// connection in use without a pause (a closed loop) is not closed for
// idling, and the look would cost a system call on every request.
const redialAfterIdle = time.Second

// do sends req and returns the response's status code and body; the body
// is valid until the next call.
//
// A kept connection the server closed while it was idle (its idle
// timeout, met by a client at a low -rate) is found so before req is
// written, if it had idled redialAfterIdle or longer, and req goes on a
// new connection, as net/http's client does with a request nothing of
// which was written. A request written on a connection that then fails
// before an answer is an error, and does not go again: the server may
// have had it (and given up on it, as at its write timeout), and a
// payment sent again would be made twice and its failure hidden.
func (c *client) do(req []byte) (int, []byte, error) {
	conn, reused, err := c.connect()
	if err != nil {
		return 0, nil, err
	}
	if reused && time.Since(c.answered) >= redialAfterIdle && (c.br.Buffered() > 0 || closedWhileIdle(conn)) {
		c.drop(conn)
		if conn, _, err = c.connect(); err != nil {
			return 0, nil, err
		}
	}
	if err := c.send(conn, req); err != nil {
		c.drop(conn)
		return 0, nil, err
	}
	code, keep, err := c.readResponse()
	if err != nil {
		c.drop(conn)
		return 0, nil, err
	}
	if !keep {
		c.drop(conn)
	}
	c.answered = time.Now()
	return code, c.body, nil
}

// send writes req on conn, under the request's deadline, and waits for
// the first byte of the answer.
func (c *client) send(conn net.Conn, req []byte) error {
	conn.SetDeadline(time.Now().Add(cmp.Or(c.timeout, requestTimeout)))
	if _, err := conn.Write(req); err != nil {
		return err
	}
	_, err := c.br.Peek(1)
	return err
}

// connect returns the client's connection, dialling one if it has none,
// and whether it had one already. close ends a dial in progress.
func (c *client) connect() (conn net.Conn, reused bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, net.ErrClosed
	}
	if c.conn != nil {
		conn = c.conn
		c.mu.Unlock()
		return conn, true, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.stopDial = cancel
	c.mu.Unlock()
	d := net.Dialer{Timeout: cmp.Or(c.timeout, requestTimeout)}
	if c.target.tls {
		td := tls.Dialer{NetDialer: &d, Config: &tls.Config{ServerName: hostOnly(c.target.host)}}
		conn, err = td.DialContext(ctx, "tcp", c.target.addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", c.target.addr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopDial = nil
	if err != nil {
		return nil, false, err
	}
	if c.closed { // while it dialled
		conn.Close()
		return nil, false, net.ErrClosed
	}
	c.conn = conn
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 4096)
	} else {
		c.br.Reset(conn)
	}
	return conn, false, nil
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// drop closes conn, so the next request dials again.
func (c *client) drop(conn net.Conn) {
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	c.mu.Unlock()
	conn.Close()
}

// close ends the connection and any request in flight on it.
func (c *client) close() {
	c.mu.Lock()
	c.closed = true
	conn, stopDial := c.conn, c.stopDial
	c.conn = nil
	c.mu.Unlock()
	if stopDial != nil {
		stopDial()
	}
	if conn != nil {
		conn.Close()
	}
}

var errMalformed = errors.New("malformed HTTP response")

// readResponse reads one response into c.body and reports its status
// code and whether the connection may carry another request.
func (c *client) readResponse() (code int, keep bool, err error) {
	line, err := c.line()
	if err != nil {
		return 0, false, err
	}
	// HTTP/1.1 200 OK
	proto, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(rest) < 3 {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	code, err = strconv.Atoi(string(rest[:3]))
	if err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	keep = string(proto) == "HTTP/1.1"
	length, chunked := -1, false
	for {
		line, err := c.line()
		if err != nil {
			return 0, false, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("%w: header %q", errMalformed, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		err = c.readChunked()
	case length >= 0:
		err = c.readN(length)
	default: // the body runs to the end of the connection
		c.body, err = appendAll(c.body, c.br)
		keep = false
	}
	return code, keep, err
}

// line reads one header line without its CRLF. The slice is valid until
// the next read.
func (c *client) line() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: header line too long", errMalformed)
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func (c *client) readN(n int) error {
	start := len(c.body)
	c.body = append(c.body, make([]byte, n)...)[:start+n]
	_, err := io.ReadFull(c.br, c.body[start:])
	return err
}

func (c *client) readChunked() error {
	for {
		line, err := c.line()
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 31)
		if err != nil {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 {
			for { // trailers, up to the blank line
				line, err := c.line()
				if err != nil || len(line) == 0 {
					return err
				}
			}
		}
		if err := c.readN(int(n)); err != nil {
			return err
		}
		if line, err := c.line(); err != nil || len(line) != 0 {
			if err == nil {
				err = fmt.Errorf("%w: no CRLF after a chunk", errMalformed)
			}
			return err
		}
	}
}

// appendAll appends what r yields until EOF.
func appendAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
