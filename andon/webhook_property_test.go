package andon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/andon"
)

// messageTransport answers every request in process, recording its
// message, and answers 503 to the messages of the alert names in down.
type messageTransport struct {
	mu   sync.Mutex
	got  []andon.WebhookMessage
	down map[string]bool
}

func (tr *messageTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	var m andon.WebhookMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	code := http.StatusOK
	tr.mu.Lock()
	if tr.down[m.GroupLabels["alertname"]] {
		code = http.StatusServiceUnavailable
	} else {
		tr.got = append(tr.got, m)
	}
	tr.mu.Unlock()
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Body: io.NopCloser(strings.NewReader("")),
		Header: http.Header{}, Request: req}, nil
}

// TestWebhookMessagesKeepEachAlertsOrder sends random batches of the
// notifications of a few alerts of a few names, some names' receiver down,
// and checks what the Webhook docs promise: one alert name per message, one
// notification of each alert per message, every notification of a name
// that is up sent once and the notifications of each alert in the order
// of the batch, none of a name that is down, a message's status firing
// while any of its alerts fires, and its common labels those all its
// alerts share.
func TestWebhookMessagesKeepEachAlertsOrder(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		names := []string{"A", "B", "C"}
		var batch []andon.Alert
		for i := range rapid.IntRange(1, 12).Draw(rt, "alerts") {
			name := names[rapid.IntRange(0, len(names)-1).Draw(rt, "name")]
			region := []string{"eu", "us"}[rapid.IntRange(0, 1).Draw(rt, "region")]
			state := []andon.AlertState{andon.Firing, andon.Resolved}[rapid.IntRange(0, 1).Draw(rt, "state")]
			labels := map[string]string{"alertname": name, "region": region}
			batch = append(batch, andon.Alert{Name: name, State: state, Labels: labels, Fingerprint: name + "/" + region,
				Annotations: map[string]string{"n": fmt.Sprint(i)}, FiredAt: t0, ResolvedAt: t0.Add(time.Minute)})
		}
		down := map[string]bool{}
		for _, n := range names {
			down[n] = rapid.IntRange(0, 3).Draw(rt, "down "+n) == 0
		}
		tr := &messageTransport{down: down}
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: "http://receiver.test/hook", Client: &http.Client{Transport: tr}})
		if err != nil {
			rt.Fatal(err)
		}
		err = wh.Notify(context.Background(), slices.Clone(batch))
		if slices.ContainsFunc(batch, func(a andon.Alert) bool { return down[a.Name] }) != (err != nil) {
			rt.Fatalf("error %v with names down %v", err, down)
		}

		// The notifications each alert was sent, in order, by their "n".
		sent := map[string][]string{}
		for _, m := range tr.got {
			seen := map[string]bool{}
			firing := false
			for i, a := range m.Alerts {
				if a.Labels["alertname"] != m.GroupLabels["alertname"] {
					rt.Fatalf("message of %s holds an alert of %s", m.GroupLabels["alertname"], a.Labels["alertname"])
				}
				if seen[a.Fingerprint] {
					rt.Fatalf("message holds alert %s twice: %+v", a.Fingerprint, m.Alerts)
				}
				seen[a.Fingerprint] = true
				firing = firing || a.Status == "firing"
				sent[a.Fingerprint] = append(sent[a.Fingerprint], a.Annotations["n"])
				for k, v := range m.CommonLabels {
					if a.Labels[k] != v {
						rt.Fatalf("common label %s=%s, alert %d has %q", k, v, i, a.Labels[k])
					}
				}
			}
			for k, v := range m.Alerts[0].Labels {
				if _, ok := m.CommonLabels[k]; !ok && !slices.ContainsFunc(m.Alerts, func(a andon.WebhookAlert) bool { return a.Labels[k] != v }) {
					rt.Fatalf("label %s=%s, shared by all, is not common", k, v)
				}
			}
			if want := map[bool]string{true: "firing", false: "resolved"}[firing]; m.Status != want {
				rt.Fatalf("message status %s, want %s", m.Status, want)
			}
		}
		want := map[string][]string{}
		for i, a := range batch {
			if !down[a.Name] {
				want[a.Fingerprint] = append(want[a.Fingerprint], fmt.Sprint(i))
			}
		}
		if !maps.EqualFunc(sent, want, slices.Equal) {
			rt.Fatalf("sent %v, want %v", sent, want)
		}
	})
}
