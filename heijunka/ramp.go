package heijunka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// RampStage is one step of a Ramp: a share of keys admitted, and how long
// it must bake (run without trouble) before the ramp may advance.
type RampStage struct {
	Name    string
	Percent float64       // share of keys admitted, in (0, 100]
	Bake    time.Duration // minimum time at this stage before Advance
}

// DefaultRampStages returns canary 5% (bake 10 minutes), staging 25% (bake
// 30 minutes), prod 100%.
func DefaultRampStages() []RampStage {
	return []RampStage{
		{Name: "canary", Percent: 5, Bake: 10 * time.Minute},
		{Name: "staging", Percent: 25, Bake: 30 * time.Minute},
		{Name: "prod", Percent: 100},
	}
}

// RampStep is the resolution of a Ramp's shares, in percent: a key's
// place among all keys is one of 10^6·2^44 points (2^44 in each
// millionth), and a share admits a whole number of them. It is about
// 5.7e-18 percent.
const RampStep = 100.0 / rampPoints

// The points a key may fall on: rampBuckets millionths of the keys, each
// cut in 2^rampFine.
const (
	rampBuckets = 1_000_000
	rampFine    = 44
	rampPoints  = rampBuckets << rampFine // below 2^64
)

// RampOptions configures a Ramp. The zero value is ready to use.
type RampOptions struct {
	// Name names the ramp in errors, events and to the tai pipeline.
	// Default "heijunka.ramp".
	Name string
	// Stages in order; nil means DefaultRampStages. Names must be unique
	// and non-empty, percents strictly increasing in (0, 100], bakes >= 0.
	// A stage admits the share of keys its percent says, to within
	// RampStep percent (the percent is rounded to a whole number of
	// steps): a stage below 100% turns some keys away, and only 100%
	// admits every key. Each percent must round to a step above the one
	// before, so that every stage admits some keys, and more than the
	// stage before. A percent with at most four decimals (a whole number
	// of millionths of the keys) admits exactly those millionths.
	Stages []RampStage
	// Salt varies which keys fall in a share. Ramps with the same salt
	// admit the same keys at the same percent (on every replica); give
	// each rollout its own salt so the same customers are not always the
	// canaries.
	Salt string
	// OnEvent, if set, receives every transition, in order, outside the
	// ramp's lock: it may call Advance or Rollback itself. Events are
	// delivered by the Advance or Rollback call that made them, or, if
	// another call is delivering already, by that call, so that one
	// listener runs at a time. A panic in OnEvent is recovered: the call
	// delivering returns it as a *PanicError (errors.Join of them if there
	// were several; the transition stands), and later events are delivered
	// as usual. A listener that ends its goroutine (runtime.Goexit) ends the
	// call delivering; the events still queued are delivered by the next
	// Advance or Rollback, even one that is refused (a rolled-back or
	// completed ramp makes no transition again), which returns the panics
	// of OnEvent joined to its error.
	OnEvent func(RampEvent)
}

// RampEventKind tells what happened to a Ramp.
type RampEventKind uint8

// The kinds of RampEvent.
const (
	RampAdvanced   RampEventKind = iota + 1 // moved to the next stage
	RampCompleted                           // moved to the last stage
	RampRolledBack                          // rolled back: admits no key
)

var rampEventNames = [...]string{"", "advanced", "completed", "rolled back"}

// String returns "advanced", "completed" or "rolled back".
func (k RampEventKind) String() string {
	if int(k) < len(rampEventNames) && k != 0 {
		return rampEventNames[k]
	}
	return "ramp event(" + strconv.Itoa(int(k)) + ")"
}

// RampEvent is a transition of a Ramp.
type RampEvent struct {
	Ramp   string // the ramp's name
	Kind   RampEventKind
	From   RampStage // the stage left
	To     RampStage // the stage entered; zero after a rollback
	At     time.Time
	Reason string // the reason given to Rollback
}

// RampState is a Ramp's position.
type RampState struct {
	Stage      RampStage // the current stage; zero after a rollback
	Index      int       // the stage's index; -1 after a rollback
	Since      time.Time // when the stage (or the rollback) began
	BakedAt    time.Time // when Advance becomes possible
	Percent    float64   // share of keys admitted now: 0 after a rollback
	Done       bool      // at the last stage
	RolledBack bool
}

var (
	// ErrOutsideRamp matches every *OutsideRampError: a key is not in the
	// ramp's current share.
	ErrOutsideRamp = errors.New("heijunka: key outside the ramp")
	// ErrBaking is returned by Advance before the stage has baked.
	ErrBaking = errors.New("heijunka: stage still baking")
	// ErrRampDone is returned by Advance at the last stage.
	ErrRampDone = errors.New("heijunka: ramp at its last stage")
	// ErrRolledBack is returned by Advance and Rollback after a rollback.
	ErrRolledBack = errors.New("heijunka: ramp rolled back")
)

// OutsideRampError is the error Ramp.Admit returns for a key not in the
// current share.
type OutsideRampError struct {
	Ramp    string
	Stage   string // empty after a rollback
	Percent float64
}

// Error names the ramp and its stage and share, or says it rolled back.
func (e *OutsideRampError) Error() string {
	if e.Stage == "" {
		return "heijunka: ramp " + strconv.Quote(e.Ramp) + " rolled back"
	}
	return fmt.Sprintf("heijunka: key outside ramp %q at stage %q (%v%%)", e.Ramp, e.Stage, e.Percent)
}

// Is reports whether target is ErrOutsideRamp.
func (e *OutsideRampError) Is(target error) bool { return target == ErrOutsideRamp }

// Ramp moves traffic to something new in stages: canary 5% → staging 25% →
// prod 100%. Admits(key) is deterministic by a hash of the key (and the
// salt), the same on every replica, and monotone: a key admitted at 5% is
// admitted at 25%, so a customer does not flip between old and new. Over
// many keys the admitted share matches the stage's percent.
//
// A Ramp starts at its first stage. Advance moves on once the stage has
// baked; Rollback drops to 0% for good (start a new Ramp to try again).
// A Ramp is a tai.Gate: Admit rejects keys outside the share with an
// *OutsideRampError. Make one with NewRamp; the zero Ramp is not usable:
// it admits no key, Advance, Rollback and Admit return an error saying it
// was not made by NewRamp, and Current reports Index -1. It is safe for
// concurrent use; Admits takes no lock.
type Ramp struct {
	name   string
	stages []RampStage
	shares []uint64 // each stage's share: the points it admits (rampShare)
	salt   string
	on     func(RampEvent)

	share atomic.Uint64 // the current share: keys on a point below it are in

	mu         sync.Mutex
	index      int
	since      time.Time
	rolledBack bool

	evMu       sync.Mutex
	queue      []RampEvent
	delivering bool
}

// NewRamp returns a Ramp at its first stage, or an error naming a bad
// stage.
func NewRamp(opts RampOptions) (*Ramp, error) {
	r := &Ramp{name: opts.Name, salt: opts.Salt, on: opts.OnEvent}
	if r.name == "" {
		r.name = "heijunka.ramp"
	}
	r.stages = opts.Stages
	if r.stages == nil {
		r.stages = DefaultRampStages()
	}
	if len(r.stages) == 0 {
		return nil, errors.New("heijunka: ramp Stages is empty")
	}
	r.stages = append([]RampStage(nil), r.stages...)
	names := map[string]bool{}
	prev, prevShare := 0.0, uint64(0)
	for i, s := range r.stages {
		var share uint64
		if s.Percent > 0 && s.Percent <= 100 {
			share = rampShare(s.Percent)
		}
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("heijunka: ramp stage %d has no Name", i)
		case names[s.Name]:
			return nil, fmt.Errorf("heijunka: ramp stage Name %q is repeated", s.Name)
		case math.IsNaN(s.Percent) || s.Percent <= prev || s.Percent > 100:
			return nil, fmt.Errorf("heijunka: ramp stage %q Percent %v must be above %v and at most 100", s.Name, s.Percent, prev)
		case share <= prevShare:
			// A stage that does not rise by a step would admit nobody
			// new.
			return nil, fmt.Errorf("heijunka: ramp stage %q Percent %v rounds to %v%%, not above %v%%: shares go in steps of %v%%",
				s.Name, s.Percent, float64(share)*RampStep, float64(prevShare)*RampStep, RampStep)
		case s.Bake < 0:
			return nil, fmt.Errorf("heijunka: ramp stage %q Bake %v is negative", s.Name, s.Bake)
		}
		names[s.Name] = true
		prev, prevShare = s.Percent, share
		r.shares = append(r.shares, share)
	}
	r.since = time.Now()
	r.share.Store(r.shares[0])
	return r, nil
}

// Name returns the ramp's name.
func (r *Ramp) Name() string { return r.name }

// Stages returns a copy of the stages.
func (r *Ramp) Stages() []RampStage { return append([]RampStage(nil), r.stages...) }

// Admits reports whether key is in the current share. It is a pure
// function of the key, the salt and the share.
func (r *Ramp) Admits(key string) bool { return r.point(key) < r.share.Load() }

// rampShare returns the share of percent p, in (0, 100]: the number of
// points, out of rampPoints, that p percent of them is, to the nearest.
// Below 100 it is below rampPoints: p·10^4 is below 10^6 by more than its
// rounding.
func rampShare(p float64) uint64 {
	millionths := math.Round(p * 1e4)
	if millionths/1e4 == p {
		// p is a whole number of millionths, as written: p·10^4 may
		// miss it by its rounding, the share must not.
		return uint64(millionths) << rampFine
	}
	return uint64(math.Round(p * 1e4 * (1 << rampFine)))
}

// point places key on [0, rampPoints) by a 64-bit FNV-1a hash of salt and
// key, finished with a mixer so every bit counts: the hash modulo 10^6
// picks the key's millionth, and its top 44 bits its place in it.
func (r *Ramp) point(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(r.salt); i++ {
		h = (h ^ uint64(r.salt[i])) * 1099511628211
	}
	h = (h ^ 0xff) * 1099511628211 // separates salt from key
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h%rampBuckets<<rampFine | h>>(64-rampFine)
}

// Admit implements tai.Gate: nil for a key in the share, else an
// *OutsideRampError naming the stage whose share turned the key away (or,
// for the zero Ramp, an error matching ErrOutsideRamp that says it was not
// made by NewRamp).
func (r *Ramp) Admit(_ context.Context, key string) error {
	share := r.share.Load()
	if r.point(key) < share {
		return nil
	}
	if len(r.stages) == 0 {
		return errRampNotMadeOutside
	}
	// The stage is the one of the share decided at, not the one the ramp
	// may have moved to since: each stage has a share of its own.
	err := &OutsideRampError{Ramp: r.name}
	if i := slices.Index(r.shares, share); i >= 0 {
		err.Stage, err.Percent = r.stages[i].Name, r.stages[i].Percent
	}
	return err
}

// Current returns the ramp's position; for the zero Ramp, which has no
// stage, a RampState of Index -1 and nothing else.
func (r *Ramp) Current() RampState {
	if len(r.stages) == 0 {
		return RampState{Index: -1}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rolledBack {
		return RampState{Index: -1, Since: r.since, RolledBack: true}
	}
	s := r.stages[r.index]
	return RampState{
		Stage:   s,
		Index:   r.index,
		Since:   r.since,
		BakedAt: r.since.Add(s.Bake),
		Percent: s.Percent,
		Done:    r.index == len(r.stages)-1,
	}
}

// Advance moves to the next stage. It fails with ErrBaking (wrapped, with
// the time left) before the current stage has baked, ErrRampDone at the
// last stage and ErrRolledBack after a rollback. Having advanced, it
// returns a *PanicError if OnEvent panicked on an event it delivered.
// Refused or not, it delivers the events queued (see RampOptions.OnEvent).
func (r *Ramp) Advance() error {
	if len(r.stages) == 0 {
		return errRampNotMade
	}
	r.mu.Lock()
	now := time.Now()
	switch {
	case r.rolledBack:
		r.mu.Unlock()
		return r.refused(ErrRolledBack)
	case r.index == len(r.stages)-1:
		r.mu.Unlock()
		return r.refused(ErrRampDone)
	}
	from := r.stages[r.index]
	if left := r.since.Add(from.Bake).Sub(now); left > 0 {
		r.mu.Unlock()
		return r.refused(fmt.Errorf("%w: %q needs %v more", ErrBaking, from.Name, left))
	}
	r.index++
	r.since = now
	r.share.Store(r.shares[r.index])
	ev := RampEvent{Ramp: r.name, Kind: RampAdvanced, From: from, To: r.stages[r.index], At: now}
	if r.index == len(r.stages)-1 {
		ev.Kind = RampCompleted
	}
	r.enqueue(ev)
	r.mu.Unlock()
	return r.deliver()
}

// Rollback drops the share to 0% for good, with a reason for the event. It
// returns ErrRolledBack if the ramp was rolled back already. Having rolled
// back, it returns a *PanicError if OnEvent panicked on an event it
// delivered. Refused or not, it delivers the events queued (see
// RampOptions.OnEvent).
func (r *Ramp) Rollback(reason string) error {
	if len(r.stages) == 0 {
		return errRampNotMade
	}
	r.mu.Lock()
	if r.rolledBack {
		r.mu.Unlock()
		return r.refused(ErrRolledBack)
	}
	now := time.Now()
	r.rolledBack = true
	r.share.Store(0)
	r.enqueue(RampEvent{Ramp: r.name, Kind: RampRolledBack, From: r.stages[r.index], At: now, Reason: reason})
	r.since = now
	r.mu.Unlock()
	return r.deliver()
}

// The zero Ramp has no stage to move from: its calls are refused before
// they take its lock.
var (
	errRampNotMade        = errors.New("heijunka: Ramp not made by NewRamp")
	errRampNotMadeOutside = fmt.Errorf("%w: %w", ErrOutsideRamp, errRampNotMade)
)

// refused returns err, the refusal of an Advance or Rollback, once it has
// delivered the events a listener that ended its goroutine left queued:
// after the last transition a refused call is the only one to come. The
// panics of OnEvent, if any, are joined to err.
func (r *Ramp) refused(err error) error {
	if perr := r.deliver(); perr != nil {
		return errors.Join(err, perr)
	}
	return err
}

// enqueue records an event under r.mu, so the queue is in transition
// order.
func (r *Ramp) enqueue(ev RampEvent) {
	if r.on == nil {
		return
	}
	r.evMu.Lock()
	r.queue = append(r.queue, ev)
	r.evMu.Unlock()
}

// deliver hands queued events to OnEvent, one goroutine at a time and in
// order; a transition made from inside OnEvent, or while another call
// delivers, is delivered by the loop already running. It returns the
// panics of OnEvent, joined.
func (r *Ramp) deliver() error {
	if r.on == nil {
		return nil
	}
	var panics []error
	r.evMu.Lock()
	if r.delivering {
		r.evMu.Unlock()
		return nil
	}
	r.delivering = true
	returned := false
	defer func() {
		if !returned {
			// OnEvent ended the goroutine (runtime.Goexit), with r.evMu
			// unlocked: the next Advance or Rollback delivers the rest.
			r.evMu.Lock()
			r.delivering = false
			r.evMu.Unlock()
		}
	}()
	for len(r.queue) > 0 {
		ev := r.queue[0]
		r.queue = r.queue[1:]
		r.evMu.Unlock()
		if err := r.call(ev); err != nil {
			panics = append(panics, err)
		}
		r.evMu.Lock()
	}
	r.delivering = false
	r.evMu.Unlock()
	returned = true
	if len(panics) == 1 {
		return panics[0]
	}
	return errors.Join(panics...)
}

// call runs OnEvent and returns its panic, if any, as a *PanicError.
func (r *Ramp) call(ev RampEvent) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError("Ramp.OnEvent", v)
		}
	}()
	r.on(ev)
	return nil
}
