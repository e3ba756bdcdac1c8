package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taipattern/taikit/examples/internal/httpapi"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kaizen"
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
//
// Each write names the revision of the head it replaces, the one this
// process last wrote or, before its first, the one its start read
// (checkAuditHead): a write refused because the head changed since was
// made by another process publishing under the same instance, which
// instanceClash reports.
type auditHeads struct {
	kv       jetstream.KeyValue
	instance string
	clashes  prometheus.Counter
	stop     context.CancelFunc
	wg       sync.WaitGroup

	mu sync.Mutex // serializes publications, and guards what follows
	// revision is that of the head this process last wrote or read;
	// 0: none, the next write creates the key.
	revision uint64
	// unsure holds the heads of the writes that failed without an
	// answer (a timeout, a connection lost) since the last one answered:
	// any may have been stored all the same. At most maxUnsureHeads, the
	// first kept (an outage's first write is the one likely stored).
	unsure []string
}

// maxUnsureHeads bounds auditHeads.unsure: a JetStream out of reach for
// long fails a write every auditHeadEvery.
const maxUnsureHeads = 64

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
	h := &auditHeads{kv: kv, instance: s.cfg.Instance, clashes: s.instanceClashes, revision: s.headRevision}
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.stop = stop
	s.heads = h
	every := s.cfg.auditHeadEvery
	if every <= 0 {
		every = auditHeadEvery
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(every)
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

// putAuditHead publishes the trail's head over the one this process last
// wrote or read. When another process wrote the head since (a clash), it
// is reported, and the head written over the one found: each process of
// the instance goes on publishing its own.
func (s *Service) putAuditHead(ctx context.Context) error {
	h := s.heads
	h.mu.Lock()
	defer h.mu.Unlock()
	hash, lines := s.audit.Last()
	head := strconv.FormatUint(lines, 10) + " " + hash
	// A second attempt follows a write refused over a head found since;
	// a third would follow another process's write within that moment.
	const attempts = 2
	var err error
	for range attempts {
		var rev uint64
		if h.revision == 0 {
			rev, err = h.kv.Create(ctx, h.instance, []byte(head))
		} else {
			rev, err = h.kv.Update(ctx, h.instance, []byte(head), h.revision)
		}
		if err == nil {
			h.revision, h.unsure = rev, nil
			return nil
		}
		if !isConflict(err) {
			if len(h.unsure) == maxUnsureHeads {
				h.unsure = slices.Delete(h.unsure, 1, 2)
			}
			h.unsure = append(h.unsure, head)
			return err
		}
		found, gerr := h.kv.Get(ctx, h.instance)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			// Deleted since: created again.
			h.revision, h.unsure = 0, nil
			continue
		case gerr != nil:
			return fmt.Errorf("audit head of instance %q changed since this process wrote it; reading it: %w", h.instance, gerr)
		}
		h.revision = found.Revision()
		own := slices.Contains(h.unsure, string(found.Value()))
		h.unsure = nil
		if !own { // else this process's own write, stored though unanswered
			s.instanceClash(found)
		}
	}
	return fmt.Errorf("audit head of instance %q: %w", h.instance, err)
}

// instanceClash reports a head of this instance that another process
// wrote: two processes run as the same -instance.
func (s *Service) instanceClash(found jetstream.KeyValueEntry) {
	s.heads.clashes.Inc()
	s.log.Error("another process publishes the audit head of this instance: each -instance must be unique, and two processes running as one "+
		"take over each other's idempotency claims at once, so that a payment retried with its Idempotency-Key may be charged twice; "+
		"stop one of them, or start it with an -instance of its own",
		"instance", s.heads.instance, "other_head", httpapi.Clip(string(found.Value()), 200), "other_published", found.Created().UTC().Format(time.RFC3339))
}

// errAuditHeadLost is the error of a start whose audit trail no longer
// holds the head published for its instance: the trail was cut short,
// replaced or rewritten, or the head is another process's, running as the
// same instance on another data dir.
var errAuditHeadLost = errors.New("the audit trail does not hold the head published for this instance")

// checkAuditHead compares the audit trail, as the start opened it, with
// the head last published for this instance, before the start writes to
// the trail and before a new head replaces the published one. A trail
// cut short, replaced or rewritten while the service was down no longer
// holds that line, and would otherwise go on, and publish its own head,
// as if nothing had happened: the published head, the one record of the
// trail's end kept out of the data dir, would be gone ten seconds after
// the start. Such a start fails with errAuditHeadLost, as does one that
// finds a head it cannot read, unless -audit-accept-lost-head is set,
// which logs the lost head and goes on. A head is held when the line it
// names (its count of lines in the file then written, and that line's
// hash) is in the trail's last file or, when the trail went on in a new
// file since, in the one before; the chain from there on was checked as
// the trail was opened. An instance with no head yet (a first start) has
// nothing to check. The head a start goes on from is its own: its first
// publication replaces that revision (auditHeads), so that a restart
// after a crash is not taken for another process of the instance.
func (s *Service) checkAuditHead(ctx context.Context) error {
	s.headRevision = 0
	kv, err := s.js.KeyValue(ctx, auditHeadsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	e, err := kv.Get(ctx, s.cfg.Instance)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	published := e.Created().UTC().Format(time.RFC3339)
	var lost error
	const accept = "pass -audit-accept-lost-head to start with the trail as it is (its own head then replaces the published one)"
	lines, hash, err := parseAuditHead(string(e.Value()))
	if err != nil {
		lost = fmt.Errorf("%w: the head published %s for it is %w; %s", errAuditHeadLost, published, err, accept)
	} else {
		held, err := trailHolds(s.auditPath, s.auditState, lines, hash)
		if err != nil {
			return fmt.Errorf("audit head of instance %q: %w", s.cfg.Instance, err)
		}
		if held {
			s.headRevision = e.Revision()
			return nil
		}
		lost = fmt.Errorf("%w: the trail %s (%d lines in that file, last hash %s) does not hold line %d with hash %s, published %s: lines were cut from its end, or it was replaced or rewritten, since, "+
			"or another process runs as instance %q on another data dir (each -instance must be unique: stop that process, or start this one with an -instance of its own); "+
			"check it with `go run ./cmd/taikit audit verify -expect %s %s*`, and %s",
			errAuditHeadLost, s.auditState.File, s.auditState.Lines, s.auditState.Last, lines, hash, published, s.cfg.Instance, hash, s.auditPath, accept)
	}
	if !s.cfg.AuditAcceptLostHead {
		return lost
	}
	s.log.Error("starting with an audit trail that lost its published head (-audit-accept-lost-head)", "err", lost)
	s.headRevision = e.Revision()
	return nil
}

// parseAuditHead reads a published head, "<lines> <hash>".
func parseAuditHead(v string) (lines uint64, hash string, err error) {
	n, h, ok := strings.Cut(v, " ")
	if lines, err = strconv.ParseUint(n, 10, 64); !ok || err != nil || len(h) != 2*sha256.Size {
		return 0, "", fmt.Errorf("%q, not \"<lines> <hash>\"", httpapi.Clip(v, 200))
	}
	return lines, h, nil
}

// trailHolds reports whether the trail whose first file is first, and
// whose last file OpenAuditFile found as state, holds line n with hash h
// in its last file or in the one before it; n = 0 is a file's start,
// whose hash is the last of the file before (or the genesis).
func trailHolds(first string, state kaizen.AuditFileState, n uint64, h string) (bool, error) {
	if h == state.Last && n == state.Lines {
		return true, nil
	}
	files := []string{state.File}
	if prev, ok := previousAuditFile(first, state.File); ok {
		files = append(files, prev)
	}
	for _, name := range files {
		if ok, err := fileHolds(name, n, h); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// previousAuditFile returns the file of the trail before file: first for
// first.000001, first.000041 for first.000042, none for first.
func previousAuditFile(first, file string) (string, bool) {
	seq, ok := strings.CutPrefix(file, first+".")
	if !ok {
		return "", false
	}
	k, err := strconv.ParseUint(seq, 10, 64)
	switch {
	case err != nil || k == 0:
		return "", false
	case k == 1:
		return first, true
	}
	return fmt.Sprintf("%s.%0*d", first, len(seq), k-1), true
}

// fileHolds reports whether the audit file name holds line n with hash h:
// its n-th line ends with that hash, or, for n = 0, its first line links
// to it. A file that does not exist holds nothing.
func fileHolds(name string, n uint64, h string) (bool, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), kaizen.MaxAuditLineLen+1)
	var line []byte
	for range max(n, 1) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return false, fmt.Errorf("reading %s: %w", name, err)
			}
			return false, nil // fewer lines
		}
		// NUL bytes may stand for a file's last newline, as a file system
		// that lost a write leaves them.
		line = bytes.TrimRight(sc.Bytes(), "\x00")
	}
	// A line ends `"prev":"<hash>","hash":"<hash>"}`.
	const tail = len(`","hash":"`) + 2*sha256.Size + len(`"}`)
	if len(line) < tail+2*sha256.Size {
		return false, nil
	}
	if n == 0 {
		return string(line[len(line)-tail-2*sha256.Size:len(line)-tail]) == h, nil
	}
	return string(line[len(line)-2*sha256.Size-len(`"}`):len(line)-len(`"}`)]) == h, nil
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
	if lines, hash, err = parseAuditHead(string(e.Value())); err != nil {
		return 0, "", fmt.Errorf("audit head of %q: %w", instance, err)
	}
	return lines, hash, nil
}
