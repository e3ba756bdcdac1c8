package jidoka_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

func TestNewBulkheadRejectsBadOptions(t *testing.T) {
	for _, tt := range []struct {
		opts jidoka.BulkheadOptions
		want string
	}{
		{jidoka.BulkheadOptions{}, "BulkheadOptions.MaxConcurrent is 0"},
		{jidoka.BulkheadOptions{MaxConcurrent: -1}, "BulkheadOptions.MaxConcurrent is -1"},
		{jidoka.BulkheadOptions{MaxConcurrent: jidoka.MaxBulkheadConcurrent + 1}, "BulkheadOptions.MaxConcurrent is"},
		{jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWaiting: -1}, "BulkheadOptions.MaxWaiting is -1"},
		{jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWaiting: jidoka.MaxBulkheadWaiting + 1}, "BulkheadOptions.MaxWaiting is"},
		{jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWait: -time.Second}, "BulkheadOptions.MaxWait is -1s"},
		// A wait with no line to wait in would be ignored: every call
		// beyond MaxConcurrent is refused at once.
		{jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWait: time.Second}, "BulkheadOptions.MaxWait is 1s, but MaxWaiting is 0: no call waits; set MaxWaiting to let calls wait in line"},
		{jidoka.BulkheadOptions{MaxConcurrent: 1, RetryAfter: -time.Second}, "BulkheadOptions.RetryAfter is -1s"},
	} {
		b, err := jidoka.NewBulkhead(tt.opts)
		assert.Nil(t, b)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tt.want)
	}
}

// 1,000 concurrent callers through a bulkhead of 10 slots with a queue for
// all of them, to a server that counts the requests it serves at once:
// never more than 10, and every call is served.
func TestBulkheadLimitsConcurrency(t *testing.T) {
	const limit, callers = 10, 1000
	var inFlight, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(time.Millisecond) // long enough for callers to pile up
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: limit}}
	defer client.CloseIdleConnections()

	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{Name: "api", MaxConcurrent: limit, MaxWaiting: callers})
	require.NoError(t, err)
	var running, maxRunning atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := make(chan struct{})
	for range callers {
		wg.Go(func() {
			<-start
			errs <- b.Do(context.Background(), func(ctx context.Context) error {
				n := running.Add(1)
				defer running.Add(-1)
				for {
					m := maxRunning.Load()
					if n <= m || maxRunning.CompareAndSwap(m, n) {
						break
					}
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				return resp.Body.Close()
			})
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, peak.Load(), int64(limit), "the server saw more requests at once than the bulkhead allows")
	assert.LessOrEqual(t, maxRunning.Load(), int64(limit))
	assert.Equal(t, int64(limit), maxRunning.Load(), "1,000 callers should fill every slot")
	assert.Zero(t, b.Running())
	assert.Zero(t, b.Waiting())
}

// Without a queue, callers beyond the limit are refused at once, with the
// hint of the options, and the refusal is Rejected in a pipeline.
func TestBulkheadRefuses(t *testing.T) {
	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{Name: "db", MaxConcurrent: 2, RetryAfter: 3 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()
	d1, err := b.Allow(ctx)
	require.NoError(t, err)
	d2, err := b.Allow(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, b.Running())

	_, err = b.Allow(ctx)
	require.ErrorIs(t, err, jidoka.ErrBulkheadFull)
	var full *jidoka.BulkheadFullError
	require.ErrorAs(t, err, &full)
	assert.Equal(t, "db", full.Bulkhead)
	assert.Equal(t, 2, full.Limit)
	assert.False(t, full.Waited)
	assert.Equal(t, 3*time.Second, jidoka.RetryAfter(err))
	assert.Equal(t, `jidoka: bulkhead "db" is full (2 calls running)`, err.Error())

	p, err := tai.New(allowAll, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }), tai.WithGuards(b))
	require.NoError(t, err)
	res, err := p.Process(ctx, tai.Signal[int]{ID: "1", Kind: "k"})
	assert.Equal(t, tai.Rejected, res.Outcome)
	assert.ErrorIs(t, err, jidoka.ErrBulkheadFull)
	assert.Equal(t, 3*time.Second, tai.RetryAfter(err))

	d1(nil)
	d2(nil)
	assert.Zero(t, b.Running())
	res, err = p.Process(ctx, tai.Signal[int]{ID: "2", Kind: "k"})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Value)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = b.Allow(cctx)
	assert.ErrorIs(t, err, context.Canceled)
}

var allowAll = tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
	return tai.Decision{Verdict: tai.Allow}, nil
})

// Waiting callers are served first come, first served; a full line
// refuses; a wait runs out after MaxWait; a cancelled wait leaves the line.
func TestBulkheadQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWaiting: 3, MaxWait: time.Minute})
		require.NoError(t, err)
		ctx := context.Background()
		hold, err := b.Allow(ctx)
		require.NoError(t, err)

		var order []int
		var mu sync.Mutex
		for i := range 3 {
			go func() {
				done, err := b.Allow(ctx)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				done(nil)
			}()
			synctest.Wait() // queued in this order
		}
		assert.Equal(t, 3, b.Waiting())
		_, err = b.Allow(ctx)
		assert.ErrorIs(t, err, jidoka.ErrBulkheadFull, "the line is full")

		hold(nil)
		synctest.Wait()
		assert.Equal(t, []int{0, 1, 2}, order)
		assert.Zero(t, b.Running())
		assert.Zero(t, b.Waiting())

		// A wait that runs out.
		hold, err = b.Allow(ctx)
		require.NoError(t, err)
		start := time.Now()
		_, err = b.Allow(ctx)
		var full *jidoka.BulkheadFullError
		require.ErrorAs(t, err, &full)
		assert.True(t, full.Waited)
		assert.Contains(t, err.Error(), "no slot freed in time")
		assert.Equal(t, time.Minute, time.Since(start))
		assert.Zero(t, b.Waiting())

		// A wait that its context ends.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err = b.Allow(cctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Zero(t, b.Waiting())
		assert.Equal(t, 1, b.Running())
		hold(nil)
		assert.Zero(t, b.Running())
	})
}

func TestBulkheadPanicGivesTheSlotBack(t *testing.T) {
	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1})
	require.NoError(t, err)
	assert.Panics(t, func() {
		_ = b.Do(context.Background(), func(context.Context) error { panic("boom") })
	})
	assert.Zero(t, b.Running())
	assert.NoError(t, b.Do(context.Background(), func(context.Context) error { return nil }))
}

func TestBulkheadDoesNotAllocate(t *testing.T) {
	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 4})
	require.NoError(t, err)
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, fn) }))
	d1, _ := b.Allow(ctx)
	d2, _ := b.Allow(ctx)
	d3, _ := b.Allow(ctx)
	d4, _ := b.Allow(ctx)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, fn) }), "a refusal allocates nothing")
	for _, d := range []func(error){d1, d2, d3, d4} {
		d(nil)
	}
}

// A done called a second time while no other call holds a slot gives
// nothing back: the limit stays MaxConcurrent, and Running does not go
// below zero.
func TestBulkheadDoneTwiceDoesNotRaiseTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		for _, waiting := range []int{0, 1} {
			opts := jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWaiting: waiting}
			if waiting > 0 {
				opts.MaxWait = time.Millisecond
			}
			b, err := jidoka.NewBulkhead(opts)
			require.NoError(t, err)
			done, err := b.Allow(ctx)
			require.NoError(t, err)
			done(nil)
			done(nil)
			assert.Zero(t, b.Running(), "MaxWaiting %d", waiting)
			hold, err := b.Allow(ctx)
			require.NoError(t, err)
			_, err = b.Allow(ctx)
			require.ErrorIs(t, err, jidoka.ErrBulkheadFull, "MaxWaiting %d: a second call ran beside the first", waiting)
			assert.Equal(t, 1, b.Running())
			hold(nil)
			assert.Zero(t, b.Running())
		}
	})
}

// A done called a second time on an empty bulkhead never shows in Running,
// not even for a moment: the count never goes below zero, where a call
// taking a slot meanwhile would find one more than MaxConcurrent free.
func TestBulkheadDoneTwiceNeverCountsBelowZero(t *testing.T) {
	ctx := context.Background()
	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1})
	require.NoError(t, err)
	var started, finished atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		defer finished.Store(true)
		for !started.Load() {
			runtime.Gosched()
		}
		for range 300_000 {
			done, err := b.Allow(ctx)
			if !assert.NoError(t, err) {
				return
			}
			done(nil)
			done(nil)
		}
	})
	negative := 0
	started.Store(true)
	for !finished.Load() {
		if b.Running() < 0 {
			negative++
		}
	}
	wg.Wait()
	assert.Zero(t, negative, "Running was below zero")
	assert.Zero(t, b.Running())
}

// A done called a second time while another call holds a slot gives back
// a slot that was not free, as Allow documents: one call too many may run
// until the bulkhead is empty, and from then on the limit holds again.
func TestBulkheadDoneTwiceWhileBusyHealsWhenEmpty(t *testing.T) {
	ctx := context.Background()
	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 2})
	require.NoError(t, err)
	take := func() func(error) {
		t.Helper()
		done, err := b.Allow(ctx)
		require.NoError(t, err)
		return done
	}
	a, c := take(), take()
	a(nil)
	a(nil)                 // c still runs
	d, e := take(), take() // three run at once
	for _, done := range []func(error){c, d, e} {
		done(nil)
	}
	assert.Zero(t, b.Running())
	take()
	take()
	_, err = b.Allow(ctx)
	require.ErrorIs(t, err, jidoka.ErrBulkheadFull, "the limit holds again once the bulkhead was empty")
}

// The bulkhead against a model: a sequence of takes, gives and waiting
// callers that arrive, give up or are served, of callers that arrive
// while a slot given back is on its way to the first in line, and of
// callers that queue and go, a slot being given back before they see
// that their context has ended (the slot passes over them). Running
// never exceeds the limit, a take succeeds exactly when the model has a
// free slot and no one waits, a caller is refused exactly when every slot
// is taken and the line is full, and waiters are served in order.
func TestBulkheadModel(t *testing.T) {
	step := rapid.Custom(func(t *rapid.T) bulkheadStep {
		return bulkheadStep{
			kind: rapid.IntRange(0, bulkheadStepKinds-1).Draw(t, "kind"),
			pick: rapid.IntRange(0, 7).Draw(t, "pick"),
		}
	})
	rapid.Check(t, func(rt *rapid.T) {
		limit := rapid.IntRange(1, 4).Draw(rt, "limit")
		maxWaiting := rapid.IntRange(0, 4).Draw(rt, "maxWaiting")
		steps := rapid.SliceOfN(step, 1, 60).Draw(rt, "steps")
		var failure string
		synctest.Test(t, func(t *testing.T) {
			b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: limit, MaxWaiting: maxWaiting})
			if err != nil {
				t.Fatal(err)
			}
			failure = runBulkheadModel(b, limit, maxWaiting, steps)
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}

// The steps of TestBulkheadModel.
const (
	stepArrive          = iota // a new caller
	stepGiveBack               // a holder gives its slot back
	stepGiveUp                 // a waiter gives up
	stepArriveAsHandOff        // a caller arrives as a slot given back is handed on
	stepGoneAsHandOff          // a caller queues and goes, and a slot is handed on before it sees so
	bulkheadStepKinds
)

// bulkheadStep is a step of TestBulkheadModel; pick chooses the holder or
// the waiter it acts on, modulo how many there are.
type bulkheadStep struct{ kind, pick int }

// bulkheadCaller is a call of Allow in a goroutine of its own: got
// receives its done, or nil when it was refused.
type bulkheadCaller struct {
	id     int
	cancel context.CancelFunc
	got    chan func(error)
}

// runBulkheadModel takes steps with b, in a synctest bubble, and with a
// model of it, and returns the first difference between them, or "". It
// leaves no call waiting, whatever it returns.
func runBulkheadModel(b *jidoka.Bulkhead, limit, maxWaiting int, steps []bulkheadStep) string {
	var held []func(error)
	var line []bulkheadCaller
	var cancels []context.CancelFunc
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	served := make(chan int, len(steps))
	// take returns what c got, if Allow has returned to it: after
	// synctest.Wait, a call to which it has not returned waits in line.
	take := func(c bulkheadCaller) (done func(error), returned bool) {
		select {
		case done = <-c.got:
			return done, true
		default:
			return nil, false
		}
	}
	// arrive makes a new caller, who has been served, queued or refused
	// when it returns; arriveLate(look) makes one that, once in line,
	// looks at its context's end only when look is closed.
	var arriveLate func(look chan struct{}) bulkheadCaller
	arrive := func() bulkheadCaller { return arriveLate(nil) }
	arriveLate = func(look chan struct{}) bulkheadCaller {
		cctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		c := bulkheadCaller{len(cancels) - 1, cancel, make(chan func(error), 1)}
		var ctx context.Context = cctx
		if look != nil {
			ctx = &looksLate{Context: cctx, look: look}
		}
		go func() {
			done, err := b.Allow(ctx)
			if err != nil {
				c.got <- nil
				return
			}
			served <- c.id
			c.got <- done
		}()
		synctest.Wait()
		return c
	}
	// admit checks what became of c against the model.
	admit := func(c bulkheadCaller) string {
		switch {
		case len(held) < limit && len(line) == 0:
			done, _ := take(c)
			if done == nil {
				return fmt.Sprintf("caller %d: a free slot was refused", c.id)
			}
			if id := <-served; id != c.id {
				return fmt.Sprintf("caller %d: caller %d was served instead", c.id, id)
			}
			held = append(held, done)
			c.cancel() // an admitted call keeps its slot when its context ends
		case len(line) < maxWaiting:
			if done, returned := take(c); returned {
				return fmt.Sprintf("caller %d: with %d of %d slots taken and %d of %d places in line, it did not wait (admitted: %t)",
					c.id, len(held), limit, len(line), maxWaiting, done != nil)
			}
			line = append(line, c)
		default:
			done, returned := take(c)
			if !returned {
				return fmt.Sprintf("caller %d waits beyond the line", c.id)
			}
			if done != nil {
				return fmt.Sprintf("caller %d was admitted beyond the limit and the line", c.id)
			}
		}
		return ""
	}
	// serveFirst checks that a slot given back went to the first in line,
	// if anyone waits.
	serveFirst := func() string {
		if len(line) == 0 {
			return ""
		}
		c := line[0]
		line = line[1:]
		done, _ := take(c)
		if done == nil {
			return fmt.Sprintf("caller %d, first in line, was not served", c.id)
		}
		if id := <-served; id != c.id {
			return fmt.Sprintf("caller %d was served before caller %d: waiters are served in order", id, c.id)
		}
		held = append(held, done)
		c.cancel()
		return ""
	}
	for i, st := range steps {
		var failure string
		switch st.kind {
		case stepArrive:
			failure = admit(arrive())
		case stepGiveBack:
			if len(held) == 0 {
				continue
			}
			j := st.pick % len(held)
			held[j](nil)
			held = append(held[:j], held[j+1:]...)
			synctest.Wait()
			failure = serveFirst()
		case stepGiveUp:
			if len(line) == 0 {
				continue
			}
			j := st.pick % len(line)
			line[j].cancel()
			synctest.Wait()
			if done, returned := take(line[j]); !returned || done != nil {
				failure = fmt.Sprintf("caller %d gave up and was not refused", line[j].id)
			}
			line = append(line[:j], line[j+1:]...)
		case stepArriveAsHandOff:
			// As if the caller had arrived once the slot was handed on.
			if len(held) == 0 {
				continue
			}
			held = held[1:] // every done is the one function of b: any will do
			handOn := jidoka.GiveBackBeforeHandOn(b)
			c := arrive()
			handOn()
			synctest.Wait()
			if failure = serveFirst(); failure == "" {
				failure = admit(c)
			}
		case stepGoneAsHandOff:
			if len(held) == 0 {
				continue
			}
			gate := make(chan struct{})
			look := sync.OnceFunc(func() { close(gate) })
			cancels = append(cancels, look) // lets it go when a check fails
			c := arriveLate(gate)
			if failure = admit(c); failure != "" || len(line) == 0 || line[len(line)-1].id != c.id {
				look() // served or refused: it never looks
				break
			}
			c.cancel()
			held[0](nil)
			held = held[1:]
			synctest.Wait()
			if len(line) == 1 {
				// It was alone in line: the slot passes over it and is
				// free.
				line = nil
			} else {
				failure = serveFirst()
			}
			if failure == "" {
				// A caller arrives while the one that went is still
				// unaware of it, in line or not.
				failure = admit(arrive())
			}
			look()
			synctest.Wait()
			if done, returned := take(c); !returned || done != nil {
				failure = fmt.Sprintf("caller %d went and was not refused", c.id)
			}
			line = slices.DeleteFunc(line, func(w bulkheadCaller) bool { return w.id == c.id })
		}
		if failure == "" {
			switch {
			case b.Running() != len(held):
				failure = fmt.Sprintf("Running is %d, want %d", b.Running(), len(held))
			case b.Waiting() != len(line):
				failure = fmt.Sprintf("Waiting is %d, want %d", b.Waiting(), len(line))
			case b.Running() > limit:
				failure = fmt.Sprintf("Running is %d, over the limit %d", b.Running(), limit)
			}
		}
		if failure != "" {
			return fmt.Sprintf("step %d (%+v): %s", i, st, failure)
		}
	}
	for _, c := range line {
		c.cancel()
	}
	synctest.Wait()
	for _, done := range held {
		done(nil)
	}
	for _, c := range line {
		if done, _ := take(c); done != nil {
			done(nil)
		}
	}
	if n := b.Running(); n != 0 {
		return fmt.Sprintf("Running is %d once every call is over", n)
	}
	return ""
}

// A call that arrives while a slot given back is on its way to the first
// call in line is not refused for want of room in a line that call is
// leaving: it is refused only when every slot is taken and the line is
// full at one moment. Here every slot is taken and inLine calls wait;
// one slot is given back but not yet handed on when a call arrives. The
// slot goes to the first in line, and the call that arrived waits behind
// the others (or takes the slot, when no one waited), whether the line
// was full or not.
func TestBulkheadCallArrivingAsASlotIsHandedOnIsNotRefused(t *testing.T) {
	for _, tt := range []struct{ limit, maxWaiting, inLine int }{
		{1, 0, 0},
		{1, 1, 0},
		{1, 1, 1}, // the line is full
		{2, 3, 1},
		{2, 3, 3}, // the line is full
	} {
		name := fmt.Sprintf("limit=%d,maxWaiting=%d,inLine=%d", tt.limit, tt.maxWaiting, tt.inLine)
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: tt.limit, MaxWaiting: tt.maxWaiting})
				require.NoError(t, err)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel() // lets the calls in line go when the test fails
				var hold func(error)
				for range tt.limit {
					hold, err = b.Allow(ctx)
					require.NoError(t, err)
				}
				type result struct {
					id   int
					done func(error)
					err  error
				}
				results := make(chan result, tt.inLine+1)
				call := func(id int) {
					go func() {
						done, err := b.Allow(ctx)
						results <- result{id, done, err}
					}()
					synctest.Wait() // served, queued or refused
				}
				for id := range tt.inLine {
					call(id)
				}
				require.Equal(t, tt.inLine, b.Waiting())

				handOn := jidoka.GiveBackBeforeHandOn(b)
				call(tt.inLine)
				handOn()
				synctest.Wait()
				assert.Equal(t, tt.limit, b.Running(), "the slot given back is not taken")
				assert.Equal(t, tt.inLine, b.Waiting(), "the call that arrived is not in line")
				for id := range tt.inLine + 1 {
					r := <-results
					require.NoError(t, r.err, "call %d", r.id)
					require.Equal(t, id, r.id, "served out of order")
					r.done(nil)
					synctest.Wait()
				}
				for range tt.limit - 1 {
					hold(nil)
				}
				assert.Zero(t, b.Running())
				assert.Zero(t, b.Waiting())
			})
		})
	}
}

// A slot given back passes over a call in line whose context has ended
// but which has not yet seen it: that call is leaving without the slot,
// so the slot goes to the next in line, or is free when no one else
// waits. Handed to the leaving call, it would be held, for as long as
// that call takes to see its context's end and give it back, by a call
// that never runs, and a newcomer would be made to wait, or be refused,
// while no call runs. The leaving call here is held at the moment it
// first looks at its context's end, after it has taken its place in line.
func TestBulkheadSlotPassesOverACallWhoseContextEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWaiting: 1})
		require.NoError(t, err)
		hold, err := b.Allow(context.Background()) // the only slot
		require.NoError(t, err)

		type result struct {
			done func(error)
			err  error
		}
		call := func(ctx context.Context) chan result {
			got := make(chan result, 1)
			go func() {
				done, err := b.Allow(ctx)
				got <- result{done, err}
			}()
			synctest.Wait() // served, queued or refused
			return got
		}
		ctx, cancel := context.WithCancel(context.Background())
		late := &looksLate{Context: ctx, look: make(chan struct{})}
		others, cancelOthers := context.WithCancel(context.Background())
		lookOnce := sync.OnceFunc(func() { close(late.look) })
		defer func() { // lets every call go when the test fails
			lookOnce()
			cancelOthers()
		}()
		leaving := call(late)
		require.Equal(t, 1, b.Waiting())
		cancel()  // its caller has gone
		hold(nil) // and the slot is given back before it sees that
		assert.Zero(t, b.Running(), "the slot went to a call whose context had ended")
		assert.Zero(t, b.Waiting())

		first := call(others)
		second := call(others)
		var firstDone func(error)
		select {
		case r := <-first:
			require.NoError(t, r.err, "a call that came when no call ran")
			firstDone = r.done
		default:
			t.Fatal("a call that came when no call ran waits")
		}
		select {
		case r := <-second:
			t.Fatalf("a call that came with a free place in line did not wait: %v", r.err)
		default:
		}

		lookOnce()
		r := <-leaving
		require.ErrorIs(t, r.err, jidoka.ErrBulkheadFull)
		require.ErrorIs(t, r.err, context.Canceled)
		assert.Equal(t, 1, b.Running())
		firstDone(nil)
		r = <-second
		require.NoError(t, r.err)
		r.done(nil)
		assert.Zero(t, b.Running())
		assert.Zero(t, b.Waiting())
	})
}

// looksLate is a context whose Done blocks until look is closed: a call
// waiting for a bulkhead slot asks for Done once it has taken its place in
// line, so it stays in line, unaware of the context's end, until then.
type looksLate struct {
	context.Context
	look chan struct{}
}

func (c *looksLate) Done() <-chan struct{} {
	<-c.look
	return c.Context.Done()
}

func TestBulkheadErrorsAreComparable(t *testing.T) {
	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1})
	require.NoError(t, err)
	d, _ := b.Allow(context.Background())
	_, e1 := b.Allow(context.Background())
	_, e2 := b.Allow(context.Background())
	assert.True(t, errors.Is(e1, jidoka.ErrBulkheadFull))
	assert.Same(t, e1, e2, "one value per reason: no allocation per refusal")
	d(nil)
}

// A call whose context ends while it waits for a slot never reached the
// dependency: its error matches ErrBulkheadFull as well as the context's
// error, so that a breaker around the bulkhead does not count it, as it
// counts neither a call refused at once nor one whose MaxWait ran out. A
// burst that fills the line must not open the breaker of a dependency
// that answers every call it gets.
func TestBulkheadWaitEndedByItsContextIsARefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bh, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{Name: "db", MaxConcurrent: 1, MaxWaiting: 10, RetryAfter: time.Second})
		require.NoError(t, err)
		br := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 2, OpenDuration: time.Minute, HalfOpenSuccesses: 1})
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
		require.NoError(t, err)
		ctx := context.Background()
		hold, err := bh.Allow(ctx) // the only slot, held by a call that takes long
		require.NoError(t, err)

		// In the order the package recommends: Timeout(Breaker(Bulkhead(action))).
		call := func() error {
			return to.Do(ctx, func(ctx context.Context) error {
				return br.Do(ctx, func(ctx context.Context) error {
					return bh.Do(ctx, func(context.Context) error { return nil })
				})
			})
		}
		for range 3 {
			err := call()
			assert.ErrorIs(t, err, jidoka.ErrTimeout)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.ErrorIs(t, err, jidoka.ErrBulkheadFull)
			var full *jidoka.BulkheadFullError
			if assert.ErrorAs(t, err, &full) {
				assert.True(t, full.Waited)
				assert.Equal(t, "db", full.Bulkhead)
			}
			assert.Equal(t, time.Second, jidoka.RetryAfter(err))
		}
		assert.Equal(t, jidoka.StateClosed, br.State(), "waits that outlived their deadline opened the breaker")
		assert.Zero(t, br.Snapshot().ConsecutiveFailures)

		// In a pipeline, tai.WithGuards(breaker, bulkhead), whose Allow the
		// pipeline calls in turn, on a request's context with a deadline.
		p, err := tai.New(allowAll, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }),
			tai.WithGuards(br, bh))
		require.NoError(t, err)
		for range 3 {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			res, err := p.Process(dctx, tai.Signal[int]{ID: "s", Kind: "k"})
			cancel()
			assert.Equal(t, tai.Rejected, res.Outcome)
			assert.ErrorIs(t, err, jidoka.ErrBulkheadFull)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		}
		assert.Equal(t, jidoka.StateClosed, br.State(), "waits that outlived their deadline opened the breaker")

		// A half-open probe that waited in vain gives its lease back and
		// leaves the breaker half-open.
		br.Trip("test")
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Equal(t, jidoka.StateHalfOpen, br.State())
		err = call()
		assert.ErrorIs(t, err, jidoka.ErrBulkheadFull)
		s := br.Snapshot()
		assert.Equal(t, jidoka.StateHalfOpen, s.State, "a probe that never reached the dependency reopened the breaker")
		assert.Zero(t, s.ProbesInFlight)

		// A caller that gives up while it waits: context.Canceled, which
		// Retry does not retry.
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			synctest.Wait()
			cancel()
		}()
		_, err = bh.Allow(cctx)
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, jidoka.ErrBulkheadFull)
		assert.Equal(t, `jidoka: bulkhead "db" is full (1 calls running), no slot freed in time: context canceled`, err.Error())
		assert.False(t, jidoka.Retryable(err))
		assert.Zero(t, bh.Waiting())

		hold(nil)
		require.NoError(t, call())
		assert.Equal(t, jidoka.StateClosed, br.State())
	})
}

// A waiting call whose context ends as a slot comes to it is refused as
// one whose context ended while it waited: it never runs with a context
// that has ended (its error would then be the call's, which a breaker
// around the bulkhead counts when a deadline ended it), and the slot goes
// on to the next call. When both have happened, the wait may see either
// first; every time, the call is refused and the slot is free.
func TestBulkheadWaitEndedByItsContextAsTheSlotComes(t *testing.T) {
	bh, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWaiting: 1})
	require.NoError(t, err)
	for i := range 100 {
		hold, err := bh.Allow(context.Background()) // the only slot
		require.NoError(t, err)
		ctx := &endsAsTheSlotComes{release: hold}
		ctx.Context, ctx.cancel = context.WithCancel(context.Background())
		ran := false
		err = bh.Do(ctx, func(ctx context.Context) error {
			ran = true
			return ctx.Err()
		})
		require.ErrorIs(t, err, jidoka.ErrBulkheadFull, "run %d", i)
		require.ErrorIs(t, err, context.Canceled, "run %d", i)
		require.False(t, ran, "run %d: the call ran after its caller had gone", i)
		require.Equal(t, 0, bh.Running(), "run %d", i)
		require.Equal(t, 0, bh.Waiting(), "run %d", i)
	}
}

// endsAsTheSlotComes is a context that its first Done ends after it gives
// back the bulkhead slot another call holds: a call waiting for that slot,
// which asks for Done as it starts to wait, finds both the slot and its
// context's end.
type endsAsTheSlotComes struct {
	context.Context
	cancel  context.CancelFunc
	release func(error)
	asked   bool
}

func (c *endsAsTheSlotComes) Done() <-chan struct{} {
	if !c.asked {
		c.asked = true
		c.release(nil)
		c.cancel()
	}
	return c.Context.Done()
}

// A call whose MaxWait runs out at the moment its slot comes and its
// context ends is refused as well: the wait may see the timer first, and
// the slot that came with it is given back, not run with a context that
// has ended.
func TestBulkheadWaitRunOutAsTheSlotComesAndItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxWait = time.Second
		bh, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1, MaxWaiting: 1, MaxWait: maxWait})
		require.NoError(t, err)
		for i := range 100 {
			hold, err := bh.Allow(context.Background()) // the only slot
			require.NoError(t, err)
			ctx := &endsAsTheWaitRunsOut{release: hold, wait: maxWait}
			ctx.Context, ctx.cancel = context.WithCancel(context.Background())
			ran := false
			err = bh.Do(ctx, func(ctx context.Context) error {
				ran = true
				return ctx.Err()
			})
			require.ErrorIs(t, err, jidoka.ErrBulkheadFull, "run %d", i)
			require.ErrorIs(t, err, context.Canceled, "run %d", i)
			require.False(t, ran, "run %d: the call ran after its caller had gone", i)
			require.Equal(t, 0, bh.Running(), "run %d", i)
			require.Equal(t, 0, bh.Waiting(), "run %d", i)
		}
	})
}

// endsAsTheWaitRunsOut is a context whose first Done lets the bulkhead's
// MaxWait run out, gives back the slot another call holds and ends: a call
// waiting for that slot, which asks for Done as it starts to wait, finds
// its timer, the slot and its context's end all at once.
type endsAsTheWaitRunsOut struct {
	context.Context
	cancel  context.CancelFunc
	release func(error)
	wait    time.Duration
	asked   bool
}

func (c *endsAsTheWaitRunsOut) Done() <-chan struct{} {
	if !c.asked {
		c.asked = true
		time.Sleep(c.wait)
		c.release(nil)
		c.cancel()
	}
	return c.Context.Done()
}
