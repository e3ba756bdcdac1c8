package check

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// podIPHost stands for the pod's IP where the checks read ALLOWED_HOSTS
// and ADDR: what a variable of the field status.podIP (or status.podIPs,
// every IP of the pod) becomes. The .invalid domain is no real name.
const podIPHost = "pod-ip.invalid"

// podIPFields are the pod's fields that give its IP, each known as
// podIPHost.
var podIPFields = map[string]string{"status.podIP": podIPHost, "status.podIPs": podIPHost}

// checkProbeHosts checks that the service answers the Host its probes
// and a pod-discovering Prometheus send: the services answer a Host their
// allow-list leaves out with 421, so a probe would never pass (the pod
// never ready, the liveness probe restarting it) and a scrape would get no
// metrics. The kubelet sends a probe's Host header, else its host, else
// the pod's IP (each with the port); Prometheus's pod discovery, the pod's
// IP. The allow-list is ALLOWED_HOSTS, or when it is not given, or empty,
// the services' default: localhost, the loopback addresses, the machine's
// name (the pod's hostname) and ADDR's host. A list or ADDR whose value is
// not known here (a Secret's) is not checked.
func checkProbeHosts(p *problems, where string, c corev1.Container, scraped bool, s podScope) {
	env := containerEnvFields(c, s.ns, s.configMaps, s.secrets, podIPFields)
	allowed := map[string]bool{}
	var list, hint string
	if v, ok := env["ALLOWED_HOSTS"]; ok && (!v.known || strings.Trim(v.value, ", \t") != "") {
		if !v.known {
			return
		}
		for _, h := range strings.Split(v.value, ",") {
			h = allowedHost(strings.TrimSpace(h))
			if h == "*" {
				return
			}
			allowed[h] = true
		}
		list = "ALLOWED_HOSTS " + strings.ReplaceAll(v.value, podIPHost, "<pod IP>") + v.origin()
		if strings.Contains(v.value, "$(") {
			hint = " ($(VAR) is expanded only in env's values, from variables given before it)"
		}
	} else {
		for _, h := range []string{"localhost", "127.0.0.1", "::1", s.hostname} {
			allowed[allowedHost(h)] = true
		}
		if addr, ok := env["ADDR"]; ok {
			if !addr.known {
				return
			}
			// As the services take it: an address of every interface
			// names no host.
			if h, _, err := net.SplitHostPort(addr.value); err == nil && h != "0.0.0.0" && h != "::" {
				allowed[allowedHost(h)] = true
			}
		}
		list = "the default Host allow-list (no ALLOWED_HOSTS: localhost, the loopback addresses, the pod's host name and ADDR's host)"
	}

	var hosts []string
	senders := map[string][]string{}
	send := func(host, who string) {
		h := allowedHost(host)
		if senders[h] == nil {
			hosts = append(hosts, h)
		}
		senders[h] = append(senders[h], who)
	}
	for _, pr := range []struct {
		kind  string
		probe *corev1.Probe
	}{{"startup", c.StartupProbe}, {"readiness", c.ReadinessProbe}, {"liveness", c.LivenessProbe}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			continue
		}
		send(probeHost(pr.probe.HTTPGet), "the "+pr.kind+" probe")
	}
	if scraped {
		send(podIPHost, "a pod-discovering Prometheus (prometheus.io/scrape)")
	}
	for _, h := range hosts {
		if allowed[h] {
			continue
		}
		name := h
		if h == podIPHost {
			name = "the pod's IP"
		}
		who := senders[h]
		verb := "sends"
		if len(who) > 1 {
			verb = "send"
		}
		p.add("%s: %s leaves out %s, the Host that %s %s: the service answers 421 to it%s", where, list, name, joinAnd(who), verb, hint)
	}
}

// probeHost is the Host the kubelet sends with an HTTP probe: its first
// Host header if not empty, else its host, else the pod's IP (podIPHost).
func probeHost(g *corev1.HTTPGetAction) string {
	for _, h := range g.HTTPHeaders {
		if http.CanonicalHeaderKey(h.Name) == "Host" {
			if h.Value != "" {
				return h.Value
			}
			break
		}
	}
	if g.Host != "" {
		return g.Host
	}
	return podIPHost
}

// scrapedContainer reports whether a pod-discovering Prometheus scrapes c
// by the prometheus.io annotations: scrape "true", and the port annotation
// one of c's ports (without it, every port declared is a target).
func scrapedContainer(annotations map[string]string, c corev1.Container) bool {
	if annotations["prometheus.io/scrape"] != "true" {
		return false
	}
	port, ok := annotations["prometheus.io/port"]
	if !ok {
		return len(c.Ports) > 0
	}
	number, err := strconv.Atoi(port)
	return err == nil && number > 0 && declaresPort(c.Ports, "", number)
}

// joinAnd joins words as a list in prose: "a", "a and b", "a, b and c".
func joinAnd(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return fmt.Sprintf("%s and %s", strings.Join(words[:len(words)-1], ", "), words[len(words)-1])
}
