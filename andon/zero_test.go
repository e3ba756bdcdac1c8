package andon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kanban"
)

// The zero values of andon's types are not usable: their calls say they
// were not made by their constructor, and neither panic nor wait. Each
// test runs in a synctest bubble, which reports a wait that nothing would
// end as a deadlock.

// TestZeroEvaluatorEvaluatesNothing: Evaluate, EvaluateAt, Pull and Reset
// of the zero Evaluator waited for good for an evaluation slot it does not
// have; Cord and CordName panicked, and so did Run (a ticker of no
// interval) and Shutdown (closing a nil channel).
func TestZeroEvaluatorEvaluatesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var e andon.Evaluator
		require.NotPanics(t, func() {
			assert.Empty(t, e.Evaluate(ctx))
			assert.Empty(t, e.EvaluateAt(ctx, time.Now()))
			assert.False(t, e.Pull(ctx, "smoke", "ops"))
			assert.False(t, e.Reset(ctx))
			assert.Equal(t, andon.CordStatus{}, e.Cord())
			assert.Empty(t, e.CordName())
		})
		require.NotPanics(t, func() { assert.ErrorContains(t, e.Run(ctx), "not made by NewEvaluator") })
		require.NotPanics(t, func() { assert.ErrorContains(t, e.Shutdown(ctx), "not made by NewEvaluator") })
		require.NotPanics(t, func() { assert.ErrorContains(t, e.Shutdown(ctx), "not made by NewEvaluator", "and again") })
		assert.Empty(t, e.Alerts())
		_, ok := e.Alert("x")
		assert.False(t, ok)
		assert.Empty(t, e.History())
		assert.Empty(t, e.Recent("x"))
		assert.Empty(t, e.NotifierStats())
		assert.Empty(t, e.Silences())
		assert.False(t, e.Expire("x"))
		assert.NoError(t, e.Flush(ctx), "it has no notification to deliver")
	})
}

// TestZeroNotifiersFailForGood: Notify of the zero Webhook and of the zero
// Alertmanager panicked (no client); they fail with a permanent error, as
// no retry would give them a URL.
func TestZeroNotifiersFailForGood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		alerts := []andon.Alert{{Name: "HighErrorRate", State: andon.Firing}}
		var w andon.Webhook
		var am andon.Alertmanager
		for _, tc := range []struct {
			n    andon.Notifier
			want string
		}{{&w, "not made by NewWebhook"}, {&am, "not made by NewAlertmanager"}} {
			var err error
			require.NotPanics(t, func() { err = tc.n.Notify(context.Background(), alerts) })
			assert.ErrorContains(t, err, tc.want)
			assert.True(t, kanban.IsPermanent(err), "no retry makes it work")
		}
		assert.Equal(t, "webhook", w.Name())
		assert.Equal(t, "alertmanager", am.Name())
		assert.True(t, am.Refreshes())
	})
}

// TestZeroBoardServesNothing: every method of the zero Board panicked. Its
// ServeHTTP answers 500 in the board's error schema, State shows nothing,
// Notify does nothing, and Shutdown says it was not made by NewBoard.
func TestZeroBoardServesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b andon.Board
		require.NotPanics(t, func() {
			for _, path := range []string{"/", "/api/state", "/api/events"} {
				w := httptest.NewRecorder()
				b.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
				assert.Equal(t, http.StatusInternalServerError, w.Code, path)
				var body struct {
					Error struct{ Code, Message string }
				}
				require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), path)
				assert.Equal(t, "not_made", body.Error.Code, path)
				assert.Contains(t, body.Error.Message, "not made by NewBoard", path)
			}
			st := b.State()
			assert.True(t, st.ReadOnly)
			assert.Empty(t, st.Rules)
			b.Notify()
			assert.ErrorContains(t, b.Shutdown(context.Background()), "not made by NewBoard")
		})
	})
}
