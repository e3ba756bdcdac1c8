package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Tokens are a service's tokens. API guards the service's own API when
// set, as a Bearer token; Admin guards what changes how the service runs
// (the andon cord, chaos settings, abort and promote) and is required for
// it: without an admin token those routes answer 403. The admin token is
// taken as a Bearer token or as the password of HTTP Basic, so that a
// browser on the board can send it. The two must differ, so that a client
// holding the API token cannot stop the line.
//
// Tokens print with fmt (any verb but %p), log with slog and encode as
// JSON and XML with the tokens redacted. Their fields are strings, so
// what reads fields without calling methods shows them: fmt's %p (of a
// Tokens, not of a pointer to one), fmt printing Tokens held in a field
// it cannot call methods on (one not exported, or any field of a struct
// held in one), and encoding/gob. Keep Tokens out of what is printed
// whole; a configuration holds its tokens as svc.Secret.
type Tokens struct {
	API   string
	Admin string
	// Realm is the HTTP authentication realm of the admin routes, named
	// in their challenges. Empty means "admin".
	Realm string
}

// Redacted stands for a token that is set in what Tokens print, log and
// marshal to JSON and XML.
const Redacted = "REDACTED"

// Format prints t as fmt prints a struct, for every verb fmt calls it
// with (all but %p), with the tokens shown as Redacted when set: tokens
// printed whole show no secret.
func (t Tokens) Format(f fmt.State, verb rune) {
	out := fmt.Sprintf(fmt.FormatString(f, verb), t.redacted())
	if rest, ok := strings.CutPrefix(out, "httpapi.tokens{"); ok {
		out = "httpapi.Tokens{" + rest // %#v
	}
	_, _ = io.WriteString(f, out)
}

// LogValue is t for log/slog, with the tokens shown as Redacted when set,
// whatever the handler: a JSON handler would otherwise encode the fields
// as they are.
func (t Tokens) LogValue() slog.Value { return slog.AnyValue(t.redacted()) }

// MarshalJSON encodes t as encoding/json encodes a struct, with the
// tokens shown as Redacted when set.
func (t Tokens) MarshalJSON() ([]byte, error) { return json.Marshal(t.redacted()) }

// MarshalXML encodes t as encoding/xml encodes a struct, with the tokens
// shown as Redacted when set.
func (t Tokens) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	return e.EncodeElement(t.redacted(), start)
}

// tokens is Tokens without its methods, as it prints.
type tokens Tokens

func (t Tokens) redacted() tokens {
	for _, tok := range []*string{&t.API, &t.Admin} {
		if *tok != "" {
			*tok = Redacted
		}
	}
	return tokens(t)
}

// MaxTokenLen is the longest token Validate accepts: servers and proxies
// refuse headers much longer than a few kilobytes.
const MaxTokenLen = 4096

// Validate reports tokens that must not be used: an admin token equal to
// the API token, and a token no request could carry, or none a client
// would send as it is stored: longer than MaxTokenLen, not UTF-8, with
// white space at either end, or with a character that is not printable
// (a line break, a byte order mark).
func (t Tokens) Validate() error {
	if t.Admin != "" && t.Admin == t.API {
		return errors.New("the admin token must differ from the API token")
	}
	for _, tok := range []struct{ name, v string }{{"API", t.API}, {"admin", t.Admin}} {
		if err := CheckToken(tok.v); err != nil {
			return fmt.Errorf("the %s token %w", tok.name, err)
		}
	}
	return nil
}

// CheckToken returns an error, which does not show v, when v is not a
// token the services take: over MaxTokenLen bytes, not valid UTF-8, with
// white space at either end (a token file's newline) or a character that
// is not printable, which would end an Authorization header early. The
// error reads after the token's name: "the API token " + err.
func CheckToken(v string) error {
	switch {
	case v == "":
		return nil
	case len(v) > MaxTokenLen:
		return fmt.Errorf("is %d bytes long; at most %d are taken", len(v), MaxTokenLen)
	case !utf8.ValidString(v):
		return errors.New("is not valid UTF-8")
	case strings.TrimSpace(v) != v:
		return errors.New("has leading or trailing white space")
	}
	for i, r := range v {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("holds %U at byte %d, which is not a printable character", r, i)
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
	return ok && sameSecret(got, token)
}

// sameSecret reports whether a and b are equal in a time that tells
// nothing of either: it compares their SHA-256 digests, which have one
// length, where comparing the secrets themselves returns at once when
// their lengths differ and so tells a caller the token's length.
func sameSecret(a, b string) bool {
	da, db := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return constantTimeCompare(da[:], db[:]) == 1
}

// constantTimeCompare is subtle.ConstantTimeCompare; a test watches it.
var constantTimeCompare = subtle.ConstantTimeCompare

// MatchesAdmin reports whether r carries token, an admin token, as a
// Bearer token or as the password of HTTP Basic (any user name), in
// constant time. No request carries an empty token.
func MatchesAdmin(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	if Matches(r, token) {
		return true
	}
	_, pass, ok := r.BasicAuth()
	return ok && sameSecret(pass, token)
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

// RequireAdmin wraps h so that it needs the admin token, as MatchesAdmin
// takes it; without an admin token configured it answers 403. A request
// without the token, or with a wrong one, gets 401 with a challenge for
// both schemes (a browser asks for the Basic password). A change (any
// method but GET, HEAD or OPTIONS) a browser makes from a page of another
// site is refused with 403: a browser sends a Basic password it knows on
// its own, with any page's requests. reject, if not nil, is told of each
// refusal.
func (t Tokens) RequireAdmin(h http.Handler, reject func(*http.Request, *Error)) http.Handler {
	refuse := func(w http.ResponseWriter, r *http.Request, e *Error) {
		if reject != nil {
			reject(r, e)
		}
		WriteError(w, e)
	}
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse(w, r, Errorf(http.StatusForbidden, "cross_origin", "a change from a page of another site is refused"))
	}))
	guarded := csrf.Handler(h)
	realm := t.Realm
	if realm == "" {
		realm = "admin"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case t.Admin == "":
			refuse(w, r, Errorf(http.StatusForbidden, "forbidden", "this action needs the service to be started with an admin token (-admin-token)"))
		case !MatchesAdmin(r, t.Admin):
			w.Header().Add("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			refuse(w, r, Errorf(http.StatusUnauthorized, "unauthorized",
				"a valid admin token is required: as a Bearer token, or as the HTTP Basic password (any user name)"))
		default:
			guarded.ServeHTTP(w, r)
		}
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

// maxTokenFile bounds what ReadToken reads of a token file.
const maxTokenFile = 64 << 10

// ReadToken returns a token given directly or, when file is set, read from
// that file (trailing newlines removed, CRLF too). Setting both is an
// error, and so is a file of more than 64 KiB: it holds no token (or it
// is /dev/zero, which would never end).
func ReadToken(name, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("-%s and -%s-file are both set; use one", name, name)
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("-%s-file: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("-%s-file: %w", name, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("-%s-file %s holds more than %d bytes; it should hold the token alone", name, file, maxTokenFile)
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
// service listening on loopback. An entry "*" allows every host. Entries
// are Host header values: a port in one is ignored too, a name is the same
// with the root's dot at its end (ops.example.), and an IP address is the
// same in any spelling ([::1], [0:0:0:0:0:0:0:1]). An internationalized
// name (bücher.example) is taken in the ASCII form a browser sends in the
// Host header (xn--bcher-kva.example), and an ideographic full stop (。)
// as a dot, the root's at its end too.
func AllowHosts(hosts []string, h http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, x := range hosts {
		if x == "*" {
			return h
		}
		x = hostName(x)
		if !isASCII(x) {
			// An ideographic full stop (U+3002) at the end becomes the
			// root's dot only now, after hostName trimmed the root's dot.
			if a, err := idna.Lookup.ToASCII(x); err == nil {
				x = strings.TrimSuffix(a, ".")
			}
		}
		if x != "" {
			allowed[x] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed[hostName(r.Host)] {
			WriteError(w, Errorf(http.StatusMisdirectedRequest, "host_not_allowed", "host %q is not served here; see -allowed-hosts", Clip(r.Host, 100)))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// CheckHost reports an entry of an AllowHosts list that no Host header
// can match: one that is neither "*" nor a name or an IP address with an
// optional port. A URL ("https://pay.example"), a path or a pattern
// ("*.example.com") is refused, as it would allow nothing (or, for
// "http://pay.example", a host named "http"). A name is one DNS can hold:
// labels of 1 to 63 letters, digits, '-' and '_' between dots (a dot may
// end it, the root's), or an internationalized one.
func CheckHost(entry string) error {
	if entry == "*" || validHost(entry) {
		return nil
	}
	return fmt.Errorf("%q is not a host name or IP address with an optional port (pay.example, pay.example:443, [::1]:3001); \"*\" alone allows any", Clip(entry, 100))
}

func validHost(entry string) bool {
	host := entry
	if h, port, err := net.SplitHostPort(entry); err == nil {
		if strings.Trim(port, "0123456789") != "" {
			return false
		}
		host = h
	} else if inner, ok := strings.CutPrefix(entry, "["); ok {
		// Brackets hold an IPv6 address only.
		inner, ok = strings.CutSuffix(inner, "]")
		_, err := netip.ParseAddr(inner)
		return ok && err == nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if !isASCII(host) {
		a, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return false
		}
		host = a
	}
	for i := range len(host) {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	// Labels of 1 to 63 bytes between dots, the root's dot at the end
	// aside: "pay..example" is no name a browser resolves.
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > maxLabel {
			return false
		}
	}
	return true
}

// maxLabel is the longest label of a DNS name, in bytes (RFC 1035).
const maxLabel = 63

// hostName is the host a Host header value names, as AllowHosts compares
// it: without its port, brackets and the root's dot, in lower case, an IP
// address in its shortest spelling.
func hostName(host string) string {
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.String()
	}
	return strings.TrimSuffix(host, ".")
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
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
// address only. The name localhost is taken in any case, as the resolver
// takes it.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Clip shortens s to at most n bytes, followed by "…" when it was cut,
// for an error message that quotes what a client sent. It cuts between
// characters: cut within one, the message would quote a byte the client
// never sent ("\xc3").
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	if !utf8.RuneStart(s[i]) {
		i = n // not UTF-8 here: the bytes are quoted as they are
	}
	return s[:i] + "…"
}
