package svctest

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taipattern/taikit/internal/servers"
)

func TestStreamLeaderPassesOverAHungMonitor(t *testing.T) {
	defer func(d time.Duration) { jszTimeout = d }(jszTimeout)
	jszTimeout = 100 * time.Millisecond
	hung := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(hung)
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"account_details":[{"stream_detail":[{"name":"S","cluster":{"leader":"n2"}}]}]}`))
	}))
	defer leader.Close()
	// Running nodes, as far as StreamLeader can tell; no process is started.
	nodes := []*NATSNode{
		{Name: "n1", MonitorURL: stuck.URL, cmd: &exec.Cmd{}},
		{Name: "n2", MonitorURL: leader.URL, cmd: &exec.Cmd{}},
	}
	got := make(chan *NATSNode, 1)
	go func() { got <- StreamLeader(nodes, "S") }()
	// A monitor that takes the request and never answers is passed over;
	// StreamLeader waited for its answer forever.
	select {
	case n := <-got:
		if n != nodes[1] {
			t.Fatalf("StreamLeader = %v, want n2", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("StreamLeader still waits on a monitor that never answers")
	}
}

// ConsumerLeader reads the leader of the consumer's own group, which
// need not be the stream's; a consumer of the same name on another
// stream is not it.
func TestConsumerLeader(t *testing.T) {
	monitor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("consumers") != "true" {
			t.Errorf("asked /jsz?%s, without the consumers", r.URL.RawQuery)
		}
		_, _ = w.Write([]byte(`{"account_details":[{"stream_detail":[` +
			`{"name":"OTHER","cluster":{"leader":"n1"},"consumer_detail":[{"name":"work","cluster":{"leader":"n1"}}]},` +
			`{"name":"S","cluster":{"leader":"n1"},"consumer_detail":[{"name":"idle","cluster":{"leader":"n1"}},{"name":"work","cluster":{"leader":"n3"}}]}]}]}`))
	}))
	defer monitor.Close()
	nodes := []*NATSNode{
		{Name: "n1", MonitorURL: monitor.URL, cmd: &exec.Cmd{}},
		{Name: "n2", MonitorURL: monitor.URL, cmd: &exec.Cmd{}},
		{Name: "n3", MonitorURL: monitor.URL, cmd: &exec.Cmd{}},
	}
	if n := ConsumerLeader(nodes, "S", "work"); n != nodes[2] {
		t.Fatalf("ConsumerLeader(S, work) = %v, want n3", n)
	}
	if n := StreamLeader(nodes, "S"); n != nodes[0] {
		t.Fatalf("StreamLeader(S) = %v, want n1", n)
	}
	if n := ConsumerLeader(nodes, "S", "none"); n != nil {
		t.Fatalf("ConsumerLeader(S, none) = %v, want nil", n)
	}
	// A leader that is not running is no leader.
	nodes[2].cmd = nil
	if n := ConsumerLeader(nodes, "S", "work"); n != nil {
		t.Fatalf("ConsumerLeader(S, work) with n3 down = %v, want nil", n)
	}
}

// A node whose process exits fails the wait at once, and one that could
// not take its port says so; the wait lasted its whole time.
func TestWaitHealthyEndsWhenTheNodeExits(t *testing.T) {
	n := &NATSNode{Name: "n1", MonitorURL: "http://127.0.0.1:1", Logs: &SyncBuffer{},
		bin: "/bin/sh", args: []string{"-c", "echo 'listen tcp 127.0.0.1:1: bind: address already in use' >&2; exit 1"}}
	n.Start(t)
	defer n.Kill()
	got := make(chan error, 1)
	go func() { got <- n.waitHealthy(time.Minute) }()
	select {
	case err := <-got:
		if !errors.Is(err, errPortTaken) {
			t.Fatalf("waitHealthy = %v, want an exit on a taken port", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitHealthy still waits on a node that exited")
	}
}

// A cluster one of whose ports was taken between finding it free and the
// node's start starts again on other ports.
func TestStartNATSClusterMovesOffATakenPort(t *testing.T) {
	bin := servers.Binary(t, "nats-server", "nats-server")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	calls := 0
	nodes := startNATSCluster(t, bin, 3, func(k int) []int {
		calls++
		ports := servers.FreePorts(t, k)
		if calls == 1 {
			ports[3] = takenPort // the first node's client port
		}
		return ports
	})
	if calls != 2 {
		t.Fatalf("ports asked %d times, want 2", calls)
	}
	for _, n := range nodes {
		if strings.HasSuffix(n.ClientURL, ":"+strconv.Itoa(takenPort)) {
			t.Fatalf("%s listens on the taken port: %s", n.Name, n.ClientURL)
		}
	}
}
