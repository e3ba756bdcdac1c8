package heijunka_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
)

func TestRampStagesShareAndMonotone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []heijunka.RampEvent
		r, err := heijunka.NewRamp(heijunka.RampOptions{Name: "v2", OnEvent: func(e heijunka.RampEvent) { events = append(events, e) }})
		require.NoError(t, err)
		const keys = 200_000
		admitted := make([]bool, keys)
		for i, stage := range heijunka.DefaultRampStages() {
			st := r.Current()
			require.Equal(t, i, st.Index)
			require.Equal(t, stage, st.Stage)
			count := 0
			for k := range keys {
				in := r.Admits("customer-" + strconv.Itoa(k))
				if admitted[k] {
					require.True(t, in, "key %d admitted before must stay admitted at %s", k, stage.Name)
				}
				admitted[k] = in
				if in {
					count++
				}
			}
			share := 100 * float64(count) / keys
			assert.InDelta(t, stage.Percent, share, 1, "stage %s", stage.Name)
			if st.Done {
				break
			}
			require.ErrorIs(t, r.Advance(), heijunka.ErrBaking)
			time.Sleep(stage.Bake)
			require.NoError(t, r.Advance())
		}
		assert.True(t, r.Current().Done)
		assert.ErrorIs(t, r.Advance(), heijunka.ErrRampDone)
		require.Len(t, events, 2)
		assert.Equal(t, heijunka.RampAdvanced, events[0].Kind)
		assert.Equal(t, "canary", events[0].From.Name)
		assert.Equal(t, "staging", events[0].To.Name)
		assert.Equal(t, heijunka.RampCompleted, events[1].Kind)
		assert.Equal(t, "v2", events[1].Ramp)
		assert.Equal(t, 40*time.Minute, events[1].At.Sub(events[0].At.Add(-10*time.Minute)))
	})
}

// TestRampBakesEachStageFromItsStart: a stage's bake is timed from when the
// ramp entered it, not from when the ramp began.
func TestRampBakesEachStageFromItsStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		r, err := heijunka.NewRamp(heijunka.RampOptions{Stages: []heijunka.RampStage{
			{Name: "a", Percent: 10, Bake: 10 * time.Minute},
			{Name: "b", Percent: 50, Bake: 30 * time.Minute},
			{Name: "c", Percent: 100},
		}})
		require.NoError(t, err)
		st := r.Current()
		assert.Equal(t, start, st.Since)
		assert.Equal(t, start.Add(10*time.Minute), st.BakedAt)

		time.Sleep(20 * time.Minute) // "a" baked for longer than it needed
		require.NoError(t, r.Advance())
		st = r.Current()
		assert.Equal(t, start.Add(20*time.Minute), st.Since)
		assert.Equal(t, start.Add(50*time.Minute), st.BakedAt)

		time.Sleep(20 * time.Minute) // 40 minutes from the start, 20 into "b"
		err = r.Advance()
		require.ErrorIs(t, err, heijunka.ErrBaking)
		assert.Equal(t, `heijunka: stage still baking: "b" needs 10m0s more`, err.Error())
		time.Sleep(10 * time.Minute)
		require.NoError(t, r.Advance())
		assert.True(t, r.Current().Done)
	})
}

func TestRampRollbackAndGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []heijunka.RampEvent
		r, err := heijunka.NewRamp(heijunka.RampOptions{Name: "v3", Stages: []heijunka.RampStage{
			{Name: "half", Percent: 50}, {Name: "all", Percent: 100},
		}, OnEvent: func(e heijunka.RampEvent) { events = append(events, e) }})
		require.NoError(t, err)
		var g tai.Gate = r
		var in, out string
		for i := 0; i < 1000 && (in == "" || out == ""); i++ {
			k := "k" + strconv.Itoa(i)
			if r.Admits(k) {
				in = k
			} else {
				out = k
			}
		}
		require.NoError(t, g.Admit(context.Background(), in))
		err = g.Admit(context.Background(), out)
		require.ErrorIs(t, err, heijunka.ErrOutsideRamp)
		assert.Equal(t, `heijunka: key outside ramp "v3" at stage "half" (50%)`, err.Error())

		time.Sleep(time.Minute)
		require.NoError(t, r.Rollback("health check failed"))
		assert.ErrorIs(t, r.Rollback("again"), heijunka.ErrRolledBack)
		assert.False(t, r.Admits(in), "a rolled-back ramp admits nobody")
		st := r.Current()
		assert.True(t, st.RolledBack)
		assert.Equal(t, -1, st.Index)
		assert.Zero(t, st.Percent)
		assert.Equal(t, time.Now(), st.Since, "since the rollback")
		assert.ErrorIs(t, r.Advance(), heijunka.ErrRolledBack)
		err = g.Admit(context.Background(), in)
		assert.ErrorIs(t, err, heijunka.ErrOutsideRamp)
		assert.Equal(t, `heijunka: ramp "v3" rolled back`, err.Error())
		require.Len(t, events, 1, "one rollback, one event")
		assert.Equal(t, heijunka.RampEvent{Ramp: "v3", Kind: heijunka.RampRolledBack,
			From: heijunka.RampStage{Name: "half", Percent: 50}, At: time.Now(), Reason: "health check failed"}, events[0])
		assert.Equal(t, "rolled back", events[0].Kind.String())
		assert.Equal(t, "ramp event(0)", heijunka.RampEventKind(0).String())
		assert.Equal(t, "ramp event(4)", heijunka.RampEventKind(4).String())
	})
}

func TestRampSaltAndDeterminism(t *testing.T) {
	a1, _ := heijunka.NewRamp(heijunka.RampOptions{Salt: "deploy-1"})
	a2, _ := heijunka.NewRamp(heijunka.RampOptions{Salt: "deploy-1"})
	b, _ := heijunka.NewRamp(heijunka.RampOptions{Salt: "deploy-2"})
	same, differ := true, 0
	for i := range 10_000 {
		k := "c" + strconv.Itoa(i)
		same = same && a1.Admits(k) == a2.Admits(k)
		if a1.Admits(k) != b.Admits(k) {
			differ++
		}
	}
	assert.True(t, same, "same salt, same keys (as on another replica)")
	assert.Greater(t, differ, 500, "another salt picks other canaries")
}

// TestRampSaltGolden pins which keys a salt admits at each share. The
// choice must not change between versions: replicas running different
// versions during an upgrade, and a ramp restarted with the same salt,
// must admit the same customers.
func TestRampSaltGolden(t *testing.T) {
	r, err := heijunka.NewRamp(heijunka.RampOptions{Salt: "checkout-v2", Stages: []heijunka.RampStage{
		{Name: "a", Percent: 10}, {Name: "b", Percent: 30}, {Name: "c", Percent: 60}, {Name: "d", Percent: 100},
	}})
	require.NoError(t, err)
	other, err := heijunka.NewRamp(heijunka.RampOptions{Salt: "checkout-v3", Stages: []heijunka.RampStage{{Name: "a", Percent: 30}}})
	require.NoError(t, err)
	admitted := func(r *heijunka.Ramp) string {
		var in []string
		for i := range 40 {
			if k := "customer-" + strconv.Itoa(i); r.Admits(k) {
				in = append(in, strconv.Itoa(i))
			}
		}
		return strings.Join(in, " ")
	}
	var got []string
	for range 3 {
		got = append(got, admitted(r))
		require.NoError(t, r.Advance())
	}
	got = append(got, admitted(other))
	assert.Equal(t, []string{
		"3 7 12 33 38",         // 10%
		"3 5 7 12 26 27 33 38", // 30%
		"0 1 3 5 7 9 11 12 16 17 18 19 23 25 26 27 32 33 35 38", // 60%
		"0 3 12 13 15 19 20 22 25 26 28 32 35 37",               // another salt, 30%
	}, got)
}

// TestRampEventsInOrderFromCallbacks: a listener may drive the ramp; the
// transition it makes is delivered after it returns, not inside it, so one
// listener call runs at a time and events arrive in order.
func TestRampEventsInOrderFromCallbacks(t *testing.T) {
	var r *heijunka.Ramp
	var calls []string
	r, err := heijunka.NewRamp(heijunka.RampOptions{
		Stages: []heijunka.RampStage{{Name: "a", Percent: 1}, {Name: "b", Percent: 2}, {Name: "c", Percent: 3}},
		OnEvent: func(e heijunka.RampEvent) {
			calls = append(calls, "begin "+e.Kind.String())
			if e.Kind == heijunka.RampAdvanced {
				assert.NoError(t, r.Advance(), "a callback may drive the ramp")
			}
			calls = append(calls, "end "+e.Kind.String())
		}})
	require.NoError(t, err)
	require.NoError(t, r.Advance())
	assert.Equal(t, []string{"begin advanced", "end advanced", "begin completed", "end completed"}, calls)
}

// TestRampListenerEndingItsGoroutine: a listener that ends its goroutine
// with runtime.Goexit (t.FailNow in a test) ends the call delivering, not
// the delivery of later events: the next transition delivers them.
func TestRampListenerEndingItsGoroutine(t *testing.T) {
	events := make(chan string, 4)
	r, err := heijunka.NewRamp(heijunka.RampOptions{
		Stages: []heijunka.RampStage{{Name: "a", Percent: 1}, {Name: "b", Percent: 2}, {Name: "c", Percent: 3}},
		OnEvent: func(e heijunka.RampEvent) {
			events <- e.To.Name
			if e.To.Name == "b" {
				runtime.Goexit()
			}
		}})
	require.NoError(t, err)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_ = r.Advance()
		t.Error("Advance returned from a listener that ended its goroutine")
	}()
	<-ended
	require.Equal(t, "b", <-events)
	assert.Equal(t, "b", r.Current().Stage.Name, "the transition stands")

	require.NoError(t, r.Advance())
	require.NoError(t, r.Rollback("late"))
	close(events)
	var later []string
	for name := range events {
		later = append(later, name)
	}
	assert.Equal(t, []string{"c", ""}, later, "the events after the listener's Goexit are delivered")
}

// TestRampEventQueuedBeforeGoexitOfARefusedCall: a listener that rolls the
// ramp back and then ends its goroutine leaves the rollback's event queued;
// the next Advance or Rollback delivers it, though it is refused, for no
// transition will ever come again to deliver it.
func TestRampEventQueuedBeforeGoexitOfARefusedCall(t *testing.T) {
	for name, next := range map[string]func(*heijunka.Ramp) error{
		"Advance":  (*heijunka.Ramp).Advance,
		"Rollback": func(r *heijunka.Ramp) error { return r.Rollback("again") },
	} {
		t.Run(name, func(t *testing.T) {
			events := make(chan heijunka.RampEventKind, 4)
			var r *heijunka.Ramp
			r, err := heijunka.NewRamp(heijunka.RampOptions{
				Stages: []heijunka.RampStage{{Name: "a", Percent: 1}, {Name: "b", Percent: 2}},
				OnEvent: func(e heijunka.RampEvent) {
					events <- e.Kind
					if e.Kind == heijunka.RampCompleted {
						_ = r.Rollback("bad") // queued: this goroutine is delivering
						runtime.Goexit()
					}
				}})
			require.NoError(t, err)
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				_ = r.Advance()
			}()
			<-ended
			require.Equal(t, heijunka.RampCompleted, <-events)
			require.True(t, r.Current().RolledBack)

			require.ErrorIs(t, next(r), heijunka.ErrRolledBack)
			close(events)
			var later []heijunka.RampEventKind
			for k := range events {
				later = append(later, k)
			}
			assert.Equal(t, []heijunka.RampEventKind{heijunka.RampRolledBack}, later, "the rollback's event is delivered")
		})
	}
}

// TestRampPanickingListener: a listener that panics does not stop the
// events after it; the call that delivered the event returns the panic
// with the stack where it happened.
func TestRampPanickingListener(t *testing.T) {
	var got []string
	r, err := heijunka.NewRamp(heijunka.RampOptions{
		Stages: []heijunka.RampStage{{Name: "a", Percent: 1}, {Name: "b", Percent: 2}, {Name: "c", Percent: 3}},
		OnEvent: func(e heijunka.RampEvent) {
			got = append(got, e.To.Name)
			if e.To.Name == "b" {
				panicInListener()
			}
		}})
	require.NoError(t, err)
	err = r.Advance()
	require.IsType(t, &heijunka.PanicError{}, err)
	pe := err.(*heijunka.PanicError)
	assert.Equal(t, "Ramp.OnEvent", pe.Where)
	assert.Equal(t, "listener broke", pe.Value)
	assert.Equal(t, "heijunka: panic in Ramp.OnEvent: listener broke", err.Error())
	assert.Contains(t, string(pe.Stack), "panicInListener", "the stack is the panic's")
	assert.Equal(t, "b", r.Current().Stage.Name, "the transition stands")

	require.NoError(t, r.Advance(), "the next event is delivered")
	require.NoError(t, r.Rollback("late"), "a completed ramp may still roll back")
	assert.Equal(t, []string{"b", "c", ""}, got)

	// A panic whose value is an error unwraps to it.
	boom := errors.New("boom")
	r, err = heijunka.NewRamp(heijunka.RampOptions{OnEvent: func(heijunka.RampEvent) { panic(boom) }})
	require.NoError(t, err)
	assert.ErrorIs(t, r.Rollback("x"), boom)

	// A call that delivers several events returns each one's panic.
	r, err = heijunka.NewRamp(heijunka.RampOptions{
		Stages: []heijunka.RampStage{{Name: "a", Percent: 1}, {Name: "b", Percent: 2}, {Name: "c", Percent: 3}},
		OnEvent: func(e heijunka.RampEvent) {
			if e.Kind == heijunka.RampAdvanced {
				_ = r.Advance() // delivered by the call running this listener
			}
			panic(e.To.Name)
		}})
	require.NoError(t, err)
	err = r.Advance()
	joined, ok := err.(interface{ Unwrap() []error })
	require.True(t, ok, "%T: %v", err, err)
	var values []any
	for _, e := range joined.Unwrap() {
		require.IsType(t, &heijunka.PanicError{}, e)
		values = append(values, e.(*heijunka.PanicError).Value)
	}
	assert.Equal(t, []any{"b", "c"}, values)
	assert.True(t, r.Current().Done)
}

//go:noinline
func panicInListener() { panic("listener broke") }

// TestRampKeepsItsOwnStages: the ramp copies the stages it is given and
// hands out copies, so no caller can change a running ramp's plan.
func TestRampKeepsItsOwnStages(t *testing.T) {
	stages := []heijunka.RampStage{{Name: "a", Percent: 10}, {Name: "b", Percent: 100}}
	r, err := heijunka.NewRamp(heijunka.RampOptions{Stages: stages})
	require.NoError(t, err)
	stages[0].Percent, stages[1].Name = 90, "changed"
	got := r.Stages()
	assert.Equal(t, []heijunka.RampStage{{Name: "a", Percent: 10}, {Name: "b", Percent: 100}}, got)
	got[0].Name = "changed too"
	assert.Equal(t, "a", r.Current().Stage.Name)
	assert.Equal(t, 10.0, r.Current().Percent)
	require.NoError(t, r.Advance())
	assert.Equal(t, "b", r.Current().Stage.Name)
}

func TestRampValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stages []heijunka.RampStage
		want   string
	}{
		{"empty", []heijunka.RampStage{}, "Stages is empty"},
		{"no name", []heijunka.RampStage{{Percent: 5}}, "stage 0 has no Name"},
		{"repeated", []heijunka.RampStage{{Name: "a", Percent: 5}, {Name: "a", Percent: 10}}, `Name "a" is repeated`},
		{"not increasing", []heijunka.RampStage{{Name: "a", Percent: 50}, {Name: "b", Percent: 50}}, `"b" Percent 50 must be above 50`},
		{"over 100", []heijunka.RampStage{{Name: "a", Percent: 101}}, "at most 100"},
		{"zero", []heijunka.RampStage{{Name: "a", Percent: 0}}, "Percent 0"},
		{"NaN", []heijunka.RampStage{{Name: "a", Percent: math.NaN()}}, "Percent NaN"},
		{"below the resolution", []heijunka.RampStage{{Name: "a", Percent: 1e-18}}, `"a" Percent 1e-18 rounds to 0%, not above 0%: shares go in steps of 5.684341886080802e-18%`},
		{"tiniest", []heijunka.RampStage{{Name: "a", Percent: 5e-324}}, `"a" Percent 5e-324 rounds to 0%`},
		{"same share", []heijunka.RampStage{{Name: "a", Percent: 1e-17}, {Name: "b", Percent: 1.2e-17}}, `"b" Percent 1.2e-17 rounds to 1.1368683772161604e-17%, not above 1.1368683772161604e-17%`},
		{"negative bake", []heijunka.RampStage{{Name: "a", Percent: 5, Bake: -time.Second}}, "Bake -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := heijunka.NewRamp(heijunka.RampOptions{Stages: tc.stages})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "heijunka: ramp ")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestRampDefaultName(t *testing.T) {
	r, err := heijunka.NewRamp(heijunka.RampOptions{})
	require.NoError(t, err)
	assert.Equal(t, "heijunka.ramp", r.Name())
}

// TestRampShareBoundary: a share of p percent (with at most four
// decimals) admits the keys whose millionth (a number in [0, 10^6) from
// the key's hash) lies below p·10^4, not on it; so a rolled-back ramp
// admits no key at all, not even one in millionth 0. The keys are found
// by search and pinned: their millionths are part of the salt's golden
// behaviour.
func TestRampShareBoundary(t *testing.T) {
	const onZero, onFivePercent = "customer-71280", "customer-73319" // millionths 0 and 50000, salt ""
	r, err := heijunka.NewRamp(heijunka.RampOptions{})
	require.NoError(t, err)
	assert.True(t, r.Admits(onZero))
	assert.False(t, r.Admits(onFivePercent), "5% admits the millionths below 50000")
	two, err := heijunka.NewRamp(heijunka.RampOptions{Stages: []heijunka.RampStage{{Name: "a", Percent: 5.0001}}})
	require.NoError(t, err)
	assert.True(t, two.Admits(onFivePercent), "one millionth more admits it")
	require.NoError(t, r.Rollback("test"))
	assert.False(t, r.Admits(onZero), "a rolled-back ramp admits nobody")
}

// TestRampAdmitNamesTheShareItDecidedAt: the *OutsideRampError of a key
// turned away while the ramp advances names the stage whose share turned
// it away, not the one entered meanwhile (at 100% no key is outside).
func TestRampAdmitNamesTheShareItDecidedAt(t *testing.T) {
	stages := []heijunka.RampStage{{Name: "few", Percent: 0.0001}, {Name: "all", Percent: 100}}
	for i := range 5000 {
		r, err := heijunka.NewRamp(heijunka.RampOptions{Stages: stages, Salt: "race"})
		require.NoError(t, err)
		key := "k" + strconv.Itoa(i)
		if r.Admits(key) {
			continue
		}
		var wg sync.WaitGroup
		wg.Go(func() { assert.NoError(t, r.Advance()) })
		err = r.Admit(context.Background(), key)
		wg.Wait()
		if err == nil {
			continue
		}
		var out *heijunka.OutsideRampError
		require.ErrorAs(t, err, &out)
		require.Equal(t, heijunka.OutsideRampError{Ramp: "heijunka.ramp", Stage: "few", Percent: 0.0001}, *out, "%v", err)
	}
}

// TestRampShareNearTheEdges: a stage a hair above 0% admits some keys, a
// stage a hair below 100% turns some away, and the share Current reports
// is the share admitted. The keys are found by search and pinned, with
// salt "": each lies in the first or last millionth of the keys, early or
// late in it.
func TestRampShareNearTheEdges(t *testing.T) {
	const (
		firstEarly = "customer-128569"  // in the first millionth, 6.6% into it
		firstLate  = "customer-71280"   // in the first millionth, 95% into it
		lastEarly  = "customer-4482686" // in the last millionth, 27% into it
		lastLate   = "customer-1317200" // in the last millionth, 78% into it
	)
	for _, tc := range []struct {
		percent float64
		admits  map[string]bool
	}{
		// 40% of the first millionth.
		{0.00004, map[string]bool{firstEarly: true, firstLate: false, lastEarly: false, lastLate: false}},
		// The first millionth.
		{0.0001, map[string]bool{firstEarly: true, firstLate: true, lastEarly: false, lastLate: false}},
		// All but the last millionth.
		{99.9999, map[string]bool{firstEarly: true, firstLate: true, lastEarly: false, lastLate: false}},
		// All but 40% of the last millionth.
		{99.99996, map[string]bool{firstEarly: true, firstLate: true, lastEarly: true, lastLate: false}},
		// The float just below 100 turns away a sliver of the last
		// millionth (2^-33 of it): none of these keys.
		{math.Nextafter(100, 0), map[string]bool{firstEarly: true, firstLate: true, lastEarly: true, lastLate: true}},
		{100, map[string]bool{firstEarly: true, firstLate: true, lastEarly: true, lastLate: true}},
	} {
		t.Run(strconv.FormatFloat(tc.percent, 'g', -1, 64), func(t *testing.T) {
			r, err := heijunka.NewRamp(heijunka.RampOptions{Stages: []heijunka.RampStage{{Name: "s", Percent: tc.percent}}})
			require.NoError(t, err)
			require.Equal(t, tc.percent, r.Current().Percent)
			for key, in := range tc.admits {
				assert.Equal(t, in, r.Admits(key), key)
				if in {
					assert.NoError(t, r.Admit(context.Background(), key), key)
				} else {
					assert.ErrorIs(t, r.Admit(context.Background(), key), heijunka.ErrOutsideRamp, key)
				}
			}
		})
	}
}

// TestZeroRampAdmitsNothingAndRefusesTransitions: the zero Ramp is not
// usable, but using it is no panic, and a refused call leaves it usable by
// the next (a panic while the ramp's lock is held would leave every later
// call waiting for it).
func TestZeroRampAdmitsNothingAndRefusesTransitions(t *testing.T) {
	var r heijunka.Ramp
	assert.False(t, r.Admits("k"))
	require.NotPanics(t, func() {
		err := r.Admit(context.Background(), "k")
		assert.ErrorContains(t, err, "not made by NewRamp")
		assert.ErrorIs(t, err, heijunka.ErrOutsideRamp, "a gate turning the key away")
	})
	require.NotPanics(t, func() { assert.ErrorContains(t, r.Advance(), "not made by NewRamp") })
	require.NotPanics(t, func() { assert.ErrorContains(t, r.Rollback("bad"), "not made by NewRamp") })
	require.NotPanics(t, func() { assert.ErrorContains(t, r.Advance(), "not made by NewRamp", "and stays so") })
	require.NotPanics(t, func() {
		assert.Equal(t, heijunka.RampState{Index: -1}, r.Current(), "no stage")
	})
	assert.Empty(t, r.Stages())
}
