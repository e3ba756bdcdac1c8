package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// profile is who an app is and how it behaves.
type profile struct {
	Service, Version, Region, Instance string

	ErrorRate   float64       // share of requests answered 500
	Latency     time.Duration // delay of every request
	SlowRate    float64       // share of requests delayed by SlowLatency instead
	SlowLatency time.Duration
}

// durationBuckets are the request duration histogram's upper bounds in
// seconds: fine from a millisecond to ten seconds, so histogram_quantile
// places a p99 of up to a few seconds within a quarter of its value.
var durationBuckets = []float64{
	.001, .0025, .005, .0075, .01, .015, .02, .03, .04, .05, .075,
	.1, .15, .2, .3, .4, .5, .75, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10,
}

// app answers requests per its profile and counts them.
type app struct {
	p        profile
	n        atomic.Uint64 // requests to / so far
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	inFlight prometheus.Gauge
	body     []byte
}

// newApp returns an app with its own metrics registry: the request metrics
// and the Go and process collectors, all labelled with the profile's
// service, version and region.
func newApp(p profile) *app {
	a := &app{p: p, reg: prometheus.NewRegistry()}
	labels := prometheus.Labels{"service": p.Service, "version": p.Version, "region": p.Region}
	r := prometheus.WrapRegistererWith(labels, a.reg)
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total",
		Help: "Requests to / by status code.",
	}, []string{"code"})
	a.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "http_request_duration_seconds",
		Help:    "Time to answer a request to /, in seconds.",
		Buckets: durationBuckets,
	})
	a.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "http_requests_in_flight",
		Help: "Requests to / being answered.",
	})
	r.MustRegister(a.requests, a.duration, a.inFlight,
		withoutGoInfo{collectors.NewGoCollector()},
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Both codes exist from the start, so an error ratio reads 0 rather
	// than nothing while no request has failed.
	a.requests.WithLabelValues("200")
	a.requests.WithLabelValues("500")
	a.body, _ = json.Marshal(map[string]string{
		"service": p.Service, "version": p.Version, "region": p.Region, "instance": p.Instance,
	})
	return a
}

// withoutGoInfo is a Go collector without go_info, whose own "version"
// label (the Go version) would clash with the app's.
type withoutGoInfo struct{ prometheus.Collector }

func isGoInfo(d *prometheus.Desc) bool { return strings.Contains(d.String(), `fqName: "go_info"`) }

// Describe sends the collector's descriptions but go_info's.
func (c withoutGoInfo) Describe(ch chan<- *prometheus.Desc) {
	all := make(chan *prometheus.Desc)
	go func() { c.Collector.Describe(all); close(all) }()
	for d := range all {
		if !isGoInfo(d) {
			ch <- d
		}
	}
}

// Collect sends the collector's metrics but go_info.
func (c withoutGoInfo) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { c.Collector.Collect(all); close(all) }()
	for m := range all {
		if !isGoInfo(m.Desc()) {
			ch <- m
		}
	}
}

// Handler routes the app's endpoints.
func (a *app) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.serveRoot)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	return mux
}

// serveRoot answers who the app is, after the profile's delay, failing the
// profile's share of requests.
func (a *app) serveRoot(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a.inFlight.Inc()
	defer a.inFlight.Dec()
	n := a.n.Add(1)
	delay := a.p.Latency
	if every(n, a.p.SlowRate) {
		delay = a.p.SlowLatency
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	code := http.StatusOK
	if every(n, a.p.ErrorRate) {
		code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(a.body)
	a.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	a.duration.Observe(time.Since(start).Seconds())
}
