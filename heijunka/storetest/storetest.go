// Package storetest is the conformance suite for heijunka.Store
// implementations, in the manner of testing/slogtest: a store that passes
// Run behaves like every other store, so a heijunka.Keyed limiter may use
// any of them. In the store's own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) heijunka.Store {
//			s, err := mystore.New(...) // a fresh, empty store
//			require.NoError(t, err)
//			return s
//		})
//	}
//
// TestStore runs the same suite without a *testing.T, and returns what it
// found as an error, as testing/fstest.TestFS does.
//
// The suite calls Take with explicit times, so a store must decide at the
// time it is given (a Redis store reading the server's clock must be
// configured not to, for the suite). Every subtest asks newStore for a fresh
// store and uses keys of its own.
package storetest

import (
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
)

// Run runs the conformance suite against the stores newStore makes.
func Run(t *testing.T, newStore func(t *testing.T) heijunka.Store) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

// tb is what a case of the suite needs of the test running it: a
// *testing.T under Run, a checker under TestStore.
type tb interface {
	Helper()
	Name() string
	Error(args ...any)
	Errorf(format string, args ...any)
	FailNow()
}

// base is a fixed instant with whole microseconds, so stores of any time
// resolution down to a microsecond agree exactly.
var base = time.Unix(1_900_000_000, 0)

// sixPerMinute: burst 5, one event every 10 s. A store may forget a key
// by a clock of its own once the key's schedule has passed on it, as Redis
// expires a key: the intervals are long enough that no key the suite still
// reads is forgotten while it runs, however slow the machine.
var sixPerMinute = heijunka.Limit{Rate: 0.1, Burst: 5}

const interval = 10 * time.Second

var cases = []struct {
	name string
	run  func(t tb, s heijunka.Store)
}{
	{"StartsFull", testStartsFull},
	{"Refills", testRefills},
	{"DeniedRecordsNothing", testDeniedRecordsNothing},
	{"MoreThanBurst", testMoreThanBurst},
	{"ZeroEventsReportsState", testZeroEvents},
	{"BatchOfEvents", testBatch},
	{"KeysAreIndependent", testKeysIndependent},
	{"Reset", testReset},
	{"UnlimitedAndClosed", testUnlimitedAndClosed},
	{"InvalidArguments", testInvalid},
	{"FreshAfterQuiet", testFreshAfterQuiet},
	{"TimeGoingBack", testTimeGoingBack},
	{"WindowBound", testWindowBound},
	{"ConcurrentAtOneInstant", testConcurrent},
	{"OneScheduleWhateverTheLimit", testLimitChanged},
}

func key(t tb, k string) string { return t.Name() + "/" + k }

func take(t tb, s heijunka.Store, k string, l heijunka.Limit, now time.Time, n int) heijunka.Decision {
	t.Helper()
	d, err := s.Take(context.Background(), k, l, now, n)
	require.NoError(t, err)
	return d
}

func testStartsFull(t tb, s heijunka.Store) {
	k := key(t, "a")
	for i := range sixPerMinute.Burst {
		d := take(t, s, k, sixPerMinute, base, 1)
		require.True(t, d.Allowed, "event %d of a full burst", i)
		assert.Equal(t, sixPerMinute.Burst-1-i, d.Remaining)
		assert.Equal(t, time.Duration(0), d.RetryAfter)
		assert.Equal(t, time.Duration(i+1)*interval, d.ResetAfter)
		assert.Equal(t, sixPerMinute, d.Limit)
		assert.False(t, d.FailedOpen, "a decision the store made did not fail open")
	}
	d := take(t, s, k, sixPerMinute, base, 1)
	assert.False(t, d.Allowed)
	assert.Equal(t, 0, d.Remaining)
	assert.Equal(t, interval, d.RetryAfter)
	assert.Equal(t, 5*interval, d.ResetAfter)
}

func testRefills(t tb, s heijunka.Store) {
	k := key(t, "a")
	for range sixPerMinute.Burst {
		require.True(t, take(t, s, k, sixPerMinute, base, 1).Allowed)
	}
	now := base.Add(interval - time.Millisecond)
	d := take(t, s, k, sixPerMinute, now, 1)
	require.False(t, d.Allowed, "one interval has not passed")
	assert.Equal(t, time.Millisecond, d.RetryAfter)

	now = base.Add(interval)
	require.True(t, take(t, s, k, sixPerMinute, now, 1).Allowed, "one event refilled")
	require.False(t, take(t, s, k, sixPerMinute, now, 1).Allowed, "only one")

	now = base.Add(3 * interval)
	d = take(t, s, k, sixPerMinute, now, 2)
	require.True(t, d.Allowed, "two more intervals, two events")
	assert.Equal(t, 0, d.Remaining)
}

func testDeniedRecordsNothing(t tb, s heijunka.Store) {
	k := key(t, "a")
	for range sixPerMinute.Burst {
		require.True(t, take(t, s, k, sixPerMinute, base, 1).Allowed)
	}
	for range 100 {
		require.False(t, take(t, s, k, sixPerMinute, base, 1).Allowed)
	}
	// Had the denials counted, the key would owe 100 more intervals.
	require.True(t, take(t, s, k, sixPerMinute, base.Add(interval), 1).Allowed)
}

func testMoreThanBurst(t tb, s heijunka.Store) {
	k := key(t, "a")
	d := take(t, s, k, sixPerMinute, base, sixPerMinute.Burst+1)
	assert.False(t, d.Allowed)
	assert.Equal(t, heijunka.InfDuration, d.RetryAfter)
	assert.Equal(t, sixPerMinute.Burst, d.Remaining)
	// So many that n intervals overflow a duration: still more than the
	// burst, refused, and recording nothing.
	d = take(t, s, k, sixPerMinute, base, math.MaxInt)
	assert.False(t, d.Allowed)
	assert.Equal(t, heijunka.InfDuration, d.RetryAfter)
	assert.Equal(t, sixPerMinute.Burst, d.Remaining)
	d = take(t, s, k, sixPerMinute, base, sixPerMinute.Burst)
	assert.True(t, d.Allowed, "a whole burst still fits")
}

func testZeroEvents(t tb, s heijunka.Store) {
	k := key(t, "a")
	d := take(t, s, k, sixPerMinute, base, 0)
	assert.True(t, d.Allowed)
	assert.Equal(t, sixPerMinute.Burst, d.Remaining)
	assert.Equal(t, time.Duration(0), d.ResetAfter)
	require.True(t, take(t, s, k, sixPerMinute, base, 2).Allowed)
	d = take(t, s, k, sixPerMinute, base.Add(interval/2), 0)
	assert.True(t, d.Allowed)
	assert.Equal(t, 3, d.Remaining)
	assert.Equal(t, 2*interval-interval/2, d.ResetAfter)
	d = take(t, s, k, sixPerMinute, base.Add(interval/2), 3)
	assert.True(t, d.Allowed, "n = 0 took nothing")
}

func testBatch(t tb, s heijunka.Store) {
	k := key(t, "a")
	d := take(t, s, k, sixPerMinute, base, 3)
	require.True(t, d.Allowed)
	assert.Equal(t, 2, d.Remaining)
	d = take(t, s, k, sixPerMinute, base, 3)
	require.False(t, d.Allowed)
	assert.Equal(t, 2, d.Remaining)
	assert.Equal(t, interval, d.RetryAfter, "the third event needs one interval")
}

func testKeysIndependent(t tb, s heijunka.Store) {
	a, b := key(t, "a"), key(t, "b")
	require.True(t, take(t, s, a, sixPerMinute, base, sixPerMinute.Burst).Allowed)
	require.False(t, take(t, s, a, sixPerMinute, base, 1).Allowed)
	d := take(t, s, b, sixPerMinute, base, 1)
	assert.True(t, d.Allowed)
	assert.Equal(t, sixPerMinute.Burst-1, d.Remaining)
	for _, k := range []string{"", "ключ", "a b\n\x00", string(make([]byte, 300))} {
		assert.True(t, take(t, s, key(t, k), sixPerMinute, base, sixPerMinute.Burst).Allowed, "key %q", k)
	}
}

func testReset(t tb, s heijunka.Store) {
	k := key(t, "a")
	require.True(t, take(t, s, k, sixPerMinute, base, sixPerMinute.Burst).Allowed)
	require.False(t, take(t, s, k, sixPerMinute, base, 1).Allowed)
	require.NoError(t, s.Reset(context.Background(), k))
	assert.True(t, take(t, s, k, sixPerMinute, base, sixPerMinute.Burst).Allowed)
	require.NoError(t, s.Reset(context.Background(), key(t, "never-seen")))
}

func testUnlimitedAndClosed(t tb, s heijunka.Store) {
	k := key(t, "a")
	for range 1000 {
		d := take(t, s, k, heijunka.Unlimited(), base, 1000)
		require.True(t, d.Allowed)
	}
	// An infinite Rate ignores its Burst, 0 included, and takes any n.
	d := take(t, s, k, heijunka.Limit{Rate: math.Inf(1)}, base, math.MaxInt)
	assert.True(t, d.Allowed, "an infinite rate of burst 0")
	assert.Equal(t, math.MaxInt, d.Remaining)
	for _, closed := range []heijunka.Limit{{}, {Burst: 5}} {
		d = take(t, s, k, closed, base, 1)
		assert.False(t, d.Allowed, "a closed limit admits nothing, whatever its burst: %+v", closed)
		assert.Equal(t, heijunka.InfDuration, d.RetryAfter)
		assert.True(t, take(t, s, k, closed, base, 0).Allowed, "but no events: %+v", closed)
	}
	assert.True(t, take(t, s, k, sixPerMinute, base, sixPerMinute.Burst).Allowed,
		"unlimited and closed decisions record nothing")
}

func testInvalid(t tb, s heijunka.Store) {
	ctx := context.Background()
	k := key(t, "a")
	for _, l := range []heijunka.Limit{
		{Rate: -1, Burst: 1},
		{Rate: 10, Burst: -1},
		{Rate: 10, Burst: 0},
		heijunka.PerSecond(2e9),
	} {
		d, err := s.Take(ctx, k, l, base, 1)
		assert.Error(t, err, "limit %+v", l)
		assert.False(t, d.Allowed, "limit %+v", l)
	}
	d, err := s.Take(ctx, k, sixPerMinute, base, -1)
	assert.Error(t, err)
	assert.False(t, d.Allowed)
	assert.True(t, take(t, s, k, sixPerMinute, base, sixPerMinute.Burst).Allowed, "errors recorded nothing")
}

func testFreshAfterQuiet(t tb, s heijunka.Store) {
	k := key(t, "a")
	require.True(t, take(t, s, k, sixPerMinute, base, sixPerMinute.Burst).Allowed)
	d := take(t, s, k, sixPerMinute, base.Add(time.Hour), 0)
	assert.Equal(t, sixPerMinute.Burst, d.Remaining, "full again, and not fuller")
	assert.Equal(t, time.Duration(0), d.ResetAfter)
	require.True(t, take(t, s, k, sixPerMinute, base.Add(time.Hour), sixPerMinute.Burst).Allowed)
	require.False(t, take(t, s, k, sixPerMinute, base.Add(time.Hour), 1).Allowed)
	// Decades later: the time between requests is never turned into a
	// count of events that could overflow.
	years := base.Add(50 * 365 * 24 * time.Hour)
	d = take(t, s, k, sixPerMinute, years, 0)
	assert.Equal(t, sixPerMinute.Burst, d.Remaining, "full again after decades, and not fuller")
	require.True(t, take(t, s, k, sixPerMinute, years, sixPerMinute.Burst).Allowed)
	require.False(t, take(t, s, k, sixPerMinute, years, 1).Allowed)
}

func testTimeGoingBack(t tb, s heijunka.Store) {
	k := key(t, "a")
	require.True(t, take(t, s, k, sixPerMinute, base, sixPerMinute.Burst).Allowed)
	earlier := base.Add(-time.Minute)
	d := take(t, s, k, sixPerMinute, earlier, 1)
	assert.False(t, d.Allowed, "a clock stepping back gains nothing")
	assert.Greater(t, d.RetryAfter, time.Duration(0))
}

// testWindowBound drives a key with a pseudo-random sequence of requests
// and checks the defining property: over any window of length w no more
// than Burst + Rate·w events pass.
func testWindowBound(t tb, s heijunka.Store) {
	k := key(t, "a")
	var admitted []time.Time
	now := base
	x := uint64(42)
	for range 400 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		now = now.Add(time.Duration(x%90) * interval / 100)
		n := int(x>>20)%3 + 1
		if take(t, s, k, sixPerMinute, now, n).Allowed {
			for range n {
				admitted = append(admitted, now)
			}
		}
	}
	require.NotEmpty(t, admitted)
	for i := range admitted {
		for j := i; j < len(admitted); j++ {
			w := admitted[j].Sub(admitted[i])
			bound := float64(sixPerMinute.Burst) + sixPerMinute.Rate*w.Seconds()
			require.LessOrEqual(t, float64(j-i+1), bound+1e-9, "window %v", w)
		}
	}
}

// testLimitChanged checks that the Limit is an argument of each Take, not
// part of a key's state: a key has one schedule whatever the Limit it is
// decided under, so one store serves any number of limits, and a
// Keyed.SetLimit keeps each key's schedule as it is.
func testLimitChanged(t tb, s heijunka.Store) {
	k := key(t, "a")
	slow := heijunka.Limit{Rate: sixPerMinute.Rate / 10, Burst: 2} // 10 intervals between events
	require.True(t, take(t, s, k, sixPerMinute, base, sixPerMinute.Burst).Allowed)
	// The schedule lies 5 intervals ahead: one slow event brings it to 15.
	d := take(t, s, k, slow, base, 1)
	require.True(t, d.Allowed, "the schedule kept, 5 intervals ahead, leaves room for one slow event")
	assert.Equal(t, slow, d.Limit)
	assert.Equal(t, 0, d.Remaining)
	assert.Equal(t, 15*interval, d.ResetAfter)
	d = take(t, s, k, slow, base, 1)
	require.False(t, d.Allowed, "a second slow event would run 25 intervals ahead")
	assert.Equal(t, slow, d.Limit)
	assert.Equal(t, 5*interval, d.RetryAfter)
	assert.Equal(t, 15*interval, d.ResetAfter)
	// Back under the first limit, the schedule still lies 15 intervals
	// after base.
	d = take(t, s, k, sixPerMinute, base.Add(10*interval), 1)
	require.False(t, d.Allowed, "the schedule the slow limit moved on counts")
	assert.Equal(t, sixPerMinute, d.Limit)
	assert.Equal(t, interval, d.RetryAfter)
	d = take(t, s, k, sixPerMinute, base.Add(11*interval), 1)
	require.True(t, d.Allowed)
	assert.Equal(t, 0, d.Remaining)
	// Two limits on two keys of one store, in turn, each decided under
	// its own.
	a, b := key(t, "b"), key(t, "c")
	for i := range 2 {
		require.True(t, take(t, s, a, slow, base, 1).Allowed, "slow event %d", i)
		require.True(t, take(t, s, b, sixPerMinute, base, 1).Allowed, "fast event %d", i)
	}
	assert.False(t, take(t, s, a, slow, base, 1).Allowed, "slow burst 2")
	assert.True(t, take(t, s, b, sixPerMinute, base, 3).Allowed, "fast burst 5")
}

func testConcurrent(t tb, s heijunka.Store) {
	k := key(t, "a")
	limit := heijunka.Limit{Rate: 1, Burst: 50}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			// A store that panics here fails the case: nothing else
			// could recover the panic, and it would end the program
			// that called TestStore.
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("goroutine %d: panic: %v", g, v)
				}
			}()
			for range 20 {
				d, err := s.Take(context.Background(), k, limit, base, 1)
				if err != nil {
					t.Error("goroutine " + strconv.Itoa(g) + ": " + err.Error())
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(limit.Burst), admitted.Load(), "160 requests at one instant, burst 50")
}
