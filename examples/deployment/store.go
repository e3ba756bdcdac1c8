package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// Store keeps the service's state in JetStream key-value buckets, shared by
// every replica on the same NATS:
//
//   - deployments: each deployment's record, by ID;
//   - deploy_locks: "service.region" → the ID of the deployment active
//     there, so a second one is refused (409) on any replica;
//   - deploy_stable: "service.region" → the version serving there, the one
//     a rollback returns to;
//   - deploy_capacity: region → the capacity reserved there by the region
//     rollouts in progress (see Reservation);
//   - deploy_control: a deployment's pending command (abort, promote,
//     resume), and the cord. A command dropped at its deployment's end
//     leaves a marker, which a sweep removes an hour later
//     (DropCommandMarkers).
type Store struct {
	deployments, locks, stable, control, capacity jetstream.KeyValue
	// controlStream is the control bucket's stream: DropCommands removes
	// an end of the commands from it without a trace.
	controlStream jetstream.Stream
	// writers are the deployments bucket over further connections: one
	// connection's writes go one at a time, so the records' writes are
	// spread over several.
	writers []jetstream.KeyValue
	next    atomic.Uint32
}

// writer returns the deployments bucket over the next connection.
func (s *Store) writer() jetstream.KeyValue {
	if len(s.writers) == 0 {
		return s.deployments
	}
	// In uint32: an int of 32 bits would turn negative past 2^31 calls.
	return s.writers[s.next.Add(1)%uint32(len(s.writers))]
}

// StoreOptions bound the deployments bucket, and say how many servers of
// a JetStream cluster hold each bucket (0 means 1).
type StoreOptions struct {
	MaxBytes int64
	MaxAge   time.Duration
	Replicas int
}

func openStore(ctx context.Context, js jetstream.JetStream, more []jetstream.JetStream, o StoreOptions) (*Store, error) {
	open := func(cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		cfg.Storage = jetstream.FileStorage
		cfg.Replicas = max(o.Replicas, 1)
		kv, err := svc.KeyValue(ctx, js, cfg)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
		return kv, nil
	}
	var s Store
	var err error
	if s.deployments, err = open(jetstream.KeyValueConfig{Bucket: "deployments", MaxBytes: o.MaxBytes, TTL: o.MaxAge, MaxValueSize: 1 << 20}); err != nil {
		return nil, err
	}
	for _, j := range more {
		kv, err := j.KeyValue(ctx, "deployments")
		if err != nil {
			return nil, err
		}
		s.writers = append(s.writers, kv)
	}
	if s.locks, err = open(jetstream.KeyValueConfig{Bucket: "deploy_locks", MaxBytes: 64 << 20}); err != nil {
		return nil, err
	}
	if s.stable, err = open(jetstream.KeyValueConfig{Bucket: "deploy_stable", MaxBytes: 64 << 20}); err != nil {
		return nil, err
	}
	if s.capacity, err = open(jetstream.KeyValueConfig{Bucket: "deploy_capacity", MaxBytes: 64 << 20}); err != nil {
		return nil, err
	}
	if s.control, err = open(jetstream.KeyValueConfig{Bucket: "deploy_control", MaxBytes: 64 << 20, History: 1}); err != nil {
		return nil, err
	}
	if s.controlStream, err = js.Stream(ctx, "KV_deploy_control"); err != nil {
		return nil, fmt.Errorf("bucket deploy_control: %w", err)
	}
	return &s, nil
}

// ErrNotFound is returned for a deployment the store does not have.
var ErrNotFound = errors.New("deployment not found")

// Get returns a deployment and its revision.
func (s *Store) Get(ctx context.Context, id string) (*Deployment, uint64, error) {
	e, err := s.entry(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	var d Deployment
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return nil, 0, fmt.Errorf("deployment %s: %w", id, err)
	}
	return &d, e.Revision(), nil
}

// entry reads a deployment's record as stored, or ErrNotFound, from any
// of the bucket's servers: one that is behind answers an earlier
// revision.
func (s *Store) entry(ctx context.Context, id string) (jetstream.KeyValueEntry, error) {
	e, err := s.writer().Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	return e, err
}

// Create stores a new deployment and returns its revision. A record
// stored already with exactly d's content is taken for d's own: a create
// tried again after one whose answer was lost (it timed out, and landed)
// finds it, and returns its revision. Any other record of d's ID is
// refused with jetstream.ErrKeyExists.
func (s *Store) Create(ctx context.Context, d *Deployment) (uint64, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return 0, err
	}
	rev, err := s.writer().Create(ctx, d.ID, b)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return rev, err
	}
	e, gerr := s.entry(ctx, d.ID)
	if gerr != nil || !bytes.Equal(e.Value(), b) {
		return 0, err
	}
	return e.Revision(), nil
}

// Update stores d over the revision rev, failing if someone else wrote it
// since (a conflict: read again and redo).
func (s *Store) Update(ctx context.Context, d *Deployment, rev uint64) (uint64, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return 0, err
	}
	return s.writer().Update(ctx, d.ID, b, rev)
}

// UpdateRaw stores a deployment already encoded as JSON over revision rev,
// as Update does.
func (s *Store) UpdateRaw(ctx context.Context, id string, b []byte, rev uint64) (uint64, error) {
	return s.writer().Update(ctx, id, b, rev)
}

// List returns the deployments matching the filters, newest first. It
// reads the records in one pass over the bucket (the last value of each
// key, as a watch of every key begins), rather than listing the keys and
// reading each record in a round trip of its own, which took 50 ms for
// a thousand deployments.
func (s *Store) List(ctx context.Context, match func(*Deployment) bool) ([]*Deployment, error) {
	w, err := s.deployments.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	// A record written while the list is read may come twice, before and
	// after: the later one is kept.
	byID := map[string]*Deployment{}
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case u, ok := <-w.Updates():
			if !ok {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				return nil, errors.New("listing the deployments: the watch ended")
			}
			e = u
		}
		if e == nil {
			break // every record stored when the list began
		}
		var d Deployment
		if err := json.Unmarshal(e.Value(), &d); err != nil {
			return nil, fmt.Errorf("deployment %s: %w", e.Key(), err)
		}
		byID[e.Key()] = &d
	}
	var out []*Deployment
	for _, d := range byID {
		if match(d) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *Deployment) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Watch calls fn with every state of the deployment from now on, the
// current one first, until fn returns false or ctx ends.
func (s *Store) Watch(ctx context.Context, id string, fn func(*Deployment) bool) error {
	w, err := s.deployments.Watch(ctx, id)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch ended")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // the end of the initial values, or a delete
			}
			var d Deployment
			if err := json.Unmarshal(e.Value(), &d); err != nil {
				return err
			}
			if !fn(&d) {
				return nil
			}
		}
	}
}

func lockKey(service, region string) string { return service + "." + region }

// Lock takes service/region for deployment id. It returns the ID of the
// deployment holding it, if another does, and how long that one has held
// it (see locksNow).
func (s *Store) Lock(ctx context.Context, service, region, id string) (holder string, held time.Duration, err error) {
	for {
		_, err := s.locks.Create(ctx, lockKey(service, region), []byte(id))
		if err == nil {
			return "", 0, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", 0, err
		}
		e, gerr := s.locks.Get(ctx, lockKey(service, region))
		if errors.Is(gerr, jetstream.ErrKeyNotFound) {
			continue // released in between
		}
		if gerr != nil {
			return "", 0, gerr
		}
		if string(e.Value()) == id {
			return "", 0, nil // ours already (a retried request)
		}
		now, err := s.locksNow(ctx)
		if err != nil {
			return "", 0, err
		}
		return string(e.Value()), now.Sub(e.Created()), nil
	}
}

// locksNow returns the time on the clock that stamps the locks: the NATS
// server's that holds their bucket (its stream's leader), as it reports
// it with the stream's state. A lock's age is judged on that clock
// alone, never on a replica's against the server's, nor on one
// replica's against another's, so that clocks apart do not make a lock
// taken a moment ago look stale (or one stale look fresh). A server that
// reports no time leaves this process's clock.
func (s *Store) locksNow(ctx context.Context) (time.Time, error) {
	st, err := s.locks.Status(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo }); ok && si.StreamInfo() != nil && !si.StreamInfo().TimeStamp.IsZero() {
		return si.StreamInfo().TimeStamp, nil
	}
	return time.Now(), nil
}

// RegionLock is a service/region taken by a deployment: its holder, and
// how long it has held it (see locksNow).
type RegionLock struct {
	Service, Region, Holder string
	Held                    time.Duration
}

// Locks returns every service/region taken, and by which deployment.
func (s *Store) Locks(ctx context.Context) ([]RegionLock, error) {
	now, err := s.locksNow(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := s.locks.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = keys.Stop() }()
	var out []RegionLock
	for k := range keys.Keys() {
		e, err := s.locks.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released since the listing
		}
		if err != nil {
			return nil, err
		}
		service, region := splitKey(k)
		// Taken after now (while listing): as good as just taken.
		out = append(out, RegionLock{Service: service, Region: region, Holder: string(e.Value()), Held: max(now.Sub(e.Created()), 0)})
	}
	return out, nil
}

// Unlock releases service/region if deployment id holds it.
func (s *Store) Unlock(ctx context.Context, service, region, id string) error {
	e, err := s.locks.Get(ctx, lockKey(service, region))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(e.Value()) != id {
		return nil
	}
	err = s.locks.Delete(ctx, lockKey(service, region), jetstream.LastRevision(e.Revision()))
	if err != nil && !isConflict(err) {
		return err
	}
	return nil
}

// Stable returns the version serving service in region, "" if none.
func (s *Store) Stable(ctx context.Context, service, region string) (string, error) {
	e, err := s.stable.Get(ctx, lockKey(service, region))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// SetStable records the version serving service in region.
func (s *Store) SetStable(ctx context.Context, service, region, version string) error {
	_, err := s.stable.Put(ctx, lockKey(service, region), []byte(version))
	return err
}

// RestoreStable records version as the one serving service in region
// again (none when it is "") if unset is recorded now: a rollout cut off
// between recording its version and storing its end is rolled back, and
// the version it recorded serves no longer.
func (s *Store) RestoreStable(ctx context.Context, service, region, unset, version string) error {
	e, err := s.stable.Get(ctx, lockKey(service, region))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil || string(e.Value()) != unset {
		return err
	}
	if version == "" {
		err = s.stable.Delete(ctx, lockKey(service, region), jetstream.LastRevision(e.Revision()))
	} else {
		_, err = s.stable.Update(ctx, lockKey(service, region), []byte(version), e.Revision())
	}
	if isConflict(err) {
		return nil // another writer moved it on
	}
	return err
}

// SeedStable records version for service in region unless a version is
// recorded already: the catalog's starting point, which deployments then
// move on.
func (s *Store) SeedStable(ctx context.Context, service, region, version string) error {
	_, err := s.stable.Create(ctx, lockKey(service, region), []byte(version))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return err
}

// StableAll returns every recorded service.region → version.
func (s *Store) StableAll(ctx context.Context) (map[string]string, error) {
	keys, err := s.stable.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k := range keys.Keys() {
		e, err := s.stable.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			_ = keys.Stop()
			return nil, err
		}
		out[k] = string(e.Value())
	}
	return out, nil
}

// Command is an instruction a person gives a running deployment.
type Command struct {
	Action string `json:"action"` // abort, promote or resume
	Reason string `json:"reason,omitempty"`
	// Region is the region whose rollout was running (or next to run)
	// when the command was sent: a promote or a resume is for that
	// region's rollout alone, where an abort ends the whole deployment.
	Region string `json:"region,omitempty"`
	// Stage is, for a promote, the stage the region's record showed
	// baking when it was sent: the promote ends that stage's bake, not
	// the next one's should the stage pass before the promote reaches
	// the rollout. "" for a promote of a pause before the first stage.
	Stage string `json:"stage,omitempty"`
	// Status is, in the end of the commands (EndCommands), the status the
	// deployment ends with; one stored without it ends SUCCESS.
	Status string `json:"status,omitempty"`
	// Verdict is, in the end of the commands, what decided the end of
	// Region, the region that ends the deployment: denied (its
	// prerequisite Decision refused it, Reason saying why) or failed (the
	// rules of Decision failed at evaluation, Reason saying how), and
	// the region ends FAILED with Reason; or, for its last stage, Stage,
	// passed or promoted (Reason the stage's), and the region ends
	// SUCCESS. Stored with the closure, the decision stands for every
	// later attempt of the region's job (see Service.decidedEnd). An end
	// stored without it (by an earlier release) decides nothing.
	Verdict  string `json:"verdict,omitempty"`
	Decision string `json:"decision,omitempty"`
	// At is when the replica that answered the request sent the command,
	// on that replica's clock (in the end of the commands, when the
	// region ended): a record of it, never judged against another clock,
	// as replicas' clocks may be hours apart. A command's age is Stored's.
	At  time.Time `json:"at"`
	Seq uint64    `json:"-"` // the store's revision: commands are told apart by it
	// Stored is when the NATS server that holds the control bucket
	// stored the command, by its own clock (the entry's creation), told
	// on this process's clock, with its monotonic reading, by the
	// server's time read as the command was (WatchCommands):
	// time.Since(Stored) is the command's age on the server's clock,
	// whatever the replicas' clocks say. Zero in a command not read by
	// WatchCommands, whose age is not known.
	Stored time.Time `json:"-"`
}

// Verdicts of an end of the commands (Command.Verdict) other than a
// stage's.
const (
	verdictDenied = "denied"
	verdictFailed = "failed"
)

// refusal reports whether c, an end of the commands, was stored as the
// prerequisites of c.Region refused it, or their rules failed.
func (c Command) refusal() bool { return c.Verdict == verdictDenied || c.Verdict == verdictFailed }

// passed reports whether c, an end of the commands, was stored as
// c.Region passed its last stage, c.Stage.
func (c Command) passed() bool {
	return (c.Verdict == "passed" || c.Verdict == "promoted") && c.Stage != ""
}

// ErrAborting is SendCommand's error for a promote or a resume sent to a
// deployment with an abort pending: the abort stands.
var ErrAborting = errors.New("an abort is pending")

// ErrSucceeded is SendCommand's error for a command sent to a deployment
// whose commands were closed to end SUCCESS (EndCommands: its last region
// has passed its last stage), or that has ended SUCCESS: the rollout
// succeeded, and nothing is left to abort, promote or resume.
var ErrSucceeded = errors.New("the rollout has succeeded")

// ErrEnded is SendCommand's error for a command sent to a deployment that
// has ended other than SUCCESS (FAILED or ROLLED_BACK), or whose commands
// were closed to end so (EndCommands: its prerequisites refused the
// region that ends it): no run takes it, and nothing is left to abort,
// promote or resume. The error SendCommand returns is an *EndedError,
// which names the status; errors.Is matches it with ErrEnded.
var ErrEnded = errors.New("the deployment has ended")

// EndedError is the error of a command refused because its deployment
// has ended with Status.
type EndedError struct{ Status string }

// Error names the status the deployment ended with.
func (e *EndedError) Error() string { return "the deployment has ended " + e.Status }

// Is reports whether target is ErrEnded.
func (e *EndedError) Is(target error) bool { return target == ErrEnded }

// endAction is the action of the value EndCommands stores in place of a
// deployment's command: no command is taken after it. endOverCommand is
// the same, stored over a command (which the replicas hold as pending):
// DropCommands tells the two apart.
const (
	endAction      = "end"
	endOverCommand = "end-over-command"
)

// isEnd reports whether action is that of an end of the commands.
func isEnd(action string) bool { return action == endAction || action == endOverCommand }

// SendCommand stores a command for a deployment; the replica running it
// picks it up. A deployment keeps one pending command, the last sent,
// except that an abort is final: a promote or a resume sent after it is
// refused with ErrAborting, so that a rollout which had not taken the
// abort yet (one still queued, or a wave's next region) still ends. A
// command sent once the deployment's commands are closed (EndCommands),
// or once it has ended, is refused and not kept: no run would take it.
// The error is ErrSucceeded for a deployment that ends SUCCESS, and an
// *EndedError (ErrEnded) naming the status for one that ends otherwise
// (FAILED, ROLLED_BACK). An abort stored before EndCommands is the run's
// to act on.
func (s *Store) SendCommand(ctx context.Context, id string, c Command) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	key := "cmd." + id
	for {
		e, err := s.control.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.control.Create(ctx, key, b)
		case err != nil:
			return err
		default:
			var cur Command
			if json.Unmarshal(e.Value(), &cur) == nil {
				switch {
				case isEnd(cur.Action) && cur.Status != "" && cur.Status != StatusSuccess:
					return s.closedToEnd(ctx, id, cur.Status)
				case isEnd(cur.Action):
					return ErrSucceeded
				case cur.Action == "abort" && c.Action != "abort":
					return ErrAborting
				}
			}
			_, err = s.control.Update(ctx, key, b, e.Revision())
		}
		if isConflict(err) {
			continue // another command came between the read and the write: read again
		}
		if err != nil {
			return err
		}
		break
	}
	// Stored with no end in the way: the deployment's end may have come
	// before, its commands dropped. Such a command is no one's; it is
	// dropped, and an abort sent after a SUCCESS is refused (an abort
	// taken by a run never ends SUCCESS), as are a promote and a resume:
	// nothing is left to promote or resume. A command sent to a
	// deployment that ended otherwise is refused as well (ErrEnded),
	// except an abort the rollback names (a region rolled back
	// "Aborted: " with its reason): the run took it, or one just like it,
	// before it ended. A record that cannot be read leaves the command as
	// stored.
	d, _, err := s.Get(ctx, id)
	if err != nil || !terminal(d.Status) {
		return nil
	}
	if err := s.DropCommands(ctx, id); err != nil {
		return nil
	}
	switch {
	case d.Status == StatusSuccess:
		return ErrSucceeded
	case c.Action == "abort" && abortedWith(d, c.Reason):
		return nil
	}
	return &EndedError{Status: d.Status}
}

// closedToEnd is SendCommand's error for a command to deployment id whose
// commands were closed to end with status, other than SUCCESS: an
// *EndedError. Once the deployment reads ended, its commands are dropped
// here, as they are for a command stored after its end: the run drops
// them a moment after it stores the end, and a command refused meanwhile
// finds the deployment's commands gone once answered, as one refused
// after.
func (s *Store) closedToEnd(ctx context.Context, id, status string) error {
	d, _, err := s.Get(ctx, id)
	if err != nil || !terminal(d.Status) {
		return &EndedError{Status: status}
	}
	_ = s.DropCommands(ctx, id) // failing, it leaves them to the run, which drops them too
	return &EndedError{Status: d.Status}
}

// abortedWith reports whether a region of d rolled back for an abort
// sent with reason.
func abortedWith(d *Deployment, reason string) bool {
	for _, rr := range d.Results {
		if rr.Status == StatusRolledBack && rr.ErrorMessage == "Aborted: "+reason {
			return true
		}
	}
	return false
}

// EndCommands closes the commands of deployment id, whose end is decided
// and is to end with end.Status: its last region has passed its last
// stage, or its prerequisites refused the region that ends it. end says
// which region, and how (Command.Verdict): stored with the closure, that
// decision stands should the region's end not be stored after it (see
// Closed). From then on SendCommand refuses every command, as it refuses
// one sent once the deployment has ended with end.Status. An abort stored
// before is returned (aborted), with its revision as Seq, and the commands
// stay open: the run acts on it. rev is the revision of the end stored;
// closing twice (a retry of a write that landed) returns the first's.
func (s *Store) EndCommands(ctx context.Context, id string, end Command) (abort Command, aborted bool, rev uint64, err error) {
	if end.At.IsZero() {
		end.At = time.Now().UTC()
	}
	end.Action = endAction
	alone, err := json.Marshal(end)
	if err != nil {
		return Command{}, false, 0, err
	}
	end.Action = endOverCommand
	over, err := json.Marshal(end)
	if err != nil {
		return Command{}, false, 0, err
	}
	key := "cmd." + id
	for {
		e, err := s.control.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err = s.control.Create(ctx, key, alone)
		case err != nil:
			return Command{}, false, 0, err
		default:
			var cur Command
			if json.Unmarshal(e.Value(), &cur) == nil {
				switch cur.Action {
				case "abort":
					cur.Seq = e.Revision()
					return cur, true, 0, nil
				case endAction, endOverCommand:
					return Command{}, false, e.Revision(), nil
				}
			}
			rev, err = s.control.Update(ctx, key, over, e.Revision())
		}
		if !isConflict(err) {
			return Command{}, false, rev, err
		}
	}
}

// Closed returns the end of deployment id's commands (EndCommands), with
// the region and the decision it was stored for, if they are closed.
func (s *Store) Closed(ctx context.Context, id string) (end Command, closed bool, err error) {
	e, err := s.control.Get(ctx, "cmd."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Command{}, false, nil
	}
	if err != nil {
		return Command{}, false, err
	}
	if json.Unmarshal(e.Value(), &end) != nil || !isEnd(end.Action) {
		return Command{}, false, nil
	}
	end.Seq = e.Revision()
	return end, true, nil
}

// Aborting reports whether deployment id has an abort pending.
func (s *Store) Aborting(ctx context.Context, id string) (bool, error) {
	e, err := s.control.Get(ctx, "cmd."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var cur Command
	return json.Unmarshal(e.Value(), &cur) == nil && cur.Action == "abort", nil
}

// watchKeys calls fn with every value put under keys matching filter in
// kv, those there now first (unless updatesOnly), until ctx ends. It
// returns once it has read those there now (see watchEntries), and goes
// on on its own goroutine.
func watchKeys(ctx context.Context, kv jetstream.KeyValue, filter string, updatesOnly bool, fn func(key string, value []byte, rev uint64)) error {
	return watchEntries(ctx, kv, filter, updatesOnly, func(e jetstream.KeyValueEntry) {
		if e.Operation() == jetstream.KeyValuePut {
			fn(e.Key(), e.Value(), e.Revision())
		}
	})
}

// initialValuesWithin bounds how long a watcher may take to read the
// values there when it starts.
const initialValuesWithin = 30 * time.Second

// watchEntries is watchKeys with deletes and purges as well. Unless
// updatesOnly, it calls fn with the values there now before it returns:
// a replica that serves once its watchers have started answers from
// them, not from an empty state. A watcher that has not read them within
// initialValuesWithin (the bucket's server too slow, or gone) is stopped
// and returns an error naming the bucket.
func watchEntries(ctx context.Context, kv jetstream.KeyValue, filter string, updatesOnly bool, fn func(jetstream.KeyValueEntry)) error {
	var opts []jetstream.WatchOpt
	if updatesOnly {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	w, err := kv.Watch(ctx, filter, opts...)
	if err != nil {
		return err
	}
	if !updatesOnly {
		if err := initialValues(ctx, kv.Bucket(), filter, w, fn); err != nil {
			_ = w.Stop()
			return err
		}
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					fn(e)
				}
			}
		}
	}()
	return nil
}

// initialValues calls fn with the values w delivers up to the end of
// those there when it started (a nil entry), within initialValuesWithin.
func initialValues(ctx context.Context, bucket, filter string, w jetstream.KeyWatcher, fn func(jetstream.KeyValueEntry)) error {
	timeout := time.NewTimer(initialValuesWithin)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("bucket %s: the values under %q not read within %v", bucket, filter, initialValuesWithin)
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("bucket %s: the watch of %q ended before its values were read", bucket, filter)
			}
			if e == nil {
				return nil
			}
			fn(e)
		}
	}
}

// WatchDeployments calls fn with every stored state of every deployment
// that want(id) asks for, from now on, until ctx ends: one watcher per
// process serves every request waiting for a deployment's end, and only
// the states someone waits for are decoded. The records stored before it
// starts are not read: a request waits for the states stored after it
// began to wait, and the bucket holds a month of deployments.
func (s *Store) WatchDeployments(ctx context.Context, want func(id string) bool, fn func(*Deployment)) error {
	return watchKeys(ctx, s.deployments, ">", true, func(id string, v []byte, _ uint64) {
		if !want(id) {
			return
		}
		var d Deployment
		if json.Unmarshal(v, &d) == nil {
			fn(&d)
		}
	})
}

// WatchStable calls fn with every service.region → version recorded, those
// there now first (before it returns), and with version "" when one is no
// longer recorded, until ctx ends.
func (s *Store) WatchStable(ctx context.Context, fn func(key, version string)) error {
	return watchEntries(ctx, s.stable, ">", false, func(e jetstream.KeyValueEntry) {
		if e.Operation() == jetstream.KeyValuePut {
			fn(e.Key(), string(e.Value()))
		} else {
			fn(e.Key(), "")
		}
	})
}

// WatchCommands calls fn with every command sent to any deployment, those
// pending now first (before it returns), with the deployment's ID, and gone with each command
// dropped or closed by the end of the deployment's commands
// (EndCommands), until ctx ends. Each command comes with when it was
// stored (Command.Stored), as the clock of the NATS server that holds
// the bucket tells it, read as the command is: should the server not
// answer then, its time is the last it told, carried on by this
// process's clock since.
func (s *Store) WatchCommands(ctx context.Context, fn func(id string, c Command), gone func(id string)) error {
	clock, err := s.controlClock(ctx)
	if err != nil {
		return err
	}
	return watchEntries(ctx, s.control, "cmd.*", false, func(e jetstream.KeyValueEntry) {
		id := strings.TrimPrefix(e.Key(), "cmd.")
		if e.Operation() != jetstream.KeyValuePut {
			gone(id)
			return
		}
		var c Command
		if json.Unmarshal(e.Value(), &c) != nil {
			return
		}
		if isEnd(c.Action) {
			gone(id) // no command is taken after it
			return
		}
		if now, err := s.controlClock(ctx); err == nil {
			clock = now
		}
		c.Seq, c.Stored = e.Revision(), clock.local(e.Created())
		fn(id, c)
	})
}

// clockReading is a reading of a NATS server's clock: the time it told,
// and this process's time (with its monotonic reading) as it was told.
type clockReading struct {
	server, here time.Time
}

// local returns the time on this process's clock at which the server's
// clock read t: it runs on by this process's monotonic clock, never by
// its wall clock, which may be hours from the server's.
func (c clockReading) local(t time.Time) time.Time { return c.here.Add(t.Sub(c.server)) }

// controlClock reads the clock that stamps the control bucket's entries:
// that of the NATS server that holds it (its stream's leader), as it
// reports it with the stream's info. A server that reports no time
// leaves this process's clock.
func (s *Store) controlClock(ctx context.Context) (clockReading, error) {
	info, err := s.controlStream.Info(ctx)
	if err != nil {
		return clockReading{}, err
	}
	now := time.Now()
	if info.TimeStamp.IsZero() {
		return clockReading{server: now, here: now}, nil
	}
	return clockReading{server: info.TimeStamp, here: now}, nil
}

// DropCommands forgets a finished deployment's commands. A command is
// purged: the replicas' watchers see it go (WatchCommands), and the
// bucket keeps the purge's marker until a sweep removes it
// (DropCommandMarkers). An end of the commands stored where
// no command was (EndCommands), as every deployment that passes its last
// stage has, is removed from the bucket's stream and leaves nothing: no
// replica holds a command of the deployment, and a marker for every such
// deployment would fill the bucket (bounded by bytes, and shared with the
// cord) until it refused every write. A deployment with nothing stored
// is left as it is.
func (s *Store) DropCommands(ctx context.Context, id string) error {
	key := "cmd." + id
	e, err := s.control.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var cur Command
	if json.Unmarshal(e.Value(), &cur) == nil && cur.Action == endAction {
		// The end, stored once and never replaced (SendCommand refuses
		// every command after it): nothing can come between the read
		// and the purge.
		return s.controlStream.Purge(ctx, jetstream.WithPurgeSubject("$KV.deploy_control."+key))
	}
	err = s.control.Purge(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// DropCommandMarkers removes from the control bucket the markers that
// dropped commands left (DropCommands) once they are olderThan old, as
// the clock of the NATS server that holds the bucket tells (it stamps
// them), and returns how many it removed. A marker reads as no value
// at all (Get answers jetstream.ErrKeyNotFound, a watcher that starts
// sees no command), so that its removal changes nothing a reader sees;
// kept, one for every deployment that got a command, they would fill
// the bucket, which has no age limit, until it refused every write, the
// cord's among them. Only the markers of deployments' commands are
// looked at, and each is removed with what came before it on its key,
// never what came after: a command stored on the key since the marker
// was read is kept. (KeyValue.PurgeDeletes purges the whole key, a
// value stored since included, and reads the age on this process's
// clock.) olderThan gives a replica's watcher time to read a marker
// (WatchCommands), and forget the command it held, before it goes.
func (s *Store) DropCommandMarkers(ctx context.Context, olderThan time.Duration) (int, error) {
	clock, err := s.controlClock(ctx)
	if err != nil {
		return 0, err
	}
	cutoff := clock.server.Add(-olderThan)
	w, err := s.control.Watch(ctx, "cmd.*", jetstream.MetaOnly())
	if err != nil {
		return 0, err
	}
	var old []jetstream.KeyValueEntry
	err = initialValues(ctx, s.control.Bucket(), "cmd.*", w, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut && e.Created().Before(cutoff) {
			old = append(old, e)
		}
	})
	_ = w.Stop()
	if err != nil {
		return 0, err
	}
	for i, e := range old {
		// Up to the marker's revision, and not past it.
		if err := s.controlStream.Purge(ctx, jetstream.WithPurgeSubject("$KV.deploy_control."+e.Key()), jetstream.WithPurgeSequence(e.Revision()+1)); err != nil {
			return i, fmt.Errorf("marker of %s: %w", e.Key(), err)
		}
	}
	return len(old), nil
}

// Cord is the andon cord's state, shared by every replica.
type Cord struct {
	Stopped bool   `json:"stopped"`
	Reason  string `json:"reason,omitempty"`
	// At is when the cord was pulled or released; a cord never touched
	// has none.
	At time.Time `json:"at,omitzero"`
	// Rev is the store's revision of the state: a command stored after a
	// stop (a larger Seq) was sent on a line started since.
	Rev uint64 `json:"-"`
}

// SetCord stores the cord's state and returns the state stored, and
// whether c changed it. A stop while the cord is stopped, or a start
// while it is not, changes nothing: the state stored is returned, with
// the first reason and time, as every replica and the next start read it.
func (s *Store) SetCord(ctx context.Context, c Cord) (Cord, bool, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return Cord{}, false, err
	}
	for {
		e, err := s.control.Get(ctx, "cord")
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if !c.Stopped {
				return Cord{}, false, nil // never pulled: nothing to release
			}
			c.Rev, err = s.control.Create(ctx, "cord", b)
		case err != nil:
			return Cord{}, false, err
		default:
			var cur Cord
			if json.Unmarshal(e.Value(), &cur) == nil && cur.Stopped == c.Stopped {
				cur.Rev = e.Revision()
				return cur, false, nil
			}
			c.Rev, err = s.control.Update(ctx, "cord", b, e.Revision())
		}
		if err == nil {
			return c, true, nil
		}
		if !isConflict(err) {
			return Cord{}, false, err
		}
		// Another pull or release came between the read and the write.
	}
}

// WatchCord calls fn with the cord's state, now (before it returns) and
// at every change, until ctx ends.
func (s *Store) WatchCord(ctx context.Context, fn func(Cord)) error {
	return watchKeys(ctx, s.control, "cord", false, func(_ string, v []byte, rev uint64) {
		var c Cord
		if json.Unmarshal(v, &c) == nil {
			c.Rev = rev
			fn(c)
		}
	})
}

// errMovedOn is a rollout's record found changed by another run since
// this one last wrote it.
var errMovedOn = errors.New("the record was changed by another run")

// isConflict reports a write refused because the key changed since the
// revision given, or a record found changed since (errMovedOn).
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, errMovedOn) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
