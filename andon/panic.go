package andon

import (
	"fmt"
	"runtime/debug"
)

// PanicError is a panic recovered from a user callback: a rule's
// Condition, a Hook, a Notifier or NotifyOptions.Backoff. The evaluator
// keeps running: a condition's panic is an evaluation error
// (Alert.LastError, the state unchanged), a hook's is logged, a
// notifier's fails the batch without retries, a Backoff's gives the batch
// up as its last attempt would. Each is logged with its Stack. A
// condition that ends its goroutine with runtime.Goexit has a PanicError
// with a nil Value as its error.
type PanicError struct {
	// Where names the callback: "condition of rule HighErrorRate",
	// "hook stop line checkout", "notifier webhook", "backoff of notifier
	// webhook".
	Where string
	// Value is what was passed to panic; nil for a runtime.Goexit.
	Value any
	// Stack is the stack of the goroutine where it panicked.
	Stack []byte
}

// newPanicError records a recovered panic with the stack; call it in the
// deferred function that recovered.
func newPanicError(where string, v any) *PanicError {
	return &PanicError{Where: where, Value: v, Stack: debug.Stack()}
}

// Error returns "andon: panic in <where>: <value>", or "andon:
// runtime.Goexit in <where>".
func (e *PanicError) Error() string {
	if e.Value == nil {
		return "andon: runtime.Goexit in " + e.Where
	}
	return fmt.Sprintf("andon: panic in %s: %v", e.Where, e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
