package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// errLog sends the err attribute of each record with message msg on errs.
type errLog struct {
	msg  string
	errs chan error
}

func (h errLog) Enabled(context.Context, slog.Level) bool { return true }
func (h errLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != h.msg {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "err" {
			select {
			case h.errs <- err:
			default:
			}
		}
		return true
	})
	return nil
}
func (h errLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h errLog) WithGroup(string) slog.Handler      { return h }

// TestDeadLetterNotPermitted: a consumer whose connection may not
// publish to the dead-letter stream's subject fails to dead-letter a
// message at once, with the server's refusal naming the subject, and
// hands the message back; it waited out PublishTimeout (an hour here)
// with the handler's slot held, and failed with a bare timeout.
func TestDeadLetterNotPermitted(t *testing.T) {
	ns := startUsersServer(t, user("nodlq", "NODLQ", "NODLQ.keeper", "$JS.API.>", "$JS.ACK.>"))
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "nodlq", &violations{}),
		natsjs.Options{Stream: "NODLQ", FetchWait: 100 * time.Millisecond, PublishTimeout: time.Hour, AsyncAttempts: 1})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
	log := errLog{msg: "kanban: settling a message failed", errs: make(chan error, 1)}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
			return kanban.Permanent(errors.New("no"))
		}, kanban.ConsumeOptions{Logger: slog.New(log)})
	}()
	select {
	case err := <-log.errs:
		assert.ErrorIs(t, err, nats.ErrPermissionViolation)
		assert.Contains(t, err.Error(), `"NODLQ_DLQ"`)
		assert.Contains(t, err.Error(), "dead-lettering message a")
	case <-time.After(20 * time.Second):
		t.Error("dead-lettering not failed in 20s")
	}
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Consume not ended in 20s")
	}
	require.NoError(t, q.Shutdown(ctx))
}
