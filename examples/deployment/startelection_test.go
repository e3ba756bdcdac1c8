package main

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

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

// withLocks makes the service's region locks' bucket the one wrap makes
// of it, over the harness's own wrapping.
func withLocks(wrap func(jetstream.KeyValue) jetstream.KeyValue) func(*Config) {
	return func(c *Config) {
		inner := c.WrapLocks
		c.WrapLocks = func(kv jetstream.KeyValue) jetstream.KeyValue { return wrap(inner(kv)) }
	}
}

// deployToEnd asks for v2.0.0 of auth in us-west-2, asynchronously, and
// returns the deployment once it has ended; the request must be taken
// (202, with its deployment).
func deployToEnd(t *testing.T, base string) Deployment {
	t.Helper()
	r := deploy(t, base, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	id := r.deployment(t).ID
	require.NotEmpty(t, id, "%s", r.Body)
	return waitFor(t, base, id, ended)
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
			ts := startServiceWith(t, t.TempDir(), withLocks(func(kv jetstream.KeyValue) jetstream.KeyValue {
				locks.KeyValue = kv
				return locks
			}), fastArgs...)
			assert.Equal(t, StatusSuccess, deployToEnd(t, ts.URL).Status)
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
			assert.Equal(t, StatusSuccess, deployToEnd(t, ts.URL).Status)
			// The job published again is the stream's duplicate: the
			// stream stored one message.
			assert.Equal(t, before+1, lastSeq(), "jobs stored")
		})
	}
}

// silentLocks is the region locks' bucket whose first take of a lock is
// stored and never answered: the answer was lost, and the client waits
// for it as long as its context lets it.
type silentLocks struct {
	jetstream.KeyValue
	once sync.Once
}

func (b *silentLocks) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	silent := false
	b.once.Do(func() { silent = true })
	if !silent {
		return b.KeyValue.Create(ctx, key, value, opts...)
	}
	if _, err := b.KeyValue.Create(ctx, key, value, opts...); err != nil {
		return 0, err
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestDeployOutlivesALostAnswer: a take of a region lock whose answer
// never comes is given up after a try's share of the request's time
// (StoreTryFor), and tried again; the next finds the lock its own. The
// first try waited for the whole of the request's minute, and the
// deployment was refused (503) for a lock it held.
func TestDeployOutlivesALostAnswer(t *testing.T) {
	locks := &silentLocks{}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.StoreTryFor = time.Second
		withLocks(func(kv jetstream.KeyValue) jetstream.KeyValue {
			locks.KeyValue = kv
			return locks
		})(c)
	}, fastArgs...)
	assert.Equal(t, StatusSuccess, deployToEnd(t, ts.URL).Status)
}

// unreadableHolder is the deployments bucket while the record of one
// deployment (id, once set) cannot be read: its server does not answer.
type unreadableHolder struct {
	jetstream.KeyValue
	mu sync.Mutex
	id string
}

func (b *unreadableHolder) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	b.mu.Lock()
	fail := key == b.id
	b.mu.Unlock()
	if fail {
		return nil, jetstream.ErrNoStreamResponse
	}
	return b.KeyValue.Get(ctx, key)
}

// TestDeployWhileTheHolderCannotBeRead: a deployment asked for in a
// region whose lock another holds, whose record cannot be read (the store
// out of reach), is answered 503, to be sent again, not 409 as if the
// holder were known to be active: whether it is stale was not learned.
func TestDeployWhileTheHolderCannotBeRead(t *testing.T) {
	var buckets []*unreadableHolder
	var mu sync.Mutex
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapDeployments = func(kv jetstream.KeyValue) jetstream.KeyValue {
			b := &unreadableHolder{KeyValue: kv}
			mu.Lock()
			buckets = append(buckets, b)
			mu.Unlock()
			return b
		}
	}, "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "100ms", "-min-requests", "0")
	r := deploy(t, ts.URL, map[string]any{"service": "checkout", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	first := r.deployment(t).ID
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	mu.Lock()
	for _, b := range buckets {
		b.mu.Lock()
		b.id = first
		b.mu.Unlock()
	}
	mu.Unlock()
	r = deploy(t, ts.URL, map[string]any{"service": "checkout", "version": "v2.0.1", "target_region": "us-west-2"})
	assert.Equal(t, http.StatusServiceUnavailable, r.Code, "%s", r.Body)
	assert.Contains(t, string(r.Body), "store_unavailable")
}

// refusedAfterLost is the region locks' bucket whose first take of a lock
// is stored with its answer lost, and whose next takes are refused (the
// store failing), while fail is set.
type refusedAfterLost struct {
	jetstream.KeyValue
	mu   sync.Mutex
	fail bool
	lost bool
}

func (b *refusedAfterLost) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.fail:
		return b.KeyValue.Create(ctx, key, value, opts...)
	case b.lost:
		return 0, &jetstream.APIError{Code: http.StatusInternalServerError, Description: "insufficient resources"}
	}
	b.lost = true
	if _, err := b.KeyValue.Create(ctx, key, value, opts...); err != nil {
		return 0, err
	}
	return 0, nats.ErrTimeout
}

// TestRefusedDeployLeavesNoLock: a deployment refused because its region
// could not be locked (503) leaves no lock behind, though its take of the
// lock was stored unanswered: the next deployment of the service there
// is taken at once, where it was refused 409 for a minute, until the lock
// of a deployment never stored went stale.
func TestRefusedDeployLeavesNoLock(t *testing.T) {
	locks := &refusedAfterLost{fail: true}
	ts := startServiceWith(t, t.TempDir(), withLocks(func(kv jetstream.KeyValue) jetstream.KeyValue {
		locks.KeyValue = kv
		return locks
	}), fastArgs...)
	body := map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}
	r := deploy(t, ts.URL, body)
	require.Equal(t, http.StatusServiceUnavailable, r.Code, "%s", r.Body)
	locks.mu.Lock()
	locks.fail = false
	locks.mu.Unlock()
	r = deploy(t, ts.URL, body)
	assert.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
}
