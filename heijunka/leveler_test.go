package heijunka_test

import (
	"context"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
)

// TestLevelerHeavyKeyCannotStarve: one key sends 100 times more than each
// of the others, all queued before any is served. The light keys are
// still served one item per round, interleaved with the heavy one.
func TestLevelerHeavyKeyCannotStarve(t *testing.T) {
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{Backlog: 1000})
	require.NoError(t, err)
	for i := range 1000 {
		require.NoError(t, l.Push("heavy", i))
	}
	light := []string{"a", "b", "c", "d"}
	for _, k := range light {
		for i := range 10 {
			require.NoError(t, l.Push(k, i))
		}
	}
	served := map[string]int{}
	for pos := 1; pos <= 1040+1; pos++ { // one Pop more than there are items
		key, item, ok := l.Pop()
		if !ok {
			break
		}
		assert.Equal(t, served[key], item, "%s in order", key)
		served[key]++
		if pos == 50 {
			for _, k := range light {
				assert.Equal(t, 10, served[k], "after 50 pops every light key is done")
			}
			assert.Equal(t, 10, served["heavy"], "and heavy got its fair share, no more")
		}
	}
	assert.Equal(t, 1000, served["heavy"])
	assert.Zero(t, l.Len())
	assert.Zero(t, l.KeysWaiting())
}

func TestLevelerBacklogAndKeysBounded(t *testing.T) {
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[string]{Backlog: 3, MaxKeys: 2})
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, l.Push("heavy", strconv.Itoa(i)))
	}
	assert.ErrorIs(t, l.Push("heavy", "x"), heijunka.ErrBacklogFull)
	require.NoError(t, l.Push("b", "1"))
	assert.ErrorIs(t, l.Push("c", "1"), heijunka.ErrTooManyKeys)
	_, _, _ = l.Pop()
	require.NoError(t, l.Push("heavy", "3"), "room again")
	for range 2 {
		_, _, _ = l.Pop()
	}
	require.NoError(t, l.Push("c", "1"), "b drained, its place is free")

	_, err = heijunka.NewLeveler(heijunka.LevelerOptions[int]{Backlog: -1})
	assert.ErrorContains(t, err, "Backlog -1")
	_, err = heijunka.NewLeveler(heijunka.LevelerOptions[int]{MaxKeys: -1})
	assert.ErrorContains(t, err, "MaxKeys -1")
}

func TestLevelerWeightsAndCosts(t *testing.T) {
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{
		Backlog: 100,
		Weight: func(k string) int {
			if k == "gold" {
				return 3
			}
			return 1
		},
	})
	require.NoError(t, err)
	for i := range 30 {
		require.NoError(t, l.Push("gold", i))
		require.NoError(t, l.Push("free", i))
	}
	served := map[string]int{}
	for range 20 {
		k, _, _ := l.Pop()
		served[k]++
	}
	assert.Equal(t, map[string]int{"gold": 15, "free": 5}, served, "weight 3 to 1")

	// Costs: a key of big items gets fewer of them; a cost far above the
	// credit does not spin.
	c, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{Cost: func(n int) int { return n }})
	require.NoError(t, err)
	for range 4 {
		require.NoError(t, c.Push("big", 4))
		require.NoError(t, c.Push("small", 1))
	}
	require.NoError(t, c.Push("huge", 1<<40))
	var order []string
	for range 10 { // one Pop more than there are items
		k, _, ok := c.Pop()
		if !ok {
			break
		}
		order = append(order, k)
	}
	// Each round gives every key one unit of credit: small is served every
	// round, big (cost 4) every fourth, huge last, in one jump of rounds.
	assert.Equal(t, []string{"small", "small", "small", "big", "small", "big", "big", "big", "huge"}, order)
}

// TestLevelerNext runs in a synctest bubble: should an item be lost, every
// goroutine blocks and the test fails as a deadlock instead of hanging.
func TestLevelerNext(t *testing.T) {
	synctest.Test(t, testLevelerNext)
}

func testLevelerNext(t *testing.T) {
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	got := make(chan int, 100)
	for range 3 {
		wg.Go(func() {
			for {
				_, v, err := l.Next(ctx)
				if err != nil {
					return
				}
				got <- v
			}
		})
	}
	for i := range 100 {
		require.NoError(t, l.Push("k"+strconv.Itoa(i%7), i))
	}
	sum := 0
	for range 100 {
		sum += <-got
	}
	cancel()
	wg.Wait()
	assert.Equal(t, 4950, sum, "every item delivered once")
	_, _, err = l.Next(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

// TestLevelerSkipsRoundsExactly: when no key can afford its next item,
// Pop adds several rounds of credit at once. That must serve items in the
// same order as running the rounds one by one, which a plain deficit round
// robin (the model here) does.
func TestLevelerSkipsRoundsExactly(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		type item struct {
			key  string
			cost int
		}
		weights := map[string]int{}
		var pushed []item
		for k := range rapid.IntRange(1, 4).Draw(t, "keys") {
			key := "k" + strconv.Itoa(k)
			weights[key] = rapid.IntRange(1, 4).Draw(t, "weight")
			for range rapid.IntRange(1, 5).Draw(t, "items") {
				pushed = append(pushed, item{key, rapid.IntRange(1, 40).Draw(t, "cost")})
			}
		}
		// Interleave the keys' pushes in a drawn order.
		order := rapid.Permutation(pushed).Draw(t, "order")

		l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{
			Weight: func(key string) int { return weights[key] },
			Cost:   func(c int) int { return c },
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range order {
			if err := l.Push(it.key, it.cost); err != nil {
				t.Fatal(err)
			}
		}
		var got []item
		for range len(order) {
			key, cost, ok := l.Pop()
			if !ok {
				t.Fatalf("Pop found nothing after %d of %d items", len(got), len(order))
			}
			got = append(got, item{key, cost})
		}
		if _, _, ok := l.Pop(); ok {
			t.Fatal("Pop found more items than were pushed")
		}

		// The model: keys take turns in the order they became active; a
		// turn adds the key's weight to its credit and serves items while
		// the credit covers them; a key that runs out of items leaves and
		// loses its credit.
		type mkey struct {
			name   string
			items  []int
			credit int
		}
		var active []*mkey
		byName := map[string]*mkey{}
		for _, it := range order {
			k := byName[it.key]
			if k == nil {
				k = &mkey{name: it.key}
				byName[it.key] = k
				active = append(active, k)
			}
			k.items = append(k.items, it.cost)
		}
		var want []item
		for round := 0; len(active) > 0; round++ {
			if round > 1000 {
				t.Fatal("the model does not finish")
			}
			for i := 0; i < len(active); {
				k := active[i]
				k.credit += weights[k.name]
				for len(k.items) > 0 && k.items[0] <= k.credit {
					k.credit -= k.items[0]
					want = append(want, item{k.name, k.items[0]})
					k.items = k.items[1:]
				}
				if len(k.items) == 0 {
					active = append(active[:i], active[i+1:]...)
					continue
				}
				i++
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("served\n%v\nwant\n%v", got, want)
		}
	})
}

// TestLevelerHugeCostsAndWeights: costs and weights up to math.MaxInt are
// served in the fair order, and Pop returns: a credit that reached an item
// near math.MaxInt wrapped around and made Pop spin with the lock held.
func TestLevelerHugeCostsAndWeights(t *testing.T) {
	const huge = math.MaxInt
	for _, tc := range []struct {
		name    string
		weights map[string]int
		pushes  []string // key:cost, in order
		want    []string
	}{
		{"one key, a huge item", map[string]int{"a": 2}, []string{"a:huge"}, []string{"a:huge"}},
		{"two keys, huge items", map[string]int{"a": 1, "b": 3}, []string{"a:huge", "b:huge"}, []string{"b:huge", "a:huge"}},
		{"a huge weight", map[string]int{"a": huge}, []string{"a:1", "a:huge", "a:1"}, []string{"a:1", "a:huge", "a:1"}},
		// b's credit falls one short in the first round; in the second, a is
		// served first, as it comes first.
		{"huge weights and items", map[string]int{"a": huge, "b": huge - 1}, []string{"a:huge", "b:huge", "a:huge", "b:1"},
			[]string{"a:huge", "a:huge", "b:huge", "b:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := heijunka.NewLeveler(heijunka.LevelerOptions[string]{
				Weight: func(key string) int { return tc.weights[key] },
				Cost: func(item string) int {
					_, c, _ := strings.Cut(item, ":")
					if c == "huge" {
						return huge
					}
					n, _ := strconv.Atoi(c)
					return n
				},
			})
			require.NoError(t, err)
			for _, p := range tc.pushes {
				key, _, _ := strings.Cut(p, ":")
				require.NoError(t, l.Push(key, p))
			}
			got := make(chan []string, 1)
			go func() {
				var served []string
				for {
					_, item, ok := l.Pop()
					if !ok {
						got <- served
						return
					}
					served = append(served, item)
				}
			}()
			select {
			case served := <-got:
				assert.Equal(t, tc.want, served)
			case <-time.After(10 * time.Second):
				t.Fatal("Pop does not return")
			}
		})
	}
}

// TestLevelerForgetsServedItems: an item Pop returned is not kept by the
// Leveler, even while its key has more waiting, so the garbage collector
// can free it.
func TestLevelerForgetsServedItems(t *testing.T) {
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[*[1 << 10]byte]{})
	require.NoError(t, err)
	served := pushAndPop(t, l)
	runtime.GC()
	assert.True(t, served.Value() == nil, "the served item was collected")
	assert.Equal(t, 1, l.Len())
}

//go:noinline
func pushAndPop(t *testing.T, l *heijunka.Leveler[*[1 << 10]byte]) weak.Pointer[[1 << 10]byte] {
	require.NoError(t, l.Push("k", new([1 << 10]byte)))
	require.NoError(t, l.Push("k", new([1 << 10]byte)))
	_, item, ok := l.Pop()
	require.True(t, ok)
	return weak.Make(item)
}

// TestLevelerForgetsDrainedKeys: a key whose items were all served leaves
// the rotation and is not kept, with its buffer of Backlog items, once
// every key has drained.
func TestLevelerForgetsDrainedKeys(t *testing.T) {
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{})
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, l.Push("k"+strconv.Itoa(i), i))
	}
	for range 100 {
		_, _, ok := l.Pop()
		require.True(t, ok)
	}
	assert.Zero(t, l.KeysWaiting())
	assert.Zero(t, heijunka.RetainedKeys(l))
}

// TestLevelerNextWithDoneContext: Next with a context already done returns
// its error and leaves the items waiting, so a worker told to stop stops
// instead of draining the backlog.
func TestLevelerNextWithDoneContext(t *testing.T) {
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{})
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, l.Push("k", i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = l.Next(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 3, l.Len(), "nothing taken")
	_, v, err := l.Next(context.Background())
	require.NoError(t, err)
	assert.Zero(t, v, "the first item is still first")
}

// TestLevelerNextCanceledPassesTheWakeUpOn: a Next that took an item's
// wake-up and then finds its context ended hands the wake-up to another
// Next waiting, which gets the item. The bubble fails the test as a
// deadlock should the item be left waiting.
func TestLevelerNextCanceledPassesTheWakeUpOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for range 50 {
			l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{})
			require.NoError(t, err)
			type result struct {
				v   int
				err error
			}
			next := func(ctx context.Context, out chan<- result) {
				_, v, err := l.Next(ctx)
				out <- result{v, err}
			}
			ctxA, cancelA := context.WithCancel(context.Background())
			ctxB, cancelB := context.WithCancel(context.Background())
			a, b := make(chan result, 1), make(chan result, 1)
			go next(ctxA, a)
			synctest.Wait() // a waits first, and takes the first wake-up
			go next(ctxB, b)
			synctest.Wait()
			require.NoError(t, l.Push("k", 7))
			cancelA()
			if r := <-a; r.err == nil {
				assert.Equal(t, 7, r.v, "a took the item before it saw its context end")
				cancelB()
				assert.ErrorIs(t, (<-b).err, context.Canceled)
			} else {
				assert.ErrorIs(t, r.err, context.Canceled)
				r := <-b
				require.NoError(t, r.err)
				assert.Equal(t, 7, r.v, "b has the item a left")
				cancelB()
			}
		}
	})
}

// TestLevelerNewKeysDoNotStarveAWaitingKey: a key that starts waiting
// takes its turn after the keys waiting already. Here one key has a
// backlog and every Pop is followed by a Push of a key new to the
// Leveler, as many customers sending one request each do: the waiting key
// is still served every other item or so. A new key put at the end of the
// rotation's slice, where the turn had just come to, went before it every
// time, and it was never served again.
func TestLevelerNewKeysDoNotStarveAWaitingKey(t *testing.T) {
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{})
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, l.Push("waiting", i))
	}
	var order []string
	for i := range 12 {
		key, _, ok := l.Pop()
		require.True(t, ok)
		order = append(order, key)
		require.NoError(t, l.Push("new"+strconv.Itoa(i), i))
	}
	assert.Equal(t, []string{"waiting", "new0", "waiting", "new1", "new2", "waiting", "new3", "new4", "new5", "new6", "new7", "new8"}, order)
}

// TestLevelerTurnsInArrivalOrder: keys becoming active while others are
// served, by Pops and Pushes in a drawn order, take their turns in the
// order of a deficit round robin whose active list is a queue: a key whose
// turn ends goes to its back, and so does a key that starts waiting. A
// key's weight may change from one Push to the next (the latest applies),
// and Pushes over Backlog or MaxKeys are refused and change no order.
func TestLevelerTurnsInArrivalOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		weights := map[string]int{}
		backlog := rapid.IntRange(1, 8).Draw(t, "backlog")
		maxKeys := rapid.IntRange(1, 7).Draw(t, "maxKeys")
		l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{
			Backlog: backlog,
			MaxKeys: maxKeys,
			Weight:  func(key string) int { return weights[key] },
			Cost:    func(c int) int { return c },
		})
		if err != nil {
			t.Fatal(err)
		}
		type mkey struct {
			name   string
			items  []int
			credit int
			inTurn bool
		}
		var queue []*mkey // the model's active list; queue[0]'s turn is now
		byName := map[string]*mkey{}
		for step := range rapid.IntRange(1, 60).Draw(t, "steps") {
			if rapid.Bool().Draw(t, "push") {
				key := "k" + strconv.Itoa(rapid.IntRange(0, 5).Draw(t, "key"))
				if _, ok := weights[key]; !ok || rapid.Bool().Draw(t, "new weight") {
					weights[key] = rapid.IntRange(1, 3).Draw(t, "weight")
				}
				cost := rapid.IntRange(1, 6).Draw(t, "cost")
				var want error
				switch k := byName[key]; {
				case k == nil && len(queue) >= maxKeys:
					want = heijunka.ErrTooManyKeys
				case k != nil && len(k.items) >= backlog:
					want = heijunka.ErrBacklogFull
				}
				if err := l.Push(key, cost); err != want {
					t.Fatalf("step %d: Push(%s) = %v, want %v", step, key, err, want)
				}
				if want != nil {
					continue
				}
				k := byName[key]
				if k == nil {
					k = &mkey{name: key}
					byName[key] = k
					queue = append(queue, k)
				}
				k.items = append(k.items, cost)
				continue
			}
			key, cost, ok := l.Pop()
			if len(queue) == 0 {
				if ok {
					t.Fatalf("step %d: Pop found %s:%d in an empty Leveler", step, key, cost)
				}
				continue
			}
			var want *mkey
			for want == nil {
				k := queue[0]
				if !k.inTurn {
					k.credit += weights[k.name]
					k.inTurn = true
				}
				if k.items[0] <= k.credit {
					want = k
					break
				}
				k.inTurn = false
				queue = append(queue[1:], k)
			}
			if !ok || key != want.name || cost != want.items[0] {
				t.Fatalf("step %d: Pop gave %s:%d (%v), want %s:%d", step, key, cost, ok, want.name, want.items[0])
			}
			want.credit -= cost
			want.items = want.items[1:]
			if len(want.items) == 0 {
				queue = queue[1:]
				delete(byName, want.name)
			}
		}
	})
}

// TestZeroLevelerRefusesItems: the zero Leveler takes no item, and says
// that it was not made by NewLeveler (not that too many keys wait); Next
// returns that error at once, where it waited for its context to end.
func TestZeroLevelerRefusesItems(t *testing.T) {
	var l heijunka.Leveler[int]
	err := l.Push("k", 1)
	assert.ErrorContains(t, err, "not made by NewLeveler")
	assert.NotErrorIs(t, err, heijunka.ErrTooManyKeys)
	_, _, ok := l.Pop()
	assert.False(t, ok)
	assert.Zero(t, l.Len())
	assert.Zero(t, l.KeysWaiting())
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		_, _, err := l.Next(ctx)
		assert.ErrorContains(t, err, "not made by NewLeveler")
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "at once, not when the context ends")
	})
}
