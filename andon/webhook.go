package andon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taipattern/taikit/kanban"
)

// WebhookOptions configures a Webhook.
type WebhookOptions struct {
	// URL receives the POSTs. Required; http or https.
	URL string
	// Client sends the requests. Nil means a client of its own; the
	// evaluator bounds each request with NotifyOptions.Timeout.
	Client *http.Client
	// Header is added to every request (an Authorization header).
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
// startsAt, endsAt, generatorURL and fingerprint.
//
// A 2xx answer is success; 5xx, 429 and transport errors are retried; any
// other status is a permanent error (kanban.Permanent).
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
		c = &http.Client{}
	}
	return &Webhook{opts: opts, client: c}, nil
}

func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("andon: %s %q: %w", field, s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("andon: %s %q is not an http or https URL", field, s)
	}
	return nil
}

// Name returns "webhook".
func (*Webhook) Name() string { return "webhook" }

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

// Notify POSTs one message per alert name.
func (w *Webhook) Notify(ctx context.Context, alerts []Alert) error {
	var errs []error
	for _, group := range groupByName(alerts) {
		msg := w.message(group)
		if err := w.post(ctx, msg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// groupByName splits alerts by Name, keeping the order of first sight.
func groupByName(alerts []Alert) [][]Alert {
	var groups [][]Alert
	at := map[string]int{}
	for _, a := range alerts {
		i, ok := at[a.Name]
		if !ok {
			i = len(groups)
			at[a.Name] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], a)
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

// postJSON POSTs body as JSON and classifies the answer: 2xx is nil; 5xx,
// 429 and transport errors are retryable; other statuses are permanent.
func postJSON(ctx context.Context, c *http.Client, url string, header http.Header, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return kanban.Permanent(fmt.Errorf("andon: encoding notification: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return kanban.Permanent(fmt.Errorf("andon: notification request: %w", err))
	}
	for k, vs := range header {
		req.Header[k] = slices.Clone(vs)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("andon: POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("andon: POST %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return err
	}
	return kanban.Permanent(err)
}
