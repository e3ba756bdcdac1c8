// Package stack runs the local stack from real binaries, without Docker:
// a three-node NATS JetStream cluster, Redis, Jaeger, two replicas of each
// service, Prometheus with the services' alert rules, Alertmanager, an
// alert sink that logs what Alertmanager sends, and an exporter that turns
// the NATS nodes' monitoring endpoints into Prometheus metrics.
//
// Every process is started in its own session, so it outlives the command
// that started it and leads a process group of its own, with its output in
// Dir/logs/NAME.log and its PID in Dir/pids/NAME.pid; data lives under
// Dir/data. Down stops exactly the processes whose PID files Up wrote,
// with what they forked (SIGTERM to each one's process group, then SIGKILL
// after a grace period, or at once when Down is interrupted), after checking that each PID still names the
// process it started (the same start time, in the same boot of the
// machine), so a PID the system has since reused, or numbered afresh after
// a restart, is left alone, and its group too. A component that has exited
// but left processes in its group (a child that outlived it) has that
// group stopped all the same.
//
// The binaries are nats-server, redis-server, prometheus and
// prometheus-alertmanager from Debian's packages, jaeger built from its Go
// module, and the services built from this repository (deploy/local/install
// puts them in place). The stack's own helpers, the alert sink and the NATS
// exporter, are subcommands of the program that runs the stack.
package stack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// Config says where the stack lives and where its binaries are.
type Config struct {
	// Dir holds the stack's data, logs and PID files. Required.
	Dir string
	// Repo is the repository's root: the rule files and configs under
	// deploy/ are read from it. Required.
	Repo string
	// Bin is the directory of the service binaries (payment, deployment)
	// and jaeger. Required.
	Bin string
	// Self is the program that runs the stack; its "sink" and
	// "nats-exporter" subcommands are two of the stack's processes.
	// Required.
	Self string
	// PortBase, if not zero, moves every port to PortBase plus the port's
	// index in Ports, so that a second stack (a test's) can run beside
	// the default one.
	PortBase int
	// Grace is how long Down waits for a process after SIGTERM before it
	// sends SIGKILL, unless its context is done first. Zero means each
	// component's StopGrace, or 30s for one without.
	Grace time.Duration
	// Wait bounds how long Up waits for each component to be healthy.
	// Zero means 60s.
	Wait time.Duration
	// Out receives progress lines. Nil means io.Discard.
	Out io.Writer
}

// The stack's ports, by name, at their default values. The services and
// the UIs keep the ports of deploy/compose.yaml.
var defaultPorts = []struct {
	name string
	port int
}{
	{"nats-1", 4222}, {"nats-2", 4223}, {"nats-3", 4224},
	{"nats-1-cluster", 6222}, {"nats-2-cluster", 6223}, {"nats-3-cluster", 6224},
	{"nats-1-monitor", 8222}, {"nats-2-monitor", 8223}, {"nats-3-monitor", 8224},
	{"redis", 6379},
	{"jaeger-ui", 16686}, {"jaeger-otlp", 4318}, {"jaeger-otlp-grpc", 4317}, {"jaeger-health", 13133}, {"jaeger-metrics", 8888},
	{"payment-1", 3001}, {"payment-2", 3011},
	{"deployment-1", 3002}, {"deployment-2", 3012},
	{"prometheus", 9090}, {"alertmanager", 9093}, {"alertmanager-cluster", 9094},
	{"sink", 9095}, {"nats-exporter", 7777},
}

// Ports returns the port of each name the stack uses under cfg.
func (cfg *Config) Ports() map[string]int {
	m := make(map[string]int, len(defaultPorts))
	for i, p := range defaultPorts {
		if cfg.PortBase != 0 {
			m[p.name] = cfg.PortBase + i
		} else {
			m[p.name] = p.port
		}
	}
	return m
}

// Component is one process of the stack.
type Component struct {
	Name string
	// URL is where a person looks at it, empty if nowhere.
	URL string
	// Bin and Args start it. Env is its environment, beside what it
	// inherits of the stack's (PATH, HOME, TZ, the locale, TMPDIR, the
	// certificates' place and the Go runtime's settings; componentEnv):
	// nothing else of the user's environment reaches it.
	Bin  string
	Args []string
	Env  []string
	// Healthy reports whether it is up and serving.
	Healthy func(ctx context.Context) error
	// Dirs are created before it starts.
	Dirs []string
	// Files are written before it starts: path to contents.
	Files map[string]string
	// Group, if set, names components that start together and are waited
	// for together: the nodes of a cluster, none healthy alone.
	Group string
	// Ports are the loopback ports it listens on: Up starts nothing while
	// another program holds one of them.
	Ports []int
	// StopGrace is how long Down waits for it after SIGTERM before it
	// sends SIGKILL, when Config.Grace is zero: a service's graceful stop
	// (the requests in flight, then the queue consumer and the audit
	// trail). Zero means 30s.
	StopGrace time.Duration
}

// Components returns the stack's processes in the order they start.
func (cfg *Config) Components() []Component {
	p := cfg.Ports()
	data := func(name string) string { return filepath.Join(cfg.Dir, "data", name) }
	loop := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	url := func(port int) string { return "http://" + loop(port) }

	var cs []Component
	var natsURLs []string
	for i := 1; i <= 3; i++ {
		n := "nats-" + strconv.Itoa(i)
		natsURLs = append(natsURLs, "nats://"+loop(p[n]))
		var routes []string
		for j := 1; j <= 3; j++ {
			routes = append(routes, "nats-route://"+loop(p["nats-"+strconv.Itoa(j)+"-cluster"]))
		}
		conf := filepath.Join(data(n), "nats.conf")
		cs = append(cs, Component{
			Name: n, URL: url(p[n+"-monitor"]), Group: "nats",
			Ports: []int{p[n], p[n+"-cluster"], p[n+"-monitor"]},
			Bin:   "nats-server",
			Args:  []string{"-c", conf},
			Dirs:  []string{data(n)},
			Files: map[string]string{conf: natsConf(n, loop(p[n]), loop(p[n+"-cluster"]), loop(p[n+"-monitor"]), filepath.Join(data(n), "js"), routes)},
			// /healthz answers 200 once JetStream is up and the cluster has
			// a meta leader: streams can be created.
			Healthy: httpOK(url(p[n+"-monitor"]) + "/healthz"),
		})
	}
	cs = append(cs, Component{
		Name: "redis", URL: "redis://" + loop(p["redis"]),
		Bin: "redis-server",
		Args: []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(p["redis"]), "--dir", data("redis"),
			"--appendonly", "yes", "--maxmemory", "256mb", "--maxmemory-policy", "volatile-lru", "--save", ""},
		Dirs:    []string{data("redis")},
		Ports:   []int{p["redis"]},
		Healthy: redisPing(loop(p["redis"])),
	})
	jaegerConf := filepath.Join(data("jaeger"), "jaeger.yaml")
	cs = append(cs, Component{
		Name: "jaeger", URL: url(p["jaeger-ui"]),
		Bin:     filepath.Join(cfg.Bin, "jaeger"),
		Args:    []string{"--config", jaegerConf},
		Dirs:    []string{data("jaeger")},
		Files:   map[string]string{jaegerConf: jaegerYAML(loop(p["jaeger-ui"]), loop(p["jaeger-otlp"]), loop(p["jaeger-otlp-grpc"]), loop(p["jaeger-health"]), loop(p["jaeger-metrics"]))},
		Ports:   []int{p["jaeger-ui"], p["jaeger-otlp"], p["jaeger-otlp-grpc"], p["jaeger-health"], p["jaeger-metrics"]},
		Healthy: httpOK(url(p["jaeger-health"]) + "/status"),
	})
	cs = append(cs, Component{
		Name: "sink", URL: url(p["sink"]),
		Bin:     cfg.Self,
		Args:    []string{"sink", "-addr", loop(p["sink"])},
		Ports:   []int{p["sink"]},
		Healthy: httpOK(url(p["sink"]) + "/healthz"),
	})
	common := []string{
		"NATS_URL=" + strings.Join(natsURLs, ","),
		"NATS_REPLICAS=3",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + url(p["jaeger-otlp"]),
		"LOG_LEVEL=info",
	}
	// How long a replica's graceful stop may take, and a margin, as
	// compose.yaml's stop_grace_period: the payment's requests in flight
	// get up to 40s (a 30s deadline and 10s to write the answer), the
	// deployment's up to 30s, the handlers of those cut off then up to 5s
	// more to return, then the queue consumer and the audit trail up to
	// 30s.
	stopGrace := map[string]time.Duration{"payment": 80 * time.Second, "deployment": 70 * time.Second}
	for _, svc := range []string{"payment", "deployment"} {
		for i := 1; i <= 2; i++ {
			n := svc + "-" + strconv.Itoa(i)
			env := append([]string{"ADDR=" + loop(p[n]), "DATA_DIR=" + data(n), "INSTANCE=" + n}, common...)
			if svc == "payment" {
				// Only the payment service pushes its in-process alerts;
				// the deployment service has no Alertmanager to send to.
				env = append(env, "REDIS_URL=redis://"+loop(p["redis"])+"/0", "ALERTMANAGER_URL="+url(p["alertmanager"]))
			} else {
				env = append(env, "FLEET=sim", "DEMO=true")
			}
			cs = append(cs, Component{
				Name: n, URL: url(p[n]) + "/andon/",
				Bin:       filepath.Join(cfg.Bin, svc),
				Env:       env,
				Dirs:      []string{data(n)},
				Ports:     []int{p[n]},
				Healthy:   httpOK(url(p[n]) + "/readyz"),
				StopGrace: stopGrace[svc],
			})
		}
	}
	var monitors []string
	for i := 1; i <= 3; i++ {
		monitors = append(monitors, "nats-"+strconv.Itoa(i)+"="+url(p["nats-"+strconv.Itoa(i)+"-monitor"]))
	}
	cs = append(cs, Component{
		Name: "nats-exporter", URL: url(p["nats-exporter"]) + "/metrics",
		Bin:     cfg.Self,
		Args:    append([]string{"nats-exporter", "-addr", loop(p["nats-exporter"])}, monitors...),
		Ports:   []int{p["nats-exporter"]},
		Healthy: httpOK(url(p["nats-exporter"]) + "/healthz"),
	})
	amConf := filepath.Join(data("alertmanager"), "alertmanager.yml")
	cs = append(cs, Component{
		Name: "alertmanager", URL: url(p["alertmanager"]),
		Bin: "prometheus-alertmanager",
		Args: []string{"--config.file=" + amConf, "--storage.path=" + data("alertmanager"),
			"--web.listen-address=" + loop(p["alertmanager"]), "--cluster.listen-address=" + loop(p["alertmanager-cluster"])},
		Dirs:    []string{data("alertmanager")},
		Files:   map[string]string{amConf: "<alertmanager>"},
		Ports:   []int{p["alertmanager"], p["alertmanager-cluster"]},
		Healthy: httpOK(url(p["alertmanager"]) + "/-/ready"),
	})
	promConf := filepath.Join(data("prometheus"), "prometheus.yml")
	cs = append(cs, Component{
		Name: "prometheus", URL: url(p["prometheus"]),
		Bin: "prometheus",
		Args: []string{"--config.file=" + promConf, "--storage.tsdb.path=" + filepath.Join(data("prometheus"), "tsdb"),
			"--web.listen-address=" + loop(p["prometheus"]), "--storage.tsdb.retention.time=7d", "--web.enable-lifecycle"},
		Dirs:    []string{data("prometheus")},
		Files:   map[string]string{promConf: cfg.prometheusYAML(p)},
		Ports:   []int{p["prometheus"]},
		Healthy: httpOK(url(p["prometheus"]) + "/-/ready"),
	})
	return cs
}

// natsConf is one cluster node's configuration.
func natsConf(name, client, cluster, monitor, store string, routes []string) string {
	return fmt.Sprintf(`# Written by the local stack: node %[1]s of a three-node JetStream cluster.
server_name: %[1]s
listen: %[2]s
http: %[4]s
jetstream {
  store_dir: %[5]q
  max_file_store: 8GB
  max_memory_store: 256MB
}
cluster {
  name: taikit
  listen: %[3]s
  routes: [
    %[6]s
  ]
}
`, name, client, cluster, monitor, store, strings.Join(routes, "\n    "))
}

// jaegerYAML is Jaeger's configuration: OTLP in, traces kept in memory,
// the UI and the health check on the stack's ports.
func jaegerYAML(ui, otlpHTTP, otlpGRPC, health, metrics string) string {
	return fmt.Sprintf(`# Written by the local stack: Jaeger keeps the services' traces in memory.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: %[5]q
                port: %[6]s
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %[4]s
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %[1]s
    grpc:
      endpoint: 127.0.0.1:0
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[3]s
      http:
        endpoint: %[2]s
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, ui, otlpHTTP, otlpGRPC, health, hostOf(metrics), portOf(metrics))
}

func hostOf(hostport string) string { h, _, _ := net.SplitHostPort(hostport); return h }
func portOf(hostport string) string { _, p, _ := net.SplitHostPort(hostport); return p }

// prometheusYAML is deploy/prometheus/prometheus.yml with the stack's
// loopback targets: the same jobs, the same rules.
func (cfg *Config) prometheusYAML(p map[string]int) string {
	loop := func(name string) string { return strconv.Quote("127.0.0.1:" + strconv.Itoa(p[name])) }
	return fmt.Sprintf(`# Written by the local stack from deploy/prometheus/prometheus.yml.
global:
  scrape_interval: 15s
  evaluation_interval: 15s
  external_labels:
    stack: taikit-local
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%[1]s]
rule_files:
  - %[2]q
scrape_configs:
  - job_name: payment
    static_configs:
      - targets: [%[3]s, %[4]s]
  - job_name: deployment
    static_configs:
      - targets: [%[5]s, %[6]s]
  - job_name: nats
    static_configs:
      - targets: [%[7]s]
  - job_name: alertmanager
    static_configs:
      - targets: [%[1]s]
  - job_name: jaeger
    static_configs:
      - targets: [%[9]s]
  - job_name: prometheus
    static_configs:
      - targets: [%[8]s]
`, loop("alertmanager"), filepath.Join(cfg.Repo, "deploy", "prometheus", "rules", "*.yml"),
		loop("payment-1"), loop("payment-2"), loop("deployment-1"), loop("deployment-2"),
		loop("nats-exporter"), loop("prometheus"), loop("jaeger-metrics"))
}

// alertmanagerYAML is deploy/alertmanager/alertmanager.yml with the
// webhooks pointed at the stack's sink.
func (cfg *Config) alertmanagerYAML(sink string) (string, error) {
	b, err := os.ReadFile(filepath.Join(cfg.Repo, "deploy", "alertmanager", "alertmanager.yml"))
	if err != nil {
		return "", err
	}
	s := string(b)
	if !strings.Contains(s, "http://alert-sink:8080/") {
		return "", errors.New("stack: deploy/alertmanager/alertmanager.yml no longer sends to http://alert-sink:8080/")
	}
	return "# Written by the local stack from deploy/alertmanager/alertmanager.yml.\n" +
		strings.ReplaceAll(s, "http://alert-sink:8080/", "http://"+sink+"/"), nil
}

func (cfg *Config) check() error {
	switch {
	case cfg.Dir == "":
		return errors.New("stack: Config.Dir is empty")
	case cfg.Repo == "":
		return errors.New("stack: Config.Repo is empty")
	case cfg.Bin == "":
		return errors.New("stack: Config.Bin is empty")
	case cfg.Self == "":
		return errors.New("stack: Config.Self is empty")
	case cfg.PortBase < 0 || cfg.PortBase+len(defaultPorts) > 65535:
		return fmt.Errorf("stack: PortBase %d leaves no room for %d ports", cfg.PortBase, len(defaultPorts))
	}
	return nil
}

func (cfg *Config) out() io.Writer {
	if cfg.Out == nil {
		return io.Discard
	}
	return cfg.Out
}

// Missing returns the binaries the stack needs that are not there, each
// with how to get it.
func (cfg *Config) Missing() []string {
	var miss []string
	hints := map[string]string{
		"nats-server":             "apt-get install nats-server",
		"redis-server":            "apt-get install redis-server",
		"prometheus":              "apt-get install prometheus",
		"prometheus-alertmanager": "apt-get install prometheus-alertmanager",
	}
	seen := map[string]bool{}
	for _, c := range cfg.Components() {
		if seen[c.Bin] {
			continue
		}
		seen[c.Bin] = true
		if _, err := exec.LookPath(c.Bin); err != nil {
			hint := hints[c.Bin]
			if hint == "" {
				hint = "deploy/local/install builds it"
			}
			miss = append(miss, c.Bin+" ("+hint+")")
		}
	}
	return miss
}

// Up starts every component that is not running, in order, each after
// the ones before it (those running already too) are healthy. It starts nothing while another program
// listens on a port of a component it would start: that program would
// answer the component's health check. A component that does not become
// healthy stops Up with its error and the end of its log; what started
// keeps running (Down stops it). Up holds Dir's lock while it runs, and
// fails at once when another Up or Down holds it.
func Up(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if miss := cfg.Missing(); len(miss) > 0 {
		return fmt.Errorf("stack: missing binaries: %s", strings.Join(miss, "; "))
	}
	unlock, err := cfg.lock("up")
	if err != nil {
		return err
	}
	defer unlock()
	if err := cfg.portsFree(); err != nil {
		return err
	}
	for _, d := range []string{"logs", "pids", "data"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	wait := cfg.Wait
	if wait == 0 {
		wait = 60 * time.Second
	}
	sink := "127.0.0.1:" + strconv.Itoa(cfg.Ports()["sink"])
	cs := cfg.Components()
	for i := 0; i < len(cs); {
		// A group starts together and is waited for together.
		j := i + 1
		for cs[i].Group != "" && j < len(cs) && cs[j].Group == cs[i].Group {
			j++
		}
		pids := map[string]int{}
		for _, c := range cs[i:j] {
			// One running already is waited for too: an up interrupted
			// earlier may have left it starting.
			if pid, ok := cfg.running(c); ok {
				fmt.Fprintf(cfg.out(), "%-14s already running (pid %d)\n", c.Name, pid)
				pids[c.Name] = pid
				continue
			}
			pid, err := cfg.prepareAndStart(c, sink)
			if err != nil {
				return err
			}
			pids[c.Name] = pid
			fmt.Fprintf(cfg.out(), "%-14s started (pid %d)\n", c.Name, pid)
		}
		for _, c := range cs[i:j] {
			pid := pids[c.Name]
			if err := waitHealthy(ctx, c, wait, func() bool { return alive(pid) }); err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("stack: interrupted while waiting for %s: %w; what started keeps running: up again goes on from there, down stops it", c.Name, ctx.Err())
				}
				return fmt.Errorf("stack: %s is not healthy: %w; what started keeps running (down stops it); the end of %s:\n%s", c.Name, err, cfg.logPath(c.Name), tailFile(cfg.logPath(c.Name), 20))
			}
		}
		i = j
	}
	return nil
}

// portsFree reports the ports of the components that do not run which
// another program holds.
func (cfg *Config) portsFree() error {
	var busy []string
	for _, c := range cfg.Components() {
		if _, ok := cfg.running(c); ok {
			continue
		}
		for _, port := range c.Ports {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				busy = append(busy, fmt.Sprintf("%d (%s)", port, c.Name))
				continue
			}
			_ = l.Close()
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("stack: ports taken by other programs: %s; stop what listens on them (ss -ltnp shows it: a service a package started, a go run, a stack of an earlier checkout) and run up again", strings.Join(busy, ", "))
	}
	return nil
}

// prepareAndStart makes c's directories, writes its files and starts it.
func (cfg *Config) prepareAndStart(c Component, sink string) (int, error) {
	for _, d := range c.Dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, fmt.Errorf("stack: %s: %w", c.Name, err)
		}
	}
	for path, body := range c.Files {
		if body == "<alertmanager>" {
			var err error
			if body, err = cfg.alertmanagerYAML(sink); err != nil {
				return 0, err
			}
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return 0, fmt.Errorf("stack: %s: %w", c.Name, err)
		}
	}
	return cfg.start(c)
}

// lockFile is the file in Dir that an up or a down holds locked while it
// runs.
const lockFile = "stack.lock"

// lock takes the lock of cfg.Dir for the command what (up or down), or
// fails at once, naming the directory and the process that holds it,
// when another up or down holds it. The lock is released when the
// returned function is called, or when the program ends however it ends.
// The file is opened close-on-exec, so the components Up starts do not
// hold it.
func (cfg *Config) lock(what string) (func(), error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	path := filepath.Join(cfg.Dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("stack: locking %s: %w", path, err)
		}
		who := ""
		if h := strings.TrimSpace(string(holder)); h != "" {
			who = " (" + h + ")"
		}
		return nil, fmt.Errorf("stack: another up or down runs in %s%s and holds %s; let it finish (or stop it with Ctrl-C) and run %s again", cfg.Dir, who, path, what)
	}
	// Who holds it, for the message of the one refused.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("stack %s, pid %d\n", what, os.Getpid())), 0)
	}
	return func() { _ = f.Close() }, nil
}

// inherited are the variables of the stack's environment its components
// get, which a process needs and which change nothing of what the stack
// runs: where to find programs, the user's home, the time zone, the
// locale (LANG, LANGUAGE and every LC_*, inheritedPrefix), where temporary
// files go, where the certificates are, and the Go runtime's own settings
// (a small machine's GOMAXPROCS or GOMEMLIMIT). Every other variable stays
// out: a stray NATS_URL, REDIS_URL, OTEL_SERVICE_NAME,
// OTEL_EXPORTER_OTLP_ENDPOINT or a service's own flag (ADDR, PAYMENT_*, a
// token) would change what the stack runs.
var inherited = map[string]bool{
	"PATH": true, "HOME": true, "TZ": true, "LANG": true, "LANGUAGE": true, "TMPDIR": true,
	"SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
	"GOMAXPROCS": true, "GOMEMLIMIT": true, "GOGC": true, "GOTRACEBACK": true, "GODEBUG": true,
}

// inheritedPrefix begins the locale's categories, LC_ALL, LC_CTYPE and
// the others, which components get too.
const inheritedPrefix = "LC_"

// componentEnv is a component's environment: the inherited variables the
// stack has, then env, which the stack sets.
func componentEnv(env []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if inherited[k] || strings.HasPrefix(k, inheritedPrefix) {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// runMark begins the line start writes to a component's log before it
// starts the component: "=== stack up TIME: starting NAME ===".
const runMark = "=== stack up "

func (cfg *Config) logPath(name string) string { return filepath.Join(cfg.Dir, "logs", name+".log") }
func (cfg *Config) pidPath(name string) string { return filepath.Join(cfg.Dir, "pids", name+".pid") }

// start starts c in its own session, and so in a process group of its
// own that Down signals whole, its output appended to its log, and writes
// its PID file.
func (cfg *Config) start(c Component) (int, error) {
	bin, err := exec.LookPath(c.Bin)
	if err != nil {
		return 0, fmt.Errorf("stack: %s: %w", c.Name, err)
	}
	// The PID file names the file the process runs, symbolic links
	// resolved, as /proc/PID/exe shows it (Debian's redis-server is a
	// link to redis-check-rdb).
	// It is started by its own name: redis-server is redis-server only
	// when argv[0] says so.
	real, err := filepath.Abs(bin)
	if err == nil {
		real, err = filepath.EvalSymlinks(real)
	}
	if err != nil {
		return 0, fmt.Errorf("stack: %s: %w", c.Name, err)
	}
	log, err := os.OpenFile(cfg.logPath(c.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("stack: %s: %w", c.Name, err)
	}
	defer log.Close()
	// The log keeps the runs before; this line begins the new one, and
	// tailFile shows nothing before it.
	if _, err := fmt.Fprintf(log, "%s%s: starting %s ===\n", runMark, time.Now().UTC().Format(time.RFC3339), c.Name); err != nil {
		return 0, fmt.Errorf("stack: %s: %w", c.Name, err)
	}
	cmd := exec.Command(bin, c.Args...)
	cmd.Env = componentEnv(c.Env)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("stack: starting %s: %w", c.Name, err)
	}
	pid := cmd.Process.Pid
	// Until this program ends, the process is its child, not reaped: its
	// /proc entry stays, even if it has exited already.
	since, err := startTime(pid)
	// The stack does not wait for its processes: each outlives Up. Release
	// lets the runtime forget it; Down finds it again by its PID file.
	_ = cmd.Process.Release()
	if err != nil {
		return pid, fmt.Errorf("stack: %s (pid %d): %w", c.Name, pid, err)
	}
	line := strconv.Itoa(pid) + " " + since + " " + real + "\n"
	if boot := bootID(); boot != "" {
		line += "boot " + boot + "\n"
	}
	if err := os.WriteFile(cfg.pidPath(c.Name), []byte(line), 0o644); err != nil {
		return pid, fmt.Errorf("stack: %s: %w", c.Name, err)
	}
	return pid, nil
}

// bootIDPath holds an identifier the system draws afresh at every boot.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// bootID returns the identifier of the running boot, empty when the
// system does not say.
func bootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// pidLine returns the first line of c's PID file, "PID START PATH",
// without its newline, and false when there is none or when the file was
// written before the machine last booted. The second line, "boot ID",
// names the boot start wrote the file in: after a restart the system
// numbers its processes afresh, and a PID file that a crash or a power
// cut left names a process of the new boot by chance, even one with the
// start time it holds (clock ticks since boot), or the group such a
// process leads. A file without the line (of an earlier version) is taken
// to be of this boot.
func (cfg *Config) pidLine(c Component) (string, bool) {
	b, err := os.ReadFile(cfg.pidPath(c.Name))
	if err != nil {
		return "", false
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	for _, l := range strings.Split(rest, "\n") {
		if id, ok := strings.CutPrefix(l, "boot "); ok {
			if now := bootID(); now != "" && id != now {
				return "", false
			}
		}
	}
	return first, first != ""
}

// running returns the PID of c when its PID file names a process that
// still runs: the same PID, started at the same time, in the same boot
// (pidLine). A PID file's first line reads "PID START PATH": START is the
// process's start time (startTime), which tells it from a later process
// given the same PID, even one running the same binary; PATH, the binary
// started, is the rest of the line (it may hold spaces). A file of the
// earlier form "PID PATH" is checked by its binary alone.
func (cfg *Config) running(c Component) (int, bool) {
	line, ok := cfg.pidLine(c)
	if !ok {
		return 0, false
	}
	id, path, ok := strings.Cut(line, " ")
	if !ok || path == "" {
		return 0, false
	}
	pid, err := strconv.Atoi(id)
	if err != nil || pid <= 0 {
		return 0, false
	}
	if since, ok := pidStart(path); ok {
		// A PID and its start time name one process: the binary is not
		// compared, for a component whose binary is a script runs as its
		// interpreter (/proc/PID/exe names sh), and a wrapper may exec
		// another program.
		if now, err := startTime(pid); err != nil || now != since {
			return 0, false
		}
		return pid, alive(pid)
	}
	exe, err := os.Readlink("/proc/" + id + "/exe")
	if err != nil {
		return 0, false
	}
	// A binary replaced since (a rebuild) shows as "path (deleted)".
	if strings.TrimSuffix(exe, " (deleted)") != path {
		return 0, false
	}
	return pid, alive(pid)
}

// pidStart returns the start time that begins rest, what follows the PID
// in a PID file, and false for a file of the earlier form "PID PATH".
func pidStart(rest string) (string, bool) {
	since, _, ok := strings.Cut(rest, " ")
	if _, err := strconv.ParseUint(since, 10, 64); !ok || err != nil {
		return "", false
	}
	return since, true
}

// leftGroup returns the process group c led when c has died but left
// processes in it: its PID file names a process that is gone (or a zombie
// of the same start time) while processes of the group that PID led
// still run. The system gives no new process a PID that still numbers a
// group, so they are the ones c left, and the group is the stack's to
// stop. A PID since given to another process
// (another start time) is left alone, and so is its group, and so is the
// group of a PID file of an earlier boot (pidLine).
func (cfg *Config) leftGroup(c Component) (int, bool) {
	line, ok := cfg.pidLine(c)
	if !ok {
		return 0, false
	}
	id, rest, _ := strings.Cut(line, " ")
	pid, err := strconv.Atoi(id)
	if err != nil || pid <= 0 {
		return 0, false
	}
	since, ok := pidStart(rest)
	if !ok {
		return 0, false
	}
	if f, err := statFields(id); err == nil {
		if len(f) < 20 || f[0] != "Z" || f[19] != since {
			return 0, false
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, false
	}
	return pid, groupAlive(pid)
}

// startTime returns when pid started, in clock ticks since the machine
// booted (the 22nd field of /proc/PID/stat): a PID and its start time name
// one process until the machine restarts.
func startTime(pid int) (string, error) {
	f, err := statFields(strconv.Itoa(pid))
	if err != nil {
		return "", err
	}
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat has no start time", pid)
	}
	return f[19], nil
}

// statFields returns the fields of /proc/pid/stat after the command name
// in parentheses, which may hold spaces: the first is the state, the
// second the parent, the third the process group, the twentieth the
// start time.
func statFields(pid string) ([]string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%s/stat has no command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	f, err := statFields(strconv.Itoa(pid))
	return err == nil && len(f) > 0 && f[0] != "Z"
}

func waitHealthy(ctx context.Context, c Component, wait time.Duration, up func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last error
	for {
		if !up() {
			return errors.New("the process exited")
		}
		hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
		last = c.Healthy(hctx)
		hcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", wait, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Down stops every process of the stack that its PID files name, in the
// reverse of the starting order, and removes the PID files; of a
// component that has exited, it stops what the component left in its
// process group. It returns the names it stopped. Down holds Dir's lock
// while it runs, and fails at once when another Up or Down holds it.
//
// Each component gets SIGTERM and its grace (Config.Grace, or its
// StopGrace) to stop. When ctx is done (the operator's Ctrl-C), Down waits
// no longer: the component it waits for and every one still to stop is
// killed at once (SIGKILL to its process group), as a crash or a power cut
// would end it, and their PID files are removed as usual.
func Down(ctx context.Context, cfg Config) ([]string, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	// A directory that does not exist holds no stack to lock.
	if _, err := os.Stat(cfg.Dir); err == nil {
		unlock, err := cfg.lock("down")
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	cs := cfg.Components()
	var stopped []string
	var errs []error
	said := false
	interrupted := func() {
		if ctx.Err() != nil && !said {
			said = true
			fmt.Fprintln(cfg.out(), "interrupted: killing (SIGKILL) what still runs, without waiting for its graceful stop")
		}
	}
	how := func(killed bool) string {
		if killed {
			return "killed (SIGKILL, "
		}
		return "stopped ("
	}
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		grace := cfg.Grace
		if grace == 0 {
			grace = c.StopGrace
		}
		if grace == 0 {
			grace = 30 * time.Second
		}
		if pid, ok := cfg.running(c); ok {
			killed, err := stop(ctx, pid, grace, interrupted)
			if err != nil {
				errs = append(errs, fmt.Errorf("stack: stopping %s (pid %d): %w", c.Name, pid, err))
				continue
			}
			stopped = append(stopped, c.Name)
			fmt.Fprintf(cfg.out(), "%-14s %spid %d)\n", c.Name, how(killed), pid)
		} else if pgid, ok := cfg.leftGroup(c); ok {
			killed, err := stop(ctx, pgid, grace, interrupted)
			if err != nil {
				errs = append(errs, fmt.Errorf("stack: stopping what %s (pid %d, exited) left in its process group: %w", c.Name, pgid, err))
				continue
			}
			stopped = append(stopped, c.Name)
			verb := "stopped"
			if killed {
				verb = "killed (SIGKILL)"
			}
			fmt.Fprintf(cfg.out(), "%-14s had exited; %s what it left in its process group %d\n", c.Name, verb, pgid)
		}
		if err := os.Remove(cfg.pidPath(c.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(stopped) == 0 && len(errs) == 0 {
		fmt.Fprintf(cfg.out(), "nothing of the stack in %s was running\n", cfg.Dir)
	}
	return stopped, errors.Join(errs...)
}

// stop sends SIGTERM to pid's process group, so that what the process
// forked (redis's append-only-file rewrite) ends with it, and waits for
// every process of the group to end, then sends SIGKILL to those left. It
// reports whether it sent SIGKILL. When ctx is done, before or during the
// wait, it waits no longer: it calls interrupted and sends SIGKILL at
// once (no SIGTERM when ctx was done before). pid leads its group: start
// made it a session's leader. The caller has checked that pid still is
// the stack's process; while a process of the group runs, the system
// gives the group's number to no other process, so the group signalled
// is the one the stack started.
func stop(ctx context.Context, pid int, grace time.Duration, interrupted func()) (bool, error) {
	if ctx.Err() == nil {
		if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return false, err
		}
		if waitGroup(ctx, pid, grace) {
			return false, nil
		}
	}
	// Gone meanwhile: its number may be another's by now.
	if !alive(pid) && !groupAlive(pid) {
		return false, nil
	}
	interrupted()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return true, err
	}
	if waitGroup(context.Background(), pid, 10*time.Second) {
		return true, nil
	}
	return true, errors.New("still running after SIGKILL")
}

// waitGroup waits up to d for pid and every process of its group to end,
// and reports whether they did; it stops waiting when ctx is done.
func waitGroup(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pid) || groupAlive(pid) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// groupAlive reports whether a process of the process group pgid runs and
// is not a zombie (the fifth field of /proc/PID/stat is the group).
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	want := strconv.Itoa(pgid)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		// State, parent, group.
		if f, err := statFields(e.Name()); err == nil && len(f) >= 3 && f[2] == want && f[0] != "Z" {
			return true
		}
	}
	return false
}

// State is one component's line of Status.
type State struct {
	Name    string
	PID     int // 0 when not running
	Healthy bool
	Problem string // why not healthy
	URL     string
}

// Status reports each component: running or not, healthy or why not, and
// its URL, in the stack's order. The health checks run at once, 3s each at
// most, so a stack that hangs takes 3s, not 3s a component.
func Status(ctx context.Context, cfg Config) ([]State, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cs := cfg.Components()
	out := make([]State, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		out[i] = State{Name: c.Name, URL: c.URL}
		pid, ok := cfg.running(c)
		if !ok {
			out[i].Problem = "not running"
			continue
		}
		out[i].PID = pid
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if err := c.Healthy(hctx); err != nil {
				out[i].Problem = err.Error()
			} else {
				out[i].Healthy = true
			}
		})
	}
	wg.Wait()
	return out, nil
}

// WriteStatus prints states as a table.
func WriteStatus(w io.Writer, states []State) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tPID\tHEALTH\tURL")
	for _, s := range states {
		health, pid := "healthy", "-"
		if !s.Healthy {
			health = s.Problem
		}
		if s.PID != 0 {
			pid = strconv.Itoa(s.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, pid, health, s.URL)
	}
	return tw.Flush()
}

// Logs writes the last n lines of the current run of each component's log
// (from the line Up wrote when it last started the component), each line
// prefixed with the component's name. n must be at least 1.
func Logs(cfg Config, w io.Writer, n int) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("stack: %d lines of each log: give 1 or more", n)
	}
	for _, c := range cfg.Components() {
		t := tailFile(cfg.logPath(c.Name), n)
		if t == "" {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(t))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if _, err := fmt.Fprintf(w, "%-14s | %s\n", c.Name, sc.Text()); err != nil {
				return err
			}
		}
	}
	return nil
}

// tailFile returns the last n lines of a log's current run, from the last
// line that begins with runMark on (the whole file, its last 256 KiB, when
// it has none), empty when it cannot be read.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 256 << 10
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-window, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], runMark) {
			lines = lines[i:]
			break
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// httpOK is a health check: a GET of url answers 2xx.
func httpOK(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	}
}

// redisPing is a health check: PING answers +PONG.
func redisPing(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != "+PONG" {
			return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
		}
		return nil
	}
}
