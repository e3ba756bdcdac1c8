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

// PermanentError marks a handler error that retrying cannot fix. The
// consumer dead-letters the message at once instead of retrying it.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "kanban: permanent failure"
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that a handler returning it sends the message to
// the dead letters at once, keeping err's text as the reason. Permanent(nil)
// returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or an error it wraps) came from
// Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// optionError reports a bad configuration field.
func optionError(pkg, field string, value any, why string) error {
	return fmt.Errorf("%s: invalid %s %v: %s", pkg, field, value, why)
}
