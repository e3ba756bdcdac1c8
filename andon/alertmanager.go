package andon

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/taipattern/taikit/kanban"
)

// AlertmanagerOptions configures an Alertmanager notifier.
type AlertmanagerOptions struct {
	// URL is the Alertmanager's base URL ("http://alertmanager:9093");
	// alerts go to its path + "/api/v2/alerts", with its query. Required.
	URL string
	// Client sends the requests. Nil means a client of its own, which
	// does not follow redirects; the evaluator bounds each request with
	// NotifyOptions.Timeout.
	Client *http.Client
	// Header is added to every request (an Authorization header). An
	// error that quotes the answer reads "…" where the answer repeats one
	// of its values, or the token of "Bearer <token>".
	Header http.Header
}

// Alertmanager is a Notifier that pushes alerts to Prometheus
// Alertmanager through its API v2 (POST /api/v2/alerts), as a Prometheus
// server does: labels, annotations, startsAt (when the alert fired),
// generatorURL, and endsAt — the alert's ValidUntil while it fires, its
// resolve time once it resolves. It is a Refresher: the evaluator re-sends
// firing alerts every NotifyOptions.ResendInterval, so Alertmanager keeps
// them active, and lets them expire if the process dies; and, as
// Prometheus does, it re-sends a resolution at that interval for 15
// minutes, so that an Alertmanager that restarted and lost the alerts it
// held still tells its receivers the alert resolved.
//
// Make one with NewAlertmanager; the zero Alertmanager is not usable: it
// has no URL, and Notify returns a permanent error saying it was not made
// by NewAlertmanager.
type Alertmanager struct {
	url    string
	header http.Header
	client *http.Client
}

// NewAlertmanager returns an Alertmanager notifier, or an error naming the
// bad option.
func NewAlertmanager(opts AlertmanagerOptions) (*Alertmanager, error) {
	if err := checkURL("AlertmanagerOptions.URL", opts.URL); err != nil {
		return nil, err
	}
	c := opts.Client
	if c == nil {
		c = newClient()
	}
	u, _ := url.Parse(opts.URL) // checked above
	// The path goes after the base's path and before its query, which
	// may hold a proxy's token.
	u = u.JoinPath("api/v2/alerts")
	u.Fragment, u.RawFragment = "", ""
	return &Alertmanager{url: u.String(), header: opts.Header.Clone(), client: c}, nil
}

// errAlertmanagerNotMade is the error of Notify on an Alertmanager that
// NewAlertmanager did not make: it has no URL, and no retry would give it
// one.
var errAlertmanagerNotMade = kanban.Permanent(errors.New("andon: Alertmanager not made by NewAlertmanager"))

// Name returns "alertmanager".
func (*Alertmanager) Name() string { return "alertmanager" }

// Refreshes returns true: Alertmanager forgets alerts that are not re-sent.
func (*Alertmanager) Refreshes() bool { return true }

// PostableAlert is one alert as Alertmanager's API v2 takes it.
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Notify POSTs the alerts in one request. A 2xx answer is success; 5xx,
// 408, 425, 429 and transport errors are worth a retry, and any other
// status is a permanent error (kanban.Permanent). A retryable answer with
// a Retry-After header, in seconds or an HTTP date (counted from the
// answer's Date when it has a valid one), gives the error a retry hint
// (tai.RetryAfter) of that wait, at most 5 minutes, as the evaluator
// would wait.
func (am *Alertmanager) Notify(ctx context.Context, alerts []Alert) error {
	if am.client == nil {
		return errAlertmanagerNotMade
	}
	body := make([]PostableAlert, len(alerts))
	for i, a := range alerts {
		p := PostableAlert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.FiredAt, EndsAt: a.ValidUntil, GeneratorURL: a.GeneratorURL}
		if a.State == Resolved {
			p.EndsAt = a.ResolvedAt
		}
		body[i] = p
	}
	return postJSON(ctx, am.client, am.url, am.header, body)
}
