package heijunka_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
)

var t0 = time.Unix(1_900_000_000, 0)

func newLimiter(t testing.TB, l heijunka.Limit) *heijunka.Limiter {
	t.Helper()
	lim, err := heijunka.NewLimiter(l, heijunka.LimiterOptions{Name: "test"})
	require.NoError(t, err)
	return lim
}

func TestLimiterStartsFullAndRefills(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 3})
	for i := range 3 {
		assert.True(t, lim.AllowN(t0, 1), "event %d of the burst", i)
	}
	assert.False(t, lim.AllowN(t0, 1))
	assert.False(t, lim.AllowN(t0.Add(99*time.Millisecond), 1))
	assert.True(t, lim.AllowN(t0.Add(100*time.Millisecond), 1))
	assert.True(t, lim.AllowN(t0.Add(time.Hour), 3), "full after a quiet hour")
	assert.False(t, lim.AllowN(t0.Add(time.Hour), 1), "and not fuller")
}

func TestLimiterDecisions(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 3})
	d := lim.DecideN(t0, 2)
	assert.Equal(t, heijunka.Decision{Allowed: true, Limit: lim.Limit(), Remaining: 1, ResetAfter: 200 * time.Millisecond}, d)
	d = lim.DecideN(t0, 2)
	assert.Equal(t, heijunka.Decision{Limit: lim.Limit(), Remaining: 1, RetryAfter: 100 * time.Millisecond, ResetAfter: 200 * time.Millisecond}, d)
	d = lim.DecideN(t0, 4)
	assert.False(t, d.Allowed)
	assert.Equal(t, heijunka.InfDuration, d.RetryAfter, "more than the burst never passes")
	d = lim.DecideN(t0, -1)
	assert.Equal(t, heijunka.Decision{Limit: lim.Limit(), RetryAfter: heijunka.InfDuration}, d, "negative events never pass")
	d = lim.DecideN(t0, 0)
	assert.True(t, d.Allowed)
	assert.Equal(t, 1, d.Remaining)
}

func TestLimiterSpecialLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit heijunka.Limit
		allow bool
	}{
		{"unlimited", heijunka.Unlimited(), true},
		{"closed", heijunka.Limit{}, false},
		{"closed with a burst", heijunka.Limit{Burst: 10}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := newLimiter(t, tc.limit)
			for range 100 {
				require.Equal(t, tc.allow, lim.AllowN(t0, 1000))
			}
			r := lim.ReserveN(t0, 5)
			assert.Equal(t, tc.allow, r.OK())
			assert.Equal(t, tc.allow, lim.DecideN(t0, 1).Allowed)
			assert.True(t, lim.AllowN(t0, 0), "zero events always pass")
			assert.True(t, lim.DecideN(t0, 0).Allowed, "also when decided")
			assert.False(t, lim.AllowN(t0, -1), "negative events never do")
			err := lim.WaitN(context.Background(), 1000)
			if tc.allow {
				assert.NoError(t, err, "an Unlimited Limit passes more events than its Burst")
			} else {
				assert.ErrorIs(t, err, heijunka.ErrLimited)
			}
			assert.ErrorIs(t, lim.WaitN(context.Background(), -1), heijunka.ErrLimited, "negative events never pass")
		})
	}
	var zero heijunka.Limiter
	assert.False(t, zero.Allow(), "the zero Limiter admits nothing")
	assert.False(t, zero.AllowN(t0, 0))
	assert.False(t, zero.Reserve().OK())
	assert.Equal(t, heijunka.Decision{RetryAfter: heijunka.InfDuration}, zero.Decide())
	assert.Equal(t, heijunka.Limit{}, zero.Limit())
	assert.ErrorIs(t, zero.Wait(context.Background()), heijunka.ErrLimited)
	assert.ErrorContains(t, zero.SetLimit(heijunka.PerSecond(1)), "not made by NewLimiter")
	assert.ErrorContains(t, zero.SetLimitAt(t0, heijunka.PerSecond(1)), "not made by NewLimiter")
	assert.False(t, zero.Allow(), "and stays so")
}

func TestLimiterReserve(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
	r1 := lim.ReserveN(t0, 2)
	require.True(t, r1.OK())
	assert.Equal(t, time.Duration(0), r1.DelayFrom(t0))
	r2 := lim.ReserveN(t0, 1)
	require.True(t, r2.OK())
	assert.Equal(t, 100*time.Millisecond, r2.DelayFrom(t0))
	r3 := lim.ReserveN(t0, 2)
	require.True(t, r3.OK())
	assert.Equal(t, 300*time.Millisecond, r3.DelayFrom(t0))
	assert.False(t, lim.ReserveN(t0, 3).OK(), "more than the burst")
	assert.Equal(t, heijunka.InfDuration, lim.ReserveN(t0, 3).DelayFrom(t0))

	r3.CancelAt(t0)
	r3.CancelAt(t0) // a second cancel does nothing
	r4 := lim.ReserveN(t0, 1)
	assert.Equal(t, 200*time.Millisecond, r4.DelayFrom(t0), "r3's events came back, once")

	// A reservation whose time has come is not returned by Cancel: r2
	// acts at t0+100ms.
	r2.CancelAt(t0.Add(100 * time.Millisecond))
	assert.Equal(t, 300*time.Millisecond, lim.ReserveN(t0, 1).DelayFrom(t0))
	assert.Equal(t, time.Duration(0), r2.DelayFrom(t0.Add(100*time.Millisecond)))
	assert.Equal(t, time.Duration(0), r2.DelayFrom(t0.Add(time.Second)))
}

// TestReservationCancelKeepsLaterBookings: a canceled reservation returns
// only the part of its events that no later booking has queued behind, as
// golang.org/x/time/rate does. The later bookings keep their times, so
// returning the rest would let a new one act with them, beyond the burst.
func TestReservationCancelKeepsLaterBookings(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
	require.True(t, lim.AllowN(t0, 1))
	r1 := lim.ReserveN(t0, 1) // acts at t0+100ms
	r2 := lim.ReserveN(t0, 1) // acts at t0+200ms
	require.Equal(t, 200*time.Millisecond, r2.DelayFrom(t0))

	r1.CancelAt(t0)
	assert.Equal(t, 300*time.Millisecond, lim.ReserveN(t0, 1).DelayFrom(t0),
		"r2 still acts at 200ms: the next booking comes after it, not with it")

	// Partly overlapped: r4 (two events, acting at 200ms) has one event
	// booked after it. It returns one; r5, the last booking, returns its
	// own.
	lim = newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
	require.True(t, lim.AllowN(t0, 2))
	r4 := lim.ReserveN(t0, 2)
	r5 := lim.ReserveN(t0, 1)
	require.Equal(t, 300*time.Millisecond, r5.DelayFrom(t0))
	require.Equal(t, 500*time.Millisecond, lim.DecideN(t0, 0).ResetAfter)
	r4.CancelAt(t0)
	assert.Equal(t, 400*time.Millisecond, lim.DecideN(t0, 0).ResetAfter, "one of r4's events came back")
	r5.CancelAt(t0)
	assert.Equal(t, 300*time.Millisecond, lim.DecideN(t0, 0).ResetAfter, "and r5's")
}

// TestReservationCancelsOutOfOrder: canceling an earlier reservation lets
// the later ones move down into its place only as far as none comes before
// its own time. Canceling first a reservation with one event booked after
// it, then the one before, returned the second's events whole, as if the
// later event had moved down too: a new booking then acted with it, eight
// events at once under a burst of seven.
func TestReservationCancelsOutOfOrder(t *testing.T) {
	// Times after the limiter's creation and before it: the limiter
	// counts them from its creation, so the latter are negative.
	for _, origin := range []time.Time{t0, time.Unix(1_000_000_000, 0)} {
		t.Run(origin.Format(time.DateOnly), func(t *testing.T) {
			lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 7})
			require.True(t, lim.AllowN(origin, 1))
			first := lim.ReserveN(origin, 7)  // acts at 1s
			second := lim.ReserveN(origin, 7) // acts at 8s
			last := lim.ReserveN(origin, 1)   // acts at 9s
			require.Equal(t, 9*time.Second, last.DelayFrom(origin))
			second.CancelAt(origin)
			first.CancelAt(origin)

			at := origin.Add(2 * time.Second)
			lim.AllowN(at, 3)
			r := lim.ReserveN(at, 7)
			require.True(t, r.OK())
			assert.Greater(t, r.DelayFrom(at)+2*time.Second, 9*time.Second,
				"seven new events must not act with the one that acts at 9s")

			// Canceled latest first, reservations return all their
			// events.
			lim = newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
			require.True(t, lim.AllowN(origin, 1))
			r1, r2, r3 := lim.ReserveN(origin, 1), lim.ReserveN(origin, 1), lim.ReserveN(origin, 1)
			r3.CancelAt(origin)
			r2.CancelAt(origin)
			r1.CancelAt(origin)
			assert.Equal(t, 100*time.Millisecond, lim.DecideN(origin, 0).ResetAfter, "back to the first event's schedule")

			// One canceled with a later one behind it returns what the
			// later one leaves free: r5 acts at 300ms, so r4's second
			// event comes back, as in golang.org/x/time/rate.
			lim = newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
			require.True(t, lim.AllowN(origin, 2))
			r4 := lim.ReserveN(origin, 2) // acts at 200ms
			lim.ReserveN(origin, 1)       // acts at 300ms
			r4.CancelAt(origin)
			assert.Equal(t, 300*time.Millisecond, lim.ReserveN(origin, 1).DelayFrom(origin))
		})
	}
}

// TestReservationCancelAfterEarlierCanceled: the times of reservations
// canceled already do not hold back what a later cancel returns. A
// reservation canceled in part, and the one after it canceled whole, left
// the first one's time as the latest booked: a reservation made after them
// and then canceled with one more queued behind it returned nothing,
// where the later one leaves all but one event free (as
// golang.org/x/time/rate returns them), and the next booking waited two
// seconds more.
func TestReservationCancelAfterEarlierCanceled(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 10})
	require.True(t, lim.AllowN(t0, 10))
	first := lim.ReserveN(t0, 10) // acts at 10s
	second := lim.ReserveN(t0, 1) // acts at 11s
	first.CancelAt(t0)            // returns 9 events: second queues behind
	second.CancelAt(t0)           // returns its event: it was the latest
	r := lim.ReserveN(t0, 3)
	require.Equal(t, 4*time.Second, r.DelayFrom(t0))
	require.Equal(t, 5*time.Second, lim.ReserveN(t0, 1).DelayFrom(t0))
	r.CancelAt(t0) // the one after it acts at 5s: two events come back
	assert.Equal(t, 4*time.Second, lim.ReserveN(t0, 1).DelayFrom(t0))

	// WaitN cut short by its context returns its events the same way.
	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 10})
		require.True(t, lim.AllowN(time.Now(), 10))
		cancel1, done1 := startWait(lim, 10)
		cancel2, done2 := startWait(lim, 1)
		cancel1()
		require.ErrorIs(t, <-done1, context.Canceled)
		cancel2()
		require.ErrorIs(t, <-done2, context.Canceled)
		cancel3, done3 := startWait(lim, 3)
		_, done4 := startWait(lim, 1)
		cancel3()
		require.ErrorIs(t, <-done3, context.Canceled)
		delay := lim.Reserve().Delay()
		require.NoError(t, <-done4)
		assert.Equal(t, 4*time.Second, delay, "two of the canceled wait's events came back")
	})
}

// startWait starts lim.WaitN for n events in a synctest bubble, and
// returns once it waits: its cancel, and where its error comes.
func startWait(lim *heijunka.Limiter, n int) (context.CancelFunc, chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lim.WaitN(ctx, n) }()
	synctest.Wait()
	return cancel, done
}

// TestReservationCancelAfterAnEventAllowedBeforeItsTime: an event allowed
// after a reservation, but before its time, in room that a cancel before
// it made, does not make the reservation's time come: canceled then, the
// reservation returns its events, and a WaitN cut short then fails with
// its context's error. The cancel returned nothing, and the WaitN
// returned nil, its context canceled, 1.5s before its events' time.
func TestReservationCancelAfterAnEventAllowedBeforeItsTime(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 4})
	require.True(t, lim.AllowN(t0, 4))
	first := lim.ReserveN(t0, 4)  // acts at 4s
	second := lim.ReserveN(t0, 1) // acts at 5s
	require.Equal(t, 5*time.Second, second.DelayFrom(t0))
	first.CancelAt(t0.Add(time.Second)) // returns 3 events: second queues behind
	require.True(t, lim.AllowN(t0.Add(3*time.Second), 1), "an event at 3s, before the second's time")
	at := t0.Add(3500 * time.Millisecond)
	second.CancelAt(at)
	assert.True(t, lim.AllowN(at, 1), "the second's event came back")

	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 4})
		require.True(t, lim.AllowN(time.Now(), 4))
		cancel1, done1 := startWait(lim, 4) // due at 4s
		cancel2, done2 := startWait(lim, 1) // due at 5s
		defer cancel2()
		time.Sleep(time.Second)
		cancel1()
		require.ErrorIs(t, <-done1, context.Canceled)
		time.Sleep(2 * time.Second)
		require.True(t, lim.Allow(), "an event at 3s, before the second wait's time")
		time.Sleep(500 * time.Millisecond)
		cancel2()
		require.ErrorIs(t, <-done2, context.Canceled, "canceled 1.5s before its time")
		assert.True(t, lim.Allow(), "the canceled wait returned its event")
	})
}

// TestLimiterWaitCanceledBeforeOthers: a wait cut short while later waits
// queue behind it leaves them their times, and a new wait queues after
// them, not beside the last.
func TestLimiterWaitCanceledBeforeOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
		require.True(t, lim.Allow())
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- lim.Wait(ctx) }() // due at 100ms
		synctest.Wait()
		later := make(chan time.Duration)
		go func() {
			assert.NoError(t, lim.Wait(context.Background())) // due at 200ms
			later <- time.Since(start)
		}()
		synctest.Wait()
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)

		require.NoError(t, lim.Wait(context.Background()))
		assert.Equal(t, 200*time.Millisecond, <-later)
		assert.Equal(t, 300*time.Millisecond, time.Since(start), "one event at a time, as the burst says")
	})
}

// pastDeadline is a context whose deadline has passed though it has not
// ended yet: its timer has not run, or it is a Context of its own.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// A WaitN whose context's deadline has passed fails with
// context.DeadlineExceeded, not as a request that can never pass, and
// books nothing.
func TestLimiterWaitPastDeadline(t *testing.T) {
	lim := newLimiter(t, heijunka.PerSecond(10))
	err := lim.WaitN(pastDeadline{context.Background()}, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, heijunka.ErrLimited)
	assert.True(t, lim.AllowN(time.Now(), 10), "nothing was booked: the whole burst is there")
}

// TestLimiterWaitNeverPasses: a WaitN that can never pass fails at once
// with a RetryAfter of InfDuration; a full limiter says so with its whole
// burst remaining.
func TestLimiterWaitNeverPasses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		limit     heijunka.Limit
		n         int
		remaining int
	}{
		{"negative n", heijunka.PerSecond(10), -1, 0},
		{"more than the burst", heijunka.PerSecond(10), 11, 10},
		{"closed", heijunka.Limit{}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := newLimiter(t, tc.limit)
			err := lim.WaitN(ctx, tc.n)
			var le *heijunka.LimitedError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, heijunka.Decision{Limit: tc.limit, Remaining: tc.remaining, RetryAfter: heijunka.InfDuration}, le.Decision)
		})
	}
	require.NoError(t, newLimiter(t, heijunka.Unlimited()).WaitN(ctx, 1000))
	require.NoError(t, newLimiter(t, heijunka.Limit{}).WaitN(ctx, 0))
}

// TestLimiterWaitErrorCarriesTheDecision: a WaitN that fails at once,
// because its wait would outlast ctx's deadline or it can never pass,
// carries the Decision DecideN gives at that moment: its Remaining and
// ResetAfter too, which RateLimit fields are set from. Left at 0, the
// ResetAfter said the limiter was full when it was not. The RetryAfter
// is WaitN's own; it books nothing.
func TestLimiterWaitErrorCarriesTheDecision(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit heijunka.Limit
		// warmUp starts a climb from a tenth of limit over 10 s in 10
		// steps, startIn from now: step s begins at s seconds after that.
		warmUp   bool
		startIn  time.Duration
		booked   int           // events reserved one at a time at the start
		deadline time.Duration // 0 for none
		n        int
		want     heijunka.Decision
	}{
		{
			name: "wait past the deadline", limit: heijunka.Limit{Rate: 10, Burst: 3}, booked: 2,
			deadline: 50 * time.Millisecond, n: 2,
			want: heijunka.Decision{Remaining: 1, RetryAfter: 100 * time.Millisecond, ResetAfter: 200 * time.Millisecond},
		},
		{
			name: "booked past the burst", limit: heijunka.Limit{Rate: 10, Burst: 3}, booked: 5,
			deadline: 100 * time.Millisecond, n: 1,
			want: heijunka.Decision{RetryAfter: 300 * time.Millisecond, ResetAfter: 500 * time.Millisecond},
		},
		{
			name: "more than the burst", limit: heijunka.Limit{Rate: 10, Burst: 3}, booked: 1, n: 4,
			want: heijunka.Decision{Remaining: 2, RetryAfter: heijunka.InfDuration, ResetAfter: 100 * time.Millisecond},
		},
		{
			// Step 0 (1/s, Burst 1) owes 2 s; step 1 pays it off by 1 s.
			name: "warm-up, a later step passes it sooner", limit: heijunka.Limit{Rate: 10, Burst: 10}, warmUp: true,
			booked: 2, deadline: 500 * time.Millisecond, n: 1,
			want: heijunka.Decision{Limit: heijunka.Limit{Rate: 1, Burst: 1}, RetryAfter: time.Second, ResetAfter: 2 * time.Second},
		},
		{
			name: "warm-up, within the step", limit: heijunka.Limit{Rate: 10, Burst: 10}, warmUp: true,
			booked: 1, deadline: 500 * time.Millisecond, n: 1,
			want: heijunka.Decision{Limit: heijunka.Limit{Rate: 1, Burst: 1}, RetryAfter: time.Second, ResetAfter: time.Second},
		},
		{
			// The climb starts in 1 s: a call now counts the time until
			// then as events of the full Limit, 10 s of step 0's (1/s,
			// Burst 1), but passes once the climb starts.
			name: "warm-up, before the climb starts", limit: heijunka.Limit{Rate: 10, Burst: 10}, warmUp: true,
			startIn: time.Second, deadline: 500 * time.Millisecond, n: 1,
			want: heijunka.Decision{Limit: heijunka.Limit{Rate: 1, Burst: 1}, RetryAfter: time.Second, ResetAfter: 11 * time.Second},
		},
		{
			// Step 0 is 10/s burst 10; step 2, from 2 s on, takes 20.
			name: "warm-up, more than the step's Burst", limit: heijunka.Limit{Rate: 100, Burst: 100}, warmUp: true,
			booked: 1, deadline: time.Second, n: 20,
			want: heijunka.Decision{Limit: heijunka.Limit{Rate: 10, Burst: 10}, Remaining: 9, RetryAfter: 2 * time.Second, ResetAfter: 100 * time.Millisecond},
		},
		{
			name: "warm-up, more than the full Burst", limit: heijunka.Limit{Rate: 100, Burst: 100}, warmUp: true,
			booked: 1, n: 101,
			want: heijunka.Decision{Limit: heijunka.Limit{Rate: 10, Burst: 10}, Remaining: 9, RetryAfter: heijunka.InfDuration, ResetAfter: 100 * time.Millisecond},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lim := newLimiter(t, tc.limit)
				want := tc.want
				if tc.warmUp {
					w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
					require.NoError(t, err)
					require.NoError(t, w.StartAt(time.Now().Add(tc.startIn)))
				} else {
					want.Limit = tc.limit
				}
				for range tc.booked {
					require.True(t, lim.Reserve().OK())
				}
				ctx, cancel := context.WithCancel(context.Background())
				if tc.deadline > 0 {
					ctx, cancel = context.WithTimeout(context.Background(), tc.deadline)
				}
				defer cancel()
				begin := time.Now()
				err := lim.WaitN(ctx, tc.n)
				var le *heijunka.LimitedError
				require.ErrorAs(t, err, &le)
				assert.Equal(t, begin, time.Now(), "it fails at once")
				assert.Equal(t, want, le.Decision)
				assert.Equal(t, lim.DecideN(time.Now(), tc.n), le.Decision, "as DecideN decides")
				assert.Equal(t, want.ResetAfter, lim.DecideN(time.Now(), 0).ResetAfter, "and booked nothing")
			})
		})
	}
}

// TestReservationCancelsOnce cancels one reservation through several
// holders of it, at once: its events come back once, not once per call.
func TestReservationCancelsOnce(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
	require.True(t, lim.AllowN(t0, 2))
	r := lim.ReserveN(t0, 2) // acts at t0+200ms
	require.True(t, r.OK())
	require.Equal(t, 200*time.Millisecond, r.DelayFrom(t0))
	holders := []*heijunka.Reservation{r, r, r, r}
	var wg sync.WaitGroup
	for _, h := range holders {
		wg.Go(func() { h.CancelAt(t0) })
	}
	wg.Wait()
	r.CancelAt(t0)
	d := lim.DecideN(t0, 0)
	assert.Equal(t, 200*time.Millisecond, d.ResetAfter, "two events returned, not eight")
	assert.Equal(t, 0, d.Remaining)
	next := lim.ReserveN(t0, 1)
	assert.Equal(t, 100*time.Millisecond, next.DelayFrom(t0), "the next booking queues behind the burst only")

	var none *heijunka.Reservation
	assert.False(t, none.OK())
	assert.Equal(t, heijunka.InfDuration, none.DelayFrom(t0))
	none.Cancel() // does nothing
}

func TestLimiterWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
		ctx := context.Background()
		start := time.Now()
		require.NoError(t, lim.Wait(ctx))
		assert.Equal(t, time.Duration(0), time.Since(start), "full: no wait")
		require.NoError(t, lim.Wait(ctx))
		require.NoError(t, lim.Wait(ctx))
		assert.Equal(t, 200*time.Millisecond, time.Since(start), "then one interval each")

		err := lim.WaitN(ctx, 2)
		require.ErrorIs(t, err, heijunka.ErrLimited, "more than the burst fails at once")
		assert.Equal(t, heijunka.InfDuration, tai.RetryAfter(err))

		dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		before := time.Now()
		err = lim.Wait(dctx)
		require.ErrorIs(t, err, heijunka.ErrLimited, "the wait would outlast the deadline")
		assert.Equal(t, 100*time.Millisecond, tai.RetryAfter(err))
		assert.Equal(t, before, time.Now(), "it fails at once")
		assert.True(t, lim.AllowN(time.Now().Add(100*time.Millisecond), 1), "and booked nothing")

		cctx, cancel2 := context.WithCancel(ctx)
		cancel2()
		assert.ErrorIs(t, lim.Wait(cctx), context.Canceled)

		// A wait cut short by its context returns its events.
		time.Sleep(time.Second)
		require.True(t, lim.Allow())
		cctx, cancel3 := context.WithCancel(ctx)
		go func() {
			time.Sleep(30 * time.Millisecond)
			cancel3()
		}()
		before = time.Now()
		require.ErrorIs(t, lim.Wait(cctx), context.Canceled)
		assert.Equal(t, 30*time.Millisecond, time.Since(before))
		time.Sleep(70 * time.Millisecond)
		assert.True(t, lim.Allow(), "the canceled wait gave its event back")
		assert.False(t, lim.Allow())
	})
}

func TestLimiterAdmitIsAGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.PerMinute(2))
		var g tai.Gate = lim
		require.NoError(t, g.Admit(context.Background(), "a"))
		require.NoError(t, g.Admit(context.Background(), "b"))
		err := g.Admit(context.Background(), "c")
		require.ErrorIs(t, err, heijunka.ErrLimited)
		var le *heijunka.LimitedError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, "test", le.Name)
		assert.Equal(t, 30*time.Second, tai.RetryAfter(err))
		assert.Equal(t, `heijunka: "test" over limit 2/min burst 2; retry after 30s`, err.Error())
		time.Sleep(30 * time.Second)
		require.NoError(t, g.Admit(context.Background(), "d"))
	})
}

func TestLimiterSetLimitCarriesDebt(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 10})
	require.True(t, lim.AllowN(t0, 4)) // debt: 4 events
	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: 100, Burst: 10}))
	d := lim.DecideN(t0, 0)
	assert.Equal(t, 6, d.Remaining, "the debt carries over in events")
	assert.Equal(t, 40*time.Millisecond, d.ResetAfter, "and refills at the new rate")

	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: 100, Burst: 2}))
	assert.Equal(t, 0, lim.DecideN(t0, 0).Remaining, "capped at the new burst")

	require.Error(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: -1, Burst: 1}))
	assert.Equal(t, heijunka.Limit{Rate: 100, Burst: 2}, lim.Limit(), "an invalid limit changes nothing")
	require.ErrorContains(t, lim.SetLimit(heijunka.Limit{Rate: -1, Burst: 1}), "Rate -1 is negative", "nor by the clock")
	assert.Equal(t, heijunka.Limit{Rate: 100, Burst: 2}, lim.Limit())

	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{}))
	assert.False(t, lim.AllowN(t0, 1), "closed")
	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: 1, Burst: 3}))
	assert.True(t, lim.AllowN(t0, 3), "reopened full")
}

// TestLimiterSetLimitCarriesALongDebtExactly: a debt of more than 2^53
// nanoseconds, which float64 does not hold to the nanosecond, still
// converts rounded up, never freeing a nanosecond. One nanosecond before
// the first of two events of an interval of 10^16 ns is refilled, the
// debt is one event and a 10^16th: under an interval of 100ms it is
// 100ms and a nanosecond, so only one of a burst of 3 may pass at once.
// The same holds of events booked past the burst.
func TestLimiterSetLimitCarriesALongDebtExactly(t *testing.T) {
	slow := heijunka.Limit{Rate: 1e-7, Burst: 31} // an interval of 10^16 ns
	fast := heijunka.Limit{Rate: 10, Burst: 3}
	require.Equal(t, time.Duration(1e16), slow.Interval())

	lim := newLimiter(t, slow)
	require.True(t, lim.AllowN(t0, 2))
	at := t0.Add(1e16 - 1)
	require.NoError(t, lim.SetLimitAt(at, fast))
	d := lim.DecideN(at, 0)
	assert.Equal(t, 1, d.Remaining, "one event and a 10^16th of the debt")
	assert.Equal(t, 100*time.Millisecond+1, d.ResetAfter)
	assert.False(t, lim.AllowN(at, 2))
	assert.True(t, lim.AllowN(at.Add(1), 2))

	// 31 used and 2 booked past the burst: at 10^16-1 ns, the debt past
	// the burst is one interval and a nanosecond, carried over whole.
	lim = newLimiter(t, slow)
	require.True(t, lim.AllowN(t0, 31))
	require.True(t, lim.ReserveN(t0, 2).OK())
	require.NoError(t, lim.SetLimitAt(at, fast))
	d = lim.DecideN(at, 0)
	assert.Equal(t, 3*100*time.Millisecond+100*time.Millisecond+1, d.ResetAfter,
		"the burst of the new Limit, and the events booked past the old one")
}

// TestLimiterSetLimitKeepsBookings: events booked beyond the burst by
// Reserve or Wait still act at their times after SetLimit, so the debt
// they make carries over whole; only the events used up to the burst are
// capped at the new one. A limit set again to the same value, or a
// warm-up's step, let new bookings act with the old ones.
func TestLimiterSetLimitKeepsBookings(t *testing.T) {
	limit := heijunka.Limit{Rate: 10, Burst: 1}
	lim := newLimiter(t, limit)
	r := lim.ReserveN(t0, 1)
	for range 4 {
		r = lim.ReserveN(t0, 1)
	}
	require.Equal(t, 400*time.Millisecond, r.DelayFrom(t0))
	require.NoError(t, lim.SetLimitAt(t0, limit))
	assert.Equal(t, 500*time.Millisecond, lim.ReserveN(t0, 1).DelayFrom(t0),
		"the same limit again: the next booking comes after the five")

	// Two used and four booked past a burst of 2 (acting at 200ms and
	// 400ms): the two used are capped at a new burst, the four booked
	// count whole.
	for _, tc := range []struct {
		to    heijunka.Limit
		reset time.Duration
	}{
		{heijunka.Limit{Rate: 10, Burst: 1}, 500 * time.Millisecond},
		{heijunka.Limit{Rate: 10, Burst: 5}, 600 * time.Millisecond},
		{heijunka.Limit{Rate: 100, Burst: 5}, 60 * time.Millisecond},
	} {
		lim = newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
		require.True(t, lim.AllowN(t0, 2))
		require.True(t, lim.ReserveN(t0, 2).OK())
		require.True(t, lim.ReserveN(t0, 2).OK())
		require.NoError(t, lim.SetLimitAt(t0, tc.to))
		assert.Equal(t, tc.reset, lim.DecideN(t0, 0).ResetAfter, "to %v", tc.to)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 1000})
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 500 {
				now := t0
				if i%2 == 0 && lim.AllowN(now, 1) {
					admitted.Add(1)
				} else if i%2 == 1 {
					if lim.DecideN(now, 1).Allowed {
						admitted.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1000), admitted.Load(), "4000 calls at one instant admit exactly the burst")
}

// TestLimiterSetLimitWhileInUse changes the Limit while other goroutines
// take events, from one event a nanosecond (nearly always full) to one a
// minute. However the calls interleave with the change, the debt carried
// over is at most the new Burst: a minute of waiting. A call that read the
// new Limit but booked on the schedule not yet converted must not have its
// booking converted again as if it were under the old one (a minute in
// nanoseconds counted as sixty billion events of the old Limit, years of
// waiting under the new).
func TestLimiterSetLimitWhileInUse(t *testing.T) {
	for i := range 200 {
		lim := newLimiter(t, heijunka.Limit{Rate: 1e9, Burst: 1000})
		var stop atomic.Bool
		var calls atomic.Int64
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for !stop.Load() {
					lim.Allow()
					calls.Add(1)
				}
			})
		}
		for calls.Load() < 100 {
			runtime.Gosched()
		}
		require.NoError(t, lim.SetLimit(heijunka.Every(time.Minute)))
		stop.Store(true)
		wg.Wait()
		d := lim.DecideN(time.Now().Add(3*time.Minute), 1)
		require.True(t, d.Allowed, "iteration %d: %+v", i, d)
	}
}

// TestLimiterWindowProperty: over any window of length w, a limiter admits
// at most Burst + Rate·w events, whatever the limit and the sequence of
// requests (AllowN, DecideN, reservations and cancels).
func TestLimiterWindowProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		limit := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 1000).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 20).Draw(t, "burst"),
		}
		lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var events []time.Time // when admitted events act
		type booking struct {
			r      *heijunka.Reservation
			at     time.Time
			n      int
			active bool
		}
		var booked []*booking
		// From the limiter's creation or before it (negative times).
		now := rapid.SampledFrom([]time.Time{t0, time.Unix(1_000_000_000, 0)}).Draw(t, "origin")
		steps := rapid.IntRange(1, 200).Draw(t, "steps")
		for range steps {
			maxGap := int64(2 * float64(time.Second) / limit.Rate)
			now = now.Add(time.Duration(rapid.Int64Range(0, maxGap).Draw(t, "gap")))
			n := rapid.IntRange(0, limit.Burst+1).Draw(t, "n")
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0:
				if lim.AllowN(now, n) {
					events = appendN(events, now, n)
				}
			case 1:
				if lim.DecideN(now, n).Allowed {
					events = appendN(events, now, n)
				}
			case 2:
				r := lim.ReserveN(now, n)
				if !r.OK() {
					continue
				}
				if rapid.Bool().Draw(t, "cancel") {
					r.CancelAt(now)
				} else {
					booked = append(booked, &booking{r, now.Add(r.DelayFrom(now)), n, true})
				}
			case 3: // cancel a booking, not necessarily the latest
				if len(booked) == 0 {
					continue
				}
				b := booked[rapid.IntRange(0, len(booked)-1).Draw(t, "booking")]
				if b.active && b.at.After(now) {
					b.r.CancelAt(now)
					b.active = false
				}
			case 4: // the same limit again: nothing changes
				if err := lim.SetLimitAt(now, limit); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, b := range booked {
			if b.active {
				events = appendN(events, b.at, b.n)
			}
		}
		sortTimes(events)
		for i := range events {
			for j := i; j < len(events); j++ {
				w := events[j].Sub(events[i])
				// Intervals are rounded to whole nanoseconds: allow for it.
				bound := float64(limit.Burst) + w.Seconds()*1e9/float64(limit.Interval())
				if float64(j-i+1) > bound+1e-6 {
					t.Fatalf("%d events in a window of %v, bound %.3f", j-i+1, w, bound)
				}
			}
		}
	})
}

func appendN(ts []time.Time, t time.Time, n int) []time.Time {
	for range n {
		ts = append(ts, t)
	}
	return ts
}

func sortTimes(ts []time.Time) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Before(ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

func TestLimiterDefaultName(t *testing.T) {
	lim, err := heijunka.NewLimiter(heijunka.PerSecond(1), heijunka.LimiterOptions{})
	require.NoError(t, err)
	assert.Equal(t, "heijunka.limiter", lim.Name())
	lim.AllowN(t0, 1)
	var le *heijunka.LimitedError
	require.ErrorAs(t, lim.Admit(context.Background(), ""), &le)
	assert.Equal(t, "heijunka.limiter", le.Name)
}

// TestReservationDelayByTheClock: Delay counts down with the clock to the
// reservation's act time, and stays 0 from then on.
func TestReservationDelayByTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
		now := lim.Reserve()
		assert.Equal(t, time.Duration(0), now.Delay())
		r := lim.Reserve()
		require.True(t, r.OK())
		assert.Equal(t, 100*time.Millisecond, r.Delay())
		time.Sleep(60 * time.Millisecond)
		assert.Equal(t, 40*time.Millisecond, r.Delay())
		time.Sleep(40 * time.Millisecond)
		assert.Equal(t, time.Duration(0), r.Delay(), "at its act time")
		time.Sleep(time.Second)
		assert.Equal(t, time.Duration(0), r.Delay())
		assert.Equal(t, heijunka.InfDuration, lim.ReserveN(time.Now(), 2).Delay(), "not OK")
	})
}

// TestReservationCancelAfterLimitChange: a reservation made under one
// Limit gives nothing back once the Limit has changed: its events became
// part of the debt carried to the new Limit.
func TestReservationCancelAfterLimitChange(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
	require.True(t, lim.AllowN(t0, 2))
	r := lim.ReserveN(t0, 1) // acts at t0+100ms
	require.Equal(t, 100*time.Millisecond, r.DelayFrom(t0))
	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: 10, Burst: 5}))
	require.Equal(t, 2, lim.DecideN(t0, 0).Remaining, "a debt of three events carried over")
	r.CancelAt(t0)
	d := lim.DecideN(t0, 0)
	assert.Equal(t, 2, d.Remaining, "the canceled reservation returned nothing")
	assert.Equal(t, 300*time.Millisecond, d.ResetAfter)

	// The same reservation canceled before the change returns its event.
	lim = newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
	require.True(t, lim.AllowN(t0, 2))
	r = lim.ReserveN(t0, 1)
	r.CancelAt(t0)
	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: 10, Burst: 5}))
	assert.Equal(t, 3, lim.DecideN(t0, 0).Remaining)
}

// TestLimiterSetLimitAtTheTolerance: debt carried over to a Limit fills at
// most its tolerance, to the nanosecond, even where the tolerance is not a
// float64; and a limiter whose debt is repaid at the instant of the change
// is full after it, as one repaid earlier (and, as both, not before it:
// going back frees nothing).
func TestLimiterSetLimitAtTheTolerance(t *testing.T) {
	// An interval of 999,999,999 ns and a tolerance of 9007200990992799
	// ns, above 2^53: float64 rounds it up by one.
	limit := heijunka.Limit{Rate: 1e9 / 999_999_999, Burst: 9_007_201}
	require.Equal(t, 999_999_999*time.Nanosecond, limit.Interval())
	for _, to := range []heijunka.Limit{limit, limit.WithBurst(limit.Burst - 1)} {
		lim := newLimiter(t, limit)
		require.True(t, lim.AllowN(t0, limit.Burst))
		require.NoError(t, lim.SetLimitAt(t0, to))
		tol := time.Duration(to.Burst) * to.Interval()
		d := lim.DecideN(t0, 0)
		assert.Equal(t, tol, d.ResetAfter, "burst %d: a full debt fills the tolerance exactly", to.Burst)
		assert.True(t, lim.AllowN(t0.Add(to.Interval()), 1), "burst %d: one interval later one event passes", to.Burst)
	}

	for _, at := range []time.Duration{100 * time.Millisecond, 150 * time.Millisecond} {
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
		require.True(t, lim.AllowN(t0, 1)) // repaid at t0+100ms
		require.NoError(t, lim.SetLimitAt(t0.Add(at), heijunka.Limit{Rate: 10, Burst: 3}))
		assert.False(t, lim.AllowN(t0, 3), "set at +%v: four events at t0 under a burst of 3", at)
		assert.True(t, lim.AllowN(t0.Add(at), 3), "set at +%v: full", at)
	}
}

// TestLimiterHorizon: reservations may push the schedule up to the
// limiter's horizon, 2^62 ns ahead, and no further; and a time far from
// the limiter's creation is handled as any other.
func TestLimiterHorizon(t *testing.T) {
	// An interval of 2^32 ns and a burst of 2^26: each full reservation
	// books 2^58 ns, and sixteen of them reach the horizon exactly.
	limit := heijunka.Limit{Rate: 1e9 / (1 << 32), Burst: 1 << 26}
	require.Equal(t, time.Duration(1<<32), limit.Interval())
	lim := newLimiter(t, limit)
	for i := range 16 {
		r := lim.ReserveN(t0, limit.Burst)
		require.True(t, r.OK(), "reservation %d", i)
		assert.Equal(t, time.Duration(i)<<58, r.DelayFrom(t0), "reservation %d", i)
	}
	assert.False(t, lim.ReserveN(t0, 1).OK(), "past the horizon")

	lim = newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
	far := time.Now().Add(200 * 365 * 24 * time.Hour)
	r := lim.ReserveN(far, 1)
	require.True(t, r.OK())
	assert.Equal(t, time.Duration(0), r.DelayFrom(far))
	r = lim.ReserveN(far, 1)
	require.True(t, r.OK())
	assert.Equal(t, 100*time.Millisecond, r.DelayFrom(far))
}

// TestLimiterFarApartTimes: a schedule booked to the horizon at a time
// decades after the limiter's creation still holds at a time decades
// before it: the earlier time waits longer, and nothing passes.
func TestLimiterFarApartTimes(t *testing.T) {
	limit := heijunka.Limit{Rate: 1e9 / (1 << 32), Burst: 1 << 26} // 2^58 ns per full reservation
	century := 100 * 365 * 24 * time.Hour
	late, early := time.Now().Add(century), time.Now().Add(-century) // counted as about 73 years
	for _, change := range []bool{false, true} {
		lim := newLimiter(t, limit)
		booked := 0
		for ; booked < 100 && lim.ReserveN(late, limit.Burst).OK(); booked++ {
		}
		require.Positive(t, booked)
		require.Less(t, booked, 100, "the horizon ends the bookings")
		if change {
			require.NoError(t, lim.SetLimitAt(early, limit.WithBurst(limit.Burst/2)))
		}
		assert.False(t, lim.AllowN(early, 1), "change %v", change)
		d := lim.DecideN(early, 1)
		assert.False(t, d.Allowed, "change %v", change)
		assert.Positive(t, d.RetryAfter, "change %v", change)
		assert.Positive(t, d.ResetAfter, "change %v", change)
		assert.False(t, lim.ReserveN(early, 1).OK(), "change %v", change)
		assert.False(t, lim.AllowN(late, 1), "change %v", change)
	}
}

// TestLimiterWaitUpToTheDeadline: a wait that ends exactly at ctx's
// deadline does not outlast it: WaitN waits instead of failing at once.
func TestLimiterWaitUpToTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
		require.True(t, lim.Allow())
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := lim.Wait(ctx)
		assert.NotErrorIs(t, err, heijunka.ErrLimited)
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "it waited")
		// The timer and the deadline fall at the same instant: either may
		// end the wait.
		if err != nil {
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		}
	})
}

func TestLimiterAllowZeroWhileOverbooked(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 1})
	require.True(t, lim.ReserveN(t0, 1).OK())
	assert.True(t, lim.AllowN(t0, 0), "within the burst")
	require.True(t, lim.ReserveN(t0, 1).OK(), "booked past the burst")
	assert.False(t, lim.AllowN(t0, 0), "booked past the burst: zero events report it")
	d := lim.DecideN(t0, 0)
	assert.False(t, d.Allowed, "as the Decision does")
	assert.Equal(t, time.Second, d.RetryAfter)
	assert.True(t, lim.AllowN(t0.Add(time.Second), 0), "once the booking acts")
}

// TestLimiterSetSameLimitChangesNothing: setting the Limit in force again
// leaves the schedule where it was. The debt was carried through a
// float64 and truncated, a nanosecond or so each time, and a reservation
// made after two such calls acted 2 ns before the burst plus one interval
// allows (found by TestLimiterWindowProperty).
func TestLimiterSetSameLimitChangesNothing(t *testing.T) {
	limit := heijunka.Limit{Rate: 641.00048828125, Burst: 9}
	lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
	require.NoError(t, err)
	for _, s := range []struct{ at, n int }{{0, 1}, {9, 1}, {11, 1}, {13, 3}, {15, 3}} {
		require.True(t, lim.AllowN(t0.Add(time.Duration(s.at)), s.n))
	}
	require.NoError(t, lim.SetLimitAt(t0.Add(23), limit))
	require.NoError(t, lim.SetLimitAt(t0.Add(31), limit))
	now := t0.Add(31)
	r := lim.ReserveN(now, 1)
	require.True(t, r.OK())
	assert.Equal(t, limit.Interval(), now.Add(r.DelayFrom(now)).Sub(t0), "the tenth event acts one interval after the first")

}

// TestLimiterWaitCanceledAfterSameLimitSet: setting the Limit in force
// again, as a configuration reload does, changes nothing, so a wait cut
// short afterwards still returns its event: the next caller passes at
// once, not an interval later.
func TestLimiterWaitCanceledAfterSameLimitSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limit := heijunka.Limit{Rate: 10, Burst: 1}
		lim := newLimiter(t, limit)
		require.True(t, lim.Allow())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- lim.Wait(ctx) }() // due at 100ms
		synctest.Wait()
		require.NoError(t, lim.SetLimit(limit))
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)

		time.Sleep(100 * time.Millisecond)
		assert.True(t, lim.Allow(), "the canceled wait returned its event")
	})
}

// TestReservationCancelAtAnEarlierTime: a cancel at a time earlier than
// one an event was allowed at frees nothing that event's time had taken.
// An event allowed at 2s, after a reservation acting at 1s, and the
// reservation then canceled at 0.5s, returned its event: a second event
// passed at 2s under a burst of 1.
func TestReservationCancelAtAnEarlierTime(t *testing.T) {
	for _, allow := range []struct {
		name string
		do   func(*heijunka.Limiter, time.Time) bool
	}{
		{"AllowN", func(l *heijunka.Limiter, at time.Time) bool { return l.AllowN(at, 1) }},
		{"DecideN", func(l *heijunka.Limiter, at time.Time) bool { return l.DecideN(at, 1).Allowed }},
	} {
		t.Run(allow.name, func(t *testing.T) {
			lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 1})
			require.True(t, lim.AllowN(t0, 1))
			r := lim.ReserveN(t0, 1)
			require.Equal(t, time.Second, r.DelayFrom(t0))
			at := t0.Add(2 * time.Second)
			require.True(t, allow.do(lim, at))
			r.CancelAt(t0.Add(500 * time.Millisecond))
			assert.False(t, allow.do(lim, at), "two events at 2s under a burst of 1")

		})
	}
}

// TestLimiterSetLimitThenEarlierTime: a change of Limit does not free
// events for a time earlier than the change: going back counts as that
// much longer to wait, under the new Limit too. The change forgot the
// schedule of a limiter full again at the time of the change, so that an
// event passed at any earlier time, just after another under a burst of 1.
func TestLimiterSetLimitThenEarlierTime(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 1})
	require.True(t, lim.AllowN(t0, 1))
	require.NoError(t, lim.SetLimitAt(t0.Add(time.Second), heijunka.Limit{Rate: 2, Burst: 1}))
	assert.False(t, lim.AllowN(t0.Add(100*time.Millisecond), 1), "an event 100ms after the last under a burst of 1")
	assert.Equal(t, 500*time.Millisecond, lim.DecideN(t0.Add(500*time.Millisecond), 1).RetryAfter,
		"half a second back: half a second more to wait")
	assert.True(t, lim.AllowN(t0.Add(time.Second), 1), "full at the time of the change")

	// A call that read the clock a moment before the change, once the
	// limiter was full again, passes as it would have before the change.
	lim = newLimiter(t, heijunka.Limit{Rate: 1, Burst: 1})
	require.True(t, lim.AllowN(t0, 1))
	require.NoError(t, lim.SetLimitAt(t0.Add(10*time.Second), heijunka.Limit{Rate: 2, Burst: 1}))
	assert.True(t, lim.AllowN(t0.Add(5*time.Second), 1))
}

// TestLimiterWindowPropertyTimeGoingBack: the window property holds when
// times go back as well as forward, when reservations are canceled at
// times other than the latest, partly or in full and in any order, and
// when the Limit changes to another of the same Burst and back, at the
// same time or an earlier one. A reservation counts as acting unless it
// was canceled at a time before its own.
func TestLimiterWindowPropertyTimeGoingBack(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		limit := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 10).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 12).Draw(t, "burst"),
		}
		other := heijunka.Limit{
			Rate:  limit.Rate * rapid.SampledFrom([]float64{0.5, 2}).Draw(t, "factor"),
			Burst: limit.Burst,
		}
		lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		iv := limit.Interval()
		var events []time.Time
		type booking struct {
			r      *heijunka.Reservation
			at     time.Time
			n      int
			active bool
		}
		var booked []*booking
		now := t0
		back := rapid.Int64Range(-4, 0).Draw(t, "back") // how far a step may go back, in quarter intervals
		steps := rapid.IntRange(1, 150).Draw(t, "steps")
		for range steps {
			now = now.Add(time.Duration(rapid.Int64Range(back, 6).Draw(t, "gap")) * iv / 4)
			n := rapid.IntRange(0, limit.Burst).Draw(t, "n")
			switch rapid.IntRange(0, 6).Draw(t, "op") {
			case 0:
				if lim.AllowN(now, n) {
					events = appendN(events, now, n)
				}
			case 1:
				if lim.DecideN(now, n).Allowed {
					events = appendN(events, now, n)
				}
			case 2, 3:
				if r := lim.ReserveN(now, n); r.OK() {
					booked = append(booked, &booking{r, now.Add(r.DelayFrom(now)), n, true})
				}
			case 4, 5: // cancel a booking at a time near now, before or after
				if len(booked) == 0 {
					continue
				}
				b := booked[rapid.IntRange(0, len(booked)-1).Draw(t, "booking")]
				at := now.Add(time.Duration(rapid.Int64Range(-4, 4).Draw(t, "cancel")) * iv / 3)
				if b.active && b.at.After(at) {
					b.r.CancelAt(at)
					b.active = false
				}
			case 6: // another Limit and back, perhaps at an earlier time, or the same again
				if rapid.Bool().Draw(t, "other") {
					require.NoError(t, lim.SetLimitAt(now, other))
				}
				at := now.Add(time.Duration(rapid.Int64Range(back, 0).Draw(t, "setBack")) * iv / 4)
				require.NoError(t, lim.SetLimitAt(at, limit))
			}
		}
		for _, b := range booked {
			if b.active {
				events = appendN(events, b.at, b.n)
			}
		}
		sortTimes(events)
		for i := range events {
			for j := i; j < len(events); j++ {
				w := events[j].Sub(events[i])
				bound := float64(limit.Burst) + w.Seconds()*1e9/float64(iv)
				if float64(j-i+1) > bound+1e-6 {
					t.Fatalf("%d events in a window of %v, bound %.3f", j-i+1, w, bound)
				}
			}
		}
	})
}

// endsAt is a context that ends at at, and whose Done waits for that
// instant before it returns its channel: a wait on Done and on a timer due
// at the same instant then finds both ready, and either may end it.
type endsAt struct {
	context.Context
	at time.Time
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c endsAt) Deadline() (time.Time, bool) { return c.at, true }

func (c endsAt) Done() <-chan struct{} {
	time.Sleep(time.Until(c.at))
	return closed
}

func (c endsAt) Err() error {
	if time.Now().Before(c.at) {
		return nil
	}
	return context.DeadlineExceeded
}

// TestLimiterWaitEndsWithItsDeadline: a WaitN whose context ends at the
// instant its wait does either passes and keeps its events or fails and
// gives them back; it never fails and keeps them, which made later
// callers wait for an event nobody used. Either may be seen first, so the
// test runs the wait many times to meet both.
func TestLimiterWaitEndsWithItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for i := range 64 {
			lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
			require.True(t, lim.Allow())
			ctx := endsAt{context.Background(), time.Now().Add(100 * time.Millisecond)}
			err := lim.Wait(ctx) // due at 100ms, the deadline
			kept := !lim.Allow()
			if err != nil {
				require.ErrorIs(t, err, context.DeadlineExceeded)
				require.False(t, kept, "run %d: the wait failed yet kept its event", i)
			} else {
				require.True(t, kept, "run %d: the wait passed yet its event is free", i)
			}
		}
	})
}

// TestLimiterSetLimitAtAnEarlierTimeFreesNothing: a change of Limit at a
// time earlier than one used before converts the debt as a change at that
// later time would, the time gone back counting as that much longer to
// wait. Converted at the earlier time, to a faster rate, the time gone
// back was paid off at the faster rate too, and an event passed before
// either Limit lets it.
func TestLimiterSetLimitAtAnEarlierTimeFreesNothing(t *testing.T) {
	one, half, two := heijunka.Limit{Rate: 1, Burst: 1}, heijunka.Limit{Rate: 0.5, Burst: 1}, heijunka.Limit{Rate: 2, Burst: 1}

	// An event at t0, then a faster Limit half a second before it: the
	// next event may pass half a second after t0, as with the change at t0.
	lim := newLimiter(t, one)
	require.True(t, lim.AllowN(t0, 1))
	require.NoError(t, lim.SetLimitAt(t0.Add(-500*time.Millisecond), two))
	assert.False(t, lim.AllowN(t0.Add(250*time.Millisecond), 1), "an event 250ms after the last, at 2/s burst 1")
	assert.True(t, lim.AllowN(t0.Add(500*time.Millisecond), 1))

	// A change at t0, then one back at an earlier time.
	lim = newLimiter(t, one)
	require.True(t, lim.AllowN(t0, 1))
	require.NoError(t, lim.SetLimitAt(t0, half))
	require.NoError(t, lim.SetLimitAt(t0.Add(-500*time.Millisecond), one))
	assert.False(t, lim.AllowN(t0.Add(750*time.Millisecond), 1), "an event 750ms after the last, at 1/s burst 1")
	assert.True(t, lim.AllowN(t0.Add(time.Second), 1))

	// A warm-up started at t0 and ended at an earlier time.
	lim = newLimiter(t, one)
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.5, Over: 20, Steps: 1})
	require.NoError(t, err)
	require.True(t, lim.AllowN(t0, 1))
	require.NoError(t, w.StartAt(t0))
	require.NoError(t, lim.SetLimitAt(t0.Add(-500*time.Millisecond), one))
	assert.False(t, lim.AllowN(t0.Add(750*time.Millisecond), 1), "an event 750ms after the last, at 1/s burst 1")
	assert.True(t, lim.AllowN(t0.Add(time.Second), 1))
}
