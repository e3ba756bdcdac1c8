package main

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lostCreates is the deployments bucket where a record's first create
// lands but its answer is lost (it fails as unanswered). With only, just
// the first record's is, and every later create of that record is
// refused by the server (the store failing), so that whether it was
// stored stays unknown to the request.
type lostCreates struct {
	mu     sync.Mutex
	only   bool
	target string          // with only: the record whose answer is lost
	lost   map[string]bool // the records whose first create's answer was lost
}

func (l *lostCreates) wrap(kv jetstream.KeyValue) jetstream.KeyValue { return &lossyBucket{kv, l} }

type lossyBucket struct {
	jetstream.KeyValue
	l *lostCreates
}

func (b *lossyBucket) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	l := b.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.only && l.target == "" {
		l.target = key
	}
	switch {
	case l.only && key != l.target:
		return b.KeyValue.Create(ctx, key, value, opts...)
	case l.lost[key] && l.only:
		return 0, &jetstream.APIError{Code: http.StatusInternalServerError, Description: "insufficient resources"}
	case l.lost[key]:
		return b.KeyValue.Create(ctx, key, value, opts...)
	}
	rev, err := b.KeyValue.Create(ctx, key, value, opts...)
	if err != nil {
		return rev, err
	}
	l.lost[key] = true
	return 0, nats.ErrTimeout
}

// TestCreateAnswerLost: a deployment whose record's create landed but
// went unanswered (the reply timed out) is found when the create is
// tried again, and rolls out. The request was answered 503 and its
// regions freed, while the record stayed in progress for ever: no job
// was queued for it, and nothing would end it.
func TestCreateAnswerLost(t *testing.T) {
	l := &lostCreates{lost: map[string]bool{}}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) { c.WrapDeployments = l.wrap }, fastArgs...)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	d := r.deployment(t)
	assert.Equal(t, StatusSuccess, d.Status)
	l.mu.Lock()
	assert.True(t, l.lost[d.ID], "the create's answer was lost")
	l.mu.Unlock()
	assert.Equal(t, StatusSuccess, do(t, "GET", ts.URL+"/deploy/"+d.ID, nil).deployment(t).Status)
}

// TestCreateAnswerLostAndStoreFailing: a deployment whose record's
// create went unanswered, and whose later tries the store refused, is
// answered 503; the record was stored all the same, and keeps its region
// (another deployment of it is refused with 409, naming it) until it is
// found and ended, once its start is over, when another deployment asks
// for the region. Its regions were freed at once, and the record stayed
// in progress for ever.
func TestCreateAnswerLostAndStoreFailing(t *testing.T) {
	l := &lostCreates{only: true, lost: map[string]bool{}}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) { c.WrapDeployments = l.wrap }, fastArgs...)
	req := map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}
	r := deploy(t, ts.URL, req)
	require.Equal(t, http.StatusServiceUnavailable, r.Code, "%s", r.Body)
	l.mu.Lock()
	id := l.target
	l.mu.Unlock()
	require.NotEmpty(t, id)
	assert.Equal(t, id, r.errorBody(t)["details"].(map[string]any)["deployment_id"], "the answer names the record it may have stored")
	stuck := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	require.Equal(t, StatusInProgress, stuck.Status, "stored all the same")

	again := deploy(t, ts.URL, req)
	require.Equal(t, http.StatusConflict, again.Code, "the record holds its region: %s", again.Body)
	assert.Equal(t, id, again.errorBody(t)["details"].(map[string]any)["deployment_id"])

	// Once its start is over, it is found with no job and ended.
	ts.locksAged(id, time.Hour)
	again = deploy(t, ts.URL, req)
	require.Equal(t, http.StatusOK, again.Code, "%s", again.Body)
	end := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	assert.Equal(t, StatusFailed, end.Status)
}

// failingUpdates is the deployments bucket where every update of one
// record fails unanswered, and stores nothing, while fail is set.
type failingUpdates struct {
	mu   sync.Mutex
	fail bool
	key  string
}

func (f *failingUpdates) wrap(kv jetstream.KeyValue) jetstream.KeyValue {
	return &updateFailingBucket{kv, f}
}

type updateFailingBucket struct {
	jetstream.KeyValue
	f *failingUpdates
}

func (b *updateFailingBucket) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	b.f.mu.Lock()
	fail := b.f.fail && key == b.f.key
	b.f.mu.Unlock()
	if fail {
		return 0, nats.ErrTimeout
	}
	return b.KeyValue.Update(ctx, key, value, revision)
}

// TestNotQueuedEndNotStored: a deployment whose first region could not
// be queued, and whose end could not be stored either, is answered 503
// and keeps its regions, in progress as its record still says, until it
// is found with no job and ended when another deployment asks for one of
// them once its start is over. Its regions were freed at once, and the
// record stayed in progress for ever: nothing would end it.
func TestNotQueuedEndNotStored(t *testing.T) {
	f := &failingUpdates{}
	var mu sync.Mutex
	first := ""
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapDeployments = f.wrap
		c.PublishFault = func(j Job, publish func() error) error {
			mu.Lock()
			if first == "" {
				first = j.ID
				f.mu.Lock()
				f.fail, f.key = true, j.ID
				f.mu.Unlock()
			}
			unqueued := j.ID == first
			mu.Unlock()
			if unqueued {
				return errors.New("queue unavailable")
			}
			return publish()
		}
	}, fastArgs...)
	req := map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}
	r := deploy(t, ts.URL, req)
	require.Equal(t, http.StatusServiceUnavailable, r.Code, "%s", r.Body)
	mu.Lock()
	id := first
	mu.Unlock()
	require.NotEmpty(t, id)
	require.Equal(t, StatusInProgress, do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t).Status, "its end not stored")

	again := deploy(t, ts.URL, req)
	require.Equal(t, http.StatusConflict, again.Code, "the record holds its region: %s", again.Body)
	assert.Equal(t, id, again.errorBody(t)["details"].(map[string]any)["deployment_id"])

	// The store answers again; once its start is over, the deployment is
	// found with no job and ended.
	f.mu.Lock()
	f.fail = false
	f.mu.Unlock()
	ts.locksAged(id, time.Hour)
	again = deploy(t, ts.URL, req)
	require.Equal(t, http.StatusOK, again.Code, "%s", again.Body)
	end := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	assert.Equal(t, StatusFailed, end.Status)
	assert.Contains(t, end.Results[0].ErrorMessage, "Not queued: ")
}
