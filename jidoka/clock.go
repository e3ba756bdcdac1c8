package jidoka

import "time"

// A Clock tells the time and runs functions later. Breaker, Line and
// Watchdog read time only through their Clock, so a test can drive them with
// a manual clock and no sleeps. A nil Clock in a config means the system
// clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f on a goroutine of the clock's choosing once d has
	// passed, unless the returned Timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// A Timer is a pending call scheduled by Clock.AfterFunc. *time.Timer is
// one.
type Timer interface {
	// Stop prevents the call if it has not run yet and reports whether it
	// did so.
	Stop() bool
}

// SystemClock is the Clock of the operating system: time.Now and
// time.AfterFunc.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// monotonic reads time as nanoseconds since an epoch taken at construction.
// With the system clock it uses time.Since, which reads only the monotonic
// clock and costs about half of time.Now.
type monotonic struct {
	clock Clock // nil: the system clock
	epoch time.Time
}

func newMonotonic(c Clock) monotonic {
	if c == nil || c == SystemClock {
		return monotonic{epoch: time.Now()}
	}
	return monotonic{clock: c, epoch: c.Now()}
}

func (m *monotonic) now() int64 {
	if m.clock == nil {
		return int64(time.Since(m.epoch))
	}
	return int64(m.clock.Now().Sub(m.epoch))
}

// at converts a reading of now back to a time.Time.
func (m *monotonic) at(n int64) time.Time { return m.epoch.Add(time.Duration(n)) }

func (m *monotonic) afterFunc(d time.Duration, f func()) Timer {
	if m.clock == nil {
		return time.AfterFunc(d, f)
	}
	return m.clock.AfterFunc(d, f)
}
