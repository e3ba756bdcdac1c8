package andon

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A cord change that finds the evaluation slot busy past ctx is left for
// the next evaluation only while the evaluator is open: a Shutdown that
// comes between the closed check and the change, here from inside the
// status function, must not leave the cord pulled after it returned.
func TestCordChangeUnheldRacingShutdown(t *testing.T) {
	e, err := NewEvaluator(EvaluatorOptions{})
	require.NoError(t, err)
	require.True(t, e.acquire(context.Background()), "the slot is free")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	ok := e.pullOrReset(ctx, func(now time.Time) CordStatus {
		// Reached with the slot busy and the evaluator found open.
		e.release()
		require.NoError(t, e.Shutdown(context.Background()))
		return CordStatus{Pulled: true, Reason: "smoke", Who: "ann", Since: now}
	})
	assert.False(t, ok, "a pull after Shutdown returned reports no pull")
	assert.False(t, e.Cord().Pulled, "the cord is left as it was after Shutdown")
}
