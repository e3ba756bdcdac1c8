package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// startUsersServer starts an in-process JetStream server with users, each
// limited by its Permissions (nil: every subject).
func startUsersServer(t *testing.T, users ...*server.User) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: t.TempDir(), DontListen: true, NoLog: true, NoSigs: true,
		Users: users,
	})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second), "server not ready")
	return ns
}

// user returns a user named name who may publish to the subjects pub
// (nil: any) and subscribe to replies.
func user(name string, pub ...string) *server.User {
	u := &server.User{Username: name, Password: name}
	if pub != nil {
		u.Permissions = &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}
	}
	return u
}

// violations collects the permission violations a connection is told of.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		v.mu.Lock()
		v.errs = append(v.errs, err)
		v.mu.Unlock()
	}
}

// waitFor waits until a violation naming subject (quoted) has been told.
func (v *violations) waitFor(t *testing.T, subject string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, err := range v.all() {
			if strings.Contains(err.Error(), subject) {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "no violation naming %s", subject)
}

func (v *violations) all() []error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]error(nil), v.errs...)
}

// connectAs connects to ns as the user name, reporting its permission
// violations to v.
func connectAs(t *testing.T, ns *server.Server, name string, v *violations) *nats.Conn {
	t.Helper()
	return connect(t, func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect("", append(opts, nats.InProcessServer(ns), nats.UserInfo(name, name))...)
	}, nats.ErrorHandler(v.handler))
}

// keeperDeniedLog is the warning of New when the connection may not
// publish the keeper.
const keeperDeniedLog = "natsjs: the connection may not publish to the work stream's keeper subject; the queue publishes no keeper"

// keepers returns how many keepers the work stream named stream holds.
func keepers(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(stream+".keeper"))
	require.NoError(t, err)
	return info.State.Subjects[stream+".keeper"]
}

// TestKeeperNotPermitted: a user who may publish to the work subject (and
// use the JetStream API and acknowledge) but not to the keeper's subject makes a
// file-stored queue that works without a keeper. New sees the server's
// refusal at once, instead of waiting out a request's timeout for an
// acknowledgement that never comes, and says so once at Warn; the queue
// then publishes no keeper, so that the connection is not told of a
// permission violation every 64 KiB published. A user who may publish
// the keeper gets one.
func TestKeeperNotPermitted(t *testing.T) {
	ns := startUsersServer(t, user("admin"),
		user("tight", "TIGHT", "$JS.API.>", "$JS.ACK.>"),
		user("full", "FULL", "FULL.keeper", "$JS.API.>"))
	ctx := context.Background()
	admin, err := jetstream.New(connectAs(t, ns, "admin", &violations{}))
	require.NoError(t, err)

	var v violations
	nc := connectAs(t, ns, "tight", &v)
	denied, notStored := newMsgLog(keeperDeniedLog), newMsgLog("natsjs: the work stream's keeper not stored")
	logger := slog.New(multiHandler{msgHandler{denied}, msgHandler{notStored}})
	q, err := natsjs.New[[]byte](ctx, nc, natsjs.Options{Stream: "TIGHT", Codec: rawCodec{}, FetchWait: 100 * time.Millisecond, Logger: logger})
	require.NoError(t, err)
	assert.Equal(t, 1, denied.count(), "the keeper refused, said once")
	assert.Zero(t, notStored.count(), "not waited out as a keeper not acknowledged")
	var ids []string
	for i := range 4 { // 320 KiB: a keeper every 64 KiB, were it permitted
		ids = append(ids, strconv.Itoa(i), "async"+strconv.Itoa(i))
		require.NoError(t, q.Publish(ctx, kanban.Message[[]byte]{ID: ids[len(ids)-2], Payload: make([]byte, 40<<10)}))
		require.NoError(t, q.PublishAsync(ctx, kanban.Message[[]byte]{ID: ids[len(ids)-1], Payload: make([]byte, 40<<10)}))
	}
	require.NoError(t, q.Flush(ctx))
	require.NoError(t, nc.Flush()) // a violation comes before the pong
	assert.Len(t, v.all(), 1, "no keeper published after New's: %v", v.all())
	assert.Zero(t, keepers(t, admin, "TIGHT"))
	assert.ElementsMatch(t, ids, handleAll(t, q, 4))
	require.NoError(t, q.Shutdown(ctx))

	var none violations
	q, err = natsjs.New[[]byte](ctx, connectAs(t, ns, "full", &none), natsjs.Options{Stream: "FULL", Logger: logger})
	require.NoError(t, err)
	assert.Equal(t, 1, denied.count(), "not said for a permitted keeper")
	assert.Empty(t, none.all())
	assert.Equal(t, uint64(1), keepers(t, admin, "FULL"))
	require.NoError(t, q.Shutdown(ctx))
}

// TestConsumerOnlyUser: a user who may use the JetStream API, pull and
// acknowledge but publish to neither the work subject nor the keeper's
// makes the queue (a keeper refused, said once) and consumes what another
// published, leaving that one's keeper in place.
func TestConsumerOnlyUser(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("consumer", "$JS.API.>", "$JS.ACK.>"))
	ctx := context.Background()
	opts := natsjs.Options{Stream: "READER", FetchWait: 100 * time.Millisecond}
	pub, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, pub.Publish(ctx, kanban.Message[int]{ID: strconv.Itoa(i), Payload: i}))
	}

	denied := newMsgLog(keeperDeniedLog)
	opts.Logger = denied.logger()
	var v violations
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "consumer", &v), opts)
	require.NoError(t, err)
	assert.Equal(t, 1, denied.count())
	assert.Equal(t, []string{"0", "1", "2"}, handleAll(t, q, 1))
	assert.Len(t, v.all(), 1, "only New's keeper refused: %v", v.all())
	assert.Equal(t, uint64(1), keepers(t, pub.JetStream(), "READER"))
	require.NoError(t, q.Shutdown(ctx))
	require.NoError(t, pub.Shutdown(ctx))
}

// multiHandler hands each record to every handler.
type multiHandler []slog.Handler

func (m multiHandler) Enabled(context.Context, slog.Level) bool { return true }
func (m multiHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range m {
		_ = h.Handle(ctx, r)
	}
	return nil
}
func (m multiHandler) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m multiHandler) WithGroup(string) slog.Handler      { return m }

// TestKeeperNotPermittedConcurrentNew: queues made at the same time on one
// connection not permitted to publish their keepers each see their own
// refusal. A refusal is seen as the connection's last error, and another
// queue's, coming after it, hid it: that New waited out PublishTimeout
// and its queue published keepers, each refused.
func TestKeeperNotPermittedConcurrentNew(t *testing.T) {
	ns := startUsersServer(t, user("consumer", "$JS.API.>", "$JS.ACK.>"))
	var v violations
	nc := connectAs(t, ns, "consumer", &v)
	denied, notStored := newMsgLog(keeperDeniedLog), newMsgLog("natsjs: the work stream's keeper not stored")
	logger := slog.New(multiHandler{msgHandler{denied}, msgHandler{notStored}})
	const rounds, queues = 5, 8
	for r := range rounds {
		var wg sync.WaitGroup
		for i := range queues {
			wg.Go(func() {
				opts := natsjs.Options{Stream: "C" + strconv.Itoa(r) + "_" + strconv.Itoa(i), Logger: logger}
				_, err := natsjs.New[int](context.Background(), nc, opts)
				assert.NoError(t, err)
			})
		}
		wg.Wait()
	}
	assert.Zero(t, notStored.count(), "a refusal hidden by another's, waited out")
	assert.Equal(t, rounds*queues, denied.count())
	// The error handler is called on a goroutine of the client, in order:
	// a refusal of this test's own, seen, comes after every queue's.
	require.NoError(t, nc.Publish("MARKER", nil))
	require.NoError(t, nc.Flush())
	v.waitFor(t, `"MARKER"`)
	assert.Len(t, v.all(), rounds*queues+1, "one refusal a queue")
}
