package main

import (
	"context"
	"time"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kanban/kanbanhttp"
	"github.com/taipattern/taikit/tai"
)

// Alert rule names.
const (
	alertFraud   = "PaymentFraudRateHigh"
	alertLatency = "PaymentLatencyP99High"
	alertErrors  = "PaymentErrorRateHigh"
	alertBreaker = "PaymentGatewayBreakerOpen"
)

// alertWindow is the window every rate and quantile rule reads; the
// service's Stats keep it.
const alertWindow = 5 * time.Minute

// paymentRules are the service's andon rules over its kaizen Stats: the
// share of blocked payments, p99 latency, the share of failed payments,
// and the gateway breaker. The same rules export as a Prometheus rule
// file (-print-rules). Every alert carries the -alert-labels; evaluated in
// the service it also names this replica (instance), which Prometheus adds
// to the exported rules' alerts itself.
func (s *Service) paymentRules(inProcess bool) []andon.Rule {
	runbook := "https://github.com/taipattern/taikit/tree/main/examples/payment#alerts"
	rules := []andon.Rule{
		{
			Name: alertFraud, Severity: andon.Page, For: time.Minute, KeepFiringFor: 2 * time.Minute, MinSamples: 50,
			Condition:  andon.VerdictRate(s.stats, "payment", alertWindow, s.cfg.AlertFraud, tai.Deny),
			Summary:    "{{ $value | humanizePercentage }} of payments blocked as fraud over 5m",
			RunbookURL: runbook,
		},
		{
			Name: alertLatency, Severity: andon.Page, For: 2 * time.Minute, MinSamples: 20,
			Condition:  andon.LatencyQuantile(s.stats, "payment", alertWindow, 0.99, s.cfg.AlertP99),
			Summary:    "p99 payment latency is {{ $value | humanizeDuration }} over 5m",
			RunbookURL: runbook,
		},
		{
			Name: alertErrors, Severity: andon.Page, For: time.Minute, MinSamples: 20,
			Condition:  andon.ErrorRate(s.stats, "payment", alertWindow, s.cfg.AlertErrors),
			Summary:    "{{ $value | humanizePercentage }} of payments failed over 5m",
			RunbookURL: runbook,
		},
		{
			Name: alertBreaker, Severity: andon.Page,
			Condition:  andon.BreakerOpen(s.breaker),
			Summary:    "the payment gateway's circuit breaker refuses calls",
			RunbookURL: runbook,
		},
	}
	if s.cfg.FraudStopsLine {
		rules[0].Hooks = []andon.Hook{s.stopLine}
	}
	for i := range rules {
		labels := map[string]string{"service": "payment"}
		for k, v := range s.cfg.AlertLabels {
			labels[k] = v
		}
		if inProcess {
			labels["instance"] = s.cfg.Instance
		}
		rules[i].Labels = labels
	}
	return rules
}

// maxBoardStreams caps the board's live pages.
const maxBoardStreams = 32

// startAlerts builds the evaluator (notifiers: the log, and Alertmanager
// when configured), the cord (it stops the payment line) and the board,
// and starts evaluating.
func (s *Service) startAlerts(ctx context.Context, generatorURL string) error {
	notifiers := []andon.Notifier{andon.SlogNotifier(s.log)}
	if s.cfg.Alertmanager.IsSet() {
		am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: s.cfg.Alertmanager.Reveal()})
		if err != nil {
			return err
		}
		notifiers = append(notifiers, am)
	}
	s.stopLine = andon.StopLine(s.line)
	var err error
	s.andon, err = andon.NewEvaluator(andon.EvaluatorOptions{
		Rules:        s.paymentRules(true),
		Interval:     s.cfg.AlertInterval,
		Notifiers:    notifiers,
		Cord:         andon.CordOptions{Hooks: []andon.Hook{s.stopLine}},
		GeneratorURL: generatorURL,
		Logger:       s.log,
	})
	if err != nil {
		return err
	}
	queues := []andon.Panel{s.queueOps.QueuePanel(kanbanhttp.PanelOptions{})}
	if !s.cfg.AdminToken.IsSet() {
		// The board is open to whoever reaches the service, and the
		// dead letters are not: their IDs and keys are transactions and
		// customers, and their reasons name transactions. The queue's
		// row counts them, without its link into the admin API, which
		// is off.
		queues[0] = withoutLinks(queues[0])
	} else {
		// The board needs the admin token, as the dead letters do in
		// the admin API.
		deadLetters, err := s.queueOps.DeadLetterPanel("confirmations", "Confirmation dead letters")
		if err != nil {
			return err
		}
		queues = append(queues, deadLetters)
	}
	panels := append(queues, s.rules.Panels()...)
	s.board, err = andon.NewBoard(s.andon, andon.BoardOptions{
		Prefix: "/andon", Title: "Payments",
		Lines: []andon.Line{s.line}, Breakers: []andon.Breaker{s.breaker},
		// The cord stops every payment: only with an admin token to guard it.
		AllowCord: s.cfg.AdminToken.IsSet(),
		Logger:    s.log,
		// At most this many live pages (beyond, 503 and the page polls);
		// a page that stops reading is dropped after the write timeout.
		MaxStreams:   maxBoardStreams,
		WriteTimeout: 10 * time.Second,
		// The confirmation queue: depth, oldest message, dead letters;
		// and the fraud rules in force.
		Panels: panels,
	})
	if err != nil {
		return err
	}
	s.rules.board.Store(s.board)
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopAlerts = stop
	s.alerting.Add(1)
	go func() {
		defer s.alerting.Done()
		if err := s.queueOps.Watch(actx, 2*time.Second); err != nil && actx.Err() == nil {
			s.log.Error("queue panels stopped", "err", err)
		}
	}()
	s.alerting.Add(1)
	go func() {
		defer s.alerting.Done()
		if err := s.andon.Run(actx); err != nil && actx.Err() == nil {
			s.log.Error("alert evaluation stopped", "err", err)
		}
	}()
	return nil
}
