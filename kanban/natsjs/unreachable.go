package natsjs

import (
	"context"
	"errors"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Unreachable reports whether err says that JetStream was out of reach,
// which a later try of the same request may not meet: no answer from a
// stream or from the JetStream API in time (context.DeadlineExceeded
// among them: check that the caller's own context has not ended), no
// responders, a connection being re-established, or the API answering
// that it is temporarily unavailable (503) — as a cluster does while it
// elects a leader. A server or account without JetStream is not out of
// reach: waiting does not mend it.
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionReconnecting) {
		return true
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return false
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && api.Code == http.StatusServiceUnavailable
}
