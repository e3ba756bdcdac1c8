package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svctest"
)

// TestStartsBeforeTheClusterIsWhole starts the service on a three-node
// JetStream cluster that restarted with one node not back yet: the two
// others elect a leader, but it cannot place a bucket of three replicas
// ("no suitable peers for placement") until it hears from the third. The
// service tries again, logging each try, instead of exiting; once the
// node is back it becomes ready and rolls a deployment out.
func TestStartsBeforeTheClusterIsWhole(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster and the service as a process")
	}
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, ".."), 3)
	svctest.RestartWithout(t, nodes, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	c := svctest.LaunchChild(t, childArgsEnv, fmt.Sprintf("-data-dir %s -addr 127.0.0.1:0 -instance starts -nats-url %s -nats-replicas 3 "+
		"-stages canary:5:200ms,prod:100:0s -health-interval 100ms -min-requests 0", t.TempDir(), svctest.ClientURLs(nodes)), readyLine)
	c.WaitLog(ctx, t, "not done yet; retrying")
	nodes[2].Start(t)
	c.WaitReady(ctx, t)

	r := deploy(t, c.URL, map[string]any{"service": "web-frontend", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, c.URL, r.deployment(t).ID, ended)
	assert.Equal(t, StatusSuccess, d.Status, "%+v\n%s", d, c.Logs.String())
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
