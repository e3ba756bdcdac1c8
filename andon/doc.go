// Package andon makes problems visible at once and lets anyone stop the
// line. It evaluates alert rules in-process over kaizen Stats with the
// semantics of Prometheus alerting rules, tells people through notifiers
// (a log, a webhook, Alertmanager), pulls a cord that stops a jidoka Line,
// shows it all on a live web board, and exports the same rules as a
// Prometheus rule file.
//
// # Rules
//
// A Rule has a Name, a Severity (Page, Ticket, Info), a Condition, For,
// KeepFiringFor, MinSamples, Labels, and annotations (Summary,
// Description, RunbookURL) that are templates with the value filled in:
//
//	stats, _ := kaizen.NewStats(kaizen.StatsOptions{
//		Windows: andon.BurnWindowsOf(andon.PageBurnWindows()), // 5m, 30m, 1h, 6h
//	})
//	rules := []andon.Rule{
//		{Name: "HighFraudRate", Severity: andon.Page, For: 2 * time.Minute, MinSamples: 50,
//			Condition: andon.VerdictRate(stats, "payment", 5*time.Minute, 0.02, tai.Deny),
//			Summary:   "fraud rate {{ $value | humanizePercentage }}"},
//		{Name: "SlowPayments", Severity: andon.Ticket,
//			Condition: andon.LatencyQuantile(stats, "payment", 5*time.Minute, 0.99, 5*time.Second)},
//		{Name: "HighErrorRate", Severity: andon.Page,
//			Condition: andon.ErrorRate(stats, "payment", 5*time.Minute, 0.05)},
//		{Name: "PaymentBudgetBurn", Severity: andon.Page,
//			Condition: andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.999}, andon.PageBurnWindows()...)},
//		{Name: "GatewayOpen", Severity: andon.Ticket, Condition: andon.BreakerOpen(breaker)},
//	}
//
// The built-in conditions read kaizen Stats (OutcomeRate, ErrorRate,
// VerdictRate, LatencyQuantile, BurnRate) or jidoka state (BreakerOpen,
// LineStopped); a ConditionFunc is a condition of your own. A Stats
// condition reads one of the windows the Stats keeps: building the
// evaluator fails, naming the window, when the Stats does not keep it.
// BurnRate implements the multiwindow, multi-burn-rate alerts of the SRE
// workbook: PageBurnWindows() (1h and 5m at 14.4×, 6h and 30m at 6×) and
// TicketBurnWindows() (the workbook's 3d and 6h at 1×, with 1d and 2h at
// 3× before it, which the workbook's table does not have).
//
// MinSamples guards against deciding on too little data: while a
// condition's value rests on fewer signals, the rule neither fires nor
// resolves, and its Alert says InsufficientData.
//
// # States
//
// An Evaluator evaluates the rules on an interval (Run) or when told
// (Evaluate at time.Now, EvaluateAt at a time of the caller's). A rule
// is Inactive while its condition does not hold, Pending while it has held
// for less than For, Firing after, and Resolved once it stops holding —
// after KeepFiringFor, if set. Alerts carry Prometheus's timestamps
// (ActiveAt, FiredAt, ResolvedAt, KeepFiringSince); History keeps the last
// transitions. Silences mute the notifications of alerts that match label
// matchers, for a while; an alert sent firing before is still resolved,
// and still re-sent to Alertmanager, which would take it as resolved
// otherwise.
//
// Hooks act on fire and resolve. StopLine(line) stops a jidoka Line when
// a rule fires and restarts it when the rule resolves, if the line is
// still stopped by that stop: a stop someone else made, even in the same
// words after restarting the line, stays (see StopEnder). The cord is a
// rule of its own: Pull(ctx, reason, who) makes it fire at once — with
// StopLine in CordOptions.Hooks, it stops the line — and Reset resolves it.
//
// # Notifiers
//
// SlogNotifier logs, Webhook POSTs the JSON of Alertmanager's webhook
// receiver, and Alertmanager pushes to Alertmanager's API v2, re-sending
// firing alerts with endsAt ahead so Alertmanager keeps them and lets them
// expire if the process dies, or if the rule's evaluations fail (endsAt
// moves only with an evaluation that measured), and re-sending
// resolutions for 15 minutes, as Prometheus does. Each notifier has a
// bounded queue and a worker goroutine; notifications are deduplicated by
// label fingerprint (an alert is sent when it fires and when it
// resolves), requests have a timeout, failures are retried with back-off
// (a kanban.Backoff; errors marked with kanban.Permanent are not
// retried), and a slow or failing notifier never blocks evaluation: when
// its queue is full notifications are dropped, counted in NotifierStats
// and logged. A notification dropped, or given up after its retries, is
// offered again at the next evaluation; a resolution still owed when the
// alert fires again gives way to the new firing alert, sent at once, as
// Prometheus replaces a resolved alert that fires again: a webhook's
// receiver learns its new start, while Alertmanager, which still holds the
// old one, keeps the old startsAt until that one's endsAt has passed (it
// merges a firing alert into the one it holds). Flush waits for delivery;
// Shutdown delivers what is queued and stops the workers.
//
// A panic in a condition, a hook or a notifier is recovered: it becomes a
// *PanicError, logged with its stack. One that ends its goroutine with
// runtime.Goexit (t.FailNow in a test) is logged too; the evaluation or
// the batch it was part of is finished first, and Run, which evaluates on
// a goroutine of its own, and the notifier's worker go on.
//
// # Board
//
// NewBoard returns an http.Handler serving a live andon board: each rule
// in green, amber or red with its value against its threshold, since
// when, and a sparkline; the lines and breakers; the cord with a button.
// Its assets are embedded; it updates through server-sent events (or
// polling), and the cord's POST cannot be forged from another origin.
// The cord stops lines, so it is off unless BoardOptions.AllowCord is
// set: serve a board that takes pulls behind your authentication.
//
//	board, _ := andon.NewBoard(ev, andon.BoardOptions{Prefix: "/andon", Lines: []andon.Line{line}})
//	http.Handle("/andon/", board) // read-only: the state, no cord
//	ops, _ := andon.NewBoard(ev, andon.BoardOptions{Prefix: "/ops/andon", AllowCord: true})
//	http.Handle("/ops/andon/", requireOperator(ops)) // your authentication
//
// Before the server stops, board.Shutdown(ctx) ends the event streams,
// which would otherwise last as long as their clients; ev.Shutdown(ctx)
// delivers the last notifications.
//
// # Prometheus
//
// PrometheusRules writes the rules as a Prometheus rule file over the
// metric names of kaizenprom.Metrics, with recording rules for the burn
// rates, as sloth and pyrra do. Annotation templates that use only
// $value, $labels and Prometheus's humanize functions read the same in
// both places.
package andon
