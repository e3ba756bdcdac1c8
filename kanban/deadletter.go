package kanban

import "time"

// DeadLetter is a message the consumer gave up on: its attempts ran out,
// the handler returned a Permanent error, or its payload could not be
// decoded.
type DeadLetter struct {
	ID      string // the message's ID
	Key     string // the message's Key
	Headers Header // the message's headers, with what Publish injected
	// Payload is the message as stored: the encoded bytes for a backend
	// with a Codec, the Codec's encoding of the value for one without.
	Payload []byte
	// Reason is the last error's text.
	Reason string
	// Attempts is the number of deliveries made.
	Attempts int
	// Time is when the message was dead-lettered.
	Time time.Time
}
