package svc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/kanban/natsembed"
)

// NATS is the NATS server a service uses: the one at a URL, or an
// embedded one with JetStream on the data dir, in-process only — it
// listens on no port, so nothing outside the process can reach it.
type NATS struct {
	embedded *natsembed.Server
	url      URL // kept as a URL, so that a NATS printed as it is shows no credentials
	opts     []nats.Option
}

// StartNATS starts an embedded server under dataDir/nats when url is
// empty, or uses the server at url. Its connections carry name, reconnect
// for ever (a NATS restart must lose nothing) and report to log.
func StartNATS(ctx context.Context, url, dataDir, name string, log *slog.Logger) (*NATS, error) {
	n := &NATS{url: NewURL(url), opts: []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats", "err", err, "subject", subject)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		// ConnectedUrlRedacted hides a password only: a token given as
		// the URL's user would be logged.
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", RedactURL(nc.ConnectedUrl())) }),
	}}
	if url != "" {
		return n, nil
	}
	var err error
	// The server's warnings and errors (a store it cannot write, a slow
	// consumer) go to the service's log; its notices, a page of them at
	// every start, do not.
	n.embedded, err = natsembed.Start(ctx, natsembed.Options{StoreDir: filepath.Join(dataDir, "nats"), InProcess: true,
		Logger: slog.New(WarnOnly(log.Handler())).With("component", "nats-server")})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	return n, nil
}

// Connect opens a connection to the server.
func (n *NATS) Connect() (*nats.Conn, error) {
	var nc *nats.Conn
	var err error
	if n.embedded != nil {
		nc, err = n.embedded.Connect(n.opts...)
	} else {
		nc, err = nats.Connect(n.url.Reveal(), n.opts...)
	}
	if err != nil {
		// The error of a URL that does not parse quotes it whole,
		// credentials and all; Location names the server.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = RedactURL(ue.URL)
			if err == error(ue) {
				err = ue.Err
			}
		}
		return nil, fmt.Errorf("NATS %s: %w", n.Location(), err)
	}
	return nc, nil
}

// Embedded reports whether the server is the embedded one.
func (n *NATS) Embedded() bool { return n.embedded != nil }

// Location says which server is in use, with no credentials.
func (n *NATS) Location() string {
	if n.embedded != nil {
		return "embedded (in-process)"
	}
	return RedactURL(n.url.Reveal())
}

// Format prints n, for every verb, as Location names it: fmt would print
// the fields of the struct n points to, the URL with its credentials
// among them.
func (n *NATS) Format(f fmt.State, _ rune) {
	if n == nil {
		_, _ = io.WriteString(f, "<nil>")
		return
	}
	_, _ = io.WriteString(f, "NATS "+n.Location())
}

// Shutdown stops the embedded server, if there is one.
func (n *NATS) Shutdown(ctx context.Context) error {
	if n.embedded == nil {
		return nil
	}
	return n.embedded.Shutdown(ctx)
}

// CloseConn flushes what nc has buffered, for up to five seconds, and
// closes it.
func CloseConn(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		err := nc.FlushTimeout(5 * time.Second)
		nc.Close()
		if errors.Is(err, nats.ErrConnectionClosed) {
			err = nil
		}
		return err
	}
}

// RedactURL hides a URL's password (and a user name alone, which a token
// is in a nats:// URL) and the values of its query, where a proxy's token
// may be ("?token=..."), and so is a fragment; a string that is not a URL
// is hidden whole. NATS
// takes a comma-separated list; each is redacted. One without a scheme
// ("user:pass@host:4222"), which nats.Connect reads as nats://, is
// redacted as that URL, and shown without the scheme. The user
// information hidden is all that comes before the last "@", as written:
// a secret with a '/', '?' or '#' in it (a base64 token has '/'), not
// escaped, ends the host part for url.Parse, which then sees no user
// information at all, but it is still a secret (an "@" in a path or
// query hides what comes before it too). A URL of another scheme
// (redis://, http://) is one URL, not a list, unless every part names its
// scheme and none but the last has a query or a fragment: a password, or a
// query's value, may hold a ',' unescaped.
func RedactURL(raw string) string {
	var out []string
	for _, one := range splitURLs(raw) {
		one = strings.TrimSpace(one)
		// url.Parse would take "user" for the scheme of "user:pass@host".
		implicit := ""
		if one != "" && !strings.Contains(one, "://") {
			implicit = "nats://"
		}
		one = implicit + one
		scheme, rest, _ := strings.Cut(one, "://")
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			shown := "xxxxx"
			// A user name, before a ':', is shown when it is one that
			// url.Parse reads as such.
			if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass && !strings.ContainsAny(user, "/?#") {
				shown = user + ":xxxxx"
			}
			one = scheme + "://" + shown + rest[at:]
		}
		u, err := url.Parse(one)
		if err != nil {
			out = append(out, "(unparsable URL)")
			continue
		}
		u.RawQuery = redactQuery(u.RawQuery)
		if u.Fragment != "" {
			u.Fragment, u.RawFragment = "xxxxx", ""
		}
		out = append(out, strings.TrimPrefix(u.String(), implicit))
	}
	return strings.Join(out, ",")
}

// splitURLs splits raw into the URLs of a NATS server list. A URL whose
// scheme is not one of NATS's is one URL, commas and all, unless every
// part of the list has a scheme of its own and none but the last has a
// query or a fragment.
func splitURLs(raw string) []string {
	parts := strings.Split(raw, ",")
	scheme, _, found := strings.Cut(strings.TrimSpace(parts[0]), "://")
	switch strings.ToLower(scheme) {
	case "nats", "tls", "ws", "wss":
		return parts
	}
	if !found {
		return parts
	}
	for i, p := range parts[1:] {
		// A query or a fragment runs to the end of its URL, commas and all.
		if !strings.Contains(p, "://") || strings.ContainsAny(parts[i], "?#") {
			return []string{raw}
		}
	}
	return parts
}

// redactQuery keeps a query's names and hides their values, and a part
// with no '=' whole.
func redactQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		name, value, hasValue := strings.Cut(p, "=")
		switch {
		case !hasValue && p != "":
			parts[i] = "xxxxx"
		case value != "":
			parts[i] = name + "=xxxxx"
		}
	}
	return strings.Join(parts, "&")
}

// WarnOnly returns a handler that passes h the records at level Warn and
// above, and drops the others.
func WarnOnly(h slog.Handler) slog.Handler { return warnOnly{h} }

type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnOnly) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return nil
	}
	return w.Handler.Handle(ctx, r)
}

func (w warnOnly) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnOnly{w.Handler.WithAttrs(attrs)}
}

func (w warnOnly) WithGroup(name string) slog.Handler { return warnOnly{w.Handler.WithGroup(name)} }

// errCodeNoStoreRoom is JetStream's error code for a stream or bucket
// whose byte limit (MaxBytes) the server cannot set aside: its storage is
// smaller than the limits of its streams add up to.
const errCodeNoStoreRoom jetstream.ErrorCode = 10047

// StoreRoomHint returns err saying what to do when it is JetStream's
// refusal to set aside a store's byte limit ("insufficient storage
// resources available"): the embedded server has the free space of
// dataDir's file system as its storage (a share of it), a server at a URL
// its max_file_store, and the limits named by flags must fit in it. Any
// other err is returned as it is.
func StoreRoomHint(err error, dataDir, flags string) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeNoStoreRoom {
		return err
	}
	return fmt.Errorf("%w: JetStream cannot set aside the stores' byte limits (%s): the embedded server's storage is part of the free space on the file system of %s, and a NATS server's at -nats-url its max_file_store; free space there, or lower those limits", err, flags, dataDir)
}
