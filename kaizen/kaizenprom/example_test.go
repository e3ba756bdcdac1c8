package kaizenprom_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/tai"
)

type order struct {
	Amount float64
}

// examplePipeline returns a pipeline that denies amounts over 1000 and
// fails the action for amount 13.
func examplePipeline(opts ...tai.Option) *tai.Pipeline[order, string] {
	policy := tai.Named("amount", tai.PolicyFunc[order](func(_ context.Context, s tai.Signal[order]) (tai.Decision, error) {
		if s.Payload.Amount > 1000 {
			return tai.Decision{Verdict: tai.Deny, Reason: "amount over 1000"}, nil
		}
		return tai.Decision{Verdict: tai.Allow}, nil
	}))
	action := tai.ActionFunc[order, string](func(_ context.Context, s tai.Signal[order]) (string, error) {
		if s.Payload.Amount == 13 {
			return "", fmt.Errorf("gateway down")
		}
		return "charged", nil
	})
	p, err := tai.New(policy, action, opts...)
	if err != nil {
		log.Fatal(err)
	}
	return p
}

// printSeries prints the series of every family of reg whose name has
// the prefix, counters and gauges alike.
func printSeries(reg *prometheus.Registry, prefix string) {
	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			fmt.Println(mf.GetName(), strings.Join(labels, ","), v)
		}
	}
}

func ExampleNewMetrics() {
	reg := prometheus.NewRegistry()
	metrics, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	if err != nil {
		log.Fatal(err)
	}
	p := examplePipeline(tai.WithObservers(metrics), tai.WithTracer(metrics.Tracer(nil)))
	for i, amount := range []float64{10, 20, 5000, 13} {
		_, _ = p.Process(context.Background(), tai.Signal[order]{
			ID: fmt.Sprintf("pay-%d", i+1), Kind: "payment", Key: "cust_1", Payload: order{Amount: amount}})
	}

	// Serve reg with promhttp.HandlerFor(reg,
	// promhttp.HandlerOpts{EnableOpenMetrics: true}), the format that
	// carries the exemplars; here the counters are printed.
	printSeries(reg, "taikit_decisions_total")
	printSeries(reg, "taikit_signals_total")
	// Output:
	// taikit_decisions_total kind=payment,policy=amount,verdict=allow 3
	// taikit_decisions_total kind=payment,policy=amount,verdict=deny 1
	// taikit_decisions_total kind=payment,policy=amount,verdict=review 0
	// taikit_signals_total kind=payment,outcome=denied 1
	// taikit_signals_total kind=payment,outcome=failed 1
	// taikit_signals_total kind=payment,outcome=rejected 0
	// taikit_signals_total kind=payment,outcome=succeeded 2
}

func ExampleNewJidokaCollector() {
	reg := prometheus.NewRegistry()
	collector, err := kaizenprom.NewJidokaCollector(reg, kaizenprom.CollectorOptions{})
	if err != nil {
		log.Fatal(err)
	}
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "payments"})
	if err != nil {
		log.Fatal(err)
	}
	if err := collector.AddLine(line); err != nil {
		log.Fatal(err)
	}
	line.Stop("fraud spike")

	// The line's state is read at every scrape.
	printSeries(reg, "taikit_line_")
	// Output:
	// taikit_line_stopped line=payments 1
	// taikit_line_stops_total line=payments 1
}
