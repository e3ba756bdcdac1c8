package natsjs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestLeasesWithinTheDurablesBackOff: a durable made elsewhere with a
// BackOff gives a message delivered the nth time BackOff[n-1] (the last
// entry, beyond them) before the server delivers it again, counted from
// its delivery or its last extension, whatever its AckWait (the server
// sets AckWait to BackOff[0]). A worker not permitted to update the
// durable extends its leases within the shortest entry, so a message
// handled for longer than that is not delivered again meanwhile. Before,
// it extended them within AckWait: a message delivered again, under an
// entry shorter than the first, was delivered a third time while its
// handler ran. The worker's warning that it uses the durable as it is
// names BackOff. A queue permitted to update the durable replaces its
// BackOff, as it does its AckWait.
func TestLeasesWithinTheDurablesBackOff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		user    string
		backOff []time.Duration
		naks    int // deliveries made, and handed back, before Consume's
	}{
		// The leases are extended a third of the shortest entry apart,
		// and the two thirds left are what a loaded machine has to get
		// each extension to the server: a second here. An entry of 300ms
		// left 200ms, and one of 1s left 667ms; a busy machine exceeded
		// both, and the message came again while it was handled.
		{"shortest first", "worker", []time.Duration{1500 * time.Millisecond, 5 * time.Second}, 0},
		{"shortest later", "worker", []time.Duration{5 * time.Second, 1500 * time.Millisecond}, 1},
		{"updated", "admin", []time.Duration{5 * time.Second, 1500 * time.Millisecond}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
			ctx := context.Background()
			opts := natsjs.Options{Stream: "MADE", FetchWait: 50 * time.Millisecond}
			admin := connectAs(t, ns, "admin", &violations{})
			_, err := natsjs.New[int](ctx, admin, opts)
			require.NoError(t, err)
			js, err := jetstream.New(admin)
			require.NoError(t, err)
			cons, err := js.CreateConsumer(ctx, "MADE", jetstream.ConsumerConfig{
				Durable: "MADE_WORKERS", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Second,
				BackOff: tc.backOff, MaxDeliver: -1, FilterSubject: "MADE",
			})
			require.NoError(t, err)
			require.Equal(t, tc.backOff[0], cons.CachedInfo().Config.AckWait, "the server's AckWait is BackOff[0]")

			differs := newMsgLog("natsjs: the connection may not create or update the consumer; the queue uses it as it is")
			var warned slog.Record
			opts.Logger = slog.New(recordHandler{differs: differs, last: &warned})
			q, err := natsjs.New[int](ctx, connectAs(t, ns, tc.user, &violations{}), opts)
			require.NoError(t, err)
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "slow"}))
			for range tc.naks {
				b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
				require.NoError(t, err)
				m, ok := <-b.Messages()
				require.True(t, ok, "the message delivered")
				require.NoError(t, m.Nak())
			}

			// Handling for 3.5s is more than twice the shortest BackOff.
			got := attemptsHandledFor(t, q, 3500*time.Millisecond)
			assert.Equal(t, []int{tc.naks + 1}, got, "delivered again while handled")
			if tc.user == "admin" {
				info, err := cons.Info(ctx)
				require.NoError(t, err)
				assert.Empty(t, info.Config.BackOff, "replaced by Consume")
				return
			}
			require.Equal(t, 1, differs.count(), "the durable used as it is")
			warned.Attrs(func(a slog.Attr) bool {
				if a.Key == "differs" {
					assert.Contains(t, a.Value.String(), "BackOff")
				}
				return true
			})
		})
	}
}
