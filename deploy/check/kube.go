package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Manifest is one Kubernetes object of a manifest file.
type Manifest struct {
	Doc    int            // its place in the file, from 1
	Object runtime.Object // a *appsv1.Deployment, *corev1.Service, ...
}

// Name is the object's kind, namespace and name: Deployment taikit/payment.
func (m Manifest) Name() string {
	kind := m.Object.GetObjectKind().GroupVersionKind().Kind
	if o, ok := m.Object.(interface {
		GetNamespace() string
		GetName() string
	}); ok {
		return fmt.Sprintf("%s %s/%s", kind, o.GetNamespace(), o.GetName())
	}
	return kind
}

// scheme holds the kinds the manifests may use.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // the API packages' own registrations: cannot fail
		}
	}
	return s
}()

// decoder decodes strictly: a field the type does not have, a field
// given twice, or a field spelled in another case is an error.
var decoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// DecodeManifests decodes every document of a multi-document YAML stream
// into Kubernetes API types (k8s.io/api), strictly: an unknown or
// duplicate field, a kind outside core/v1, apps/v1, policy/v1 and
// networking.k8s.io/v1, or a value of the wrong type is an error naming
// the document. Empty documents are skipped.
func DecodeManifests(r io.Reader) ([]Manifest, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []Manifest
	var errs []error
	for doc := 1; ; doc++ {
		b, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(stripComments(b))) == 0 {
			doc--
			continue
		}
		obj, _, err := decoder.Decode(b, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", doc, err))
			continue
		}
		out = append(out, Manifest{Doc: doc, Object: obj})
	}
	return out, errors.Join(errs...)
}

// stripComments drops YAML comment lines, so a document of comments alone
// counts as empty.
func stripComments(b []byte) []byte {
	var out []byte
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// CheckManifests checks that the objects agree with each other and with
// how taikit's services must run:
//
//   - every Deployment runs at least 2 replicas, spread across nodes (a
//     topology spread constraint or a pod anti-affinity on
//     kubernetes.io/hostname that selects its own pods); every container,
//     init containers included, runs as a user other than root without
//     privilege escalation, on a read-only root filesystem, with CPU and
//     memory requests and limits, and keeps the restricted Pod Security
//     Standard's rules that deploy/k8s/namespace.yaml enforces on it (not
//     privileged, every capability dropped but NET_BIND_SERVICE, the
//     runtime's seccomp profile or a local one, no port on the node); the
//     pod shares none of the node's namespaces, mounts only the kinds of
//     volume the standard allows, and is given no service-account token
//     (the services call no Kubernetes API); every container of
//     containers has a readiness probe on /readyz and a liveness probe on
//     /healthz (and a startup probe, if any, on /healthz), each on a port
//     the container declares and sending a Host the service answers (one
//     its allow-list, ALLOWED_HOSTS or the default, holds; the pod's IP
//     too when a pod-discovering Prometheus scrapes it), and DATA_DIR on
//     a volume the container may write; an init
//     container has no probe unless it is a sidecar (restartPolicy
//     Always); in every container GOMEMLIMIT, if set and not empty, is a
//     byte count the Go runtime reads, below the memory limit, and no
//     token (API_TOKEN, ADMIN_TOKEN) is given in plain text, by env or a
//     ConfigMap, rather than from a Secret; the prometheus.io scrape
//     annotations name a declared port and /metrics (a variable is read
//     as the kubelet gives it: from env, with its $(VAR) references
//     expanded, or from a ConfigMap of the manifests by envFrom or
//     configMapKeyRef);
//   - every ConfigMap and Secret a container refers to (envFrom, env,
//     volumes) is among the objects and has the keys used; every *_FILE
//     variable names a file of a mounted volume (an item's path of a
//     Secret or ConfigMap volume with items, a key of one without);
//   - every Service with a selector selects a Deployment's pods and
//     targets a port they declare, a sidecar's included (one without,
//     whose EndpointSlices are managed apart, and an ExternalName are not
//     checked); every PodDisruptionBudget selects a Deployment's pods,
//     leaves it room for a disruption (minAvailable below its replicas)
//     and lets a drain evict a replica that is not ready
//     (unhealthyPodEvictionPolicy AlwaysAllow);
//   - every emptyDir on the node's disk has a sizeLimit, and the pod
//     requests at least as much ephemeral storage as those add up to, as
//     the scheduler counts a pod's request: its containers and sidecars
//     together, or an init container with the sidecars started before
//     it, whichever is more;
//   - every NetworkPolicy's podSelector selects a Deployment's pods, and
//     every port its ingress rules open is one that each of those pods
//     declares (by name or number, and protocol); every Deployment's pods
//     are under a default-deny ingress policy (policyTypes Ingress, no
//     ingress rule), and when they are isolated for ingress, the ports its
//     Services target and Prometheus scrapes are open to pods of other
//     namespaces (a rule without peers, or with a namespaceSelector or an
//     ipBlock); when they are isolated for egress, an egress rule lets out
//     the port of every URL their variables *_URL and *_ENDPOINT name, to
//     the namespace of a Service's name, and DNS (UDP port 53).
//
// The error lists every problem found.
func CheckManifests(ms []Manifest) error {
	var p problems
	var deps []*appsv1.Deployment
	var services []*corev1.Service
	var netPolicies []*networkingv1.NetworkPolicy
	configMaps := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	namespaces := map[string]*corev1.Namespace{}
	for _, m := range ms {
		switch o := m.Object.(type) {
		case *appsv1.Deployment:
			deps = append(deps, o)
		case *corev1.ConfigMap:
			configMaps[o.Namespace+"/"+o.Name] = o
		case *corev1.Secret:
			secrets[o.Namespace+"/"+o.Name] = o
		case *corev1.Namespace:
			namespaces[o.Name] = o
		case *corev1.Service:
			services = append(services, o)
		case *networkingv1.NetworkPolicy:
			netPolicies = append(netPolicies, o)
		}
	}
	for _, d := range deps {
		checkDeployment(&p, d, configMaps, secrets)
	}
	for _, m := range ms {
		switch o := m.Object.(type) {
		case *corev1.Service:
			checkService(&p, o, deps)
		case *policyv1.PodDisruptionBudget:
			checkPDB(&p, o, deps)
		}
	}
	checkNetworkPolicies(&p, netPolicies, networkScope{deps: deps, services: services, namespaces: namespaces, configMaps: configMaps, secrets: secrets})
	return p.err()
}

func checkDeployment(p *problems, d *appsv1.Deployment, configMaps map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) {
	where := "Deployment " + d.Namespace + "/" + d.Name
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		p.add("%s: fewer than 2 replicas", where)
	}
	sel, err := metaSelector(d.Spec.Selector)
	if err != nil {
		p.add("%s: selector: %v", where, err)
	} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		p.add("%s: its selector does not select its own pods' labels", where)
	}
	if !spreadAcrossNodes(d) {
		p.add("%s: nothing spreads its replicas across nodes (a topologySpreadConstraint or podAntiAffinity on %s selecting its pods): one node's failure may take them all", where, corev1.LabelHostname)
	}
	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		p.add("%s: automountServiceAccountToken is not false: the services call no Kubernetes API, and a token mounted in the pod is a credential for whoever takes it over", where)
	}
	for _, ns := range []struct {
		shared bool
		name   string
	}{{pod.HostNetwork, "network namespace (hostNetwork)"}, {pod.HostPID, "process namespace (hostPID)"}, {pod.HostIPC, "IPC namespace (hostIPC)"}} {
		if ns.shared {
			p.add("%s: shares the node's %s, which the restricted Pod Security Standard refuses", where, ns.name)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		// A volume without a source is an emptyDir: the API server
		// defaults it so.
		if kind := volumeKind(v); kind != "" && !restrictedVolumes[kind] {
			p.add("%s: volume %s is a %s volume, which the restricted Pod Security Standard refuses", where, v.Name, kind)
		}
		switch {
		case v.Secret != nil:
			checkKeys(p, where, "volume "+v.Name, "Secret", d.Namespace, v.Secret.SecretName, v.Secret.Items, secretKeys(secrets[d.Namespace+"/"+v.Secret.SecretName]))
		case v.ConfigMap != nil:
			checkKeys(p, where, "volume "+v.Name, "ConfigMap", d.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, configMapKeys(configMaps[d.Namespace+"/"+v.ConfigMap.Name]))
		}
	}
	checkScrape(p, where, d.Spec.Template)
	checkEmptyDirs(p, where, pod)
	scope := podScope{ns: d.Namespace, security: psc, volumes: volumes, configMaps: configMaps, secrets: secrets,
		hostname: pod.Hostname, annotations: d.Spec.Template.Annotations}
	for _, c := range pod.InitContainers {
		role := initContainer
		if sidecar(c) {
			role = sidecarContainer
		}
		checkContainer(p, where+" init container "+c.Name, c, role, scope)
	}
	for _, c := range pod.Containers {
		checkContainer(p, where+" container "+c.Name, c, appContainer, scope)
	}
}

// containerRole is what a container of a pod is there for, which decides
// the checks that apply to it.
type containerRole int

const (
	appContainer     containerRole = iota // one of containers: the service itself
	initContainer                         // runs to its end before the pod's containers start
	sidecarContainer                      // an init container with restartPolicy Always
)

// podScope is what a container's checks read of its pod and the other
// objects.
type podScope struct {
	ns         string
	security   *corev1.PodSecurityContext
	volumes    map[string]corev1.Volume
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	// hostname is the pod's spec.hostname: its name, unknown here, when
	// empty.
	hostname    string
	annotations map[string]string // the pod's
}

// checkContainer checks one container of a pod. Every container, init
// containers and sidecars too, runs as a user other than root without
// privilege escalation on a read-only root filesystem, with requests and
// limits, and is given variables, ConfigMaps, Secrets and volumes that
// exist. Only the service's own containers are held to its probes and
// DATA_DIR; an init container that is not a sidecar may have no probe,
// which the API server refuses.
func checkContainer(p *problems, cw string, c corev1.Container, role containerRole, s podScope) {
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = s.security.RunAsNonRoot
	}
	user := sc.RunAsUser
	if user == nil {
		user = s.security.RunAsUser
	}
	if nonRoot == nil || !*nonRoot {
		p.add("%s: runAsNonRoot is not true", cw)
	}
	if user != nil && *user == 0 {
		p.add("%s: runs as user 0", cw)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		p.add("%s: the root filesystem is not read-only", cw)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.add("%s: allowPrivilegeEscalation is not false", cw)
	}
	checkRestricted(p, cw, c, sc, s.security)
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[res]
		lim, hasLim := c.Resources.Limits[res]
		switch {
		case !hasReq:
			p.add("%s: no %s request", cw, res)
		case !hasLim:
			p.add("%s: no %s limit", cw, res)
		case req.Cmp(lim) > 0:
			p.add("%s: %s request %s is above its limit %s", cw, res, req.String(), lim.String())
		}
	}
	switch role {
	case appContainer:
		checkProbe(p, cw, "readiness", c.ReadinessProbe, "/readyz", c.Ports)
		checkProbe(p, cw, "liveness", c.LivenessProbe, "/healthz", c.Ports)
		if c.StartupProbe != nil {
			checkProbe(p, cw, "startup", c.StartupProbe, "/healthz", c.Ports)
		}
		checkProbeHosts(p, cw, c, scrapedContainer(s.annotations, c), s)
	case initContainer:
		for _, pr := range []struct {
			kind  string
			probe *corev1.Probe
		}{{"readiness", c.ReadinessProbe}, {"liveness", c.LivenessProbe}, {"startup", c.StartupProbe}} {
			if pr.probe != nil {
				p.add("%s: a %s probe on an init container that is not a sidecar (restartPolicy: Always): the API server refuses it", cw, pr.kind)
			}
		}
	}
	env := containerEnv(c, s.ns, s.configMaps, s.secrets)
	checkMemoryLimit(p, cw, c, env)
	if role == appContainer {
		checkDataDir(p, cw, c, env, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, s.volumes)
	}
	checkPlainTokens(p, cw, env)
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil && s.configMaps[s.ns+"/"+ef.ConfigMapRef.Name] == nil:
			p.add("%s: envFrom ConfigMap %s is not among the manifests", cw, ef.ConfigMapRef.Name)
		case ef.SecretRef != nil && s.secrets[s.ns+"/"+ef.SecretRef.Name] == nil:
			p.add("%s: envFrom Secret %s is not among the manifests", cw, ef.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			if r := e.ValueFrom.SecretKeyRef; r != nil && !slices.Contains(secretKeys(s.secrets[s.ns+"/"+r.Name]), r.Key) {
				p.add("%s: env %s: Secret %s has no key %s", cw, e.Name, r.Name, r.Key)
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !slices.Contains(configMapKeys(s.configMaps[s.ns+"/"+r.Name]), r.Key) {
				p.add("%s: env %s: ConfigMap %s has no key %s", cw, e.Name, r.Name, r.Key)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		v := env[name]
		if strings.HasSuffix(name, "_FILE") && v.known && v.value != "" && !mountedFile(v.value, c.VolumeMounts, s.volumes, s.ns, s.configMaps, s.secrets) {
			p.add("%s: env %s=%s names no file of a mounted volume%s", cw, name, v.value, v.origin())
		}
	}
	for _, vm := range c.VolumeMounts {
		if _, ok := s.volumes[vm.Name]; !ok {
			p.add("%s: mounts volume %s, which the pod does not have", cw, vm.Name)
		}
	}
}

// checkRestricted checks a container against what the restricted Pod
// Security Standard asks of it besides a user other than root and no
// privilege escalation (checked apart): not privileged, every capability
// dropped (NET_BIND_SERVICE alone may be added back), the runtime's
// seccomp profile or a local one (its own, or else the pod's), and no port
// opened on the node. deploy/k8s/namespace.yaml enforces the standard: the
// API server refuses a pod that breaks it, and the Deployment is left
// without replicas.
func checkRestricted(p *problems, cw string, c corev1.Container, sc *corev1.SecurityContext, psc *corev1.PodSecurityContext) {
	if sc.Privileged != nil && *sc.Privileged {
		p.add("%s: privileged: it may do what root on the node may", cw)
	}
	caps := sc.Capabilities
	if caps == nil {
		caps = &corev1.Capabilities{}
	}
	if !slices.Contains(caps.Drop, "ALL") {
		p.add("%s: capabilities.drop does not hold ALL, which the restricted Pod Security Standard asks for", cw)
	}
	for _, add := range caps.Add {
		if add != "NET_BIND_SERVICE" {
			p.add("%s: adds the capability %s; the restricted Pod Security Standard allows NET_BIND_SERVICE alone", cw, add)
		}
	}
	profile := sc.SeccompProfile
	if profile == nil {
		profile = psc.SeccompProfile
	}
	switch {
	case profile == nil:
		p.add("%s: no seccomp profile, its own or the pod's: the restricted Pod Security Standard asks for RuntimeDefault or Localhost", cw)
	case profile.Type != corev1.SeccompProfileTypeRuntimeDefault && profile.Type != corev1.SeccompProfileTypeLocalhost:
		p.add("%s: seccomp profile %s; the restricted Pod Security Standard asks for RuntimeDefault or Localhost", cw, profile.Type)
	}
	for _, port := range c.Ports {
		if port.HostPort != 0 {
			p.add("%s: hostPort %d opens a port on the node, which the restricted Pod Security Standard refuses", cw, port.HostPort)
		}
	}
}

// restrictedVolumes are the kinds of volume the restricted Pod Security
// Standard allows, by their field in a pod's volume.
var restrictedVolumes = map[string]bool{
	"configMap": true, "csi": true, "downwardAPI": true, "emptyDir": true, "ephemeral": true,
	"persistentVolumeClaim": true, "projected": true, "secret": true,
}

// volumeKind is the field of v's source that is set ("emptyDir",
// "hostPath", ...), or "" when none is.
func volumeKind(v corev1.Volume) string {
	src := reflect.ValueOf(v.VolumeSource)
	for i := range src.NumField() {
		if f := src.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			name, _, _ := strings.Cut(src.Type().Field(i).Tag.Get("json"), ",")
			return name
		}
	}
	return ""
}

// sidecar reports whether c, an init container, is a sidecar: one that
// keeps running beside the pod's containers (restartPolicy Always).
func sidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// servingContainers returns the containers that run for the pod's life
// and may serve on their ports: its containers and its sidecars.
func servingContainers(pod corev1.PodSpec) []corev1.Container {
	out := slices.Clone(pod.Containers)
	for _, c := range pod.InitContainers {
		if sidecar(c) {
			out = append(out, c)
		}
	}
	return out
}

// checkScrape checks the prometheus.io annotations a pod-discovering
// Prometheus scrapes the pods by: the port is one a container declares,
// the path the one the services serve their metrics on. A sidecar's port
// counts as a container's.
func checkScrape(p *problems, where string, pod corev1.PodTemplateSpec) {
	a := pod.Annotations
	if a["prometheus.io/scrape"] != "true" {
		return
	}
	if port, ok := a["prometheus.io/port"]; ok {
		number, _ := strconv.Atoi(port)
		declared := false
		for _, c := range servingContainers(pod.Spec) {
			declared = declared || number > 0 && declaresPort(c.Ports, "", number)
		}
		if !declared {
			p.add("%s: annotation prometheus.io/port %q is not a port the container declares", where, port)
		}
	}
	if path, ok := a["prometheus.io/path"]; ok && path != "/metrics" {
		p.add("%s: annotation prometheus.io/path %q is not /metrics", where, path)
	}
}

// checkMemoryLimit checks GOMEMLIMIT against the container's memory limit:
// the Go runtime refuses to start on a value it cannot read, and a limit at
// or above the container's lets the kernel kill the process before the
// collector works harder to stay under it.
// An empty GOMEMLIMIT is one the runtime ignores, as it does an unset one.
func checkMemoryLimit(p *problems, where string, c corev1.Container, env map[string]envVar) {
	e, ok := env["GOMEMLIMIT"]
	if !ok || !e.known || e.value == "" {
		return
	}
	n, ok := goByteCount(e.value)
	if !ok {
		p.add("%s: GOMEMLIMIT %q is not a byte count the Go runtime reads (a number with B, KiB, MiB, GiB or TiB, or off), and the runtime refuses to start on it%s", where, e.value, e.origin())
		return
	}
	lim, hasLim := c.Resources.Limits[corev1.ResourceMemory]
	if hasLim && n >= lim.Value() {
		p.add("%s: GOMEMLIMIT %s is not below the memory limit %s%s", where, e.value, lim.String(), e.origin())
	}
}

// envVar is a variable as a container is given it.
type envVar struct {
	value string // what the container gets, when known
	known bool   // a literal, or a ConfigMap's key among the manifests
	from  string // where it comes from: "env", "ConfigMap payment-config", ...
}

// origin is where v comes from, to end a message: nothing for a literal
// of env, " (from ConfigMap payment-config)" otherwise.
func (v envVar) origin() string {
	if v.from == "env" {
		return ""
	}
	return " (from " + v.from + ")"
}

// containerEnv returns the variables c is given as the kubelet sets them:
// every envFrom source in turn (each key with the source's prefix; a later
// source's key wins), then env (a later entry wins), which overrides them
// all. A value of env has its $(VAR) references expanded from the
// variables given before it ([expandVars]). A value is known when it is a
// literal or a key of a ConfigMap among configMaps, and every variable it
// refers to is known; a Secret's, a field's or a resource's is not. The keys of a
// Secret by envFrom are known when the Secret is among secrets.
func containerEnv(c corev1.Container, ns string, configMaps map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) map[string]envVar {
	return containerEnvFields(c, ns, configMaps, secrets, nil)
}

// containerEnvFields is containerEnv, with a variable of the pod's field
// at a path of fields (fieldRef: status.podIP, ...) known as the value
// fields gives it.
func containerEnvFields(c corev1.Container, ns string, configMaps map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret, fields map[string]string) map[string]envVar {
	env := map[string]envVar{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			if cm := configMaps[ns+"/"+ef.ConfigMapRef.Name]; cm != nil {
				for k, v := range cm.Data {
					env[ef.Prefix+k] = envVar{value: v, known: true, from: "ConfigMap " + cm.Name}
				}
			}
		case ef.SecretRef != nil:
			// Its values are not known here; its keys only when it is
			// among the manifests.
			for _, k := range secretKeys(secrets[ns+"/"+ef.SecretRef.Name]) {
				env[ef.Prefix+k] = envVar{from: "Secret " + ef.SecretRef.Name}
			}
		}
	}
	for _, e := range c.Env {
		v := envVar{value: e.Value, known: true, from: "env"}
		if e.Value != "" {
			v.value, v.known = expandVars(e.Value, env)
		}
		if e.ValueFrom != nil {
			v = envVar{from: "env valueFrom"}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				v.from = "ConfigMap " + r.Name
				if cm := configMaps[ns+"/"+r.Name]; cm != nil {
					v.value, v.known = cm.Data[r.Key]
				}
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				v.from = "Secret " + r.Name
			}
			if r := e.ValueFrom.FieldRef; r != nil {
				v.from = "field " + r.FieldPath
				v.value, v.known = fields[r.FieldPath]
			}
		}
		env[e.Name] = v
	}
	return env
}

// expandVars expands the $(VAR) references in an env value as the kubelet
// does, from the variables given before it: $(VAR) of a variable in env
// becomes its value, $$ becomes $, and anything else (a reference to a
// variable not given before it, an unclosed $( ) stays as written. It
// reports whether the result is known: not when a reference is to a
// variable whose value is not known here, or to one that may be a
// Service's variable the kubelet adds (a name with _SERVICE_ or _PORT).
func expandVars(s string, env map[string]envVar) (string, bool) {
	var b strings.Builder
	known := true
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i+1 == len(s) {
			b.WriteString(s)
			return b.String(), known
		}
		b.WriteString(s[:i])
		switch rest := s[i+1:]; {
		case rest[0] == '$':
			b.WriteByte('$')
			s = rest[1:]
		case rest[0] == '(':
			name, after, closed := strings.Cut(rest[1:], ")")
			if !closed {
				b.WriteString("$(")
				s = rest[1:]
				continue
			}
			if v, ok := env[name]; ok {
				b.WriteString(v.value)
				known = known && v.known
			} else {
				b.WriteString("$(" + name + ")")
				known = known && !strings.Contains(name, "_SERVICE_") && !strings.Contains(name, "_PORT")
			}
			s = after
		default:
			b.WriteByte('$')
			s = rest
		}
	}
}

// plainTokens are the variables the services read a token from, each
// with the variable that names a file holding it instead.
var plainTokens = map[string]string{"API_TOKEN": "API_TOKEN_FILE", "ADMIN_TOKEN": "ADMIN_TOKEN_FILE"}

// checkPlainTokens checks that no token is given in plain text, by env or
// a ConfigMap: anyone who reads the manifests, the ConfigMap or the pod's
// spec holds it. A token comes from a Secret, as a file (*_FILE) or by
// secretKeyRef. The error shows no value.
func checkPlainTokens(p *problems, where string, env map[string]envVar) {
	for _, name := range slices.Sorted(maps.Keys(plainTokens)) {
		if v, ok := env[name]; ok && v.known && v.value != "" {
			p.add("%s: %s is given in plain text by %s: mount it from a Secret and name the file with %s (or use secretKeyRef)", where, name, v.from, plainTokens[name])
		}
	}
}

// goByteCount reads a byte count as the Go runtime reads GOMEMLIMIT
// (runtime.parseByteCount): a decimal number with an optional B, KiB,
// MiB, GiB or TiB suffix, at most math.MaxInt64 bytes, or "off".
func goByteCount(v string) (int64, bool) {
	if v == "off" {
		return math.MaxInt64, true
	}
	num, unit := v, int64(1)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			num, unit = n, int64(1)<<u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/unit {
		return 0, false
	}
	return n * unit, true
}

// checkEmptyDirs checks that every emptyDir on the node's disk is bounded
// (a sizeLimit; past it the kubelet evicts the pod, and the volume goes
// with it) and that the containers request as much ephemeral storage as
// those limits add up to: the scheduler counts requests, not sizeLimits,
// and would place the pod on a node without room for its volumes. An
// emptyDir in memory counts against the memory limit instead. The requests
// are the pod's effective request, as the scheduler counts it (see
// ephemeralStorageRequest).
func checkEmptyDirs(p *problems, where string, pod corev1.PodSpec) {
	var limits resource.Quantity
	for _, v := range pod.Volumes {
		if v.EmptyDir == nil || v.EmptyDir.Medium == corev1.StorageMediumMemory {
			continue
		}
		if v.EmptyDir.SizeLimit == nil {
			p.add("%s: emptyDir %s has no sizeLimit: what is written there may fill the node's disk", where, v.Name)
			continue
		}
		limits.Add(*v.EmptyDir.SizeLimit)
	}
	requests := ephemeralStorageRequest(pod)
	if requests.Cmp(limits) < 0 {
		p.add("%s: its emptyDir volumes may hold %s, but its containers request %s of ephemeral-storage: the scheduler does not count the rest", where, limits.String(), requests.String())
	}
}

// ephemeralStorageRequest returns the ephemeral storage the scheduler
// reserves for a pod: the containers and the sidecars (init containers
// with restartPolicy Always) run together, so their requests add up; an
// init container that runs to its end runs beside only the sidecars
// started before it; the pod asks for the larger of the two. The pod's
// overhead is left out: the runtime uses it, not the pod's volumes; and a
// pod-level request cannot name ephemeral storage.
func ephemeralStorageRequest(pod corev1.PodSpec) resource.Quantity {
	request := func(c corev1.Container) resource.Quantity {
		q := c.Resources.Requests[corev1.ResourceEphemeralStorage]
		return q.DeepCopy() // Add may change a Quantity in place
	}
	var running, sidecars, initPeak resource.Quantity
	for _, c := range pod.Containers {
		running.Add(request(c))
	}
	for _, c := range pod.InitContainers {
		r := request(c)
		if sidecar(c) {
			sidecars.Add(r)
			running.Add(r)
			r = sidecars.DeepCopy()
		} else {
			r.Add(sidecars)
		}
		if r.Cmp(initPeak) > 0 {
			initPeak = r
		}
	}
	if initPeak.Cmp(running) > 0 {
		return initPeak
	}
	return running
}

// checkDataDir checks that, on a read-only root filesystem, DATA_DIR (the
// audit trail and the data dir's lock; the embedded NATS store without
// NATS_URL) lies on a mounted volume the container may write: without the
// variable the service writes the image's /data, on the read-only root.
// A DATA_DIR whose value is not known here (a Secret's, a field's) is
// not checked.
func checkDataDir(p *problems, where string, c corev1.Container, env map[string]envVar, readOnlyRoot bool, volumes map[string]corev1.Volume) {
	if !readOnlyRoot {
		return
	}
	e, found := env["DATA_DIR"]
	if !found {
		p.add("%s: no DATA_DIR, and the root filesystem is read-only", where)
		return
	}
	if e.known && !writableDir(path.Clean(e.value), c.VolumeMounts, volumes) {
		p.add("%s: env DATA_DIR=%s lies on no writable volume, and the root filesystem is read-only%s", where, e.value, e.origin())
	}
}

// writableDir reports whether dir is at or under the mount of a volume the
// container may write: not mounted read-only, and not a Secret, ConfigMap,
// downward API or projected volume (which the kubelet mounts read-only).
// The deepest mount holding dir decides, as in the container.
func writableDir(dir string, mounts []corev1.VolumeMount, volumes map[string]corev1.Volume) bool {
	best, writable := -1, false
	for _, vm := range mounts {
		mp := path.Clean(vm.MountPath)
		if dir != mp && !strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/") || len(mp) <= best {
			continue
		}
		v := volumes[vm.Name]
		best = len(mp)
		writable = !vm.ReadOnly && v.Secret == nil && v.ConfigMap == nil && v.DownwardAPI == nil && v.Projected == nil
	}
	return writable
}

func checkProbe(p *problems, where, kind string, pr *corev1.Probe, wantPath string, ports []corev1.ContainerPort) {
	switch {
	case pr == nil:
		p.add("%s: no %s probe", where, kind)
		return
	case pr.HTTPGet == nil:
		p.add("%s: the %s probe is not an HTTP GET", where, kind)
		return
	case pr.HTTPGet.Path != wantPath:
		p.add("%s: the %s probe asks %s, not %s", where, kind, pr.HTTPGet.Path, wantPath)
	}
	if !declaresPort(ports, pr.HTTPGet.Port.String(), pr.HTTPGet.Port.IntValue()) {
		p.add("%s: the %s probe's port %s is not a port the container declares", where, kind, pr.HTTPGet.Port.String())
	}
}

// declaresPort reports whether ports has one of that name or number (an
// empty name, or a zero number, matches none).
func declaresPort(ports []corev1.ContainerPort, name string, number int) bool {
	for _, cp := range ports {
		if name != "" && cp.Name == name || number != 0 && int(cp.ContainerPort) == number {
			return true
		}
	}
	return false
}

func checkKeys(p *problems, where, what, kind, ns, name string, items []corev1.KeyToPath, have []string) {
	if have == nil {
		p.add("%s: %s: %s %s/%s is not among the manifests", where, what, kind, ns, name)
		return
	}
	for _, it := range items {
		if !slices.Contains(have, it.Key) {
			p.add("%s: %s: %s %s has no key %s", where, what, kind, name, it.Key)
		}
	}
}

// mountedFile reports whether file is a file of a volume mounted in the
// container: an item's path of a Secret or ConfigMap volume with items,
// a key of one without (which holds a file for every key; one not among
// the manifests, reported apart, is taken to hold it), or anything under
// another kind of volume. The deepest mount holding file decides, as in
// the container; a mount with subPath holds the volume's entry of that
// name (one with subPathExpr, named at run time, is taken to hold it).
func mountedFile(file string, mounts []corev1.VolumeMount, volumes map[string]corev1.Volume, ns string, configMaps map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) bool {
	file = path.Clean(file)
	var mount *corev1.VolumeMount
	var rel string
	for i, vm := range mounts {
		mp := path.Clean(vm.MountPath)
		r, under := strings.CutPrefix(file, strings.TrimSuffix(mp, "/")+"/")
		if !under {
			if file != mp || vm.SubPath == "" && vm.SubPathExpr == "" {
				continue
			}
			r = ""
		}
		if mount != nil && len(mp) <= len(path.Clean(mount.MountPath)) {
			continue
		}
		mount, rel = &mounts[i], path.Join(vm.SubPath, r)
	}
	if mount == nil {
		return false
	}
	if mount.SubPathExpr != "" {
		return true
	}
	v := volumes[mount.Name]
	var items []corev1.KeyToPath
	var keys []string
	switch {
	case v.Secret != nil:
		items, keys = v.Secret.Items, secretKeys(secrets[ns+"/"+v.Secret.SecretName])
	case v.ConfigMap != nil:
		items, keys = v.ConfigMap.Items, configMapKeys(configMaps[ns+"/"+v.ConfigMap.Name])
	default:
		return true
	}
	if len(items) == 0 && (keys == nil || slices.Contains(keys, rel)) {
		return true
	}
	for _, it := range items {
		if path.Clean(it.Path) == rel {
			return true
		}
	}
	return false
}

func secretKeys(s *corev1.Secret) []string {
	if s == nil {
		return nil
	}
	keys := []string{}
	for k := range s.Data {
		keys = append(keys, k)
	}
	for k := range s.StringData {
		keys = append(keys, k)
	}
	return keys
}

func configMapKeys(c *corev1.ConfigMap) []string {
	if c == nil {
		return nil
	}
	keys := []string{}
	for k := range c.Data {
		keys = append(keys, k)
	}
	for k := range c.BinaryData {
		keys = append(keys, k)
	}
	return keys
}

// selected returns the Deployments in ns whose pods sel selects.
func selected(sel labels.Selector, ns string, deps []*appsv1.Deployment) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range deps {
		if d.Namespace == ns && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func checkService(p *problems, s *corev1.Service, deps []*appsv1.Deployment) {
	where := "Service " + s.Namespace + "/" + s.Name
	if len(s.Spec.Selector) == 0 || s.Spec.Type == corev1.ServiceTypeExternalName {
		// Its endpoints are not pods it selects: EndpointSlices managed
		// by hand, or a name elsewhere.
		return
	}
	matched := selected(labels.SelectorFromSet(s.Spec.Selector), s.Namespace, deps)
	if len(matched) == 0 {
		p.add("%s: its selector %v selects no Deployment's pods", where, s.Spec.Selector)
		return
	}
	for _, sp := range s.Spec.Ports {
		target := sp.TargetPort
		name, number := target.String(), target.IntValue()
		if name == "0" || name == "" {
			name, number = "", int(sp.Port)
		}
		for _, d := range matched {
			ok := false
			for _, c := range servingContainers(d.Spec.Template.Spec) {
				ok = ok || declaresPort(c.Ports, name, number)
			}
			if !ok {
				p.add("%s: port %s targets %s, which Deployment %s's containers do not declare", where, sp.Name, target.String(), d.Name)
			}
		}
	}
}

func checkPDB(p *problems, b *policyv1.PodDisruptionBudget, deps []*appsv1.Deployment) {
	where := "PodDisruptionBudget " + b.Namespace + "/" + b.Name
	sel, err := metaSelector(b.Spec.Selector)
	if err != nil {
		p.add("%s: selector: %v", where, err)
		return
	}
	matched := selected(sel, b.Namespace, deps)
	if len(matched) == 0 {
		p.add("%s: its selector selects no Deployment's pods", where)
		return
	}
	if pol := b.Spec.UnhealthyPodEvictionPolicy; pol == nil || *pol != policyv1.AlwaysAllow {
		p.add("%s: unhealthyPodEvictionPolicy is not AlwaysAllow: while the replicas are not ready (NATS or Redis out of reach), a node drain waits on replicas that serve nothing", where)
	}
	for _, d := range matched {
		replicas := 1
		if d.Spec.Replicas != nil {
			replicas = int(*d.Spec.Replicas)
		}
		switch {
		case b.Spec.MinAvailable != nil:
			min, err := intOrPercent(b.Spec.MinAvailable.String(), replicas)
			if err != nil {
				p.add("%s: minAvailable: %v", where, err)
			} else if min >= replicas {
				p.add("%s: minAvailable %s of Deployment %s's %d replicas leaves no disruption possible: a node drain would hang", where, b.Spec.MinAvailable.String(), d.Name, replicas)
			}
		case b.Spec.MaxUnavailable != nil:
			max, err := intOrPercent(b.Spec.MaxUnavailable.String(), replicas)
			if err != nil {
				p.add("%s: maxUnavailable: %v", where, err)
			} else if max < 1 {
				p.add("%s: maxUnavailable %s leaves no disruption possible", where, b.Spec.MaxUnavailable.String())
			}
		default:
			p.add("%s: neither minAvailable nor maxUnavailable", where)
		}
	}
}

// spreadAcrossNodes reports whether d's pods ask to run on different
// nodes: a topology spread constraint or a pod anti-affinity term
// (required or preferred) on the node's host name whose selector selects
// the pods' own labels.
func spreadAcrossNodes(d *appsv1.Deployment) bool {
	own := labels.Set(d.Spec.Template.Labels)
	selects := func(s *metav1.LabelSelector) bool {
		sel, err := metaSelector(s)
		return err == nil && sel.Matches(own)
	}
	pod := d.Spec.Template.Spec
	for _, c := range pod.TopologySpreadConstraints {
		if c.TopologyKey == corev1.LabelHostname && selects(c.LabelSelector) {
			return true
		}
	}
	if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
		terms := slices.Clone(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution)
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
		for _, t := range terms {
			if t.TopologyKey == corev1.LabelHostname && selects(t.LabelSelector) {
				return true
			}
		}
	}
	return false
}
