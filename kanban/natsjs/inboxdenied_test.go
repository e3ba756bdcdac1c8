package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestNewNotPermittedToSubscribeToReplies: New on a connection whose
// user may publish anywhere but not subscribe to the inboxes replies
// come to fails at once with the server's refusal, naming the inbox, with
// nats.PermissionErrOnSubscribe or without it, instead of waiting out its
// ctx for a reply that never comes.
func TestNewNotPermittedToSubscribeToReplies(t *testing.T) {
	ns := startUsersServer(t, &server.User{Username: "deaf", Password: "deaf", Permissions: &server.Permissions{
		Subscribe: &server.SubjectPermission{Allow: []string{"NOTHING"}},
	}})
	for name, opts := range map[string][]nats.Option{"default": nil, "PermissionErrOnSubscribe": {nats.PermissionErrOnSubscribe(true)}} {
		t.Run(name, func(t *testing.T) {
			nc := connect(t, func(o ...nats.Option) (*nats.Conn, error) {
				return nats.Connect("", append(o, nats.InProcessServer(ns), nats.UserInfo("deaf", "deaf"))...)
			}, append(opts, nats.ErrorHandler((&violations{}).handler))...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "DEAF"})
			require.ErrorIs(t, err, nats.ErrPermissionViolation)
			assert.Contains(t, err.Error(), `subscribe to "_INBOX.`)
			require.NoError(t, ctx.Err())
		})
	}
}
