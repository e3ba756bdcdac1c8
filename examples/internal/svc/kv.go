package svc

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyValue creates (or updates) the key-value bucket of cfg through js and
// returns it. A bucket held by more than one server (cfg.Replicas above 1)
// is read through its stream's leader, as are the handles js.KeyValue
// binds to it afterwards: JetStream answers a key-value Get from any
// server that holds the bucket (a direct get), and a server that has not
// yet applied a write answers as if it had not happened. A payment
// answered SUCCESS could read as missing right after, at another replica
// or at the same one, and a takeover of a job go unseen. On one server
// there is no such lag, and reads stay direct.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil || cfg.Replicas <= 1 {
		return kv, err
	}
	// The bucket's config always asks for direct gets (an update of the
	// bucket, by this or another replica, turns them on again): turn them
	// off on its stream, then bind a handle that reads as the stream says.
	stream, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	if sc := stream.CachedInfo().Config; sc.AllowDirect {
		sc.AllowDirect = false
		if _, err := js.UpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("bucket %s: reads through the leader: %w", cfg.Bucket, err)
		}
	}
	return js.KeyValue(ctx, cfg.Bucket)
}
