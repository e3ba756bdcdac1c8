package jidoka_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

func newLine(t testing.TB, opts jidoka.LineOptions) *jidoka.Line {
	t.Helper()
	l, err := jidoka.NewLine(opts)
	require.NoError(t, err)
	return l
}

func TestNewLineValidates(t *testing.T) {
	l, err := jidoka.NewLine(jidoka.LineOptions{RetryAfter: -time.Second})
	assert.Nil(t, l)
	require.EqualError(t, err, "jidoka: line RetryAfter must not be negative, got -1s")
}

func TestLineStopStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLine(t, jidoka.LineOptions{Name: "checkout"})
		ctx := context.Background()
		assert.Equal(t, "checkout", l.Name())
		require.NoError(t, l.Admit(ctx, "cust_1"))

		assert.True(t, l.Stop("fraud rate 4% > 2%"))
		stoppedAt := time.Now()
		time.Sleep(time.Minute)
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
		assert.Zero(t, se.RetryAfter(), "no hint configured")
		assert.Same(t, se, l.Admit(ctx, "cust_2"), "one error value per stop")

		assert.True(t, l.Start())
		assert.False(t, l.Start(), "already running")
		require.NoError(t, l.Admit(ctx, "cust_1"))
		stopped, reason = l.Stopped()
		assert.False(t, stopped)
		assert.Empty(t, reason)
		assert.Equal(t, jidoka.LineStatus{Stops: 1}, l.Status())

		time.Sleep(time.Minute)
		assert.True(t, l.Stop("again"))
		assert.Equal(t, jidoka.LineStatus{Stopped: true, Reason: "again", Since: time.Now(), Stops: 2}, l.Status())
	})
}

func TestLineRetryAfter(t *testing.T) {
	l := newLine(t, jidoka.LineOptions{Name: "payments", RetryAfter: time.Minute})
	require.NoError(t, l.Admit(context.Background(), "k"))
	l.Stop("fraud spike")
	err := l.Admit(context.Background(), "k")
	var se *jidoka.StoppedError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, time.Minute, se.RetryAfter())
	assert.Equal(t, time.Minute, tai.RetryAfter(fmt.Errorf("wrapped: %w", err)), "tai finds the hint by its method")
}

func TestZeroLine(t *testing.T) {
	var l jidoka.Line
	require.NoError(t, l.Admit(context.Background(), ""))
	assert.True(t, l.Stop(""))
	assert.Equal(t, "jidoka: line is stopped", l.Admit(context.Background(), "").Error())
	assert.False(t, l.Status().Since.IsZero())
	assert.Zero(t, tai.RetryAfter(l.Admit(context.Background(), "")))
	assert.True(t, l.Start())
}

func TestLineEventsReentrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			l   *jidoka.Line
			got []jidoka.LineEvent
		)
		l = newLine(t, jidoka.LineOptions{Name: "deploy", OnChange: func(ev jidoka.LineEvent) {
			got = append(got, ev)
			if ev.Stopped && ev.Reason == "health" {
				stopped, _ := l.Stopped()
				assert.True(t, stopped)
				l.Start() // delivered after this event
				l.Stop("rollback")
			}
		}})
		at := time.Now()
		l.Stop("health")
		assert.Equal(t, []jidoka.LineEvent{
			{Line: "deploy", Stopped: true, Reason: "health", Time: at},
			{Line: "deploy", Stopped: false, Reason: "health", Time: at},
			{Line: "deploy", Stopped: true, Reason: "rollback", Time: at},
		}, got)
		stopped, reason := l.Stopped()
		assert.True(t, stopped)
		assert.Equal(t, "rollback", reason)
	})
}

// TestLineListenerPanicIsRecovered: a panicking OnChange changes nothing
// for the caller of Stop or Start; it is logged, and later events arrive.
func TestLineListenerPanicIsRecovered(t *testing.T) {
	var got []bool
	logs := &logRecorder{}
	l := newLine(t, jidoka.LineOptions{Name: "checkout", Logger: logs.logger(), OnChange: func(ev jidoka.LineEvent) {
		got = append(got, ev.Stopped)
		if ev.Stopped {
			panic(fmt.Errorf("listener bug"))
		}
	}})
	assert.True(t, l.Stop("cord"))
	stopped, _ := l.Stopped()
	assert.True(t, stopped)
	assert.True(t, l.Start())
	assert.Equal(t, []bool{true, false}, got)
	recs := logs.records()
	require.Len(t, recs, 1)
	assert.Equal(t, slog.LevelError, recs[0].Level)
	assert.Equal(t, "checkout", recs[0].attrs["line"])
	assert.Equal(t, "line OnChange", recs[0].attrs["where"])
	assert.Equal(t, "listener bug", recs[0].attrs["panic"])
	assert.Contains(t, recs[0].attrs["stack"], "TestLineListenerPanicIsRecovered")
}

func TestLineConcurrent(t *testing.T) {
	var (
		mu     sync.Mutex
		events []jidoka.LineEvent
	)
	l := newLine(t, jidoka.LineOptions{OnChange: func(ev jidoka.LineEvent) {
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
	assert.Equal(t, uint64((len(events)+1)/2), l.Status().Stops)
}

func TestLineIsTaiGate(t *testing.T) {
	l := newLine(t, jidoka.LineOptions{Name: "payments"})
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
	l := newLine(t, jidoka.LineOptions{})
	ctx := context.Background()
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = l.Admit(ctx, "k") }))
	l.Stop("x")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = l.Admit(ctx, "k") }))
}

// TestLineStatusIsOneMoment: a Status read while the line is stopped and
// started shows one state the line was in: a stop's reason with the count
// that stop made, never a stop without its count or a count ahead of it.
func TestLineStatusIsOneMoment(t *testing.T) {
	const cycles = 50000
	l := newLine(t, jidoka.LineOptions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range cycles {
			l.Stop(strconv.Itoa(i + 1)) // the reason is the stop's number
			l.Start()
		}
	}()
	var last uint64
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		st := l.Status()
		require.GreaterOrEqual(t, st.Stops, last, "the count went back")
		last = st.Stops
		if st.Stopped {
			require.Equal(t, strconv.FormatUint(st.Stops, 10), st.Reason, "a stop with another stop's count")
		} else {
			require.Empty(t, st.Reason)
		}
	}
	assert.Equal(t, jidoka.LineStatus{Stops: cycles}, l.Status())
}

// TestLineEndStop: EndStop ends the stop it names and no other, and its
// restart is an event like Start's.
func TestLineEndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []jidoka.LineEvent
		l := newLine(t, jidoka.LineOptions{Name: "checkout", OnChange: func(ev jidoka.LineEvent) { got = append(got, ev) }})
		at := time.Now()
		assert.False(t, l.EndStop(0), "running")
		assert.False(t, l.EndStop(1), "running, never stopped")

		require.True(t, l.Stop("fraud spike"))
		n := l.Status().Stops
		require.EqualValues(t, 1, n)
		assert.False(t, l.EndStop(0), "no stop has the number 0")
		assert.False(t, l.EndStop(n+1), "a stop not made yet")
		assert.True(t, l.Status().Stopped, "a wrong number leaves the line stopped")
		assert.True(t, l.EndStop(n))
		assert.Equal(t, jidoka.LineStatus{Stops: 1}, l.Status())
		assert.False(t, l.EndStop(n), "already ended")

		require.True(t, l.Stop("fraud spike"))
		require.True(t, l.Start(), "someone restarts it")
		require.True(t, l.Stop("fraud spike"), "and stops it again, for the same reason")
		assert.False(t, l.EndStop(n+1), "that stop was ended by Start")
		st := l.Status()
		assert.Equal(t, jidoka.LineStatus{Stopped: true, Reason: "fraud spike", Since: at, Stops: 3}, st)
		assert.True(t, l.EndStop(st.Stops))
		assert.False(t, l.Start(), "EndStop restarted it")

		assert.Equal(t, []jidoka.LineEvent{
			{Line: "checkout", Stopped: true, Reason: "fraud spike", Time: at},
			{Line: "checkout", Stopped: false, Reason: "fraud spike", Time: at},
			{Line: "checkout", Stopped: true, Reason: "fraud spike", Time: at},
			{Line: "checkout", Stopped: false, Reason: "fraud spike", Time: at},
			{Line: "checkout", Stopped: true, Reason: "fraud spike", Time: at},
			{Line: "checkout", Stopped: false, Reason: "fraud spike", Time: at},
		}, got)
	})
}

// TestLineListenerEndingItsGoroutine: an OnChange that ends its goroutine
// with runtime.Goexit (t.FailNow in a test) ends the call that was
// delivering, not the delivery: the events queued behind its own, here a
// Start it made, are delivered before that goroutine ends, not at some
// later stop or start.
func TestLineListenerEndingItsGoroutine(t *testing.T) {
	events := make(chan jidoka.LineEvent, 4)
	var l *jidoka.Line
	l = newLine(t, jidoka.LineOptions{Name: "checkout", OnChange: func(ev jidoka.LineEvent) {
		events <- ev
		if ev.Stopped {
			l.Start() // queued behind this event
			runtime.Goexit()
		}
	}})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		l.Stop("cord")
		t.Error("Stop returned from a listener that ended its goroutine")
	}()
	<-ended
	stopped, _ := l.Stopped()
	require.False(t, stopped)
	require.Len(t, events, 2, "the start was not delivered")
	assert.True(t, (<-events).Stopped)
	assert.False(t, (<-events).Stopped)
}
