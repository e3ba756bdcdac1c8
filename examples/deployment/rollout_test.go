package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordKV is a deployments bucket whose reads get answers.
type recordKV struct {
	jetstream.KeyValue
	get   func(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	reads atomic.Int32
}

func (kv *recordKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv.reads.Add(1)
	return kv.get(ctx, key)
}

// revEntry is a record stored at rev.
type revEntry struct {
	jetstream.KeyValueEntry
	rev uint64
}

func (e revEntry) Revision() uint64 { return e.rev }

// TestMovedOnReads: a rollback reads its record once before it moves the
// fleet, and leaves the fleet only when the read finds it moved on. A
// read that fails, finds no record or does not answer within
// movedOnReadFor counts as not moved on: the rollback of a failing
// version goes on, with a warning, rather than leave the traffic on it
// because the store is out of reach.
func TestMovedOnReads(t *testing.T) {
	const at = 7 // the revision the run last wrote
	for _, c := range []struct {
		name      string
		get       func(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
		recently  bool // the run read or wrote its record within recheckAfter
		movedOn   bool
		reads     int32
		took      time.Duration
		warned    bool
		refreshed bool // the read counts as the run's last (revAt)
	}{
		{name: "read fails", reads: 1, warned: true, get: func(context.Context, string) (jetstream.KeyValueEntry, error) {
			return nil, nats.ErrTimeout
		}},
		{name: "read does not answer", reads: 1, warned: true, took: movedOnReadFor, get: func(ctx context.Context, _ string) (jetstream.KeyValueEntry, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}},
		{name: "no record", reads: 1, warned: true, get: func(context.Context, string) (jetstream.KeyValueEntry, error) {
			return nil, jetstream.ErrKeyNotFound
		}},
		{name: "moved on", reads: 1, movedOn: true, get: func(context.Context, string) (jetstream.KeyValueEntry, error) {
			return revEntry{rev: at + 1}, nil
		}},
		{name: "ours", reads: 1, refreshed: true, get: func(context.Context, string) (jetstream.KeyValueEntry, error) {
			return revEntry{rev: at}, nil
		}},
		{name: "server behind", reads: 1, refreshed: true, get: func(context.Context, string) (jetstream.KeyValueEntry, error) {
			return revEntry{rev: at - 1}, nil
		}},
		{name: "read recently", recently: true, get: func(context.Context, string) (jetstream.KeyValueEntry, error) {
			return revEntry{rev: at + 1}, nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs bytes.Buffer
				kv := &recordKV{get: c.get}
				s := &Service{store: &Store{deployments: kv}, log: slog.New(slog.NewTextHandler(&logs, nil))}
				revAt := time.Now().Add(-recheckAfter)
				if c.recently {
					revAt = time.Now().Add(-recheckAfter / 2)
				}
				r := &rollout{s: s, region: "us-west-2", d: &Deployment{ID: "dpl_0123"}, rev: at, revAt: revAt}
				start := time.Now()
				err := r.movedOn(context.Background())
				if c.movedOn {
					require.ErrorIs(t, err, errMovedOn)
				} else {
					require.NoError(t, err, "the rollback does not go on")
				}
				assert.Equal(t, c.took, time.Since(start))
				assert.Equal(t, c.reads, kv.reads.Load())
				if c.warned {
					assert.Contains(t, logs.String(), `msg="deployment record not read before the rollback; rolling back" deployment_id=dpl_0123 region=us-west-2`)
				} else {
					assert.Empty(t, logs.String())
				}
				if c.refreshed {
					assert.Equal(t, time.Now(), r.revAt)
				} else {
					assert.Equal(t, revAt, r.revAt, "a read that did not find the record counts as one")
				}
			})
		})
	}
}

// memKV is a deployments bucket in memory, whose writes go through
// fault: called with each write, in order from 1, it says whether the
// write is stored and what the writer is answered. A write over a
// revision that is not the key's last is refused as JetStream refuses
// it, whatever fault says.
type memKV struct {
	jetstream.KeyValue
	mu     sync.Mutex
	vals   map[string][]byte
	revs   map[string]uint64
	seq    uint64
	writes int
	fault  func(n int) (store bool, err error)
}

func (kv *memKV) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	v, ok := kv.vals[key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return memEntry{revEntry{rev: kv.revs[key]}, slices.Clone(v)}, nil
}

func (kv *memKV) Update(_ context.Context, key string, value []byte, last uint64) (uint64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.writes++
	store, err := true, error(nil)
	if kv.fault != nil {
		store, err = kv.fault(kv.writes)
	}
	if !store {
		return 0, err
	}
	if kv.revs[key] != last {
		return 0, &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence"}
	}
	kv.put(key, value)
	return kv.seq, err
}

// put stores value under key at the next revision.
func (kv *memKV) put(key string, value []byte) {
	if kv.vals == nil {
		kv.vals, kv.revs = map[string][]byte{}, map[string]uint64{}
	}
	kv.seq++
	kv.vals[key], kv.revs[key] = slices.Clone(value), kv.seq
}

type memEntry struct {
	revEntry
	value []byte
}

func (e memEntry) Value() []byte { return e.value }

// memRollout is a rollout of a deployment stored in kv, at its revision.
func memRollout(t *testing.T, kv *memKV, logs io.Writer) *rollout {
	t.Helper()
	d := &Deployment{ID: "dpl_0123", Service: "auth", Results: []RegionResult{{Region: "us-west-2", Status: StatusInProgress, Stages: []StageResult{{Name: "canary"}}}}}
	b, err := json.Marshal(d)
	require.NoError(t, err)
	kv.put(d.ID, b)
	s := &Service{store: &Store{deployments: kv}, log: slog.New(slog.NewTextHandler(logs, nil))}
	return &rollout{s: s, region: "us-west-2", d: d, rev: kv.seq, revAt: time.Now()}
}

// sample adds a health sample to r's record, as its health check does
// while a write is retried.
func (r *rollout) sample() {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &r.d.Results[0].Stages[0]
	st.Samples = append(st.Samples, HealthSample{Time: time.Now().UTC(), Verdict: "passed"})
}

// requireStored checks that kv holds r's record at r's revision.
func requireStored(t *testing.T, kv *memKV, r *rollout) {
	t.Helper()
	e, err := kv.Get(t.Context(), r.d.ID)
	require.NoError(t, err)
	want, err := json.Marshal(r.d)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(e.Value()))
	require.Equal(t, r.rev, e.Revision())
}

// TestWriteThatLandedAfterItsTimeout: a write of a rollout's record
// that timed out may have been stored all the same, while the health
// checks add samples to the record as the write is retried. A retry
// refused with the record moved on over a try sent before the last takes
// that try's revision and writes over it; a write the run gave up, stored
// after all, is taken as the run's own when the run next writes its
// record or reads it before a move of the fleet. The run stopped as if
// another replica had taken it over, and the region was rolled back as
// cut off by a restart; on a job's last attempt its end was never
// stored, and the deployment stayed in progress with its regions taken.
// A record another run wrote over it is still moved on.
func TestWriteThatLandedAfterItsTimeout(t *testing.T) {
	t.Run("within a write", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var r *rollout
			kv := &memKV{fault: func(n int) (bool, error) {
				switch n {
				case 1: // stored, its answer lost
					r.sample()
					return true, nats.ErrTimeout
				case 2: // not stored: the bucket elects a leader
					return false, nats.ErrNoResponders
				}
				return true, nil
			}}
			r = memRollout(t, kv, io.Discard)
			require.NoError(t, r.update(t.Context(), func(d *Deployment, _ *RegionResult) { d.Paused = true }))
			requireStored(t, kv, r)
			require.True(t, r.d.Paused)
			require.Len(t, r.d.Results[0].Stages[0].Samples, 1)
		})
	})
	for _, next := range []string{"update", "stillOurs", "movedOn"} {
		for _, other := range []bool{false, true} {
			name := next + " after a write given up"
			if other {
				name += ", and another run's"
			}
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					down := true
					var sent []byte // the last record sent
					var r *rollout
					kv := &memKV{fault: func(int) (bool, error) {
						r.mu.Lock()
						sent, _ = json.Marshal(r.d)
						r.mu.Unlock()
						if down {
							return false, nats.ErrTimeout
						}
						return true, nil
					}}
					r = memRollout(t, kv, io.Discard)
					at := r.rev
					err := r.update(t.Context(), func(d *Deployment, _ *RegionResult) { d.Paused = true })
					require.Error(t, err, "the store is out of reach")
					require.False(t, isConflict(err), "%v", err)
					// The last try is stored after the run gave it up, and
					// the store answers again.
					kv.mu.Lock()
					kv.put(r.d.ID, sent)
					kv.mu.Unlock()
					down = false
					if other {
						d := *r.d
						d.Status = StatusRolledBack
						b, err := json.Marshal(&d)
						require.NoError(t, err)
						kv.mu.Lock()
						kv.put(r.d.ID, b)
						kv.mu.Unlock()
					}
					time.Sleep(recheckAfter)
					r.sample()
					err = nil
					switch next {
					case "stillOurs":
						err = r.stillOurs(t.Context())
					case "movedOn":
						err = r.movedOn(t.Context())
					}
					if err == nil {
						err = r.update(t.Context(), func(d *Deployment, _ *RegionResult) { d.Paused = false })
					}
					if other {
						require.True(t, isConflict(err), "another run's write not seen: %v", err)
						require.Equal(t, at, r.rev)
						return
					}
					require.NoError(t, err, "the run's own write taken for another's")
					requireStored(t, kv, r)
					require.False(t, r.d.Paused)
				})
			})
		}
	}
}
