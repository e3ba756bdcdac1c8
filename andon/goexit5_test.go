package andon_test

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// A notifier that ends the worker's goroutine with runtime.Goexit (a
// t.FailNow in a test's notifier) fails its batch as a panic does; the
// notifier still hears of later alerts, and Flush and Shutdown return.
func TestNotifierGoexitFailsTheBatch(t *testing.T) {
	synctest.Test(t, testNotifierGoexitFailsTheBatch)
}

func testNotifierGoexitFailsTheBatch(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var got []string
	n := notifierFunc(func(_ context.Context, alerts []andon.Alert) error {
		if calls.Add(1) == 1 {
			runtime.Goexit()
		}
		mu.Lock()
		defer mu.Unlock()
		for _, a := range alerts {
			got = append(got, a.Name+" "+a.State.String())
		}
		return nil
	})
	a, b := newSwitch(), newSwitch()
	var logs bytes.Buffer
	var lmu sync.Mutex
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Notify: noWait,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil)),
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a},
			{Name: "B", Severity: andon.Page, Condition: b}}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.Set(true)
	e.EvaluateAt(ctx, t0)
	require.NoError(t, e.Flush(ctx), "Flush returns after the Goexit")
	b.Set(true)
	e.EvaluateAt(ctx, t0.Add(time.Minute))
	require.NoError(t, e.Flush(ctx))
	require.NoError(t, e.Shutdown(ctx), "Shutdown finds no worker gone missing")

	mu.Lock()
	assert.Equal(t, []string{"B firing"}, got, "the worker goes on after the Goexit")
	mu.Unlock()
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 1, st.Failed, "the batch that ended in Goexit is failed")
	assert.EqualValues(t, 1, st.Sent)
	lmu.Lock()
	assert.Contains(t, logs.String(), "runtime.Goexit")
	lmu.Unlock()
}
