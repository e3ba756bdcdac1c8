package kaizen_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// realisticRecord is what a payment pipeline with a gate, a scored policy
// and an action hands its observers: a Review with two contributions and
// all four stage durations, traced but not sampled.
func realisticRecord() tai.Record {
	r := tai.Record{
		ID: "3f6c2a9e0b7d4c1e8a5f2d6b9c0e1a7f", Kind: "payment", Key: "cust_42",
		Outcome: tai.Succeeded,
		Decision: tai.Decision{Verdict: tai.Review, Policy: "fraud", Reason: "velocity: 4 payments this minute", Score: 0.42,
			Contributions: []tai.Contribution{
				{Rule: "velocity", Weight: 0.5, Risk: 0.8, Score: 0.4, Reason: "velocity: 4 payments this minute"},
				{Rule: "amount", Weight: 0.2, Risk: 0.1, Score: 0.02, Reason: "amount 480.00 near daily limit"},
			}},
		Start:    time.Now(),
		Duration: 12*time.Millisecond + 345*time.Microsecond,
		Span:     tai.SpanContext{TraceID: tai.TraceID{0x4b, 0xf9, 0x2f, 0x35}, SpanID: tai.SpanID{0x00, 0xf0, 0x67}},
	}
	r.Stages[tai.StageSignal] = r.Duration
	r.Stages[tai.StageGate] = 2 * time.Microsecond
	r.Stages[tai.StagePolicy] = 340 * time.Microsecond
	r.Stages[tai.StageAction] = 12 * time.Millisecond
	return r
}

// BenchmarkObservers measures what Metrics and Stats together add to a
// signal: the budget is 150 ns and no allocation.
func BenchmarkObservers(b *testing.B) {
	m, err := kaizen.NewMetrics(prometheus.NewRegistry(), kaizen.MetricsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), realisticRecord()
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(ctx, r)
		s.Observe(ctx, r)
	}
}

// BenchmarkObserversParallel is BenchmarkObservers from every core at
// once.
func BenchmarkObserversParallel(b *testing.B) {
	m, err := kaizen.NewMetrics(prometheus.NewRegistry(), kaizen.MetricsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), realisticRecord()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(ctx, r)
			s.Observe(ctx, r)
		}
	})
}

func BenchmarkMetricsObserve(b *testing.B) {
	m, err := kaizen.NewMetrics(prometheus.NewRegistry(), kaizen.MetricsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), realisticRecord()
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(ctx, r)
	}
}

func BenchmarkStatsObserve(b *testing.B) {
	for _, windows := range [][]time.Duration{
		kaizen.DefaultWindows,
		{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour},
	} {
		b.Run(strconvItoa(len(windows))+"windows", func(b *testing.B) {
			s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: windows})
			if err != nil {
				b.Fatal(err)
			}
			ctx, r := context.Background(), realisticRecord()
			b.ReportAllocs()
			for b.Loop() {
				s.Observe(ctx, r)
			}
		})
	}
}

func strconvItoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return strconvItoa(n/10) + string(rune('0'+n%10))
}

func BenchmarkStatsSnapshot(b *testing.B) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), realisticRecord()
	for i := range 10000 {
		r.Duration = time.Duration(i) * time.Microsecond
		s.Observe(ctx, r)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Snapshot()
	}
}

// BenchmarkAudit measures the audit trail writing to a file: records per
// second from Observe to the file, drained by Flush.
func BenchmarkAudit(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	a, err := kaizen.NewAudit(f, kaizen.AuditOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), realisticRecord()
	r.Span.Sampled = true
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		a.Observe(ctx, r)
	}
	if err := a.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	if err := a.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAuditBufferedWriter is BenchmarkAudit through a bufio.Writer
// the caller owns (the Audit batches its own writes, so it adds little).
func BenchmarkAuditBufferedWriter(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	a, err := kaizen.NewAudit(w, kaizen.AuditOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), realisticRecord()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		a.Observe(ctx, r)
	}
	if err := a.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
