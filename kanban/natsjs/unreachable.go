package natsjs

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/kanban"
)

// Unreachable reports whether err says that JetStream was out of reach,
// which a later try of the same request may not meet: no answer from a
// stream or from the JetStream API in time (context.DeadlineExceeded
// among them: check that the caller's own context has not ended), no
// responders, a connection being re-established, a request or a
// PublishAsync acknowledgement cut off by a disconnect
// (nats.ErrDisconnected: a reconnect forced, a server restarting; a
// connection closed for good is nats.ErrConnectionClosed, which is not
// out of reach but gone), or the API answering
// that it is temporarily unavailable (503) — as a cluster does while it
// elects a leader — or that a replicated stream cannot be placed on
// enough servers because one is offline or unknown (the reasons "peer
// offline" and "miscellaneous issue"), as a cluster answers in the
// seconds before it hears from a server that has just started, or while
// a server of a restarted cluster is not back yet. "miscellaneous issue"
// also covers a server at its limit of replicated assets, which waiting
// mends only if assets are removed. A server or account without
// JetStream is not out of reach, nor is a placement that fails for any
// other reason (too little storage, tags that match no server): waiting
// does not mend them. Nor is a full stream (kanban.ErrFull), which the
// server also answers with 503.
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) {
		return true
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return false
	}
	if errors.Is(err, kanban.ErrFull) || isFull(err) {
		return false // answered 503, but the stream is there, and full
	}
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	return api.Code == http.StatusServiceUnavailable ||
		api.ErrorCode == errCodeNoPeers && (strings.Contains(api.Description, "peer offline") ||
			strings.Contains(api.Description, "miscellaneous issue"))
}

// errCodeNoPeers is the JetStream API's error code for a stream or
// consumer that no set of servers can hold; its description lists the
// reasons.
const errCodeNoPeers jetstream.ErrorCode = 10005

// closedError is an error that nats.go gave on a closed connection but
// reports the closure in its text alone (creating PublishAsync's reply
// subscription, for one); it matches nats.ErrConnectionClosed as well.
type closedError struct{ error }

func (e closedError) Is(target error) bool { return target == nats.ErrConnectionClosed }
func (e closedError) Unwrap() error        { return e.error }

// connError returns err, made to match nats.ErrConnectionClosed when nc
// is closed, so that callers can tell a connection that never comes back
// from one that is re-established.
func connError(nc *nats.Conn, err error) error {
	if err == nil || errors.Is(err, nats.ErrConnectionClosed) || !nc.IsClosed() {
		return err
	}
	return closedError{err}
}
