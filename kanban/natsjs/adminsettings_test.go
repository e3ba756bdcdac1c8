package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestNewKeepsStreamSettingsItDoesNotOwn: New updating streams an
// administrator gave settings the queue does not set (a description,
// compression, direct gets, metadata, a per-subject limit) keeps them, and
// still sets its own (here Capacity). Before, New sent its whole
// configuration, and the update reset every setting it left out.
func TestNewKeepsStreamSettingsItDoesNotOwn(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "ADMIN"})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, name := range []string{"ADMIN", "ADMIN_DLQ"} {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.Description = "orders waiting for the warehouse"
		cfg.Compression = jetstream.S2Compression
		cfg.AllowDirect = true
		cfg.Metadata = map[string]string{"owner": "warehouse"}
		_, err = js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
	}

	_, err = natsjs.New[int](ctx, nc, natsjs.Options{Stream: "ADMIN", Capacity: 500, DeadLetterLimit: 50})
	require.NoError(t, err)
	for name, limit := range map[string]int64{"ADMIN": 501, "ADMIN_DLQ": 50} { // the work stream holds the keeper too
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		assert.Equal(t, "orders waiting for the warehouse", cfg.Description, name)
		assert.Equal(t, jetstream.S2Compression, cfg.Compression, name)
		assert.True(t, cfg.AllowDirect, name)
		assert.Equal(t, "warehouse", cfg.Metadata["owner"], name)
		assert.Equal(t, limit, cfg.MaxMsgs, "%s: the queue's own setting is updated", name)
	}
}

// queueWithDurable makes the queue of opts on a server of its own, its
// durable first made as cfg says (as an administrator or another client
// would: its Durable and FilterSubject are the queue's), with one message
// published; it returns the queue and a context for the test.
func queueWithDurable(t *testing.T, opts natsjs.Options, cfg jetstream.ConsumerConfig) (context.Context, *natsjs.Queue[int]) {
	t.Helper()
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	opts.FetchWait = 50 * time.Millisecond
	q, err := natsjs.New[int](ctx, nc, opts)
	require.NoError(t, err)
	cfg.Durable, cfg.FilterSubject = opts.Stream+"_WORKERS", opts.Stream
	_, err = q.JetStream().CreateOrUpdateConsumer(ctx, opts.Stream, cfg)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 1}))
	return ctx, q
}

// TestConsumeTakesADurableWithItsOwnMaxWaiting: a durable given a
// MaxWaiting other than the server's default (by an administrator, or by
// another client) is updated by Consume and delivers, keeping its
// MaxWaiting, which the server lets no update change. Before, Consume
// asked for the default MaxWaiting, and the server refused the update:
// Consume returned "max waiting can not be updated" and handled nothing.
func TestConsumeTakesADurableWithItsOwnMaxWaiting(t *testing.T) {
	ctx, q := queueWithDurable(t, natsjs.Options{Stream: "WAITING"}, jetstream.ConsumerConfig{
		AckPolicy: jetstream.AckExplicitPolicy, MaxWaiting: 64, Description: "the warehouse's workers",
	})
	js := q.JetStream()

	assert.Equal(t, "m", consumeOne(t, ctx, q, 3))
	c, err := js.Consumer(ctx, "WAITING", "WAITING_WORKERS")
	require.NoError(t, err)
	assert.Equal(t, 64, c.CachedInfo().Config.MaxWaiting, "kept")
	assert.Equal(t, 3, c.CachedInfo().Config.MaxAckPending, "updated with the WIP of Consume")
}

// TestOptionsValidatePublishTimeoutTooShort: a PublishTimeout under 1ms,
// which no acknowledgement can beat, is refused, naming it; 1ms is taken.
// Before, a PublishTimeout of 1ns was taken, and every publish failed.
func TestOptionsValidatePublishTimeoutTooShort(t *testing.T) {
	for _, d := range []time.Duration{time.Nanosecond, time.Millisecond - 1} {
		err := natsjs.Options{PublishTimeout: d}.Validate()
		require.Error(t, err, "%v", d)
		assert.ErrorContains(t, err, "natsjs: invalid PublishTimeout "+d.String())
		assert.ErrorContains(t, err, "at least 1ms")
	}
	assert.NoError(t, natsjs.Options{PublishTimeout: time.Millisecond, AsyncAttempts: 1}.Validate())
}

// consumeOne consumes q with a WIP of wip until it has handled a message,
// and returns the message's ID; it fails the test when Consume returns
// first.
func consumeOne(t *testing.T, ctx context.Context, q *natsjs.Queue[int], wip int) string {
	t.Helper()
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	handled := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			select {
			case handled <- d.ID:
			default:
			}
			return nil
		}, kanban.ConsumeOptions{WIP: wip})
	}()
	var id string
	select {
	case id = <-handled:
	case err := <-done:
		t.Fatalf("Consume returned before handling a message: %v", err)
	}
	stop()
	require.NoError(t, <-done)
	return id
}

// TestConsumeKeepsDurableSettingsItDoesNotOwn: Consume updating a durable
// an administrator gave settings the queue does not set (a description,
// an inactivity threshold, pull request limits, a sampling rate,
// metadata) keeps them, and still sets its own: MaxAckPending from the
// WIP, AckWait, and no BackOff, headers-only delivery or priority groups
// (the queue's pulls name none). Before, Consume sent its whole
// configuration, and the update reset every setting it left out.
func TestConsumeKeepsDurableSettingsItDoesNotOwn(t *testing.T) {
	ctx, q := queueWithDurable(t, natsjs.Options{Stream: "KEPT", AckWait: 7 * time.Second}, jetstream.ConsumerConfig{
		AckPolicy:   jetstream.AckExplicitPolicy,
		Description: "the warehouse's workers", InactiveThreshold: time.Hour,
		MaxRequestBatch: 10, MaxRequestExpires: 10 * time.Second, MaxRequestMaxBytes: 1 << 20,
		SampleFrequency: "50%", Metadata: map[string]string{"owner": "warehouse"},
		BackOff: []time.Duration{time.Second, 2 * time.Second}, HeadersOnly: true,
		PriorityPolicy: jetstream.PriorityPolicyOverflow, PriorityGroups: []string{"jobs"},
	})
	js := q.JetStream()

	assert.Equal(t, "m", consumeOne(t, ctx, q, 3))
	c, err := js.Consumer(ctx, "KEPT", "KEPT_WORKERS")
	require.NoError(t, err)
	cfg := c.CachedInfo().Config
	assert.Equal(t, "the warehouse's workers", cfg.Description)
	assert.Equal(t, time.Hour, cfg.InactiveThreshold)
	assert.Equal(t, 10, cfg.MaxRequestBatch)
	assert.Equal(t, 10*time.Second, cfg.MaxRequestExpires)
	assert.Equal(t, 1<<20, cfg.MaxRequestMaxBytes)
	assert.Equal(t, "50%", cfg.SampleFrequency)
	assert.Equal(t, "warehouse", cfg.Metadata["owner"])
	// The queue's own.
	assert.Equal(t, 3, cfg.MaxAckPending)
	assert.Equal(t, 7*time.Second, cfg.AckWait)
	assert.Empty(t, cfg.BackOff)
	assert.False(t, cfg.HeadersOnly)
	assert.Empty(t, cfg.PriorityGroups)
	assert.Equal(t, jetstream.PriorityPolicyNone, cfg.PriorityPolicy)
	assert.Equal(t, "KEPT", cfg.FilterSubject)
}

// TestConsumeTakesADurableWithSettingsNoUpdateChanges: a durable given a
// setting the queue does not need and the server lets no update change (a
// replay at the original pace, consumer state held in memory) is updated
// by Consume and delivers, the setting kept. Before, Consume asked for
// the server's default, and the server refused the update: Consume
// returned "replay policy can not be updated" (or "storage type can not
// be updated") and handled nothing.
func TestConsumeTakesADurableWithSettingsNoUpdateChanges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(*jetstream.ConsumerConfig)
		check func(*testing.T, jetstream.ConsumerConfig)
	}{
		{"ReplayPolicy", func(c *jetstream.ConsumerConfig) { c.ReplayPolicy = jetstream.ReplayOriginalPolicy },
			func(t *testing.T, c jetstream.ConsumerConfig) {
				assert.Equal(t, jetstream.ReplayOriginalPolicy, c.ReplayPolicy)
			}},
		{"MemoryStorage", func(c *jetstream.ConsumerConfig) { c.MemoryStorage = true },
			func(t *testing.T, c jetstream.ConsumerConfig) { assert.True(t, c.MemoryStorage) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy}
			tc.set(&cfg)
			ctx, q := queueWithDurable(t, natsjs.Options{Stream: "FIXED"}, cfg)
			js := q.JetStream()

			assert.Equal(t, "m", consumeOne(t, ctx, q, 2))
			c, err := js.Consumer(ctx, "FIXED", "FIXED_WORKERS")
			require.NoError(t, err)
			tc.check(t, c.CachedInfo().Config)
			assert.Equal(t, 2, c.CachedInfo().Config.MaxAckPending, "updated with the WIP of Consume")
		})
	}
}

// TestConsumeRefusesADurableItCannotUse: a durable with a setting the
// queue needs otherwise and the server lets no update change (pushed
// deliveries, acknowledgements other than explicit ones) makes Consume
// return at once an error naming the setting, the value found and the
// one the queue needs; the durable is left as it is. Before, Consume
// returned the server's refusal of the update ("can not update push
// consumer to pull based", "ack policy can not be updated"), which named
// neither. The acknowledgement policy is tried on a stream an
// administrator made with limits retention, which a user who may create
// consumers but not update streams uses as it is: the queue's own work
// stream takes explicit acknowledgements alone.
func TestConsumeRefusesADurableItCannotUse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   jetstream.ConsumerConfig
		wants []string
	}{
		{"DeliverSubject", jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, DeliverSubject: "deliver.here"},
			[]string{"natsjs: consumer MADE_WORKERS:", "DeliverSubject", `"deliver.here"`, "pull"}},
		{"AckPolicy", jetstream.ConsumerConfig{AckPolicy: jetstream.AckAllPolicy},
			[]string{"natsjs: consumer MADE_WORKERS:", "AckPolicy", "AckAll", "AckExplicit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := append([]string{"$JS.API.CONSUMER.CREATE.>"}, workerPerms...)
			ns := startUsersServer(t, user("admin"), user("ops", ops...))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			admin, err := jetstream.New(connectAs(t, ns, "admin", &violations{}))
			require.NoError(t, err)
			for _, name := range []string{"MADE", "MADE_DLQ"} {
				_, err = admin.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name}, Storage: jetstream.MemoryStorage})
				require.NoError(t, err)
			}
			cfg := tc.cfg
			cfg.Durable = "MADE_WORKERS"
			_, err = admin.CreateConsumer(ctx, "MADE", cfg)
			require.NoError(t, err)

			q, err := natsjs.New[int](ctx, connectAs(t, ns, "ops", &violations{}),
				natsjs.Options{Stream: "MADE", Storage: natsjs.MemoryStorage, FetchWait: 50 * time.Millisecond})
			require.NoError(t, err)
			err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{})
			require.Error(t, err)
			for _, want := range tc.wants {
				assert.ErrorContains(t, err, want)
			}
			assert.NoError(t, ctx.Err(), "returned at once")
			var info *jetstream.ConsumerInfo
			if cfg.DeliverSubject != "" {
				c, err := admin.PushConsumer(ctx, "MADE", "MADE_WORKERS")
				require.NoError(t, err)
				info = c.CachedInfo()
			} else {
				c, err := admin.Consumer(ctx, "MADE", "MADE_WORKERS")
				require.NoError(t, err)
				info = c.CachedInfo()
			}
			assert.Equal(t, tc.cfg.AckPolicy, info.Config.AckPolicy, "left as it is")
			assert.Equal(t, tc.cfg.DeliverSubject, info.Config.DeliverSubject, "left as it is")
		})
	}
}
