package kaizen

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// CollectorOptions configures the collectors of the other TPS packages
// (JidokaCollector, HeijunkaCollector, KanbanCollector). The zero value
// uses namespace "taikit" and no constant labels.
type CollectorOptions struct {
	// Namespace prefixes every metric name. Empty means "taikit".
	Namespace string
	// ConstLabels are added to every metric.
	ConstLabels prometheus.Labels
}

func (o CollectorOptions) namespace(who string) (string, error) {
	if o.Namespace == "" {
		return "taikit", nil
	}
	if !metricName.MatchString(o.Namespace) {
		return "", fmt.Errorf("kaizen: %s: CollectorOptions.Namespace %q is not a valid metric name", who, o.Namespace)
	}
	return o.Namespace, nil
}

func (o CollectorOptions) desc(ns, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, o.ConstLabels)
}

func checkRegisterer(reg prometheus.Registerer, who string) error {
	if reg == nil {
		return errors.New("kaizen: " + who + ": nil prometheus.Registerer; pass prometheus.NewRegistry() or prometheus.DefaultRegisterer")
	}
	return nil
}

// send emits one sample, or an invalid metric that fails the scrape with
// the reason when a label value is not valid.
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
