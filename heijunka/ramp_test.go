package heijunka_test

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
)

func TestRampStagesShareAndMonotone(t *testing.T) {
	clock := newFakeClock()
	var events []heijunka.RampEvent
	r, err := heijunka.NewRamp(heijunka.RampOptions{Name: "v2", Now: clock.Now, OnEvent: func(e heijunka.RampEvent) { events = append(events, e) }})
	require.NoError(t, err)
	const keys = 200_000
	admitted := make([]bool, keys)
	for i, stage := range heijunka.DefaultStages() {
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
		clock.Advance(stage.Bake)
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
}

func TestRampRollbackAndGate(t *testing.T) {
	clock := newFakeClock()
	r, err := heijunka.NewRamp(heijunka.RampOptions{Name: "v3", Now: clock.Now, Stages: []heijunka.Stage{
		{Name: "half", Percent: 50}, {Name: "all", Percent: 100},
	}})
	require.NoError(t, err)
	var g tai.Gate = r
	var in, out string
	for i := 0; in == "" || out == ""; i++ {
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

	assert.True(t, r.Rollback("health check failed"))
	assert.False(t, r.Rollback("again"))
	assert.False(t, r.Admits(in), "a rolled-back ramp admits nobody")
	st := r.Current()
	assert.True(t, st.RolledBack)
	assert.Equal(t, -1, st.Index)
	assert.Zero(t, st.Percent)
	assert.ErrorIs(t, r.Advance(), heijunka.ErrRolledBack)
	assert.ErrorIs(t, g.Admit(context.Background(), in), heijunka.ErrOutsideRamp)
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

func TestRampEventsInOrderFromCallbacks(t *testing.T) {
	clock := newFakeClock()
	var r *heijunka.Ramp
	var kinds []heijunka.RampEventKind
	r, err := heijunka.NewRamp(heijunka.RampOptions{Now: clock.Now,
		Stages: []heijunka.Stage{{Name: "a", Percent: 1}, {Name: "b", Percent: 2}, {Name: "c", Percent: 3}},
		OnEvent: func(e heijunka.RampEvent) {
			kinds = append(kinds, e.Kind)
			if e.Kind == heijunka.RampAdvanced {
				assert.NoError(t, r.Advance(), "a callback may drive the ramp")
			}
		}})
	require.NoError(t, err)
	require.NoError(t, r.Advance())
	assert.Equal(t, []heijunka.RampEventKind{heijunka.RampAdvanced, heijunka.RampCompleted}, kinds)
}

func TestRampValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stages []heijunka.Stage
		want   string
	}{
		{"empty", []heijunka.Stage{}, "Stages is empty"},
		{"no name", []heijunka.Stage{{Percent: 5}}, "stage 0 has no Name"},
		{"repeated", []heijunka.Stage{{Name: "a", Percent: 5}, {Name: "a", Percent: 10}}, `Name "a" is repeated`},
		{"not increasing", []heijunka.Stage{{Name: "a", Percent: 50}, {Name: "b", Percent: 50}}, `"b" Percent 50 must be above 50`},
		{"over 100", []heijunka.Stage{{Name: "a", Percent: 101}}, "at most 100"},
		{"zero", []heijunka.Stage{{Name: "a", Percent: 0}}, "Percent 0"},
		{"NaN", []heijunka.Stage{{Name: "a", Percent: math.NaN()}}, "Percent NaN"},
		{"negative bake", []heijunka.Stage{{Name: "a", Percent: 5, Bake: -time.Second}}, "Bake -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := heijunka.NewRamp(heijunka.RampOptions{Stages: tc.stages})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "heijunka: ramp ")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
