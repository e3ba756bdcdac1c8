package check

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// notification is what Alertmanager posts to a webhook.
type notification struct {
	path     string
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// TestBreakerAlertPagesThroughTheStack runs the alerting path of the
// stack end to end with its own files: the payment service, Prometheus
// with deploy/prometheus/prometheus.yml's rules (targets and intervals
// moved for the test), and Alertmanager with
// deploy/alertmanager/alertmanager.yml (the webhooks pointed at the test).
// It opens the gateway breaker and waits for PaymentGatewayBreakerOpen to
// reach the pager's webhook.
func TestBreakerAlertPagesThroughTheStack(t *testing.T) {
	promBin := tool(t, "prometheus", "prometheus")
	amBin := tool(t, "prometheus-alertmanager", "prometheus-alertmanager")
	payment := buildService(t, "payment")

	got := make(chan notification, 16)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := notification{path: r.URL.Path}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &n); err == nil {
			select {
			case got <- n:
			default:
			}
		}
	}))
	t.Cleanup(sink.Close)

	// Alertmanager: the file, its webhooks at the test's sink.
	amCfg, err := os.ReadFile(deployPath(t, "alertmanager", "alertmanager.yml"))
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(amCfg), "http://alert-sink:8080/"))
	dir := t.TempDir()
	amFile := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(amFile, []byte(strings.ReplaceAll(string(amCfg), "http://alert-sink:8080/", sink.URL+"/")), 0o644))
	amAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "alertmanager", nil, amBin, "--config.file="+amFile, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=", "--log.level=warn")

	// The payment service, its breaker held open once it opens.
	secrets := t.TempDir()
	write := func(name, v string) string {
		f := filepath.Join(secrets, name)
		require.NoError(t, os.WriteFile(f, []byte(v), 0o600))
		return f
	}
	payAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "payment", []string{
		"ADDR=" + payAddr, "INSTANCE=payment-1", "DATA_DIR=" + t.TempDir(), "LOG_LEVEL=warn", "BREAKER_OPEN=1h",
		"API_TOKEN_FILE=" + write("api", "api-token-0123456789"), "ADMIN_TOKEN_FILE=" + write("admin", "admin-token-0123456789"),
	}, payment)

	// Prometheus: the file's rules, alerting and payment job, with the
	// test's addresses, evaluated every second.
	var cfg map[string]any
	b, err := os.ReadFile(deployPath(t, "prometheus", "prometheus.yml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	cfg["global"].(map[string]any)["scrape_interval"] = "1s"
	cfg["global"].(map[string]any)["evaluation_interval"] = "1s"
	cfg["alerting"] = map[string]any{"alertmanagers": []any{map[string]any{"static_configs": []any{map[string]any{"targets": []any{amAddr}}}}}}
	var rules []any
	for _, rf := range cfg["rule_files"].([]any) {
		rules = append(rules, filepath.Join(deployPath(t, "prometheus"), rf.(string)))
	}
	cfg["rule_files"] = rules
	var jobs []any
	for _, j := range cfg["scrape_configs"].([]any) {
		job := j.(map[string]any)
		if job["job_name"] == "payment" {
			job["static_configs"] = []any{map[string]any{"targets": []any{payAddr}}}
			jobs = append(jobs, job)
		}
	}
	require.Len(t, jobs, 1, "prometheus.yml has a payment job")
	cfg["scrape_configs"] = jobs
	promYAML, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	promFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(promFile, promYAML, 0o644))
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, "prometheus", nil, promBin, "--config.file="+promFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")

	waitOK(t, "http://"+payAddr+"/readyz", 2*time.Minute)
	waitOK(t, "http://"+amAddr+"/-/ready", time.Minute)
	waitOK(t, "http://"+promAddr+"/-/ready", time.Minute)

	call := func(path, token, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, "http://"+payAddr+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(rb)
	}
	code, body := call("/admin/gateway", "admin-token-0123456789", `{"failure_rate": 1}`)
	require.Equal(t, http.StatusOK, code, body)
	var last string
	for i := range 6 {
		_, last = call("/payment", "api-token-0123456789", fmt.Sprintf(`{"amount": 5, "customer_id": "cust_breaker_%d", "currency": "USD", "merchant_id": "merc_ops"}`, i))
	}
	require.Contains(t, last, "gateway_unavailable", "the sixth payment finds the breaker open")

	deadline := time.After(2 * time.Minute)
	for {
		select {
		case n := <-got:
			for _, a := range n.Alerts {
				if a.Labels["alertname"] != "PaymentGatewayBreakerOpen" {
					continue
				}
				assert.Equal(t, "/page", n.path, "a page goes to the pager's webhook")
				assert.Equal(t, "pager", n.Receiver)
				assert.Equal(t, "firing", n.Status)
				assert.Equal(t, "page", a.Labels["severity"])
				assert.Equal(t, "payment", a.Labels["service"])
				return
			}
		case <-deadline:
			t.Fatal("PaymentGatewayBreakerOpen did not reach the pager within 2 minutes")
		}
	}
}
