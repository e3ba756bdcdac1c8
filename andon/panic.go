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
// runtime.Goexit in <where>". A value whose own Error or String method
// panics or calls runtime.Goexit is named by its type instead: "a
// <type> whose text could not be made".
func (e *PanicError) Error() string {
	if e.Value == nil {
		return "andon: runtime.Goexit in " + e.Where
	}
	return "andon: panic in " + e.Where + ": " + panicText(e.Value)
}

// panicText prints a panic's value as fmt's %v does, or, should the
// value's own Error or String method panic in a way fmt lets through (with
// a value whose method panics too) or end the goroutine with
// runtime.Goexit, names its type: a recovered panic is reported, not
// raised again while it is, and the goroutine reporting it goes on. The
// methods run on a goroutine of their own, which a Goexit in them ends
// alone; panicText waits for it.
func panicText(v any) string {
	var (
		s  string
		ok bool
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		s, ok = fmt.Sprint(v), true
	}()
	<-done
	if !ok {
		return fmt.Sprintf("a %T whose text could not be made", v)
	}
	return s
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
