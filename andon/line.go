package andon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taipattern/taikit/jidoka"
)

// Line is what andon needs of a *jidoka.Line: its name, stopping and
// restarting it, and its status.
type Line interface {
	Name() string
	Stop(reason string) bool
	Start() bool
	Status() jidoka.LineStatus
}

// LineStopped holds while line is stopped, by anyone. Value is 1 while it
// is stopped and 0 while it runs; Detail gives the reason.
//
// Do not give a LineStopped rule a StopLine hook on the same line: the
// rule would hold the stop it reports.
func LineStopped(line Line) Condition { return &lineStopped{line: line} }

type lineStopped struct{ line Line }

func (*lineStopped) onState() {}

func (c *lineStopped) validate() error {
	if c.line == nil {
		return errors.New("the Line is nil")
	}
	return nil
}

func (c *lineStopped) Measure(context.Context, time.Time) (Measurement, error) {
	st := c.line.Status()
	m := Measurement{Unit: UnitState, Threshold: 0.5, Samples: 1, Detail: "line " + c.line.Name() + " running"}
	if st.Stopped {
		m.Active, m.Value = true, 1
		m.Detail = fmt.Sprintf("line %s stopped: %s", c.line.Name(), st.Reason)
	}
	return m, nil
}

// String describes the condition: "line checkout stopped".
func (c *lineStopped) String() string { return "line " + c.line.Name() + " stopped" }

// StopLine returns a Hook that stops line when a rule fires and restarts
// it when the rule resolves, only if the hook stopped it and the line is
// still stopped for the reason the hook gave: a line stopped by someone
// else, or stopped again since, stays stopped.
//
// Give one StopLine hook to every rule that may stop the same line (share
// the value, or put it in EvaluatorOptions.Hooks): it restarts the line only when
// the last of those rules has resolved. Two separate hooks on one line do
// not know about each other. A line restarted by hand while some of those
// rules fire stays running until another of them fires (or the cord is
// pulled): that stops it again.
func StopLine(line Line) Hook {
	return &lineStopper{line: line, firing: map[string]struct{}{}}
}

type lineStopper struct {
	line   Line
	mu     sync.Mutex
	firing map[string]struct{} // rules firing through this hook
	reason string              // the reason this hook stopped the line with; "" if it did not
}

func (h *lineStopper) Fire(_ context.Context, a Alert) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.firing[a.Name] = struct{}{}
	if h.reason != "" {
		if st := h.line.Status(); st.Stopped && st.Reason == h.reason {
			return // the stop this hook made still holds
		}
		h.reason = "" // someone restarted the line since: stop it again
	}
	reason := "andon: " + a.Name
	if s := a.Annotations["summary"]; s != "" {
		reason += ": " + s
	}
	if h.line.Stop(reason) {
		h.reason = reason
	}
}

func (h *lineStopper) Resolve(_ context.Context, a Alert) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.firing, a.Name)
	if h.reason == "" || len(h.firing) > 0 {
		return
	}
	if st := h.line.Status(); st.Stopped && st.Reason == h.reason {
		h.line.Start()
	}
	h.reason = ""
}

// Name names the hook in logs: "stop line checkout".
func (h *lineStopper) Name() string { return "stop line " + h.line.Name() }
