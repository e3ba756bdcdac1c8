package svctest

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"testing"
	"time"
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
