package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svctest"
)

// payOp is one keyed payment request of the failover test: what was sent
// and what came back, for the linearizability check.
type payOp struct {
	client   int
	key      string
	customer string
	call     time.Time
	ret      time.Time
	code     int    // 0: no answer (the connection failed or timed out)
	txn      string // the transaction ID of a decided answer
	status   string
	replayed bool
	body     string // the answer, kept when it is not a charge
}

// The outcome of a request as the idempotency model reads it.
const (
	outCharged   = "charged"   // 200 SUCCESS with a transaction ID
	outNoCharge  = "no-charge" // an answer that asks for a retry: the key was released, nothing charged by this request
	outUnknown   = "unknown"   // no answer, or 500 outcome_pending: it may have charged, or not
	outForbidden = "forbidden" // any other answer: the contract does not allow it here
)

type payOutput struct {
	kind, txn string
}

func (op *payOp) output() payOutput {
	switch {
	case op.code == 0:
		return payOutput{kind: outUnknown}
	case op.code == http.StatusInternalServerError && strings.Contains(op.body, `"code":"outcome_pending"`):
		// The gateway was called, the record not stored yet: it may have
		// charged; a retry with the key finds out.
		return payOutput{kind: outUnknown}
	case op.code == http.StatusOK && op.status == StatusSuccess && op.txn != "":
		return payOutput{kind: outCharged, txn: op.txn}
	case op.code == http.StatusServiceUnavailable, op.code == http.StatusConflict,
		op.code == http.StatusTooManyRequests, op.code == http.StatusBadGateway, op.code == http.StatusGatewayTimeout:
		return payOutput{kind: outNoCharge}
	}
	return payOutput{kind: outForbidden, txn: strconv.Itoa(op.code) + " " + op.status}
}

// idempotencyModel is the contract of Idempotency-Key as a sequential
// specification, per key: the state is the key's charge, "" before it has
// one. A request answered SUCCESS either makes the charge (the key had
// none) or returns the one the key has: two different transaction IDs for
// one key are a double charge. An answer asking for a retry charged
// nothing; a request without an answer may have charged, which a later
// answer then shows. Any other answer is not allowed: every request here
// is a small charge the fraud rules pass.
var idempotencyModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(string)
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, _, output any) (bool, any) {
		charge, out := state.(string), output.(payOutput)
		switch out.kind {
		case outCharged:
			if charge == "" || charge == out.txn {
				return true, out.txn
			}
			return false, charge
		case outNoCharge, outUnknown:
			return true, charge
		}
		return false, charge
	},
	DescribeOperation: func(input, output any) string {
		out := output.(payOutput)
		return fmt.Sprintf("pay(%s) -> %s %s", input, out.kind, out.txn)
	},
	DescribeState: func(state any) string {
		if state == "" {
			return "no charge"
		}
		return "charged " + state.(string)
	},
}

// storedCharges returns the successful payments the payments bucket
// holds, by customer: their transaction IDs. The keys come from the
// stream's subjects, which its leader counts: a listing through a watcher
// (kv.ListKeys) can end early on a cluster whose node was just restarted.
func storedCharges(ctx context.Context, t *testing.T, js jetstream.JetStream) map[string][]string {
	t.Helper()
	kv, err := js.KeyValue(ctx, "payments")
	require.NoError(t, err)
	bucket, err := js.Stream(ctx, "KV_payments")
	require.NoError(t, err)
	info, err := bucket.Info(ctx, jetstream.WithSubjectFilter("$KV.payments.>"))
	require.NoError(t, err)
	charges := map[string][]string{}
	for subject := range info.State.Subjects {
		id := strings.TrimPrefix(subject, "$KV.payments.")
		e, err := kv.Get(ctx, id)
		require.NoError(t, err)
		var p storedPayment
		require.NoError(t, json.Unmarshal(e.Value(), &p))
		rec, err := p.record()
		require.NoError(t, err)
		if p.Status == StatusSuccess {
			charges[rec.CustomerID] = append(charges[rec.CustomerID], id)
		}
	}
	return charges
}

// replicaProc is a payment replica run as a process of its own.
type replicaProc struct {
	name, dir string
	args      string
	child     atomic.Pointer[svctest.Child]
}

func (r *replicaProc) url() string { return r.child.Load().URL }

func (r *replicaProc) start(ctx context.Context, t *testing.T) {
	t.Helper()
	r.child.Store(svctest.StartChild(ctx, t, childArgsEnv, r.args, readyLine))
}

// TestFailoverOnANATSCluster runs two payment replicas on a three-node
// JetStream cluster (every stream and bucket on three nodes) under keyed
// load from 16 clients, kills the node leading the payments bucket with
// SIGKILL and starts it again, then kills one replica with SIGKILL and
// starts it again. Clients that get no answer send their key again, to
// either replica. Then:
//
//   - the history of every request and answer is linearizable against
//     the idempotency contract (porcupine): a key maps to at most one
//     charge, and every replay returns it;
//   - every SUCCESS is found by GET from either replica, and confirmed;
//   - the payments bucket holds exactly one charge per key, the answered
//     one, and no confirmation was dead-lettered.
//
// It logs the longest time without a SUCCESS after the node was killed and
// the p99.9 of the requests sent during the failover.
func TestFailoverOnANATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster and two service processes")
	}
	// nats-server built from the Go module: Debian's 2.9 loses track of a
	// subject's last message after a node is killed and restarted under
	// load.
	nodes := svctest.StartNATSCluster(t, svctest.NATSServerBinary(t, ".."), 3)
	urls := svctest.ClientURLs(nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	replicas := make([]*replicaProc, 2)
	for i := range replicas {
		r := &replicaProc{name: "pay-" + strconv.Itoa(i+1), dir: t.TempDir()}
		r.args = fmt.Sprintf("-data-dir %s -addr 127.0.0.1:0 -instance %s -nats-url %s -nats-replicas 3 -log-level info",
			r.dir, r.name, urls)
		r.start(ctx, t)
		replicas[i] = r
	}

	client := &http.Client{Timeout: 10 * time.Second}
	send := func(ctx context.Context, r *replicaProc, op *payOp) {
		a := &attempt{key: op.key, customer: op.customer}
		op.call = time.Now()
		code, body, hdr, err := post(ctx, client, r.url(), a)
		op.ret = time.Now()
		if err != nil {
			return
		}
		op.code = code
		var res struct {
			TransactionID string `json:"transaction_id"`
			Status        string `json:"status"`
		}
		if json.Unmarshal(body, &res) == nil {
			op.txn, op.status = res.TransactionID, res.Status
		}
		op.replayed = hdr.Get("Idempotent-Replayed") == "true"
		if code != http.StatusOK {
			op.body = string(body)
		}
	}

	const clients = 16
	var (
		mu      sync.Mutex
		history []*payOp
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				key, customer := fmt.Sprintf("fo-%d-%d", c, i), fmt.Sprintf("fo_%d_%d", c, i)
				// Each key until it is decided, then once more as a replay;
				// every try to a replica chosen at random.
				decided := false
				for try := 0; try < 50; try++ {
					op := &payOp{client: c, key: key, customer: customer}
					send(ctx, replicas[rng.IntN(len(replicas))], op)
					mu.Lock()
					history = append(history, op)
					mu.Unlock()
					if decided {
						break
					}
					if op.output().kind == outCharged {
						decided = true
						continue // the replay
					}
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		})
	}
	successes := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, op := range history {
			if op.output().kind == outCharged && !op.replayed {
				n++
			}
		}
		return n
	}
	waitSuccesses := func(n int) {
		require.Eventually(t, func() bool { return successes() >= n }, 2*time.Minute, 10*time.Millisecond,
			"%d payments charged", n)
	}

	waitSuccesses(200)
	var victim *svctest.NATSNode
	require.Eventually(t, func() bool { victim = svctest.StreamLeader(nodes, "KV_payments"); return victim != nil },
		30*time.Second, 50*time.Millisecond, "a node leads the payments bucket")
	victim.Kill()
	killedAt := time.Now()
	before := successes()
	waitSuccesses(before + 200) // the cluster serves on two nodes
	time.Sleep(2 * time.Second)
	victim.Start(t)
	victim.WaitHealthy(t, time.Minute)
	waitSuccesses(successes() + 200)

	// A replica killed mid-run, and started again on its data dir.
	r := replicas[1]
	require.NoError(t, r.child.Load().Cmd.Process.Signal(syscall.SIGKILL))
	<-r.child.Load().Done
	replicaKilledAt := time.Now()
	waitSuccesses(successes() + 100)
	r.start(ctx, t)
	waitSuccesses(successes() + 200)
	close(stop)
	wg.Wait()
	stoppedAt := time.Now()

	// Every key is decided: a client that stopped between tries sends its
	// key until it is.
	mu.Lock()
	ops := slices.Clone(history)
	mu.Unlock()
	decided := map[string]string{}
	customers := map[string]string{}
	for _, op := range ops {
		customers[op.key] = op.customer
		if op.output().kind == outCharged {
			decided[op.key] = op.txn
		}
	}
	undecided := 0
	for key, customer := range customers {
		if _, ok := decided[key]; ok {
			continue
		}
		undecided++
		// A key whose claim a killed replica left is taken over at once by
		// a later run of the same instance, after two minutes by another.
		deadline := time.Now().Add(3 * time.Minute)
		for try := 0; ; try++ {
			op := &payOp{client: clients, key: key, customer: customer}
			send(ctx, replicas[try%2], op)
			ops = append(ops, op)
			if op.output().kind == outCharged {
				decided[key] = op.txn
				break
			}
			require.True(t, time.Now().Before(deadline), "%s decided; last answer %d %s", key, op.code, op.body)
			if try == 0 {
				t.Logf("undecided %s: %d %s", key, op.code, op.body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	t.Logf("%d keys undecided when the load stopped, decided %v later", undecided, time.Since(stoppedAt).Round(time.Millisecond))

	// The history against the idempotency contract.
	history2 := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		ret := op.ret.UnixNano()
		if op.code == 0 {
			ret = time.Now().Add(time.Hour).UnixNano() // no answer: it may take effect at any time
		}
		history2 = append(history2, porcupine.Operation{ClientId: op.client, Input: op.key,
			Call: op.call.UnixNano(), Output: op.output(), Return: ret})
	}
	res, info := porcupine.CheckOperationsVerbose(idempotencyModel, history2, time.Minute)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), "failover-history.html")
		_ = porcupine.VisualizePath(idempotencyModel, info, path)
		var bad []string
		for _, op := range ops {
			if k := op.output().kind; k == outForbidden {
				bad = append(bad, fmt.Sprintf("%s -> %d %s", op.key, op.code, op.body))
			}
		}
		t.Fatalf("the history is not linearizable (%v); visualization in %s; answers the contract forbids: %v\n%s", res, path, bad[:min(len(bad), 5)], replicas[0].child.Load().Logs.String())
	}

	// Every SUCCESS from either replica, confirmed.
	get := func(r *replicaProc, id string) map[string]any {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url()+"/payment/"+id, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil
		}
		var rec map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&rec))
		return rec
	}
	for key, txn := range decided {
		for _, r := range replicas {
			var last map[string]any
			ok := assert.Eventually(t, func() bool {
				last = get(r, txn)
				return last != nil && last["status"] == StatusSuccess && last["confirmed"] == true
			}, time.Minute, 20*time.Millisecond, "%s (%s) found by %s and confirmed; last seen %v", txn, key, r.name, &last)
			if !ok {
				t.FailNow()
			}
		}
	}

	// The durable record: one charge per key, the answered one.
	nc, err := nats.Connect(urls)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	charges := storedCharges(ctx, t, js)
	for key, txn := range decided {
		assert.Equal(t, []string{txn}, charges[customers[key]], "%s charged once, as answered", key)
	}
	assert.Len(t, charges, len(decided), "no charge but the ones answered")
	dead, err := js.Stream(ctx, "PAYMENT_CONFIRMATIONS_DEAD")
	require.NoError(t, err)
	dinfo, err := dead.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, dinfo.State.Msgs, "no confirmation dead-lettered")

	// The figures: the longest time without a new charge answered after
	// the node was killed (its unavailability), and the p99.9 of the
	// requests sent in the ten seconds from the kill. Only the load counts:
	// the keys decided after it wait for their claims.
	gap := func(from time.Time) time.Duration {
		var ends []time.Time
		for _, op := range ops {
			if op.output().kind == outCharged && !op.replayed && op.ret.After(from) && op.ret.Before(stoppedAt) {
				ends = append(ends, op.ret)
			}
		}
		slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
		longest, prev := time.Duration(0), from
		for _, e := range ends {
			longest = max(longest, e.Sub(prev))
			prev = e
		}
		return longest
	}
	var lat []time.Duration
	for _, op := range ops {
		if op.code != 0 && op.call.After(killedAt) && op.call.Before(killedAt.Add(10*time.Second)) {
			lat = append(lat, op.ret.Sub(op.call))
		}
	}
	slices.Sort(lat)
	p999 := time.Duration(0)
	if len(lat) > 0 {
		p999 = lat[min(len(lat)-1, len(lat)*999/1000)]
	}
	t.Logf("%d requests, %d keys charged once each; NATS node %s killed: %v without a new charge, p99.9 %v over %d requests in the 10 s from the kill; replica killed: %v without a new charge",
		len(ops), len(decided), victim.Name, gap(killedAt).Round(time.Millisecond), p999.Round(time.Millisecond), len(lat), gap(replicaKilledAt).Round(time.Millisecond))
}
