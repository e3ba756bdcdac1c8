package check

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// manifests decodes every file under deploy/k8s, in name order.
func manifests(t *testing.T) []Manifest {
	t.Helper()
	files, err := filepath.Glob(deployPath(t, "k8s", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var all []Manifest
	for _, f := range files {
		r, err := os.Open(f)
		require.NoError(t, err)
		ms, err := DecodeManifests(r)
		_ = r.Close()
		require.NoError(t, err, filepath.Base(f))
		all = append(all, ms...)
	}
	return all
}

func TestKubernetesManifests(t *testing.T) {
	ms := manifests(t)
	require.NoError(t, CheckManifests(ms))
	kinds := map[string][]string{}
	for _, m := range ms {
		kinds[m.Object.GetObjectKind().GroupVersionKind().Kind] = append(kinds[m.Object.GetObjectKind().GroupVersionKind().Kind], m.Name())
	}
	assert.ElementsMatch(t, []string{"Deployment taikit/payment", "Deployment taikit/deployment"}, kinds["Deployment"])
	assert.ElementsMatch(t, []string{"Service taikit/payment", "Service taikit/deployment"}, kinds["Service"])
	assert.ElementsMatch(t, []string{"PodDisruptionBudget taikit/payment", "PodDisruptionBudget taikit/deployment"}, kinds["PodDisruptionBudget"])
	assert.ElementsMatch(t, []string{"Secret taikit/payment-tokens", "Secret taikit/deployment-tokens"}, kinds["Secret"])
	assert.ElementsMatch(t, []string{"ConfigMap taikit/payment-config", "ConfigMap taikit/deployment-config"}, kinds["ConfigMap"])
	assert.Len(t, kinds["Namespace"], 1)
	assert.ElementsMatch(t, []string{"NetworkPolicy taikit/default-deny-ingress", "NetworkPolicy taikit/allow-within-namespace", "NetworkPolicy taikit/payment", "NetworkPolicy taikit/deployment"}, kinds["NetworkPolicy"])

	for _, m := range ms {
		d, ok := m.Object.(*appsv1.Deployment)
		if !ok {
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		port := map[string]int32{"payment": 3001, "deployment": 3002}[d.Name]
		assert.Equal(t, port, c.Ports[0].ContainerPort, d.Name)
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		assert.Equal(t, ":"+strconv.Itoa(int(port)), env["ADDR"].Value, "%s listens beyond loopback, so it needs its token", d.Name)
		assert.Equal(t, "/run/secrets/taikit/api-token", env["API_TOKEN_FILE"].Value)
		assert.Equal(t, "metadata.name", env["INSTANCE"].ValueFrom.FieldRef.FieldPath, "each replica's name is its pod's")
		assert.True(t, strings.HasPrefix(env["ALLOWED_HOSTS"].Value, "$(POD_IP),"), "the kubelet's probes come with the pod's IP as Host")
		require.NotNil(t, d.Spec.Template.Spec.TerminationGracePeriodSeconds)
		assert.Greater(t, *d.Spec.Template.Spec.TerminationGracePeriodSeconds, int64(30), "a graceful stop takes longer than 30s (TestStopGraceCoversTheGracefulStop)")
	}
}

func TestDecodeManifestsIsStrict(t *testing.T) {
	orig, err := os.ReadFile(deployPath(t, "k8s", "payment.yaml"))
	require.NoError(t, err)
	for _, tc := range []struct{ name, old, new, want string }{
		{"an unknown field", "  replicas: 2\n", "  replicas: 2\n  replicaz: 2\n", `unknown field "spec.replicaz"`},
		{"a misspelt nested field", "            readOnlyRootFilesystem: true", "            readOnlyRootFileSystem: true", "readOnlyRootFileSystem"},
		{"a duplicate field", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", "replicas"},
		{"a wrong type", "  replicas: 2\n", "  replicas: two\n", "replicas"},
		{"an unknown kind", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgett", "PodDisruptionBudgett"},
		{"a quantity that is not one", "memory: 512Mi", "memory: 512MB of it", "quantities must match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(string(orig), tc.old, tc.new, 1)
			require.True(t, src != string(orig), "the case changes the file")
			_, err := DecodeManifests(strings.NewReader(src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestCheckManifestsFindsEachProblem(t *testing.T) {
	orig, err := os.ReadFile(deployPath(t, "k8s", "payment.yaml"))
	require.NoError(t, err)
	secrets, err := os.ReadFile(deployPath(t, "k8s", "secrets.yaml"))
	require.NoError(t, err)
	// The namespace's default-deny NetworkPolicy, which the pods must be
	// under.
	namespace, err := os.ReadFile(deployPath(t, "k8s", "namespace.yaml"))
	require.NoError(t, err)
	secrets = append(append(secrets, "\n---\n"...), namespace...)
	for _, tc := range []struct{ name, old, new, want string }{
		{"one replica", "  replicas: 2\n", "  replicas: 1\n", "fewer than 2 replicas"},
		{"no spread across nodes", "          topologyKey: kubernetes.io/hostname\n", "          topologyKey: topology.kubernetes.io/zone\n", "nothing spreads its replicas across nodes"},
		{"a spread that selects other pods", "          labelSelector:\n            matchLabels:\n              app.kubernetes.io/name: payment\n", "          labelSelector:\n            matchLabels:\n              app.kubernetes.io/name: paymnet\n", "nothing spreads its replicas across nodes"},
		{"root", "        runAsUser: 65532\n", "        runAsUser: 0\n", "runs as user 0"},
		{"not non-root", "        runAsNonRoot: true\n", "", "runAsNonRoot is not true"},
		{"a writable root", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "the root filesystem is not read-only"},
		{"escalation", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation is not false"},
		{"no memory limit", "              memory: 512Mi\n", "", "no memory limit"},
		{"a request above its limit", "              cpu: 250m\n", "              cpu: \"4\"\n", "cpu request 4 is above its limit 2"},
		{"readiness on the wrong path", "              path: /readyz", "              path: /healthz", "the readiness probe asks /healthz, not /readyz"},
		{"no liveness probe", "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: http\n            periodSeconds: 10\n            timeoutSeconds: 3\n            failureThreshold: 3\n", "", "no liveness probe"},
		{"a probe on a port not declared", "              path: /readyz\n              port: http", "              path: /readyz\n              port: metrics", "the readiness probe's port metrics is not a port the container declares"},
		{"a Service that selects nothing", "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: payment", "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: paymnet", "Service taikit/payment: its selector map[app.kubernetes.io/name:paymnet] selects no Deployment's pods"},
		{"a Service on a port not declared", "      targetPort: http", "      targetPort: 8080", "port http targets 8080"},
		{"a PDB that selects nothing", "spec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: payment", "spec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: paymnet", "PodDisruptionBudget taikit/payment: its selector selects no Deployment's pods"},
		{"a PDB that blocks every drain", "  minAvailable: 1\n", "  minAvailable: 2\n", "leaves no disruption possible"},
		{"a PDB of 100%", "  minAvailable: 1\n", "  minAvailable: 100%\n", "leaves no disruption possible"},
		{"a missing ConfigMap", "                name: payment-config", "                name: payment-conf", "envFrom ConfigMap payment-conf is not among the manifests"},
		{"a missing Secret", "            secretName: payment-tokens", "            secretName: payment-token", "Secret taikit/payment-token is not among the manifests"},
		{"a missing Secret key", "              - key: audit-key\n", "              - key: audit-keys\n", "Secret payment-tokens has no key audit-keys"},
		{"a token file not mounted", "              value: /run/secrets/taikit/api-token", "              value: /run/secrets/api-token", "env API_TOKEN_FILE=/run/secrets/api-token names no file of a mounted volume"},
		{"a ConfigMap volume of a missing key", "          emptyDir:\n            sizeLimit: 1Gi", "          configMap:\n            name: payment-config\n            items: [{key: NOPE, path: x}]", "ConfigMap payment-config has no key NOPE"},
		{"an emptyDir without a bound", "          emptyDir:\n            sizeLimit: 1Gi", "          emptyDir: {}", "emptyDir data has no sizeLimit"},
		{"an emptyDir the scheduler does not count", "              ephemeral-storage: 1152Mi\n", "", "its emptyDir volumes may hold 1Gi, but its containers request 0 of ephemeral-storage"},
		{"a mount of no volume", "            - name: data\n              mountPath: /data", "            - name: date\n              mountPath: /data", "mounts volume date, which the pod does not have"},
		{"a startup probe on a path not served", "          startupProbe:\n            httpGet:\n              path: /healthz", "          startupProbe:\n            httpGet:\n              path: /health", "the startup probe asks /health, not /healthz"},
		{"a startup probe on a port not declared", "              path: /healthz\n              port: http\n            periodSeconds: 2", "              path: /healthz\n              port: 8080\n            periodSeconds: 2", "the startup probe's port 8080 is not a port the container declares"},
		{"a scrape annotation on a port not declared", `prometheus.io/port: "3001"`, `prometheus.io/port: "9090"`, `annotation prometheus.io/port "9090" is not a port the container declares`},
		{"a scrape annotation on a path not served", "prometheus.io/path: /metrics", "prometheus.io/path: /metric", `annotation prometheus.io/path "/metric" is not /metrics`},
		{"a data dir on the read-only root", "              value: /data\n", "              value: /var/lib/payment\n", "env DATA_DIR=/var/lib/payment lies on no writable volume, and the root filesystem is read-only"},
		{"a data dir on a Secret", "              value: /data\n", "              value: /run/secrets/taikit/data\n", "env DATA_DIR=/run/secrets/taikit/data lies on no writable volume"},
		{"no data dir", "            - name: DATA_DIR\n              value: /data\n", "", "no DATA_DIR, and the root filesystem is read-only"},
		{"GOMEMLIMIT at the memory limit", "              value: 460MiB", "              value: 512MiB", "GOMEMLIMIT 512MiB is not below the memory limit 512Mi"},
		{"GOMEMLIMIT above the memory limit", "              value: 460MiB", "              value: 1GiB", "GOMEMLIMIT 1GiB is not below the memory limit 512Mi"},
		{"GOMEMLIMIT in another syntax", "              value: 460MiB", "              value: 460Mi", `GOMEMLIMIT "460Mi" is not a byte count the Go runtime reads`},
		{"a selector that misses its pods", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: payment\n  strategy", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: payments\n  strategy", "its selector does not select its own pods' labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(string(orig), tc.old, tc.new, 1)
			require.True(t, src != string(orig), "the case changes the file")
			ms, err := DecodeManifests(strings.NewReader(src + "\n---\n" + string(secrets)))
			require.NoError(t, err)
			err = CheckManifests(ms)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// Decoded types are the API's.
	ms, err := DecodeManifests(strings.NewReader(string(orig)))
	require.NoError(t, err)
	_, isPDB := ms[len(ms)-1].Object.(*policyv1.PodDisruptionBudget)
	assert.True(t, isPDB)
	assert.Equal(t, 1, ms[0].Doc)
}

func TestIntOrPercent(t *testing.T) {
	for _, tc := range []struct {
		v     string
		total int
		want  int
		bad   bool
	}{
		{"1", 2, 1, false}, {"50%", 3, 2, false}, {"100%", 2, 2, false}, {"0%", 5, 0, false},
		{"x", 2, 0, true}, {"-1", 2, 0, true}, {"101%", 2, 0, true}, {"%", 2, 0, true},
	} {
		got, err := intOrPercent(tc.v, tc.total)
		if tc.bad {
			assert.Error(t, err, tc.v)
			continue
		}
		require.NoError(t, err, tc.v)
		assert.Equal(t, tc.want, got, tc.v)
	}
}

func TestGoByteCount(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want int64
		ok   bool
	}{
		{"460MiB", 460 << 20, true}, {"1GiB", 1 << 30, true}, {"2KiB", 2048, true}, {"3TiB", 3 << 40, true},
		{"123", 123, true}, {"123B", 123, true}, {"0", 0, true}, {"+5MiB", 5 << 20, true},
		{"off", math.MaxInt64, true}, {"8388607TiB", 8388607 << 40, true},
		{"", 0, false}, {"B", 0, false}, {"MiB", 0, false}, {"460Mi", 0, false}, {"460M", 0, false},
		{"460mib", 0, false}, {"1.5GiB", 0, false}, {"-1MiB", 0, false}, {"8388608TiB", 0, false},
		{"9223372036854775808", 0, false}, {" 460MiB", 0, false}, {"Off", 0, false},
	} {
		got, ok := goByteCount(tc.v)
		assert.Equal(t, tc.ok, ok, "%q", tc.v)
		if tc.ok {
			assert.Equal(t, tc.want, got, "%q", tc.v)
		}
	}
}

func TestMetaSelectorRefusesNoneAndEmpty(t *testing.T) {
	_, err := metaSelector(nil)
	assert.ErrorContains(t, err, "missing")
	_, err = metaSelector(&metav1.LabelSelector{})
	assert.ErrorContains(t, err, "would select every pod")
	_, err = metaSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}})
	assert.Error(t, err)
}

// TestCheckManifestsScrapePortBesideAnUnnamedPort holds the scrape
// annotation's port to the ports declared even when one of them has no
// name: an unnamed port is no match for every number.
func TestCheckManifestsScrapePortBesideAnUnnamedPort(t *testing.T) {
	orig, err := os.ReadFile(deployPath(t, "k8s", "payment.yaml"))
	require.NoError(t, err)
	secrets, err := os.ReadFile(deployPath(t, "k8s", "secrets.yaml"))
	require.NoError(t, err)
	// The namespace's default-deny NetworkPolicy, which the pods must be
	// under.
	namespace, err := os.ReadFile(deployPath(t, "k8s", "namespace.yaml"))
	require.NoError(t, err)
	secrets = append(append(secrets, "\n---\n"...), namespace...)
	src := string(orig)
	for _, r := range []struct{ old, new string }{
		{"              containerPort: 3001\n              protocol: TCP\n", "              containerPort: 3001\n              protocol: TCP\n            - containerPort: 6060\n              protocol: TCP\n"},
		{`prometheus.io/port: "3001"`, `prometheus.io/port: "9090"`},
	} {
		changed := strings.Replace(src, r.old, r.new, 1)
		require.NotEqual(t, src, changed, "the case changes the file")
		src = changed
	}
	ms, err := DecodeManifests(strings.NewReader(src + "\n---\n" + string(secrets)))
	require.NoError(t, err)
	err = CheckManifests(ms)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `annotation prometheus.io/port "9090" is not a port the container declares`)
}

// paymentManifests returns deploy/k8s/payment.yaml with each replacement
// made once, and the Secrets, decoded.
func paymentManifests(t *testing.T, replace ...string) []Manifest {
	t.Helper()
	orig, err := os.ReadFile(deployPath(t, "k8s", "payment.yaml"))
	require.NoError(t, err)
	secrets, err := os.ReadFile(deployPath(t, "k8s", "secrets.yaml"))
	require.NoError(t, err)
	// The namespace's default-deny NetworkPolicy, which the pods must be
	// under.
	namespace, err := os.ReadFile(deployPath(t, "k8s", "namespace.yaml"))
	require.NoError(t, err)
	secrets = append(append(secrets, "\n---\n"...), namespace...)
	src := string(orig)
	for i := 0; i+1 < len(replace); i += 2 {
		changed := strings.Replace(src, replace[i], replace[i+1], 1)
		require.NotEqual(t, src, changed, "the case changes the file: %q", replace[i])
		src = changed
	}
	ms, err := DecodeManifests(strings.NewReader(src + "\n---\n" + string(secrets)))
	require.NoError(t, err)
	return ms
}

const (
	paymentConfigEnd = "  LOG_LEVEL: info\n"
	paymentDataDir   = "            - name: DATA_DIR\n              value: /data\n"
	paymentMemLimit  = "            - name: GOMEMLIMIT\n              value: 460MiB\n"
	paymentItems     = "            items:\n              - key: api-token\n                path: api-token\n              - key: admin-token\n                path: admin-token\n              - key: audit-key\n                path: audit-key\n"
)

// TestCheckManifestsAcceptsWhatTheKubeletGives holds CheckManifests to
// what the kubelet gives a container: a Secret volume without items holds
// a file for every key, a variable may come from a ConfigMap by envFrom
// (a later source's key winning, env over them all), and an empty
// GOMEMLIMIT is one the Go runtime ignores.
func TestCheckManifestsAcceptsWhatTheKubeletGives(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace []string
	}{
		{"a Secret volume without items", []string{paymentItems, ""}},
		{"DATA_DIR from the ConfigMap", []string{paymentDataDir, "", paymentConfigEnd, paymentConfigEnd + "  DATA_DIR: /data\n"}},
		{"DATA_DIR of env over the ConfigMap's", []string{paymentConfigEnd, paymentConfigEnd + "  DATA_DIR: /var/lib/payment\n"}},
		{"an empty GOMEMLIMIT", []string{"              value: 460MiB", `              value: ""`}},
		{"GOMEMLIMIT from the ConfigMap", []string{paymentMemLimit, "", paymentConfigEnd, paymentConfigEnd + "  GOMEMLIMIT: 460MiB\n"}},
		{"DATA_DIR from a Secret", []string{paymentDataDir, "", "            - configMapRef:\n                name: payment-config\n", "            - configMapRef:\n                name: payment-config\n            - secretRef:\n                name: payment-env\n", paymentConfigEnd, paymentConfigEnd + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: payment-env, namespace: taikit}\nstringData: {DATA_DIR: /data}\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, CheckManifests(paymentManifests(t, tc.replace...)))
		})
	}
}

// TestCheckManifestsReadsTheConfigMapsAndSecretsGiven holds the checks of
// the variables to the values a ConfigMap gives them as well as env, and
// the token variables to a Secret: a token in env or in a ConfigMap is
// plain text anyone who reads the manifests or the pod holds.
func TestCheckManifestsReadsTheConfigMapsAndSecretsGiven(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace []string
		want    string
	}{
		{"GOMEMLIMIT from the ConfigMap at the limit", []string{paymentMemLimit, "", paymentConfigEnd, paymentConfigEnd + "  GOMEMLIMIT: 512MiB\n"}, "GOMEMLIMIT 512MiB is not below the memory limit 512Mi"},
		{"GOMEMLIMIT from the ConfigMap unread", []string{paymentMemLimit, "", paymentConfigEnd, paymentConfigEnd + "  GOMEMLIMIT: 460Mi\n"}, `GOMEMLIMIT "460Mi" is not a byte count the Go runtime reads`},
		{"a prefixed GOMEMLIMIT from the ConfigMap", []string{paymentMemLimit, "", paymentConfigEnd, paymentConfigEnd + "  MEMLIMIT: 1GiB\n", "            - configMapRef:\n                name: payment-config\n", "            - configMapRef:\n                name: payment-config\n              prefix: GO\n"}, "GOMEMLIMIT 1GiB is not below the memory limit 512Mi"},
		{"GOMEMLIMIT of a ConfigMap key", []string{"              value: 460MiB", "              valueFrom:\n                configMapKeyRef: {name: payment-config, key: LIMIT}", paymentConfigEnd, paymentConfigEnd + "  LIMIT: 600MiB\n"}, "GOMEMLIMIT 600MiB is not below the memory limit 512Mi"},
		{"DATA_DIR from the ConfigMap on the read-only root", []string{paymentDataDir, "", paymentConfigEnd, paymentConfigEnd + "  DATA_DIR: /var/lib/payment\n"}, "DATA_DIR=/var/lib/payment lies on no writable volume"},
		{"a token file from the ConfigMap not mounted", []string{"            - name: ADMIN_TOKEN_FILE\n              value: /run/secrets/taikit/admin-token\n", "", paymentConfigEnd, paymentConfigEnd + "  ADMIN_TOKEN_FILE: /run/secrets/admin-token\n"}, "ADMIN_TOKEN_FILE=/run/secrets/admin-token names no file of a mounted volume"},
		{"a Secret volume without items and a key it lacks", []string{paymentItems, "", "value: /run/secrets/taikit/api-token", "value: /run/secrets/taikit/api-tokn"}, "API_TOKEN_FILE=/run/secrets/taikit/api-tokn names no file of a mounted volume"},
		{"a token in env", []string{paymentDataDir, paymentDataDir + "            - name: API_TOKEN\n              value: s3cr3t-t0ken-s3cr3t-t0ken\n"}, "API_TOKEN is given in plain text by env"},
		{"a token in the ConfigMap", []string{paymentConfigEnd, paymentConfigEnd + "  ADMIN_TOKEN: s3cr3t-t0ken-s3cr3t-t0ken\n"}, "ADMIN_TOKEN is given in plain text by ConfigMap payment-config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckManifests(paymentManifests(t, tc.replace...))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cr3t", "the error shows no token")
		})
	}
	// A token from a Secret is what the services are meant to be given.
	require.NoError(t, CheckManifests(paymentManifests(t, paymentDataDir, paymentDataDir+"            - name: API_TOKEN\n              valueFrom:\n                secretKeyRef: {name: payment-tokens, key: api-token}\n")))
}

// TestCheckManifestsAcceptsAServiceWithoutASelector holds CheckManifests to
// Services that select no pods on purpose: one whose EndpointSlices are
// managed by hand, and an ExternalName.
func TestCheckManifestsAcceptsAServiceWithoutASelector(t *testing.T) {
	for _, svc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: billing, namespace: taikit}\nspec:\n  ports:\n    - {name: https, port: 443, targetPort: 8443}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: mail, namespace: taikit}\nspec:\n  type: ExternalName\n  externalName: mail.example.com\n",
	} {
		ms := paymentManifests(t, paymentConfigEnd, paymentConfigEnd+"---\n"+svc)
		assert.NoError(t, CheckManifests(ms), svc)
	}
	// A selector that selects nothing is still a mistake.
	ms := paymentManifests(t, paymentConfigEnd, paymentConfigEnd+"---\napiVersion: v1\nkind: Service\nmetadata: {name: billing, namespace: taikit}\nspec:\n  selector: {app.kubernetes.io/name: billing}\n  ports:\n    - {port: 443}\n")
	assert.ErrorContains(t, CheckManifests(ms), "Service taikit/billing: its selector map[app.kubernetes.io/name:billing] selects no Deployment's pods")
}

// paymentInit is an init container as the checks want one: not root, no
// privilege escalation, a read-only root, requests and limits.
const paymentInit = `      initContainers:
        - name: migrate
          image: taikit/payment:dev
          args: ["migrate"]
          envFrom:
            - configMapRef:
                name: payment-config
          env:
            - name: API_TOKEN_FILE
              value: /run/secrets/taikit/api-token
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: 500m, memory: 128Mi}
          securityContext:
            capabilities: {drop: ["ALL"]}
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
          volumeMounts:
            - name: tokens
              mountPath: /run/secrets/taikit
              readOnly: true
      containers:
`

// TestCheckManifestsChecksInitContainers holds init containers to the
// checks that apply to them as to the containers (user, privilege, root
// filesystem, resources, the variables and what they name), and not to
// those that do not (probes and DATA_DIR: an init container runs to its
// end and serves nothing).
func TestCheckManifestsChecksInitContainers(t *testing.T) {
	const containers = "      containers:\n"
	require.NoError(t, CheckManifests(paymentManifests(t, containers, paymentInit)))
	for _, tc := range []struct {
		name    string
		replace []string
		want    string
	}{
		{"root", []string{"            allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: true\n          volumeMounts:", "            runAsUser: 0\n            allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: true\n          volumeMounts:"}, "init container migrate: runs as user 0"},
		{"a writable root", []string{"            readOnlyRootFilesystem: true\n          volumeMounts:\n            - name: tokens", "            readOnlyRootFilesystem: false\n          volumeMounts:\n            - name: tokens"}, "init container migrate: the root filesystem is not read-only"},
		{"escalation", []string{"            allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: true\n          volumeMounts:\n            - name: tokens", "            allowPrivilegeEscalation: true\n            readOnlyRootFilesystem: true\n          volumeMounts:\n            - name: tokens"}, "init container migrate: allowPrivilegeEscalation is not false"},
		{"no memory limit", []string{"            limits: {cpu: 500m, memory: 128Mi}\n", "            limits: {cpu: 500m}\n"}, "init container migrate: no memory limit"},
		{"a missing ConfigMap", []string{"                name: payment-config\n          env:\n            - name: API_TOKEN_FILE\n              value: /run/secrets/taikit/api-token\n          resources:\n            requests: {cpu: 100m", "                name: payment-conf\n          env:\n            - name: API_TOKEN_FILE\n              value: /run/secrets/taikit/api-token\n          resources:\n            requests: {cpu: 100m"}, "init container migrate: envFrom ConfigMap payment-conf is not among the manifests"},
		{"a token file not mounted", []string{"              value: /run/secrets/taikit/api-token\n          resources:\n            requests: {cpu: 100m", "              value: /run/secrets/api-token\n          resources:\n            requests: {cpu: 100m"}, "init container migrate: env API_TOKEN_FILE=/run/secrets/api-token names no file of a mounted volume"},
		{"a token in env", []string{"          env:\n            - name: API_TOKEN_FILE\n              value: /run/secrets/taikit/api-token\n          resources:\n            requests: {cpu: 100m", "          env:\n            - name: API_TOKEN\n              value: s3cr3t-t0ken-s3cr3t-t0ken\n          resources:\n            requests: {cpu: 100m"}, "init container migrate: API_TOKEN is given in plain text by env"},
		{"a mount of no volume", []string{"            - name: tokens\n              mountPath: /run/secrets/taikit\n              readOnly: true\n      containers:", "            - name: tokenz\n              mountPath: /run/secrets/taikit\n              readOnly: true\n      containers:"}, "init container migrate: mounts volume tokenz, which the pod does not have"},
		{"a probe the API server refuses", []string{"          args: [\"migrate\"]\n", "          args: [\"migrate\"]\n          readinessProbe: {httpGet: {path: /readyz, port: 3001}}\n"}, "init container migrate: a readiness probe on an init container that is not a sidecar (restartPolicy: Always)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replace := append([]string{containers, paymentInit}, tc.replace...)
			err := CheckManifests(paymentManifests(t, replace...))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cr3t", "the error shows no token")
		})
	}
	// A sidecar (an init container that keeps running) may have probes.
	require.NoError(t, CheckManifests(paymentManifests(t, containers, paymentInit,
		"          args: [\"migrate\"]\n", "          args: [\"migrate\"]\n          restartPolicy: Always\n          readinessProbe: {httpGet: {path: /ready, port: 9000}}\n")))
}

// TestCheckManifestsExpandsVariableReferences holds the checks of the
// variables to the values the kubelet gives them: a $(VAR) in an env value
// is replaced by the value of VAR given before it (by envFrom, or by an
// earlier env entry), $$ is a $, and a reference to a variable not given
// before stays as written.
func TestCheckManifestsExpandsVariableReferences(t *testing.T) {
	const base = "            - name: BASE\n              value: /data\n"
	for _, tc := range []struct {
		name    string
		replace []string
		want    string // "" when the manifests are right
	}{
		{"DATA_DIR of an earlier variable", []string{paymentDataDir, base + "            - name: DATA_DIR\n              value: $(BASE)/payment\n"}, ""},
		{"DATA_DIR of an earlier variable off the volume", []string{paymentDataDir, "            - name: BASE\n              value: /var/lib\n            - name: DATA_DIR\n              value: $(BASE)/payment\n"}, "env DATA_DIR=/var/lib/payment lies on no writable volume"},
		{"DATA_DIR of a ConfigMap's variable", []string{paymentDataDir, "            - name: DATA_DIR\n              value: $(STATE)\n", paymentConfigEnd, paymentConfigEnd + "  STATE: /data\n"}, ""},
		{"DATA_DIR of a variable given after it", []string{paymentDataDir, "            - name: DATA_DIR\n              value: $(BASE)\n" + base}, "env DATA_DIR=$(BASE) lies on no writable volume"},
		{"DATA_DIR of a field's variable", []string{paymentDataDir, "            - name: DATA_DIR\n              value: /data/$(INSTANCE)\n"}, ""},
		{"GOMEMLIMIT of an earlier variable", []string{paymentMemLimit, "            - name: LIMIT\n              value: 460MiB\n            - name: GOMEMLIMIT\n              value: $(LIMIT)\n"}, ""},
		{"GOMEMLIMIT of an earlier variable above the limit", []string{paymentMemLimit, "            - name: LIMIT\n              value: 1GiB\n            - name: GOMEMLIMIT\n              value: $(LIMIT)\n"}, "GOMEMLIMIT 1GiB is not below the memory limit 512Mi"},
		{"GOMEMLIMIT escaped", []string{paymentMemLimit, "            - name: LIMIT\n              value: 460MiB\n            - name: GOMEMLIMIT\n              value: $$(LIMIT)\n"}, `GOMEMLIMIT "$(LIMIT)" is not a byte count`},
		{"a token file of an earlier variable", []string{"            - name: API_TOKEN_FILE\n", "            - name: BASE\n              value: /run/secrets/taikit\n            - name: API_TOKEN_FILE\n", "              value: /run/secrets/taikit/api-token\n", "              value: $(BASE)/api-token\n"}, ""},
		{"a token file of an earlier variable not mounted", []string{"            - name: API_TOKEN_FILE\n", "            - name: BASE\n              value: /run/secrets\n            - name: API_TOKEN_FILE\n", "              value: /run/secrets/taikit/api-token\n", "              value: $(BASE)/api-token\n"}, "env API_TOKEN_FILE=/run/secrets/api-token names no file of a mounted volume"},
		{"an unclosed reference and a lone $", []string{paymentMemLimit, "            - name: LIMIT\n              value: 460MiB\n            - name: GOMEMLIMIT\n              value: $(LIMIT$x$\n"}, `GOMEMLIMIT "$(LIMIT$x$" is not a byte count`},
		{"DATA_DIR of a Service's variable", []string{paymentDataDir, "            - name: DATA_DIR\n              value: /data/$(REDIS_SERVICE_PORT)\n"}, ""},
		{"a token of a Secret's variable", []string{paymentDataDir, paymentDataDir + "            - name: SECRET_TOKEN\n              valueFrom:\n                secretKeyRef: {name: payment-tokens, key: api-token}\n            - name: API_TOKEN\n              value: $(SECRET_TOKEN)\n"}, ""},
		{"a token of a ConfigMap's variable", []string{paymentDataDir, paymentDataDir + "            - name: API_TOKEN\n              value: $(PLAIN)\n", paymentConfigEnd, paymentConfigEnd + "  PLAIN: s3cr3t-t0ken-s3cr3t-t0ken\n"}, "API_TOKEN is given in plain text by env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckManifests(paymentManifests(t, tc.replace...))
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cr3t", "the error shows no token")
		})
	}
}

// TestCheckManifestsReadsTheFileAMountGives holds the *_FILE checks to the
// file a mount gives: a mount with subPath is the volume's entry of that
// name, and where mounts nest the deepest one holds the file.
func TestCheckManifestsReadsTheFileAMountGives(t *testing.T) {
	const (
		tokenMount = "            - name: tokens\n              mountPath: /run/secrets/taikit\n              readOnly: true\n"
		tokenFile  = "              value: /run/secrets/taikit/api-token\n"
		scratch    = "        - name: data\n          emptyDir:\n            sizeLimit: 1Gi\n"
	)
	subPath := func(sub string) []string {
		return []string{tokenMount, tokenMount + "            - name: tokens\n              mountPath: /run/api-token\n              subPath: " + sub + "\n              readOnly: true\n", tokenFile, "              value: /run/api-token\n"}
	}
	require.NoError(t, CheckManifests(paymentManifests(t, subPath("api-token")...)))
	err := CheckManifests(paymentManifests(t, subPath("api-tokn")...))
	assert.ErrorContains(t, err, "env API_TOKEN_FILE=/run/api-token names no file of a mounted volume")

	// A memory emptyDir at /run: the Secret's mount at /run/secrets/taikit
	// hides what it would hold there.
	nested := []string{tokenMount, "            - name: scratch\n              mountPath: /run\n" + tokenMount, scratch, scratch + "        - name: scratch\n          emptyDir: {medium: Memory, sizeLimit: 16Mi}\n"}
	require.NoError(t, CheckManifests(paymentManifests(t, nested...)))
	err = CheckManifests(paymentManifests(t, append(nested, tokenFile, "              value: /run/secrets/taikit/api-tokn\n")...))
	assert.ErrorContains(t, err, "env API_TOKEN_FILE=/run/secrets/taikit/api-tokn names no file of a mounted volume")
}

// TestCheckManifestsCountsASidecarsPorts holds the Service's target port
// and the scrape annotation to the ports of sidecars too: a sidecar (an
// init container with restartPolicy Always) serves for the pod's life.
func TestCheckManifestsCountsASidecarsPorts(t *testing.T) {
	sidecar := "      initContainers:\n        - name: proxy\n          image: taikit/proxy:dev\n          restartPolicy: Always\n" +
		"          ports: [{name: proxy, containerPort: 9443}]\n" +
		"          resources:\n            requests: {cpu: 100m, memory: 64Mi}\n            limits: {cpu: 500m, memory: 128Mi}\n" +
		"          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}\n      containers:\n"
	ms := paymentManifests(t, "      containers:\n", sidecar, "      targetPort: http", "      targetPort: proxy", `prometheus.io/port: "3001"`, `prometheus.io/port: "9443"`,
		// The NetworkPolicy opens the sidecar's port in the container's stead.
		"        - port: http\n", "        - port: proxy\n")
	assert.NoError(t, CheckManifests(ms))
}

// TestCheckManifestsCountsTheEphemeralStorageTheSchedulerCounts holds the
// emptyDir check to the pod's effective request, as the scheduler computes
// it: the containers and the sidecars (init containers with restartPolicy
// Always) add up, as they run together; an init container that runs to its
// end runs beside only the sidecars started before it, and the pod asks
// for the larger of the two.
func TestCheckManifestsCountsTheEphemeralStorageTheSchedulerCounts(t *testing.T) {
	const request = "              ephemeral-storage: 1152Mi\n"
	initContainer := func(name string, sidecar bool, storage string) string {
		restart := ""
		if sidecar {
			restart = "          restartPolicy: Always\n"
		}
		return "        - name: " + name + "\n          image: taikit/proxy:dev\n" + restart +
			"          resources:\n            requests: {cpu: 100m, memory: 64Mi, ephemeral-storage: " + storage + "}\n" +
			"            limits: {cpu: 500m, memory: 128Mi}\n" +
			"          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}\n"
	}
	inits := func(main string, containers ...string) []string {
		return []string{request, main, "      containers:\n", "      initContainers:\n" + strings.Join(containers, "") + "      containers:\n"}
	}
	for _, tc := range []struct {
		name    string
		replace []string
		want    string // "" when the pod requests enough
	}{
		{"an init container that requests it all", inits("", initContainer("prepare", false, "1152Mi")), ""},
		{"a sidecar that requests it all", inits("", initContainer("proxy", true, "1152Mi")), ""},
		{"a sidecar beside the container", inits("              ephemeral-storage: 640Mi\n", initContainer("proxy", true, "512Mi")), ""},
		{"an init container after a sidecar", inits("", initContainer("proxy", true, "512Mi"), initContainer("prepare", false, "600Mi")), ""},
		{"init containers one after the other", inits("", initContainer("prepare", false, "600Mi"), initContainer("migrate", false, "600Mi")), "but its containers request 600Mi of ephemeral-storage"},
		{"an init container before a sidecar", inits("", initContainer("prepare", false, "600Mi"), initContainer("proxy", true, "512Mi")), "but its containers request 600Mi of ephemeral-storage"},
		{"an init container beside the container", inits("              ephemeral-storage: 640Mi\n", initContainer("prepare", false, "512Mi")), "but its containers request 640Mi of ephemeral-storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckManifests(paymentManifests(t, tc.replace...))
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

// TestCheckManifestsHoldsPodsToTheRestrictedStandard holds the pods to the
// restricted Pod Security Standard that deploy/k8s/namespace.yaml enforces,
// beyond a user other than root and no privilege escalation: every
// container, init containers included, drops every capability (adding back
// NET_BIND_SERVICE at most) and runs under the runtime's seccomp profile
// (or a local one), none is privileged or opens a port on the node, the
// pod shares none of the node's namespaces and mounts no kind of volume
// the standard refuses (a host path). The API server refuses such a pod,
// so kubectl apply would leave the service without replicas; and the pod
// is given no service-account token, as the services call no Kubernetes
// API.
func TestCheckManifestsHoldsPodsToTheRestrictedStandard(t *testing.T) {
	const (
		drop    = "            capabilities:\n              drop: [\"ALL\"]\n"
		seccomp = "        seccompProfile:\n          type: RuntimeDefault\n"
		escal   = "            allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: true\n            capabilities:"
	)
	for _, tc := range []struct {
		name    string
		replace []string
		want    string // "" when the standard admits the pod
	}{
		{"no capabilities dropped", []string{drop, ""}, "container payment: capabilities.drop does not hold ALL"},
		{"some capabilities dropped", []string{`drop: ["ALL"]`, `drop: ["NET_RAW"]`}, "container payment: capabilities.drop does not hold ALL"},
		{"a capability added", []string{drop, drop + "              add: [\"SYS_ADMIN\"]\n"}, "container payment: adds the capability SYS_ADMIN"},
		{"NET_BIND_SERVICE added", []string{drop, drop + "              add: [\"NET_BIND_SERVICE\"]\n"}, ""},
		{"no seccomp profile", []string{seccomp, ""}, "container payment: no seccomp profile"},
		{"an unconfined seccomp profile", []string{"          type: RuntimeDefault\n", "          type: Unconfined\n"}, "container payment: seccomp profile Unconfined"},
		{"the container's own seccomp profile", []string{seccomp, "", escal, "            seccompProfile: {type: RuntimeDefault}\n" + escal}, ""},
		{"a container unconfined under the pod's profile", []string{escal, "            seccompProfile: {type: Unconfined}\n" + escal}, "container payment: seccomp profile Unconfined"},
		{"a local seccomp profile", []string{"          type: RuntimeDefault\n", "          type: Localhost\n          localhostProfile: profiles/payment.json\n"}, ""},
		{"privileged", []string{escal, "            privileged: true\n" + escal}, "container payment: privileged"},
		{"a port on the node", []string{"              containerPort: 3001\n", "              containerPort: 3001\n              hostPort: 3001\n"}, "container payment: hostPort 3001"},
		{"the node's network", []string{"      automountServiceAccountToken: false\n", "      automountServiceAccountToken: false\n      hostNetwork: true\n"}, "shares the node's network namespace"},
		{"the node's processes", []string{"      automountServiceAccountToken: false\n", "      automountServiceAccountToken: false\n      hostPID: true\n"}, "shares the node's process namespace"},
		{"a host path", []string{"          emptyDir:\n            sizeLimit: 1Gi", "          hostPath:\n            path: /var/lib/payment"}, "volume data is a hostPath volume"},
		{"a service-account token", []string{"      automountServiceAccountToken: false\n", ""}, "automountServiceAccountToken is not false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckManifests(paymentManifests(t, tc.replace...))
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	// An init container is held to it too.
	const containers = "      containers:\n"
	initEscal := "            allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: true\n          volumeMounts:\n            - name: tokens"
	err := CheckManifests(paymentManifests(t, containers, paymentInit, "            capabilities: {drop: [\"ALL\"]}\n", ""))
	assert.ErrorContains(t, err, "init container migrate: capabilities.drop does not hold ALL")
	err = CheckManifests(paymentManifests(t, containers, paymentInit, initEscal, "            privileged: true\n"+initEscal))
	assert.ErrorContains(t, err, "init container migrate: privileged")
}

// TestCheckManifestsLetsADrainEvictReplicasNotReady holds every
// PodDisruptionBudget to unhealthyPodEvictionPolicy AlwaysAllow: under
// the default (IfHealthyBudget) a replica that is not ready may be evicted
// only while enough others are, so while NATS or Redis is out of reach,
// and every replica out of the Service, a node drain waits on replicas
// that serve nothing.
func TestCheckManifestsLetsADrainEvictReplicasNotReady(t *testing.T) {
	const policy = "  unhealthyPodEvictionPolicy: AlwaysAllow\n"
	err := CheckManifests(paymentManifests(t, policy, "  unhealthyPodEvictionPolicy: IfHealthyBudget\n"))
	assert.ErrorContains(t, err, "PodDisruptionBudget taikit/payment: unhealthyPodEvictionPolicy is not AlwaysAllow")
	err = CheckManifests(paymentManifests(t, policy, ""))
	assert.ErrorContains(t, err, "PodDisruptionBudget taikit/payment: unhealthyPodEvictionPolicy is not AlwaysAllow")
}
