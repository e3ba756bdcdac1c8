package taicel

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// PanicError is a panic recovered from a callback of yours: a Loader's
// OnReload or Observer, a Shadow's OnDisagree or OnError. It is logged,
// with its Stack, on the Logger of the options, and the Loader or Shadow
// goes on as if the callback had returned: the Loader's other callback
// still hears of the load and later loads are still reported; the Shadow
// returns the live set's decision.
type PanicError struct {
	Where string // the callback that panicked: "OnReload", "Observer", "OnDisagree" or "OnError"
	Value any    // what was passed to panic
	Stack []byte // the stack of the goroutine where it panicked
}

func newPanicError(where string, v any) *PanicError {
	return &PanicError{Where: where, Value: v, Stack: debug.Stack()}
}

// Error returns "taicel: panic in <Where>: <Value>".
func (e *PanicError) Error() string {
	return fmt.Sprintf("taicel: panic in %s: %v", e.Where, e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// callSafely runs the callback fn, named where, and logs a panic in it as
// a *PanicError on log (slog.Default() when nil), with attrs. A callback
// runs where a panic would end the process (a Loader's goroutine) or fail
// what it only watches (a Shadow's live signal).
func callSafely(log *slog.Logger, where string, fn func(), attrs ...any) {
	defer func() {
		if v := recover(); v != nil {
			pe := newPanicError(where, v)
			if log == nil {
				log = slog.Default()
			}
			log.Error("taicel: "+where+" panicked", append(attrs, "panic", pe, "stack", string(pe.Stack))...)
		}
	}()
	fn()
}
