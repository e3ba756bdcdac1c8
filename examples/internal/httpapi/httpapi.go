// Package httpapi is the HTTP plumbing the example services share: one JSON
// error schema, strict request decoding, bearer tokens (an API token and a
// separate admin token), a Host allow-list against DNS rebinding, and JSON
// answers for unknown routes and methods. It is part of the examples, not of
// the library: a service of your own would make the same choices with its
// own router and middleware.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error is a client-visible error. Every error answer of the services has the
// body {"error": {"code": ..., "message": ..., "field": ...}}; Status is the
// HTTP status and RetryAfter, when positive, is sent as Retry-After in whole
// seconds (rounded up).
type Error struct {
	Status     int            `json:"-"`
	Code       string         `json:"code"`
	Message    string         `json:"message"`
	Field      string         `json:"field,omitempty"`
	Details    map[string]any `json:"details,omitempty"`
	RetryAfter time.Duration  `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the status, code and a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a 400 invalid_request error about field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// WriteJSON writes v as a JSON answer with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteRaw(w, http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"could not encode the response"}}`))
		return
	}
	WriteRaw(w, status, b)
}

var newline = []byte{'\n'}

// WriteRaw writes body, already JSON, with the status. body is written as it
// is and never appended to, so a stored answer can be replayed to many
// requests at once.
func WriteRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write(newline)
}

// WriteError writes err in the error schema. An *Error (found with
// errors.As) is written as it is, with its Status when that is an error's
// (4xx or 5xx) and 500 otherwise (an Error made without one); anything
// else, a nil *Error too, is a 500 that says only "internal error", so
// internals never reach a client.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) || e == nil {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	if e.Status < 400 || e.Status > 599 {
		fixed := *e
		fixed.Status = http.StatusInternalServerError
		e = &fixed
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(e.RetryAfter)))
	}
	WriteJSON(w, e.Status, ErrorBody{Error: e})
}

// RetryAfterSeconds rounds d up to whole seconds, at least 1, as the
// Retry-After header needs. It divides before rounding: adding a second
// less a nanosecond first would overflow for the longest durations.
func RetryAfterSeconds(d time.Duration) int {
	s := d / time.Second
	if d%time.Second > 0 {
		s++
	}
	return max(int(s), 1)
}
