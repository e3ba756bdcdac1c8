package andon

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

// WebhookOptions configures a Webhook.
type WebhookOptions struct {
	// URL receives the POSTs. Required; http or https.
	URL string
	// Client sends the requests. Nil means a client of its own, which
	// does not follow redirects; the evaluator bounds each request with
	// NotifyOptions.Timeout. A client that follows a 301, 302 or 303
	// turns the POST into a GET, which is reported as a permanent error.
	Client *http.Client
	// Header is added to every request (an Authorization header). An
	// error that quotes the answer reads "…" where the answer repeats one
	// of its values, or the token of "Bearer <token>".
	Header http.Header
	// Receiver is the payload's "receiver". Empty means "andon".
	Receiver string
	// ExternalURL is the payload's "externalURL", a link back to the
	// board.
	ExternalURL string
}

// Webhook is a Notifier that POSTs alerts as JSON in the format of
// Alertmanager's webhook receiver (version "4"), so receivers written for
// Alertmanager understand it: one request per alert name, with status,
// receiver, groupLabels (alertname), commonLabels, commonAnnotations,
// externalURL, groupKey and alerts[] of status, labels, annotations,
// startsAt, endsAt, generatorURL and fingerprint. A message holds one
// notification of each alert: an alert that fired and resolved while the
// receiver was busy is sent firing and then resolved, in two messages, so
// that no message says "firing" of an alert that has resolved. It is not
// Alertmanager: it neither waits to group alerts (group_wait) nor repeats
// a firing alert (repeat_interval); the receiver hears of an alert once
// when it fires and once when it resolves. Send to Alertmanager for those.
//
// A 2xx answer is success; 5xx, 408, 425, 429 and transport errors are
// retried, not before the answer's Retry-After, in seconds or an HTTP
// date (counted from the answer's Date, the receiver's clock, when it has
// a valid one), up to 5 minutes (see NotifyOptions.Backoff); any other
// status, a 3xx redirect among them, is a permanent error
// (kanban.Permanent).
// Errors name the URL as scheme and host only, with "/…" for a path or
// query, which may hold a token; where the answer they quote repeats the
// path, the query or one of its values, the password (or the user name
// given without one), the Basic credentials made of them, or a value of
// WebhookOptions.Header (or a word of it after the first, the token of
// "Bearer <token>"), that reads "…" too, and so does the start of one
// that the quote, the answer's first 512 bytes, ends in.
//
// Make one with NewWebhook; the zero Webhook is not usable: it has no URL,
// and Notify returns a permanent error saying it was not made by
// NewWebhook.
type Webhook struct {
	opts   WebhookOptions
	client *http.Client
}

// NewWebhook returns a Webhook, or an error naming the bad option.
func NewWebhook(opts WebhookOptions) (*Webhook, error) {
	if err := checkURL("WebhookOptions.URL", opts.URL); err != nil {
		return nil, err
	}
	if opts.Receiver == "" {
		opts.Receiver = "andon"
	}
	opts.Header = opts.Header.Clone()
	c := opts.Client
	if c == nil {
		c = newClient()
	}
	return &Webhook{opts: opts, client: c}, nil
}

// checkURL reports a URL that is not http or https. Its errors name the
// URL as redactURL does, since a caller logs them: the password, path and
// query of a webhook's URL may hold a token.
func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // the url.Error quotes the whole URL
		}
		return fmt.Errorf("andon: %s is not a URL: %w", field, err)
	}
	switch {
	case s == "":
		return fmt.Errorf("andon: %s %q is not an http or https URL", field, s)
	case u.Scheme == "":
		return fmt.Errorf("andon: %s has no scheme; it must begin with http:// or https://", field)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("andon: %s %q is not an http or https URL", field, redactURL(u))
	}
	return nil
}

// errWebhookNotMade is the error of Notify on a Webhook that NewWebhook
// did not make: it has no URL, and no retry would give it one.
var errWebhookNotMade = kanban.Permanent(errors.New("andon: Webhook not made by NewWebhook"))

// Name returns "webhook".
func (*Webhook) Name() string { return "webhook" }

// timesRequests marks a Webhook as bounding each of its requests with
// NotifyOptions.Timeout (see requestTimer).
func (*Webhook) timesRequests() {}

// WebhookMessage is the body a Webhook POSTs, as Alertmanager's webhook
// receiver does.
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a WebhookMessage. EndsAt is the zero time
// while the alert fires, as Alertmanager sends it.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// status returns "firing" or "resolved".
func status(a Alert) string {
	if a.State == Resolved {
		return "resolved"
	}
	return "firing"
}

// Notify POSTs one message per alert name, one after the other. A message
// holds one notification of each alert: when alerts holds several of one
// alert (it fired and resolved while the receiver was busy), they go in
// messages of their own, in order, as Alertmanager would have sent them,
// and a message is sent only once the one of the same name before it went
// out; one that is not shares the failure of that one. Called by the
// evaluator, each request is bounded by NotifyOptions.Timeout; called
// directly, all are bounded by ctx alone. When some messages fail, the
// error joins their errors and is permanent only if every failure is; the
// evaluator then retries only the alert names whose failure is not. Its
// retry hint (tai.RetryAfter) is the longest Retry-After among them, at
// most 5 minutes, as the evaluator would wait.
func (w *Webhook) Notify(ctx context.Context, alerts []Alert) error {
	if w.client == nil {
		return errWebhookNotMade
	}
	p := &partialError{}
	// failedName holds the alert names whose last message failed, and
	// whether for good: a later message of the name is not sent before
	// it, as a resolution would reach the receiver before its alert.
	failedName := map[string]bool{}
	for _, group := range groupByName(alerts) {
		if permanent, ok := failedName[group[0].Name]; ok {
			if permanent {
				p.failed = append(p.failed, group...)
			} else {
				p.retry = append(p.retry, group...)
			}
			continue
		}
		rctx, cancel := requestContext(ctx)
		err := w.post(rctx, w.message(group))
		cancel()
		switch {
		case err == nil:
			continue
		case kanban.IsPermanent(err):
			p.failed = append(p.failed, group...)
			p.failedErrs = append(p.failedErrs, err)
		default:
			p.retry = append(p.retry, group...)
			p.retryErrs = append(p.retryErrs, err)
		}
		failedName[group[0].Name] = kanban.IsPermanent(err)
		p.errs = append(p.errs, err)
	}
	switch {
	case len(p.errs) == 0:
		return nil
	case len(p.retry) == 0:
		return kanban.Permanent(p)
	}
	return p
}

// partialError is the failure of a Notify that sends alerts in several
// requests: it tells the evaluator's retry loop which alerts went out,
// which failed for good and which are worth sending again.
type partialError struct {
	failed     []Alert // alerts whose request failed for good
	failedErrs []error
	retry      []Alert // alerts whose request may succeed if retried
	retryErrs  []error
	errs       []error // every failure, in order
}

// delivered returns the alerts of batch, the alerts of the Notify call,
// whose requests went out. The notifications of an alert that did not go
// out are its last ones (a message waits for the one of its name before
// it): of an alert with n notifications undelivered, all but its last n
// went out.
func (e *partialError) delivered(batch []Alert) []Alert {
	undelivered := make(map[string]int, len(e.failed)+len(e.retry))
	for _, a := range slices.Concat(e.failed, e.retry) {
		undelivered[a.Fingerprint]++
	}
	left := make(map[string]int, len(undelivered)) // notifications of each to come
	for _, a := range batch {
		if _, ok := undelivered[a.Fingerprint]; ok {
			left[a.Fingerprint]++
		}
	}
	out := make([]Alert, 0, len(batch))
	for _, a := range batch {
		n, ok := undelivered[a.Fingerprint]
		if ok {
			left[a.Fingerprint]--
			if left[a.Fingerprint] < n {
				continue // one of the last n
			}
		}
		out = append(out, a)
	}
	return out
}

// Error returns the failures' texts, one a line.
func (e *partialError) Error() string { return errors.Join(e.errs...).Error() }

// RetryAfter returns the longest wait the answers worth a retry asked for
// with Retry-After, 0 if none did: retrying sooner would ask one of those
// receivers again before it said it could answer.
func (e *partialError) RetryAfter() time.Duration {
	return tai.RetryAfter(errors.Join(e.retryErrs...))
}

// Unwrap returns the failures with any kanban.PermanentError taken off, so
// that kanban.IsPermanent reports on the whole: a partialError is wrapped
// in kanban.Permanent when no failure is worth a retry.
func (e *partialError) Unwrap() []error {
	out := make([]error, len(e.errs))
	for i, err := range e.errs {
		if p := (*kanban.PermanentError)(nil); errors.As(err, &p) && p.Err != nil {
			err = p.Err
		}
		out[i] = err
	}
	return out
}

// groupByName splits alerts by Name, keeping the order of first sight,
// into groups that hold one notification of each alert (by Fingerprint):
// a later one of an alert a group holds already starts the next group of
// the name, after it.
func groupByName(alerts []Alert) [][]Alert {
	var groups [][]Alert
	at := map[string]int{}   // name → its last group
	last := map[string]int{} // fingerprint → the group of its last notification
	for _, a := range alerts {
		i, ok := at[a.Name]
		if g, held := last[a.Fingerprint]; ok && held && g == i {
			ok = false
		}
		if !ok {
			i = len(groups)
			at[a.Name] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], a)
		last[a.Fingerprint] = i
	}
	return groups
}

func (w *Webhook) message(alerts []Alert) WebhookMessage {
	m := WebhookMessage{Version: "4", Status: "resolved", Receiver: w.opts.Receiver, ExternalURL: w.opts.ExternalURL,
		GroupLabels: map[string]string{"alertname": alerts[0].Name}}
	m.GroupKey = "{}:{alertname=" + strconv.Quote(alerts[0].Name) + "}"
	m.CommonLabels = common(alerts, func(a Alert) map[string]string { return a.Labels })
	m.CommonAnnotations = common(alerts, func(a Alert) map[string]string { return a.Annotations })
	for _, a := range alerts {
		wa := WebhookAlert{Status: status(a), Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.FiredAt,
			GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint}
		if a.State == Resolved {
			wa.EndsAt = a.ResolvedAt
		} else {
			m.Status = "firing"
		}
		m.Alerts = append(m.Alerts, wa)
	}
	return m
}

// common returns the pairs every alert's map shares.
func common(alerts []Alert, of func(Alert) map[string]string) map[string]string {
	out := maps.Clone(of(alerts[0]))
	if out == nil {
		out = map[string]string{}
	}
	for _, a := range alerts[1:] {
		m := of(a)
		for k, v := range out {
			if m[k] != v {
				delete(out, k)
			}
		}
	}
	return out
}

func (w *Webhook) post(ctx context.Context, body any) error {
	return postJSON(ctx, w.client, w.opts.URL, w.opts.Header, body)
}

// newClient returns the client a notifier builds when given none. It does
// not follow redirects: on a 301, 302 or 303 a client re-sends a POST as
// a GET without its body, so the notification would be lost, and its
// answer would read as success; postJSON reports the 3xx instead.
func newClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// retryable reports whether a POST answered with code is worth retrying:
// 5xx, 408 Request Timeout, 425 Too Early and 429 Too Many Requests.
func retryable(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return code >= 500
}

// redactURL returns u as an error may name it: scheme and host, with "/…"
// standing for any path and query, which may hold a token (as a Slack
// webhook's path does). The userinfo is left out.
func redactURL(u *url.URL) string {
	if u == nil {
		return "(no URL)"
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.Opaque != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		s += "/…"
	}
	return s
}

// redactQuoted replaces with "…" the parts of u that may hold a token
// (its path, query, the values of the query, the password, or the user
// name when there is no password, and the Basic credentials the client
// sends for them) where an answer's text quotes them, as many servers'
// "not found" pages quote the path ("Cannot POST /services/…"), and so
// the values of the headers the request was given, and each of their
// words after the first ("Bearer …"), as an "invalid token" answer may
// quote its credential: the text goes into an error that is logged.
// Values shorter than 4 bytes, which would blot out the text around them
// and hold no token, are left. When the text was cut from a longer
// answer, cut is set, and an end of it that begins one of those values
// is "…" too: the cut must not quote the start of a token.
func redactQuoted(text string, cut bool, u *url.URL, header http.Header) string {
	var parts []string
	add := func(s string) {
		if len(s) >= 4 {
			parts = append(parts, s)
		}
	}
	if u.Path != "/" {
		add(u.Path)
		add(u.EscapedPath())
		add(u.RequestURI())
	}
	add(u.RawQuery)
	if q, err := url.QueryUnescape(u.RawQuery); err == nil {
		add(q)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	if u.User != nil {
		// The client sends the userinfo as a Basic Authorization header.
		// A user name without a password is the credential itself.
		p, ok := u.User.Password()
		if ok {
			add(p)
		} else {
			add(u.User.Username())
		}
		add(base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + p)))
	}
	for _, vs := range header {
		for _, v := range vs {
			add(v)
			if fs := strings.Fields(v); len(fs) > 1 {
				for _, f := range fs[1:] { // the credentials after a scheme
					add(f)
				}
			}
		}
	}
	// The longest first: a path holds its own segments' values.
	slices.SortFunc(parts, func(a, b string) int { return len(b) - len(a) })
	for _, p := range parts {
		text = strings.ReplaceAll(text, p, "…")
	}
	if cut {
		begun := 0 // the longest end of text that begins a value
		for _, p := range parts {
			for n := min(len(p)-1, len(text)); n > begun; n-- {
				if strings.HasSuffix(text, p[:n]) {
					begun = n
					break
				}
			}
		}
		if begun > 0 {
			text = text[:len(text)-begun] + "…"
		}
	}
	return text
}

// maxQuote bounds how much of an answer an error quotes.
const maxQuote = 512

// redactError replaces the URL of a *url.Error in err's chain, which
// http.Client puts there whole but for the password, by redacted.
func redactError(err error, redacted string) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		ue.URL = redacted
	}
	return err
}

// postJSON POSTs body as JSON and classifies the answer: 2xx is nil; 5xx,
// 408, 425, 429 and transport errors are retryable; other statuses,
// redirects among them, are permanent. Errors name the URL redacted.
func postJSON(ctx context.Context, c *http.Client, rawURL string, header http.Header, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return kanban.Permanent(fmt.Errorf("andon: encoding notification: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(b))
	if err != nil {
		return kanban.Permanent(fmt.Errorf("andon: notification request: %w", redactError(err, "(redacted)")))
	}
	where := redactURL(req.URL)
	for k, vs := range header {
		req.Header[k] = slices.Clone(vs)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("andon: POST %s: %w", where, redactError(err, where))
	}
	defer drainClose(resp.Body)
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxQuote+1))
	cut := len(msg) > maxQuote
	msg = msg[:min(len(msg), maxQuote)]
	if resp.Request != nil && resp.Request.Method != http.MethodPost {
		// The client followed a 301, 302 or 303 and sent a GET: the
		// receiver never got the notification, whatever it answered.
		return kanban.Permanent(fmt.Errorf("andon: POST %s: redirected to %s as a %s; the notification was not delivered",
			where, redactURL(resp.Request.URL), resp.Request.Method))
	}
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("andon: POST %s: %s: %s", where, resp.Status, redactQuoted(strings.TrimSpace(string(msg)), cut, req.URL, header))
	if loc, lerr := resp.Location(); resp.StatusCode/100 == 3 && lerr == nil {
		err = fmt.Errorf("%w (redirect to %s not followed)", err, redactURL(loc))
	}
	if retryable(resp.StatusCode) {
		if d := retryAfter(resp.Header.Get("Retry-After"), resp.Header.Get("Date")); d > 0 {
			return &retryAfterError{err: err, after: d}
		}
		return err
	}
	return kanban.Permanent(err)
}

// maxDrain bounds how much of an answer drainClose reads past what an
// error quotes, as net/http's server bounds what it reads of a request
// body a handler left unread.
const maxDrain = 256 << 10

// drainClose reads what is left of an answer's body, up to maxDrain bytes,
// and closes it. A body closed before its end closes its connection too:
// every notification would then open a new one (and a TLS handshake).
func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrain)
	_ = body.Close()
}

// retryAfter reads a Retry-After header h, delta-seconds or an HTTP date,
// as a wait of at most maxRetryAfter; 0 means none (or a time that has
// passed). Delta-seconds too large for an int64 ask for the longest wait.
// A date is the receiver's clock's: it is counted from the answer's Date
// header, date, when that is a valid HTTP date (RFC 9110, section
// 10.2.3), so that a receiver whose clock is off this one's gets the
// wait it asked for; from this clock otherwise.
func retryAfter(h, date string) time.Duration {
	h = strings.TrimSpace(h)
	var d time.Duration
	if n, err := strconv.ParseInt(h, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		// n is clamped to what a Duration holds before it is multiplied.
		d = time.Duration(min(max(n, 0), int64(math.MaxInt64/time.Second))) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		if sent, err := http.ParseTime(strings.TrimSpace(date)); err == nil {
			d = t.Sub(sent)
		} else {
			d = time.Until(t)
		}
	}
	return min(max(d, 0), maxRetryAfter)
}

// maxRetryAfter bounds the wait a receiver's Retry-After asks for, in
// either form, and the wait the evaluator takes from any notifier's error
// (tai.RetryAfter): a receiver's clock or a typo must not hold a
// notifier's retries for days.
const maxRetryAfter = 5 * time.Minute

// retryAfterError is a retryable answer that said when to ask again.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter returns the wait the receiver's Retry-After header asked for,
// at most maxRetryAfter.
func (e *retryAfterError) RetryAfter() time.Duration { return e.after }
