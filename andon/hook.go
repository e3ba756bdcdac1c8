package andon

import "context"

// A Hook acts when a rule fires and when it resolves: stop a line, open a
// ticket, page through a system of your own. The evaluator calls hooks on
// its own goroutine, in order, after the state has changed and with no lock
// held, so a hook may read the evaluator (Alerts, Cord, History), but not
// evaluate: Evaluate, Pull, Reset and Shutdown wait for the evaluation that
// runs the hook. A hook must return soon: slow work belongs in a Notifier,
// which has a queue. Each call is given the caller's context (Run's,
// Evaluate's, Pull's), ended EvaluationTimeout after the call, or at
// Interval under Run if that is shorter, and canceled when the hook
// returns, as a request's is when its handler returns: work a hook leaves
// running must not use it. A hook that waits on it (a request to a server
// that does not answer) holds the evaluator no longer. One that ignores
// it holds the evaluator until it returns: the call that runs it (Run's
// evaluation, Evaluate, Pull, Reset) returns no sooner, whatever its
// context; Run's next evaluation, Evaluate and Shutdown wait for it
// (Shutdown no longer than its context), and Pull and Reset too, no
// longer than theirs, and then leave the cord for the next evaluation,
// which waits for it. A panic in a hook is recovered and logged with its
// stack (see PanicError). A hook that ends the goroutine with
// runtime.Goexit (t.FailNow in a test's hook) is logged too, and the
// hooks after it still run and the notifiers still hear of the
// evaluation's alerts before the goroutine goes on ending; Run evaluates
// on a goroutine of its own, so it goes on.
//
// Hooks run whether or not the alert is silenced: a silence mutes
// notifications, not the line's protection. The Alert is a copy of the
// evaluator's, shared by the rule's hooks: its maps (Labels,
// Annotations) must not be changed, or the hooks after this one see the
// change.
type Hook interface {
	// Fire is called when the rule enters Firing.
	Fire(ctx context.Context, a Alert)
	// Resolve is called when the rule leaves Firing.
	Resolve(ctx context.Context, a Alert)
}

// HookFuncs adapts a pair of functions to a Hook; a nil function does
// nothing.
type HookFuncs struct {
	OnFire    func(ctx context.Context, a Alert)
	OnResolve func(ctx context.Context, a Alert)
}

// Fire calls OnFire, if set.
func (h HookFuncs) Fire(ctx context.Context, a Alert) {
	if h.OnFire != nil {
		h.OnFire(ctx, a)
	}
}

// Resolve calls OnResolve, if set.
func (h HookFuncs) Resolve(ctx context.Context, a Alert) {
	if h.OnResolve != nil {
		h.OnResolve(ctx, a)
	}
}
