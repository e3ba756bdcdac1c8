package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SinkHandler stands in for a pager and a ticket queue: it logs every
// notification Alertmanager posts (POST /page, POST /ticket, any path),
// one line each with the path and the alerts' names and status, and keeps
// the last 100 for GET /notifications. GET /healthz answers 200.
func SinkHandler(log *slog.Logger) http.Handler {
	var mu sync.Mutex
	var last []Notification
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /notifications", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		b, err := json.Marshal(last)
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Status string `json:"status"`
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&msg); err != nil {
			log.Warn("notification is not Alertmanager's JSON", "path", r.URL.Path, "err", err)
			http.Error(w, "not an Alertmanager notification: "+err.Error(), http.StatusBadRequest)
			return
		}
		n := Notification{Receiver: strings.TrimPrefix(r.URL.Path, "/"), Status: msg.Status, Time: time.Now().UTC()}
		for _, a := range msg.Alerts {
			n.Alerts = append(n.Alerts, a.Labels["alertname"]+" ("+a.Status+", severity "+a.Labels["severity"]+")")
		}
		log.Info("notification", "receiver", n.Receiver, "status", n.Status, "alerts", strings.Join(n.Alerts, "; "))
		mu.Lock()
		last = append(last, n)
		if len(last) > 100 {
			last = append(last[:0:0], last[len(last)-100:]...)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// Notification is one post the sink received.
type Notification struct {
	Receiver string    `json:"receiver"` // the path it was posted to: page or ticket
	Status   string    `json:"status"`   // firing or resolved
	Alerts   []string  `json:"alerts"`   // "name (status, severity S)"
	Time     time.Time `json:"time"`
}

// NATSExporter serves the monitoring endpoints of NATS servers as
// Prometheus metrics on GET /metrics: nats-server serves JSON (/varz,
// /jsz, /healthz), not Prometheus' format, and the exporter NATS
// publishes is not at hand here. Each metric carries the node's name as
// the label nats_server; a node that does not answer has
// nats_server_up 0 and no other metric. The names follow
// prometheus-nats-exporter's (gnatsd_varz_*, gnatsd_jsz_*), with the
// _total suffix Prometheus' conventions give counters.
func NATSExporter(nodes map[string]string, client *http.Client) http.Handler {
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		type sample struct {
			node string
			vals map[string]float64
			up   bool
		}
		samples := make([]sample, len(names))
		var wg sync.WaitGroup
		for i, n := range names {
			wg.Go(func() {
				vals, err := scrapeNATS(r.Context(), client, nodes[n])
				samples[i] = sample{node: n, vals: vals, up: err == nil}
			})
		}
		wg.Wait()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		var b strings.Builder
		fmt.Fprintf(&b, "# HELP nats_server_up Whether the node's monitoring endpoint answered.\n# TYPE nats_server_up gauge\n")
		for _, s := range samples {
			fmt.Fprintf(&b, "nats_server_up{nats_server=%q} %d\n", s.node, map[bool]int{true: 1}[s.up])
		}
		for _, m := range natsMetrics {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
			for _, s := range samples {
				if v, ok := s.vals[m.name]; ok {
					fmt.Fprintf(&b, "%s{nats_server=%q} %s\n", m.name, s.node, strconv.FormatFloat(v, 'g', -1, 64))
				}
			}
		}
		_, _ = io.WriteString(w, b.String())
	})
	return mux
}

var natsMetrics = []struct{ name, kind, help, path string }{
	{"gnatsd_varz_connections", "gauge", "Client connections.", "varz.connections"},
	{"gnatsd_varz_routes", "gauge", "Routes to other nodes of the cluster.", "varz.routes"},
	{"gnatsd_varz_in_msgs_total", "counter", "Messages received.", "varz.in_msgs"},
	{"gnatsd_varz_out_msgs_total", "counter", "Messages sent.", "varz.out_msgs"},
	{"gnatsd_varz_in_bytes_total", "counter", "Bytes received.", "varz.in_bytes"},
	{"gnatsd_varz_out_bytes_total", "counter", "Bytes sent.", "varz.out_bytes"},
	{"gnatsd_varz_slow_consumers_total", "counter", "Slow consumers.", "varz.slow_consumers"},
	{"gnatsd_varz_mem", "gauge", "Resident memory, bytes.", "varz.mem"},
	{"gnatsd_varz_cpu", "gauge", "CPU use, percent.", "varz.cpu"},
	{"gnatsd_jsz_streams", "gauge", "JetStream streams.", "jsz.streams"},
	{"gnatsd_jsz_consumers", "gauge", "JetStream consumers.", "jsz.consumers"},
	{"gnatsd_jsz_messages", "gauge", "Messages held by JetStream.", "jsz.messages"},
	{"gnatsd_jsz_bytes", "gauge", "Bytes held by JetStream.", "jsz.bytes"},
	{"gnatsd_jsz_meta_cluster_size", "gauge", "Nodes of the JetStream meta group.", "jsz.meta_cluster.cluster_size"},
	{"gnatsd_jsz_meta_leader", "gauge", "1 when this node leads the JetStream meta group.", "jsz.meta_leader"},
	{"gnatsd_healthz_status", "gauge", "1 when /healthz answers ok (JetStream current).", "healthz"},
}

// scrapeNATS reads one node's /varz, /jsz and /healthz.
func scrapeNATS(ctx context.Context, client *http.Client, base string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	get := func(path string) (map[string]any, int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&m); err != nil {
			return nil, resp.StatusCode, fmt.Errorf("%s: %w", path, err)
		}
		return m, resp.StatusCode, nil
	}
	varz, _, err := get("/varz")
	if err != nil {
		return nil, err
	}
	jsz, _, err := get("/jsz")
	if err != nil {
		return nil, err
	}
	_, hcode, err := get("/healthz")
	if err != nil {
		return nil, err
	}
	vals := map[string]float64{}
	doc := map[string]map[string]any{"varz": varz, "jsz": jsz}
	for _, m := range natsMetrics {
		if m.path == "healthz" {
			vals[m.name] = map[bool]float64{true: 1}[hcode == http.StatusOK]
			continue
		}
		if m.path == "jsz.meta_leader" {
			leader, _ := lookup(jsz, "meta_cluster.leader").(string)
			vals[m.name] = map[bool]float64{true: 1}[leader != "" && leader == varz["server_name"]]
			continue
		}
		src, rest, _ := strings.Cut(m.path, ".")
		if f, ok := lookup(doc[src], rest).(float64); ok && !math.IsNaN(f) {
			vals[m.name] = f
		}
	}
	return vals, nil
}

// lookup follows a dotted path through decoded JSON objects.
func lookup(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[k]
	}
	return v
}
