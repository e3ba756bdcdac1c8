package check

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// networkScope is what the NetworkPolicies' checks read of the other
// objects.
type networkScope struct {
	deps       []*appsv1.Deployment
	services   []*corev1.Service
	namespaces map[string]*corev1.Namespace
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

// checkedPolicy is a NetworkPolicy with its podSelector read.
type checkedPolicy struct {
	*networkingv1.NetworkPolicy
	sel labels.Selector // nil when the API would refuse it
}

// selects reports whether the policy applies to d's pods.
func (cp checkedPolicy) selects(d *appsv1.Deployment) bool {
	return cp.sel != nil && cp.Namespace == d.Namespace && cp.sel.Matches(labels.Set(d.Spec.Template.Labels))
}

// checkNetworkPolicies checks the NetworkPolicies against the pods they
// select and the Services and URLs those pods serve and call: see
// CheckManifests.
func checkNetworkPolicies(p *problems, pols []*networkingv1.NetworkPolicy, s networkScope) {
	var checked []checkedPolicy
	for _, np := range pols {
		where := "NetworkPolicy " + np.Namespace + "/" + np.Name
		cp := checkedPolicy{NetworkPolicy: np}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			p.add("%s: podSelector: %v", where, err)
		} else {
			cp.sel = sel
		}
		checkPeerSelectors(p, where, np)
		checked = append(checked, cp)
		if cp.sel == nil {
			continue
		}
		var matched []*appsv1.Deployment
		for _, d := range s.deps {
			if cp.selects(d) {
				matched = append(matched, d)
			}
		}
		if len(matched) == 0 {
			p.add("%s: its podSelector selects no Deployment's pods: it holds none of them to anything", where)
			continue
		}
		// A named port is the port of that name of the pod a connection
		// goes to; on a pod without it, the rule opens nothing.
		for _, d := range matched {
			ports := podPorts(d.Spec.Template.Spec)
			for _, rule := range np.Spec.Ingress {
				for _, pp := range rule.Ports {
					if !slices.ContainsFunc(ports, func(c corev1.ContainerPort) bool { return policyPortMatches(pp, c) }) {
						p.add("%s: ingress port %s is not a port Deployment %s's containers declare", where, policyPortString(pp), d.Name)
					}
				}
			}
		}
	}
	for _, d := range s.deps {
		checkPodNetwork(p, d, checked, s)
	}
}

// checkPeerSelectors reports a peer's selector the API would refuse.
func checkPeerSelectors(p *problems, where string, np *networkingv1.NetworkPolicy) {
	var peers []networkingv1.NetworkPolicyPeer
	for _, r := range np.Spec.Ingress {
		peers = append(peers, r.From...)
	}
	for _, r := range np.Spec.Egress {
		peers = append(peers, r.To...)
	}
	for _, peer := range peers {
		for _, s := range []struct {
			field string
			sel   *metav1.LabelSelector
		}{{"podSelector", peer.PodSelector}, {"namespaceSelector", peer.NamespaceSelector}} {
			if s.sel == nil {
				continue
			}
			if _, err := metav1.LabelSelectorAsSelector(s.sel); err != nil {
				p.add("%s: a peer's %s: %v", where, s.field, err)
			}
		}
	}
}

// checkPodNetwork checks a Deployment's pods against the policies that
// select them: a default-deny ingress policy among them; its Services'
// ports and its scrape port open to other namespaces; and, when its
// egress is restricted, egress to every URL its containers are given and
// to DNS.
func checkPodNetwork(p *problems, d *appsv1.Deployment, pols []checkedPolicy, s networkScope) {
	where := "Deployment " + d.Namespace + "/" + d.Name
	var ingress []networkingv1.NetworkPolicyIngressRule
	var egress []networkingv1.NetworkPolicyEgressRule
	var ingressIsolated, egressIsolated, defaultDeny bool
	for _, cp := range pols {
		if !cp.selects(d) {
			continue
		}
		in, out := policyDirections(cp.NetworkPolicy)
		if in {
			ingressIsolated = true
			defaultDeny = defaultDeny || len(cp.Spec.Ingress) == 0
			ingress = append(ingress, cp.Spec.Ingress...)
		}
		if out {
			egressIsolated = true
			egress = append(egress, cp.Spec.Egress...)
		}
	}
	if !defaultDeny {
		p.add("%s: no default-deny ingress NetworkPolicy (policyTypes Ingress, no ingress rule) selects its pods: a change to the policies that let their traffic in may open every port of theirs to every pod", where)
	}
	if ingressIsolated {
		checkOpenPorts(p, where, d, ingress, s.services)
	}
	if egressIsolated {
		checkEgress(p, where, d, egress, s)
	}
}

// policyDirections returns the directions a policy isolates the pods it
// selects in, as the API server reads it: its policyTypes, or when it
// gives none, ingress, and egress too when it has egress rules.
func policyDirections(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress), slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
}

// checkOpenPorts checks that the ports the pods serve others on — each
// Service's target port, and the port a pod-discovering Prometheus scrapes
// — are open to pods of other namespaces, where the clients, an Ingress
// controller and Prometheus run: under a default-deny they are refused
// unless an ingress rule lets them through. A rule lets them through when
// it names no peer or names a namespaceSelector or an ipBlock; a
// podSelector alone is of the policy's own namespace.
func checkOpenPorts(p *problems, where string, d *appsv1.Deployment, rules []networkingv1.NetworkPolicyIngressRule, services []*corev1.Service) {
	ports := podPorts(d.Spec.Template.Spec)
	open := func(c corev1.ContainerPort) bool {
		for _, r := range rules {
			beyond := len(r.From) == 0 || slices.ContainsFunc(r.From, func(peer networkingv1.NetworkPolicyPeer) bool {
				return peer.NamespaceSelector != nil || peer.IPBlock != nil
			})
			if beyond && (len(r.Ports) == 0 || slices.ContainsFunc(r.Ports, func(pp networkingv1.NetworkPolicyPort) bool { return policyPortMatches(pp, c) })) {
				return true
			}
		}
		return false
	}
	for _, svc := range services {
		if svc.Namespace != d.Namespace || len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName ||
			!labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			proto := protocolOr(sp.Protocol)
			i := slices.IndexFunc(ports, func(c corev1.ContainerPort) bool {
				if protocolOr(c.Protocol) != proto {
					return false
				}
				if sp.TargetPort.String() == "0" || sp.TargetPort.String() == "" {
					return c.ContainerPort == sp.Port
				}
				return sp.TargetPort.Type == intstr.String && c.Name == sp.TargetPort.StrVal || sp.TargetPort.Type == intstr.Int && c.ContainerPort == sp.TargetPort.IntVal
			})
			if i < 0 {
				continue // a port not declared: checkService reports it
			}
			if c := ports[i]; !open(c) {
				p.add("Service %s/%s: its port %s reaches Deployment %s's pods on %s, which no NetworkPolicy opens to pods of other namespaces: its clients there, an Ingress controller's too, are refused", svc.Namespace, svc.Name, sp.Name, d.Name, containerPortString(c))
			}
		}
	}
	a := d.Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" {
		return
	}
	number, err := strconv.Atoi(a["prometheus.io/port"])
	if err != nil {
		return // every port declared is scraped, or the annotation is wrong: checkScrape reports it
	}
	for _, c := range ports {
		if c.ContainerPort == int32(number) && protocolOr(c.Protocol) == corev1.ProtocolTCP && !open(c) {
			p.add("%s: the port %d a pod-discovering Prometheus scrapes (prometheus.io/port) is open to no pod of another namespace: a Prometheus there gets no metrics", where, number)
		}
	}
}

// checkEgress checks that pods whose egress a policy restricts may still
// reach what their containers are given to call: the host and port of
// every URL of a variable named *_URL or *_ENDPOINT (a comma-separated
// list, as NATS_URL may be, by each of its URLs) whose value is known
// here, and DNS (UDP port 53) when one names its host by name. A URL
// without a port has its scheme's (http 80, https 443, nats 4222, redis
// 6379); one of another scheme without a port is not checked. A host
// <service>.<namespace>.svc[.<cluster domain>] lies in that namespace, a
// host of one label in the pod's; one of two labels may be a Service of
// the namespace the second one names, or a host beyond the cluster; any
// other name lies beyond the cluster. An IP address is not checked
// against the rules' peers.
func checkEgress(p *problems, where string, d *appsv1.Deployment, rules []networkingv1.NetworkPolicyEgressRule, s networkScope) {
	pod := d.Spec.Template.Spec
	named := map[string]bool{} // the variables that name a host by name
	type container struct {
		where string
		c     corev1.Container
	}
	var cs []container
	for _, c := range pod.InitContainers {
		cs = append(cs, container{where + " init container " + c.Name, c})
	}
	for _, c := range pod.Containers {
		cs = append(cs, container{where + " container " + c.Name, c})
	}
	for _, wc := range cs {
		cw, c := wc.where, wc.c
		env := containerEnv(c, d.Namespace, s.configMaps, s.secrets)
		for _, name := range slices.Sorted(maps.Keys(env)) {
			v := env[name]
			if !v.known || !strings.HasSuffix(name, "_URL") && !strings.HasSuffix(name, "_ENDPOINT") {
				continue
			}
			for _, raw := range strings.Split(v.value, ",") {
				u, err := url.Parse(strings.TrimSpace(raw))
				if err != nil || u.Scheme == "" || u.Hostname() == "" {
					continue
				}
				port, ok := urlPort(u)
				if !ok {
					continue
				}
				host := u.Hostname()
				dest := destinationOf(host, d.Namespace)
				if net.ParseIP(host) == nil {
					named[name] = true
				}
				if !egressAllows(rules, corev1.ProtocolTCP, port, dest, d.Namespace, s.namespaces) {
					p.add("%s: %s%s names %s, but no egress rule of a NetworkPolicy of its pods lets TCP port %d out%s", cw, name, v.origin(), net.JoinHostPort(host, strconv.Itoa(int(port))), port, dest)
				}
			}
		}
	}
	if len(named) > 0 && !egressAllows(rules, corev1.ProtocolUDP, 53, destination{}, d.Namespace, s.namespaces) {
		p.add("%s: no egress rule of a NetworkPolicy of its pods lets DNS (UDP port 53) out, and %s name hosts by name: the service resolves none of them", where, joinAnd(slices.Sorted(maps.Keys(named))))
	}
}

// urlPort returns u's port, or its scheme's when it gives none.
func urlPort(u *url.URL) (int32, bool) {
	if ps := u.Port(); ps != "" {
		n, err := strconv.ParseUint(ps, 10, 16)
		return int32(n), err == nil && n > 0
	}
	n, ok := map[string]int32{"http": 80, "https": 443, "nats": 4222, "tls": 4222, "redis": 6379, "rediss": 6379}[u.Scheme]
	return n, ok
}

// destination is where a URL's host lies: in a namespace of the cluster,
// beyond the cluster, or either; the zero value is anywhere (an IP
// address, not checked against peers).
type destination struct {
	namespace string // a Service's namespace, or ""
	beyond    bool   // possibly a host outside the cluster
}

// String ends a message: " to namespace taikit", " beyond the cluster",
// " to namespace tracing or beyond the cluster".
func (d destination) String() string {
	switch {
	case d.namespace != "" && d.beyond:
		return " to namespace " + d.namespace + " or beyond the cluster"
	case d.namespace != "":
		return " to namespace " + d.namespace
	case d.beyond:
		return " beyond the cluster"
	}
	return ""
}

// destinationOf returns where a host lies, read as a pod of namespace ns
// resolves it (its search path holding ns.svc.<domain> and svc.<domain>).
func destinationOf(host, ns string) destination {
	if net.ParseIP(host) != nil {
		return destination{}
	}
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	if i := slices.Index(labels, "svc"); i >= 2 {
		return destination{namespace: labels[i-1]}
	}
	switch len(labels) {
	case 1:
		return destination{namespace: ns}
	case 2:
		return destination{namespace: labels[1], beyond: true}
	}
	return destination{beyond: true}
}

// egressAllows reports whether a rule lets a connection of that protocol
// and port out to dest, from a pod of namespace ns. A named port is not
// checked: it names the port of the pod connected to, unknown here.
func egressAllows(rules []networkingv1.NetworkPolicyEgressRule, proto corev1.Protocol, port int32, dest destination, ns string, namespaces map[string]*corev1.Namespace) bool {
	for _, r := range rules {
		portOK := len(r.Ports) == 0 || slices.ContainsFunc(r.Ports, func(pp networkingv1.NetworkPolicyPort) bool {
			if protocolOrPolicy(pp.Protocol) != proto {
				return false
			}
			return pp.Port == nil || pp.Port.Type == intstr.String || inPortRange(pp, port)
		})
		if portOK && (len(r.To) == 0 || slices.ContainsFunc(r.To, func(peer networkingv1.NetworkPolicyPeer) bool {
			return peerAdmits(peer, dest, ns, namespaces)
		})) {
			return true
		}
	}
	return false
}

// peerAdmits reports whether a peer of an egress rule of a policy of
// namespace ns takes in dest: an ipBlock any (its addresses are not known
// here); a podSelector alone a destination in ns; a namespaceSelector one
// in a namespace it selects, by the labels of the namespace's object among
// the manifests and the name label the API server gives every namespace.
// A destination possibly beyond the cluster is taken in by an ipBlock.
func peerAdmits(peer networkingv1.NetworkPolicyPeer, dest destination, ns string, namespaces map[string]*corev1.Namespace) bool {
	if peer.IPBlock != nil || dest == (destination{}) {
		return true
	}
	if dest.namespace == "" {
		return false
	}
	if peer.NamespaceSelector == nil {
		return dest.namespace == ns
	}
	sel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
	if err != nil {
		return false // reported by checkPeerSelectors
	}
	set := labels.Set{corev1.LabelMetadataName: dest.namespace}
	if o := namespaces[dest.namespace]; o != nil {
		for k, v := range o.Labels {
			set[k] = v
		}
		set[corev1.LabelMetadataName] = dest.namespace
	}
	return sel.Matches(set)
}

// podPorts returns the ports a pod's serving containers declare.
func podPorts(pod corev1.PodSpec) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, c := range servingContainers(pod) {
		out = append(out, c.Ports...)
	}
	return out
}

// policyPortMatches reports whether a policy's port is the container's
// port: the same protocol (TCP when not given), and the same name, or a
// number (or range from port to endPort) that holds it; a policy port
// without a port is every port of its protocol.
func policyPortMatches(pp networkingv1.NetworkPolicyPort, c corev1.ContainerPort) bool {
	if protocolOrPolicy(pp.Protocol) != protocolOr(c.Protocol) {
		return false
	}
	switch {
	case pp.Port == nil:
		return true
	case pp.Port.Type == intstr.String:
		return pp.Port.StrVal != "" && pp.Port.StrVal == c.Name
	}
	return inPortRange(pp, c.ContainerPort)
}

// inPortRange reports whether port is a numbered policy port's number, or
// within its range to endPort.
func inPortRange(pp networkingv1.NetworkPolicyPort, port int32) bool {
	if pp.Port == nil || pp.Port.Type == intstr.String {
		return false
	}
	end := pp.Port.IntVal
	if pp.EndPort != nil {
		end = *pp.EndPort
	}
	return pp.Port.IntVal <= port && port <= end
}

// policyPortString is a policy's port as messages write it: http/TCP,
// 3001/TCP, 3000-3010/TCP, every TCP port.
func policyPortString(pp networkingv1.NetworkPolicyPort) string {
	proto := protocolOrPolicy(pp.Protocol)
	switch {
	case pp.Port == nil:
		return "every " + string(proto) + " port"
	case pp.EndPort != nil:
		return fmt.Sprintf("%s-%d/%s", pp.Port.String(), *pp.EndPort, proto)
	}
	return pp.Port.String() + "/" + string(proto)
}

// containerPortString is a container's port as messages write it:
// http (3001/TCP).
func containerPortString(c corev1.ContainerPort) string {
	s := fmt.Sprintf("%d/%s", c.ContainerPort, protocolOr(c.Protocol))
	if c.Name == "" {
		return s
	}
	return c.Name + " (" + s + ")"
}

// protocolOr returns a port's protocol, TCP when not given, as the API
// server defaults it.
func protocolOr(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// protocolOrPolicy is protocolOr for a policy's port, whose protocol is a
// pointer.
func protocolOrPolicy(p *corev1.Protocol) corev1.Protocol {
	if p == nil {
		return corev1.ProtocolTCP
	}
	return protocolOr(*p)
}
