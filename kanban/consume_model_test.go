package kanban

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"
)

// The model of this file is of the consumer engine (Serve) above a Memory
// queue; memory_model_test.go models the queue's own operations. Handlers
// follow a random script, call by call; consumers are stopped at random
// times and started again until every message is settled. The model
// checks, as the calls happen, WIP and per-key exclusion; and once a
// consumer returns, what its handlers saw against what the engine
// promises of each call's result (acked, retried after its back-off as
// the next attempt, handed back under the same attempt when the drain
// deadline cut it short, dead-lettered), per-key order, the drain's
// timing and result, the leases' extensions, the Observer, Stats and
// Backlog.

// What a handler does on one call of an engine model's script.
const (
	engOK        = iota // succeed after the step's time, or fail with ctx's error when it ends first
	engFail             // fail with a retryable error after the step's time, or ctx's error
	engPermanent        // fail with a Permanent error likewise
	engPanic            // panic after the step's time, or fail with ctx's error
	engBlock            // block until ctx ends, then fail with its error
	engStubborn         // succeed after the step's time plus a lease interval, whatever ctx says
	engGoexit           // call runtime.Goexit after the step's time, or fail with ctx's error
	engKinds
)

type engStep struct {
	kind int
	took time.Duration
}

type engMsg struct {
	inst  int
	id    string
	key   string
	at    time.Duration // published this long after the start
	steps []engStep
}

type engRun struct {
	stopAt time.Duration // after the run started, on the grid (see grid)
	drain  time.Duration // DrainTimeout, on the half grid
}

type engCase struct {
	wip, maxAttempts int
	perKey, observed bool
	heartbeat        time.Duration // 0: Memory.Consume; else a Source with leases to extend
	codec            bool
	backoff          []time.Duration
	msgs             []engMsg
	// rounds are the consumers stopped part way: those of a round run
	// at once, on the same queue.
	rounds [][]engRun
}

// engCall is one handler call as the handler saw it.
type engCall struct {
	inst, attempt int
	run           int // the consumer that made it
	seq           int // the calls' order, among those of the same instant too
	start, end    time.Time
	err           error // what the call returned, or its PanicError
	ctxDone       bool  // its ctx had ended when it returned
	ended         bool
}

// engLease records what the engine did to one lease of the heartbeat
// source.
type engLease struct {
	src     *engSource
	id      string
	last    time.Time // pulled, or last extended
	settled string
}

type engineModel struct {
	c     engCase
	q     *Memory[int]
	epoch time.Time

	mu       sync.Mutex
	calls    []*engCall
	byInst   map[int][]*engCall
	running  map[int]int    // handlers running, by consumer
	keys     map[string]int // handlers running, by consumer and key
	observed []string
	failure  string
	leases   []*engLease
	ended    QueueStats // what the calls ended so far say of Handled, Retried, DeadLettered
	nruns    int        // consumers started
	together bool       // two consumers ran at once
	// beats says, for each instant leases were extended, whether one of
	// them was due then (held for an interval).
	beats map[time.Time]bool
}

func (m *engineModel) fail(format string, args ...any) {
	if m.failure == "" {
		m.failure = fmt.Sprintf("at %v: ", time.Since(m.epoch)) + fmt.Sprintf(format, args...)
	}
}

func (m *engineModel) delay(attempt int) time.Duration {
	return m.c.backoff[(attempt-1)%len(m.c.backoff)]
}

// handler returns the handler of consumer number run.
func (m *engineModel) handler(run int) Handler[int] {
	return func(ctx context.Context, d Delivery[int]) error { return m.handle(ctx, run, d) }
}

func (m *engineModel) handle(ctx context.Context, run int, d Delivery[int]) error {
	m.mu.Lock()
	msg := m.c.msgs[d.Payload]
	c := &engCall{inst: d.Payload, attempt: d.Attempt, run: run, seq: len(m.calls), start: time.Now()}
	key := strconv.Itoa(run) + "/" + d.Key
	step := engStep{kind: engOK}
	if n := len(m.byInst[c.inst]); n < len(msg.steps) {
		step = msg.steps[n]
	}
	m.calls = append(m.calls, c)
	m.byInst[c.inst] = append(m.byInst[c.inst], c)
	name := strconv.Itoa(c.inst) + "." + strconv.Itoa(len(m.byInst[c.inst]))
	if m.running[run]++; m.running[run] > m.c.wip {
		m.fail("%d handlers at once, WIP %d", m.running[run], m.c.wip)
	}
	if d.ID != msg.id || d.Key != msg.key {
		m.fail("message %d delivered as %s/%s", c.inst, d.ID, d.Key)
	}
	for _, o := range m.byInst[c.inst][:len(m.byInst[c.inst])-1] {
		if !o.ended {
			m.fail("message %d handled twice at once", c.inst)
		}
	}
	if m.c.perKey && d.Key != "" {
		if m.keys[key]++; m.keys[key] > 1 {
			m.fail("two handlers of key %q at once", d.Key)
		}
	}
	m.checkStats()
	m.mu.Unlock()

	var err error
	switch step.kind {
	case engStubborn:
		time.Sleep(step.took + max(m.c.heartbeat, 100*time.Millisecond))
	case engBlock:
		<-ctx.Done()
		err = ctx.Err()
	default:
		t := time.NewTimer(step.took)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			err = ctx.Err()
		}
	}
	if err == nil {
		switch step.kind {
		case engFail:
			err = errors.New("fail " + name)
		case engPermanent:
			err = Permanent(errors.New("permanent " + name))
		case engPanic:
			err = &PanicError{Value: "boom " + name}
		case engGoexit:
			err = &PanicError{}
		}
	}

	m.mu.Lock()
	c.end, c.err, c.ctxDone, c.ended = time.Now(), err, ctx.Err() != nil, true
	m.running[run]--
	if m.c.perKey && d.Key != "" {
		m.keys[key]--
	}
	switch {
	case err == nil:
		m.ended.Handled++
	case c.ctxDone:
	case IsPermanent(err) || c.attempt >= m.c.maxAttempts:
		m.ended.DeadLettered++
	default:
		m.ended.Retried++
	}
	m.checkStats()
	m.mu.Unlock()
	if p, ok := err.(*PanicError); ok {
		if p.Value == nil {
			runtime.Goexit()
		}
		panic(p.Value)
	}
	return err
}

// checkStats checks, with m.mu held, the queue's counts as handlers
// start and end: no more handled, retried or dead-lettered than the calls
// that have ended so far, and at least the running handlers in flight.
func (m *engineModel) checkStats() {
	s := m.q.Stats()
	running := 0
	for _, n := range m.running {
		running += n
	}
	if s.Handled > m.ended.Handled || s.Retried > m.ended.Retried || s.DeadLettered > m.ended.DeadLettered || s.InFlight < int64(running) {
		m.fail("stats %+v with %d handlers running, calls ended %+v", s, running, m.ended)
	}
}

func (m *engineModel) observe(d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.observed = append(m.observed, fmt.Sprintf("%v %v", d, err))
}

// engSource is a Memory queue's source with leases to extend: the engine
// runs its pull loop with a heartbeat on it.
type engSource struct {
	inner *memSource[int]
	m     *engineModel
	held  int // leases pulled and not settled, under m.mu
}

func (s *engSource) HeartbeatInterval() time.Duration { return s.m.c.heartbeat }

func (s *engSource) Pull(ctx context.Context, n int) ([]Lease[int], error) {
	ls, err := s.inner.Pull(ctx, n)
	out := make([]Lease[int], len(ls))
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.held += len(ls); n > s.m.c.wip || s.held > s.m.c.wip {
		s.m.fail("a Pull for %d leases made %d held, WIP %d", n, s.held, s.m.c.wip)
	}
	for i, l := range ls {
		r := &engLease{id: l.ID(), last: time.Now(), src: s}
		s.m.leases = append(s.m.leases, r)
		out[i] = &engModelLease{Lease: l, m: s.m, r: r}
	}
	return out, err
}

type engModelLease struct {
	Lease[int]
	m *engineModel
	r *engLease
}

func (l *engModelLease) settle(how string) {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.r.settled != "" {
		l.m.fail("lease of %s settled by %s after %s", l.r.id, how, l.r.settled)
	}
	held := time.Since(l.r.last)
	if held > l.m.c.heartbeat {
		l.m.fail("lease of %s settled (%s) %v after its pull or extension, interval %v", l.r.id, how, held, l.m.c.heartbeat)
	}
	if held == l.m.c.heartbeat {
		// Due now, and settled before the heartbeat came to extend it:
		// the leases nearly due that it finds with this one are
		// extended with it all the same.
		l.m.beats[time.Now()] = true
	}
	l.r.settled = how
	l.r.src.held--
}

func (l *engModelLease) Ack(ctx context.Context) error {
	l.settle("ack")
	return l.Lease.Ack(ctx)
}

func (l *engModelLease) Retry(ctx context.Context, delay time.Duration) error {
	l.settle("retry")
	return l.Lease.Retry(ctx, delay)
}

func (l *engModelLease) Release(ctx context.Context) error {
	l.settle("release")
	return l.Lease.Release(ctx)
}

func (l *engModelLease) DeadLetter(ctx context.Context, reason string, attempts int) error {
	l.settle("dead letter")
	return l.Lease.DeadLetter(ctx, reason, attempts)
}

func (l *engModelLease) Extend(ctx context.Context) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	iv := l.m.c.heartbeat
	if l.r.settled != "" {
		l.m.fail("lease of %s extended after its %s", l.r.id, l.r.settled)
	}
	held := time.Since(l.r.last)
	if held < iv-iv/4 || held > iv {
		l.m.fail("lease of %s extended %v after its pull or extension, interval %v", l.r.id, held, iv)
	}
	l.r.last = time.Now()
	// Extended early only together with a lease that is due.
	l.m.beats[l.r.last] = l.m.beats[l.r.last] || held == iv
	return nil
}

func (l *engModelLease) setAttempt(n int) { l.Lease.(attemptCounter).setAttempt(n) }

// TestConsumeMatchesModel runs the engine model (see the top of the file)
// on random messages, scripts, options and stops.
func TestConsumeMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := engCase{
			wip:         rapid.IntRange(1, 4).Draw(rt, "wip"),
			maxAttempts: rapid.IntRange(1, 4).Draw(rt, "maxAttempts"),
			perKey:      rapid.Bool().Draw(rt, "perKey"),
			observed:    rapid.Bool().Draw(rt, "observed"),
			heartbeat:   []time.Duration{0, 40 * time.Millisecond, 150 * time.Millisecond}[rapid.IntRange(0, 2).Draw(rt, "heartbeat")],
			codec:       rapid.Bool().Draw(rt, "codec"),
		}
		for range rapid.IntRange(1, 3).Draw(rt, "backoffs") {
			c.backoff = append(c.backoff, ms(rapid.IntRange(0, 200).Draw(rt, "backoff")))
		}
		at := 0
		for i := range rapid.IntRange(1, 10).Draw(rt, "messages") {
			at += rapid.IntRange(0, 60).Draw(rt, "gap")
			msg := engMsg{inst: i, id: "m" + strconv.Itoa(i), key: []string{"", "a", "b"}[rapid.IntRange(0, 2).Draw(rt, "key")], at: ms(at)}
			for range rapid.IntRange(0, 4).Draw(rt, "steps") {
				msg.steps = append(msg.steps, engStep{
					kind: rapid.IntRange(0, engKinds-1).Draw(rt, "kind"),
					took: ms(rapid.IntRange(0, 150).Draw(rt, "took")),
				})
			}
			c.msgs = append(c.msgs, msg)
		}
		for range rapid.IntRange(0, 3).Draw(rt, "rounds") {
			var round []engRun
			for range rapid.IntRange(1, 2).Draw(rt, "consumers") {
				round = append(round, engRun{
					stopAt: ms(rapid.IntRange(0, 400).Draw(rt, "stopAt")),
					drain:  ms(rapid.IntRange(0, 200).Draw(rt, "drain")),
				})
			}
			c.rounds = append(c.rounds, round)
		}
		if failure := runEngineModel(t, c); failure != "" {
			rt.Fatal(failure)
		}
	})
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// The times of events (publishes, handler steps, back-offs) are whole
// milliseconds after the start; the first consumer of a round stops a
// quarter of one after, the second an eighth, and drain deadlines come
// half a millisecond after the stop, so that none of them falls at the
// instant of an event, nor of what the other consumer's stop and
// deadline hand back.
var stopOffsets = [2]time.Duration{time.Millisecond / 4, time.Millisecond / 8}

const drainOffset = time.Millisecond / 2

func runEngineModel(t *testing.T, c engCase) (failure string) {
	synctest.Test(t, func(*testing.T) {
		var mo MemoryOptions
		if c.codec {
			mo.Codec = JSON{}
		}
		q, err := NewMemory[int](mo)
		if err != nil {
			failure = err.Error()
			return
		}
		m := &engineModel{c: c, q: q, epoch: time.Now(), byInst: map[int][]*engCall{},
			running: map[int]int{}, keys: map[string]int{}, beats: map[time.Time]bool{}}
		published := make(chan struct{})
		pctx, stopPublishing := context.WithCancel(context.Background())
		defer func() { stopPublishing(); <-published }()
		go func() {
			defer close(published)
			for _, msg := range c.msgs {
				if sleep(pctx, time.Until(m.epoch.Add(msg.at))); pctx.Err() != nil {
					return
				}
				if err := q.Publish(context.Background(), Message[int]{ID: msg.id, Key: msg.key, Payload: msg.inst}); err != nil {
					m.mu.Lock()
					m.fail("publish %s: %v", msg.id, err)
					m.mu.Unlock()
				}
			}
		}()
		for i := 0; i < len(c.rounds) || q.Len() > 0 || i == len(c.rounds); i++ {
			if i == len(c.rounds) {
				<-published
			}
			final := i >= len(c.rounds)
			// Until nothing is left, or a blocking handler holds it up.
			round := []engRun{{drain: ms(100)}}
			if !final {
				round = c.rounds[i]
			}
			if i > len(c.rounds)+2*len(c.msgs)*5 {
				failure = fmt.Sprintf("%d messages still held after %d consumers", q.Len(), i)
				return
			}
			if f := m.consume(round, final); f != "" {
				failure = fmt.Sprintf("round %d (%+v): %s\ncase %+v", i, round, f, c)
				return
			}
		}
		if f := m.check(); f != "" {
			failure = f
		}
	})
	return failure
}

// consume runs the consumers of a round, each until its stop; a final
// one until the queue is empty, or for a second.
func (m *engineModel) consume(round []engRun, final bool) string {
	// Start on a whole millisecond, as every event does.
	if off := time.Since(m.epoch) % time.Millisecond; off != 0 {
		time.Sleep(time.Millisecond - off)
	}
	// Stop on the grid: whole milliseconds after the start, and a quarter.
	grid := func(d time.Duration, i int) time.Time {
		t := time.Now().Add(d).Sub(m.epoch).Truncate(time.Millisecond) + time.Millisecond + stopOffsets[i]
		return m.epoch.Add(t)
	}
	type result struct {
		run            int
		stop, returned time.Time
		drain          time.Duration
		err            error
	}
	results := make([]result, len(round))
	var wg sync.WaitGroup
	for i, r := range round {
		m.nruns++
		res := &results[i]
		res.run = m.nruns
		res.stop = grid(r.stopAt, i)
		opts := ConsumeOptions{
			WIP: m.c.wip, PerKey: m.c.perKey, MaxAttempts: m.c.maxAttempts,
			Backoff:      BackoffFunc(m.delay),
			DrainTimeout: r.drain + drainOffset,
		}
		if m.c.observed {
			opts.Observer = HandlerObserverFunc(m.observe)
		}
		res.drain = opts.DrainTimeout
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				if m.c.heartbeat == 0 {
					done <- m.q.Consume(ctx, m.handler(res.run), opts)
					return
				}
				src := &engSource{inner: &memSource[int]{q: m.q}, m: m}
				done <- Serve(ctx, src, m.handler(res.run), opts, Runtime{Counters: &m.q.counters})
			}()
			if final {
				for limit := grid(time.Second, 0); m.q.Len() > 0 && time.Now().Before(limit); {
					time.Sleep(time.Millisecond)
				}
				res.stop = grid(0, 0)
			}
			time.Sleep(time.Until(res.stop))
			cancel()
			res.err = <-done
			res.returned = time.Now()
		})
	}
	wg.Wait()

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failure != "" {
		return m.failure
	}
	if len(round) > 1 {
		m.together = true
	}
	for _, res := range results {
		deadline := res.stop.Add(res.drain)
		lastEnd, cut := res.stop, false
		for _, c := range m.calls {
			if c.run != res.run {
				continue
			}
			if !c.ended {
				return fmt.Sprintf("the call of message %d at %v still runs", c.inst, c.start.Sub(m.epoch))
			}
			if !c.start.Before(res.stop) {
				return fmt.Sprintf("message %d started at %v, once its consumer stopped at %v", c.inst, c.start.Sub(m.epoch), res.stop.Sub(m.epoch))
			}
			if c.end.After(lastEnd) {
				lastEnd = c.end
			}
			cut = cut || !c.end.Before(deadline)
		}
		if !res.returned.Equal(lastEnd) {
			return fmt.Sprintf("Consume returned at %v, want %v (its last handler's end, or its stop)", res.returned.Sub(m.epoch), lastEnd.Sub(m.epoch))
		}
		if cut != errors.Is(res.err, ErrDrainTimeout) || (res.err != nil && !errors.Is(res.err, ErrDrainTimeout)) {
			return fmt.Sprintf("Consume returned %v; a handler ran past the drain deadline: %v", res.err, cut)
		}
	}
	if s := m.q.Stats(); s.InFlight != 0 {
		return fmt.Sprintf("%d in flight once Consume returned", s.InFlight)
	}
	for _, l := range m.leases {
		if l.settled == "" {
			return fmt.Sprintf("a lease of %s not settled once Consume returned", l.id)
		}
	}
	return ""
}

// check checks what the handlers saw against the engine's rules, once
// every message is settled.
func (m *engineModel) check() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var want QueueStats
	want.Published = int64(len(m.c.msgs))
	wantDead := map[string]string{}
	// retriedAcross: the message's retry was cut short by a drain, and
	// its next attempt made by a later consumer (see PerKey).
	retriedAcross := map[int]bool{}
	for _, msg := range m.c.msgs {
		calls := m.byInst[msg.inst]
		if len(calls) == 0 {
			return fmt.Sprintf("message %d never handled", msg.inst)
		}
		if calls[0].attempt != 1 {
			return fmt.Sprintf("message %d first handled as attempt %d", msg.inst, calls[0].attempt)
		}
		for j, c := range calls {
			last := j == len(calls)-1
			if c.attempt > 1 {
				want.Redelivered++
			}
			var next *engCall
			if !last {
				next = calls[j+1]
			}
			switch {
			case c.err == nil:
				want.Handled++
				if !last {
					return fmt.Sprintf("message %d handled again (attempt %d at %v) after it succeeded at %v",
						msg.inst, next.attempt, next.start.Sub(m.epoch), c.end.Sub(m.epoch))
				}
			case c.ctxDone:
				// Cut short by the drain deadline: handed back, and made
				// again under its number.
				if last {
					return fmt.Sprintf("message %d lost once the drain deadline cut its attempt %d short", msg.inst, c.attempt)
				}
				if next.attempt != c.attempt {
					return fmt.Sprintf("message %d cut short at attempt %d came back as attempt %d", msg.inst, c.attempt, next.attempt)
				}
			case IsPermanent(c.err) || c.attempt >= m.c.maxAttempts:
				want.DeadLettered++
				wantDead[msg.id] = fmt.Sprintf("%q after %d", c.err.Error(), c.attempt)
				if !last {
					return fmt.Sprintf("message %d handled again (attempt %d) after it was dead-lettered at attempt %d",
						msg.inst, next.attempt, c.attempt)
				}
			default:
				want.Retried++
				if last {
					return fmt.Sprintf("message %d lost after its attempt %d failed", msg.inst, c.attempt)
				}
				if next.attempt != c.attempt+1 {
					return fmt.Sprintf("message %d failed attempt %d, then came back as attempt %d", msg.inst, c.attempt, next.attempt)
				}
				due := c.end.Add(m.delay(c.attempt))
				if next.start.Before(due) {
					return fmt.Sprintf("message %d attempt %d at %v, before its back-off after %v ended at %v",
						msg.inst, next.attempt, next.start.Sub(m.epoch), c.end.Sub(m.epoch), due.Sub(m.epoch))
				}
				inPlace := m.c.perKey && msg.key != ""
				if inPlace && next.run == c.run && !next.start.Equal(due) {
					return fmt.Sprintf("message %d retried in place at %v, want %v", msg.inst, next.start.Sub(m.epoch), due.Sub(m.epoch))
				}
				if next.run != c.run {
					retriedAcross[msg.inst] = true
				}
			}
		}
	}
	want.InFlight = 0
	if s := m.q.Stats(); s != want {
		return fmt.Sprintf("stats %+v, want %+v", s, want)
	}
	if n := m.q.Len(); n != 0 {
		return fmt.Sprintf("Len %d once every message was settled", n)
	}
	if b, err := m.q.Backlog(context.Background()); err != nil || b.Depth != 0 || b.DeadLetters != int64(len(wantDead)) {
		return fmt.Sprintf("backlog %+v, %v; want depth 0, %d dead letters", b, err, len(wantDead))
	}
	dls, _ := m.q.DeadLetters(context.Background())
	gotDead := map[string]string{}
	for _, dl := range dls {
		if _, twice := gotDead[dl.ID]; twice {
			return fmt.Sprintf("message %s dead-lettered twice", dl.ID)
		}
		gotDead[dl.ID] = fmt.Sprintf("%q after %d", dl.Reason, dl.Attempts)
	}
	if fmt.Sprint(gotDead) != fmt.Sprint(wantDead) {
		return fmt.Sprintf("dead letters %v, want %v", gotDead, wantDead)
	}

	for at, due := range m.beats {
		if !due {
			return fmt.Sprintf("leases extended at %v, none of them due", at.Sub(m.epoch))
		}
	}

	if m.c.observed {
		var calls []string
		for _, c := range m.calls {
			err := c.err
			if p, ok := err.(*PanicError); ok {
				err = &PanicError{Value: p.Value}
			}
			calls = append(calls, fmt.Sprintf("%v %v", c.end.Sub(c.start), err))
		}
		slices.Sort(calls)
		slices.Sort(m.observed)
		if !slices.Equal(calls, m.observed) {
			return fmt.Sprintf("observed %q, want %q", m.observed, calls)
		}
	}

	// With PerKey, a key's messages are handled in the order they were
	// published: no attempt of one starts once a later one of its key has
	// started, unless a drain cut its retry short before that.
	if m.c.perKey && !m.together {
		for _, later := range m.c.msgs {
			if later.key == "" {
				continue
			}
			began := m.byInst[later.inst][0]
			for _, earlier := range m.c.msgs[:later.inst] {
				if earlier.key != later.key {
					continue
				}
				if _, ok := retriedAcross[earlier.inst]; ok {
					continue
				}
				for _, c := range m.byInst[earlier.inst] {
					if c.seq > began.seq {
						return fmt.Sprintf("key %s: message %d (attempt %d at %v) after message %d began at %v",
							later.key, earlier.inst, c.attempt, c.start.Sub(m.epoch), later.inst, began.start.Sub(m.epoch))
					}
				}
			}
		}
	}
	return ""
}
