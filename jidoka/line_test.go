package jidoka_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

func TestLineStopStart(t *testing.T) {
	c := newManualClock()
	l := jidoka.NewLine(jidoka.LineConfig{Name: "checkout", Clock: c})
	ctx := context.Background()
	assert.Equal(t, "checkout", l.Name())
	require.NoError(t, l.Admit(ctx, "cust_1"))

	assert.True(t, l.Stop("fraud rate 4% > 2%"))
	stoppedAt := c.Now()
	c.Advance(time.Minute)
	assert.False(t, l.Stop("second cord"), "already stopped")
	stopped, reason := l.Stopped()
	assert.True(t, stopped)
	assert.Equal(t, "fraud rate 4% > 2%", reason, "the first reason stays")
	assert.Equal(t, jidoka.LineStatus{Stopped: true, Reason: "fraud rate 4% > 2%", Since: stoppedAt, Stops: 1}, l.Status())

	err := l.Admit(ctx, "cust_1")
	require.ErrorIs(t, err, jidoka.ErrLineStopped)
	assert.Equal(t, `jidoka: line "checkout" is stopped: fraud rate 4% > 2%`, err.Error())
	var se *jidoka.StoppedError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "checkout", se.Line)
	assert.Equal(t, stoppedAt, se.Since)
	assert.Same(t, se, l.Admit(ctx, "cust_2"), "one error value per stop")

	assert.True(t, l.Start())
	assert.False(t, l.Start(), "already running")
	require.NoError(t, l.Admit(ctx, "cust_1"))
	stopped, reason = l.Stopped()
	assert.False(t, stopped)
	assert.Empty(t, reason)
	assert.Equal(t, jidoka.LineStatus{Stops: 1}, l.Status())
}

func TestZeroLine(t *testing.T) {
	var l jidoka.Line
	require.NoError(t, l.Admit(context.Background(), ""))
	assert.True(t, l.Stop(""))
	assert.Equal(t, "jidoka: line is stopped", l.Admit(context.Background(), "").Error())
	assert.False(t, l.Status().Since.IsZero())
	assert.True(t, l.Start())
}

func TestLineEventsReentrant(t *testing.T) {
	var (
		l   *jidoka.Line
		got []jidoka.LineEvent
	)
	c := newManualClock()
	l = jidoka.NewLine(jidoka.LineConfig{Name: "deploy", Clock: c, OnChange: func(ev jidoka.LineEvent) {
		got = append(got, ev)
		if ev.Stopped && ev.Reason == "health" {
			stopped, _ := l.Stopped()
			assert.True(t, stopped)
			l.Start() // delivered after this event
			l.Stop("rollback")
		}
	}})
	l.Stop("health")
	at := c.Now()
	assert.Equal(t, []jidoka.LineEvent{
		{Line: "deploy", Stopped: true, Reason: "health", Time: at},
		{Line: "deploy", Stopped: false, Reason: "health", Time: at},
		{Line: "deploy", Stopped: true, Reason: "rollback", Time: at},
	}, got)
	stopped, reason := l.Stopped()
	assert.True(t, stopped)
	assert.Equal(t, "rollback", reason)
}

func TestLineConcurrent(t *testing.T) {
	var (
		mu     sync.Mutex
		events []jidoka.LineEvent
	)
	l := jidoka.NewLine(jidoka.LineConfig{OnChange: func(ev jidoka.LineEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	var wg sync.WaitGroup
	for g := range 1000 {
		wg.Go(func() {
			for i := range 20 {
				switch (g + i) % 3 {
				case 0:
					l.Stop("cord")
				case 1:
					l.Start()
				default:
					if err := l.Admit(context.Background(), "k"); err != nil {
						assert.ErrorIs(t, err, jidoka.ErrLineStopped)
					}
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i, ev := range events { // stops and starts alternate, beginning with a stop
		require.Equal(t, i%2 == 0, ev.Stopped, "event %d", i)
	}
	stopped, _ := l.Stopped()
	assert.Equal(t, len(events)%2 == 1, stopped)
}

func TestLineIsTaiGate(t *testing.T) {
	l := jidoka.NewLine(jidoka.LineConfig{Name: "payments"})
	var _ tai.Gate = l
	policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	action := tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) { return s.Payload, nil })
	p, err := tai.New(policy, action, tai.WithGates(l))
	require.NoError(t, err)
	sig := tai.Signal[int]{ID: "1", Kind: "payment", Payload: 3}
	res, err := p.Process(context.Background(), sig)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Value)

	l.Stop("fraud spike")
	_, err = p.Process(context.Background(), sig)
	require.ErrorIs(t, err, jidoka.ErrLineStopped)
	assert.Equal(t, tai.Rejected, tai.OutcomeOf(err))
	var re *tai.RejectedError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "payments", re.Hook)
}

func TestLineAdmitAllocs(t *testing.T) {
	l := jidoka.NewLine(jidoka.LineConfig{})
	ctx := context.Background()
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = l.Admit(ctx, "k") }))
	l.Stop("x")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = l.Admit(ctx, "k") }))
}
