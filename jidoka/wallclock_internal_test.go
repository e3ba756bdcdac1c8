package jidoka

import (
	"context"
	"errors"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wallStep is how far the wall clock is set forward in these tests, after
// the breaker or Timeout was made: an NTP step, or a virtual machine
// suspended for as long (its monotonic clock stops, its wall clock does
// not).
const wallStep = time.Hour

// stepWall returns t as time.Now would have returned it had the wall clock
// read step earlier and the monotonic clock the same: what a breaker or a
// Timeout made at t sees once the wall clock has been set step forward.
// The time package has no way to move one clock of a reading and not the
// other; a reading with a monotonic part keeps the wall clock's seconds
// since 1885 in bits 30 to 62 of its first word.
func stepWall(t *testing.T, at time.Time, step time.Duration) time.Time {
	t.Helper()
	type reading struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	const hasMonotonic = 1 << 63
	r := (*reading)(unsafe.Pointer(&at))
	if r.wall&hasMonotonic == 0 || step%time.Second != 0 {
		t.Skip("no monotonic clock reading to keep")
	}
	r.wall -= uint64(step/time.Second) << 30
	now := time.Now()
	skew := at.Round(0).Sub(now.Round(0)) - at.Sub(now) // the wall clock's lead on the monotonic, negated
	require.InDelta(t, float64(-step), float64(skew), float64(time.Second), "the forged reading")
	return at
}

// near reports whether got's wall clock reads about want's; a reading off
// by the step is not.
func near(got, want time.Time) bool {
	d := got.Round(0).Sub(want.Round(0))
	return d > -wallStep/2 && d < wallStep/2
}

// TestBreakerTimesFollowTheWallClock: the times a breaker reports — an
// event's Time, a Snapshot's Since and NextProbe, an OpenError's Until —
// read as today's wall clock does, not as it did when the breaker was made:
// they are logged, shown and sent as JSON by their wall clock.
func TestBreakerTimesFollowTheWallClock(t *testing.T) {
	var events []Event
	b, err := NewBreaker(BreakerOptions{
		ConsecutiveFailures: 1, OpenDuration: time.Minute,
		OnStateChange: func(ev Event) { events = append(events, ev) },
	})
	require.NoError(t, err)
	b.epoch = stepWall(t, b.epoch, wallStep)

	before := time.Now()
	err = b.Do(context.Background(), func(context.Context) error { return errors.New("down") })
	require.Error(t, err)
	require.Len(t, events, 1)
	assert.True(t, near(events[0].Time, before), "event at %v, the wall clock read %v", events[0].Time.Round(0), before.Round(0))

	s := b.Snapshot()
	assert.True(t, near(s.Since, before), "Since %v, the wall clock read %v", s.Since.Round(0), before.Round(0))
	assert.True(t, near(s.NextProbe, before.Add(time.Minute)), "NextProbe %v, want about %v", s.NextProbe.Round(0), before.Add(time.Minute).Round(0))

	err = b.Do(context.Background(), func(context.Context) error { return nil })
	var oe *OpenError
	require.ErrorAs(t, err, &oe)
	assert.True(t, near(oe.Until(), before.Add(time.Minute)), "Until %v, want about %v", oe.Until().Round(0), before.Add(time.Minute).Round(0))
	assert.Positive(t, oe.RetryAfter(), "the hint still counts on the monotonic clock")
	assert.True(t, s.NextProbe.Equal(oe.Until()), "NextProbe and Until are one instant")
}

// TestTimeoutDeadlineFollowsTheWallClock: the Deadline of the context a
// Timeout gives a call reads as context.WithTimeout's would, today's wall
// clock plus the time left, so that code which reads its wall clock (sends
// it on as a timestamp, logs it) does not take it for long past; and two
// calls of Deadline give the same time.
func TestTimeoutDeadlineFollowsTheWallClock(t *testing.T) {
	to, err := NewTimeout(TimeoutOptions{Duration: time.Minute})
	require.NoError(t, err)
	to.epoch = stepWall(t, to.epoch, wallStep)

	err = to.Do(context.Background(), func(ctx context.Context) error {
		want, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		wdl, _ := want.Deadline()
		dl, ok := ctx.Deadline()
		require.True(t, ok)
		assert.True(t, near(dl, wdl), "Deadline %v, context.WithTimeout's %v", dl.Round(0), wdl.Round(0))
		assert.Positive(t, time.Until(dl), "the deadline is ahead")
		again, _ := ctx.Deadline()
		assert.Equal(t, dl, again, "successive calls of Deadline give the same time")
		return nil
	})
	require.NoError(t, err)
}

// TestTimeoutBoundsACallUnderAWallClockDeadline: a caller's deadline made
// from a wall clock time alone (time.Unix, a timestamp received, a
// Round(0)) comes after the Timeout's own: the Timeout still ends the call
// at its Duration, though the wall clock was set back since it was made.
func TestTimeoutBoundsACallUnderAWallClockDeadline(t *testing.T) {
	to, err := NewTimeout(TimeoutOptions{Duration: time.Minute})
	require.NoError(t, err)
	to.epoch = stepWall(t, to.epoch, -wallStep) // the wall clock was set back an hour

	parent, cancel := context.WithDeadline(context.Background(), time.Now().Round(0).Add(10*time.Minute))
	defer cancel()
	err = to.Do(parent, func(ctx context.Context) error {
		dl, ok := ctx.Deadline()
		require.True(t, ok)
		assert.Less(t, time.Until(dl), 2*time.Minute, "the call is given the Timeout's minute, not the caller's ten")
		return nil
	})
	require.NoError(t, err)
}

// TestWallClockAllocatesOnlyOnAStep: reading a time of the breaker or the
// Timeout allocates nothing while the wall clock keeps to the monotonic.
func TestWallClockAllocatesOnlyOnAStep(t *testing.T) {
	var w wallClock
	epoch := time.Now()
	_ = w.at(epoch, time.Second)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = w.at(epoch, time.Second) }))
}
