package kaizen_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kaizen/internal/pipelinetest"
)

func BenchmarkStatsObserve(b *testing.B) {
	for _, windows := range [][]time.Duration{
		kaizen.DefaultWindows(),
		{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour},
	} {
		b.Run(strconv.Itoa(len(windows))+"windows", func(b *testing.B) {
			s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: windows})
			if err != nil {
				b.Fatal(err)
			}
			ctx, r := context.Background(), pipelinetest.RealisticRecord()
			b.ReportAllocs()
			for b.Loop() {
				s.Observe(ctx, r)
			}
		})
	}
}

func BenchmarkStatsSnapshot(b *testing.B) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), pipelinetest.RealisticRecord()
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
	ctx, r := context.Background(), pipelinetest.RealisticRecord()
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
	if err := a.Shutdown(ctx); err != nil {
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
	ctx, r := context.Background(), pipelinetest.RealisticRecord()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		a.Observe(ctx, r)
	}
	if err := a.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
