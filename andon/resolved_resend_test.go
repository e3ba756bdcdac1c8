package andon_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// A Prometheus server keeps a resolved alert for 15 minutes and re-sends
// it to Alertmanager every resend delay meanwhile: an Alertmanager that
// restarted after the resolution came, and lost it with the alerts it
// holds in memory, still tells its receivers that the alert resolved.
func TestAlertmanagerResendsResolvedAlertsForFifteenMinutes(t *testing.T) {
	srv := newAMServer(t)
	am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: srv.URL})
	require.NoError(t, err)
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{am}, Interval: 15 * time.Second,
		Notify: andon.NotifyOptions{ResendInterval: time.Minute},
		Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	evaluateAndFlush(t, e, 0)
	cond.Set(false)
	for at := time.Minute; at <= 17*time.Minute; at += 30 * time.Second {
		evaluateAndFlush(t, e, at)
	}
	posts := srv.got()
	require.NotEmpty(t, posts)
	for _, p := range posts[1:] {
		require.Len(t, p, 1)
		assert.Equal(t, t0, p[0].StartsAt.UTC(), "startsAt is when it fired")
		assert.Equal(t, t0.Add(time.Minute), p[0].EndsAt.UTC(), "endsAt is when it resolved")
	}
	// Sent when it resolved at 1m, then every minute until 15 minutes
	// have passed since.
	assert.Len(t, posts, 1+16, "the firing alert, then the resolution at 1m, 2m, …, 16m")
}

// A Refresher hears a resolution again only while the alert stays
// resolved: once it fires again, the new firing alert replaces it, and
// its own resolution is re-sent in its turn.
func TestRefresherStopsResendingAResolutionOnceTheAlertFiresAgain(t *testing.T) {
	rec := &refreshingRecorder{}
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec}, Interval: 15 * time.Second,
		Notify: andon.NotifyOptions{ResendInterval: time.Minute},
		Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	for _, s := range []struct {
		at     time.Duration
		active bool
	}{{0, true}, {time.Minute, false}, {2 * time.Minute, false}, {150 * time.Second, true}, {3 * time.Minute, true},
		{4 * time.Minute, false}, {5 * time.Minute, false}, {6 * time.Minute, false}} {
		cond.Set(s.active)
		evaluateAndFlush(t, e, s.at)
	}
	var got []string
	for _, a := range rec.told() {
		at := a.FiredAt
		if a.State == andon.Resolved {
			at = a.ResolvedAt
		}
		got = append(got, a.State.String()+" "+at.Sub(t0).String())
	}
	assert.Equal(t, []string{
		"firing 0s", "resolved 1m0s", "resolved 1m0s", // re-sent at 2m
		"firing 2m30s", // fires again: no more re-sends of the old resolution
		"resolved 4m0s", "resolved 4m0s", "resolved 4m0s",
	}, got)
}

// refreshingRecorder is a recorder that is a Refresher.
type refreshingRecorder struct{ recorder }

func (*refreshingRecorder) Refreshes() bool { return true }
