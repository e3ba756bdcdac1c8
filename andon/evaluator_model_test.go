package andon_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/kanban"

	"github.com/taipattern/taikit/andon"
)

// modelCond is a condition whose measurement a test sets.
type modelCond struct {
	mu   sync.Mutex
	m    andon.Measurement
	fail bool
}

func (c *modelCond) set(m andon.Measurement, fail bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m, c.fail = m, fail
}

func (c *modelCond) Measure(context.Context, time.Time) (andon.Measurement, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return andon.Measurement{}, errors.New("source down")
	}
	return c.m, nil
}

// modelNotifier records what it delivers; while mode is receiverDown it
// fails every call with an error worth a retry, while receiverRefuses for
// good.
type modelNotifier struct {
	recorder
	mode    atomic.Int32
	refresh bool
	hold    chan struct{} // closed to answer, while the receiver is held
}

const (
	receiverUp int32 = iota
	receiverDown
	receiverRefuses
)

func (n *modelNotifier) Notify(ctx context.Context, alerts []andon.Alert) error {
	n.mu.Lock()
	hold := n.hold
	n.mu.Unlock()
	if hold != nil {
		<-hold
	}
	switch n.mode.Load() {
	case receiverDown:
		return errors.New("connection refused")
	case receiverRefuses:
		return kanban.Permanent(errors.New("400 Bad Request"))
	}
	return n.recorder.Notify(ctx, alerts)
}

func (n *modelNotifier) Refreshes() bool { return n.refresh }

// modelRule is what the model knows of one rule: its settings, what its
// condition measures next, and the state the package docs give it.
type modelRule struct {
	name, team    string
	forD, keep    time.Duration
	minSamples    uint64
	cond          *modelCond // nil for the cord
	active, fail  bool
	value         float64
	samples       uint64
	state         andon.AlertState
	activeAt      time.Time
	firedAt       time.Time
	resolvedAt    time.Time
	keepSince     time.Time
	lastEval      time.Time
	validUntil    time.Time
	lastError     bool
	insufficient  bool
	measuredValue float64
	measuredCount uint64
	// What the notifier knows of the alert: a firing alert queued (and
	// when), one the receiver took, a resolution it is owed, and whether
	// it missed a notification after the one it holds (a resolution, or
	// a firing alert, dropped or given up), so that the alert firing is
	// sent again at once.
	sent    bool
	sentAt  time.Time
	refused bool
	held    bool
	owed    bool
	missed  bool
	// resolutionAt is when a Refresher was last sent the resolution of
	// the alert, resolved now, to be re-sent for 15 minutes; zero if none.
	resolutionAt time.Time
}

// modelSilence is a silence the model keeps: it matches by one label.
type modelSilence struct {
	id               string
	label, value     string
	regexp           bool
	startsAt, endsAt time.Time
}

func (s modelSilence) matches(r *modelRule, at time.Time) bool {
	if at.Before(s.startsAt) || !at.Before(s.endsAt) {
		return false
	}
	v := r.name
	if s.label == "team" {
		v = r.team
	}
	if s.regexp { // the values are "x|y" of letters
		a, b, _ := cut(s.value)
		return v == a || v == b
	}
	return v == s.value
}

func cut(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '|' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// evalModel drives an Evaluator and a model of it, built from the
// package's docs, with the same steps.
type evalModel struct {
	e        *andon.Evaluator
	rules    []*modelRule // the cord last
	silences []modelSilence
	history  []andon.Transition
	histSize int
	hooks    []string
	notified []string
	rec      *modelNotifier
	stats    andon.NotifierStats
	queued   []told
	inFlight []told
	holding  bool // the receiver does not answer
	attempts int
	refresh  bool
	resend   time.Duration
	queue    int
	offset   time.Duration // of the evaluations' clock ahead of the wall clock
	hookMu   sync.Mutex
	gotHooks []string
	pulled   bool
}

func (m *evalModel) silenced(r *modelRule, at time.Time) bool {
	return slices.ContainsFunc(m.silences, func(s modelSilence) bool { return s.matches(r, at) })
}

// apply moves a rule as the docs of Rule, AlertState and Alert say.
func (m *evalModel) apply(r *modelRule, now time.Time) (from, to andon.AlertState) {
	from = r.state
	r.lastEval = now
	r.lastError = r.fail
	if r.fail {
		return from, from
	}
	r.validUntil = now.Add(4 * max(m.resend, 15*time.Second))
	r.measuredValue, r.measuredCount = r.value, r.samples
	r.insufficient = r.samples < r.minSamples
	if r.insufficient {
		return from, from
	}
	if r.active {
		r.keepSince = time.Time{}
		if r.state == andon.Inactive || r.state == andon.Resolved {
			r.state, r.activeAt = andon.Pending, now
		}
		if r.state == andon.Pending && now.Sub(r.activeAt) >= r.forD {
			r.state, r.firedAt = andon.Firing, now
		}
		return from, r.state
	}
	switch r.state {
	case andon.Pending:
		r.state, r.activeAt = andon.Inactive, time.Time{}
	case andon.Firing:
		if r.keepSince.IsZero() {
			r.keepSince = now
		}
		if now.Sub(r.keepSince) >= r.keep {
			r.state, r.resolvedAt, r.keepSince = andon.Resolved, now, time.Time{}
		}
	}
	return from, r.state
}

// evaluate is one evaluation of rules at now; it returns the transitions
// the model expects.
func (m *evalModel) evaluate(rules []*modelRule, now time.Time) []andon.Transition {
	var trs []andon.Transition
	for _, r := range rules {
		from, to := m.apply(r, now)
		if from != to {
			tr := andon.Transition{Rule: r.name, From: from, To: to, At: now, Value: r.measuredValue}
			trs = append(trs, tr)
			m.history = append(m.history, tr)
			if len(m.history) > m.histSize {
				m.history = m.history[1:]
			}
		}
		switch {
		case to == andon.Firing && from != andon.Firing:
			m.hooks = append(m.hooks, r.name+" fire")
		case from == andon.Firing && to != andon.Firing:
			m.hooks = append(m.hooks, r.name+" resolve")
		}
	}
	m.notify(rules, now, time.Now())
	return trs
}

// notify offers the rules' alerts, after an evaluation at now (wall on
// the clock), to the notifier, as NotifyOptions, Refresher and Silence
// say, and records what its receiver, which takes every batch, is told.
func (m *evalModel) notify(rules []*modelRule, now, wall time.Time) {
	owedAny := slices.ContainsFunc(m.rules, func(r *modelRule) bool { return r.owed })
	for _, r := range rules {
		var tell string
		resend := false // a resolution re-sent to a Refresher
		switch r.state {
		case andon.Firing:
			r.resolutionAt = time.Time{}
			r.owed = false // firing again: the resolution owed is out of date
			due := m.refresh && now.Sub(r.sentAt) >= m.resend
			switch {
			case m.silenced(r, wall):
				// Muted, but a Refresher that holds it is still re-sent it.
				if r.sent && r.held && due {
					tell = "firing"
				}
			case !r.sent || due || r.missed:
				// A receiver that missed the resolution, or the alert
				// firing again, still holds the older firing alert: it
				// hears of this one, with its FiredAt.
				tell = "firing"
			}
		case andon.Resolved:
			switch {
			case r.sent && r.refused:
				r.sent, r.refused = false, false // never taken: not told
			case r.sent:
				tell = "resolved"
			case m.refresh && !r.resolutionAt.IsZero() && now.Sub(r.resolvedAt) <= 15*time.Minute &&
				now.Sub(r.resolutionAt) >= m.resend:
				// Re-sent every ResendInterval for 15 minutes.
				tell, resend = "resolved", true
			}
		default:
			if r.sent && r.owed && owedAny {
				tell = "resolved"
			}
		}
		if tell == "" {
			continue
		}
		last := -1
		for i, q := range m.queued {
			if q.r == r {
				last = i
			}
		}
		switch {
		case last >= 0 && m.queued[last].tell == tell:
			// A newer re-send replaces the queued one.
		case len(m.queued) == m.queue:
			// Dropped: a firing alert is offered again while it fires, a
			// resolution is owed while the alert does not fire, and the
			// alert firing again first is sent in its place.
			m.stats.Dropped++
			if tell == "resolved" && !resend {
				r.owed, r.missed, r.sentAt = true, true, time.Time{}
			}
			continue
		default:
			m.queued = append(m.queued, told{r, tell})
		}
		if tell == "firing" {
			r.sent, r.sentAt, r.refused = true, now, false
		} else {
			r.sent, r.owed = false, false
			if m.refresh && r.state == andon.Resolved {
				r.resolutionAt = now
			}
		}
		r.missed = false
	}
	m.work()
}

// work is the notifier's worker: it takes what is queued as a batch and
// delivers it, unless the receiver is held.
func (m *evalModel) work() {
	for {
		if m.inFlight == nil {
			m.inFlight, m.queued = m.queued, nil
		}
		if len(m.inFlight) == 0 || m.holding {
			return
		}
		batch := m.inFlight
		m.inFlight = nil
		m.deliver(batch)
	}
}

// deliver is the fate of one batch, which the receiver takes, or fails
// as many times as NotifyOptions.MaxAttempts allows.
func (m *evalModel) deliver(batch []told) {
	switch m.rec.mode.Load() {
	case receiverUp:
		m.stats.Sent += uint64(len(batch))
		for _, b := range batch {
			m.notified = append(m.notified, b.r.name+" "+b.tell)
			b.r.held = b.tell == "firing"
		}
		return
	case receiverDown:
		m.stats.Retries += uint64(m.attempts - 1)
	}
	m.stats.Failed += uint64(len(batch))
	for _, b := range batch {
		r := b.r
		switch {
		case b.tell == "firing" && !r.held:
			// Never taken: no resolution is owed for it. Given up, it is
			// offered again while it fires; refused, not before it fires
			// anew (a Refresher's, after ResendInterval).
			r.owed = false
			r.sent = m.rec.mode.Load() == receiverRefuses
			r.refused = r.sent
		case m.rec.mode.Load() == receiverRefuses:
		case b.tell == "firing":
			// Offered again at once: to a Refresher, as a re-send; to
			// another notifier, as the alert firing again, which the
			// receiver, holding the older firing alert, missed.
			r.sentAt, r.missed = time.Time{}, true
		case r.held:
			// The receiver holds it firing: it is owed the resolution,
			// and, should the alert fire again first, the new firing
			// alert.
			r.sent, r.sentAt, r.owed, r.missed = true, time.Time{}, true, true
		}
	}
}

// told is a notification the model queued.
type told struct {
	r    *modelRule
	tell string
}

// check compares what the evaluator shows with the model.
func (m *evalModel) check(ctx context.Context) string {
	now := time.Now()
	if m.holding {
		synctest.Wait() // the worker takes what is queued, and waits for the receiver
	} else if err := m.e.Flush(ctx); err != nil {
		return err.Error()
	}
	alerts := m.e.Alerts()
	if len(alerts) != len(m.rules) {
		return fmt.Sprintf("%d alerts, want %d", len(alerts), len(m.rules))
	}
	for i, r := range m.rules {
		a := alerts[i]
		want := andon.Alert{Name: r.name, State: r.state, LastEval: r.lastEval, ValidUntil: r.validUntil, Silenced: m.silenced(r, now),
			InsufficientData: r.insufficient, Value: r.measuredValue, Samples: r.measuredCount}
		got := andon.Alert{Name: a.Name, State: a.State, LastEval: a.LastEval, ValidUntil: a.ValidUntil, Silenced: a.Silenced,
			InsufficientData: a.InsufficientData, Value: a.Value, Samples: a.Samples}
		switch r.state {
		case andon.Pending:
			want.ActiveAt, got.ActiveAt = r.activeAt, a.ActiveAt
		case andon.Firing:
			want.ActiveAt, got.ActiveAt = r.activeAt, a.ActiveAt
			want.FiredAt, got.FiredAt = r.firedAt, a.FiredAt
			want.KeepFiringSince, got.KeepFiringSince = r.keepSince, a.KeepFiringSince
		case andon.Resolved:
			want.ResolvedAt, got.ResolvedAt = r.resolvedAt, a.ResolvedAt
		case andon.Inactive:
			want.ActiveAt, got.ActiveAt = time.Time{}, a.ActiveAt
		}
		if r.cond != nil {
			want.LastError, got.LastError = fmt.Sprint(r.lastError), fmt.Sprint(a.LastError != "")
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Sprintf("alert %s:\n got %+v\nwant %+v", r.name, got, want)
		}
		if s := a.Since(); !s.Equal(map[andon.AlertState]time.Time{andon.Pending: r.activeAt, andon.Firing: r.firedAt,
			andon.Resolved: r.resolvedAt}[r.state]) {
			return fmt.Sprintf("alert %s: Since %v in state %v", r.name, s, r.state)
		}
	}
	if got := m.e.History(); fmt.Sprint(got) != fmt.Sprint(m.history) {
		return fmt.Sprintf("history:\n got %v\nwant %v", got, m.history)
	}
	m.hookMu.Lock()
	gotHooks := slices.Clone(m.gotHooks)
	m.hookMu.Unlock()
	if !slices.Equal(gotHooks, m.hooks) {
		return fmt.Sprintf("hooks:\n got %v\nwant %v", gotHooks, m.hooks)
	}
	if got := m.rec.events(); !slices.Equal(got, m.notified) {
		return fmt.Sprintf("notifications:\n got %v\nwant %v", got, m.notified)
	}
	want := m.stats
	want.Queued = len(m.queued)
	if got := m.e.NotifierStats()[0]; got != want {
		return fmt.Sprintf("notifier stats:\n got %+v\nwant %+v", got, want)
	}
	var ids []string
	for _, s := range m.silences {
		if now.Before(s.endsAt) {
			ids = append(ids, s.id)
		}
	}
	var gotIDs []string
	for _, s := range m.e.Silences() {
		gotIDs = append(gotIDs, s.ID)
	}
	if !slices.Equal(gotIDs, ids) {
		return fmt.Sprintf("silences: got %v, want %v", gotIDs, ids)
	}
	return ""
}

// evalAction is one step of the model test.
type evalAction struct {
	op      int
	rule    int
	active  bool
	fail    bool
	samples uint64
	value   float64
	advance time.Duration
	sil     modelSilence
	starts  time.Duration
	lasts   time.Duration
	expire  int
}

// TestEvaluatorMatchesModel drives an evaluator with rules of random For,
// KeepFiringFor and MinSamples, their conditions holding or not, failing,
// or resting on too few samples, with the cord pulled and reset, silences
// made, expired and ending on their own, and a notifier (a Refresher or
// not, with a small queue) whose receiver takes, fails, refuses or holds
// its batches, on synctest's clock, evaluated at its time or ahead of it;
// after each step, the alerts (state, timestamps, ValidUntil, Silenced),
// History, the hooks called, the notifications delivered and the
// notifier's counts must be what the docs say.
func TestEvaluatorMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		type ruleOpts struct {
			forD, keep time.Duration
			min        uint64
		}
		nRules := rapid.IntRange(1, 3).Draw(rt, "rules")
		opts := make([]ruleOpts, nRules)
		for i := range opts {
			opts[i] = ruleOpts{
				forD: time.Duration(rapid.IntRange(0, 3).Draw(rt, "for")) * time.Minute,
				keep: time.Duration(rapid.IntRange(0, 3).Draw(rt, "keep")) * time.Minute,
				min:  uint64(rapid.IntRange(0, 2).Draw(rt, "minSamples")),
			}
		}
		histSize := rapid.IntRange(1, 6).Draw(rt, "historySize")
		refresh := rapid.Bool().Draw(rt, "refresher")
		resend := time.Duration(rapid.IntRange(1, 4).Draw(rt, "resend")) * 30 * time.Second
		queue := []int{1, 2, 256}[rapid.IntRange(0, 2).Draw(rt, "queueSize")]
		attempts := rapid.IntRange(1, 2).Draw(rt, "maxAttempts")
		var actions []evalAction
		for range rapid.IntRange(1, 40).Draw(rt, "steps") {
			a := evalAction{op: rapid.IntRange(0, 8).Draw(rt, "op"), rule: rapid.IntRange(0, nRules-1).Draw(rt, "rule")}
			switch a.op {
			case 0, 1: // set a condition
				a.active = rapid.Bool().Draw(rt, "active")
				a.fail = rapid.IntRange(0, 5).Draw(rt, "fail") == 0
				a.samples = uint64(rapid.IntRange(0, 3).Draw(rt, "samples"))
				a.value = float64(rapid.IntRange(0, 100).Draw(rt, "value")) / 100
			case 2, 3: // advance the clock, maybe not at all, and evaluate
				a.advance = time.Duration(rapid.IntRange(0, 8).Draw(rt, "advance")) * 30 * time.Second
				if a.op == 3 { // the evaluations' clock runs ahead of the wall clock
					a.starts = time.Duration(rapid.IntRange(0, 2).Draw(rt, "ahead")) * 20 * time.Second
				}
			case 4: // a silence
				a.sil.label = []string{"alertname", "team"}[rapid.IntRange(0, 1).Draw(rt, "label")]
				a.sil.regexp = rapid.Bool().Draw(rt, "regexp")
				a.starts = time.Duration(rapid.IntRange(0, 4).Draw(rt, "starts")) * time.Minute
				a.lasts = time.Duration(rapid.IntRange(1, 6).Draw(rt, "lasts")) * time.Minute
			case 5:
				a.expire = rapid.IntRange(0, 5).Draw(rt, "expire")
			case 6: // pull or reset the cord
				a.active = rapid.Bool().Draw(rt, "pull")
			case 7: // let time pass without evaluating
				a.advance = time.Duration(rapid.IntRange(1, 8).Draw(rt, "sleep")) * 30 * time.Second
			case 8: // the receiver goes up, down, or refuses, or is held or released
				a.expire = rapid.IntRange(0, 3).Draw(rt, "receiver")
			}
			actions = append(actions, a)
		}
		var failure string
		synctest.Test(t, func(t *testing.T) {
			m := &evalModel{histSize: histSize, rec: &modelNotifier{refresh: refresh}, refresh: refresh, resend: resend,
				queue: queue, attempts: attempts}
			m.stats.Name = "notifier 0"

			var rules []andon.Rule
			teams := []string{"a", "b", "c"}
			for i, o := range opts {
				c := &modelCond{}
				r := &modelRule{name: fmt.Sprintf("R%d", i), team: teams[i], forD: o.forD, keep: o.keep, minSamples: o.min, cond: c}
				m.rules = append(m.rules, r)
				rules = append(rules, andon.Rule{Name: r.name, Severity: andon.Page, Condition: c, For: o.forD,
					KeepFiringFor: o.keep, MinSamples: o.min, Labels: map[string]string{"team": r.team}})
			}
			cord := &modelRule{name: "AndonCord", team: "", samples: 1}
			m.rules = append(m.rules, cord)
			hook := andon.HookFuncs{
				OnFire: func(_ context.Context, a andon.Alert) {
					m.hookMu.Lock()
					defer m.hookMu.Unlock()
					m.gotHooks = append(m.gotHooks, a.Name+" fire")
				},
				OnResolve: func(_ context.Context, a andon.Alert) {
					m.hookMu.Lock()
					defer m.hookMu.Unlock()
					m.gotHooks = append(m.gotHooks, a.Name+" resolve")
				},
			}
			e, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: rules, HistorySize: histSize, Hooks: []andon.Hook{hook},
				Notifiers: []andon.Notifier{m.rec}, Logger: discardLogger(),
				Notify: andon.NotifyOptions{QueueSize: queue, ResendInterval: resend, MaxAttempts: attempts,
					Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second })}})
			if err != nil {
				failure = err.Error()
				return
			}
			defer func() {
				m.rec.mu.Lock()
				if m.rec.hold != nil {
					close(m.rec.hold)
				}
				m.rec.mu.Unlock()
				if err := e.Shutdown(context.Background()); err != nil && failure == "" {
					failure = err.Error()
				}
			}()
			m.e = e
			ctx := context.Background()
			for i, a := range actions {
				if f := m.step(ctx, a); f != "" {
					failure = fmt.Sprintf("step %d %+v: %s", i, a, f)
					return
				}
				if f := m.check(ctx); f != "" {
					failure = fmt.Sprintf("after step %d %+v: %s", i, a, f)
					return
				}
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}

func (m *evalModel) step(ctx context.Context, a evalAction) string {
	r := m.rules[a.rule]
	switch a.op {
	case 0, 1:
		r.active, r.fail, r.samples, r.value = a.active, a.fail, a.samples, a.value
		r.cond.set(andon.Measurement{Active: a.active, Value: a.value, Threshold: 0.5, Unit: andon.UnitRatio, Samples: a.samples}, a.fail)
	case 2, 3:
		time.Sleep(a.advance)
		m.offset += a.starts
		now := time.Now().Add(m.offset)
		var got []andon.Transition
		if a.op == 2 && m.offset == 0 {
			got = m.e.Evaluate(ctx)
		} else {
			got = m.e.EvaluateAt(ctx, now)
		}
		if want := m.evaluate(m.rules, now); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Sprintf("transitions:\n got %v\nwant %v", got, want)
		}
	case 4:
		s := a.sil
		s.value = r.name
		if s.label == "team" {
			s.value = r.team
		}
		if s.regexp {
			s.value += "|" + m.rules[(a.rule+1)%(len(m.rules)-1)].team
			if s.label == "alertname" {
				s.value = r.name + "|" + m.rules[(a.rule+1)%(len(m.rules)-1)].name
			}
		}
		typ := andon.MatchEqual
		if s.regexp {
			typ = andon.MatchRegexp
		}
		now := time.Now()
		s.startsAt, s.endsAt = now.Add(a.starts), now.Add(a.starts+a.lasts)
		var startsAt time.Time
		if a.starts > 0 {
			startsAt = s.startsAt
		}
		id, err := m.e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: s.label, Type: typ, Value: s.value}},
			StartsAt: startsAt, Duration: a.lasts})
		if err != nil {
			return err.Error()
		}
		s.id = id
		m.silences = append(m.silences, s)
	case 5:
		now := time.Now()
		var id string
		want := false
		if a.expire < len(m.silences) {
			s := m.silences[a.expire]
			id, want = s.id, now.Before(s.endsAt)
			m.silences = slices.Delete(m.silences, a.expire, a.expire+1)
		}
		if got := m.e.Expire(id); got != want {
			return fmt.Sprintf("Expire(%q) = %v, want %v", id, got, want)
		}
	case 6:
		cord := m.rules[len(m.rules)-1]
		want := a.active != m.pulled
		var got bool
		if a.active {
			got = m.e.Pull(ctx, "test", "tester")
		} else {
			got = m.e.Reset(ctx)
		}
		if got != want {
			return fmt.Sprintf("pull %v returned %v, want %v", a.active, got, want)
		}
		if want {
			m.pulled = a.active
			cord.active = a.active
			cord.value = 0
			if a.active {
				cord.value = 1
			}
			m.evaluate([]*modelRule{cord}, time.Now())
		}
	case 7:
		time.Sleep(a.advance)
	case 8:
		switch {
		case a.expire == 3 && !m.holding:
			if m.rec.mode.Load() != receiverUp {
				break // a held receiver answers
			}
			m.holding = true
			m.rec.mu.Lock()
			m.rec.hold = make(chan struct{})
			m.rec.mu.Unlock()
		case a.expire == 3:
			m.holding = false
			m.rec.mu.Lock()
			close(m.rec.hold)
			m.rec.hold = nil
			m.rec.mu.Unlock()
			m.work()
		case !m.holding:
			m.rec.mode.Store(int32(a.expire))
		}
	}
	return ""
}
