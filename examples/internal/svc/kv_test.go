package svc_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/examples/internal/svctest"
)

// TestKeyValueReadsEveryWriteOnACluster: a key written through one server
// of a three-node cluster is found at once through the others, and through
// the same one. Read directly (any server holding the bucket answers), a
// key just created read as missing in 17 to 93 of these 6,000 reads.
func TestKeyValueReadsEveryWriteOnACluster(t *testing.T) {
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, "."), 3)
	ctx := context.Background()
	js := make([]jetstream.JetStream, len(nodes))
	for i, n := range nodes {
		nc, err := nats.Connect(n.ClientURL)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js[i], err = jetstream.New(nc)
		require.NoError(t, err)
	}
	cfg := jetstream.KeyValueConfig{Bucket: "records", Replicas: 3, Storage: jetstream.FileStorage, History: 1}
	var kvs []jetstream.KeyValue
	for _, j := range js {
		// Each replica starting opens the bucket (the first creates it,
		// the others update it) as the services do, through Setup: a
		// cluster just formed may answer a creation late on a loaded
		// machine.
		err := svc.Setup(ctx, slog.New(slog.DiscardHandler), "opening the bucket", func(ctx context.Context) error {
			kv, err := svc.KeyValue(ctx, j, cfg)
			if err == nil {
				kvs = append(kvs, kv)
			}
			return err
		})
		require.NoError(t, err)
	}
	missing := 0
	for i := range 2000 {
		k := "k" + strconv.Itoa(i)
		require.NoError(t, createLanded(ctx, kvs[i%3], k))
		for r := range 3 {
			_, err := kvs[(i+r)%3].Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				missing++
				continue
			}
			require.NoError(t, err)
		}
	}
	assert.Zero(t, missing, "keys read as missing right after they were created, of 6000 reads")
}

// createLanded creates key in kv, sending it again while the bucket's
// stream cannot be reached: on a cluster just formed, a server may not yet
// know where the stream listens (no responders), or its leader may move
// or answer late under a loaded machine. A create sent again that finds the key landed
// the first time.
func createLanded(ctx context.Context, kv jetstream.KeyValue, key string) error {
	for try := 1; ; try++ {
		_, err := kv.Create(ctx, key, []byte("v"))
		switch {
		case err == nil:
			return nil
		case try > 1 && errors.Is(err, jetstream.ErrKeyExists):
			return nil
		case try < 50 && (errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)):
			time.Sleep(100 * time.Millisecond)
		default:
			return err
		}
	}
}

// TestKeyValueOnOneServerReadsDirectly: a bucket on one server keeps
// direct reads, which no server can answer from behind.
func TestKeyValueOnOneServerReadsDirectly(t *testing.T) {
	ctx := context.Background()
	n, err := svc.StartNATS(ctx, "", t.TempDir(), "test", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer func() { assert.NoError(t, n.Shutdown(ctx)) }()
	nc, err := n.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = svc.KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "one", Storage: jetstream.FileStorage})
	require.NoError(t, err)
	s, err := js.Stream(ctx, "KV_one")
	require.NoError(t, err)
	assert.True(t, s.CachedInfo().Config.AllowDirect)
}

// pausingJS is a JetStream whose first change to a stream (creating or
// updating it, or a bucket) returns and then waits for release: a
// replica's start stopped halfway.
type pausingJS struct {
	jetstream.JetStream
	changed, release chan struct{}
	once             sync.Once
}

func (p *pausingJS) pause() {
	p.once.Do(func() {
		close(p.changed)
		<-p.release
	})
}

func (p *pausingJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	defer p.pause()
	return p.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
}

func (p *pausingJS) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	defer p.pause()
	return p.JetStream.CreateKeyValue(ctx, cfg)
}

func (p *pausingJS) UpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	defer p.pause()
	return p.JetStream.UpdateKeyValue(ctx, cfg)
}

func (p *pausingJS) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	defer p.pause()
	return p.JetStream.CreateOrUpdateStream(ctx, cfg)
}

func (p *pausingJS) CreateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	defer p.pause()
	return p.JetStream.CreateStream(ctx, cfg)
}

func (p *pausingJS) UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	defer p.pause()
	return p.JetStream.UpdateStream(ctx, cfg)
}

// bindingJS is a JetStream that runs before each bind to a bucket
// (KeyValue) what beforeBind says.
type bindingJS struct {
	jetstream.JetStream
	beforeBind func()
}

func (b *bindingJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	if b.beforeBind != nil {
		b.beforeBind()
	}
	return b.JetStream.KeyValue(ctx, bucket)
}

// TestKeyValueReadsThroughTheLeaderWhenReplicasStartTogether: two
// replicas open a bucket at once, the second's start changing the bucket
// while the first binds its handle. Each handle reads through the
// stream's leader: with direct gets left on, a handle bound while the
// bucket asked for them read from any server (stale reads), and after
// the other start turned them off, failed every read. Each start opens
// the bucket as the services do, under Setup: on a loaded machine a
// request of a start to the new cluster went unanswered within its 5 s,
// and the start failed where a service's would have tried again.
func TestKeyValueReadsThroughTheLeaderWhenReplicasStartTogether(t *testing.T) {
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, "."), 3)
	ctx := context.Background()
	js := make([]jetstream.JetStream, 2)
	for i := range js {
		nc, err := nats.Connect(nodes[i].ClientURL)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js[i], err = jetstream.New(nc)
		require.NoError(t, err)
	}
	cfg := jetstream.KeyValueConfig{Bucket: "together", Replicas: 3, Storage: jetstream.FileStorage, History: 1}
	log := slog.New(slog.DiscardHandler)
	var first jetstream.KeyValue
	require.NoError(t, svc.Setup(ctx, log, "opening the bucket", func(ctx context.Context) error {
		var err error
		first, err = svc.KeyValue(ctx, js[0], cfg)
		return err
	}))

	// The second replica starts; the first starts again (a restart) and,
	// as it binds, the second is halfway through its start.
	second := &pausingJS{JetStream: js[1], changed: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	var secondKV jetstream.KeyValue
	restart := &bindingJS{JetStream: js[0]}
	restart.beforeBind = func() {
		restart.beforeBind = nil
		go func() {
			done <- svc.Setup(ctx, log, "opening the bucket", func(ctx context.Context) error {
				var err error
				secondKV, err = svc.KeyValue(ctx, second, cfg)
				return err
			})
		}()
		select {
		case <-second.changed:
		case err := <-done:
			t.Errorf("the second start ended before it changed the bucket: %v", err)
			done <- err
		}
	}
	var again jetstream.KeyValue
	require.NoError(t, svc.Setup(ctx, log, "opening the bucket", func(ctx context.Context) error {
		var err error
		again, err = svc.KeyValue(ctx, restart, cfg)
		return err
	}))
	close(second.release)
	require.NoError(t, <-done)

	s, err := js[0].Stream(ctx, "KV_together")
	require.NoError(t, err)
	assert.False(t, s.CachedInfo().Config.AllowDirect, "the bucket reads through its leader")
	for i := range 50 {
		k := "k" + strconv.Itoa(i)
		require.NoError(t, createLanded(ctx, first, k))
		for name, kv := range map[string]jetstream.KeyValue{"first": first, "restarted": again, "second": secondKV} {
			_, err := kv.Get(ctx, k)
			require.NoError(t, err, "%s replica's handle reads %s", name, k)
		}
	}
}

// TestKeyValueOnAClusterMakesTheBucketTheAPIWould: the stream KeyValue
// makes for a bucket on a cluster is the one jetstream's key-value API
// makes, but for direct gets; and a bucket that API made before (with
// direct gets) is turned to reads through its leader, the rest unchanged.
func TestKeyValueOnAClusterMakesTheBucketTheAPIWould(t *testing.T) {
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, "."), 3)
	ctx := context.Background()
	nc, err := nats.Connect(nodes[0].ClientURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	cfg := jetstream.KeyValueConfig{Bucket: "byapi", Description: "d", History: 5, TTL: time.Hour, MaxBytes: 1 << 20,
		MaxValueSize: 1 << 10, Storage: jetstream.FileStorage, Replicas: 3, Compression: true, LimitMarkerTTL: time.Minute,
		Metadata: map[string]string{"owner": "test"}}
	require.NoError(t, svc.Setup(ctx, log, "the bucket by the API", func(ctx context.Context) error {
		_, err := js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	}))
	byAPI, err := js.Stream(ctx, "KV_byapi")
	require.NoError(t, err)
	require.True(t, byAPI.CachedInfo().Config.AllowDirect)

	ours := cfg
	ours.Bucket = "ours"
	for _, c := range []jetstream.KeyValueConfig{cfg, ours} {
		require.NoError(t, svc.Setup(ctx, log, "the bucket", func(ctx context.Context) error {
			_, err := svc.KeyValue(ctx, js, c)
			return err
		}))
	}
	want := byAPI.CachedInfo().Config
	want.AllowDirect = false
	for _, name := range []string{"byapi", "ours"} {
		s, err := js.Stream(ctx, "KV_"+name)
		require.NoError(t, err)
		got := s.CachedInfo().Config
		assert.Equal(t, []string{"$KV." + name + ".>"}, got.Subjects, name)
		got.Name, got.Subjects = want.Name, want.Subjects
		got.Metadata = filterMetadata(got.Metadata)
		w := want
		w.Metadata = filterMetadata(w.Metadata)
		assert.Equal(t, w, got, name)
	}
}

// filterMetadata drops the server's own metadata (its version and API
// level), which a server of another version writes otherwise.
func filterMetadata(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !strings.HasPrefix(k, "_nats.") {
			out[k] = v
		}
	}
	return out
}

// TestKeyValueRefusesWhatItCannotMake: a bucket name the key-value API
// refuses, a history past its maximum, and a mirror on a cluster are
// errors before anything is sent.
func TestKeyValueRefusesWhatItCannotMake(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]jetstream.KeyValueConfig{
		"bucket name": {Bucket: "a.b", Replicas: 3},
		"history":     {Bucket: "h", Replicas: 3, History: jetstream.KeyValueMaxHistory + 1},
		"mirror":      {Bucket: "m", Replicas: 3, Mirror: &jetstream.StreamSource{Name: "other"}},
	} {
		_, err := svc.KeyValue(ctx, nil, cfg)
		assert.Error(t, err, name)
	}
}

// oldServerJS is a JetStream whose server is older than 2.11 (API level
// 0, no per-message TTLs), and that records the streams asked of it.
type oldServerJS struct {
	jetstream.JetStream
	streams []jetstream.StreamConfig
}

func (o *oldServerJS) AccountInfo(context.Context) (*jetstream.AccountInfo, error) {
	return &jetstream.AccountInfo{API: jetstream.APIStats{Level: 0}}, nil
}

func (o *oldServerJS) CreateOrUpdateStream(_ context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	o.streams = append(o.streams, cfg)
	return nil, errors.New("stream sent to a server that cannot keep its limit markers")
}

// TestKeyValueOnAClusterRefusesLimitMarkersAnOldServerLacks: a bucket
// with limit markers on a cluster of servers before 2.11 is refused with
// jetstream.ErrLimitMarkerTTLNotSupported, as the key-value API refuses
// it on one server, and nothing is sent: a caller falls back to a bucket
// without them on that error.
func TestKeyValueOnAClusterRefusesLimitMarkersAnOldServerLacks(t *testing.T) {
	js := &oldServerJS{}
	_, err := svc.KeyValue(context.Background(), js, jetstream.KeyValueConfig{Bucket: "old", Replicas: 3, LimitMarkerTTL: time.Minute})
	require.ErrorIs(t, err, jetstream.ErrLimitMarkerTTLNotSupported)
	assert.Empty(t, js.streams, "no stream is sent")
}
