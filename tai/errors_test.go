package tai_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// TestErrorMessages: each error says what went wrong and where, in the
// words a log reader needs, naming the policy or hook when there is one.
func TestErrorMessages(t *testing.T) {
	base := errors.New("store down")
	tests := []struct {
		err  error
		want string
	}{
		{&tai.DeniedError{Decision: tai.Decision{Verdict: tai.Deny}}, "tai: deny"},
		{&tai.DeniedError{Decision: tai.Decision{Verdict: tai.Deny, Policy: "amount"}}, `tai: deny by policy "amount"`},
		{&tai.DeniedError{Decision: tai.Decision{Verdict: tai.Deny, Reason: "over 5000"}}, "tai: deny: over 5000"},
		{&tai.DeniedError{Decision: tai.Decision{Verdict: tai.Review, Policy: "fraud", Reason: "score 0.4"}}, `tai: review by policy "fraud": score 0.4`},
		{&tai.RejectedError{Stage: tai.StageGate, Err: base}, "tai: rejected at gate: store down"},
		{&tai.RejectedError{Stage: tai.StageAction, Hook: "gateway", Err: base}, `tai: rejected at action "gateway": store down`},
		{&tai.PolicyError{Err: base}, "tai: policy failed: store down"},
		{&tai.PolicyError{Policy: "geo", Err: base}, `tai: policy "geo" failed: store down`},
		{&tai.PanicError{Stage: tai.StageGate, Value: "bug"}, "tai: panic in gate: bug"},
		{&tai.PanicError{Stage: tai.StageAction}, "tai: runtime.Goexit in action"},
		{&tai.StageError{Stage: tai.StagePolicy, Err: context.Canceled}, "tai: before policy: context canceled"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.err.Error())
	}
}

// An error a caller builds without a cause (a stub in a test, a wrapper
// whose error turned out nil) still has a message: printing or logging it
// must not panic.
func TestErrorMessagesWithoutACause(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&tai.RejectedError{Stage: tai.StageGate}, "tai: rejected at gate"},
		{&tai.RejectedError{Stage: tai.StageAction, Hook: "breaker"}, `tai: rejected at action "breaker"`},
		{&tai.PolicyError{}, "tai: policy failed"},
		{&tai.PolicyError{Policy: "geo"}, `tai: policy "geo" failed`},
		{&tai.StageError{Stage: tai.StagePolicy}, "tai: before policy"},
	}
	for _, tt := range tests {
		assert.NotPanics(t, func() { assert.Equal(t, tt.want, tt.err.Error()) }, "%#v", tt.err)
	}
}

// TestErrorsUnwrap: the cause inside each error stays reachable.
func TestErrorsUnwrap(t *testing.T) {
	base := errors.New("x")
	assert.ErrorIs(t, &tai.RejectedError{Err: base}, base)
	assert.ErrorIs(t, &tai.PolicyError{Err: base}, base)
	assert.ErrorIs(t, &tai.StageError{Err: base}, base)
	assert.ErrorIs(t, &tai.PanicError{Value: base}, base)
	assert.NoError(t, (&tai.PanicError{Value: "not an error"}).Unwrap())
	assert.NotErrorIs(t, &tai.DeniedError{}, tai.ErrRejected)
	assert.NotErrorIs(t, &tai.RejectedError{Err: base}, tai.ErrDenied)
}

func TestStageStrings(t *testing.T) {
	for st, want := range []string{"signal", "gate", "policy", "action", "stage(4)"} {
		assert.Equal(t, want, tai.Stage(st).String())
	}
	var r tai.Record
	r.Stages[tai.StageAction] = 7
	assert.EqualValues(t, 7, r.StageDuration(tai.StageAction))
	assert.Zero(t, r.StageDuration(tai.Stage(4)), "a stage past the last has no time")
}

func TestOutcomeStrings(t *testing.T) {
	for o, want := range []string{"invalid", "succeeded", "denied", "rejected", "failed", "outcome(5)"} {
		assert.Equal(t, want, tai.Outcome(o).String())
	}
}

// TestVerdictUnmarshalOverwrites: decoding into a Verdict that already
// holds one replaces it, "none" included.
func TestVerdictUnmarshalOverwrites(t *testing.T) {
	for _, s := range []string{"none", ""} {
		v := tai.Deny
		require.NoError(t, v.UnmarshalText([]byte(s)))
		assert.Equal(t, tai.Verdict(0), v, "%q", s)
	}
	for _, v := range []tai.Verdict{tai.Allow, tai.Review, tai.Deny} {
		b, err := v.MarshalText()
		require.NoError(t, err)
		o := tai.Verdict(0)
		if v == tai.Allow {
			o = tai.Deny
		}
		require.NoError(t, o.UnmarshalText(b))
		assert.Equal(t, v, o)
	}
	o := tai.Failed
	require.NoError(t, o.UnmarshalText([]byte("succeeded")))
	assert.Equal(t, tai.Succeeded, o)
}

// A policy error, a panic and an ended context fail the signal whatever
// error they carry: a policy that consults another pipeline, or a limiter
// of its own, and errs with its rejection or denial has not been shed by
// a gate or denied by the policy stage. OutcomeOf goes by the outermost
// error of tai's, so a gate's or guard's rejection still wraps anything.
func TestOutcomeOfGoesByTheOutermostError(t *testing.T) {
	rejected := &tai.RejectedError{Stage: tai.StageGate, Err: errors.New("limited")}
	denied := &tai.DeniedError{Decision: tai.Decision{Verdict: tai.Deny}}
	tests := []struct {
		err  error
		want tai.Outcome
	}{
		{&tai.PolicyError{Policy: "velocity", Err: rejected}, tai.Failed},
		{fmt.Errorf("wrapped: %w", &tai.PolicyError{Err: denied}), tai.Failed},
		{&tai.PolicyError{Err: tai.ErrRejected}, tai.Failed},
		{&tai.PanicError{Stage: tai.StageAction, Value: denied}, tai.Failed},
		{&tai.StageError{Stage: tai.StagePolicy, Err: fmt.Errorf("x: %w", rejected)}, tai.Failed},
		{&tai.RejectedError{Err: &tai.PolicyError{Err: errors.New("x")}}, tai.Rejected},
		{&tai.RejectedError{Err: &tai.PanicError{Value: "x"}}, tai.Rejected},
		{fmt.Errorf("wrapped: %w", tai.ErrDenied), tai.Denied},
		{fmt.Errorf("wrapped: %w", tai.ErrRejected), tai.Rejected},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tai.OutcomeOf(tt.err), "%v", tt.err)
	}

	var rec tai.Record
	obs := tai.ObserverFunc(func(_ context.Context, r tai.Record) { rec = r })
	policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{}, rejected
	})
	action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil })
	p, err := tai.New(tai.Named("velocity", policy), action, tai.WithObservers(obs))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
	var pe *tai.PolicyError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, tai.Failed, res.Outcome)
	assert.Equal(t, tai.Failed, rec.Outcome)
	assert.ErrorIs(t, err, rejected, "the policy's error is kept")
}

// An action's error is returned as it is: one that is another pipeline's
// rejection or denial keeps that outcome, in the Result, the Record and
// OutcomeOf alike, with the downstream RetryAfter; one that does not wrap
// it fails the signal.
func TestActionErrorOfAnotherPipelineKeepsItsOutcome(t *testing.T) {
	shed := &tai.RejectedError{Stage: tai.StageGate, Hook: "downstream", Err: retryAfterErr{3 * time.Second}}
	denied := &tai.DeniedError{Decision: tai.Decision{Verdict: tai.Deny, Policy: "downstream"}}
	tests := []struct {
		err  error
		want tai.Outcome
	}{
		{shed, tai.Rejected},
		{fmt.Errorf("charge: %w", shed), tai.Rejected},
		{denied, tai.Denied},
		{fmt.Errorf("charge: %v", shed), tai.Failed},
	}
	for _, tt := range tests {
		var rec tai.Record
		obs := tai.ObserverFunc(func(_ context.Context, r tai.Record) { rec = r })
		policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		})
		action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 0, tt.err })
		p, err := tai.New(policy, action, tai.WithObservers(obs))
		require.NoError(t, err)
		res, err := p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
		assert.Same(t, tt.err, err, "returned as it is: %v", tt.err)
		assert.Equal(t, tt.want, res.Outcome, "%v", tt.err)
		assert.Equal(t, tt.want, rec.Outcome, "%v", tt.err)
		assert.Equal(t, tt.want, tai.OutcomeOf(err), "%v", tt.err)
		if tt.want == tai.Rejected {
			assert.Equal(t, 3*time.Second, tai.RetryAfter(err))
		}
	}
}

// retryAfterErr is a hook's error carrying a retry hint.
type retryAfterErr struct{ after time.Duration }

func (e retryAfterErr) Error() string             { return "limited" }
func (e retryAfterErr) RetryAfter() time.Duration { return e.after }

// A negative hint is no hint: RetryAfter never answers less than 0,
// whether the hint stands alone or is joined with others.
func TestRetryAfterIsNeverNegative(t *testing.T) {
	neg := retryErr{-3 * time.Second}
	for _, err := range []error{neg, fmt.Errorf("x: %w", neg), errors.Join(neg), errors.Join(neg, errors.New("plain")), hintAs{-time.Second}} {
		assert.Zero(t, tai.RetryAfter(err), "%v", err)
	}
	assert.Equal(t, time.Second, tai.RetryAfter(errors.Join(neg, retryErr{time.Second})))
}

// A policy's error that holds a *PanicError or a *PolicyError of another
// pipeline behind a rejection or a denial (errors.Join of two pipelines'
// errors, a gate that wraps a pipeline's panic) still fails the signal:
// the policy erred, whatever it consulted said.
func TestPolicyErrorHoldingARejectionAndAPanicFails(t *testing.T) {
	denied := &tai.DeniedError{Decision: tai.Decision{Verdict: tai.Deny}}
	panicked := &tai.PanicError{Stage: tai.StageAction, Value: "boom"}
	failed := &tai.PolicyError{Policy: "inner", Err: errors.New("store down")}
	tests := []struct {
		name string
		err  error
	}{
		{"denial joined with a panic", errors.Join(denied, panicked)},
		{"rejection wrapping a panic", &tai.RejectedError{Stage: tai.StageGate, Err: panicked}},
		{"rejection wrapping a policy error", fmt.Errorf("lookup: %w", &tai.RejectedError{Stage: tai.StageGate, Err: failed})},
	}
	action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil })
	for _, tt := range tests {
		for _, combined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/all=%v", tt.name, combined), func(t *testing.T) {
				var policy tai.Policy[int] = tai.Named("outer", tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
					return tai.Decision{}, tt.err
				}))
				if combined {
					policy = tai.All(policy)
				}
				var rec tai.Record
				obs := tai.ObserverFunc(func(_ context.Context, r tai.Record) { rec = r })
				p, err := tai.New(policy, action, tai.WithObservers(obs))
				require.NoError(t, err)
				res, err := p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
				assert.Equal(t, tai.Failed, tai.OutcomeOf(err), "%v", err)
				assert.Equal(t, tai.Failed, res.Outcome)
				assert.Equal(t, tai.Failed, rec.Outcome)
				var pe *tai.PolicyError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, "outer", pe.Policy)
				assert.ErrorIs(t, err, tt.err, "the policy's error is kept")
			})
		}
	}
}
