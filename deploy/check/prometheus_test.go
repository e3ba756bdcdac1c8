package check

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// runTool runs a tool and returns its combined output and whether it
// exited 0.
func runTool(t *testing.T, dir string, env []string, bin string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "%s %v did not run: %s", bin, args, out)
	}
	return string(out), err == nil
}

func TestPromtoolChecksTheConfig(t *testing.T) {
	promtool := tool(t, "prometheus", "promtool")
	out, ok := runTool(t, deployPath(t, "prometheus"), nil, promtool, "check", "config", "prometheus.yml")
	require.True(t, ok, out)
	assert.Contains(t, out, "SUCCESS: 2 rule files found", "rule_files finds both services' rules")
}

func TestPromtoolChecksTheRules(t *testing.T) {
	promtool := tool(t, "prometheus", "promtool")
	files, err := filepath.Glob(deployPath(t, "prometheus", "rules", "*.yml"))
	require.NoError(t, err)
	require.Len(t, files, 2)
	out, ok := runTool(t, deployPath(t, "prometheus"), nil, promtool, append([]string{"check", "rules"}, files...)...)
	require.True(t, ok, out)
	assert.Contains(t, out, "SUCCESS: 4 rules found")
	assert.Contains(t, out, "SUCCESS: 5 rules found")
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			KeepFiring  string            `json:"keep_firing_for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// ruleTests is the part of a promtool unit test file the tests read.
type ruleTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	// Only the fields of v: promtool and amtool check the files whole.
	require.NoError(t, yaml.Unmarshal(b, v), file)
}

// alerts returns the alerts of the committed rule files, with their
// severities.
func alerts(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(deployPath(t, "prometheus", "rules", "*.yml"))
	require.NoError(t, err)
	out := map[string]string{}
	for _, f := range files {
		var rf ruleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					out[r.Alert] = r.Labels["severity"]
				}
			}
		}
	}
	return out
}

func TestPromtoolRuleUnitTests(t *testing.T) {
	promtool := tool(t, "prometheus", "promtool")
	files, err := filepath.Glob(deployPath(t, "prometheus", "tests", "*.yml"))
	require.NoError(t, err)
	require.Len(t, files, 2)
	out, ok := runTool(t, deployPath(t, "prometheus", "tests"), nil, promtool, append([]string{"test", "rules"}, files...)...)
	require.True(t, ok, out)
	assert.Equal(t, 2, strings.Count(out, "SUCCESS"), out)
}

// TestRuleUnitTestsCoverEveryAlert holds the unit tests to their promise:
// each alert of each service has a case where it fires and one where it
// does not.
func TestRuleUnitTestsCoverEveryAlert(t *testing.T) {
	all := alerts(t)
	require.Len(t, all, 9, "4 of the payment service, 5 of the deployment service")
	fires, quiet := map[string]bool{}, map[string]bool{}
	files, err := filepath.Glob(deployPath(t, "prometheus", "tests", "*.yml"))
	require.NoError(t, err)
	for _, f := range files {
		var rt ruleTests
		readYAML(t, f, &rt)
		for _, rf := range rt.RuleFiles {
			_, err := os.Stat(filepath.Join(filepath.Dir(f), rf))
			require.NoError(t, err, "%s tests a rule file that exists", filepath.Base(f))
		}
		for _, tc := range rt.Tests {
			for _, a := range tc.AlertRuleTest {
				require.Contains(t, all, a.Alertname, "%s tests an alert the rules have", filepath.Base(f))
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	for a := range all {
		assert.True(t, fires[a], "no unit test where %s fires", a)
		assert.True(t, quiet[a], "no unit test where %s stays quiet", a)
	}
}

// TestRuleUnitTestsCanFail runs the unit tests against rules whose every
// expression is replaced, once by one that never fires and once by one
// that always does: both must fail, or the tests prove nothing.
func TestRuleUnitTestsCanFail(t *testing.T) {
	promtool := tool(t, "prometheus", "promtool")
	for _, tc := range []struct{ name, expr string }{{"never fires", "vector(1) < 0"}, {"always fires", "vector(1)"}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(dir, "rules"), 0o755))
			require.NoError(t, os.Mkdir(filepath.Join(dir, "tests"), 0o755))
			rules, err := filepath.Glob(deployPath(t, "prometheus", "rules", "*.yml"))
			require.NoError(t, err)
			for _, f := range rules {
				b, err := os.ReadFile(f)
				require.NoError(t, err)
				changed := regexp.MustCompile(`(?m)^(\s+expr: ).*$`).ReplaceAllString(string(b), `${1}"`+tc.expr+`"`)
				require.NotEqual(t, string(b), changed)
				require.NoError(t, os.WriteFile(filepath.Join(dir, "rules", filepath.Base(f)), []byte(changed), 0o644))
			}
			tests, err := filepath.Glob(deployPath(t, "prometheus", "tests", "*.yml"))
			require.NoError(t, err)
			for _, f := range tests {
				b, err := os.ReadFile(f)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(dir, "tests", filepath.Base(f)), b, 0o644))
				out, ok := runTool(t, filepath.Join(dir, "tests"), nil, promtool, "test", "rules", filepath.Base(f))
				assert.False(t, ok, "%s passed with every expression %q:\n%s", filepath.Base(f), tc.expr, out)
				assert.Contains(t, out, "FAILED")
			}
		})
	}
}

// TestRulesMatchTheServices regenerates the rule files from the services'
// -print-rules: the committed ones must be what the services print (make
// deploy-rules writes them).
func TestRulesMatchTheServices(t *testing.T) {
	for _, svc := range []string{"payment", "deployment"} {
		t.Run(svc, func(t *testing.T) {
			printed, stderr, err := goRun(t, svc, "-print-rules")
			require.NoError(t, err, stderr)
			committed, err := os.ReadFile(deployPath(t, "prometheus", "rules", svc+".yml"))
			require.NoError(t, err)
			if line, p, kept := firstDiff(printed, string(committed)); line > 0 {
				t.Fatalf("deploy/prometheus/rules/%s.yml differs from what go run ./examples/%s -print-rules prints; run make deploy-rules\nline %d printed: %q\nline %d committed: %q",
					svc, svc, line, p, line, kept)
			}
		})
	}
}

// firstDiff returns the first line (from 1) where a and b differ, with
// that line of each; 0 when they are equal.
func firstDiff(a, b string) (int, string, string) {
	if a == b {
		return 0, "", ""
	}
	la, lb := strings.SplitAfter(a, "\n"), strings.SplitAfter(b, "\n")
	for i := range max(len(la), len(lb)) {
		x, y := "", ""
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return i + 1, x, y
		}
	}
	return 0, "", "" // unreachable: a != b differ in some line
}

func TestFirstDiff(t *testing.T) {
	line, a, b := firstDiff("a\nb\nc\n", "a\nx\nc\n")
	assert.Equal(t, 2, line)
	assert.Equal(t, "b\n", a)
	assert.Equal(t, "x\n", b)
	line, _, b = firstDiff("a\n", "a\nmore\n")
	assert.Equal(t, 2, line)
	assert.Equal(t, "more\n", b)
	line, _, _ = firstDiff("same", "same")
	assert.Zero(t, line)
}

func TestAmtoolChecksTheConfig(t *testing.T) {
	amtool := tool(t, "prometheus-alertmanager", "amtool")
	dir := deployPath(t, "alertmanager")
	out, ok := runTool(t, dir, nil, amtool, "check-config", "alertmanager.yml")
	require.True(t, ok, out)
	assert.Contains(t, out, "SUCCESS")

	// A broken configuration is refused: the check has teeth.
	bad := filepath.Join(t.TempDir(), "alertmanager.yml")
	b, err := os.ReadFile(filepath.Join(dir, "alertmanager.yml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bad, bytes.Replace(b, []byte("receiver: pager"), []byte("receiver: pagr"), 1), 0o644))
	out, ok = runTool(t, dir, nil, amtool, "check-config", bad)
	assert.False(t, ok, out)
	assert.Contains(t, out, "pagr")
}

// TestAlertsRouteBySeverity asks amtool where each alert of the rules goes:
// pages to the pager, tickets to the ticket queue.
func TestAlertsRouteBySeverity(t *testing.T) {
	amtool := tool(t, "prometheus-alertmanager", "amtool")
	cfg := deployPath(t, "alertmanager", "alertmanager.yml")
	want := map[string]string{"page": "pager", "ticket": "tickets"}
	for alert, severity := range alerts(t) {
		receiver, ok := want[severity]
		require.True(t, ok, "%s has severity %q, neither page nor ticket", alert, severity)
		out, ok := runTool(t, "", nil, amtool, "config", "routes", "test", "--config.file="+cfg,
			"--verify.receivers="+receiver, "alertname="+alert, "severity="+severity)
		assert.True(t, ok, "%s (%s) does not go to %s: %s", alert, severity, receiver, out)
	}
	// And the check can fail: a page does not go to the tickets.
	out, ok := runTool(t, "", nil, amtool, "config", "routes", "test", "--config.file="+cfg,
		"--verify.receivers=tickets", "alertname=PaymentGatewayBreakerOpen", "severity=page")
	assert.False(t, ok, out)
}

func TestNATSConfig(t *testing.T) {
	natsServer := tool(t, "nats-server", "nats-server")
	conf := deployPath(t, "nats", "nats.conf")
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		out, ok := runTool(t, "", []string{"SERVER_NAME=" + n}, natsServer, "-t", "-c", conf)
		assert.True(t, ok, out)
	}
	// Each node's name comes from its environment; without it the file
	// is refused.
	out, ok := runTool(t, "", []string{"SERVER_NAME="}, natsServer, "-t", "-c", conf)
	if ok {
		// An empty variable resolves; an unset one does not.
		cmd := exec.Command(natsServer, "-t", "-c", conf)
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "SERVER_NAME=") })
		b, err := cmd.CombinedOutput()
		out, ok = string(b), err == nil
	}
	assert.False(t, ok, out)
	assert.Contains(t, out, "SERVER_NAME")
}

// promConfig is the part of prometheus.yml the tests read.
type promConfig struct {
	RuleFiles []string `json:"rule_files"`
	Alerting  struct {
		Alertmanagers []struct {
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"alertmanagers"`
	} `json:"alerting"`
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		StaticConfigs []struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

// TestStackFilesAgree checks that the Prometheus, Alertmanager and NATS
// configurations name the Compose stack's services on the ports they
// serve, and that Prometheus sees its rules where the stack mounts them.
func TestStackFilesAgree(t *testing.T) {
	p, err := LoadCompose(context.Background(), deployPath(t, "compose.yaml"))
	require.NoError(t, err)
	hosts := map[string]string{} // host name → service
	for name, s := range p.Services {
		hosts[name] = name
		if s.Hostname != "" {
			hosts[s.Hostname] = name
		}
	}
	servicePort := func(service string) string {
		if v := p.Services[service].Environment["ADDR"]; v != nil {
			return strings.TrimPrefix(*v, ":")
		}
		return ""
	}
	var pc promConfig
	readYAML(t, deployPath(t, "prometheus", "prometheus.yml"), &pc)
	jobs := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		jobs[sc.JobName] = true
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, ok := strings.Cut(target, ":")
				require.True(t, ok, target)
				if host == "localhost" {
					continue
				}
				service, known := hosts[host]
				if !assert.True(t, known, "job %s scrapes %s, which is no service of the stack", sc.JobName, target) {
					continue
				}
				if want := servicePort(service); want != "" {
					assert.Equal(t, want, port, "job %s scrapes %s on another port than it listens on", sc.JobName, target)
				}
			}
		}
	}
	for _, job := range []string{"payment", "deployment", "nats"} {
		assert.True(t, jobs[job], "no scrape job %s", job)
	}
	for _, am := range pc.Alerting.Alertmanagers {
		for _, st := range am.StaticConfigs {
			for _, target := range st.Targets {
				host, _, _ := strings.Cut(target, ":")
				assert.Contains(t, hosts, host, "alerts go to %s, which is no service of the stack", target)
			}
		}
	}
	// The rule files, relative to the configuration, lie in a directory
	// the stack mounts into Prometheus.
	prom := p.Services["prometheus"]
	mounts := map[string]string{}
	for _, v := range prom.Volumes {
		mounts[v.Target] = v.Source
	}
	cfgDir := ""
	for _, v := range prom.Volumes {
		if strings.HasSuffix(v.Target, "/prometheus.yml") {
			cfgDir = path.Dir(v.Target)
		}
	}
	require.NotEmpty(t, cfgDir, "prometheus.yml is mounted")
	for _, rf := range pc.RuleFiles {
		dir := path.Dir(path.Join(cfgDir, rf))
		src, ok := mounts[dir]
		if assert.True(t, ok, "rule_files %s: nothing is mounted at %s", rf, dir) {
			assert.Equal(t, deployPath(t, "prometheus", "rules"), src)
		}
	}
	// Alertmanager's webhooks reach a service of the stack.
	am, err := os.ReadFile(deployPath(t, "alertmanager", "alertmanager.yml"))
	require.NoError(t, err)
	urls := regexp.MustCompile(`url: http://([^:/]+)`).FindAllStringSubmatch(string(am), -1)
	require.NotEmpty(t, urls)
	for _, u := range urls {
		assert.Contains(t, hosts, u[1], "a webhook goes to %s, which is no service of the stack", u[1])
	}
	// The NATS routes name the cluster's nodes, on the cluster port.
	conf, err := os.ReadFile(deployPath(t, "nats", "nats.conf"))
	require.NoError(t, err)
	routes := regexp.MustCompile(`nats-route://([^:\s]+):(\d+)`).FindAllStringSubmatch(string(conf), -1)
	require.Len(t, routes, 3)
	for _, r := range routes {
		service, ok := hosts[r[1]]
		if assert.True(t, ok, "route to %s, which is no service of the stack", r[1]) {
			assert.True(t, strings.HasPrefix(p.Services[service].Image, "nats:"), "route to %s, which is not a NATS node", r[1])
		}
		assert.Contains(t, string(conf), fmt.Sprintf("port: %s", r[2]), "the routes use the cluster's port")
	}
}
