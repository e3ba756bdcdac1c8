package tai_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// stepGuard is a TwoStepGuard that journals its calls. Its Do is what its
// Allow and done amount to, so a pipeline must see the same either way.
type stepGuard struct {
	name      string
	j         *journal
	refuse    error
	panicDone bool
	exitDone  bool // done ends its goroutine with runtime.Goexit
}

func (g *stepGuard) Name() string { return g.name }

func (g *stepGuard) Allow(context.Context) (func(error), error) {
	g.j.add(g.name + " allow")
	if g.refuse != nil {
		return nil, g.refuse
	}
	return func(err error) {
		g.j.add(fmt.Sprintf("%s done %T", g.name, err))
		if g.panicDone {
			panic("done broke")
		}
		if g.exitDone {
			runtime.Goexit()
		}
	}, nil
}

func (g *stepGuard) Do(ctx context.Context, fn func(context.Context) error) error {
	return tai.DoTwoStep(ctx, g, fn)
}

// wrapOnly hides a stepGuard's Allow: the pipeline must wrap the action.
type wrapOnly struct{ g *stepGuard }

func (w wrapOnly) Name() string { return w.g.name }
func (w wrapOnly) Do(ctx context.Context, fn func(context.Context) error) error {
	return w.g.Do(ctx, fn)
}

var errRefused = errors.New("refused")

func TestTwoStepGuardsDoWhatTheirDoWould(t *testing.T) {
	errAction := errors.New("action failed")
	cases := []struct {
		name    string
		refuse  int // index of the refusing guard, -1 for none
		action  func() (int, error)
		outcome tai.Outcome
		want    []string
	}{
		{"success", -1, func() (int, error) { return 7, nil }, tai.Succeeded,
			[]string{"g0 allow", "g1 allow", "action", "g1 done <nil>", "g0 done <nil>"}},
		{"action error", -1, func() (int, error) { return 0, errAction }, tai.Failed,
			[]string{"g0 allow", "g1 allow", "action", "g1 done *errors.errorString", "g0 done *errors.errorString"}},
		{"refused by the inner guard", 1, func() (int, error) { return 7, nil }, tai.Rejected,
			[]string{"g0 allow", "g1 allow", "g0 done *errors.errorString"}},
		{"refused by the outer guard", 0, func() (int, error) { return 7, nil }, tai.Rejected,
			[]string{"g0 allow"}},
		{"action panics", -1, func() (int, error) { panic("boom") }, tai.Failed,
			[]string{"g0 allow", "g1 allow", "action", "g1 done *tai.PanicError", "g0 done *tai.PanicError"}},
	}
	for _, c := range cases {
		for _, twoStep := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/two-step=%v", c.name, twoStep), func(t *testing.T) {
				j := &journal{}
				res, err := processStepped(t, j, make([]bool, 2), c.refuse, twoStep, c.action)
				assert.Equal(t, c.want, j.get())
				assert.Equal(t, c.outcome, res.Outcome)
				assert.Equal(t, c.outcome, tai.OutcomeOf(err))
				switch c.outcome {
				case tai.Succeeded:
					assert.Equal(t, 7, res.Value)
				case tai.Rejected:
					var re *tai.RejectedError
					require.ErrorAs(t, err, &re)
					assert.Equal(t, tai.StageAction, re.Stage)
					assert.Equal(t, "g"+strconv.Itoa(c.refuse), re.Hook)
					assert.ErrorIs(t, err, errRefused)
				case tai.Failed:
					assert.Zero(t, res.Value)
				}
			})
		}
	}
}

var allowAll = tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
	return tai.Decision{Verdict: tai.Allow}, nil
})

func TestTwoStepGuardWithoutDone(t *testing.T) {
	p, err := tai.New(allowAll, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }),
		tai.WithGuards(noReport{}))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Value)
}

// noReport admits every call and wants no report; its Do must not run.
type noReport struct{}

func (noReport) Allow(context.Context) (func(error), error) { return nil, nil }
func (noReport) Do(context.Context, func(context.Context) error) error {
	panic("Do called on a two-step guard")
}

func TestTwoStepDoneThatPanics(t *testing.T) {
	j := &journal{}
	outer := &stepGuard{name: "outer", j: j}
	inner := &stepGuard{name: "inner", j: j, panicDone: true}
	p, err := tai.New(allowAll, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }),
		tai.WithGuards(outer, inner))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
	var pe *tai.PanicError
	require.ErrorAs(t, err, &pe, "a guard's panic fails the signal")
	assert.Equal(t, tai.StageAction, pe.Stage)
	assert.Equal(t, []string{"outer allow", "inner allow", "inner done <nil>", "outer done *tai.PanicError"}, j.get(),
		"the panicking done is not called again, and the guard outside it is told the panic")
}

// Every done a two-step guard gave is called once, as its Do would have
// been told, however many of them panic and whether or not the action
// panicked before them: the guards outside a done that panicked hear of
// the panic.
func TestEveryDoneIsToldWhenDonesPanic(t *testing.T) {
	cases := []struct {
		name   string
		refuse int          // index of the refusing guard, -1 for none
		panics map[int]bool // the guards whose done panics
		action func() (int, error)
		want   []string
	}{
		{"the action and a done panic", -1, map[int]bool{2: true}, func() (int, error) { panic("boom") },
			[]string{"g0 allow", "g1 allow", "g2 allow", "g3 allow", "action",
				"g3 done *tai.PanicError", "g2 done *tai.PanicError", "g1 done *tai.PanicError", "g0 done *tai.PanicError"}},
		{"two dones panic", -1, map[int]bool{3: true, 2: true}, func() (int, error) { return 7, nil },
			[]string{"g0 allow", "g1 allow", "g2 allow", "g3 allow", "action",
				"g3 done <nil>", "g2 done *tai.PanicError", "g1 done *tai.PanicError", "g0 done *tai.PanicError"}},
		{"a refusal, then two dones panic", 3, map[int]bool{2: true, 1: true}, func() (int, error) { return 7, nil },
			[]string{"g0 allow", "g1 allow", "g2 allow", "g3 allow",
				"g2 done *errors.errorString", "g1 done *tai.PanicError", "g0 done *tai.PanicError"}},
	}
	for _, c := range cases {
		for _, twoStep := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/two-step=%v", c.name, twoStep), func(t *testing.T) {
				j := &journal{}
				res, err := processStepped(t, j, []bool{c.panics[0], c.panics[1], c.panics[2], c.panics[3]}, c.refuse, twoStep, c.action)
				assert.Equal(t, c.want, j.get())
				var pe *tai.PanicError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, tai.StageAction, pe.Stage)
				assert.Equal(t, tai.Failed, res.Outcome)
				assert.Zero(t, res.Value)
			})
		}
	}
}

func TestManyTwoStepGuardsAreWrapped(t *testing.T) {
	j := &journal{}
	var guards []tai.Guard
	var want []string
	for i := range 9 { // more than the pipeline calls in two steps
		guards = append(guards, &stepGuard{name: "g" + strconv.Itoa(i), j: j})
		want = append(want, "g"+strconv.Itoa(i)+" allow")
	}
	want = append(want, "action")
	for i := 8; i >= 0; i-- {
		want = append(want, "g"+strconv.Itoa(i)+" done <nil>")
	}
	p, err := tai.New(allowAll, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
		j.add("action")
		return 1, nil
	}), tai.WithGuards(guards...))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
	require.NoError(t, err)
	assert.Equal(t, want, j.get())
}

// TestDoTwoStep: Do written with DoTwoStep allows, runs, reports; refuses
// without running; and tells done of a panic, once, before it goes on.
func TestDoTwoStep(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")

	j := &journal{}
	g := &stepGuard{name: "g", j: j}
	err := g.Do(ctx, func(context.Context) error { j.add("fn"); return boom })
	require.ErrorIs(t, err, boom)
	assert.Equal(t, []string{"g allow", "fn", "g done *errors.errorString"}, j.get())

	j = &journal{}
	g = &stepGuard{name: "g", j: j, refuse: tai.ErrDenied}
	err = g.Do(ctx, func(context.Context) error { j.add("fn"); return nil })
	require.ErrorIs(t, err, tai.ErrDenied)
	assert.Equal(t, []string{"g allow"}, j.get(), "a refused call neither runs nor reports")

	j = &journal{}
	g = &stepGuard{name: "g", j: j}
	assert.PanicsWithValue(t, "fn broke", func() {
		_ = g.Do(ctx, func(context.Context) error { panic("fn broke") })
	})
	assert.Equal(t, []string{"g allow", "g done *tai.PanicError"}, j.get(), "the panic is reported, then goes on")

	j = &journal{}
	g = &stepGuard{name: "g", j: j, panicDone: true}
	assert.PanicsWithValue(t, "done broke", func() {
		_ = g.Do(ctx, func(context.Context) error { return nil })
	})
	assert.Equal(t, []string{"g allow", "g done <nil>"}, j.get(), "a done that panics is called once")

	// A guard that wants no report: fn runs, nothing else, and its error
	// comes back.
	ran := false
	require.NoError(t, tai.DoTwoStep(ctx, noReport{}, func(context.Context) error { ran = true; return nil }))
	assert.True(t, ran)
	require.ErrorIs(t, tai.DoTwoStep(ctx, noReport{}, func(context.Context) error { return boom }), boom)
}

// flipGuard is a wrapping guard that rejects while refuse is set.
type flipGuard struct {
	name   string
	refuse bool
}

func (g *flipGuard) Name() string { return g.name }
func (g *flipGuard) Do(ctx context.Context, fn func(context.Context) error) error {
	if g.refuse {
		return errRefused
	}
	return fn(ctx)
}

// TestWrappingGuardRejectsAfterSuccess: a signal a wrapping guard turns
// away is Rejected, with the guard's name, however many signals went
// through before it (their state is recycled between signals).
func TestWrappingGuardRejectsAfterSuccess(t *testing.T) {
	outer, inner := &flipGuard{name: "outer"}, &flipGuard{name: "inner"}
	p, err := tai.New(allowAll, tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) {
		return s.Payload, nil
	}), tai.WithGuards(outer, inner))
	require.NoError(t, err)
	for i := range 20 {
		outer.refuse, inner.refuse = false, false
		res, err := p.Process(context.Background(), tai.Signal[int]{ID: strconv.Itoa(i), Kind: "k", Payload: i})
		require.NoError(t, err)
		require.Equal(t, i, res.Value)

		refuser := outer
		if i%2 == 1 {
			refuser = inner
		}
		refuser.refuse = true
		res, err = p.Process(context.Background(), tai.Signal[int]{ID: "r" + strconv.Itoa(i), Kind: "k", Payload: i})
		require.Equal(t, tai.Rejected, res.Outcome, "signal %d", i)
		var re *tai.RejectedError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, refuser.name, re.Hook)
		assert.Equal(t, tai.StageAction, re.Stage)
		require.ErrorIs(t, err, errRefused)
		assert.Zero(t, res.Value)
	}
}

// doJournal is a TwoStepGuard whose Do, when called, says so: it shows
// which way the pipeline called it.
type doJournal struct {
	name string
	j    *journal
}

func (g doJournal) Allow(context.Context) (func(error), error) {
	g.j.add(g.name + " allow")
	return nil, nil
}

func (g doJournal) Do(ctx context.Context, fn func(context.Context) error) error {
	g.j.add(g.name + " do")
	return fn(ctx)
}

// TestGuardsAreCalledOneWay: up to eight guards that are all TwoStepGuards
// are called through Allow; as soon as one of them is a plain Guard (or
// there are more than eight), every guard is called through Do.
func TestGuardsAreCalledOneWay(t *testing.T) {
	run := func(t *testing.T, guards ...tai.Guard) []string {
		t.Helper()
		j := guards[0].(doJournal).j
		p, err := tai.New(allowAll, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
			j.add("action")
			return 1, nil
		}), tai.WithGuards(guards...))
		require.NoError(t, err)
		res, err := p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
		require.NoError(t, err)
		assert.Equal(t, 1, res.Value)
		return j.get()
	}
	t.Run("eight two-step guards", func(t *testing.T) {
		j := &journal{}
		var guards []tai.Guard
		var want []string
		for i := range 8 {
			guards = append(guards, doJournal{name: strconv.Itoa(i), j: j})
			want = append(want, strconv.Itoa(i)+" allow")
		}
		assert.Equal(t, append(want, "action"), run(t, guards...))
	})
	t.Run("nine two-step guards", func(t *testing.T) {
		j := &journal{}
		var guards []tai.Guard
		var want []string
		for i := range 9 {
			guards = append(guards, doJournal{name: strconv.Itoa(i), j: j})
			want = append(want, strconv.Itoa(i)+" do")
		}
		assert.Equal(t, append(want, "action"), run(t, guards...))
	})
	t.Run("a plain guard among two-step ones", func(t *testing.T) {
		j := &journal{}
		plain := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
			j.add("plain do")
			return fn(ctx)
		})
		got := run(t, doJournal{name: "a", j: j}, plain, doJournal{name: "b", j: j})
		assert.Equal(t, []string{"a do", "plain do", "b do", "action"}, got)
	})
}

// TestAbandonedErrorNamesTheGuard: the error of an abandoned action names
// the guard that returned early, or "action" for a guard without a name.
func TestAbandonedErrorNamesTheGuard(t *testing.T) {
	for _, name := range []string{"", "deadline"} {
		started, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
		var abandon tai.Guard = tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
			go func() {
				defer close(finished)
				_ = fn(ctx)
			}()
			<-started
			return errors.New("gave up")
		})
		if name != "" {
			abandon = namedGuardFunc{name, abandon}
		}
		p, err := tai.New(allowAll, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
			close(started)
			<-release
			return 1, nil
		}), tai.WithGuards(tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }), abandon))
		require.NoError(t, err)
		_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
		require.ErrorIs(t, err, tai.ErrAbandoned)
		want := name
		if want == "" {
			want = "action"
		}
		assert.Equal(t, `tai: guard returned before the action it started (guard "`+want+`"): gave up`, err.Error())
		close(release)
		<-finished
	}
}

type namedGuardFunc struct {
	name string
	tai.Guard
}

func (g namedGuardFunc) Name() string { return g.name }

// TestPipelineKeepsNoSignal: once Process has returned, the pipeline holds
// no reference to the signal's payload or the action's result, whichever
// way it called the guards, so a large payload is garbage as soon as the
// caller drops it.
func TestPipelineKeepsNoSignal(t *testing.T) {
	type blob struct{ _ [1 << 10]byte }
	for name, guard := range map[string]tai.Guard{
		"wrapped":  tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }),
		"two-step": noReport{},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := tai.New(tai.PolicyFunc[*blob](func(context.Context, tai.Signal[*blob]) (tai.Decision, error) {
				return tai.Decision{Verdict: tai.Allow}, nil
			}), tai.ActionFunc[*blob, *blob](func(_ context.Context, s tai.Signal[*blob]) (*blob, error) {
				return &blob{}, nil
			}), tai.WithGuards(guard))
			require.NoError(t, err)
			payload, result := func() (weak.Pointer[blob], weak.Pointer[blob]) {
				b := &blob{}
				res, err := p.Process(context.Background(), tai.Signal[*blob]{ID: "1", Kind: "k", Payload: b})
				require.NoError(t, err)
				return weak.Make(b), weak.Make(res.Value)
			}()
			runtime.GC()
			assert.Nil(t, payload.Value(), "the payload is still reachable")
			assert.Nil(t, result.Value(), "the result is still reachable")
			runtime.KeepAlive(p)
		})
	}
}

// An action that ends its goroutine with runtime.Goexit (t.FailNow in a
// test's action) is reported to every two-step guard passed, as a panic,
// as DoTwoStep reports it: a bulkhead's slot or a breaker's probe lease is
// not left taken.
func TestTwoStepGuardsHearOfGoexit(t *testing.T) {
	for _, twoStep := range []bool{true, false} {
		t.Run(fmt.Sprintf("two-step=%v", twoStep), func(t *testing.T) {
			j := &journal{}
			guards := stepGuards(twoStep, 2, j, nil)
			action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
				j.add("action")
				runtime.Goexit()
				return 0, nil
			})
			p, err := tai.New(allowAll, action, tai.WithGuards(guards...))
			require.NoError(t, err)
			processEnding(t, p, tai.Signal[int]{ID: "1", Kind: "k"})
			assert.Equal(t, []string{"g0 allow", "g1 allow", "action", "g1 done *tai.PanicError", "g0 done *tai.PanicError"}, j.get())
		})
	}
}

// processStepped processes one signal through a guard per element of
// panics, g0 outermost, each a stepGuard that writes to j and panics in
// its done when its element says so; the guard refuse refuses. With
// twoStep false the guards can only wrap. The action writes to j and
// returns what action does.
func processStepped(t *testing.T, j *journal, panics []bool, refuse int, twoStep bool, action func() (int, error)) (tai.Result[int], error) {
	t.Helper()
	guards := stepGuards(twoStep, len(panics), j, func(i int, g *stepGuard) {
		g.panicDone = panics[i]
		if i == refuse {
			g.refuse = errRefused
		}
	})
	act := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
		j.add("action")
		return action()
	})
	p, err := tai.New(allowAll, act, tai.WithGuards(guards...))
	require.NoError(t, err)
	return p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
}

// A done that ends its goroutine with runtime.Goexit while it hears that
// the action panicked or ended its goroutine does not keep the guards
// outside it from hearing of it, as their Do would have.
func TestGuardsOutsideADoneThatCallsGoexitAreTold(t *testing.T) {
	for _, action := range []string{"panic", "Goexit"} {
		for _, twoStep := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/two-step=%v", action, twoStep), func(t *testing.T) {
				j := &journal{}
				guards := stepGuards(twoStep, 3, j, func(i int, g *stepGuard) { g.exitDone = i == 1 })
				act := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
					j.add("action")
					if action == "panic" {
						panic("action broke")
					}
					runtime.Goexit()
					return 0, nil
				})
				p, err := tai.New(allowAll, act, tai.WithGuards(guards...))
				require.NoError(t, err)
				processEnding(t, p, tai.Signal[int]{ID: "1", Kind: "k"})
				assert.Equal(t, []string{
					"g0 allow", "g1 allow", "g2 allow", "action",
					"g2 done *tai.PanicError", "g1 done *tai.PanicError", "g0 done *tai.PanicError",
				}, j.get())
			})
		}
	}
}

// A done that panics once the goroutine is ending with runtime.Goexit (the
// action's, or that of a done inside it) fails the signal with its panic,
// as it does when the guards are called through Do: the observers see it,
// though Process does not return.
func TestADonePanickingWhileTheGoroutineEndsFailsTheSignal(t *testing.T) {
	for _, action := range []string{"return", "panic", "Goexit"} {
		for _, twoStep := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/two-step=%v", action, twoStep), func(t *testing.T) {
				j := &journal{}
				guards := stepGuards(twoStep, 3, j, func(i int, g *stepGuard) {
					g.panicDone, g.exitDone = i == 0, i == 1 && action != "Goexit"
				})
				act := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
					j.add("action")
					switch action {
					case "panic":
						panic("action broke")
					case "Goexit":
						runtime.Goexit()
					}
					return 1, nil
				})
				var recs []tai.Record
				p, err := tai.New(allowAll, act, tai.WithGuards(guards...),
					tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { recs = append(recs, r) })))
				require.NoError(t, err)
				processEnding(t, p, tai.Signal[int]{ID: "1", Kind: "k"})
				assert.Len(t, j.get(), 7, "each guard allowed and was told once")
				require.Len(t, recs, 1, "the observer sees the signal once")
				assert.Equal(t, tai.Failed, recs[0].Outcome)
				assert.EqualError(t, recs[0].Err, "tai: panic in action: done broke")
			})
		}
	}
}

// stepGuards returns n stepGuards named g0, g1, … writing to j, each
// changed by set (if not nil), as two-step guards or, without twoStep,
// hidden behind Do alone (wrapOnly).
func stepGuards(twoStep bool, n int, j *journal, set func(i int, g *stepGuard)) []tai.Guard {
	guards := make([]tai.Guard, 0, n)
	for i := range n {
		g := &stepGuard{name: "g" + strconv.Itoa(i), j: j}
		if set != nil {
			set(i, g)
		}
		if twoStep {
			guards = append(guards, g)
		} else {
			guards = append(guards, wrapOnly{g})
		}
	}
	return guards
}

// The *PanicError of a done that panicked once the goroutine was ending
// carries the stack where that done panicked, as it does when the guards
// are called through Do: the stack shows which guard broke.
func TestADonePanickingWhileTheGoroutineEndsKeepsItsStack(t *testing.T) {
	for _, twoStep := range []bool{true, false} {
		t.Run(fmt.Sprintf("two-step=%v", twoStep), func(t *testing.T) {
			var outer tai.Guard = brokenDone{}
			inner := stepGuards(twoStep, 1, &journal{}, func(_ int, g *stepGuard) { g.exitDone = true })[0]
			if !twoStep {
				outer = tai.GuardFunc(brokenDone{}.Do)
			}
			var recs []tai.Record
			p, err := tai.New(allowAll, doubleAction(&journal{}), tai.WithGuards(outer, inner),
				tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { recs = append(recs, r) })))
			require.NoError(t, err)
			processEnding(t, p, tai.Signal[int]{ID: "1", Kind: "k"})
			require.Len(t, recs, 1)
			var pe *tai.PanicError
			require.ErrorAs(t, recs[0].Err, &pe)
			assert.Equal(t, "done broke", pe.Value)
			assert.Contains(t, string(pe.Stack), "brokenDone.done", "the stack of the done that panicked")
		})
	}
}

// brokenDone is a TwoStepGuard whose done panics.
type brokenDone struct{}

func (g brokenDone) Allow(context.Context) (func(error), error) { return g.done, nil }

func (brokenDone) done(error) { panic("done broke") }

func (g brokenDone) Do(ctx context.Context, fn func(context.Context) error) error {
	return tai.DoTwoStep(ctx, g, fn)
}
