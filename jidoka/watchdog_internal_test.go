package jidoka

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A check whose goroutine has begun but not yet called Check when
// Shutdown cancels the watchdog does not call it: neither the first check
// of Start nor one that fell due at an Interval. The check's goroutine is
// held at its gate while Shutdown, given an ended context, cancels the
// watchdog and returns; released, it must find the watchdog stopped.
func TestWatchdogCheckHeldAtItsGateAsShutdownReturnsDoesNotRun(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, held := range []int{1, 2} { // the first check of Start, the next at Interval
		synctest.Test(t, func(t *testing.T) {
			var calls atomic.Int32
			w, err := NewWatchdog(WatchdogOptions{Interval: time.Second,
				Check: func(context.Context) error { calls.Add(1); return nil }})
			require.NoError(t, err)
			arrived, release := make(chan struct{}), make(chan struct{})
			var gates atomic.Int32
			w.atGate = func() {
				if int(gates.Add(1)) == held {
					close(arrived)
					<-release
				}
			}
			require.NoError(t, w.Start(context.Background()))
			<-arrived
			require.ErrorIs(t, w.Shutdown(ended), context.Canceled, "the check's goroutine is held: Shutdown does not wait")
			close(release)
			require.NoError(t, w.Shutdown(context.Background()))
			assert.EqualValues(t, held-1, calls.Load(), "check %d was held at its gate as Shutdown returned, and ran", held)
		})
	}
}
