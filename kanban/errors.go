package kanban

import (
	"errors"
	"fmt"
)

var (
	// ErrFull is returned by TryPublish when the queue holds as many
	// messages as it may. Publish waits for room instead.
	ErrFull = errors.New("kanban: queue full")
	// ErrNoID is returned by Publish and TryPublish for a message without
	// an ID: the ID is the deduplication key, so it cannot be empty.
	ErrNoID = errors.New("kanban: message has no id")
)

// PanicError is a handler's panic, recovered by the consumer. The
// consumer keeps running: it logs the PanicError, with its stack, at Error
// level on ConsumeOptions.Logger, and settles the message as it settles a
// handler error — retried after the back-off until MaxAttempts, then
// dead-lettered with the PanicError's text as reason; at once when the
// panic value is a Permanent error.
//
// A handler that ends its goroutine with runtime.Goexit (t.FailNow in a
// test) fails its attempt the same way, with a PanicError whose Value is
// nil, logged as "kanban: handler called runtime.Goexit"; the consumer
// goes on in another goroutine.
type PanicError struct {
	Value any    // what was passed to panic; nil for a runtime.Goexit
	Stack []byte // the stack of the handler's goroutine where it panicked
}

// Error returns "kanban: panic in handler: " and the panic value, or
// "kanban: runtime.Goexit in handler" when Value is nil: since Go 1.21 a
// panic(nil) is recovered as a *runtime.PanicNilError, so only a
// goroutine that ended has no value.
func (e *PanicError) Error() string {
	if e.Value == nil {
		return "kanban: runtime.Goexit in handler"
	}
	return fmt.Sprintf("kanban: panic in handler: %v", e.Value)
}

// Unwrap returns the panic value if it is an error, else nil.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// PermanentError marks an error that retrying cannot fix. A handler
// returning one has its message dead-lettered at once instead of retried.
//
// Permanent, IsPermanent and PermanentError are taikit's one way to say
// "do not retry": other packages' retry loops (andon's notifiers, for one)
// honour them too, so any retry loop may use them, with a Backoff, as in
// the package's examples.
type PermanentError struct {
	// Err is the failure; nil reads as "kanban: permanent failure".
	Err error
}

// Error returns Err's text.
func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "kanban: permanent failure"
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that a handler returning it sends the message to
// the dead letters at once, keeping err's text as the reason; a retry loop
// outside kanban stops at once on it too. errors.Is and errors.As see err
// through the wrapper. Permanent(nil) returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or an error it wraps, as errors.As
// follows wrapping) came from Permanent: whether a retry loop should give
// up on it at once.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// optionError reports a bad configuration field.
func optionError(pkg, field string, value any, why string) error {
	return fmt.Errorf("%s: invalid %s %v: %s", pkg, field, value, why)
}
