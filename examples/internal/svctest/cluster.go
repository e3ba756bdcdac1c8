package svctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taipattern/taikit/internal/servers"
)

// NATSNode is one nats-server process of a JetStream cluster on loopback
// ports, which a test can kill with SIGKILL and start again on the same
// store.
type NATSNode struct {
	Name       string
	ClientURL  string // nats://127.0.0.1:port
	MonitorURL string // http://127.0.0.1:port, with /healthz and /jsz
	// Logs holds the process's output, across its restarts.
	Logs *SyncBuffer

	bin, store string
	args       []string
	cmd        *exec.Cmd
	done       chan struct{}
}

// NATSServerBinary builds nats-server from the Go module the examples
// module requires (the release natsembed embeds), whatever release a
// distribution packages, and returns its path. dir is the examples
// module's directory or one under it.
func NATSServerBinary(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building nats-server: %v\n%s", err, out)
	}
	return bin
}

// StartNATSCluster starts n nats-server processes of bin clustered with
// JetStream, each with a store of its own, and waits until each is
// healthy: JetStream up and a meta leader elected. The processes are
// killed when the test ends. The ports are ones that were free a moment
// before: when a node cannot listen on one because something took it in
// between, the cluster starts again on others, up to three times.
func StartNATSCluster(t testing.TB, bin string, n int) []*NATSNode {
	t.Helper()
	return startNATSCluster(t, bin, n, func(k int) []int { return servers.FreePorts(t, k) })
}

// clusterAttempts is how many times startNATSCluster starts a cluster
// whose node found its port taken.
const clusterAttempts = 3

// startNATSCluster is StartNATSCluster taking its ports from ports, which
// returns k different ones.
func startNATSCluster(t testing.TB, bin string, n int, ports func(k int) []int) []*NATSNode {
	t.Helper()
	for attempt := 1; ; attempt++ {
		nodes, err := tryNATSCluster(t, bin, n, ports(3*n))
		if err == nil {
			return nodes
		}
		for _, node := range nodes {
			node.Kill()
		}
		if !errors.Is(err, errPortTaken) || attempt == clusterAttempts {
			t.Fatalf("%v\n%s", err, Logs(nodes))
		}
		t.Logf("starting the NATS cluster again on other ports: %v", err)
	}
}

// errPortTaken marks a node that exited because its port was taken.
var errPortTaken = errors.New("a port was taken")

// tryNATSCluster starts a cluster of n nodes on ports (n route ports,
// then each node's client and monitoring port) and waits until it is
// whole. On error it returns the nodes it made, for their logs.
func tryNATSCluster(t testing.TB, bin string, n int, ports []int) ([]*NATSNode, error) {
	t.Helper()
	nodes := make([]*NATSNode, n)
	clusterPorts := ports[:n]
	var routes []string
	for i := range nodes {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(clusterPorts[i]))
	}
	for i := range nodes {
		client, mon := ports[n+2*i], ports[n+2*i+1]
		name := "n" + strconv.Itoa(i+1)
		nodes[i] = &NATSNode{
			Name:       name,
			ClientURL:  "nats://127.0.0.1:" + strconv.Itoa(client),
			MonitorURL: "http://127.0.0.1:" + strconv.Itoa(mon),
			Logs:       &SyncBuffer{},
			bin:        bin,
			store:      t.TempDir(),
		}
		nodes[i].args = []string{"-a", "127.0.0.1", "-p", strconv.Itoa(client), "-m", strconv.Itoa(mon),
			"-n", name, "-js", "-sd", nodes[i].store, "--cluster_name", "test",
			"--cluster", routes[i], "--routes", strings.Join(routes, ",")}
	}
	for _, node := range nodes {
		node.Start(t)
		t.Cleanup(node.Kill)
	}
	for _, node := range nodes {
		if err := node.waitHealthy(time.Minute); err != nil {
			return nodes, err
		}
	}
	return nodes, waitWhole(nodes, time.Minute)
}

// waitWhole waits until the cluster's metadata group is whole: every node
// follows one leader in a group of all the nodes, with nothing pending,
// and the leader finds every other node current. A node is healthy once
// it has heard from a leader, which can be before the group has stored
// who its members are: a cluster killed then and restarted without a node
// could elect no leader at all.
func waitWhole(nodes []*NATSNode, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		state, err := metaState(nodes)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not whole within %v: %v (last: %s)", within, err, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type jszMeta struct {
	Meta struct {
		Leader   string `json:"leader"`
		Size     int    `json:"cluster_size"`
		Pending  int    `json:"pending"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
		} `json:"replicas"`
	} `json:"meta_cluster"`
}

// metaState returns nil when the nodes' metadata group is whole (see
// waitWhole), and what it read.
func metaState(nodes []*NATSNode) (string, error) {
	var b strings.Builder
	leaders := map[string]bool{}
	for _, n := range nodes {
		var m jszMeta
		if err := n.getJSON("/jsz", &m); err != nil {
			return b.String(), err
		}
		fmt.Fprintf(&b, "%s: %+v; ", n.Name, m.Meta)
		if m.Meta.Leader == "" || m.Meta.Size != len(nodes) || m.Meta.Pending != 0 {
			return b.String(), fmt.Errorf("%s: leader %q, %d members, %d pending", n.Name, m.Meta.Leader, m.Meta.Size, m.Meta.Pending)
		}
		leaders[m.Meta.Leader] = true
		if m.Meta.Leader != n.Name {
			continue
		}
		current := 0
		for _, r := range m.Meta.Replicas {
			if r.Current {
				current++
			}
		}
		if current != len(nodes)-1 {
			return b.String(), fmt.Errorf("leader %s finds %d of %d others current", n.Name, current, len(nodes)-1)
		}
	}
	if len(leaders) != 1 {
		return b.String(), fmt.Errorf("the nodes name %d leaders", len(leaders))
	}
	return b.String(), nil
}

// RestartWithout kills every node, then starts them again but the last
// down, and waits until those are healthy: a cluster that restarted with
// nodes not back yet. The nodes left down start with Start.
func RestartWithout(t testing.TB, nodes []*NATSNode, down int) {
	t.Helper()
	for _, n := range nodes {
		n.Kill()
	}
	up := nodes[:len(nodes)-down]
	for _, n := range up {
		n.Start(t)
	}
	for _, n := range up {
		n.WaitHealthy(t, time.Minute)
	}
}

// ClientURLs returns the nodes' client URLs, comma separated, as a
// service's -nats-url takes them.
func ClientURLs(nodes []*NATSNode) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.ClientURL
	}
	return strings.Join(urls, ",")
}

// Start starts the node's process (again, after Kill, on the same store).
func (n *NATSNode) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = n.Logs, n.Logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.cmd, n.done = cmd, done
}

// Running reports whether the node's process runs.
func (n *NATSNode) Running() bool { return n.cmd != nil }

// Kill ends the node's process with SIGKILL and waits for it.
func (n *NATSNode) Kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.done
	n.cmd = nil
}

// WaitHealthy waits until the node's /healthz answers 200, and fails the
// test when it has not within the time given, or as soon as the node's
// process has exited.
func (n *NATSNode) WaitHealthy(t testing.TB, within time.Duration) {
	t.Helper()
	if err := n.waitHealthy(within); err != nil {
		t.Fatalf("%v\n%s", err, n.Logs.String())
	}
}

func (n *NATSNode) waitHealthy(within time.Duration) error {
	deadline := time.Now().Add(within)
	// Each request ends at the deadline too: a monitor that takes it and
	// never answers would hold the wait forever.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for {
		select {
		case <-n.done: // nil for a node never started: not ready
			err := fmt.Errorf("%s exited before it was healthy", n.Name)
			if strings.Contains(n.Logs.String(), "address already in use") {
				err = fmt.Errorf("%w: %w", err, errPortTaken)
			}
			return err
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.MonitorURL+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy within %v", n.Name, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Logs returns the output of every node, each under its name.
func Logs(nodes []*NATSNode) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "--- %s (client %s):\n%s", n.Name, n.ClientURL, n.Logs.String())
	}
	return b.String()
}

// jszTimeout bounds each node's /jsz request in StreamLeader, answer
// included.
var jszTimeout = 5 * time.Second

// jszCluster is a group's cluster in /jsz: its leader's name.
type jszCluster struct {
	Leader string `json:"leader"`
}

type jszStreams struct {
	AccountDetails []struct {
		Streams []struct {
			Name      string     `json:"name"`
			Cluster   jszCluster `json:"cluster"`
			Consumers []struct {
				Name    string     `json:"name"`
				Cluster jszCluster `json:"cluster"`
			} `json:"consumer_detail"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// jsz returns the node's /jsz with its streams and their consumers. The
// request ends after jszTimeout: a monitor that takes it and never
// answers would hold the caller forever.
func (n *NATSNode) jsz() (jszStreams, error) {
	var jsz jszStreams
	err := n.getJSON("/jsz?consumers=true", &jsz)
	return jsz, err
}

// getJSON decodes the node's monitoring answer at path into v. The
// request ends after jszTimeout.
func (n *NATSNode) getJSON(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), jszTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.MonitorURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s%s: %s", n.Name, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// StreamLeader returns the running node that leads the named stream's
// group, as the nodes' /jsz reports it, or nil when none says. A node
// whose monitor does not answer within a few seconds is passed over.
func StreamLeader(nodes []*NATSNode, stream string) *NATSNode {
	return groupLeader(nodes, stream, "")
}

// ConsumerLeader returns the running node that leads the group of the
// named stream's consumer (a durable), as StreamLeader does the stream's.
func ConsumerLeader(nodes []*NATSNode, stream, consumer string) *NATSNode {
	return groupLeader(nodes, stream, consumer)
}

// groupLeader returns the running node leading stream's group, or its
// consumer's when consumer is not empty.
func groupLeader(nodes []*NATSNode, stream, consumer string) *NATSNode {
	for _, n := range nodes {
		if !n.Running() {
			continue
		}
		jsz, err := n.jsz()
		if err != nil {
			continue
		}
		for _, a := range jsz.AccountDetails {
			for _, s := range a.Streams {
				if s.Name != stream {
					continue
				}
				leader := s.Cluster.Leader
				if consumer != "" {
					leader = ""
					for _, c := range s.Consumers {
						if c.Name == consumer {
							leader = c.Cluster.Leader
						}
					}
				}
				if leader == "" {
					continue
				}
				for _, m := range nodes {
					if m.Name == leader && m.Running() {
						return m
					}
				}
			}
		}
	}
	return nil
}

// StopWhileStarting checks that a service stopped while its start waits
// ends as a stop asked for. It starts a three-node NATS cluster (the
// nats-server for repo, NATSServerBinary's dir) with two nodes down, so
// that no stream can be made, launches the service (env and args as
// LaunchChild takes them; the data dir, address, replicas and NATS URL
// added) and, once its start logs that it tries again, sends it SIGTERM.
// The test fails unless the service exits 0, having logged "stopped
// before it was ready" — not 1 with "context canceled", which a
// supervisor takes for a failure.
func StopWhileStarting(t *testing.T, repo, env, args string, ready *regexp.Regexp) {
	t.Helper()
	nodes := StartNATSCluster(t, NATSServerBinary(t, repo), 3)
	nodes[1].Kill()
	nodes[2].Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := LaunchChild(t, env, fmt.Sprintf("%s -data-dir %s -addr 127.0.0.1:0 -nats-replicas 3 -log-level info -nats-url %s",
		args, t.TempDir(), ClientURLs(nodes)), ready)
	c.WaitLog(ctx, t, "not done yet; retrying")
	if err := c.Stop(ctx, t, syscall.SIGTERM); err != nil {
		t.Fatalf("a stop asked for during the start exited with %v, not 0\n%s", err, c.Logs.String())
	}
	if logs := c.Logs.String(); !strings.Contains(logs, `msg="stopped before it was ready"`) || strings.Contains(logs, "context canceled") {
		t.Fatalf("the service did not say it stopped before it was ready\n%s", logs)
	}
}
