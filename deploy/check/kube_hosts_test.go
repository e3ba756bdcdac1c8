package check

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	paymentAllowedHosts = "            - name: ALLOWED_HOSTS\n              value: \"$(POD_IP),localhost,127.0.0.1,payment,payment.taikit,payment.taikit.svc,payment.taikit.svc.cluster.local\"\n"
	paymentPodIP        = "            - name: POD_IP\n              valueFrom:\n                fieldRef:\n                  fieldPath: status.podIP\n"
	paymentAddr         = "            - name: ADDR\n              value: \":3001\"\n"
)

// TestCheckManifestsHoldsTheAllowListToTheProbes holds CheckManifests to
// the Host the services are asked for: the kubelet's HTTP probes and a
// pod-discovering Prometheus send the pod's IP as Host (a probe's own
// host or Host header in its place), and the services answer a Host their
// allow-list (ALLOWED_HOSTS, else localhost, the loopback addresses, the
// machine's name and ADDR's host) leaves out with 421: the pod is never
// ready, the liveness probe restarts it over and over, and nothing is
// scraped.
func TestCheckManifestsHoldsTheAllowListToTheProbes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace []string
		want    []string
	}{
		{"an allow-list without the pod's IP", []string{paymentAllowedHosts, "            - name: ALLOWED_HOSTS\n              value: localhost,payment.taikit.svc\n"},
			[]string{"container payment: ALLOWED_HOSTS localhost,payment.taikit.svc leaves out the pod's IP, the Host that the startup probe, the readiness probe, the liveness probe and a pod-discovering Prometheus (prometheus.io/scrape) send: the service answers 421"}},
		{"no allow-list", []string{paymentAllowedHosts, ""},
			[]string{"container payment: the default Host allow-list (no ALLOWED_HOSTS: localhost, the loopback addresses, the pod's host name and ADDR's host) leaves out the pod's IP"}},
		{"the pod's IP given after the allow-list", []string{paymentPodIP, "", paymentAllowedHosts, paymentAllowedHosts + paymentPodIP},
			[]string{`ALLOWED_HOSTS $(POD_IP),localhost,`, `leaves out the pod's IP`, "$(VAR) is expanded only in env's values, from variables given before it"}},
		{"an allow-list from the ConfigMap naming the pod's IP", []string{paymentAllowedHosts, "", paymentConfigEnd, paymentConfigEnd + "  ALLOWED_HOSTS: $(POD_IP),localhost\n"},
			[]string{"ALLOWED_HOSTS $(POD_IP),localhost (from ConfigMap payment-config) leaves out the pod's IP", "$(VAR) is expanded only in env's values"}},
		{"a probe's Host header left out", []string{"              path: /readyz\n", "              path: /readyz\n              httpHeaders: [{name: host, value: payment.example}]\n"},
			[]string{"leaves out payment.example, the Host that the readiness probe sends"}},
		{"a probe's host left out", []string{"              path: /readyz\n", "              path: /readyz\n              host: 10.0.0.7\n"},
			[]string{"leaves out 10.0.0.7, the Host that the readiness probe sends"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckManifests(paymentManifests(t, tc.replace...))
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}

	for _, tc := range []struct {
		name    string
		replace []string
	}{
		{"any Host", []string{paymentAllowedHosts, "            - name: ALLOWED_HOSTS\n              value: \"*\"\n"}},
		{"the pod's IPs", []string{"fieldPath: status.podIP\n", "fieldPath: status.podIPs\n"}},
		{"the pod's IP with its port", []string{paymentAllowedHosts, "            - name: ALLOWED_HOSTS\n              value: \"localhost, [$(POD_IP)]:3001\"\n"}},
		{"the default list with ADDR on the pod's IP", []string{paymentAllowedHosts, "", paymentAddr, "", paymentPodIP, paymentPodIP + "            - name: ADDR\n              value: $(POD_IP):3001\n"}},
		{"an allow-list from a Secret", []string{paymentAllowedHosts, "            - name: ALLOWED_HOSTS\n              valueFrom:\n                secretKeyRef: {name: payment-tokens, key: api-token}\n"}},
		{"every probe with an allowed Host header and no scrape", []string{
			paymentAllowedHosts, "            - name: ALLOWED_HOSTS\n              value: payment.taikit.svc\n",
			"        prometheus.io/scrape: \"true\"\n", "",
			"              path: /readyz\n", "              path: /readyz\n              httpHeaders: [{name: HOST, value: payment.taikit.svc}]\n",
			"              path: /healthz\n              port: http\n", "              path: /healthz\n              httpHeaders: [{name: Host, value: \"payment.taikit.svc.:3001\"}]\n              port: http\n",
			"              path: /healthz\n              port: http\n", "              path: /healthz\n              host: PAYMENT.taikit.svc\n              port: http\n",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, CheckManifests(paymentManifests(t, tc.replace...)))
		})
	}
}
