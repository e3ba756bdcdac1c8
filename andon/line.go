package andon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taipattern/taikit/internal/typednil"
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
	if typednil.Holds(c.line) {
		return fmt.Errorf("the Line is a nil %T", c.line)
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

// StopEnder is a Line that can end one particular stop: EndStop(n)
// restarts the line only if it is still stopped by its n-th stop
// (LineStatus.Stops as it was right after that Stop), and reports whether
// it did. *jidoka.Line is one.
type StopEnder interface {
	EndStop(n uint64) bool
}

// StopLine returns a Hook that stops line when a rule fires and restarts
// it when the rule resolves, only if the stop it ends is the one the hook
// made: a line stopped by someone else, or restarted and stopped again
// since (even for the same reason, by another hook), stays stopped. A
// line that is a StopEnder, as *jidoka.Line is, is restarted with
// EndStop, for the number of the hook's stop. Another Line is restarted
// if its Status still gives the reason the hook stopped it with, and a
// stop made since for that same reason is then ended too.
//
// Give one StopLine hook to every rule that may stop the same line (share
// the value, or put it in EvaluatorOptions.Hooks): it restarts the line only when
// the last of those rules has resolved. Two separate hooks on one line do
// not know about each other. A line restarted by hand while some of those
// rules fire stays running until another of them fires (or the cord is
// pulled): that stops it again.
func StopLine(line Line) Hook {
	h := &lineStopper{line: line, firing: map[string]struct{}{}}
	h.ender, _ = line.(StopEnder)
	return h
}

type lineStopper struct {
	line   Line
	ender  StopEnder // line, if it can end one particular stop
	mu     sync.Mutex
	firing map[string]struct{} // rules firing through this hook
	reason string              // the reason this hook stopped the line with; "" if it holds no stop
	stop   uint64              // with ender: the line's Stops right after this hook's stop
}

func (h *lineStopper) Fire(_ context.Context, a Alert) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.firing[a.Name] = struct{}{}
	if h.reason != "" {
		if h.holds() {
			return // the stop this hook made still holds
		}
		h.reason = "" // someone restarted the line since: stop it again
	}
	reason := "andon: " + a.Name
	if s := a.Annotations["summary"]; s != "" {
		reason += ": " + s
	}
	if h.ender == nil {
		if h.line.Stop(reason) {
			h.reason = reason
		}
		return
	}
	before := h.line.Status().Stops
	if !h.line.Stop(reason) {
		return
	}
	// The stop is this hook's until someone starts the line. Stops grown
	// by one since before it means no one else stopped the line meanwhile;
	// grown by more, someone did (stopped and started it before this stop,
	// or started and stopped it after), and the current stop cannot be
	// told for this hook's: the hook leaves it stopped, for a person to end.
	if st := h.line.Status(); st.Stopped && st.Reason == reason && st.Stops == before+1 {
		h.reason, h.stop = reason, st.Stops
	}
}

// holds reports whether the line is still stopped by this hook's stop.
func (h *lineStopper) holds() bool {
	st := h.line.Status()
	return st.Stopped && st.Reason == h.reason && (h.ender == nil || st.Stops == h.stop)
}

func (h *lineStopper) Resolve(_ context.Context, a Alert) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.firing, a.Name)
	if h.reason == "" || len(h.firing) > 0 {
		return
	}
	if h.ender != nil {
		h.ender.EndStop(h.stop)
	} else if h.holds() {
		h.line.Start()
	}
	h.reason, h.stop = "", 0
}

// Name names the hook in logs: "stop line checkout".
func (h *lineStopper) Name() string { return "stop line " + h.line.Name() }
