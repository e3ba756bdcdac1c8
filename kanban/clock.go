package kanban

import (
	"context"
	"time"
)

// Clock tells time and runs timers. Tests inject a fake one to drive
// back-off and delayed retries without sleeping. A nil Clock means the
// system clock.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on its own goroutine after d and returns a
	// function that cancels the call if it has not started.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// SystemClock is the Clock used when none is given.
var SystemClock Clock = systemClock{}

func clockOr(c Clock) Clock {
	if c == nil {
		return SystemClock
	}
	return c
}

// sleep waits d on c, or until ctx ends.
func sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	done := make(chan struct{})
	stop := c.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		stop()
		return ctx.Err()
	}
}
