package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svctest"
)

// TestStartsWhileTheClusterElects starts the service on a three-node
// JetStream cluster of which two nodes are down: with no quorum, no
// bucket or stream can be created, and the service tries again (logging
// each try) instead of exiting. Once the nodes are back and a leader is
// elected, it becomes ready and takes a payment.
func TestStartsWhileTheClusterElects(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster and the service as a process")
	}
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, ".."), 3)
	nodes[1].Kill()
	nodes[2].Kill()
	startWhileDown(t, nodes, nodes[1:])
}

// TestStartsBeforeTheClusterIsWhole starts the service on a three-node
// cluster that restarted with one node not back yet: the two others elect
// a leader, but it cannot place a stream of three replicas ("no suitable
// peers for placement") until it hears from the third. The service tries
// again until then instead of exiting.
func TestStartsBeforeTheClusterIsWhole(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster and the service as a process")
	}
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, ".."), 3)
	svctest.RestartWithout(t, nodes, 1)
	startWhileDown(t, nodes, nodes[2:])
}

// startWhileDown starts the service on nodes while down are not running,
// waits until it logs that it tries again, starts down, and then waits
// until the service is ready and takes a payment.
func startWhileDown(t *testing.T, nodes, down []*svctest.NATSNode) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	c := svctest.LaunchChild(t, childArgsEnv, "-data-dir "+t.TempDir()+" -addr 127.0.0.1:0 -instance elects -nats-replicas 3 -log-level info -nats-url "+svctest.ClientURLs(nodes), readyLine)
	c.WaitLog(ctx, t, "not done yet; retrying")
	for _, n := range down {
		n.Start(t)
	}
	c.WaitReady(ctx, t)

	// A cluster whose nodes have just come back may still move a
	// stream's leader, and a request caught in the move is answered 502
	// or 503, asking for a retry: the client sends its key again, as
	// clients do.
	a := &attempt{key: "elects-1", customer: "cust_elects"}
	client := &http.Client{Timeout: 30 * time.Second}
	var code int
	var body []byte
	for try := 1; ; try++ {
		var err error
		code, body, _, err = post(ctx, client, c.URL, a)
		require.NoError(t, err)
		if (code != http.StatusBadGateway && code != http.StatusServiceUnavailable) || try == 5 {
			break
		}
		t.Logf("try %d: %d %s", try, code, body)
		time.Sleep(time.Second)
	}
	require.Equal(t, http.StatusOK, code, "%s", body)
	var res struct{ Status string }
	require.NoError(t, json.Unmarshal(body, &res))
	assert.Equal(t, "SUCCESS", res.Status)
}

// TestStopWhileStarting stops the service with SIGTERM while its start
// waits for a cluster without quorum: it stops at once, saying it stopped
// before it was ready, and exits 0, as a stop asked for does — not 1 with
// "context canceled", which a supervisor takes for a failure.
func TestStopWhileStarting(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster and the service as a process")
	}
	svctest.StopWhileStarting(t, "..", childArgsEnv, "-instance stopped", readyLine)
}
