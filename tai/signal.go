package tai

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Signal is one thing that happened and asks for an action: a payment, a
// deployment request. The payload type T is the caller's.
type Signal[T any] struct {
	// ID is unique per signal: the idempotency, audit and trace key.
	// Process fails a signal without one with ErrInvalidSignal.
	ID string
	// Kind names the type of signal ("payment", "deployment"). Metrics and
	// statistics are kept per Kind. Process fails a signal without one
	// with ErrInvalidSignal.
	Kind string
	// Key says who or what the signal is about: a customer, a
	// service/region. Gates limit and order per Key. It may be empty.
	Key string
	// Time is when the signal happened (not when it is processed).
	Time time.Time
	// Payload is the caller's data.
	Payload T
}

// NewSignal returns a Signal with a random 128-bit ID (32 hex digits) and
// Time set to now.
func NewSignal[T any](kind, key string, payload T) Signal[T] {
	return Signal[T]{ID: NewID(), Kind: kind, Key: key, Time: time.Now(), Payload: payload}
}

// NewID returns a random 128-bit identifier as 32 lower-case hex digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}
