package kanban_test

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

	"github.com/taipattern/taikit/kanban"
)

// What a handler does on one call, in a model test's script.
const (
	outOK = iota
	outFail
	outPermanent
	outPanic
	outPanicPermanent
	outGoexit // runtime.Goexit, as t.FailNow calls
)

// modelOutcome returns the reason a dead letter gets from a scripted
// call, and the error the call returns (or panics with).
func modelOutcome(out, call int) (reason string, err error) {
	switch out {
	case outFail:
		err = errors.New("fail " + strconv.Itoa(call))
	case outPermanent, outPanicPermanent:
		err = kanban.Permanent(errors.New("permanent " + strconv.Itoa(call)))
	case outPanic:
		err = errors.New("boom " + strconv.Itoa(call))
	}
	if out == outPanic || out == outPanicPermanent {
		return (&kanban.PanicError{Value: err}).Error(), err
	}
	if out == outGoexit {
		err = &kanban.PanicError{}
	}
	if err == nil {
		return "", nil
	}
	return err.Error(), err
}

type modelAction struct {
	op      int // see the switch in TestMemoryMatchesModel
	id, key string
	script  []int // for a publish: the handler's outcome call by call
	sleep   []time.Duration
	opts    kanban.ConsumeOptions
	delay   time.Duration // a consume's back-off; an advance's wait
	stopAt  time.Duration // an interrupted consume's stop
	// drain is an interrupted consume's DrainTimeout: 0 for the default,
	// which outlasts every handler; else half a millisecond off the
	// milliseconds every other event happens at, so that a handler never
	// ends as the deadline cancels it.
	drain    time.Duration
	headerOf string
}

// modelMsg is a published message as the model knows it: payload is its
// instance number, unique among the test's messages.
type modelMsg struct {
	inst, attempt, calls int
	id, key              string
	h                    kanban.Header
	script               []int
	sleep                []time.Duration
	at                   time.Time // stored (published or redriven)
}

type modelDead struct {
	m        *modelMsg
	reason   string
	attempts int
}

type modelCall struct {
	inst, attempt int
	id, key       string
	h             kanban.Header
	cancelled     bool // by the drain deadline: the attempt is made again
}

// TestMemoryMatchesModel drives a Memory queue and a model of it with the
// same random publishes, consumers (handlers that succeed, fail, fail
// permanently, panic or call runtime.Goexit, slowly, some stopped part way
// and started again), redrives, deletions and waits, on synctest's clock,
// and requires the same observable state after each step: the errors
// returned, Stats, Len, Backlog, the dead letters, and what the handlers
// saw, with WIP and per-key order held. A consumer stopped part way may
// have its running handlers cancelled by the drain deadline: their
// attempts are made again, under the same number.
func TestMemoryMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		capacity := rapid.IntRange(1, 12).Draw(rt, "capacity")
		dlLimit := rapid.IntRange(1, 6).Draw(rt, "deadLetterLimit")
		window := []time.Duration{-1, time.Second, 3 * time.Second}[rapid.IntRange(0, 2).Draw(rt, "window")]
		var actions []modelAction
		for range rapid.IntRange(1, 40).Draw(rt, "steps") {
			a := modelAction{op: rapid.IntRange(0, 9).Draw(rt, "op")}
			a.id = "m" + strconv.Itoa(rapid.IntRange(0, 8).Draw(rt, "id"))
			a.key = []string{"", "a", "b"}[rapid.IntRange(0, 2).Draw(rt, "key")]
			switch a.op {
			case 0, 1, 2:
				a.script = rapid.SliceOfN(rapid.IntRange(outOK, outGoexit), 0, 5).Draw(rt, "script")
				for range 6 {
					a.sleep = append(a.sleep, time.Duration(rapid.IntRange(0, 300).Draw(rt, "sleep"))*time.Millisecond)
				}
				a.headerOf = rapid.StringMatching(`[a-z]{0,3}`).Draw(rt, "header")
			case 3, 4:
				a.opts = kanban.ConsumeOptions{
					WIP:         rapid.IntRange(1, 4).Draw(rt, "wip"),
					PerKey:      rapid.Bool().Draw(rt, "perKey"),
					MaxAttempts: rapid.IntRange(1, 4).Draw(rt, "maxAttempts"),
				}
				a.delay = time.Duration(rapid.IntRange(0, 500).Draw(rt, "backoff")) * time.Millisecond
				a.stopAt = time.Duration(rapid.IntRange(0, 700).Draw(rt, "stopAt")) * time.Millisecond
				if a.op == 4 && rapid.Bool().Draw(rt, "drainTimesOut") {
					a.drain = time.Duration(rapid.IntRange(0, 300).Draw(rt, "drain"))*time.Millisecond + 500*time.Microsecond
				}
			case 9:
				a.delay = time.Duration(rapid.IntRange(0, 4000).Draw(rt, "advance")) * time.Millisecond
			}
			actions = append(actions, a)
		}
		if failure := runMemoryModel(t, capacity, dlLimit, window, actions); failure != "" {
			rt.Fatal(failure)
		}
	})
}

func runMemoryModel(t *testing.T, capacity, dlLimit int, window time.Duration, actions []modelAction) (failure string) {
	synctest.Test(t, func(*testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: capacity, DeadLetterLimit: dlLimit, DedupWindow: window})
		if err != nil {
			failure = err.Error()
			return
		}
		m := &memoryModel{q: q, capacity: capacity, dlLimit: dlLimit, window: window,
			msgs: map[int]*modelMsg{}, dedup: map[string]time.Time{}, orderKnown: true}
		for i, a := range actions {
			if f := m.step(a); f != "" {
				failure = fmt.Sprintf("step %d (op %d, id %s, key %q, opts %+v, delay %v, stop %v): %s",
					i, a.op, a.id, a.key, a.opts, a.delay, a.stopAt, f)
				return
			}
			if f := m.check(); f != "" {
				failure = fmt.Sprintf("after step %d (op %d, id %s, key %q, opts %+v): %s", i, a.op, a.id, a.key, a.opts, f)
				return
			}
		}
	})
	return failure
}

type memoryModel struct {
	q                 *kanban.Memory[int]
	capacity, dlLimit int
	window            time.Duration

	next       int // the next message's instance number
	held       int // messages published or redriven and not yet handled or dead
	msgs       map[int]*modelMsg
	ready      []*modelMsg // waiting, in the queue's order
	dedup      map[string]time.Time
	dead       []modelDead
	stats      kanban.QueueStats
	orderKnown bool // ready is in the queue's order (no consumer was stopped part way)

	// What the handlers saw.
	mu         sync.Mutex
	calls      []modelCall
	handled    map[int]int // calls per instance
	running    int
	maxRunning int
	keys       map[string]int
	overlap    string
}

func (m *memoryModel) step(a modelAction) string {
	ctx := context.Background()
	switch a.op {
	case 0, 1, 2:
		return m.publish(ctx, a)
	case 3:
		return m.consume(a, false)
	case 4:
		return m.consume(a, true)
	case 5, 6:
		f := kanban.DeadLetterFilter{All: true}
		if a.op == 6 {
			f = kanban.DeadLetterFilter{ID: a.id}
		}
		n, err := m.q.RedriveDeadLetters(ctx, f)
		var (
			want    int
			wantErr error
			kept    []modelDead
		)
		for _, d := range m.dead {
			if !f.All && d.m.id != f.ID {
				kept = append(kept, d)
				continue
			}
			if m.held >= m.capacity {
				wantErr = kanban.ErrFull
				kept = append(kept, d)
				continue
			}
			want++
			m.held++
			d.m.attempt, d.m.at = 1, time.Now()
			m.ready = append(m.ready, d.m)
		}
		m.dead = kept
		m.stats.Redriven += int64(want)
		if n != want || !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
			return fmt.Sprintf("redrive: %d, %v; want %d, %v", n, err, want, wantErr)
		}
	case 7, 8:
		f := kanban.DeadLetterFilter{All: true}
		if a.op == 7 {
			f = kanban.DeadLetterFilter{ID: a.id}
		}
		n, err := m.q.DeleteDeadLetters(ctx, f)
		kept := m.dead[:0]
		for _, d := range m.dead {
			if !f.All && d.m.id != f.ID {
				kept = append(kept, d)
			}
		}
		want := len(m.dead) - len(kept)
		m.dead = kept
		if n != want || err != nil {
			return fmt.Sprintf("delete: %d, %v; want %d, nil", n, err, want)
		}
	case 9:
		time.Sleep(a.delay)
	}
	return ""
}

func (m *memoryModel) publish(ctx context.Context, a modelAction) string {
	now := time.Now()
	msg := kanban.Message[int]{ID: a.id, Key: a.key, Payload: m.next}
	if a.headerOf != "" {
		msg.Headers = kanban.Header{"X-Of": a.headerOf}
	}
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	var err error
	if a.op == 1 {
		err = m.q.TryPublish(ctx, msg)
	} else {
		err = m.q.Publish(ctx, msg)
	}
	var want error
	at, seen := m.dedup[a.id]
	switch {
	case m.window > 0 && seen && now.Sub(at) < m.window:
		m.stats.Duplicates++
	case m.held >= m.capacity && a.op == 1:
		want = kanban.ErrFull
	case m.held >= m.capacity:
		want = context.DeadlineExceeded
	default:
		mm := &modelMsg{inst: m.next, attempt: 1, id: a.id, key: a.key, h: msg.Headers,
			script: a.script, sleep: a.sleep, at: now}
		m.msgs[mm.inst] = mm
		m.next++
		m.held++
		m.ready = append(m.ready, mm)
		m.dedup[a.id] = now
		m.stats.Published++
	}
	if !errors.Is(err, want) || (err == nil) != (want == nil) {
		return fmt.Sprintf("publish: %v, want %v", err, want)
	}
	return ""
}

func (m *memoryModel) handler(perKey bool) kanban.Handler[int] {
	return func(ctx context.Context, d kanban.Delivery[int]) error {
		m.mu.Lock()
		mm := m.msgs[d.Payload]
		call := len(m.calls)
		m.calls = append(m.calls, modelCall{inst: d.Payload, attempt: d.Attempt, id: d.ID, key: d.Key, h: d.Headers})
		idx := m.handled[d.Payload]
		m.handled[d.Payload]++
		m.running++
		m.maxRunning = max(m.maxRunning, m.running)
		if perKey && d.Key != "" {
			m.keys[d.Key]++
			if m.keys[d.Key] > 1 && m.overlap == "" {
				m.overlap = fmt.Sprintf("two handlers of key %q at once", d.Key)
			}
		}
		m.mu.Unlock()
		out, sleep := outOK, time.Duration(0)
		if mm != nil {
			idx += mm.calls
			if idx < len(mm.script) {
				out = mm.script[idx]
			}
			sleep = mm.sleep[idx%len(mm.sleep)]
		}
		cancelled := false
		if sleep > 0 {
			t := time.NewTimer(sleep)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				cancelled = true
			}
		}
		m.mu.Lock()
		m.running--
		if perKey && d.Key != "" {
			m.keys[d.Key]--
		}
		if cancelled {
			// Not an attempt of the script: the next call makes it.
			m.calls[call].cancelled = true
			m.handled[d.Payload]--
		}
		m.mu.Unlock()
		if cancelled {
			return ctx.Err()
		}
		_, err := modelOutcome(out, idx)
		if out == outPanic || out == outPanicPermanent {
			panic(err)
		}
		if out == outGoexit {
			runtime.Goexit()
		}
		return err
	}
}

// consume runs a consumer until the queue is empty; interrupted, one
// stopped at a.stopAt first.
func (m *memoryModel) consume(a modelAction, interrupted bool) string {
	m.calls, m.handled, m.keys, m.running, m.maxRunning, m.overlap = nil, map[int]int{}, map[string]int{}, 0, 0, ""
	opts := a.opts
	opts.Backoff = kanban.BackoffFunc(func(int) time.Duration { return a.delay })
	run := func(opts kanban.ConsumeOptions, until func()) string {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.q.Consume(ctx, m.handler(opts.PerKey), opts) }()
		until()
		cancel()
		if err := <-done; err != nil && !(opts.DrainTimeout > 0 && errors.Is(err, kanban.ErrDrainTimeout)) {
			return "consume: " + err.Error()
		}
		if s := m.q.Stats(); s.InFlight != 0 {
			return fmt.Sprintf("%d in flight once Consume returned", s.InFlight)
		}
		return ""
	}
	if interrupted {
		stopped := opts
		stopped.DrainTimeout = a.drain
		if f := run(stopped, func() { time.Sleep(a.stopAt) }); f != "" {
			return "stopped part way: " + f
		}
	}
	if f := run(opts, func() {
		for deadline := time.Now().Add(time.Hour); m.q.Len() > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}); f != "" {
		return f
	}
	if m.maxRunning > opts.WIP {
		return fmt.Sprintf("%d handlers at once, WIP %d", m.maxRunning, opts.WIP)
	}
	if m.overlap != "" {
		return m.overlap
	}

	// What the model expects of each waiting message.
	want := map[int][]int{} // attempts per instance
	var dead []modelDead
	for _, mm := range m.ready {
		for {
			if mm.attempt > opts.MaxAttempts {
				dead = append(dead, modelDead{m: mm, attempts: mm.attempt, reason: fmt.Sprintf(
					"kanban: delivered %d times, more than MaxAttempts %d", mm.attempt, opts.MaxAttempts)})
				break
			}
			idx := mm.calls
			mm.calls++
			want[mm.inst] = append(want[mm.inst], mm.attempt)
			if mm.attempt > 1 {
				m.stats.Redelivered++
			}
			out := outOK
			if idx < len(mm.script) {
				out = mm.script[idx]
			}
			reason, err := modelOutcome(out, idx)
			if err == nil {
				m.stats.Handled++
				break
			}
			if kanban.IsPermanent(err) || mm.attempt >= opts.MaxAttempts {
				dead = append(dead, modelDead{m: mm, attempts: mm.attempt, reason: reason})
				break
			}
			m.stats.Retried++
			mm.attempt++
		}
	}
	m.stats.DeadLettered += int64(len(dead))
	m.held -= len(m.ready)

	// What the handlers saw. A call the drain deadline cancelled is made
	// again, as the same attempt, by the next call of its message.
	got := map[int][]int{}
	again := map[int]int{} // the attempt a cancelled call left to make again
	for _, c := range m.calls {
		mm := m.msgs[c.inst]
		if mm == nil || c.id != mm.id || c.key != mm.key || !sameHeader(c.h, mm.h) {
			return fmt.Sprintf("a handler saw message %d as %+v", c.inst, c)
		}
		if n, ok := again[c.inst]; ok && c.attempt != n {
			return fmt.Sprintf("message %d (%s) cancelled at attempt %d came back as attempt %d", c.inst, mm.id, n, c.attempt)
		}
		delete(again, c.inst)
		if c.attempt > 1 && c.cancelled {
			m.stats.Redelivered++
		}
		if c.cancelled {
			again[c.inst] = c.attempt
			continue
		}
		got[c.inst] = append(got[c.inst], c.attempt)
	}
	for inst, w := range want {
		if !slices.Equal(got[inst], w) {
			return fmt.Sprintf("message %d (%s) was handled at attempts %v, want %v", inst, m.msgs[inst].id, got[inst], w)
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("handled messages %v, want %v", got, want)
	}
	if opts.PerKey && m.orderKnown && !interrupted {
		for _, key := range []string{"a", "b"} {
			var gotOrder, wantOrder []int
			for _, c := range m.calls {
				if c.key == key && (len(gotOrder) == 0 || gotOrder[len(gotOrder)-1] != c.inst) {
					gotOrder = append(gotOrder, c.inst)
				}
			}
			for _, mm := range m.ready {
				if mm.key == key {
					wantOrder = append(wantOrder, mm.inst)
				}
			}
			if !slices.Equal(gotOrder, wantOrder) {
				return fmt.Sprintf("key %s handled in the order %v, want %v", key, gotOrder, wantOrder)
			}
		}
	}
	m.ready = nil
	m.orderKnown = true

	// The dead letters: the survivors of the old ones, then the new ones
	// in some order, the oldest pushed out past the limit.
	dls, err := m.q.DeadLetters(context.Background())
	if err != nil {
		return err.Error()
	}
	if n := min(m.dlLimit, len(m.dead)+len(dead)); len(dls) != n {
		return fmt.Sprintf("%d dead letters, want %d", len(dls), n)
	}
	nOld := max(0, len(dls)-len(dead))
	adopted := slices.Clone(m.dead[len(m.dead)-nOld:])
	byInst := map[int]modelDead{}
	for _, d := range dead {
		byInst[d.m.inst] = d
	}
	for _, dl := range dls[nOld:] {
		inst, _ := strconv.Atoi(string(dl.Payload))
		d, ok := byInst[inst]
		if !ok {
			return fmt.Sprintf("dead letter %+v is not one of the new ones", dl)
		}
		delete(byInst, inst)
		adopted = append(adopted, d)
	}
	m.dead = adopted
	return ""
}

func (m *memoryModel) check() string {
	s := m.q.Stats()
	if s != m.stats {
		return fmt.Sprintf("stats %+v, want %+v", s, m.stats)
	}
	if n := m.q.Len(); n != m.held {
		return fmt.Sprintf("Len %d, want %d", n, m.held)
	}
	b, err := m.q.Backlog(context.Background())
	if err != nil {
		return err.Error()
	}
	want := kanban.Backlog{Depth: int64(m.held), DeadLetters: int64(len(m.dead)), OldestKnown: m.window > 0}
	if want.OldestKnown && len(m.ready) > 0 {
		want.Oldest = time.Since(m.ready[0].at)
	}
	if b != want {
		return fmt.Sprintf("backlog %+v, want %+v", b, want)
	}
	dls, err := m.q.DeadLetters(context.Background())
	if err != nil {
		return err.Error()
	}
	if len(dls) != len(m.dead) {
		return fmt.Sprintf("%d dead letters, want %d", len(dls), len(m.dead))
	}
	for i, dl := range dls {
		d := m.dead[i]
		if i > 0 && dl.Seq <= dls[i-1].Seq {
			return fmt.Sprintf("dead letter %d has Seq %d after %d", i, dl.Seq, dls[i-1].Seq)
		}
		if dl.ID != d.m.id || dl.Key != d.m.key || !sameHeader(dl.Headers, d.m.h) ||
			string(dl.Payload) != strconv.Itoa(d.m.inst) || dl.Reason != d.reason || dl.Attempts != d.attempts {
			return fmt.Sprintf("dead letter %d is %+v, want message %d %+v, reason %q, attempts %d",
				i, dl, d.m.inst, *d.m, d.reason, d.attempts)
		}
	}
	return ""
}

func sameHeader(a, b kanban.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
