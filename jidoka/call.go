package jidoka

import (
	"context"
	"sync"

	"github.com/taipattern/taikit/tai"
)

// Call runs fn through the guard g, as g.Do would, and returns fn's value
// with g's error: the value of the first call of fn that succeeded, or,
// when none did and g returned nil all the same (a Fallback), that of the
// last call to return; the zero R when g returns an error. It is what a
// tai pipeline does with an action's value, for code that uses guards
// alone: a function that writes its result to a variable of the caller
// races under a Hedge, which runs it several times at once, and Call
// makes that safe.
//
// Call costs a closure and its state per call (two allocations); with a
// Breaker, Execute costs none.
func Call[R any](ctx context.Context, g tai.Guard, fn func(context.Context) (R, error)) (R, error) {
	// One struct for the state the closure shares, not three variables
	// that would each move to the heap.
	st := &struct {
		mu  sync.Mutex
		val R
		won bool
	}{}
	err := g.Do(ctx, func(ctx context.Context) error {
		v, err := fn(ctx)
		st.mu.Lock()
		if !st.won {
			st.val, st.won = v, err == nil
		}
		st.mu.Unlock()
		return err
	})
	if err != nil {
		var zero R
		return zero, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.val, nil
}
