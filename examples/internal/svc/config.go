// Package svc holds what the example services do alike: flags with an
// environment variable as fallback; how a service serves — its address,
// tokens, allowed hosts and audit key — with secure defaults (no token:
// loopback only); its logger; and its start and graceful stop.
package svc

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/taipattern/taikit/examples/internal/httpapi"
	"github.com/taipattern/taikit/kaizen"
)

// Env gives flags their defaults from the environment and keeps the
// errors of values it cannot parse, which Err returns.
type Env struct {
	getenv func(string) string
	errs   []error
}

// NewEnv reads variables through getenv (os.Getenv, or a map in tests).
func NewEnv(getenv func(string) string) *Env { return &Env{getenv: getenv} }

// Err returns the errors of every value that did not parse.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// Fail records an error of the caller's about a variable.
func (e *Env) Fail(err error) { e.errs = append(e.errs, err) }

// String returns the variable name, or def when it is empty or unset.
func (e *Env) String(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

// Duration returns the variable name as a duration, as time.ParseDuration
// reads it ("1m30s"), or def. One longer than a time.Duration holds (about
// 292 years) is said to be out of range, as an integer too large is.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	return parse(e, name, def, parseDuration, "a duration")
}

// durationSyntax is what time.ParseDuration reads: a sign, then numbers,
// each with its unit.
var durationSyntax = regexp.MustCompile(`^[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+$`)

// parseDuration is time.ParseDuration, but for a duration too long for a
// time.Duration it returns strconv.ErrRange: time.ParseDuration words it
// as it words a string that is no duration at all.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil && durationSyntax.MatchString(s) {
		return 0, strconv.ErrRange
	}
	return d, err
}

// Int returns the variable name as an integer, or def. It reads it as
// flag.Int reads a flag, so that 0x40, 0o17 and 1_000 mean in a variable
// what they mean in the flag it is the default of.
func (e *Env) Int(name string, def int) int {
	return parse(e, name, def, func(s string) (int, error) {
		n, err := strconv.ParseInt(s, 0, strconv.IntSize)
		return int(n), err
	}, "an integer")
}

// Float returns the variable name as a number, or def.
func (e *Env) Float(name string, def float64) float64 {
	return parse(e, name, def, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }, "a number")
}

// Bool returns the variable name as a boolean, as strconv.ParseBool reads
// it (1, t, true, TRUE, 0, f, false, ...), or def; anything else is an
// error, not false.
func (e *Env) Bool(name string, def bool) bool {
	return parse(e, name, def, strconv.ParseBool, "a boolean (true or false, 1 or 0)")
}

func parse[T any](e *Env, name string, def T, conv func(string) (T, error), what string) T {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	x, err := conv(v)
	if errors.Is(err, strconv.ErrRange) {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is out of range for %s", name, v, what))
		return def
	}
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is not %s", name, v, what))
		return def
	}
	return x
}

// AuditFileBytes is the size past which a service's audit trail goes on
// in a new file (kaizen.AuditOptions.RotateBytes): audit-<instance>.jsonl,
// then audit-<instance>.jsonl.000001 and on, each continuing the chain of
// the one before. A start verifies the last file alone, so it reads at
// most this much however long the service has run; files rotated out may
// be archived.
const AuditFileBytes = 128 << 20

// Serving is how a service serves: where it listens, who may call it, the
// hosts it answers for, and the key of its audit trail. Its secrets are of
// types that print and log redacted (Secret, SecretBytes): a Serving, or
// a configuration that embeds one, printed or logged whole shows none.
type Serving struct {
	Addr         string
	APIToken     Secret      // guards the API; "" leaves it open (then Addr must be loopback)
	AdminToken   Secret      // guards the admin actions and the cord; "" turns them off
	AuditKey     SecretBytes // makes the audit trail's hashes HMACs
	AllowedHosts []string    // Host header values served; "*" for any

	port                                                int
	apiTokenFile, adminTokenFile, auditKeyFile, allowed string
	fs                                                  *flag.FlagSet // the flags Register added, to see which were given
}

// Redacted stands for a secret that is set where a Secret or SecretBytes
// is printed, logged or marshalled.
const Redacted = "REDACTED"

// Secret is a token: it prints (with any verb), logs (with any slog
// handler) and marshals (JSON, text) as Redacted when set, and as "" when
// not. NewSecret makes one, Reveal returns its value; the zero Secret is
// not set.
//
// Its value is kept behind a pointer: where fmt prints a Secret without
// calling its methods — with %p or another verb a struct does not take,
// or in a field fmt cannot call them on (one not exported, or any field
// of a struct held in one) — it shows an address, not the value. It is
// not comparable (== would compare where values are kept, not the
// values), so it cannot be a map key either, where encoding/json would
// write a string as it is.
type Secret struct {
	_ [0]func()
	v *string
}

// NewSecret returns a Secret holding v; "" is a Secret not set.
func NewSecret(v string) Secret { return Secret{v: &v} }

// Reveal returns s's value, "" when s is not set.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsSet reports whether s holds a value other than "".
func (s Secret) IsSet() bool { return s.Reveal() != "" }

// Format writes s redacted, quoted for %q and %#v.
func (s Secret) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.IsSet()) }

// LogValue is s redacted.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redact(s.IsSet())) }

// MarshalText is s redacted, for encoding/json and the like.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redact(s.IsSet())), nil }

// SecretBytes is a key of bytes, printed, logged and marshalled as a
// Secret is, and kept behind a pointer as a Secret is. NewSecretBytes
// makes one, Reveal returns its bytes; the zero SecretBytes is not set.
type SecretBytes struct {
	_ [0]func()
	// A string, not a []byte: fmt prints a pointer to a slice, as it
	// prints one to a struct, with what it points to.
	b *string
}

// NewSecretBytes returns a SecretBytes holding a copy of b; empty is a
// SecretBytes not set.
func NewSecretBytes(b []byte) SecretBytes {
	v := string(b)
	return SecretBytes{b: &v}
}

// Reveal returns a copy of k's bytes, nil when k is not set.
func (k SecretBytes) Reveal() []byte {
	if k.b == nil || *k.b == "" {
		return nil
	}
	return []byte(*k.b)
}

// IsSet reports whether k holds at least one byte.
func (k SecretBytes) IsSet() bool { return k.b != nil && *k.b != "" }

// Format writes k redacted, quoted for %q and %#v.
func (k SecretBytes) Format(f fmt.State, verb rune) { formatRedacted(f, verb, k.IsSet()) }

// LogValue is k redacted.
func (k SecretBytes) LogValue() slog.Value { return slog.StringValue(redact(k.IsSet())) }

// MarshalText is k redacted, for encoding/json and the like.
func (k SecretBytes) MarshalText() ([]byte, error) { return []byte(redact(k.IsSet())), nil }

// URL is the URL of a server a service uses (or NATS's comma-separated
// list of them), which may carry a password or a token: it prints (with
// any verb), logs and marshals with them redacted, as RedactURL does.
// NewURL makes one, Reveal returns it whole; the zero URL is "". Its value
// is kept behind a pointer, and it is not comparable, as a Secret's is.
type URL struct {
	_ [0]func()
	v *string
}

// NewURL returns a URL holding v.
func NewURL(v string) URL { return URL{v: &v} }

// Reveal returns u whole, credentials and all, "" for the zero URL.
func (u URL) Reveal() string {
	if u.v == nil {
		return ""
	}
	return *u.v
}

// IsSet reports whether u is not "".
func (u URL) IsSet() bool { return u.Reveal() != "" }

// Format writes u redacted, quoted for %q and %#v.
func (u URL) Format(f fmt.State, verb rune) {
	out := RedactURL(u.Reveal())
	if verb == 'q' || verb == 'v' && f.Flag('#') {
		out = strconv.Quote(out)
	}
	_, _ = io.WriteString(f, out)
}

// LogValue is u redacted.
func (u URL) LogValue() slog.Value { return slog.StringValue(RedactURL(u.Reveal())) }

// MarshalText is u redacted, for encoding/json and the like.
func (u URL) MarshalText() ([]byte, error) { return []byte(RedactURL(u.Reveal())), nil }

// redact returns Redacted for a secret that is set, "" for one that is not.
func redact(set bool) string {
	if !set {
		return ""
	}
	return Redacted
}

func formatRedacted(f fmt.State, verb rune, set bool) {
	out := redact(set)
	if verb == 'q' || verb == 'v' && f.Flag('#') {
		out = strconv.Quote(out)
	}
	_, _ = io.WriteString(f, out)
}

// Tokens are s's tokens, for httpapi's guards.
func (s *Serving) Tokens() httpapi.Tokens {
	return httpapi.Tokens{API: s.APIToken.Reveal(), Admin: s.AdminToken.Reveal()}
}

// Usage says what a service's tokens guard, for its flags' help.
type Usage struct {
	API   string // what -api-token guards: "the deploy API"
	Admin string // what -admin-token guards: "abort, promote, resume and the cord"
}

// Register adds the serving flags to fs with their environment fallbacks:
// -addr (default 127.0.0.1:port without a token, :port with one),
// -api-token, -api-token-file, -admin-token, -admin-token-file,
// -audit-key-file and -allowed-hosts. Call Finish after fs.Parse.
func (s *Serving) Register(fs *flag.FlagSet, env *Env, port int, u Usage) {
	s.port, s.fs = port, fs
	fs.StringVar(&s.Addr, "addr", env.String("ADDR", ""), fmt.Sprintf("listen address; default 127.0.0.1:%d (loopback only) without -api-token, :%[1]d with one. Without a token only a loopback address is accepted (ADDR)", port))
	SecretVar(fs, &s.APIToken, "api-token", env.String("API_TOKEN", ""), "require Authorization: Bearer <token> on "+u.API+"; prefer -api-token-file, as a flag shows in the process list (API_TOKEN)")
	fs.StringVar(&s.apiTokenFile, "api-token-file", env.String("API_TOKEN_FILE", ""), "read the API token from this file (API_TOKEN_FILE)")
	SecretVar(fs, &s.AdminToken, "admin-token", env.String("ADMIN_TOKEN", ""), "token of "+u.Admin+", as a Bearer token or the HTTP Basic password (any user name); must differ from the API token; without it they are off and the board is read-only (ADMIN_TOKEN)")
	fs.StringVar(&s.adminTokenFile, "admin-token-file", env.String("ADMIN_TOKEN_FILE", ""), "read the admin token from this file (ADMIN_TOKEN_FILE)")
	fs.StringVar(&s.auditKeyFile, "audit-key-file", env.String("AUDIT_KEY_FILE", ""), "make the audit trail's hashes HMAC-SHA256 with the key in this file (16 bytes to 64 KiB, used as stored); verify with go run ./cmd/taikit audit verify -key-file (AUDIT_KEY_FILE)")
	fs.StringVar(&s.allowed, "allowed-hosts", env.String("ALLOWED_HOSTS", ""), "Host header values served, comma separated, \"*\" for any (a defence against DNS rebinding); default: localhost, the loopback addresses, this machine's name and -addr's host (ALLOWED_HOSTS)")
}

// Finish reads the token and key files, fills in the defaults and checks
// the whole: a token-less service listens on loopback only, and the admin
// token is not the API token. A token given one way on the command line
// (-api-token or -api-token-file) wins over the other way's variable
// (API_TOKEN_FILE or API_TOKEN), as a flag wins over its own: the
// variables are fallbacks. A token given both ways on the command line, or
// both ways in the environment, is refused.
func (s *Serving) Finish() error {
	var errs []error
	given := map[string]bool{}
	if s.fs != nil {
		s.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	}
	for _, tok := range []struct {
		name, env string
		v         *Secret
		file      string
	}{{"api-token", "API_TOKEN", &s.APIToken, s.apiTokenFile}, {"admin-token", "ADMIN_TOKEN", &s.AdminToken, s.adminTokenFile}} {
		value, file := tok.v.Reveal(), tok.file
		switch byFlag, byFileFlag := given[tok.name], given[tok.name+"-file"]; {
		case byFlag && !byFileFlag:
			file = ""
		case byFileFlag && !byFlag:
			value = ""
		case !byFlag && !byFileFlag && value != "" && file != "":
			errs = append(errs, fmt.Errorf("%s and %s_FILE are both set; use one", tok.env, tok.env))
			*tok.v = NewSecret("")
			continue
		}
		v, err := httpapi.ReadToken(tok.name, value, file)
		if err != nil {
			errs = append(errs, err)
		}
		*tok.v = NewSecret(v)
	}
	if s.auditKeyFile != "" {
		if key, err := kaizen.ReadAuditKeyFile(s.auditKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("-audit-key-file: %w", err))
		} else {
			s.AuditKey = NewSecretBytes(key)
		}
	}
	if s.Addr == "" {
		s.Addr = fmt.Sprintf("127.0.0.1:%d", s.port)
		if s.APIToken.IsSet() {
			s.Addr = fmt.Sprintf(":%d", s.port)
		}
	}
	for _, h := range strings.Split(s.allowed, ",") {
		if h = strings.TrimSpace(h); h != "" {
			if err := httpapi.CheckHost(h); err != nil {
				errs = append(errs, fmt.Errorf("-allowed-hosts: %w", err))
			}
			s.AllowedHosts = append(s.AllowedHosts, h)
		}
	}
	if len(s.AllowedHosts) == 0 {
		s.AllowedHosts = httpapi.DefaultHosts(s.Addr)
	}
	// White space around it (an env file's) would have the host taken for
	// one beyond loopback, or the listen fail on a port " 3001".
	if _, port, err := net.SplitHostPort(s.Addr); err != nil || port == "" || strings.ContainsFunc(s.Addr, unicode.IsSpace) {
		errs = append(errs, fmt.Errorf("-addr %q is not host:port (127.0.0.1:%d, or :%d for every interface)", s.Addr, s.port, s.port))
	} else if !s.APIToken.IsSet() && !httpapi.IsLoopback(s.Addr) {
		errs = append(errs, fmt.Errorf("-addr %s listens beyond loopback without -api-token: anyone who reaches the port could call the API; set -api-token (or -api-token-file), or listen on 127.0.0.1", s.Addr))
	}
	if err := s.Tokens().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ValidInstance reports whether name can name a replica (-instance): 1 to
// 200 letters, digits, '_', '-' or '.', neither beginning nor ending with
// '.' nor holding "..". It names the replica's audit trail file in the
// data dir (audit-<instance>.jsonl), so it holds no '/' and is neither
// "." nor "..", and it is a key of a JetStream bucket (the audit heads).
func ValidInstance(name string) bool {
	if name == "" || len(name) > 200 || name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, "..") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
