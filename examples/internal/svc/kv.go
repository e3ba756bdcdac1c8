package svc

import (
	"context"
	"fmt"
	"regexp"
	"time"

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
//
// Such a bucket is created and updated as a stream that never asks for
// direct gets, not through the key-value API, which asks for them at each
// creation or update: replicas starting together would turn them on and
// off again, and a handle bound meanwhile would read directly for good
// (from a lagging server, or from none once they are off again). A bucket
// of more than one server is one of its own: cfg.Mirror and cfg.Sources
// are refused for it. As through the key-value API, cfg.LimitMarkerTTL on
// a server that cannot keep limit markers (before 2.11) is refused with
// jetstream.ErrLimitMarkerTTLNotSupported.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if cfg.Replicas <= 1 {
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	sc, err := leaderReadStream(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.LimitMarkerTTL != 0 {
		// As the key-value API does: a server before 2.11 (API level 0)
		// keeps no limit markers, and its callers fall back on this error.
		info, err := js.AccountInfo(ctx)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
		if info.API.Level < 1 {
			return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, jetstream.ErrLimitMarkerTTLNotSupported)
		}
	}
	if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	return js.KeyValue(ctx, cfg.Bucket)
}

var validBucket = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// leaderReadStream is the stream of the bucket of cfg as the key-value
// API makes it (jetstream's CreateKeyValue), but without direct gets.
func leaderReadStream(cfg jetstream.KeyValueConfig) (jetstream.StreamConfig, error) {
	if !validBucket.MatchString(cfg.Bucket) {
		return jetstream.StreamConfig{}, fmt.Errorf("bucket %q: %w", cfg.Bucket, jetstream.ErrInvalidBucketName)
	}
	if cfg.Mirror != nil || len(cfg.Sources) > 0 {
		return jetstream.StreamConfig{}, fmt.Errorf("bucket %s: a mirror or sources on %d servers is not supported", cfg.Bucket, cfg.Replicas)
	}
	history := int64(1)
	if cfg.History > 0 {
		if cfg.History > jetstream.KeyValueMaxHistory {
			return jetstream.StreamConfig{}, fmt.Errorf("bucket %s: %w", cfg.Bucket, jetstream.ErrHistoryTooLarge)
		}
		history = int64(cfg.History)
	}
	maxBytes, maxValue := cfg.MaxBytes, cfg.MaxValueSize
	if maxBytes == 0 {
		maxBytes = -1
	}
	if maxValue == 0 {
		maxValue = -1
	}
	// The duplicate window is the key-value API's: 2 minutes, or the
	// bucket's TTL when that is shorter.
	duplicates := 2 * time.Minute
	if cfg.TTL > 0 && cfg.TTL < duplicates {
		duplicates = cfg.TTL
	}
	compression := jetstream.NoCompression
	if cfg.Compression {
		compression = jetstream.S2Compression
	}
	return jetstream.StreamConfig{
		Name:                   "KV_" + cfg.Bucket,
		Description:            cfg.Description,
		Subjects:               []string{"$KV." + cfg.Bucket + ".>"},
		MaxMsgsPerSubject:      history,
		MaxBytes:               maxBytes,
		MaxAge:                 cfg.TTL,
		MaxMsgSize:             maxValue,
		Storage:                cfg.Storage,
		Replicas:               cfg.Replicas,
		Placement:              cfg.Placement,
		AllowRollup:            true,
		DenyDelete:             true,
		Duplicates:             duplicates,
		MaxMsgs:                -1,
		MaxConsumers:           -1,
		AllowDirect:            false,
		RePublish:              cfg.RePublish,
		Compression:            compression,
		Discard:                jetstream.DiscardNew,
		AllowMsgTTL:            cfg.LimitMarkerTTL != 0,
		SubjectDeleteMarkerTTL: cfg.LimitMarkerTTL,
		Metadata:               cfg.Metadata,
	}, nil
}
