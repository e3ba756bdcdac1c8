package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// auditHeadsBucket keeps, per instance, the last line of its audit trail
// that reached the disk: "<lines> <hash>". A trail cut short or rewritten
// after a head was published no longer holds that hash, which
// `taikit audit verify -expect <hash>` reports.
const auditHeadsBucket = "payment_audit_heads"

// auditHeadEvery is how often the head is published while the service
// runs; it is published once more at shutdown.
const auditHeadEvery = 10 * time.Second

// auditHeads publishes the audit trail's head to a JetStream KV bucket.
type auditHeads struct {
	kv       jetstream.KeyValue
	instance string
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

func (s *Service) startAuditHeads(ctx context.Context) error {
	var kv jetstream.KeyValue
	if err := svc.Setup(ctx, s.log, "opening the audit heads bucket", func(ctx context.Context) (err error) {
		kv, err = svc.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
			Bucket: auditHeadsBucket, Description: "the last durable line of each instance's audit trail",
			History: 1, MaxBytes: 1 << 20, Storage: jetstream.FileStorage, Replicas: max(s.cfg.NATSReplicas, 1),
		})
		return err
	}); err != nil {
		return fmt.Errorf("audit heads: %w", err)
	}
	h := &auditHeads{kv: kv, instance: s.cfg.Instance}
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.stop = stop
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(auditHeadEvery)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if err := s.publishAuditHead(hctx); err != nil && hctx.Err() == nil {
					s.log.Warn("audit head not published", "err", err)
				}
			}
		}
	}()
	s.heads = h
	return nil
}

// publishAuditHead flushes the trail to disk and publishes its head.
func (s *Service) publishAuditHead(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.audit.Flush(ctx); err != nil {
		return err
	}
	return s.putAuditHead(ctx)
}

func (s *Service) putAuditHead(ctx context.Context) error {
	hash, lines := s.audit.Last()
	_, err := s.heads.kv.PutString(ctx, s.heads.instance, strconv.FormatUint(lines, 10)+" "+hash)
	return err
}

// AuditHead returns the head last published for instance: the line count
// and the hash of the last line.
func AuditHead(ctx context.Context, js jetstream.JetStream, instance string) (lines uint64, hash string, err error) {
	kv, err := js.KeyValue(ctx, auditHeadsBucket)
	if err != nil {
		return 0, "", err
	}
	e, err := kv.Get(ctx, instance)
	if err != nil {
		return 0, "", err
	}
	n, h, ok := strings.Cut(string(e.Value()), " ")
	if lines, err = strconv.ParseUint(n, 10, 64); !ok || err != nil {
		return 0, "", fmt.Errorf("audit head of %q is %q, not \"<lines> <hash>\"", instance, e.Value())
	}
	return lines, h, nil
}
