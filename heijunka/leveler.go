package heijunka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

var (
	// ErrBacklogFull is returned by Leveler.Push when the key already has
	// Backlog items waiting.
	ErrBacklogFull = errors.New("heijunka: backlog full")
	// ErrTooManyKeys is returned by Leveler.Push for a new key when
	// MaxKeys keys already have items waiting.
	ErrTooManyKeys = errors.New("heijunka: too many keys waiting")
)

// LevelerOptions configures a Leveler. The zero value is ready to use.
type LevelerOptions[T any] struct {
	// Backlog is how many items one key may have waiting. Default 100.
	Backlog int
	// MaxKeys is how many keys may have items waiting. Default 10,000.
	MaxKeys int
	// Weight gives a key's share: a key of weight 3 is served three times
	// as much as a key of weight 1 when both have work. nil, or a result
	// below 1, means 1. Push calls it for each item, outside the Leveler's
	// lock; a key's latest weight applies from then on.
	Weight func(key string) int
	// Cost gives an item's size in the units Weight shares (bytes, rows);
	// nil, or a result below 1, means 1. Push calls it once per item,
	// outside the Leveler's lock.
	Cost func(item T) int
}

// Leveler interleaves work from many keys fairly, by deficit round robin:
// each key with waiting items takes its turn, and a turn serves items
// until their cost uses up the key's credit (its weight per round, plus
// what it did not use last time it was served). A key that starts waiting
// takes its first turn after the keys waiting already. A key sending a
// hundred times more than the others does not slow them down: it only
// fills its own bounded backlog, and Push tells it so with ErrBacklogFull.
//
// Push and Pop never block; Next waits for an item. No goroutine runs in
// the background. Make one with NewLeveler; the zero Leveler is not
// usable: it holds no item, and Push and Next return an error saying it
// was not made by NewLeveler. A Leveler is safe for concurrent use.
type Leveler[T any] struct {
	backlog int
	maxKeys int
	weight  func(string) int
	cost    func(T) int

	mu     sync.Mutex
	keys   map[string]*levelKey[T]
	active []*levelKey[T] // keys with items, in turn order from head, round and round; active[head] is served
	head   int
	n      int
	ready  chan struct{} // signalled when items arrive
}

type levelKey[T any] struct {
	key     string
	items   []levelItem[T] // ring buffer of len backlog, lazily grown
	first   int
	count   int
	weight  int
	deficit int
	inTurn  bool
}

type levelItem[T any] struct {
	item T
	cost int
}

// NewLeveler returns an empty Leveler, or an error for a negative option.
func NewLeveler[T any](opts LevelerOptions[T]) (*Leveler[T], error) {
	l := &Leveler[T]{backlog: opts.Backlog, maxKeys: opts.MaxKeys, weight: opts.Weight, cost: opts.Cost,
		keys: map[string]*levelKey[T]{}, ready: make(chan struct{}, 1)}
	if l.backlog < 0 {
		return nil, fmt.Errorf("heijunka: leveler Backlog %d is negative", l.backlog)
	}
	if l.maxKeys < 0 {
		return nil, fmt.Errorf("heijunka: leveler MaxKeys %d is negative", l.maxKeys)
	}
	if l.backlog == 0 {
		l.backlog = 100
	}
	if l.maxKeys == 0 {
		l.maxKeys = 10_000
	}
	return l, nil
}

// Push queues item for key. It returns ErrBacklogFull when key has Backlog
// items waiting and ErrTooManyKeys when key is new and MaxKeys keys are
// waiting; the item is not queued then.
func (l *Leveler[T]) Push(key string, item T) error {
	// The caller's functions run before the lock is taken, so that one
	// that panics or blocks cannot hold up the Leveler.
	w, c := 1, 1
	if l.weight != nil {
		w = max(1, l.weight(key))
	}
	if l.cost != nil {
		c = max(1, l.cost(item))
	}
	if l.keys == nil {
		return errLevelerNotMade
	}
	l.mu.Lock()
	k := l.keys[key]
	if k == nil {
		if len(l.keys) >= l.maxKeys {
			l.mu.Unlock()
			return ErrTooManyKeys
		}
		k = &levelKey[T]{key: key}
		l.keys[key] = k
	}
	k.weight = w
	if k.count >= l.backlog {
		l.mu.Unlock()
		return ErrBacklogFull
	}
	if k.count == len(k.items) {
		k.grow(l.backlog)
	}
	k.items[(k.first+k.count)%len(k.items)] = levelItem[T]{item, c}
	k.count++
	if k.count == 1 {
		// A key that starts waiting takes its turn after every key waiting
		// already, including those whose turn came this round: it goes
		// last in the rotation, just before the key whose turn is next.
		// (Put at the end of the slice, it went first whenever the turn
		// had come to the end, and keys new at each Pop starved the rest.)
		if l.head >= len(l.active) {
			l.head = 0
		}
		l.active = slices.Insert(l.active, l.head, k)
		l.head++
	}
	l.n++
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
	return nil
}

func (k *levelKey[T]) grow(backlog int) {
	items := make([]levelItem[T], min(backlog, max(4, 2*len(k.items))))
	for i := range k.count {
		items[i] = k.items[(k.first+i)%len(k.items)]
	}
	k.items, k.first = items, 0
}

// Pop returns the next item in fair order, or ok false when nothing waits.
func (l *Leveler[T]) Pop() (key string, item T, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		return "", item, false
	}
	for idle := 0; ; {
		if l.head >= len(l.active) {
			l.head = 0
		}
		k := l.active[l.head]
		if !k.inTurn {
			k.deficit = addCapped(k.deficit, k.weight)
			k.inTurn = true
		}
		if c := k.items[k.first].cost; c <= k.deficit {
			return l.serve(k, c)
		}
		// The key's turn is over; the next key's begins.
		k.inTurn = false
		l.head++
		if idle++; idle == len(l.active) {
			l.skipRounds()
			idle = 0
		}
	}
}

// serve takes the first item of k, which is at l.head.
func (l *Leveler[T]) serve(k *levelKey[T], cost int) (string, T, bool) {
	item := k.items[k.first].item
	k.items[k.first] = levelItem[T]{}
	k.first = (k.first + 1) % len(k.items)
	k.count--
	k.deficit -= cost
	l.n--
	if k.count == 0 {
		// An idle key keeps no credit and no place: it leaves the rotation,
		// and a later Push starts it afresh. slices.Delete clears the slot
		// freed at the end, which would keep the key and its buffer.
		l.active = slices.Delete(l.active, l.head, l.head+1)
		delete(l.keys, k.key)
	}
	return k.key, item, true
}

// skipRounds runs when a whole round served nothing (every first item
// costs more than its key's credit): it adds at once the rounds of credit
// the closest key needs, so a huge Cost does not make Pop spin.
func (l *Leveler[T]) skipRounds() {
	rounds := math.MaxInt
	for _, k := range l.active {
		need := k.items[k.first].cost - k.deficit // at least 1
		rounds = min(rounds, (need-1)/k.weight+1)
	}
	// No key reaches its first item's cost: each stays below math.MaxInt.
	for _, k := range l.active {
		k.deficit += (rounds - 1) * k.weight
	}
}

// addCapped returns a+b, or math.MaxInt where that overflows (b ≥ 0): a
// credit near math.MaxInt, for an item that costs about as much, must not
// wrap around to a debt no round pays.
func addCapped(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

var errLevelerNotMade = errors.New("heijunka: Leveler not made by NewLeveler")

// Next waits for an item and returns it, or returns ctx's error. A ctx
// done already returns its error even when items wait: they stay queued,
// and a worker told to stop does not go on draining the backlog.
func (l *Leveler[T]) Next(ctx context.Context) (string, T, error) {
	if l.ready == nil {
		// Nothing would ever wake the wait below.
		var zero T
		return "", zero, errLevelerNotMade
	}
	for {
		if err := ctx.Err(); err != nil {
			// The wake-up this call may have taken is another waiter's.
			l.wakeIfWaiting()
			var zero T
			return "", zero, err
		}
		if key, item, ok := l.Pop(); ok {
			l.wakeIfWaiting() // pass the wake-up on to another waiter
			return key, item, nil
		}
		select {
		case <-l.ready:
		case <-ctx.Done():
		}
	}
}

// wakeIfWaiting signals ready if items wait.
func (l *Leveler[T]) wakeIfWaiting() {
	if l.Len() > 0 {
		select {
		case l.ready <- struct{}{}:
		default:
		}
	}
}

// Len returns the number of items waiting.
func (l *Leveler[T]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// KeysWaiting returns the number of keys with items waiting.
func (l *Leveler[T]) KeysWaiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.active)
}
