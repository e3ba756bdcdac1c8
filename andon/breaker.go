package andon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/jidoka"
)

// Breaker is what andon needs of a *jidoka.Breaker: a consistent view of
// its state.
type Breaker interface {
	Snapshot() jidoka.Snapshot
}

// BreakerOpen holds while breaker refuses calls: open, forced open or
// half-open (still probing whether the dependency is back). Value is 1
// then and 0 otherwise; Detail gives the state, since when and why.
func BreakerOpen(breaker Breaker) Condition { return &breakerOpen{b: breaker} }

type breakerOpen struct{ b Breaker }

func (*breakerOpen) onState() {}

func (c *breakerOpen) validate() error {
	if c.b == nil {
		return errors.New("the Breaker is nil")
	}
	if typednil.Holds(c.b) {
		return fmt.Errorf("the Breaker is a nil %T", c.b)
	}
	return nil
}

// breakerRefuses reports whether a breaker in state s refuses calls.
func breakerRefuses(s jidoka.State) bool {
	return s == jidoka.StateOpen || s == jidoka.StateForcedOpen || s == jidoka.StateHalfOpen
}

func (c *breakerOpen) Measure(context.Context, time.Time) (Measurement, error) {
	s := c.b.Snapshot()
	m := Measurement{Unit: UnitState, Threshold: 0.5, Samples: 1, Detail: fmt.Sprintf("breaker %s %s", s.Name, s.State)}
	if breakerRefuses(s.State) {
		m.Active, m.Value = true, 1
		if s.Reason != "" {
			m.Detail += ": " + s.Reason
		}
	}
	return m, nil
}

// String describes the condition: "breaker gateway open".
func (c *breakerOpen) String() string { return "breaker " + c.b.Snapshot().Name + " open" }
