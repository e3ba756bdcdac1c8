package svc_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
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
