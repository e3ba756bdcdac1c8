package check

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
)

// k8sManifests returns the named files of deploy/k8s as one stream, in
// that order, with each replacement made once in it, decoded.
func k8sManifests(t *testing.T, files []string, replace ...string) []Manifest {
	t.Helper()
	var src strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(deployPath(t, "k8s", f))
		require.NoError(t, err)
		src.WriteString("\n---\n")
		src.Write(b)
	}
	s := src.String()
	for i := 0; i+1 < len(replace); i += 2 {
		changed := strings.Replace(s, replace[i], replace[i+1], 1)
		require.NotEqual(t, s, changed, "the case changes the files: %q", replace[i])
		s = changed
	}
	ms, err := DecodeManifests(strings.NewReader(s))
	require.NoError(t, err)
	return ms
}

// The payment service's manifests with the namespace's, and every file.
var (
	paymentFiles = []string{"namespace.yaml", "payment.yaml", "secrets.yaml"}
	allFiles     = []string{"namespace.yaml", "payment.yaml", "deployment.yaml", "secrets.yaml"}
)

const (
	// The namespace's default-deny policy, as namespace.yaml has it.
	defaultDeny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny-ingress\n  namespace: taikit\n  labels:\n    app.kubernetes.io/part-of: taikit\nspec:\n  podSelector: {}\n  policyTypes:\n    - Ingress\n"
	// payment's policy: whom its pods take connections from, and where
	// they may connect.
	paymentPolicySelector = "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: payment\n  policyTypes:\n"
	paymentIngressPort    = "      ports:\n        - port: http\n          protocol: TCP\n"
	paymentDNS            = "    - ports:\n        - port: 53\n          protocol: UDP\n        - port: 53\n          protocol: TCP\n"
	paymentEgressTo       = "    - to:\n        - podSelector: {}\n      ports:\n        - port: 4222"
)

// TestCheckManifestsHoldsTheNetworkPolicies shows each check of the
// NetworkPolicies failing on a broken copy of the manifests: a policy must
// select pods of the Deployments, open only ports their containers
// declare, every service's pods must be under a default-deny ingress
// policy with their Services' and scrape ports open to the other
// namespaces, and pods whose egress is restricted must be let reach every
// URL their variables name, and the DNS that resolves them.
func TestCheckManifestsHoldsTheNetworkPolicies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   []string
		replace []string
		want    string
	}{
		{"a policy that selects no pod", paymentFiles,
			[]string{paymentPolicySelector, strings.Replace(paymentPolicySelector, "name: payment", "name: paymnet", 1)},
			"NetworkPolicy taikit/payment: its podSelector selects no Deployment's pods"},
		{"a podSelector the API refuses", paymentFiles,
			[]string{paymentPolicySelector, "  podSelector:\n    matchExpressions: [{key: app.kubernetes.io/name, operator: Bogus}]\n  policyTypes:\n"},
			"NetworkPolicy taikit/payment: podSelector: "},
		{"an ingress port name not declared", paymentFiles,
			[]string{paymentIngressPort, strings.Replace(paymentIngressPort, "port: http", "port: metrics", 1)},
			"NetworkPolicy taikit/payment: ingress port metrics/TCP is not a port Deployment payment's containers declare"},
		{"an ingress port number not declared", paymentFiles,
			[]string{paymentIngressPort, strings.Replace(paymentIngressPort, "port: http", "port: 3002", 1)},
			"NetworkPolicy taikit/payment: ingress port 3002/TCP is not a port Deployment payment's containers declare"},
		{"an ingress port of another protocol", paymentFiles,
			[]string{paymentIngressPort, strings.Replace(paymentIngressPort, "protocol: TCP", "protocol: UDP", 1)},
			"NetworkPolicy taikit/payment: ingress port http/UDP is not a port Deployment payment's containers declare"},
		{"an ingress port range that misses", paymentFiles,
			[]string{paymentIngressPort, "      ports:\n        - port: 3002\n          endPort: 3010\n          protocol: TCP\n"},
			"NetworkPolicy taikit/payment: ingress port 3002-3010/TCP is not a port Deployment payment's containers declare"},
		{"no default-deny", paymentFiles, []string{defaultDeny, ""},
			"Deployment taikit/payment: no default-deny ingress NetworkPolicy (policyTypes Ingress, no ingress rule) selects its pods"},
		{"a default-deny of egress", paymentFiles,
			[]string{defaultDeny, strings.Replace(defaultDeny, "    - Ingress\n", "    - Egress\n", 1)},
			"Deployment taikit/payment: no default-deny ingress NetworkPolicy (policyTypes Ingress, no ingress rule) selects its pods"},
		{"a default-deny of other pods", paymentFiles,
			[]string{defaultDeny, strings.Replace(defaultDeny, "  podSelector: {}\n", "  podSelector: {matchLabels: {app.kubernetes.io/name: nats}}\n", 1)},
			"Deployment taikit/payment: no default-deny ingress NetworkPolicy (policyTypes Ingress, no ingress rule) selects its pods"},
		{"the Service's port shut to other namespaces", paymentFiles,
			[]string{"        - namespaceSelector: {}\n", "        - podSelector: {}\n"},
			"Service taikit/payment: its port http reaches Deployment payment's pods on http (3001/TCP), which no NetworkPolicy opens to pods of other namespaces"},
		{"the scrape port shut to other namespaces", paymentFiles,
			[]string{"        - namespaceSelector: {}\n", "        - podSelector: {}\n"},
			"Deployment taikit/payment: the port 3001 a pod-discovering Prometheus scrapes (prometheus.io/port) is open to no pod of another namespace"},
		{"a policy of the other service's pods", allFiles,
			[]string{paymentPolicySelector, strings.Replace(paymentPolicySelector, "name: payment", "name: deployment", 1)},
			"Service taikit/payment: its port http reaches Deployment payment's pods on http (3001/TCP), which no NetworkPolicy opens to pods of other namespaces"},
		{"a URL's port not let out", paymentFiles,
			[]string{"redis.taikit.svc:6379/0", "redis.taikit.svc:6380/0"},
			"Deployment taikit/payment container payment: REDIS_URL (from ConfigMap payment-config) names redis.taikit.svc:6380, but no egress rule of a NetworkPolicy of its pods lets TCP port 6380 out to namespace taikit"},
		{"an egress port mistyped", paymentFiles,
			[]string{"        - port: 6379", "        - port: 6397"},
			"REDIS_URL (from ConfigMap payment-config) names redis.taikit.svc:6379, but no egress rule of a NetworkPolicy of its pods lets TCP port 6379 out to namespace taikit"},
		{"NATS in a namespace not let out to", paymentFiles,
			[]string{"nats://nats.taikit.svc:4222", "nats://nats.messaging.svc:4222"},
			"NATS_URL (from ConfigMap payment-config) names nats.messaging.svc:4222, but no egress rule of a NetworkPolicy of its pods lets TCP port 4222 out to namespace messaging"},
		{"a URL beyond the cluster", paymentFiles,
			[]string{"http://jaeger-collector.taikit.svc:4318", "https://otlp.example.com"},
			"OTEL_EXPORTER_OTLP_ENDPOINT (from ConfigMap payment-config) names otlp.example.com:443, but no egress rule of a NetworkPolicy of its pods lets TCP port 443 out beyond the cluster"},
		{"a URL of env", paymentFiles,
			[]string{"            - name: DATA_DIR\n", "            - name: ALERTMANAGER_URL\n              value: http://alertmanager.monitoring.svc:9093\n            - name: DATA_DIR\n"},
			"container payment: ALERTMANAGER_URL names alertmanager.monitoring.svc:9093, but no egress rule of a NetworkPolicy of its pods lets TCP port 9093 out to namespace monitoring"},
		{"a name either a Service's or beyond the cluster", paymentFiles,
			[]string{"http://jaeger-collector.taikit.svc:4318", "http://collector.tracing:4318"},
			"OTEL_EXPORTER_OTLP_ENDPOINT (from ConfigMap payment-config) names collector.tracing:4318, but no egress rule of a NetworkPolicy of its pods lets TCP port 4318 out to namespace tracing or beyond the cluster"},
		{"no DNS", paymentFiles, []string{paymentDNS, ""},
			"Deployment taikit/payment: no egress rule of a NetworkPolicy of its pods lets DNS (UDP port 53) out, and NATS_URL, OTEL_EXPORTER_OTLP_ENDPOINT and REDIS_URL name hosts by name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckManifests(k8sManifests(t, tc.files, tc.replace...))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestCheckManifestsAcceptsNetworkPoliciesThatLetThrough holds the checks
// of the NetworkPolicies to what a policy lets through: a port by name or
// number, every port, a range; egress to a URL of the scheme's port, to a
// list of NATS servers, to any destination, or to another namespace by
// its name's label; and pods whose egress no policy restricts.
func TestCheckManifestsAcceptsNetworkPoliciesThatLetThrough(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace []string
	}{
		{"an ingress port by number", []string{paymentIngressPort, strings.Replace(paymentIngressPort, "port: http", "port: 3001", 1)}},
		{"an ingress port range", []string{paymentIngressPort, "      ports:\n        - port: 3000\n          endPort: 3010\n          protocol: TCP\n"}},
		{"ingress on every port", []string{paymentIngressPort, ""}},
		{"ingress from anywhere", []string{"    - from:\n        - namespaceSelector: {}\n" + paymentIngressPort, "    - ports:\n        - port: http\n          protocol: TCP\n"}},
		{"a default-deny of the services' pods", []string{defaultDeny, strings.Replace(defaultDeny, "  podSelector: {}\n", "  podSelector: {matchLabels: {app.kubernetes.io/part-of: taikit}}\n", 1)}},
		{"a URL of the scheme's port", []string{"redis.taikit.svc:6379/0", "redis.taikit.svc/0"}},
		{"a list of NATS servers", []string{"nats://nats.taikit.svc:4222", "nats://nats-0.nats.taikit.svc.cluster.local:4222, nats://nats-1.nats.taikit.svc.cluster.local:4222"}},
		{"a Service of the namespace by its short name", []string{"nats://nats.taikit.svc:4222", "nats://nats:4222"}},
		{"egress to any destination", []string{paymentEgressTo, "    - ports:\n        - port: 4222"}},
		{"NATS in another namespace let out to", []string{
			"nats://nats.taikit.svc:4222", "nats://nats.messaging.svc:4222",
			paymentEgressTo, "    - to:\n        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: messaging}}\n      ports:\n        - port: 4222\n" + paymentEgressTo,
		}},
		{"egress not restricted", []string{"    - Ingress\n    - Egress\n", "    - Ingress\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, CheckManifests(k8sManifests(t, paymentFiles, tc.replace...)))
		})
	}
}

// TestNetworkPolicyDirections reads the directions a policy isolates as
// the API server does: policyTypes when given, else ingress, and egress
// too when it has egress rules.
func TestNetworkPolicyDirections(t *testing.T) {
	for _, tc := range []struct {
		types           []networkingv1.PolicyType
		egressRules     int
		ingress, egress bool
	}{
		{nil, 0, true, false},
		{nil, 1, true, true},
		{[]networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, 0, false, true},
		{[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, 1, true, false},
		{[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, 0, true, true},
	} {
		np := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{PolicyTypes: tc.types, Egress: make([]networkingv1.NetworkPolicyEgressRule, tc.egressRules)}}
		in, out := policyDirections(np)
		assert.Equal(t, tc.ingress, in, "%v with %d egress rules: ingress", tc.types, tc.egressRules)
		assert.Equal(t, tc.egress, out, "%v with %d egress rules: egress", tc.types, tc.egressRules)
	}
}
