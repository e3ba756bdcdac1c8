package tai_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// A policy that panics inside FailOpen fails open, as a FailOpen rule of
// a Scored policy whose Check panics does: an advisory check's bug must
// not stop the line any more than its outage does.
func TestFailOpenPolicyThatPanicsFailsOpen(t *testing.T) {
	panics := tai.Named("geo", tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		panic("geo: lookup table not loaded")
	}))
	d, err := tai.FailOpen(panics).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict)
	assert.True(t, d.FailedOpen)
	assert.Equal(t, "geo", d.Policy)
	assert.Contains(t, d.Reason, "failed open: tai: panic in policy: geo: lookup table not loaded")

	// The same through a pipeline, inside a combinator (whose child span
	// machinery passes the panic on) and on its own.
	act := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil })
	for name, policy := range map[string]tai.Policy[int]{
		"alone":          tai.FailOpen(panics),
		"inside All":     tai.FailOpen(tai.All(panics)),
		"beside another": tai.All(tai.FailOpen(panics), fixed(allow, nil)),
	} {
		t.Run(name, func(t *testing.T) {
			p, err := tai.New(policy, act, tai.WithTracer(&spanTracer{j: &journal{}, withCtx: true}))
			require.NoError(t, err)
			res, err := p.Process(context.Background(), sig())
			require.NoError(t, err)
			assert.Equal(t, 1, res.Value)
			assert.True(t, res.Decision.FailedOpen)
		})
	}

	// panic(err) keeps the error for errors.Is in the reason's words only;
	// the decision carries no error value, as for a returned error.
	boom := errors.New("boom")
	d, err = tai.FailOpen(tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		panic(boom)
	})).Evaluate(context.Background(), sig())
	require.NoError(t, err)
	assert.True(t, d.FailedOpen)
	assert.Contains(t, d.Reason, "boom")
}

// A policy inside FailOpen that ends its goroutine with runtime.Goexit
// (t.FailNow in a test's policy) is not taken for a decision: the
// goroutine ends as it asked.
func TestFailOpenDoesNotStopAGoexit(t *testing.T) {
	exits := tai.FailOpen(tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		runtime.Goexit()
		return tai.Decision{}, nil
	}))
	returned := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = exits.Evaluate(context.Background(), sig())
		returned <- struct{}{}
	}()
	<-done
	select {
	case <-returned:
		t.Fatal("Evaluate returned after its policy called runtime.Goexit")
	default:
	}
}
