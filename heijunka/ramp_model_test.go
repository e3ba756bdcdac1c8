package heijunka_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
)

// rampStep is one call on a Ramp in TestRampMatchesModel.
type rampStep struct {
	op    int           // 0 sleep, 1 Advance, 2 Rollback, 3 keys
	sleep time.Duration // for op 0
}

// TestRampMatchesModel drives a Ramp with random stages through random
// sleeps, Advances and Rollbacks in a synctest bubble, against a model of
// its position: every error, state and event is the model's; the keys
// admitted are those Admit lets through, never fewer than at the stage
// before, none after a rollback; and a turned-away key's error names the
// stage in force.
func TestRampMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		count := rapid.IntRange(1, 5).Draw(rt, "stages")
		var stages []heijunka.RampStage
		ppm := 0
		for i := range count {
			// Shares in whole steps of 0.0001%, each above the one before,
			// leaving room for the stages after.
			ppm = rapid.IntRange(ppm+1, 1_000_000-(count-1-i)).Draw(rt, "ppm")
			if i == count-1 && rapid.Bool().Draw(rt, "ends at 100%") {
				ppm = 1_000_000
			}
			stages = append(stages, heijunka.RampStage{
				Name:    "s" + strconv.Itoa(i),
				Percent: float64(ppm) / 1e4,
				Bake:    time.Duration(rapid.IntRange(0, 30).Draw(rt, "bake min")) * time.Minute,
			})
		}
		salt := rapid.SampledFrom([]string{"", "a", "rollout-7"}).Draw(rt, "salt")
		steps := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) rampStep {
			s := rampStep{op: rapid.IntRange(0, 3).Draw(t, "op")}
			if s.op == 0 {
				s.sleep = time.Duration(rapid.IntRange(0, 40*60).Draw(t, "sleep s")) * time.Second
			}
			return s
		}), 5, 40).Draw(rt, "steps")

		var failure string
		synctest.Test(t, func(t *testing.T) {
			failure = runRampModel(stages, salt, steps)
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}

// runRampModel runs steps on a new Ramp and its model, and returns the
// first difference, or "".
func runRampModel(stages []heijunka.RampStage, salt string, steps []rampStep) string {
	var events []heijunka.RampEvent
	r, err := heijunka.NewRamp(heijunka.RampOptions{Name: "m", Stages: stages, Salt: salt,
		OnEvent: func(e heijunka.RampEvent) { events = append(events, e) }})
	if err != nil {
		return fmt.Sprintf("NewRamp(%v): %v", stages, err)
	}
	// The model.
	index, since, rolledBack := 0, time.Now(), false
	var want []heijunka.RampEvent
	const keys = 2000
	admitted := make([]bool, keys)

	for i, s := range steps {
		var got, wantErr error
		switch s.op {
		case 0:
			time.Sleep(s.sleep)
			continue
		case 1:
			got = r.Advance()
			now := time.Now()
			switch {
			case rolledBack:
				wantErr = heijunka.ErrRolledBack
			case index == len(stages)-1:
				wantErr = heijunka.ErrRampDone
			case now.Sub(since) < stages[index].Bake:
				wantErr = heijunka.ErrBaking
			default:
				ev := heijunka.RampEvent{Ramp: "m", Kind: heijunka.RampAdvanced, From: stages[index], To: stages[index+1], At: now}
				index, since = index+1, now
				if index == len(stages)-1 {
					ev.Kind = heijunka.RampCompleted
				}
				want = append(want, ev)
			}
		case 2:
			got = r.Rollback("step " + strconv.Itoa(i))
			now := time.Now()
			if rolledBack {
				wantErr = heijunka.ErrRolledBack
			} else {
				want = append(want, heijunka.RampEvent{Ramp: "m", Kind: heijunka.RampRolledBack, From: stages[index], At: now, Reason: "step " + strconv.Itoa(i)})
				rolledBack, since = true, now
			}
		case 3:
			for k := range keys {
				key := "customer-" + strconv.Itoa(k)
				in := r.Admits(key)
				err := r.Admit(context.Background(), key)
				if in != (err == nil) {
					return fmt.Sprintf("step %d: key %s: Admits %v, Admit %v", i, key, in, err)
				}
				if rolledBack && in {
					return fmt.Sprintf("step %d: key %s admitted after a rollback", i, key)
				}
				if admitted[k] && !in && !rolledBack {
					return fmt.Sprintf("step %d: key %s admitted before, not at stage %s", i, key, stages[index].Name)
				}
				admitted[k] = in
				var out *heijunka.OutsideRampError
				if err != nil {
					wantOut := heijunka.OutsideRampError{Ramp: "m"}
					if !rolledBack {
						wantOut.Stage, wantOut.Percent = stages[index].Name, stages[index].Percent
					}
					if !errors.As(err, &out) || *out != wantOut || !errors.Is(err, heijunka.ErrOutsideRamp) {
						return fmt.Sprintf("step %d: key %s: %v, want %+v", i, key, err, wantOut)
					}
				}
			}
			if !rolledBack && stages[index].Percent == 100 {
				for k := range keys {
					if !admitted[k] {
						return fmt.Sprintf("step %d: key %d outside a share of 100%%", i, k)
					}
				}
			}
		}
		if (got == nil) != (wantErr == nil) || wantErr != nil && !errors.Is(got, wantErr) {
			return fmt.Sprintf("step %d (op %d) at %v: got %v, want %v", i, s.op, time.Since(since), got, wantErr)
		}
		if errors.Is(wantErr, heijunka.ErrBaking) {
			left := time.Until(since.Add(stages[index].Bake))
			if msg := fmt.Sprintf("heijunka: stage still baking: %q needs %v more", stages[index].Name, left); got.Error() != msg {
				return fmt.Sprintf("step %d: %q, want %q", i, got.Error(), msg)
			}
		}

		st := r.Current()
		wantSt := heijunka.RampState{Index: -1, Since: since, RolledBack: true}
		if !rolledBack {
			wantSt = heijunka.RampState{Stage: stages[index], Index: index, Since: since,
				BakedAt: since.Add(stages[index].Bake), Percent: stages[index].Percent, Done: index == len(stages)-1}
		}
		if st != wantSt {
			return fmt.Sprintf("step %d: Current %+v, want %+v", i, st, wantSt)
		}
		if len(events) != len(want) {
			return fmt.Sprintf("step %d: events %+v, want %+v", i, events, want)
		}
		for j := range want {
			if events[j] != want[j] {
				return fmt.Sprintf("step %d: event %d %+v, want %+v", i, j, events[j], want[j])
			}
		}
	}
	return ""
}

// TestRampConcurrentTransitions advances and rolls back one Ramp from many
// goroutines at once: the listener runs one call at a time, receives
// every transition once, in order (each event leaves the stage the one
// before entered), and every event has been delivered once the calls
// have returned.
func TestRampConcurrentTransitions(t *testing.T) {
	stages := []heijunka.RampStage{{Name: "a", Percent: 1}, {Name: "b", Percent: 2}, {Name: "c", Percent: 3}, {Name: "d", Percent: 4}, {Name: "e", Percent: 100}}
	for range 200 {
		var running, overlaps atomic.Int32
		var events []heijunka.RampEvent
		r, err := heijunka.NewRamp(heijunka.RampOptions{Stages: stages, OnEvent: func(e heijunka.RampEvent) {
			if running.Add(1) != 1 {
				overlaps.Add(1)
			}
			events = append(events, e)
			runtime.Gosched()
			running.Add(-1)
		}})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for range 3 {
					if g == 7 {
						_ = r.Rollback("g7")
					} else {
						_ = r.Advance()
					}
				}
			})
		}
		wg.Wait()
		require.Zero(t, overlaps.Load(), "one listener call at a time")
		st := r.Current()
		require.NotEmpty(t, events)
		from := stages[0]
		for i, e := range events {
			require.Equal(t, from, e.From, "event %d", i)
			from = e.To
		}
		last := events[len(events)-1]
		if st.RolledBack {
			require.Equal(t, heijunka.RampRolledBack, last.Kind)
			require.Equal(t, len(events)-1, slices.IndexFunc(events, func(e heijunka.RampEvent) bool { return e.Kind == heijunka.RampRolledBack }))
		} else {
			require.Equal(t, heijunka.RampCompleted, last.Kind)
			require.Equal(t, st.Stage, last.To)
		}
	}
}
