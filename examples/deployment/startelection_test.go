package main

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// electingLocks is the region locks' bucket while its group elects a
// leader: its first fails takes of a lock go unanswered, having stored
// the lock (landed: the answer was lost) or not.
type electingLocks struct {
	jetstream.KeyValue
	mu     sync.Mutex
	fails  int
	landed bool
}

func (b *electingLocks) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	b.mu.Lock()
	fail := b.fails > 0
	b.fails--
	b.mu.Unlock()
	if !fail {
		return b.KeyValue.Create(ctx, key, value, opts...)
	}
	if !b.landed {
		return 0, jetstream.ErrNoStreamResponse
	}
	if _, err := b.KeyValue.Create(ctx, key, value, opts...); err != nil {
		return 0, err
	}
	return 0, nats.ErrTimeout
}

// TestDeployWaitsOutTheLocksElection: a deployment whose region lock is
// taken while the locks' bucket elects a leader (the lock's writes go
// unanswered for a moment, having landed or not) is taken, answered 202
// with its record, and runs, as one whose record is stored then is. It
// was answered 503 store_unavailable without a deployment: the lock was
// tried once, where the record's write is tried again while the store is
// out of reach.
func TestDeployWaitsOutTheLocksElection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		landed bool
		fails  int
	}{
		{"not stored", false, 2},
		// The next take finds the lock its own.
		{"stored, its answer lost", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			locks := &electingLocks{fails: tc.fails, landed: tc.landed}
			ts := startServiceWith(t, t.TempDir(), func(c *Config) {
				wrap := c.WrapLocks
				c.WrapLocks = func(kv jetstream.KeyValue) jetstream.KeyValue {
					locks.KeyValue = wrap(kv)
					return locks
				}
			}, fastArgs...)
			r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
				"Prefer", "respond-async")
			require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
			id := r.deployment(t).ID
			require.NotEmpty(t, id, "%s", r.Body)
			d := waitFor(t, ts.URL, id, ended)
			assert.Equal(t, StatusSuccess, d.Status)
			// Its lock, its own after the retried take, was released at its end.
			again := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v1.2.0", "target_region": "us-west-2"})
			assert.Equal(t, http.StatusOK, again.Code, "%s", again.Body)
		})
	}
}

// TestDeployWaitsOutTheQueuesElection: a deployment whose first region
// is queued while the queue's stream elects a leader (the publish goes
// unanswered for a moment, having landed or not) is answered 202 with
// its record, and runs once. It was answered 503 without a deployment,
// and ended FAILED "Not queued: " for an election of seconds: the
// publish was tried once, where the record's write is tried again while
// the store is out of reach.
func TestDeployWaitsOutTheQueuesElection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		landed bool
	}{
		{"not queued", false},
		{"queued, its answer lost", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			fails := 2
			ts := startServiceWith(t, t.TempDir(), func(c *Config) {
				c.PublishFault = func(_ Job, publish func() error) error {
					mu.Lock()
					fail := fails > 0
					fails--
					mu.Unlock()
					switch {
					case !fail:
						return publish()
					case !tc.landed:
						return jetstream.ErrNoStreamResponse
					}
					if err := publish(); err != nil {
						return err
					}
					return nats.ErrTimeout
				}
			}, fastArgs...)
			stream, err := ts.js.Stream(t.Context(), queueStream)
			require.NoError(t, err)
			lastSeq := func() uint64 {
				info, err := stream.Info(t.Context())
				require.NoError(t, err)
				return info.State.LastSeq
			}
			before := lastSeq()
			r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
				"Prefer", "respond-async")
			require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
			id := r.deployment(t).ID
			require.NotEmpty(t, id, "%s", r.Body)
			d := waitFor(t, ts.URL, id, ended)
			assert.Equal(t, StatusSuccess, d.Status)
			// The job published again is the stream's duplicate: the
			// stream stored one message.
			assert.Equal(t, before+1, lastSeq(), "jobs stored")
		})
	}
}
