package heijunka_test

// Behaviours users expect of staged rollouts, slow start and fair queuing
// elsewhere (canary steps with pauses and aborts, a weight that grows over
// a window from a minimum percent, weighted fair queuing with bounded
// queues), stated for Ramp, WarmUp and Leveler where their documentation
// claims them.

import (
	"context"
	"math"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
)

// TestRampOfOneStage: a ramp of a single stage is at its last stage from
// the start. At 100% it admits every key at once; below 100% it stays
// there (nothing promotes it further), and Advance says it is done
// without an event. Either may still be rolled back.
func TestRampOfOneStage(t *testing.T) {
	for _, percent := range []float64{100, 5} {
		t.Run(strconv.FormatFloat(percent, 'g', -1, 64), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var events []heijunka.RampEvent
				stage := heijunka.RampStage{Name: "only", Percent: percent, Bake: time.Hour}
				r, err := heijunka.NewRamp(heijunka.RampOptions{Stages: []heijunka.RampStage{stage},
					OnEvent: func(e heijunka.RampEvent) { events = append(events, e) }})
				require.NoError(t, err)
				st := r.Current()
				assert.True(t, st.Done, "the only stage is the last")
				assert.Equal(t, 0, st.Index)
				assert.Equal(t, percent, st.Percent)

				admitted := 0
				const keys = 20_000
				for k := range keys {
					if r.Admits("customer-" + strconv.Itoa(k)) {
						admitted++
					}
				}
				if percent == 100 {
					assert.Equal(t, keys, admitted, "every key")
				} else {
					assert.InDelta(t, percent, 100*float64(admitted)/keys, 1)
				}

				time.Sleep(2 * stage.Bake)
				assert.ErrorIs(t, r.Advance(), heijunka.ErrRampDone, "baked or not, there is no stage to go to")
				assert.Empty(t, events)
				assert.Equal(t, st, r.Current(), "nothing moved")

				require.NoError(t, r.Rollback("abort"))
				assert.False(t, r.Admits("customer-0"))
				require.Len(t, events, 1)
				assert.Equal(t, heijunka.RampRolledBack, events[0].Kind)
				assert.Equal(t, stage, events[0].From)
			})
		})
	}
}

// TestRampPausedAtTheBakeBoundary: a stage holds (a pause) until its bake
// is over, to the nanosecond: one nanosecond before BakedAt Advance is
// refused and says how long is left, at BakedAt it moves on. A stage
// baked for longer than it needed (a pause resumed late) moves on as
// well, and the next stage bakes from then.
func TestRampPausedAtTheBakeBoundary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := heijunka.NewRamp(heijunka.RampOptions{Stages: []heijunka.RampStage{
			{Name: "canary", Percent: 5, Bake: 10 * time.Minute},
			{Name: "staging", Percent: 25, Bake: time.Nanosecond},
			{Name: "prod", Percent: 100},
		}})
		require.NoError(t, err)
		baked := r.Current().BakedAt
		time.Sleep(time.Until(baked) - time.Nanosecond)
		err = r.Advance()
		require.ErrorIs(t, err, heijunka.ErrBaking)
		assert.Equal(t, `heijunka: stage still baking: "canary" needs 1ns more`, err.Error())
		assert.Equal(t, 0, r.Current().Index, "a refused Advance changes nothing")

		time.Sleep(time.Nanosecond)
		require.Equal(t, baked, time.Now())
		require.NoError(t, r.Advance(), "at BakedAt")
		st := r.Current()
		assert.Equal(t, "staging", st.Stage.Name)
		assert.Equal(t, baked, st.Since)

		time.Sleep(24 * time.Hour) // paused for a day
		require.NoError(t, r.Advance())
		st = r.Current()
		assert.True(t, st.Done)
		assert.Equal(t, baked.Add(24*time.Hour), st.Since, "the last stage began when it was entered")
	})
}

// TestRampAbortedAtItsBoundaries: Rollback (an abort) drops the ramp to
// no key from any position: before the first stage has baked at all, at
// the instant a stage has baked, and after the ramp completed. The event
// names the stage left; the ramp stays rolled back; and a new Ramp with
// the same salt and stages (a retry) admits the same keys as the first
// did at its first stage.
func TestRampAbortedAtItsBoundaries(t *testing.T) {
	stages := []heijunka.RampStage{
		{Name: "canary", Percent: 5, Bake: 10 * time.Minute},
		{Name: "staging", Percent: 25, Bake: 30 * time.Minute},
		{Name: "prod", Percent: 100},
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, r *heijunka.Ramp) // brings r to where it is aborted
		from string
	}{
		{"at once", func(*testing.T, *heijunka.Ramp) {}, "canary"},
		{"the instant the first stage has baked", func(t *testing.T, r *heijunka.Ramp) {
			time.Sleep(time.Until(r.Current().BakedAt))
		}, "canary"},
		{"just after an advance", func(t *testing.T, r *heijunka.Ramp) {
			time.Sleep(10 * time.Minute)
			require.NoError(t, r.Advance())
		}, "staging"},
		{"after completion", func(t *testing.T, r *heijunka.Ramp) {
			time.Sleep(10 * time.Minute)
			require.NoError(t, r.Advance())
			time.Sleep(30 * time.Minute)
			require.NoError(t, r.Advance())
			require.True(t, r.Current().Done)
		}, "prod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var events []heijunka.RampEvent
				r, err := heijunka.NewRamp(heijunka.RampOptions{Name: "v2", Stages: stages, Salt: "v2",
					OnEvent: func(e heijunka.RampEvent) { events = append(events, e) }})
				require.NoError(t, err)
				var first []bool
				for k := range 2000 {
					first = append(first, r.Admits("customer-"+strconv.Itoa(k)))
				}
				tc.run(t, r)
				require.NoError(t, r.Rollback("analysis failed"))
				last := events[len(events)-1]
				assert.Equal(t, heijunka.RampRolledBack, last.Kind)
				assert.Equal(t, tc.from, last.From.Name)
				assert.Equal(t, heijunka.RampStage{}, last.To)
				assert.Equal(t, time.Now(), last.At)
				assert.Equal(t, "analysis failed", last.Reason)
				for k := range 2000 {
					key := "customer-" + strconv.Itoa(k)
					require.False(t, r.Admits(key), key)
					require.ErrorIs(t, r.Admit(context.Background(), key), heijunka.ErrOutsideRamp, key)
				}
				time.Sleep(time.Hour)
				assert.ErrorIs(t, r.Advance(), heijunka.ErrRolledBack, "for good")
				assert.True(t, r.Current().RolledBack)

				retry, err := heijunka.NewRamp(heijunka.RampOptions{Name: "v2", Stages: stages, Salt: "v2"})
				require.NoError(t, err)
				for k, in := range first {
					require.Equal(t, in, retry.Admits("customer-"+strconv.Itoa(k)), "customer-%d", k)
				}
			})
		})
	}
}

// TestWarmUpGrowsFromItsFloorToFull: as a slow start's weight, the limit
// of a climb starts at From of the full Rate (From of the Burst, rounded,
// at least 1), never falls as time goes on, never passes the full Limit,
// is a valid Limit at every step, and is the full Limit from Over on.
func TestWarmUpGrowsFromItsFloorToFull(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		full := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 1e4).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 1000).Draw(t, "burst"),
		}
		from := rapid.Float64Range(0.01, 1).Draw(t, "from")
		steps := rapid.IntRange(1, 50).Draw(t, "steps")
		over := time.Duration(rapid.Int64Range(int64(steps), int64(time.Hour)).Draw(t, "over"))
		lim, err := heijunka.NewLimiter(full, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: from, Over: over, Steps: steps})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartAt(t0); err != nil {
			t.Fatal(err)
		}
		floor := w.LimitAt(t0)
		if want := full.Rate * from; math.Abs(floor.Rate-want) > 1e-9*want {
			t.Fatalf("first step's Rate %v, want %v", floor.Rate, want)
		}
		if want := max(1, int(math.Round(float64(full.Burst)*from))); floor.Burst != want {
			t.Fatalf("first step's Burst %d, want %d", floor.Burst, want)
		}
		prev := heijunka.Limit{}
		for _, at := range []time.Duration{-time.Hour, 0} {
			if got := w.LimitAt(t0.Add(at)); got != floor {
				t.Fatalf("at %v: %v, want the first step %v", at, got, floor)
			}
		}
		for i := range 200 {
			at := time.Duration(int64(over) * int64(i) / 199)
			got := w.LimitAt(t0.Add(at))
			if err := got.Validate(); err != nil {
				t.Fatalf("at %v: %v", at, err)
			}
			if got.Rate < prev.Rate || got.Burst < prev.Burst {
				t.Fatalf("at %v the limit fell, from %v to %v", at, prev, got)
			}
			if got.Rate > full.Rate || got.Burst > full.Burst {
				t.Fatalf("at %v: %v above the full %v", at, got, full)
			}
			prev = got
		}
		if got := w.LimitAt(t0.Add(over)); got != full {
			t.Fatalf("at Over: %v, want %v", got, full)
		}
	})
}

// TestLevelerFairOverManyRounds: keys that always have work are served in
// proportion to their weights, whatever their items cost and whenever
// they started waiting. Over the time two keys both wait, the cost served
// to each, divided by its weight, differs by at most 3 + 2·(C-1)/w, C the
// largest cost of an item and w the smaller of the two weights: a few
// rounds, never a drift that grows with the number of rounds.
func TestLevelerFairOverManyRounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pops := rapid.IntRange(1, 300).Draw(t, "pops")
		maxCost := rapid.IntRange(1, 8).Draw(t, "max cost")
		n := rapid.IntRange(2, 5).Draw(t, "keys")
		weights := map[string]int{}
		arrival := make([]int, n) // the pop before which the key starts waiting
		names := make([]string, n)
		for i := range n {
			names[i] = "k" + strconv.Itoa(i)
			weights[names[i]] = rapid.IntRange(1, 5).Draw(t, "weight")
			if i > 0 {
				arrival[i] = rapid.IntRange(0, pops-1).Draw(t, "arrival")
			}
		}
		// Each key has more items than there are pops: it never runs out.
		l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{
			Backlog: pops + 1,
			Weight:  func(key string) int { return weights[key] },
			Cost:    func(cost int) int { return cost },
		})
		if err != nil {
			t.Fatal(err)
		}
		served := map[string]int{}
		base := make([]map[string]int, n) // served, when key i started waiting
		for p := range pops {
			for i := range n {
				if arrival[i] != p {
					continue
				}
				base[i] = map[string]int{}
				for k, v := range served {
					base[i][k] = v
				}
				for range pops + 1 {
					if err := l.Push(names[i], rapid.IntRange(1, maxCost).Draw(t, "cost")); err != nil {
						t.Fatal(err)
					}
				}
			}
			key, cost, ok := l.Pop()
			if !ok {
				t.Fatalf("pop %d: nothing, with every key waiting", p)
			}
			served[key] += cost
			for i := range n {
				for j := range n {
					if i == j || arrival[i] > p || arrival[j] > p {
						continue
					}
					since := base[i] // the later of the two to start waiting
					if arrival[j] > arrival[i] {
						since = base[j]
					}
					a, b := names[i], names[j]
					wa, wb := float64(weights[a]), float64(weights[b])
					gap := float64(served[a]-since[a])/wa - float64(served[b]-since[b])/wb
					bound := 3 + 2*float64(maxCost-1)/min(wa, wb)
					if math.Abs(gap) > bound {
						t.Fatalf("pop %d: %s (weight %v) and %s (weight %v) apart by %.2f rounds, bound %.2f",
							p, a, wa, b, wb, gap, bound)
					}
				}
			}
		}
	})
}

// TestLevelerLowWeightNotStarvedUnderSustainedLoad: heavy keys of weight
// 100 that never run out of work (each item served is pushed again) do not
// starve a key of weight 1, nor one whose Weight is 0 (taken as 1): each
// is served once every round, one item in every 302 here, and drains.
func TestLevelerLowWeightNotStarvedUnderSustainedLoad(t *testing.T) {
	weights := map[string]int{"heavy1": 100, "heavy2": 100, "heavy3": 100, "low": 1, "zero": 0}
	l, err := heijunka.NewLeveler(heijunka.LevelerOptions[int]{
		Backlog: 200,
		Weight:  func(key string) int { return weights[key] },
	})
	require.NoError(t, err)
	for _, k := range []string{"heavy1", "heavy2", "heavy3"} {
		for i := range 200 {
			require.NoError(t, l.Push(k, i))
		}
	}
	for i := range 5 {
		require.NoError(t, l.Push("low", i))
		require.NoError(t, l.Push("zero", i))
	}
	const round = 3*100 + 1 + 1
	last := map[string]int{"low": 0, "zero": 0}
	for pop := 1; last["low"] >= 0 || last["zero"] >= 0; pop++ {
		require.Less(t, pop, 10*round, "the light keys were not drained")
		key, item, ok := l.Pop()
		require.True(t, ok)
		if _, light := last[key]; light {
			assert.LessOrEqual(t, pop-last[key], round, "%s waited more than a round", key)
			last[key] = pop
			if item == 4 {
				last[key] = -1 << 30 // drained
			}
			continue
		}
		require.NoError(t, l.Push(key, item), "the heavy key sends again")
	}
	assert.Equal(t, 3, l.KeysWaiting(), "the heavy keys wait still")
}
