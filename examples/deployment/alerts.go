package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/tai"
)

// The alert rules' names.
const (
	alertRolledBack = "DeploymentRolledBack"
	alertFailed     = "DeploymentFailed"
	alertMarginal   = "DeploymentHealthMarginal"
	alertSlow       = "CanarySlowToProgress"
	alertFrequency  = "DeploymentRollbackFrequency"
)

// rules are the service's alert rules. The first two and the last read
// the pipeline's records of kind deployment (one per region rollout: a
// rollback is a failed signal, a refused prerequisite a denied one; an
// attempt that failed with an error is of kind deployment.attempt, see
// outcomes); the others read the health of the rollouts running now.
func (s *Service) rules() []andon.Rule {
	runbook := "https://github.com/taipattern/taikit/tree/main/examples/deployment#alerts"
	return []andon.Rule{
		{
			Name: alertRolledBack, Severity: andon.Page, KeepFiringFor: 10 * time.Minute,
			Condition:  andon.OutcomeRate(s.stats, "deployment", 10*time.Minute, 0, tai.Failed),
			Summary:    "{{ $value | humanizePercentage }} of region rollouts rolled back over 10m",
			RunbookURL: runbook,
		},
		{
			// A refusal is a prerequisite doing its job, and most are a
			// client's (an image that does not exist, a freeze): a ticket
			// when many are refused, never a page for one.
			Name: alertFailed, Severity: andon.Ticket, KeepFiringFor: 10 * time.Minute, MinSamples: 4,
			Condition:  andon.OutcomeRate(s.stats, "deployment", 10*time.Minute, 0.2, tai.Denied),
			Summary:    "{{ $value | humanizePercentage }} of deployments refused by a prerequisite over 10m",
			RunbookURL: runbook,
		},
		{
			Name: alertMarginal, Severity: andon.Ticket,
			Condition:  andon.ConditionFunc(s.marginalHealth),
			Expr:       `max(deployment_health_error_rate >= 0.05 <= 0.10)`,
			Summary:    "a rollout's error rate is marginal: {{ $value | humanizePercentage }}",
			RunbookURL: runbook,
		},
		{
			Name: alertSlow, Severity: andon.Ticket, For: time.Minute,
			Condition:  andon.ConditionFunc(s.slowCanary),
			Expr:       `max(deployment_stage_overdue_ratio) > 3`, // set in a canary's first stage only, whatever its name
			Summary:    "a canary has run {{ $value | humanize }} times its bake",
			RunbookURL: runbook,
		},
		{
			Name: alertFrequency, Severity: andon.Ticket, MinSamples: 10,
			Condition:  andon.OutcomeRate(s.stats, "deployment", 24*time.Hour, 0.02, tai.Failed),
			Summary:    "{{ $value | humanizePercentage }} of the day's region rollouts rolled back",
			RunbookURL: runbook,
		},
	}
}

// rolloutHealth is what the alert rules read of the rollouts running in
// this process: each one's last error rate and how far past its bake its
// stage is. It also exports both as gauges, so the exported rules see the
// same.
type rolloutHealth struct {
	mu      sync.Mutex
	latest  map[string]float64 // run → last error rate sampled with data
	overdue map[string]float64 // run → time in stage / bake, canary stages only
}

// setErrorRate records a run's error rate, sampled with data: a sample
// without (too few requests, none) leaves the last one, as it leaves the
// exported gauge, so that the rule here and the exported one agree.
func (h *rolloutHealth) setErrorRate(key string, errorRate float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.latest == nil {
		h.latest = map[string]float64{}
	}
	h.latest[key] = errorRate
}

// setOverdue records how far past its bake a run's stage is, for a
// canary's first stage; another stage has none.
func (h *rolloutHealth) setOverdue(key string, overdue float64, canary bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.overdue == nil {
		h.overdue = map[string]float64{}
	}
	if canary {
		h.overdue[key] = overdue
	} else {
		delete(h.overdue, key)
	}
}

func (h *rolloutHealth) drop(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.latest, key)
	delete(h.overdue, key)
}

func (h *rolloutHealth) max(m func(*rolloutHealth) map[string]float64) (float64, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var top float64
	vals := m(h)
	for _, v := range vals {
		top = max(top, v)
	}
	return top, uint64(len(vals))
}

// marginalHealth is active when any running rollout's last error rate is
// in [5%, 10%], with the highest such rate as its value (the highest of
// all when none is): a rollout over 10% must not hide another that is
// marginal. A rate that is NaN (a broken health source, whose sample
// failed) is none of these: max would make the value NaN whatever the
// others read.
func (s *Service) marginalHealth(context.Context, time.Time) (andon.Measurement, error) {
	s.rollouts.mu.Lock()
	defer s.rollouts.mu.Unlock()
	var top, marginal float64
	found := false
	for _, v := range s.rollouts.latest {
		if math.IsNaN(v) {
			continue
		}
		top = max(top, v)
		if v >= 0.05 && v <= 0.10 {
			marginal, found = max(marginal, v), true
		}
	}
	if found {
		top = marginal
	}
	return andon.Measurement{Active: found, Value: top, Threshold: 0.05, Unit: andon.UnitRatio, Samples: uint64(len(s.rollouts.latest))}, nil
}

func (s *Service) slowCanary(context.Context, time.Time) (andon.Measurement, error) {
	v, n := s.rollouts.max(func(h *rolloutHealth) map[string]float64 { return h.overdue })
	return andon.Measurement{Active: v > 3, Value: v, Threshold: 3, Samples: max(n, 1)}, nil
}

// startAlerts evaluates the rules in-process, notifies through the log,
// and serves the board at /andon/. The board's cord is the service's
// cord: pulling it there stops deployments on every replica.
func (s *Service) startAlerts(ctx context.Context) error {
	cordHook := andon.HookFuncs{
		OnFire: func(ctx context.Context, a andon.Alert) {
			if s.andon.Cord().Who == cordFollower {
				return // the board shows a pull stored already
			}
			c := Cord{Stopped: true, Reason: "andon board: " + a.Annotations["summary"], At: time.Now().UTC()}
			_, changed, err := s.setCord(ctx, c)
			if err != nil {
				s.log.Error("cord not stored", "err", err)
				return
			}
			if changed {
				s.auditCord(ctx, "stop", c.Reason, c.At)
			}
		},
		OnResolve: func(ctx context.Context, _ andon.Alert) {
			if s.boardReset.CompareAndSwap(true, false) {
				return // the board shows a release stored already
			}
			c := Cord{At: time.Now().UTC()}
			_, changed, err := s.setCord(ctx, c)
			if err != nil {
				s.log.Error("cord not stored", "err", err)
				return
			}
			if changed {
				s.auditCord(ctx, "start", "andon board reset", c.At)
			}
		},
	}
	var err error
	s.andon, err = andon.NewEvaluator(andon.EvaluatorOptions{
		Rules:     s.rules(),
		Interval:  15 * time.Second,
		Notifiers: []andon.Notifier{andon.SlogNotifier(s.log)},
		Cord:      andon.CordOptions{Hooks: []andon.Hook{cordHook}},
		Logger:    s.log,
	})
	if err != nil {
		return err
	}
	s.board, err = andon.NewBoard(s.andon, andon.BoardOptions{
		Prefix: "/andon", Title: "Deployments",
		Lines:     []andon.Line{s.line},
		AllowCord: s.cfg.AdminToken.IsSet(),
		Logger:    s.log,
		Panels: []andon.Panel{{
			Title:   "Active rollouts on this replica",
			Columns: []string{"Deployment", "Service", "Version", "Region", "Strategy", "Stage", "Traffic", "In stage", "Last health samples"},
			Rows:    s.activeRollouts,
			Empty:   "no rollout running",
		}, {
			Title:   "Rules in force on this replica",
			Columns: ruleColumns,
			Rows:    s.rulePanel,
		}},
	})
	if err != nil {
		return err
	}
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopAlerts = stop
	s.alerting.Add(1)
	go func() {
		defer s.alerting.Done()
		if err := s.andon.Run(actx); err != nil && actx.Err() == nil {
			s.log.Error("alert evaluation stopped", "err", err)
		}
	}()
	s.alerting.Add(1)
	go func() {
		defer s.alerting.Done()
		s.followCord(actx)
	}()
	return nil
}

// cordFollower is who pulled the board's cord when followCord did.
const cordFollower = "the deployment service"

// followCord keeps the board's cord (the evaluator's) in the state of the
// service's: a cord pulled or released with POST /andon/cord, on another
// replica, or before a restart is shown on the board as it stands, and
// the board's reset releases the pull the board shows. It returns when
// ctx ends.
func (s *Service) followCord(ctx context.Context) {
	for {
		c, shown := s.cordState(), s.andon.Cord()
		switch {
		case c.Stopped && !shown.Pulled:
			s.andon.Pull(ctx, c.Reason, cordFollower)
		case !c.Stopped && shown.Pulled:
			s.boardReset.Store(true)
			if !s.andon.Reset(ctx) {
				s.boardReset.Store(false)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.cordSync:
		}
	}
}

// printRules writes the alert rules as a Prometheus rule file over the
// metric names the service exports.
func printRules(w io.Writer) error {
	s := &Service{}
	if err := s.newMetrics(); err != nil {
		return err
	}
	return andon.PrometheusRules(w, "deployment", s.rules(), andon.ExportOptions{})
}

// activeRollouts is the board's panel: the rollouts running in this
// process, oldest first, each with its stage, traffic share and last
// health samples. Red: the last sample failed; amber: paused or waiting
// for data; grey: no sample yet.
func (s *Service) activeRollouts() []andon.PanelRow {
	type run struct {
		started time.Time
		row     andon.PanelRow
	}
	var runs []run
	s.runs.Range(func(_, v any) bool {
		r := v.(*rollout)
		started, row := r.boardRow()
		runs = append(runs, run{started, row})
		return true
	})
	slices.SortFunc(runs, func(a, b run) int { return a.started.Compare(b.started) })
	rows := make([]andon.PanelRow, len(runs))
	for i, r := range runs {
		rows[i] = r.row
	}
	return rows
}

// boardSamples is how many of a stage's last health samples the board
// shows.
const boardSamples = 3

// boardRow is the rollout as the board's panel shows it, and when it
// started.
func (r *rollout) boardRow() (time.Time, andon.PanelRow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rr := r.d.Results[r.index]
	stage, color, in := "validation", "grey", ""
	if r.stage >= 0 {
		stage = rr.Stage
		in = time.Since(r.since).Round(100 * time.Millisecond).String()
	}
	var samples []string
	if n := len(rr.Stages); n > 0 {
		st := rr.Stages[n-1].Samples
		for _, hs := range st[max(0, len(st)-boardSamples):] {
			if hs.Verdict == "inconclusive" {
				samples = append(samples, "no verdict ("+hs.Reason+")")
				continue
			}
			if hs.Verdict == "failed" && hs.Requests == 0 && hs.ErrorRate == 0 && hs.P99Ms == 0 && hs.CPU == 0 && hs.Memory == 0 {
				// No readings recorded: the source answered one that
				// cannot be a measurement, which the reason names.
				samples = append(samples, "failed ("+hs.Reason+")")
				continue
			}
			samples = append(samples, fmt.Sprintf("%s: errors %.2f%%, p99 %.0f ms, CPU %.0f%%, memory %.0f%%",
				hs.Verdict, hs.ErrorRate*100, hs.P99Ms, hs.CPU*100, hs.Memory*100))
		}
		if len(st) > 0 {
			switch st[len(st)-1].Verdict {
			case "failed":
				color = "red"
			case "inconclusive":
				color = "amber"
			default:
				color = "green"
			}
		}
	}
	if r.paused {
		stage += " (paused)"
		if color != "red" {
			color = "amber"
		}
	}
	var started time.Time
	if rr.StartedAt != nil {
		started = *rr.StartedAt
	}
	return started, andon.PanelRow{
		Cells: []string{r.d.ID, r.service, r.version, r.region, r.strategy, stage,
			strconv.FormatFloat(rr.Percent, 'f', -1, 64) + "%", in, strings.Join(samples, " · ")},
		Color: color,
		Link:  "/deploy/" + r.d.ID,
	}
}

// notifyBoard tells the board's live pages that a rollout changed.
func (s *Service) notifyBoard() {
	if s.board != nil {
		s.board.Notify()
	}
}
