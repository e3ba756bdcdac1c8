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
