package kanban

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDrainTimeout is returned by Serve (and Consume) when in-flight
// handlers were still running at the drain deadline and had their context
// cancelled. Their messages are released for redelivery, not lost.
var ErrDrainTimeout = errors.New("kanban: drain deadline passed with handlers running")

// Serve is the consumer runtime every backend's Consume runs: it pulls
// from src no more messages than free WIP, runs h on each (one at a time
// per key with PerKey), and settles each: Ack on success, Retry with
// back-off on failure, DeadLetter after MaxAttempts, at once for a
// Permanent error, and for a payload that cannot be decoded. A handler
// that panics, or ends its goroutine with runtime.Goexit, fails its
// attempt with a *PanicError (see PanicError). A Backoff, Observer,
// Tracer or Propagator that panics or calls runtime.Goexit is logged and
// does not stop the consumer (see ConsumeOptions); neither does a
// Lease.Message (the backend's Codec) that does, or fails with an error
// that panics when read: it is logged, and its message dead-lettered as
// a payload that cannot be decoded. A
// settlement (the lease's Ack, Retry, Release or DeadLetter) that panics
// or calls runtime.Goexit is logged, as one that fails is, and the
// message is not settled again. A DeadLetter that fails (the backend's
// dead-letter store refuses or is unreachable) leaves the message with
// the backend, which delivers it again: its next delivery to this
// consumer is dead-lettered at once, with the reason it was being
// dead-lettered for (the handler's error), without running the handler.
// Leases are extended from when they are pulled until they are settled:
// while their handler runs, and while they wait for it (with PerKey,
// behind an earlier message of their key), every src.HeartbeatInterval:
// a lease is extended an interval after it was pulled, then an interval
// after each extension, or up to a quarter interval sooner, with another
// lease due then (the leases pulled in a burst share a wake-up). An
// Extend that panics or calls runtime.Goexit is logged, and the
// extensions go on.
//
// When ctx ends Serve stops pulling, releases messages pulled and not yet
// started — in the order that has them delivered again in the order they
// were pulled, as the Source's ReleaseOrder says (see ReleaseOrderer) —
// and waits up to DrainTimeout for running handlers; then it
// cancels their context, waits for them to return, and returns
// ErrDrainTimeout. A clean drain returns nil. Nothing pulled is lost: every
// lease is settled or released before Serve returns. To a Source that
// releases in turn (ReleaseInTurn), the messages of a key waiting behind
// its running one (PerKey) go back once that one is settled, not at once:
// released when the drain deadline cancels it, it comes again before
// them.
//
// A failed Pull is logged and tried again after a back-off of 10ms
// doubling to 1s, until ctx ends, unless its error is marked Permanent
// (see Source): then Serve stops and drains as when ctx ends, logs
// nothing, and returns that error (joined with ErrDrainTimeout when the
// drain timed out), which unwraps to the backend's cause.
//
// ctx is the consumer's shutdown: unlike the Shutdown(ctx) of types that
// run in the background, Serve runs in its caller's goroutine, and when it
// returns every goroutine it started (workers, heartbeats) has ended.
// DrainTimeout bounds the wait for handlers, as Shutdown's ctx would.
// Messages retried with a delay wait in the backend (on a timer in the
// in-memory queue, on the server in JetStream), not in Serve.
func Serve[T any](ctx context.Context, src Source[T], h Handler[T], opts ConsumeOptions, rt Runtime) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if h == nil {
		return errors.New("kanban: nil handler")
	}
	if rt.Counters == nil {
		rt.Counters = new(Counters)
	}
	e := newEngine(ctx, src, h, opts.WithDefaults(), rt)
	defer e.cancelHandlers()
	if ms, ok := src.(*memSource[T]); ok && !e.o.PerKey {
		return e.serveShared(ctx, ms.q)
	}
	if e.held != nil {
		hbDone := make(chan struct{})
		stopHB := make(chan struct{})
		go e.heartbeat(e.beat, stopHB, hbDone)
		defer func() { close(stopHB); <-hbDone }()
	}
	back, err := e.pullLoop(ctx)
	if derr := e.drain(back); derr != nil {
		if err == nil {
			return derr
		}
		return errors.Join(err, derr)
	}
	return err
}

// newEngine returns Serve's engine for src, h, the options o with their
// defaults, and rt with its Counters. The caller cancels its handlers'
// context (cancelHandlers) when done.
func newEngine[T any](ctx context.Context, src Source[T], h Handler[T], o ConsumeOptions, rt Runtime) *engine[T] {
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	e := &engine[T]{
		src: src, h: h, o: o, rt: rt, hctx: hctx, cancelHandlers: cancelHandlers,
		sctx:     context.WithoutCancel(hctx),
		free:     o.WIP,
		lanes:    make(map[string]*lane[T]),
		freed:    make(chan struct{}, 1),
		stopping: make(chan struct{}),
	}
	if ro, ok := src.(ReleaseOrderer); ok {
		e.releaseInTurn = ro.ReleaseOrder() == ReleaseInTurn
	}
	if e.beat = src.HeartbeatInterval(); e.beat > 0 {
		e.held = make(map[Lease[T]]time.Time)
		e.extended.L = &e.mu
	}
	return e
}

type lane[T any] struct{ waiting []pulled[T] }

// pulled is a lease dispatched and not started, with its place in the
// order the consumer pulled its leases: the drain hands them back in that
// order, across keys.
type pulled[T any] struct {
	l   Lease[T]
	seq uint64
}

type engine[T any] struct {
	src  Source[T]
	h    Handler[T]
	o    ConsumeOptions
	rt   Runtime
	hctx context.Context
	// cancelHandlers cancels hctx at the drain deadline.
	cancelHandlers context.CancelFunc
	// sctx is for settling calls: hctx without its cancellation.
	sctx context.Context
	// beat is the Source's HeartbeatInterval.
	beat time.Duration

	mu      sync.Mutex
	free    int // WIP slots not held by a lease
	ready   ring[pulled[T]]
	seq     uint64              // the seq of the last lease dispatched
	lanes   map[string]*lane[T] // a key is busy while it has a lane
	workers int
	// held says when each unsettled lease was pulled, with heartbeats
	// only. Its keys are pointers (see identified).
	held map[Lease[T]]time.Time
	// extending is the lease the heartbeat is extending, if any; settle
	// cancels the extension (stopExtending) and waits on extended until
	// it is done with it.
	extending     Lease[T]
	stopExtending context.CancelCauseFunc
	extended      sync.Cond // on mu
	wg            sync.WaitGroup
	freed         chan struct{}
	stopping      chan struct{} // closed when the drain starts
	stopped       atomic.Bool   // set just before stopping closes
	// releaseInTurn says the source delivers released messages again in
	// the order they were released (ReleaseInTurn).
	releaseInTurn bool
	// undead holds, by message ID, the messages whose dead-lettering
	// failed (see settle), under mu; nundead counts them, so that a
	// delivery looks them up only while there are any.
	undead  map[string]undeadMsg
	nundead atomic.Int64

	nworkers atomic.Int64 // shared mode: workers started
	idle     atomic.Int64 // shared mode: workers waiting for a message
	// cells are the counter cells of the shared mode's live workers,
	// under mu: the drain reads from them whether a handler still runs.
	cells map[*counterCell]struct{}
	// onStop, when set, runs as the drain starts, once stopped is set:
	// the shared mode wakes its waiting workers with it.
	onStop func()
}

// pullLoop pulls until ctx ends, or until Pull returns a Permanent error,
// which it returns: the source can give nothing more. It returns too the
// leases its last Pull returned as it stopped, dispatched and not
// started, for the drain to hand back after those waiting in the lanes,
// which were pulled before them.
func (e *engine[T]) pullLoop(ctx context.Context) (back []Lease[T], err error) {
	errDelay := 10 * time.Millisecond
	// short says the last Pull returned fewer leases than it was asked
	// for: the source may still be delivering what it pulled for them
	// (a JetStream pull request stays open), and what comes must be
	// taken, and its lease extended, at once.
	short := false
	for ctx.Err() == nil {
		e.mu.Lock()
		n := e.free
		e.mu.Unlock()
		// Pull once a quarter of the WIP is free rather than for every
		// freed slot: fewer, larger pulls. Not after a short one: what
		// it has still to deliver would wait, not extended, for as long
		// as the running handlers take, and outlive its lease.
		if n == 0 || (!short && 4*n < e.o.WIP) {
			select {
			case <-e.freed:
				continue
			case <-ctx.Done():
				return back, nil
			}
		}
		leases, err := e.src.Pull(ctx, n)
		short = len(leases) < n
		final := err != nil && IsPermanent(err)
		for _, l := range leases {
			if e.held != nil {
				l = identified(l)
			}
			if !e.dispatch(ctx, l, final) {
				back = append(back, l)
			}
		}
		if final {
			return back, err
		}
		if err != nil && ctx.Err() == nil {
			e.o.Logger.Warn("kanban: pull failed", "err", err, "retry_in", errDelay)
			sleep(ctx, errDelay)
			errDelay = min(2*errDelay, time.Second)
		} else {
			errDelay = 10 * time.Millisecond
		}
	}
	return back, nil
}

// heldLease gives a lease that is not a pointer an identity of its own.
// With heartbeats the engine keys the leases it holds by their value (see
// engine.held): a struct holding a slice or a map cannot be a map key nor
// be compared (either panics), and two equal structs would be taken for
// one lease.
type heldLease[T any] struct{ Lease[T] }

// identified returns l, or l in a heldLease when it is not a pointer.
func identified[T any](l Lease[T]) Lease[T] {
	if t := reflect.TypeOf(l); t == nil || t.Kind() == reflect.Pointer {
		return l
	}
	return &heldLease[T]{l}
}

// dispatch takes l, holding a WIP slot, to a worker or to its key's lane.
// It returns false, and leaves l to be handed back, when ctx has ended or
// stopping is set: a Pull may return leases together with ctx's error or
// a Permanent one, and the consumer starts nothing once it stops.
func (e *engine[T]) dispatch(ctx context.Context, l Lease[T], stopping bool) bool {
	e.rt.Counters.base.addInFlight(1)
	e.mu.Lock()
	e.free--
	if stopping || ctx.Err() != nil {
		e.mu.Unlock()
		return false
	}
	if e.held != nil {
		// Held from now, not from when its handler starts: a lease
		// waiting behind its key (or for a worker) expires all the same.
		e.held[l] = time.Now()
	}
	e.seq++
	p := pulled[T]{l, e.seq}
	if e.o.PerKey {
		if k := l.Key(); k != "" {
			if ln, busy := e.lanes[k]; busy {
				ln.waiting = append(ln.waiting, p)
				e.mu.Unlock()
				return true
			}
			e.lanes[k] = &lane[T]{}
		}
	}
	e.ready.pushBack(p)
	if e.workers < e.o.WIP {
		e.workers++
		e.wg.Add(1)
		go e.worker(nil, nil)
	}
	e.mu.Unlock()
	return true
}

// handBack releases dispatched leases that did not start, in their slots,
// so that the source delivers them again in the order of ls (each key's
// in the order they were pulled). A source that delivers released
// messages in turn (ReleaseInTurn, JetStream) has them released in that
// order; one that puts a released message at the front of its queue
// (ReleaseToFront), the last first. The in-memory queue takes them back
// all at once, so that a consumer waiting is not handed the last first.
func (e *engine[T]) handBack(ls []Lease[T]) {
	if ms, ok := e.src.(*memSource[T]); ok && len(ls) > 0 {
		e.rt.Counters.base.addInFlight(-int64(len(ls)))
		ms.q.releaseAll(ls)
		for range ls {
			e.release()
		}
		return
	}
	// Released in a goroutine of their own: a Release that ends its
	// goroutine (runtime.Goexit) would end the caller's, Serve's caller's
	// in the drain, and leave the rest unreleased. It counts as settled
	// (see settle), and another goroutine releases the rest.
	for n := 0; n < len(ls); {
		done := make(chan int, 1)
		go e.releaseFrom(ls, n, done)
		n = <-done
	}
}

// releaseFrom releases ls from the nth in handBack's order, freeing
// their slots, and sends done how many of ls are settled when it returns
// or a Release ends its goroutine.
func (e *engine[T]) releaseFrom(ls []Lease[T], n int, done chan<- int) {
	settling := false
	defer func() {
		if settling {
			// Its Release ended the goroutine: settled all the same.
			e.release()
			n++
		}
		done <- n
	}()
	for ; n < len(ls); n++ {
		i := n
		if !e.releaseInTurn {
			i = len(ls) - 1 - n
		}
		settling = true
		e.settle(ls[i], settleRelease, 0, "", 0, &e.rt.Counters.base)
		settling = false
		e.release()
	}
}

// release frees the slot of a settled lease.
func (e *engine[T]) release() {
	e.mu.Lock()
	e.free++
	e.mu.Unlock()
	select {
	case e.freed <- struct{}{}:
	default:
	}
}

// worker handles first, if not nil, then leases from ready until none is
// left. With resumed, it does not decode first but makes the attempt
// resumed describes, in place (see goexited). Should a handler or the
// Codec end its goroutine (runtime.Goexit), handleMessage or decode
// settles its lease, or leaves a keyed one to be tried again in place,
// and another goroutine takes over this one's work: first that lease's
// next attempt, if any, then the rest.
func (e *engine[T]) worker(l Lease[T], resumed *Delivery[T]) {
	var (
		k        string
		handling bool
		// resume is set, as the goroutine ends, to the attempt of l to
		// make next in place: its key waits for it.
		resume *Delivery[T]
	)
	// Done in a defer of its own: handled may settle leases (see handled),
	// and a settlement that ends the goroutine would skip the rest of
	// this one.
	defer e.wg.Done()
	defer func() {
		if !handling {
			return
		}
		e.wg.Add(1)
		if resume != nil {
			go e.worker(l, resume)
			return
		}
		go e.worker(e.handled(k), nil)
	}()
	for {
		if l == nil {
			e.mu.Lock()
			if e.ready.len() == 0 {
				e.workers--
				e.mu.Unlock()
				return
			}
			l = e.ready.popFront().l
			e.mu.Unlock()
		}
		// Read the key first: once settled, the lease may be reused by its
		// backend.
		if e.o.PerKey {
			k = l.Key()
		}
		handling = true
		e.handle(l, resumed, &resume, &e.rt.Counters.base)
		handling = false
		resumed = nil
		l = e.handled(k)
	}
}

// handled frees the slot of a lease of key k just handled, and returns the
// next lease of k's lane, if any: the same worker handles it. Once the
// drain has begun, with a source that releases in turn, it hands back the
// lane's leases instead (see drain).
func (e *engine[T]) handled(k string) (next Lease[T]) {
	var back []Lease[T]
	e.mu.Lock()
	e.free++
	if k != "" {
		ln := e.lanes[k]
		switch {
		case e.releaseInTurn && e.stopped.Load():
			back = leasesOf(ln.waiting)
			delete(e.lanes, k)
		case len(ln.waiting) > 0:
			next = ln.waiting[0].l
			ln.waiting[0] = pulled[T]{}
			ln.waiting = ln.waiting[1:]
		default:
			delete(e.lanes, k)
		}
	}
	e.mu.Unlock()
	if len(back) > 0 {
		e.handBack(back)
	}
	select {
	case e.freed <- struct{}{}:
	default:
	}
	return next
}

// leasesOf returns the leases of ps, in their order.
func leasesOf[T any](ps []pulled[T]) []Lease[T] {
	ls := make([]Lease[T], len(ps))
	for i, p := range ps {
		ls[i] = p.l
	}
	return ls
}

// How a lease is settled.
type settlement int

const (
	settleAck settlement = iota
	settleRetry
	settleRelease
	settleDeadLetter
)

// settle settles l as how says and logs a failure: the message then comes
// back after the backend's lease expires, so it is not lost. The lease is
// not touched afterwards, so a backend may reuse it.
//
// A settlement that panics (a backend's own hook, say) is logged, as a
// failure is. One that ends the goroutine (runtime.Goexit) is logged
// too, and the goroutine ends: the message counts as settled, once, and
// the worker's deferred check carries on its work in another goroutine.
func (e *engine[T]) settle(l Lease[T], how settlement, delay time.Duration, reason string, attempts int, c *counterCell) {
	if e.held != nil {
		e.mu.Lock()
		delete(e.held, l)
		// Never while the heartbeat extends l: the extension could reach
		// the message settled, or the lease reused by its backend. The
		// settlement makes it moot: cancelled, an Extend waiting on a
		// stalled connection ends now, not at the drain's deadline, which
		// a drain handing l back has not started yet.
		for e.extending == l {
			e.stopExtending(errSettling)
			e.extended.Wait()
		}
		e.mu.Unlock()
	}
	c.addInFlight(-1)
	id := l.ID()
	var delivered int
	if how == settleDeadLetter {
		delivered = l.Attempt() // read before the lease may be reused
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		if v := recover(); v != nil {
			e.o.Logger.Error("kanban: settling a message panicked", "id", id, "panic", v, "stack", string(debug.Stack()))
			return
		}
		if how == settleDeadLetter {
			c.addDeadLettered() // it counts as settled, as said above
		}
		e.o.Logger.Error("kanban: settling a message called runtime.Goexit", "id", id, "stack", string(debug.Stack()))
	}()
	var err error
	switch how {
	case settleAck:
		err = l.Ack(e.sctx)
	case settleRetry:
		err = l.Retry(e.sctx, delay)
	case settleRelease:
		err = l.Release(e.sctx)
	case settleDeadLetter:
		// Not counted when the backend failed to store it: the message
		// stays in the queue, to be delivered again.
		if err = l.DeadLetter(e.sctx, reason, attempts); err == nil {
			c.addDeadLettered()
		} else {
			e.rememberUndead(id, undeadMsg{reason: reason, attempts: attempts, delivered: delivered})
		}
	}
	returned = true
	if err != nil {
		e.o.Logger.Warn("kanban: settling a message failed", "id", id, "err", err)
	}
}

func (e *engine[T]) deadLetter(l Lease[T], reason string, attempts int, c *counterCell) {
	e.settle(l, settleDeadLetter, 0, reason, attempts, c)
}

// undeadMsg is a message whose dead-lettering failed: the backend keeps
// it, to deliver it again, and its next delivery is dead-lettered with
// the reason and attempts it was being dead-lettered with, not run.
type undeadMsg struct {
	reason   string
	attempts int
	// delivered is the delivery that failed to be dead-lettered (its
	// Lease.Attempt): only a later one of the same ID is this message's.
	delivered int
}

// maxUndead bounds the messages a consumer remembers as failed to be
// dead-lettered: beyond it, one is forgotten, and dead-lettered on its
// next delivery once it is over MaxAttempts, with that as its reason.
const maxUndead = 1024

// rememberUndead records u, the message id whose dead-lettering failed.
// A message without an ID (one another client published to a natsjs
// stream without Nats-Msg-Id) cannot be told from another without one,
// which would be dead-lettered for its reason: nothing is recorded of
// it, and it is handled again when it comes back.
func (e *engine[T]) rememberUndead(id string, u undeadMsg) {
	if id == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.undead == nil {
		e.undead = make(map[string]undeadMsg)
	}
	if _, ok := e.undead[id]; !ok && len(e.undead) >= maxUndead {
		for old := range e.undead {
			delete(e.undead, old)
			break
		}
	}
	e.undead[id] = u
	e.nundead.Store(int64(len(e.undead)))
}

// takeUndead returns, and forgets, what rememberUndead recorded of the
// message id, when attempt is a later delivery than the one that failed
// to be dead-lettered. A delivery no later than that one is of another
// message with the ID, published again or redriven (its deliveries
// counted afresh): the one that failed was settled by another consumer,
// so what was recorded of it is forgotten, not held against this one.
func (e *engine[T]) takeUndead(id string, attempt int) (u undeadMsg, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u, ok = e.undead[id]; !ok {
		return undeadMsg{}, false
	}
	delete(e.undead, id)
	e.nundead.Store(int64(len(e.undead)))
	if attempt <= u.delivered {
		return undeadMsg{}, false
	}
	return u, true
}

// handle runs the handler on l and settles it; with resumed, it makes
// the attempt resumed is of l, decoded already (see goexited). resume is
// handleMessage's.
func (e *engine[T]) handle(l Lease[T], resumed *Delivery[T], resume **Delivery[T], c *counterCell) {
	var (
		d   Delivery[T]
		err error
	)
	if resumed != nil {
		// An attempt made in place reads the message afresh, as a
		// delivery does (see handleMessage).
		d.Attempt = resumed.Attempt
	} else {
		d.Attempt = l.Attempt()
	}
	d.Message, err = e.decode(l, d.Attempt, c)
	if e.handleMessage(l, &d, err, resume, c) {
		c.addHandled()
		e.settle(l, settleAck, 0, "", 0, c)
	}
}

// decode returns l's message, decoded by l.Message (the backend's Codec).
// A panic there is logged as a hook's (see hookPanicked) and returned as
// the error decoding the message, which dead-letters it. Should decoding
// end the goroutine (runtime.Goexit), decode logs it and dead-letters l
// as a message it cannot decode, and the goroutine ends; the worker's own
// deferred check carries on its work in another. An error that panics
// when read (a typed nil whose Error reads its receiver) is the Codec's
// panic too: the dead letter's reason reads it, outside any recovery.
func (e *engine[T]) decode(l Lease[T], attempt int, c *counterCell) (m Message[T], err error) {
	returned, reading := false, false
	defer func() {
		if returned {
			return
		}
		if v := recover(); v != nil {
			e.hookPanicked("Codec", l.ID(), attempt, v)
			if reading {
				err = fmt.Errorf("Codec panicked: reading its error %T: %v", err, v)
			} else {
				err = fmt.Errorf("Codec panicked: %v", v)
			}
			return
		}
		e.hookExited("Codec", l.ID(), attempt)
		e.deadLetter(l, decodeFailed+"Codec called runtime.Goexit", attempt, c)
	}()
	m, err = l.Message()
	if err != nil {
		reading = true
		_ = err.Error()
	}
	returned = true
	return m, err
}

// decodeFailed begins the reason of a message dead-lettered because it
// could not be decoded.
const decodeFailed = "kanban: cannot decode payload: "

// handleMessage is handle once the delivery d is read from l: err is the
// error decoding it. d is passed by reference, not copied on each call on
// the way to the handler; it may be the lease's own (Serve's shared
// workers, which never retry in place, so never write it). It settles l
// unless the handler succeeded: then it returns true, and the caller
// acknowledges l, which is still counted in flight in c, and counts it as
// handled (Serve's shared workers acknowledge several at once).
//
// A handler that ends its goroutine with runtime.Goexit (t.FailNow in a
// test) never returns: handleMessage then logs it and settles l as failed
// with a *PanicError of no value, and the goroutine ends; the caller's
// own deferred check carries on its work in another. A keyed message
// with PerKey is not settled but tried again in place, as any failed
// one: once the back-off has passed, handleMessage sets *resume, unless
// resume is nil, to the delivery of the next attempt, which the caller
// makes in another goroutine before its key's next message.
func (e *engine[T]) handleMessage(l Lease[T], d *Delivery[T], err error, resume **Delivery[T], c *counterCell) (succeeded bool) {
	attempt := d.Attempt
	if e.nundead.Load() > 0 {
		// Its dead-lettering failed, and the backend delivers it again:
		// dead-lettered now, for the reason it was then.
		if u, ok := e.takeUndead(l.ID(), attempt); ok {
			e.deadLetter(l, u.reason, max(u.attempts, attempt), c)
			return false
		}
	}
	if err != nil {
		e.deadLetter(l, decodeFailed+err.Error(), attempt, c)
		return false
	}
	if attempt > e.o.MaxAttempts {
		e.deadLetter(l, "kanban: delivered "+strconv.Itoa(attempt)+" times, more than MaxAttempts "+strconv.Itoa(e.o.MaxAttempts), attempt, c)
		return false
	}
	var x exit
	defer func() {
		// A settlement that ended the goroutine has settled l already.
		if !x.returned && !x.settling {
			e.goexited(l, d, &x, resume, c)
		}
	}()
	ctx := e.hctx
	if e.rt.Propagator != nil && len(d.Headers) > 0 {
		ctx = e.extract(ctx, d, &x)
	}
	keyed := e.o.PerKey && d.Key != ""
	for first := attempt; ; {
		if attempt != first {
			// An attempt in place: d is handle's own then (a queue's own
			// is never retried in place), and a store just before the
			// handler's copy of d would stall it. The message is decoded
			// afresh, as for a delivery, so that what the attempt before
			// wrote into its payload's maps and slices is not read. A
			// decode that ends the goroutine dead-letters l (see decode).
			x.settling = true
			m, err := e.decode(l, attempt, c)
			if err != nil {
				e.deadLetter(l, decodeFailed+err.Error(), attempt, c)
				x.returned = true
				return false
			}
			x.settling = false
			d.Message, d.Attempt = m, attempt
		}
		if attempt > 1 {
			c.addRedelivered()
		}
		var err error
		if e.rt.Tracer == nil && e.o.Observer == nil {
			err = e.call(ctx, d)
		} else {
			err = e.callObserved(ctx, l, d, &x)
		}
		if err == nil {
			x.returned = true
			return true
		}
		if !e.failed(l, d, err, attempt, keyed, &x, c) {
			x.returned = true
			return false
		}
		attempt++
	}
}

// exit is what handleMessage's deferred check learns of a goroutine that
// ended during its attempts.
type exit struct {
	returned  bool // handleMessage returned: the goroutine did not end
	inBackoff bool // it ended in Backoff.Delay
	settling  bool // it ended in settle, which logged it (see settle)
	// hook names the hook running (Propagator, Tracer, Observer): the
	// goroutine ended in it, not in the handler.
	hook string
	// With an Observer or a Tracer, how the handler's attempt ended:
	// ran, with err, or exited, by runtime.Goexit. Neither: it did not
	// start.
	ran, exited bool
	err         error
}

// extract returns ctx with what the Propagator extracts from the headers
// of d. A Propagator that panics is logged (see hookPanicked), and the
// handler gets ctx.
func (e *engine[T]) extract(ctx context.Context, d *Delivery[T], x *exit) (hctx context.Context) {
	x.hook = "Propagator" // until Extract returns or panics
	defer func() {
		if v := recover(); v != nil {
			e.hookPanicked("Propagator", d.ID, d.Attempt, v)
			hctx = ctx
			x.hook = ""
		}
	}()
	hctx = e.rt.Propagator.Extract(ctx, d.Headers)
	x.hook = ""
	return hctx
}

// failed settles l after attempt number attempt of d failed with err:
// it releases l when the drain deadline cancelled the handler (not its
// fault: the attempt is made again, under its number), dead-letters it
// when err is Permanent or the attempts are used up, and otherwise
// retries it after the back-off. With inPlace it waits
// the back-off holding l instead (see PerKey), and returns true unless
// the drain started meanwhile: the caller tries again.
func (e *engine[T]) failed(l Lease[T], d *Delivery[T], err error, attempt int, inPlace bool, x *exit, c *counterCell) (again bool) {
	switch {
	case e.hctx.Err() != nil:
		// The attempts made in place before this one count; this one,
		// cut short, is made again (a Release does not count one).
		if a, ok := l.(attemptCounter); ok {
			a.setAttempt(attempt)
		}
		x.settling = true
		e.settle(l, settleRelease, 0, "", 0, c)
		return false
	case IsPermanent(err) || attempt >= e.o.MaxAttempts:
		x.settling = true
		e.deadLetter(l, err.Error(), attempt, c)
		return false
	}
	delay := e.delay(d.ID, attempt, x)
	c.addRetried()
	if inPlace {
		again, rest := e.waitInPlace(delay)
		if again {
			return true
		}
		// The drain started during the wait: the backend waits only the
		// rest of the back-off, which counts from the failure.
		delay = rest
	}
	if a, ok := l.(attemptCounter); ok {
		a.setAttempt(attempt) // the attempts made in place count
	}
	x.settling = true
	e.settle(l, settleRetry, delay, "", 0, c)
	return false
}

// delay returns the Backoff's delay after attempt number attempt of the
// message id failed. A Backoff that panics is logged as a handler's panic
// is, and the message waits what the default, Exponential{}, would.
func (e *engine[T]) delay(id string, attempt int, x *exit) (delay time.Duration) {
	x.inBackoff = true // until Delay returns or panics
	defer func() {
		if v := recover(); v != nil {
			x.inBackoff = false
			e.hookPanicked("Backoff", id, attempt, v)
			delay = Exponential{}.Delay(attempt)
		}
	}()
	delay = e.o.Backoff.Delay(attempt)
	x.inBackoff = false
	return delay
}

// goexited settles l after its goroutine ended in its attempt (see
// handleMessage). When the handler ended it, the attempt fails with a
// *PanicError. When a hook did, the message is settled as the handler's
// result says, once it has one; when the Backoff did, or a hook before
// the handler ran, it is retried after the default delay. A Backoff
// ending the goroutine again, while goexited settles a failed attempt,
// has the same retry.
//
// A keyed message with PerKey is retried in place, as when its handler
// returns an error, so that its key's order survives: goexited waits the
// back-off, as failed does, and then, unless the drain has started, sets
// *resume (when resume is not nil) for another goroutine to make the
// next attempt.
func (e *engine[T]) goexited(l Lease[T], d *Delivery[T], x *exit, resume **Delivery[T], c *counterCell) {
	inPlace := resume != nil && e.o.PerKey && d.Key != ""
	if x.inBackoff {
		e.hookExited("Backoff", d.ID, d.Attempt)
		e.retryDefault(l, d, inPlace, resume, c)
		return
	}
	defer func() {
		if x.inBackoff {
			e.hookExited("Backoff", d.ID, d.Attempt)
			e.retryDefault(l, d, inPlace, resume, c)
		}
	}()
	if x.hook != "" {
		e.hookExited(x.hook, d.ID, d.Attempt)
		switch {
		case x.ran && x.err == nil:
			c.addHandled()
			e.settle(l, settleAck, 0, "", 0, c)
			return
		case x.ran:
			if e.failed(l, d, x.err, d.Attempt, inPlace, x, c) {
				resumeAt(resume, d, d.Attempt+1)
			}
			return
		case !x.exited:
			e.retryDefault(l, d, inPlace, resume, c)
			return
		}
		// The handler ended the goroutine first: the hook heard of it.
	}
	p := &PanicError{Stack: debug.Stack()}
	e.o.Logger.Error("kanban: handler called runtime.Goexit", "id", d.ID, "attempt", d.Attempt, "err", p, "stack", string(p.Stack))
	if e.failed(l, d, p, d.Attempt, inPlace, x, c) {
		resumeAt(resume, d, d.Attempt+1)
	}
}

// resumeAt sets *resume to d as attempt number attempt: the attempt that
// the worker's next goroutine makes in place (see goexited).
func resumeAt[T any](resume **Delivery[T], d *Delivery[T], attempt int) {
	next := *d
	next.Attempt = attempt
	*resume = &next
}

// retryDefault retries l after attempt number d.Attempt, which a hook's
// runtime.Goexit cut short, after the delay of the default back-off. With
// inPlace it waits the delay holding l, as failed does, and sets *resume
// to the next attempt unless the drain started meanwhile.
func (e *engine[T]) retryDefault(l Lease[T], d *Delivery[T], inPlace bool, resume **Delivery[T], c *counterCell) {
	delay := Exponential{}.Delay(d.Attempt)
	c.addRetried()
	if inPlace {
		again, rest := e.waitInPlace(delay)
		if again {
			resumeAt(resume, d, d.Attempt+1)
			return
		}
		delay = rest
	}
	if a, ok := l.(attemptCounter); ok {
		a.setAttempt(d.Attempt)
	}
	e.settle(l, settleRetry, delay, "", 0, c)
}

// hookExited logs that the hook named hook ended the goroutine with
// runtime.Goexit during attempt number attempt of the message id.
func (e *engine[T]) hookExited(hook, id string, attempt int) {
	e.o.Logger.Error("kanban: "+hook+" called runtime.Goexit", "id", id, "attempt", attempt, "stack", string(debug.Stack()))
}

// hookPanicked logs the panic v of the hook named hook (Backoff,
// Observer, Tracer) during attempt number attempt of the message id, as
// call logs a handler's. The consumer goes on.
func (e *engine[T]) hookPanicked(hook, id string, attempt int, v any) {
	e.o.Logger.Error("kanban: "+hook+" panicked", "id", id, "attempt", attempt, "panic", v, "stack", string(debug.Stack()))
}

// attemptCounter is a Lease whose queue can be told how many attempts its
// message has had, counting those made in place (see PerKey): the next
// delivery counts on from there.
type attemptCounter interface{ setAttempt(n int) }

// waitInPlace sleeps delay holding the key, so a keyed message keeps its
// place. It gives up (again false) when the drain starts, so that no
// attempt starts after it, and returns the part of delay still to wait.
func (e *engine[T]) waitInPlace(delay time.Duration) (again bool, rest time.Duration) {
	start := time.Now()
	t := time.NewTimer(delay) // at once for a delay of 0 or less
	defer t.Stop()
	select {
	case <-t.C:
		return !e.stopped.Load(), 0
	case <-e.stopping:
		// Compared, not subtracted: a delay near the most negative
		// Duration, less the time waited, would wrap round to centuries.
		if waited := time.Since(start); waited < delay {
			return false, delay - waited
		}
		return false, 0
	}
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// callObserved is call with the attempt's span and its duration
// observed. A Tracer or Observer that panics is logged (see hookPanicked)
// and changes nothing else: the attempt's result is the handler's. x
// tells handleMessage's deferred check which of them ended the goroutine,
// if one did, and how the handler's attempt went.
func (e *engine[T]) callObserved(ctx context.Context, l Lease[T], d *Delivery[T], x *exit) (err error) {
	end := endNothing
	x.ran, x.exited = false, false // an attempt in place starts afresh
	if e.rt.Tracer != nil {
		x.hook = "Tracer"
		ctx, end = e.startSpan(ctx, l, d)
		x.hook = ""
	}
	var start time.Time
	if e.o.Observer != nil {
		start = time.Now()
	}
	returned := false
	if e.rt.Tracer != nil {
		// Deferred first, so run last: the span ends even when the
		// Observer ends the goroutine, which stays the Observer's doing.
		defer func() {
			hook := x.hook
			x.hook = "Tracer"
			e.endSpan(d, end, err)
			x.hook = hook
		}()
	}
	defer func() {
		if !returned {
			// The handler ended the goroutine with runtime.Goexit: the
			// observer and the span hear of it as of a panic.
			err = &PanicError{}
			x.exited = true
		} else {
			x.ran, x.err = true, err
		}
		if e.o.Observer != nil {
			x.hook = "Observer"
			e.observe(d, time.Since(start), err)
			x.hook = ""
		}
	}()
	err = e.call(ctx, d)
	returned = true
	return err
}

// startSpan starts the span of the attempt of d, the delivery of l.
func (e *engine[T]) startSpan(ctx context.Context, l Lease[T], d *Delivery[T]) (sctx context.Context, end func(error)) {
	defer func() {
		if v := recover(); v != nil {
			e.hookPanicked("Tracer", d.ID, d.Attempt, v)
			sctx, end = ctx, endNothing
		}
	}()
	return e.rt.Tracer.Start(ctx, Operation{Type: OpProcess, System: e.rt.System, Queue: e.rt.Queue,
		Consumer: e.rt.Consumer, MessageID: d.ID, Attempt: d.Attempt, BodySize: bodySize(l)})
}

// bodySize returns the size of the body of l's message, if l tells it (a
// BodySizer), or 0.
func bodySize[T any](l Lease[T]) int {
	if h, ok := l.(*heldLease[T]); ok {
		l = h.Lease
	}
	if s, ok := l.(BodySizer); ok {
		return max(s.BodySize(), 0)
	}
	return 0
}

// endSpan ends the span of the attempt of d with its error.
func (e *engine[T]) endSpan(d *Delivery[T], end func(error), err error) {
	defer func() {
		if v := recover(); v != nil {
			e.hookPanicked("Tracer", d.ID, d.Attempt, v)
		}
	}()
	end(err)
}

// observe tells the Observer how the attempt of d went.
func (e *engine[T]) observe(d *Delivery[T], took time.Duration, err error) {
	defer func() {
		if v := recover(); v != nil {
			e.hookPanicked("Observer", d.ID, d.Attempt, v)
		}
	}()
	e.o.Observer.ObserveHandler(took, err)
}

// call runs the handler. A panic is recovered into a *PanicError, which
// is logged with its stack and then settles the message as any handler
// error does; so is an error that panics when read (see readable).
func (e *engine[T]) call(ctx context.Context, d *Delivery[T]) (err error) {
	defer func() {
		if v := recover(); v != nil {
			// A PanicError unwraps to an error it holds, which may be
			// one that panics when read.
			err = e.readable(d, e.panicked(d, v))
		}
	}()
	if d.Headers != nil {
		// The handler's own copy, empty or not: what it writes must not reach the
		// stored message, which a retry or a dead letter reads, nor the
		// next attempt made in place.
		hd := *d
		hd.Headers = d.Headers.Clone()
		err = e.h(ctx, hd)
	} else {
		err = e.h(ctx, *d)
	}
	if err != nil {
		err = e.readable(d, err)
	}
	return err
}

// readable returns err, the handler's, or a *PanicError when reading it
// panics: a typed nil whose Error or Unwrap reads its receiver. The
// engine reads a handler's error to settle its message (whether it is
// Permanent, its text for a dead letter), outside the handler's
// recovery, where a panic would end the process.
func (e *engine[T]) readable(d *Delivery[T], err error) (out error) {
	defer func() {
		if v := recover(); v != nil {
			out = e.panicked(d, fmt.Sprintf("reading its error %T: %v", err, v))
		}
	}()
	_ = err.Error()
	IsPermanent(err)
	return err
}

// panicked logs the handler's panic v with its stack and returns it as a
// *PanicError.
func (e *engine[T]) panicked(d *Delivery[T], v any) *PanicError {
	p := &PanicError{Value: v, Stack: debug.Stack()}
	e.o.Logger.Error("kanban: handler panicked", "id", d.ID, "attempt", d.Attempt, "err", p, "stack", string(p.Stack))
	return p
}

// heartbeat extends each lease held an interval after it was pulled, and
// an interval after each extension, until stop closes; then it closes
// done. A lease due within a quarter interval of another is extended
// with it, so that the leases pulled in a burst share a wake-up. Should
// an Extend end its goroutine (runtime.Goexit), it goes on in another.
func (e *engine[T]) heartbeat(iv time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	stopped := false
	defer func() {
		if !stopped {
			go e.heartbeat(iv, stop, done)
			return
		}
		close(done)
	}()
	timer := time.NewTimer(e.nextBeat(iv))
	defer timer.Stop()
	for {
		select {
		case <-stop:
			stopped = true
			return
		case <-timer.C:
		}
		now := time.Now()
		var due []Lease[T]
		late := false // a lease is due: those nearly due go with it
		e.mu.Lock()
		for l, last := range e.held {
			if held := now.Sub(last); held >= iv-iv/4 {
				due = append(due, l)
				late = late || held >= iv
			}
		}
		e.mu.Unlock()
		if !late {
			due = nil
		}
		for _, l := range due {
			e.extend(l)
		}
		timer.Reset(e.nextBeat(iv))
	}
}

// nextBeat returns how long the heartbeat may wait: until the lease held
// longest since its pull or last extension is due, or an interval when
// none is held. A lease pulled meanwhile is due after either, as is one
// extended since (only the heartbeat extends).
func (e *engine[T]) nextBeat(iv time.Duration) time.Duration {
	now := time.Now()
	wait := iv
	e.mu.Lock()
	for _, last := range e.held {
		wait = min(wait, last.Add(iv).Sub(now))
	}
	e.mu.Unlock()
	return max(wait, 0)
}

// errSettling is the cause of the cancellation of an extension whose
// lease is being settled.
var errSettling = errors.New("kanban: the lease is being settled")

// extend extends l, unless it has been settled since the heartbeat found
// it due; a settlement of l meanwhile cancels the extension's ctx and
// waits for it. An Extend that fails is logged, unless a settlement
// cancelled it; so is one that panics, or ends the goroutine
// (runtime.Goexit).
func (e *engine[T]) extend(l Lease[T]) {
	e.mu.Lock()
	if _, ok := e.held[l]; !ok {
		e.mu.Unlock()
		return
	}
	// Due again an interval from now, whether this one succeeds or not:
	// a backend that fails to extend (its connection down) is not asked
	// again and again meanwhile.
	e.held[l] = time.Now()
	ctx, cancel := context.WithCancelCause(e.hctx)
	e.extending, e.stopExtending = l, cancel
	e.mu.Unlock()
	id := l.ID() // once extended, l may be settled and reused
	returned := false
	defer func() {
		e.mu.Lock()
		e.extending, e.stopExtending = nil, nil
		e.mu.Unlock()
		cancel(nil)
		e.extended.Broadcast()
		if returned {
			return
		}
		if v := recover(); v != nil {
			e.o.Logger.Error("kanban: extending a lease panicked", "id", id, "panic", v, "stack", string(debug.Stack()))
			return
		}
		e.o.Logger.Error("kanban: extending a lease called runtime.Goexit", "id", id, "stack", string(debug.Stack()))
	}()
	err := l.Extend(ctx)
	returned = true
	if err != nil && context.Cause(ctx) != errSettling {
		e.o.Logger.Warn("kanban: extending a lease failed", "id", id, "err", err)
	}
}

// drain stops the consumer: it hands back the leases dispatched and not
// taken by a worker and those waiting in the lanes, in the order they
// were pulled, then back (pulled after them, see pullLoop), and waits for
// the running handlers. A worker takes no lease once the drain has begun.
func (e *engine[T]) drain(back []Lease[T]) error {
	e.mu.Lock()
	e.stopped.Store(true)
	close(e.stopping)
	if e.onStop != nil {
		e.onStop()
	}
	// The leases dispatched that no worker has taken yet start no more:
	// they go back first, with the leases waiting in the lanes behind
	// them, and back's after them, pulled last.
	var unstarted []pulled[T]
	for e.ready.len() > 0 {
		p := e.ready.popFront()
		unstarted = append(unstarted, p)
		if e.releaseInTurn && e.o.PerKey {
			// Its lane's leases, held for it to be settled (see
			// handled), go back with it.
			k := p.l.Key()
			if ln, ok := e.lanes[k]; ok {
				unstarted = append(unstarted, ln.waiting...)
				delete(e.lanes, k)
			}
		}
	}
	if !e.releaseInTurn {
		for _, ln := range e.lanes {
			unstarted = append(unstarted, ln.waiting...)
			ln.waiting = nil
		}
	}
	// In the order they were pulled, across keys: the lanes come in the
	// map's order, and a lease waiting in a lane may have been pulled
	// before one no worker took.
	slices.SortFunc(unstarted, func(a, b pulled[T]) int { return cmp.Compare(a.seq, b.seq) })
	ls := leasesOf(unstarted)
	if e.releaseInTurn {
		// A key's messages waiting behind a running one go back once it
		// is settled (see handled): released before it, they would be
		// delivered again before it, when the drain deadline releases it.
		for _, l := range back {
			if ln, busy := e.lanes[l.Key()]; busy && e.o.PerKey {
				e.seq++
				ln.waiting = append(ln.waiting, pulled[T]{l, e.seq})
				if e.held != nil {
					e.held[l] = time.Now()
				}
				continue
			}
			ls = append(ls, l)
		}
	} else {
		ls = append(ls, back...)
	}
	e.mu.Unlock()
	e.handBack(ls)
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	timeout := time.NewTimer(e.o.DrainTimeout)
	defer timeout.Stop()
	select {
	case <-done:
		return nil
	case <-timeout.C:
		// A deadline shorter than the workers take to end, once their
		// last message is settled, cuts no handler short: it is not
		// ErrDrainTimeout.
		running := e.inHand()
		e.cancelHandlers()
		<-done
		if !running {
			return nil
		}
		return ErrDrainTimeout
	}
}

// inHand reports whether a message this consumer took is still in a
// worker's hands, not settled: a lease the pull loop's workers hold, or a
// message a shared worker started (see serveShared). The messages taken
// and not started have been handed back by then.
func (e *engine[T]) inHand() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.free < e.o.WIP {
		return true
	}
	for c := range e.cells {
		if c.inFlight.Load() > 0 {
			return true
		}
	}
	return false
}

// newCell returns a counter cell for a shared worker, listed among the
// engine's; dropCell must follow.
func (e *engine[T]) newCell() *counterCell {
	c := e.rt.Counters.newCell()
	e.mu.Lock()
	if e.cells == nil {
		e.cells = make(map[*counterCell]struct{})
	}
	e.cells[c] = struct{}{}
	e.mu.Unlock()
	return c
}

// dropCell takes c, the cell of a shared worker that has stopped writing
// to it, off the engine's list and folds it into the Counters.
func (e *engine[T]) dropCell(c *counterCell) {
	e.mu.Lock()
	delete(e.cells, c)
	e.mu.Unlock()
	e.rt.Counters.dropCell(c)
}
