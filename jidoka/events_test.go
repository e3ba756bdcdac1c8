package jidoka

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The listeners of Breaker and Line never panic into the queue (notify
// recovers), but a Logger that panics while a listener's panic is logged
// does: the queue must still deliver the events after the one that
// panicked, in order.
func TestQueueKeepsEventsAfterAPanic(t *testing.T) {
	var q queue[int]
	for i := range 4 {
		q.push(i)
	}
	var got []int
	fn := func(e int) {
		got = append(got, e)
		if e == 1 {
			panic("logger bug")
		}
	}
	require.PanicsWithValue(t, "logger bug", func() { q.drain(fn) })
	assert.Equal(t, []int{0, 1}, got)
	q.push(4)
	q.drain(fn)
	assert.Equal(t, []int{0, 1, 2, 3, 4}, got)
	q.drain(fn)
	assert.Equal(t, []int{0, 1, 2, 3, 4}, got, "nothing is delivered twice")
}

// A listener that ends its goroutine (runtime.Goexit) does not return, but
// the events after its own are delivered before the goroutine ends, in
// order, even when the listener ends it again for a later event.
func TestQueueDeliversEventsAfterAGoexit(t *testing.T) {
	var q queue[int]
	for i := range 4 {
		q.push(i)
	}
	var got []int
	fn := func(e int) {
		got = append(got, e)
		if e == 1 || e == 2 {
			runtime.Goexit()
		}
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		q.drain(fn)
		t.Error("drain returned from a listener that ended its goroutine")
	}()
	<-ended
	assert.Equal(t, []int{0, 1, 2, 3}, got)
	q.push(4)
	q.drain(fn)
	assert.Equal(t, []int{0, 1, 2, 3, 4}, got, "nothing is delivered twice")
}
