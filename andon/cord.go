package andon

import (
	"context"
	"strings"
	"sync"
	"time"
)

// CordOptions configures the andon cord of an evaluator: a rule that fires
// while someone has pulled the cord. The zero value is useful.
type CordOptions struct {
	// Name is the cord's alertname, valid UTF-8. Empty means "AndonCord".
	Name string
	// Severity of the cord's alert. Empty means Page.
	Severity Severity
	// Labels are added to the cord's alert, as a Rule's are: values must
	// be valid UTF-8, and one whose value is empty is no label.
	Labels map[string]string
	// RunbookURL is the cord alert's runbook_url annotation.
	RunbookURL string
	// Hooks run when the cord is pulled and reset, after EvaluatorOptions.Hooks:
	// StopLine(line) makes the cord stop the line.
	Hooks []Hook
}

// CordStatus is the state of the cord.
type CordStatus struct {
	Pulled bool      `json:"pulled"`
	Reason string    `json:"reason,omitempty"`
	Who    string    `json:"who,omitempty"`
	Since  time.Time `json:"since,omitzero"`
}

// cord is the condition of the cord rule: it holds while pulled.
type cord struct {
	mu     sync.Mutex
	status CordStatus
}

func (*cord) onState() {}

func (c *cord) Measure(context.Context, time.Time) (Measurement, error) {
	st := c.get()
	m := Measurement{Unit: UnitState, Threshold: 0.5, Samples: 1, Detail: "cord not pulled"}
	if st.Pulled {
		m.Active, m.Value = true, 1
		m.Detail = "cord pulled by " + st.Who + ": " + st.Reason
	}
	return m, nil
}

func (c *cord) String() string { return "andon cord pulled" }

func (c *cord) get() CordStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// set changes the cord and reports whether it changed.
func (c *cord) set(st CordStatus) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status.Pulled == st.Pulled {
		return false
	}
	c.status = st
	return true
}

// Pull pulls the andon cord: the cord's alert fires at once (hooks run,
// notifiers hear of it) and stays firing until Reset. reason says what is
// wrong and who who pulled it; empty values read "no reason given" and
// "someone". Pull reports whether the cord was pulled by this call: a cord
// already pulled keeps its first reason, as a stopped line does. It
// returns false, and leaves the cord as it was, once Shutdown has been
// called, even while Pull waits for an evaluation in progress: a true
// result means the cord's alert fired and its hooks ran. Should ctx end
// while another evaluation holds the evaluator, the cord is pulled all the
// same (Pull returns true; Cord and the board's live pages show it at
// once) and fires at the next evaluation, or at the next Pull that finds
// the evaluator free: that one reports false, the cord being pulled
// already, but fires it.
func (e *Evaluator) Pull(ctx context.Context, reason, who string) bool {
	reason, who = strings.TrimSpace(reason), strings.TrimSpace(who)
	if reason == "" {
		reason = "no reason given"
	}
	if who == "" {
		who = "someone"
	}
	return e.pullOrReset(ctx, func(now time.Time) CordStatus {
		return CordStatus{Pulled: true, Reason: reason, Who: who, Since: now}
	})
}

// Reset releases the andon cord: its alert resolves at once and its hooks'
// Resolve runs (StopLine restarts a line the cord stopped). It reports
// whether the cord was pulled and is released by this call; like Pull, it
// returns false and leaves the cord as it was once Shutdown has been
// called, and releases the cord for the next evaluation (or the next
// Reset that finds the evaluator free, which reports false) to resolve
// should ctx end while another evaluation holds the evaluator.
func (e *Evaluator) Reset(ctx context.Context) bool {
	return e.pullOrReset(ctx, func(time.Time) CordStatus { return CordStatus{} })
}

// pullOrReset sets the cord to status(now) and evaluates the cord's rule.
// The cord changes only while the evaluator is open: with the evaluation
// slot held, so that Shutdown, which closes the evaluator and then waits
// for the slot, waits for the evaluation; or, when ctx ends before the
// slot is free, with e.mu held across the closed check and the change, so
// that Shutdown either sees the change or prevents it.
func (e *Evaluator) pullOrReset(ctx context.Context, status func(now time.Time) CordStatus) bool {
	if e.cord == nil || e.isClosed() { // the zero Evaluator has no cord
		return false
	}
	if !e.acquire(ctx) {
		// Another evaluation holds the evaluator past ctx: change the
		// cord for the next evaluation to act on, if the evaluator is
		// still open. The check and the change are one step under e.mu,
		// which Shutdown takes to close the evaluator, so a Shutdown
		// cannot come between them and return with the cord changed.
		st := status(time.Now())
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.closed || !e.cord.set(st) {
			return false
		}
		e.broadcast() // the board shows the cord now; the next evaluation fires or resolves it
		return true
	}
	defer e.release()
	if e.isClosed() {
		return false
	}
	now := time.Now()
	changed := e.cord.set(status(now))
	if !changed && !e.cordBehind() {
		return false
	}
	// Evaluated also when the cord was already as asked but its rule is
	// not: changed by a call whose ctx ended while another evaluation held
	// the evaluator, and not evaluated since, it fires or resolves now
	// rather than at an evaluation that may be long in coming.
	e.evaluateHeld(ctx, now, now, []*ruleState{e.cordRule}, 0, nil)
	return changed
}

// cordBehind reports whether the cord's rule does not show the cord as it
// is: pulled and not firing, or released and firing.
func (e *Evaluator) cordBehind() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cord.get().Pulled != (e.cordRule.alert.State == Firing)
}

// Cord returns the state of the cord (released, for the zero Evaluator).
func (e *Evaluator) Cord() CordStatus {
	if e.cord == nil {
		return CordStatus{}
	}
	return e.cord.get()
}

// CordName returns the cord's alertname (CordOptions.Name; "" for the zero
// Evaluator).
func (e *Evaluator) CordName() string {
	if e.cordRule == nil {
		return ""
	}
	return e.cordRule.rule.Name
}
