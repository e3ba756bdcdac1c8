package svc

import (
	"context"
	"log/slog"
	"time"

	"github.com/taipattern/taikit/kanban/natsjs"
)

// StartupRetryFor bounds how long a service retries setting up its
// JetStream streams and buckets while JetStream is out of reach: a
// cluster that has just formed, or lost a node, elects its leaders first,
// and a request sent meanwhile may go unanswered.
const StartupRetryFor = time.Minute

// Setup calls fn, a step of a service's start that sets up JetStream
// (creating a stream or bucket), with Retry for StartupRetryFor: a cluster
// starting with the service, or electing a leader, answers a moment
// later.
func Setup(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	return Retry(ctx, log, StartupRetryFor, what, nil, fn)
}

// Retry calls fn until it succeeds, fails for a reason other than
// JetStream out of reach (natsjs.Unreachable), ctx ends, or the next try would
// start more than within after the first: 0.1 s apart at first, doubling
// to 2 s. Each failure it retries is logged as a warning, what and attrs
// saying what was not done yet. fn must be safe to call again after it
// failed (creating or updating a stream or bucket is; a write is when it
// is conditional on a revision, or idempotent). It returns fn's last
// error.
func Retry(ctx context.Context, log *slog.Logger, within time.Duration, what string, attrs []any, fn func(context.Context) error) error {
	deadline := time.Now().Add(within)
	wait := 100 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		err := fn(ctx)
		if err == nil || ctx.Err() != nil || !natsjs.Unreachable(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		log.Warn(what+" not done yet; retrying", append(attrs[:len(attrs):len(attrs)], "err", err)...)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return err
		case <-timer.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}
