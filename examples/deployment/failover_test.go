package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svctest"
)

// TestWaveSurvivesNATSFailover runs two replicas on a three-node
// JetStream cluster (every stream and bucket on three nodes) and sends
// three waves of twelve deployments. In the middle of the first it kills
// the node leading the deployments bucket with SIGKILL and starts it
// again, in the second the node leading the stable versions' bucket:
// every deployment succeeds. In the middle of the third it kills one
// replica with SIGKILL and starts it again: its rollouts in flight roll
// back as interrupted by a restart, the others succeed. Every deployment
// ends, once, in a terminal state both replicas report alike; none is
// validated twice in a region, and no trail ends one twice.
func TestWaveSurvivesNATSFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster and two service processes")
	}
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, ".."), 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	type replica struct {
		name, dir string
		mu        sync.Mutex
		child     *svctest.Child
	}
	args := func(r *replica) string {
		return fmt.Sprintf("-data-dir %s -addr 127.0.0.1:0 -instance %s -nats-url %s -nats-replicas 3 "+
			"-stages canary:5:1500ms,staging:25:1500ms,prod:100:0s -health-interval 100ms -min-requests 0",
			r.dir, r.name, svctest.ClientURLs(nodes))
	}
	start := func(r *replica) {
		c := svctest.StartChild(ctx, t, childArgsEnv, args(r), readyLine)
		r.mu.Lock()
		r.child = c
		r.mu.Unlock()
	}
	url := func(r *replica) string {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.child.URL
	}
	replicas := []*replica{{name: "dep-1", dir: t.TempDir()}, {name: "dep-2", dir: t.TempDir()}}
	for _, r := range replicas {
		start(r)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range replicas {
				r.mu.Lock()
				t.Logf("%s's log:\n%s", r.name, r.child.Logs.String())
				r.mu.Unlock()
			}
		}
	})

	services := []string{"web-frontend", "checkout", "search", "cart", "orders", "pricing"}
	wave := func(version string) []string {
		var ids []string
		for i := range 12 {
			region := []string{"us-west-2", "us-east-1"}[i/len(services)]
			r := deploy(t, url(replicas[i%2]), map[string]any{"service": services[i%len(services)], "version": version, "target_region": region},
				"Prefer", "respond-async")
			require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
			ids = append(ids, r.deployment(t).ID)
		}
		return ids
	}
	get := func(base, id string) (Deployment, bool) {
		r := do(t, "GET", base+"/deploy/"+id, nil)
		if r.Code != http.StatusOK {
			return Deployment{}, false
		}
		return r.deployment(t), true
	}
	final := map[string]Deployment{}
	// waitEnds waits until every deployment has ended, and checks that both
	// replicas report the same end.
	waitEnds := func(ids []string) map[string]int {
		statuses := map[string]int{}
		for _, id := range ids {
			var last Deployment
			require.Eventually(t, func() bool {
				d, ok := get(url(replicas[0]), id)
				last = d
				return ok && ended(d)
			}, 3*time.Minute, 50*time.Millisecond, "deployment %s ends; last %+v\n%s", id, &last, replicas[0].child.Logs.String())
			final[id] = last
			statuses[last.Status]++
			d, ok := get(url(replicas[1]), id)
			require.True(t, ok, id)
			assert.Equal(t, last.Status, d.Status, "%s: both replicas see one end", id)
			assert.Equal(t, last.CompletedAt, d.CompletedAt, "%s: both replicas see one end", id)
		}
		return statuses
	}

	// losingLeader sends a wave of version, kills the node leading stream
	// a second into it and starts it again: every deployment succeeds.
	losingLeader := func(name, version, stream string) []string {
		ids := wave(version)
		time.Sleep(time.Second)
		var victim *svctest.NATSNode
		require.Eventually(t, func() bool { victim = svctest.StreamLeader(nodes, stream); return victim != nil },
			30*time.Second, 50*time.Millisecond, "a node leads %s", stream)
		victim.Kill()
		time.Sleep(3 * time.Second)
		victim.Start(t)
		victim.WaitHealthy(t, time.Minute)
		statuses := waitEnds(ids)
		for _, id := range ids {
			d := final[id]
			msg := ""
			if d.ErrorMessage != nil {
				msg = *d.ErrorMessage
			}
			assert.Equal(t, StatusSuccess, d.Status, "%s (%s) succeeds through the loss of %s's leader: %s", id, d.Service, stream, msg)
		}
		t.Logf("%s, the node leading %s (%s) killed and restarted: %v", name, stream, victim.Name, statuses)
		return ids
	}
	// Wave 1: the node leading the deployments bucket goes in the middle
	// of it, and comes back. Losing one node of three stops nothing.
	first := losingLeader("wave 1", "v1.1.0", "KV_deployments")
	// Wave 1b: the node leading the stable versions' bucket. Its group
	// elects a new leader no sooner than four seconds later (the servers'
	// election timeout), and the rollouts end in that time: the stable
	// version each records at its end waits for the new leader rather than
	// failing the job (which was redelivered and rolled back as cut off by
	// a restart).
	stableWave := losingLeader("wave 1b", "v1.2.0", "KV_deploy_stable")

	// Wave 2: a replica killed in the middle of it, and started again. Its
	// rollouts in flight roll back, reported as interrupted by a restart;
	// the others succeed.
	second := wave("v2.0.0")
	time.Sleep(time.Second)
	dead := replicas[1]
	require.NoError(t, dead.child.Cmd.Process.Signal(syscall.SIGKILL))
	<-dead.child.Done
	start(dead)
	statuses := waitEnds(second)
	for _, id := range second {
		if d := final[id]; d.Status != StatusSuccess {
			require.NotNil(t, d.ErrorMessage, id)
			assert.Contains(t, *d.ErrorMessage, "by a restart of the service", "%s (%s) ended %s", id, d.Service, d.Status)
		}
	}
	t.Logf("wave 2, replica %s killed and restarted: %v", dead.name, statuses)
	ids := append(append(first, stableWave...), second...)

	// Stop both, so their trails are whole, then count: a deployment is
	// validated at most once per region and ended at most once. (A trail's
	// last lines may be lost with a process killed by SIGKILL, so at most:
	// a second run or end would show.)
	for _, r := range replicas {
		require.NoError(t, r.child.Stop(ctx, t, syscall.SIGTERM))
	}
	runs, ends := map[string]int{}, map[string]int{}
	for _, r := range replicas {
		for _, line := range auditLines(t, filepath.Join(r.dir, "audit-"+r.name+".jsonl")) {
			switch line.Kind {
			case "deployment.validation":
				runs[line.ID]++
			case "deployment.end":
				ends[line.ID]++
			}
		}
	}
	endedOnce := 0
	for _, id := range ids {
		d := final[id]
		assert.LessOrEqual(t, runs[id], len(d.Regions), "%s validated at most once per region", id)
		assert.LessOrEqual(t, ends[id], 1, "%s ended at most once", id)
		endedOnce += ends[id]
	}
	t.Logf("%d of %d ends in the trails", endedOnce, len(ids))
}

// TestRolloutOutlivesALongElection: the node leading the rollout queue's
// consumer and one more are killed just after a rollout was taken up,
// and started again ten seconds later. The consumer has no leader until
// they are back (11 s or more): the extensions of the rollout's lease
// sent meanwhile are lost, as in the longest election that losing one
// node of three makes (the servers elect a leader 4 to 9 s after losing
// one). The lease (45 s on a cluster, extended at most 15 s after the
// rollout was taken up, then at most 15 s apart) outlasts it: the rollout is not delivered
// again, and succeeds. With the lease at 10 s (the queue's AckWait), it
// lapsed: the rollout was delivered again, and another replica taking it
// up rolled it back as cut off by a restart.
func TestRolloutOutlivesALongElection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster")
	}
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, ".."), 3)
	ts := startServiceWith(t, t.TempDir(), nil, "-nats-url", svctest.ClientURLs(nodes), "-nats-replicas", "3",
		"-stages", "canary:5:30s,prod:100:0s", "-health-interval", "100ms", "-min-requests", "0")
	r := deploy(t, ts.URL, map[string]any{"service": "checkout", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	id := r.deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	takenUp := time.Now()

	var leader *svctest.NATSNode
	require.Eventually(t, func() bool { leader = svctest.ConsumerLeader(nodes, queueStream, "rollouts"); return leader != nil },
		30*time.Second, 50*time.Millisecond, "a node leads the rollouts consumer")
	down := []*svctest.NATSNode{leader}
	for _, n := range nodes {
		if n != leader {
			down = append(down, n)
			break
		}
	}
	for _, n := range down {
		n.Kill()
	}
	time.Sleep(10 * time.Second)
	for _, n := range down {
		n.Start(t)
	}
	for _, n := range down {
		n.WaitHealthy(t, time.Minute)
	}
	require.Eventually(t, func() bool { return svctest.ConsumerLeader(nodes, queueStream, "rollouts") != nil },
		time.Minute, 50*time.Millisecond, "a node leads the rollouts consumer again")
	t.Logf("the consumer had a leader again %v after the rollout was taken up", time.Since(takenUp).Round(100*time.Millisecond))

	var d Deployment
	require.Eventually(t, func() bool {
		r := do(t, "GET", ts.URL+"/deploy/"+id, nil)
		d = r.deployment(t)
		return r.Code == http.StatusOK && ended(d)
	}, 2*time.Minute, 100*time.Millisecond, "the deployment ends")
	msg := ""
	if d.ErrorMessage != nil {
		msg = *d.ErrorMessage
	}
	assert.Equal(t, StatusSuccess, d.Status, "%s", msg)
	m := do(t, "GET", ts.URL+"/metrics", nil).Body
	assert.Equal(t, `taikit_queue_redelivered_total{queue="rollouts"} 0`, sampleLine(m, `taikit_queue_redelivered_total{queue="rollouts"}`),
		"the rollout was not delivered again")
}
