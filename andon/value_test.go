package andon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// jsonNotifier encodes each batch as JSON, as a notifier of a program's
// own does with the Alert's JSON form.
type jsonNotifier struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (n *jsonNotifier) Notify(_ context.Context, alerts []andon.Alert) error {
	b, err := json.Marshal(alerts)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.bodies = append(n.bodies, b)
	return nil
}

func (n *jsonNotifier) got() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][]byte(nil), n.bodies...)
}

// A condition may measure NaN or an infinity (a quantile past the last
// bucket is +Inf, as in Prometheus): the alert carries it, and every
// notifier, the board and the Alert's and Transition's JSON forms carry
// it through, as the strings "NaN", "+Inf" and "-Inf" where JSON has no
// number for it.
func TestValuesJSONCannotCarryReachEveryNotifier(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		t.Run(andon.UnitNone.Format(v), func(t *testing.T) {
			var hooked atomic.Int32
			cond := andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
				return andon.Measurement{Active: true, Value: v, Threshold: v, Samples: 1}, nil
			})
			wsrv := newWebhookServer(t, 0, 0)
			wh, err := andon.NewWebhook(andon.WebhookOptions{URL: wsrv.URL})
			require.NoError(t, err)
			amsrv := newAMServer(t)
			am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: amsrv.URL})
			require.NoError(t, err)
			var logs bytes.Buffer
			var mu sync.Mutex
			sl := andon.SlogNotifier(slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, nil)))
			own := &jsonNotifier{}
			e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh, am, sl, own}, Logger: discardLogger(),
				Notify: andon.NotifyOptions{MaxAttempts: 1},
				Rules: []andon.Rule{{Name: "Odd", Severity: andon.Page, Condition: cond, Summary: "value {{ $value }}",
					Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { hooked.Add(1) }}}}}})
			b, err := andon.NewBoard(e, andon.BoardOptions{})
			require.NoError(t, err)

			e.EvaluateAt(context.Background(), t0)
			require.NoError(t, e.Flush(context.Background()))
			a, _ := e.Alert("Odd")
			assert.Equal(t, andon.Firing, a.State)
			assert.Equal(t, andon.UnitNone.Format(v), a.ValueText(), "the alert carries the value")
			assert.EqualValues(t, 1, hooked.Load())
			for i, st := range e.NotifierStats() {
				assert.EqualValues(t, 1, st.Sent, "notifier %d: %+v", i, st)
				assert.Zero(t, st.Failed, "notifier %d", i)
			}
			require.Len(t, wsrv.got(), 1)
			assert.Equal(t, "value "+andon.UnitNone.Format(v), wsrv.got()[0].Alerts[0].Annotations["summary"])
			require.Len(t, amsrv.got(), 1)
			mu.Lock()
			assert.Contains(t, logs.String(), `"value":"`+andon.UnitNone.Format(v)+`"`)
			mu.Unlock()

			// The Alert's JSON form, as a notifier of one's own sends it,
			// carries the value as a string and reads it back.
			require.Len(t, own.got(), 1)
			var back []andon.Alert
			require.NoError(t, json.Unmarshal(own.got()[0], &back))
			require.Len(t, back, 1)
			assert.Equal(t, a.ValueText(), back[0].ValueText())
			assert.Equal(t, andon.UnitNone.Format(v), andon.UnitNone.Format(back[0].Threshold))
			hist, err := json.Marshal(e.History())
			require.NoError(t, err)
			var trs []andon.Transition
			require.NoError(t, json.Unmarshal(hist, &trs))
			require.Len(t, trs, 1)
			assert.Equal(t, andon.UnitNone.Format(v), andon.UnitNone.Format(trs[0].Value))
			recent, err := json.Marshal(e.Recent("Odd"))
			require.NoError(t, err)
			var points []andon.Point
			require.NoError(t, json.Unmarshal(recent, &points))
			require.Len(t, points, 1)
			assert.Equal(t, andon.UnitNone.Format(v), andon.UnitNone.Format(points[0].Value))

			rec := httptest.NewRecorder()
			b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/state", nil))
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			assert.Contains(t, rec.Body.String(), `"value_text":"`+andon.UnitNone.Format(v)+`"`)
		})
	}
}

// The JSON form of a finite value is the number encoding/json writes.
func TestAlertJSONOfFiniteValues(t *testing.T) {
	a := andon.Alert{Name: "R", Value: 0.25, Threshold: 1e-7}
	b, err := json.Marshal(a)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"value":0.25,"threshold":1e-7,`)
	var back andon.Alert
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, a.Value, back.Value)
	assert.Equal(t, a.Threshold, back.Threshold)
	tb, err := json.Marshal(andon.Transition{Rule: "R", Value: 3})
	require.NoError(t, err)
	assert.Contains(t, string(tb), `"value":3}`)
	pb, err := json.Marshal(andon.Point{Value: 2})
	require.NoError(t, err)
	assert.Equal(t, `{"t":"0001-01-01T00:00:00Z","v":2}`, string(pb))

	// null leaves a value as encoding/json does; a string that is no
	// value is refused.
	back = andon.Alert{Value: 7}
	require.NoError(t, json.Unmarshal([]byte(`{"value":null}`), &back))
	assert.Equal(t, 7.0, back.Value)
	require.ErrorContains(t, json.Unmarshal([]byte(`{"threshold":"high"}`), &back), `value "high" is not a number`)
}

// TestPointJSONAsEncodingJSON: a Point's JSON is what encoding/json
// writes for its fields, for values with and without an exponent and for
// times in any zone, and reads back to the same point.
func TestPointJSONAsEncodingJSON(t *testing.T) {
	type plain struct {
		T time.Time `json:"t"`
		V float64   `json:"v"`
	}
	values := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1.0 / 3, 2.5e-6, 1e-6, 9.99e-7, 1e-7, -1.5e-300,
		5e-324, 1e20, 1e21, -1e21, 123456789.125, math.MaxFloat64, -math.MaxFloat64, 1e-10, 1e100}
	for i := range 200 {
		values = append(values, math.Float64frombits(uint64(i)*0x9e3779b97f4a7c15))
	}
	times := []time.Time{{}, t0, t0.Add(123456789 * time.Nanosecond).In(time.FixedZone("X", -7*3600-30*60))}
	for _, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		for _, tm := range times {
			want, err := json.Marshal(plain{tm, v})
			require.NoError(t, err)
			got, err := json.Marshal(andon.Point{Time: tm, Value: v})
			require.NoError(t, err)
			require.Equal(t, string(want), string(got), "%v at %v", v, tm)
			var back andon.Point
			require.NoError(t, json.Unmarshal(got, &back))
			assert.True(t, back.Time.Equal(tm))
			assert.Equal(t, math.Float64bits(v), math.Float64bits(back.Value))
		}
	}
	for v, want := range map[float64]string{math.Inf(1): `"+Inf"`, math.Inf(-1): `"-Inf"`, math.NaN(): `"NaN"`} {
		got, err := json.Marshal(andon.Point{Value: v})
		require.NoError(t, err)
		assert.Equal(t, `{"t":"0001-01-01T00:00:00Z","v":`+want+`}`, string(got))
	}
	_, err := json.Marshal(andon.Point{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	assert.Error(t, err, "a year JSON's time cannot carry")
}
