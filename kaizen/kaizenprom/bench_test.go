package kaizenprom_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kaizen/internal/pipelinetest"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
)

// BenchmarkObservers measures what Metrics and kaizen.Stats together add
// to a signal: the budget is 150 ns and no allocation.
func BenchmarkObservers(b *testing.B) {
	m, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), pipelinetest.RealisticRecord()
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(ctx, r)
		s.Observe(ctx, r)
	}
}

// BenchmarkObserversParallel is BenchmarkObservers from every core at
// once.
func BenchmarkObserversParallel(b *testing.B) {
	m, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), pipelinetest.RealisticRecord()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(ctx, r)
			s.Observe(ctx, r)
		}
	})
}

func BenchmarkMetricsObserve(b *testing.B) {
	m, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, r := context.Background(), pipelinetest.RealisticRecord()
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(ctx, r)
	}
}
