package check

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// TestDashboardsAreGenerated regenerates the dashboards into a temporary
// directory: the committed deploy/grafana/dashboards must be exactly what
// Dashboards builds (go generate or make dashboards writes them).
func TestDashboardsAreGenerated(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, WriteDashboards(dir))
	fresh, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	committed, err := filepath.Glob(deployPath(t, "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	names := func(files []string) []string {
		var out []string
		for _, f := range files {
			out = append(out, filepath.Base(f))
		}
		return out
	}
	require.Equal(t, []string{"deployment.json", "payment.json", "tai.json"}, names(fresh))
	require.Equal(t, names(fresh), names(committed), "deploy/grafana/dashboards holds the generated files and no other; run make dashboards")
	for _, f := range fresh {
		want, err := os.ReadFile(f)
		require.NoError(t, err)
		got, err := os.ReadFile(deployPath(t, "grafana", "dashboards", filepath.Base(f)))
		require.NoError(t, err)
		if line, w, g := firstDiff(string(want), string(got)); line > 0 {
			t.Errorf("deploy/grafana/dashboards/%s differs from what Dashboards builds; run make dashboards\nline %d built: %q\nline %d committed: %q",
				filepath.Base(f), line, w, line, g)
		}
	}
}

func TestWriteDashboardsNeedsTheDirectory(t *testing.T) {
	err := WriteDashboards(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing")
}

// TestDashboardsAreWellFormed checks what Grafana needs of each dashboard:
// a unique uid, unique panel ids, panels inside the 24-column grid without
// overlapping, and every query on the datasource variable.
func TestDashboardsAreWellFormed(t *testing.T) {
	ds, err := Dashboards()
	require.NoError(t, err)
	uids := map[string]bool{}
	for _, d := range ds {
		require.NotNil(t, d.Model.Uid, d.File)
		assert.False(t, uids[*d.Model.Uid], "uid %s twice", *d.Model.Uid)
		uids[*d.Model.Uid] = true
		b, err := d.Marshal()
		require.NoError(t, err)
		var m struct {
			Panels []struct {
				ID      int    `json:"id"`
				Type    string `json:"type"`
				Title   string `json:"title"`
				GridPos struct {
					X, Y, W, H int
				} `json:"gridPos"`
				Targets []struct {
					Datasource struct{ Type, UID string } `json:"datasource"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct{ Name, Type, Query string } `json:"list"`
			} `json:"templating"`
		}
		require.NoError(t, json.Unmarshal(b, &m))
		require.Len(t, m.Templating.List, 1)
		assert.Equal(t, "datasource", m.Templating.List[0].Name)
		assert.Equal(t, "prometheus", m.Templating.List[0].Query)
		ids := map[int]bool{}
		cells := map[[2]int]string{}
		for _, p := range m.Panels {
			assert.False(t, ids[p.ID], "%s: panel id %d twice", d.File, p.ID)
			ids[p.ID] = true
			g := p.GridPos
			assert.True(t, g.W > 0 && g.H > 0 && g.X >= 0 && g.X+g.W <= 24, "%s: panel %q at %+v lies outside the grid", d.File, p.Title, g)
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					if other, ok := cells[[2]int{x, y}]; ok {
						t.Errorf("%s: panels %q and %q overlap at %d,%d", d.File, other, p.Title, x, y)
					}
					cells[[2]int{x, y}] = p.Title
				}
			}
			if p.Type != "row" {
				assert.NotEmpty(t, p.Targets, "%s: panel %q has no query", d.File, p.Title)
			}
			for _, tg := range p.Targets {
				assert.Equal(t, "prometheus", tg.Datasource.Type)
				assert.Equal(t, "${datasource}", tg.Datasource.UID)
			}
		}
	}
}

func TestDashboardQueriesRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"not JSON", `{"title": `, "not a dashboard"},
		{"no title", `{"panels": []}`, "no title"},
		{"a panel not an object", `{"title": "d", "panels": [3]}`, "a panel"},
		{"an empty expression", `{"title": "d", "panels": [{"title": "p", "targets": [{"refId": "A"}]}]}`, `panel "p": query "A" has no expression`},
		{"an empty expression in a row", `{"title": "d", "panels": [{"type": "row", "panels": [{"title": "q", "targets": [{"refId": "B", "expr": ""}]}]}]}`, `panel "q": query "B"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DashboardQueries([]byte(tc.json))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	qs, err := DashboardQueries([]byte(`{"title": "d", "panels": [{"type": "row", "panels": [{"title": "q", "targets": [{"refId": "A", "expr": "up"}]}]}]}`))
	require.NoError(t, err)
	assert.Equal(t, []PanelQuery{{Panel: "q", RefID: "A", Expr: "up"}}, qs)
}

// grafanaVariables stands in for the variables Grafana fills in before a
// query reaches Prometheus: a rate window of a minute (many scrapes at the
// test's second), a range of ten minutes (since before the services
// started).
var grafanaVariables = strings.NewReplacer("$__rate_interval", "1m", "$__range", "10m")

// promResult is the answer of Prometheus's /api/v1/query.
type promResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// promQuery evaluates expr now through Prometheus's HTTP API and returns
// the number of series (or 1 for a scalar), the values and the error
// Prometheus reports.
func promQuery(t *testing.T, promURL, expr string) (int, []string, error) {
	t.Helper()
	resp, err := http.PostForm(promURL+"/api/v1/query", url.Values{"query": {expr}})
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var r promResult
	require.NoError(t, json.Unmarshal(b, &r), "%s", b)
	if r.Status != "success" {
		return 0, nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	switch r.Data.ResultType {
	case "vector":
		var v []struct {
			Value [2]any `json:"value"`
		}
		require.NoError(t, json.Unmarshal(r.Data.Result, &v))
		var values []string
		for _, s := range v {
			values = append(values, fmt.Sprint(s.Value[1]))
		}
		return len(v), values, nil
	case "scalar":
		var s [2]any
		require.NoError(t, json.Unmarshal(r.Data.Result, &s))
		return 1, []string{fmt.Sprint(s[1])}, nil
	default:
		return 0, nil, fmt.Errorf("result of type %s, not an instant vector", r.Data.ResultType)
	}
}

// zeroFallback is a query's fallback on zero where it has no series:
// "or vector(0)", or "or on () vector(0)".
var zeroFallback = regexp.MustCompile(`\s*\bor\s+(?:on\s*\(\s*\)\s*)?vector\(0\)`)

// panelProblems evaluates each query and returns what is wrong with it:
// Prometheus refused it, it returned nothing, or nothing but NaN (a
// ratio or quantile of what did not change). With scraped (Prometheus
// holds the services' series, once each has happened), a query that falls
// back on vector(0) must return data without its fallbacks too: with them
// it has data whatever its metrics are called, and a misspelt one would
// show zero for ever.
func panelProblems(t *testing.T, promURL string, qs []PanelQuery, scraped bool) []string {
	t.Helper()
	var out []string
	for _, q := range qs {
		n, values, err := promQuery(t, promURL, grafanaVariables.Replace(q.Expr))
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("panel %q query %s: %v", q.Panel, q.RefID, err))
			continue
		case n == 0:
			out = append(out, fmt.Sprintf("panel %q query %s: no data", q.Panel, q.RefID))
			continue
		case !slices.ContainsFunc(values, func(v string) bool { return v != "NaN" }):
			out = append(out, fmt.Sprintf("panel %q query %s: only NaN", q.Panel, q.RefID))
			continue
		}
		t.Logf("panel %q query %s: %v", q.Panel, q.RefID, values)
		if bare := zeroFallback.ReplaceAllString(q.Expr, ""); scraped && bare != q.Expr {
			n, _, err := promQuery(t, promURL, grafanaVariables.Replace(bare))
			switch {
			case err != nil:
				out = append(out, fmt.Sprintf("panel %q query %s without its vector(0) fallback: %v", q.Panel, q.RefID, err))
			case n == 0:
				out = append(out, fmt.Sprintf("panel %q query %s: no data without its vector(0) fallback: a metric or label it names is not one the services export", q.Panel, q.RefID))
			}
		}
	}
	return out
}

// TestDashboardsQueryTheServices runs Prometheus, with the stack's scrape
// jobs for the two services, against the services built from the
// examples module, sends them a little of everything (payments charged,
// blocked and rate-limited, a deployment through and one rolled back),
// waits for two scrapes after it and evaluates every panel's query of the
// committed dashboards: each must parse and return data.
func TestDashboardsQueryTheServices(t *testing.T) {
	promBin := tool(t, "prometheus", "prometheus")
	payment, deployment := buildService(t, "payment"), buildService(t, "deployment")

	const admin = "admin-token-0123456789"
	start := func(name, bin string) string {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		startProcess(t, name, []string{"ADDR=" + addr, "DATA_DIR=" + t.TempDir(), "ADMIN_TOKEN=" + admin,
			"INSTANCE=" + name + "-1", "LOG_LEVEL=warn"}, bin)
		return addr
	}
	payAddr, depAddr := start("payment", payment), start("deployment", deployment)

	// Prometheus: the stack's jobs for the two services, the test's
	// addresses, a scrape a second.
	var cfg map[string]any
	b, err := os.ReadFile(deployPath(t, "prometheus", "prometheus.yml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	cfg["global"].(map[string]any)["scrape_interval"] = "1s"
	delete(cfg, "alerting")
	delete(cfg, "rule_files")
	targets := map[string]string{"payment": payAddr, "deployment": depAddr}
	var jobs []any
	for _, j := range cfg["scrape_configs"].([]any) {
		job := j.(map[string]any)
		if addr, ok := targets[job["job_name"].(string)]; ok {
			job["static_configs"] = []any{map[string]any{"targets": []any{addr}}}
			jobs = append(jobs, job)
		}
	}
	require.Len(t, jobs, 2, "prometheus.yml has a payment and a deployment job")
	cfg["scrape_configs"] = jobs
	promYAML, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	dir := t.TempDir()
	promFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(promFile, promYAML, 0o644))
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "prometheus", nil, promBin, "--config.file="+promFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	promURL := "http://" + promAddr

	waitOK(t, "http://"+payAddr+"/readyz", 2*time.Minute)
	waitOK(t, "http://"+depAddr+"/readyz", 2*time.Minute)
	waitOK(t, promURL+"/-/ready", time.Minute)
	post := func(addr, path, body string) (int, string) {
		resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		rb, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(rb)
	}
	payment1 := func(customer string) (int, string) {
		return post(payAddr, "/payment", fmt.Sprintf(`{"amount": 50, "customer_id": %q, "currency": "USD", "merchant_id": "merc_456"}`, customer))
	}
	rollBack := func() {
		t.Helper()
		code, body := post(depAddr, "/deploy", `{"service":"bad-service","version":"v1.0.0","target_region":"us-east-1","rollout_strategy":"canary"}`)
		require.Equal(t, http.StatusAccepted, code, body)
		require.Contains(t, body, `"status":"ROLLED_BACK"`)
	}
	// A payment and a rollback first, scraped before the load: many
	// series appear only with their first signal, and rate() and
	// increase() see only what grows after a series' first sample.
	code, body := payment1("cust_first")
	require.Equal(t, http.StatusOK, code, body)
	rollBack()
	scrapedAfter(t, promURL, time.Now())

	code, body = payment1("cust_good")
	require.Equal(t, http.StatusOK, code, body)
	code, body = payment1("cust_blacklist")
	require.Equal(t, http.StatusPaymentRequired, code, body)
	limited := false
	for range 10 {
		if code, _ = payment1("cust_rapid"); code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	require.True(t, limited, "a customer's rapid payments are limited")
	code, body = post(depAddr, "/deploy", `{"service":"api-service","version":"v2.0.0","target_region":"us-west-2","rollout_strategy":"canary"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"status":"SUCCESS"`)
	rollBack()

	// Two scrapes of both after the load: one that began after it and
	// one a scrape interval later.
	scrapedAfter(t, promURL, scrapedAfter(t, promURL, time.Now()))

	files, err := filepath.Glob(deployPath(t, "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	require.Len(t, files, 3)
	total := 0
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			qs, err := DashboardQueries(b)
			require.NoError(t, err)
			require.NotEmpty(t, qs)
			total += len(qs)
			for _, p := range panelProblems(t, promURL, qs, true) {
				t.Error(p)
			}
		})
	}
	assert.Equal(t, 26, total, "queries evaluated")

	// The rules' unit tests feed promtool series labelled as the services
	// label theirs (deploy/prometheus/tests).
	t.Run("rule unit tests' series", func(t *testing.T) {
		files, err := filepath.Glob(deployPath(t, "prometheus", "tests", "*.yml"))
		require.NoError(t, err)
		require.Len(t, files, 2)
		for _, p := range ruleSeriesProblems(t, promURL, files) {
			t.Error(p)
		}
		// The check has teeth: an outcome the pipeline never records.
		bad := filepath.Join(t.TempDir(), "bad.yml")
		require.NoError(t, os.WriteFile(bad, []byte("tests:\n  - input_series:\n      - series: 'taikit_signals_total{kind=\"payment\",outcome=\"success\",instance=\"x:1\"}'\n        values: '0+1x5'\n"), 0o644))
		problems := ruleSeriesProblems(t, promURL, []string{bad})
		require.Len(t, problems, 1, "%q", problems)
		assert.Contains(t, problems[0], `outcome="success" is not a value the services export`)
	})

	// The check has teeth: a misspelt metric, a label no series has and
	// a query that does not parse are each reported, and so is a
	// misspelt metric behind a vector(0) fallback, which has data all the
	// same.
	bad := []PanelQuery{
		{Panel: "misspelt", RefID: "A", Expr: `sum by (status) (rate(payment_transactions_total[$__rate_interval]))`},
		{Panel: "no such label", RefID: "A", Expr: `sum(taikit_queue_depth{queue="confirmation"})`},
		{Panel: "does not parse", RefID: "A", Expr: `sum by (status (rate(payment_transaction_total[$__rate_interval]))`},
		{Panel: "misspelt behind a fallback", RefID: "A", Expr: `sum(increase(taikit_breaker_transition_total{breaker="gateway"}[$__rate_interval])) or vector(0)`},
	}
	problems := panelProblems(t, promURL, bad, true)
	require.Len(t, problems, 4, "%q", problems)
	assert.Contains(t, problems[0], `panel "misspelt" query A: no data`)
	assert.Contains(t, problems[1], `panel "no such label" query A: no data`)
	assert.Contains(t, problems[2], `panel "does not parse" query A: bad_data`)
	assert.Contains(t, problems[3], `panel "misspelt behind a fallback" query A: no data without its vector(0) fallback`)
}

// scrapedAfter waits until Prometheus holds a scrape of every target that
// began after since, and returns the earliest of those scrapes' times.
// (timestamp() of a bare selector is the sample's time; of anything
// computed, such as up == 1, it would be the time of the query.)
func scrapedAfter(t *testing.T, promURL string, since time.Time) time.Time {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last string
	for time.Now().Before(deadline) {
		n, values, err := promQuery(t, promURL, `timestamp(up{job=~"payment|deployment"})`)
		if err == nil && n == 2 {
			var times []float64
			for _, v := range values {
				ts, err := strconv.ParseFloat(v, 64)
				require.NoError(t, err)
				times = append(times, ts)
			}
			at := time.UnixMilli(int64(slices.Min(times) * 1000))
			if at.After(since) {
				return at
			}
			last = fmt.Sprintf("last scrapes at %v", values)
		} else {
			last = fmt.Sprintf("%d targets up, %v", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no scrape of both services after %v within a minute; %s", since, last)
	return time.Time{}
}

// TestDashboardZeroesSurviveNoSeries evaluates, on a Prometheus that has
// scraped nothing, every query that falls back on vector(0): each must
// still return data, so an idle or freshly started service shows zero.
func TestDashboardZeroesSurviveNoSeries(t *testing.T) {
	promBin := tool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	promFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(promFile, []byte("global: {scrape_interval: 1s}\n"), 0o644))
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "prometheus", nil, promBin, "--config.file="+promFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	promURL := "http://" + promAddr
	waitOK(t, promURL+"/-/ready", time.Minute)

	var zeroes []PanelQuery
	files, err := filepath.Glob(deployPath(t, "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		qs, err := DashboardQueries(b)
		require.NoError(t, err)
		for _, q := range qs {
			if strings.Contains(q.Expr, "vector(0)") {
				zeroes = append(zeroes, q)
			}
		}
	}
	require.Len(t, zeroes, 7)
	for _, p := range panelProblems(t, promURL, zeroes, false) {
		t.Error(p)
	}
	// And without the fallback, the same query has nothing to show.
	n, _, err := promQuery(t, promURL, grafanaVariables.Replace(`sum(rate(deployment_success_total[$__rate_interval]))`))
	require.NoError(t, err)
	assert.Zero(t, n)
}

// grafanaProvisioning is the part of Grafana's provisioning files the
// tests read.
type grafanaProvisioning struct {
	Datasources []struct {
		Name, UID, Type, URL string
		IsDefault            bool `json:"isDefault"`
	} `json:"datasources"`
	Providers []struct {
		Type    string `json:"type"`
		Options struct {
			Path string `json:"path"`
		} `json:"options"`
	} `json:"providers"`
}

// TestGrafanaProvisioning checks Grafana's provisioning files against the
// stack: the datasource is its Prometheus on the port it serves, and the
// dashboards come from files.
func TestGrafanaProvisioning(t *testing.T) {
	var ds, dash grafanaProvisioning
	readYAML(t, deployPath(t, "grafana", "provisioning", "datasources", "prometheus.yaml"), &ds)
	readYAML(t, deployPath(t, "grafana", "provisioning", "dashboards", "taikit.yaml"), &dash)
	require.Len(t, ds.Datasources, 1)
	d := ds.Datasources[0]
	assert.Equal(t, "prometheus", d.Type, "the dashboards' datasource variable lists datasources of type prometheus")
	assert.True(t, d.IsDefault, "the variable starts on the default datasource")
	u, err := url.Parse(d.URL)
	require.NoError(t, err)
	p, err := loadStack(t)
	require.NoError(t, err)
	prom, ok := p.Services[u.Hostname()]
	require.True(t, ok, "the datasource %s is no service of the stack", d.URL)
	served := false
	for _, port := range prom.Ports {
		served = served || fmt.Sprint(port.Target) == u.Port()
	}
	assert.True(t, served, "%s: the stack's %s serves no port %s", d.URL, u.Hostname(), u.Port())
	require.Len(t, dash.Providers, 1)
	assert.Equal(t, "file", dash.Providers[0].Type)
	assert.NotEmpty(t, dash.Providers[0].Options.Path)
}
