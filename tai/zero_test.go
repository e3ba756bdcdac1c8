package tai_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// TestZeroPipelineFailsEverySignal: the zero Pipeline has no policy and
// no action. Process called the nil policy and answered a *PanicError
// blaming the policy stage, which a caller would look for in their
// policy; it says the Pipeline was not made by New.
func TestZeroPipelineFailsEverySignal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p tai.Pipeline[int, int]
		for _, s := range []tai.Signal[int]{{ID: "1", Kind: "payment"}, {}} {
			var (
				res tai.Result[int]
				err error
			)
			require.NotPanics(t, func() { res, err = p.Process(context.Background(), s) })
			assert.ErrorContains(t, err, "not made by New")
			var pe *tai.PanicError
			assert.False(t, errors.As(err, &pe), "nothing panicked")
			assert.Equal(t, tai.Failed, res.Outcome)
			assert.Equal(t, tai.Failed, tai.OutcomeOf(err))
		}
	})
}

// TestZeroScoredFailsClosed: the zero Scored has no rules and no
// thresholds; Evaluate errs rather than allow, and its name and
// thresholds are zero.
func TestZeroScoredFailsClosed(t *testing.T) {
	var p tai.Scored[int]
	d, err := p.Evaluate(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
	assert.ErrorContains(t, err, "NewScored")
	assert.NotEqual(t, tai.Allow, d.Verdict)
	assert.Empty(t, p.Name())
	review, deny := p.Thresholds()
	assert.Zero(t, review)
	assert.Zero(t, deny)
}

// TestZeroValuesOfTheSmallTypes: the zero Verdict, Outcome and Stage are
// named and marked invalid where they mean "none"; the zero IDs are not
// valid; the zero Record has no stage time; the errors built without
// their fields still have a message.
func TestZeroValuesOfTheSmallTypes(t *testing.T) {
	var v tai.Verdict
	assert.False(t, v.Valid())
	assert.NotEmpty(t, v.String())
	var o tai.Outcome
	assert.False(t, o.Valid())
	assert.NotEmpty(t, o.String())
	var st tai.Stage
	assert.NotEmpty(t, st.String())
	assert.False(t, tai.TraceID{}.IsValid())
	assert.False(t, tai.SpanID{}.IsValid())
	var r tai.Record
	assert.Zero(t, r.StageDuration(tai.StageAction))
	assert.Zero(t, r.StageDuration(tai.Stage(255)))
	for _, err := range []error{&tai.DeniedError{}, &tai.RejectedError{}, &tai.PolicyError{}, &tai.PanicError{}, &tai.StageError{}} {
		assert.NotPanics(t, func() { assert.NotEmpty(t, err.Error()) })
		assert.NotPanics(t, func() { _ = errors.Unwrap(err) })
	}
}
