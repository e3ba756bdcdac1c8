package httpapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// Tokens are a service's bearer tokens. API guards the service's own API
// when set; Admin guards what changes how the service runs (the andon cord,
// chaos settings, abort and promote) and is required for it: without an
// admin token those routes answer 403. The two must differ, so that a
// client holding the API token cannot stop the line.
type Tokens struct {
	API   string
	Admin string
}

// Validate reports tokens that must not be used.
func (t Tokens) Validate() error {
	if t.Admin != "" && t.Admin == t.API {
		return errors.New("the admin token must differ from the API token")
	}
	for name, v := range map[string]string{"API": t.API, "admin": t.Admin} {
		if v != "" && strings.TrimSpace(v) != v {
			return fmt.Errorf("the %s token has leading or trailing white space", name)
		}
	}
	return nil
}

// Bearer returns the token of an "Authorization: Bearer <token>" header.
// The scheme is case-insensitive (RFC 9110, 11.1); ok is false for any
// other header.
func Bearer(header string) (token string, ok bool) {
	scheme, token, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	return token, token != ""
}

// Matches reports whether r carries token as a bearer token, in constant
// time.
func Matches(r *http.Request, token string) bool {
	got, ok := Bearer(r.Header.Get("Authorization"))
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// RequireAPI wraps h so that, with an API token set, a request without it
// gets 401. reject, if not nil, is told of each refusal (for a metric).
func (t Tokens) RequireAPI(h http.Handler, reject func(*http.Request, *Error)) http.Handler {
	if t.API == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Matches(r, t.API) {
			unauthorized(w, r, "a valid Authorization: Bearer token is required", reject)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// RequireAdmin wraps h so that it needs the admin token; without an admin
// token configured it answers 403.
func (t Tokens) RequireAdmin(h http.Handler, reject func(*http.Request, *Error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.Admin == "" {
			e := Errorf(http.StatusForbidden, "forbidden", "this action needs the service to be started with an admin token")
			if reject != nil {
				reject(r, e)
			}
			WriteError(w, e)
			return
		}
		if !Matches(r, t.Admin) {
			unauthorized(w, r, "a valid admin Bearer token is required", reject)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func unauthorized(w http.ResponseWriter, r *http.Request, msg string, reject func(*http.Request, *Error)) {
	e := Errorf(http.StatusUnauthorized, "unauthorized", "%s", msg)
	if reject != nil {
		reject(r, e)
	}
	w.Header().Set("WWW-Authenticate", `Bearer`)
	WriteError(w, e)
}

// ReadToken returns a token given directly or, when file is set, read from
// that file (trailing newlines removed). Setting both is an error.
func ReadToken(name, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("-%s and -%s-file are both set; use one", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("-%s-file: %w", name, err)
	}
	tok := strings.TrimRight(string(b), "\r\n")
	if tok == "" {
		return "", fmt.Errorf("-%s-file %s is empty", name, file)
	}
	return tok, nil
}

// AllowHosts wraps h so that a request whose Host is not one of hosts (port
// ignored, case-insensitive) gets 421 Misdirected Request. A browser tricked
// by DNS rebinding sends the attacker's host name, so it cannot reach a
// service listening on loopback. An entry "*" allows every host.
func AllowHosts(hosts []string, h http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, x := range hosts {
		if x == "*" {
			return h
		}
		allowed[strings.ToLower(strings.Trim(x, "[]"))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		if !allowed[strings.ToLower(strings.Trim(host, "[]"))] {
			WriteError(w, Errorf(http.StatusMisdirectedRequest, "host_not_allowed", "host %q is not served here; see -allowed-hosts", clip(r.Host, 100)))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// DefaultHosts are the names a service bound to addr answers to when no
// allow-list is given: loopback names, the machine's host name, and addr's
// own host if it names one.
func DefaultHosts(addr string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	return hosts
}

// IsLoopback reports whether addr (host:port) listens on a loopback
// address only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
