package natsjs_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestConsumeSeesAMaskedAckRefusal: a refused acknowledgement that
// another error on the connection replaces as its last error before
// Consume looks (here the connection's own error handler publishes, at
// once, to a subject it may not) ends Consume all the same, with the
// refusal: Consume is told of every error of the connection in order.
// It read the last error alone, and ran until its ctx ended while every
// message was handled again after AckWait. The connection's own handler
// is called with every error while Consume runs, and is the connection's
// handler again once Consume has returned.
func TestConsumeSeesAMaskedAckRefusal(t *testing.T) {
	ns := startUsersServer(t, user("noack", "MASKED", "MASKED.keeper", "MASKED_DLQ", "$JS.API.>"))
	ctx := context.Background()
	var v violations
	own := func(c *nats.Conn, s *nats.Subscription, err error) {
		v.handler(c, s, err)
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"$JS.ACK.`) {
			_ = c.Publish("ELSEWHERE", nil) // refused too: the last error
			_ = c.Flush()
		}
	}
	nc := connect(t, func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect("", append(opts, nats.InProcessServer(ns), nats.UserInfo("noack", "noack"))...)
	}, nats.ErrorHandler(own))
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "MASKED", FetchWait: 2 * time.Second, AckWait: time.Second})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err = q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{WIP: 1})
	require.Error(t, err, "Consume ended only with ctx")
	assert.ErrorIs(t, err, nats.ErrPermissionViolation)
	assert.True(t, kanban.IsPermanent(err))
	assert.Contains(t, err.Error(), `"$JS.ACK.`)
	assert.NoError(t, cctx.Err())

	assert.Eventually(t, func() bool { return len(v.all()) >= 2 }, 10*time.Second, time.Millisecond,
		"the acknowledgement's refusal and the publish's, told to the connection's own handler")
	assert.Equal(t, reflect.ValueOf(own).Pointer(), reflect.ValueOf(nc.ErrorHandler()).Pointer(), "the connection's own handler put back")
	require.NoError(t, q.Shutdown(ctx))
}
