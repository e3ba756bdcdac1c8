// Package taikit is a Go library for the TAI pattern — Signal → Policy →
// Action → Result — with the principles of the Toyota Production System as
// composable packages.
//
// A service receives signals (a payment, a deployment request), decides
// with policies whether each may proceed, runs an action, and reports the
// result. Around that line, five TPS principles keep it healthy:
//
//	tai       the pattern: Signal, Policy, Action, Decision, Pipeline, and the
//	          stage hooks (Gate, Guard, Observer, Tracer) the others plug into
//	jidoka    自働化 "automation with a human touch": stop the line the moment
//	          something is wrong — circuit Breaker, manual/automatic Line stop,
//	          health Watchdog that rolls back; Timeout, Retry, Bulkhead,
//	          Fallback and Hedge guards
//	heijunka  平準化 "levelling": smooth the load — GCRA rate limits, per-key
//	          limits (in memory or shared through Redis), staged traffic Ramps,
//	          warm-up after recovery, fair leveling across keys
//	kanban    看板 "signboard": pull work, never push it, with a bounded
//	          work-in-progress limit — queues in memory and on NATS JetStream
//	kaizen    改善 "improvement": measure — rolling statistics with trends,
//	          a tamper-evident audit trail; Prometheus metrics (kaizenprom) and
//	          OpenTelemetry traces (kaizenotel) in modules of their own
//	andon     行灯 "lantern": make problems visible and let anyone stop the
//	          line — alert rules, notifications, a live board, a cord
//
// # How they compose
//
// The packages meet in a tai.Pipeline. Admission controls are Gates (a
// heijunka limit, a jidoka Line), protections around the action are Guards
// (jidoka's Breaker, Timeout, Retry, Bulkhead, Fallback, Hedge), and everything that watches is an Observer (kaizen
// stats and audit, kaizenprom metrics; andon reads the stats) or a Tracer
// (kaizenotel).
// The hook interfaces are small and not generic, so a Breaker or a Limiter
// serves pipelines of any payload type, and jidoka, heijunka, kanban and
// kaizen need no other TPS package (andon builds on them: its conditions
// read kaizen Stats and jidoka state, its notifiers retry with kanban's
// Backoff): import only what the service uses. These packages use the
// standard library only; every adapter with a dependency (Prometheus,
// OpenTelemetry, NATS, Redis) is a module of its own.
//
//	p, err := tai.New(fraudPolicy, chargeAction,
//		tai.WithGates(perCustomerLimit, line),
//		tai.WithGuards(retry, timeout, gatewayBreaker), // outermost first
//		tai.WithObservers(metrics, stats, audit),
//		tai.WithTracer(tracer))
//
// The runnable services under examples/ show it used for real.
package taikit
