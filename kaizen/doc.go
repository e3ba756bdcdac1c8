// Package kaizen measures pipelines: kaizen is improvement through
// measurement. It plugs into the hooks of package tai, needs nothing
// global and links only the standard library: writers are passed in, and
// time is read from time.Now.
//
// The adapters to monitoring systems live beside it, so a program links
// only what it uses: package kaizenprom exports Prometheus metrics (a
// tai.Observer, and collectors for breakers, lines, limiters and queues),
// package kaizenotel records OpenTelemetry spans (a tai.Tracer).
//
// # Stats
//
// NewStats keeps rolling statistics per kind in memory — counts by outcome
// and verdict, rates, latency quantiles, trends against the previous
// window — over configurable windows (1m, 5m and 1h by default) with
// bounded memory. Snapshot returns plain values for code (andon rules read
// it); Stats is also an http.Handler serving the snapshot as JSON.
//
//	w, ok := stats.Window("payment", 5*time.Minute)
//	errorRatio := w.Current.Ratio(tai.Failed)
//	p99 := w.Current.P99
//	worse := w.Trend.ErrorRate.Direction == kaizen.Worse
//
// # Audit trail
//
// NewAudit writes one JSON line per finished signal (AuditEntry), each
// carrying the SHA-256 of the line before it (an HMAC-SHA256 with
// AuditOptions.Key, which only a holder of the key can forge); the first
// line's prev is GenesisHash. VerifyAudit reads a trail back and names the
// first edited, deleted, inserted or reordered line. A Redact hook masks
// sensitive fields before a line is hashed. The trail never drops a record
// silently: a slow writer blocks Observe (backpressure), and after a
// write failure every unwritten record is handed to OnUnwritten (logged
// by default) and Err reports the failure. Flush and Shutdown sync the
// file; Shutdown writes what is queued and stops the writer goroutine.
//
// A service keeps one trail across restarts with OpenAuditFile: it
// verifies the file, refuses one with a bad line, cuts off a line a crash
// left half written, and appends with the chain continued. Audit.Last
// gives the hash of the last durable line to publish elsewhere; a
// verifier given it (VerifyOptions.Expect) notices lines cut from the
// trail's end, which the chain alone cannot. VerifyAuditFiles checks a
// series of files, each continuing the one before, as one trail; the
// command taikit audit verify does the same from a shell.
//
//	audit, state, err := kaizen.OpenAuditFile("audit.jsonl", kaizen.AuditOptions{Key: key})
//	// err: a *AuditError names the file and line that does not verify.
//	// state.Cut > 0: what a crash left at the end, a torn line or NUL bytes, was cut off (and logged).
//	defer audit.Shutdown(ctx)
//
// # Cost
//
// Stats allocates nothing for a signal once its slots are warm
// (BenchmarkStatsObserve); the audit writer sustains several hundred
// thousand records per second to a file (BenchmarkAudit).
package kaizen
