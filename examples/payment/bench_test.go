package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svctest"
	"github.com/taipattern/taikit/internal/servers"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/tai"
)

// The fraud rules in Go and in CEL, measured in the same run:
//
//	go test ./examples/payment -run '^$' -bench FraudPayments -benchtime 12800x -count 5
//	go test ./examples/payment -run '^$' -bench FraudPolicy -benchtime 300000x -count 5
//
// Each benchmark runs the two in turn, a block of operations each, over
// and over, so that both meet the shared machine in the same moods, and
// reports each one's wall time and CPU time per operation and the CEL
// rules' throughput as a share of the Go rules' (cel/go, from the wall
// times). An operation is one payment of each.
//
// BenchmarkFraudPolicy judges payments with the policy alone, the
// customer state in memory. BenchmarkFraudPayments runs whole payments
// through the service's HTTP handler in the process (no network):
// decoding, the limits, the rules, the simulated gateway, the payment's
// record and confirmation stored in the embedded JetStream (the customer
// state in memory), 32 at once; a block's CPU time includes the
// confirmations of its payments, which are consumed after the answers.

// contender is one side of an alternating benchmark.
type contender struct {
	name string
	run  func(n int) // n operations, timed
	// settle, if set, waits for the work the operations left behind (not
	// timed, but its CPU time counts).
	settle func()
}

// alternate runs the contenders in turn, block operations each, until
// each has run b.N, and reports each one's ns/op and CPU ns/op, and the
// throughput of the second over the first's.
func alternate(b *testing.B, block int, cs ...contender) {
	wall := make([]time.Duration, len(cs))
	cpu := make([]time.Duration, len(cs))
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		n := min(block, b.N-done)
		for i, c := range cs {
			c0, t0 := processCPU(), time.Now()
			c.run(n)
			wall[i] += time.Since(t0)
			if c.settle != nil {
				c.settle()
			}
			cpu[i] += processCPU() - c0
		}
	}
	b.StopTimer()
	for i, c := range cs {
		b.ReportMetric(float64(wall[i].Nanoseconds())/float64(b.N), c.name+"-ns/op")
		if cpu[i] > 0 {
			b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(b.N), c.name+"-cpu-ns/op")
		}
	}
	if len(cs) == 2 && wall[1] > 0 {
		b.ReportMetric(float64(wall[0])/float64(wall[1]), cs[1].name+"/"+cs[0].name)
	}
}

// benchPolicy returns the fraud policy of rules ("go" or "embedded") over a
// memory state of its own, at a clock that moves a second per call of tick.
func benchPolicy(b *testing.B, rules string) (pol tai.Policy[Payment], tick func()) {
	state := NewMemoryState(0)
	var ticks atomic.Int64
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return start.Add(time.Duration(ticks.Load()) * time.Second) }
	cfg := FraudConfig{Blacklist: Blacklist{Customers: setOf("cust_blacklist"), Countries: setOf("KP")}}
	if rules == fraudRulesGo {
		p, err := NewFraudPolicy(cfg, state, now)
		require.NoError(b, err)
		return p, func() { ticks.Add(1) }
	}
	env, err := NewFraudEnv(cfg, state, now)
	require.NoError(b, err)
	set, err := compileFraudRules(env, defaultFraudRules)
	require.NoError(b, err)
	return set, func() { ticks.Add(1) }
}

func BenchmarkFraudPolicy(b *testing.B) {
	// 10,000 customers paying in turn from around Berlin, one in ten a
	// large amount: mostly allowed, some flagged.
	sigs := make([]tai.Signal[Payment], 10_000)
	for i := range sigs {
		p := Payment{Amount: 42.5, Minor: 4250, Currency: "EUR", CustomerID: fmt.Sprintf("cust_%05d", i), MerchantID: "merc_1",
			Country: "DE", HasCoords: true, Lat: 52.52 + float64(i%7)*0.01, Lon: 13.405}
		if i%10 == 0 {
			p.Amount, p.Minor = 6000, 600000
		}
		sigs[i] = tai.Signal[Payment]{ID: "txn", Kind: "payment", Key: p.CustomerID, Payload: p}
	}
	txns := make([]string, b.N)
	for i := range txns {
		txns[i] = "txn_" + tai.NewID()
	}
	ctx := context.Background()
	var cs []contender
	for _, rules := range []string{fraudRulesGo, fraudRulesEmbedded} {
		pol, tick := benchPolicy(b, rules)
		next := 0
		cs = append(cs, contender{name: celOrGo(rules), run: func(n int) {
			for range n {
				tick()
				// Every payment a transaction of its own, as the
				// service's are: a repeated one changes nothing.
				sig := sigs[next%len(sigs)]
				sig.ID = txns[next]
				if _, err := pol.Evaluate(ctx, sig); err != nil {
					b.Fatal(err)
				}
				next++
			}
		}})
	}
	b.ReportAllocs()
	alternate(b, 1000, cs...)
}

func BenchmarkFraudPayments(b *testing.B) {
	var cs []contender
	for _, rules := range []string{fraudRulesGo, fraudRulesEmbedded} {
		cs = append(cs, paymentsContender(b, celOrGo(rules), 32, "-customer-state", "memory", "-idempotency", "memory", "-fraud-rules", rules))
	}
	b.ReportAllocs()
	alternate(b, 640, cs...)
}

// BenchmarkPaymentsOnTheCluster runs whole payments, durable by default
// (the payment, its confirmation, the idempotency keys and the customer
// state in JetStream), against the embedded server, one node, and against
// a three-node cluster of nats-server processes with every stream and
// bucket on three nodes, in the same run:
//
//	go test ./examples/payment -run '^$' -bench PaymentsOnTheCluster -benchtime 6400x -count 3
//
// r3/embedded is the cluster's throughput as a share of the single node's.
// Each is paid by 256 clients at once, enough to keep both busy: a write
// on the cluster waits for a second node's copy, and with 32 clients the
// cluster spent much of its time waiting (0.26× where 256 measure 0.42×),
// while the single node was as fast with either.
func BenchmarkPaymentsOnTheCluster(b *testing.B) {
	nodes := svctest.StartNATSCluster(b, svctest.NATSServerBinary(b, ".."), 3)
	b.ReportAllocs()
	alternate(b, 1280,
		paymentsContender(b, "embedded", 256),
		paymentsContender(b, "r3", 256, "-nats-url", svctest.ClientURLs(nodes), "-nats-replicas", "3"))
}

// paymentsContender is a service with args, paid by clients at once
// through its HTTP handler in the process, a customer per payment; a
// block settles once its confirmations are consumed.
func paymentsContender(b *testing.B, name string, clients int, args ...string) contender {
	cfg, err := parseConfig(append([]string{"-data-dir", b.TempDir(), "-instance", "bench-" + name, "-log-level", "warn"}, args...),
		func(string) string { return "" })
	require.NoError(b, err)
	// Warnings are kept to explain a payment that fails: a payment
	// refused by the service says only its code.
	var logs svctest.SyncBuffer
	svc, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	require.NoError(b, err)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(b, svc.Close(ctx))
	})
	h := svc.Handler()
	var seq, sent atomic.Int64
	return contender{name: name,
		run: func(n int) {
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					for range n/clients + btoi(c < n%clients) {
						// A customer per payment: the per-customer
						// limit refuses none.
						body := fmt.Appendf(nil, `{"amount": 42.50, "customer_id": "cust_%s_%d", "currency": "EUR", "merchant_id": "merc_1", "location": {"latitude": 52.52, "longitude": 13.405, "country": "DE"}}`, name, seq.Add(1))
						req := httptest.NewRequest(http.MethodPost, "/payment", bytes.NewReader(body))
						req.Host = "localhost"
						req.Header.Set("Content-Type", "application/json")
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, req)
						if rec.Code != http.StatusOK {
							b.Errorf("%s: %d %s\nthe service's warnings:\n%s", name, rec.Code, rec.Body, logs.String())
							return
						}
					}
				})
			}
			wg.Wait()
			sent.Add(int64(n))
		},
		settle: func() {
			// Until the block's confirmations are consumed (a duplicate
			// is one whose first processing landed but was not
			// acknowledged, which a cluster's failovers allow).
			deadline := time.Now().Add(time.Minute)
			for testutil.ToFloat64(svc.confirmed.WithLabelValues("confirmed"))+testutil.ToFloat64(svc.confirmed.WithLabelValues("duplicate")) < float64(sent.Load()) {
				if time.Now().After(deadline) {
					b.Fatal("confirmations not consumed within a minute")
				}
				time.Sleep(time.Millisecond)
			}
		}}
}

func celOrGo(rules string) string {
	if rules == fraudRulesGo {
		return "go"
	}
	return "cel"
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BenchmarkCustomerStateReserve measures the fraud lookup's one change of
// a customer's state (Reserve: the attempt, the hold and the location) in
// each store, 10,000 customers in turn at a clock a second apart, every
// payment a transaction of its own:
//
//	go test ./examples/payment -run '^$' -bench CustomerStateReserve -count 5
func BenchmarkCustomerStateReserve(b *testing.B) {
	opts, err := redis.ParseURL(servers.StartRedis(b).URL())
	require.NoError(b, err)
	rdb := redis.NewClient(opts)
	b.Cleanup(func() { _ = rdb.Close() })
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: b.TempDir(), InProcess: true})
	require.NoError(b, err)
	nc, err := srv.Connect()
	require.NoError(b, err)
	b.Cleanup(func() {
		nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	nst, err := NewNATSState(context.Background(), js, "customers", 0, 1)
	require.NoError(b, err)
	customers := make([]string, 10_000)
	for i := range customers {
		customers[i] = fmt.Sprintf("cust_%05d", i)
	}
	start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		state CustomerState
	}{{"memory", NewMemoryState(0)}, {"nats", nst}, {"redis", NewRedisState(rdb, "bench:")}} {
		b.Run(tc.name, func(b *testing.B) {
			txns := make([]string, b.N)
			for i := range txns {
				txns[i] = "txn_" + tai.NewID()
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now := start.Add(time.Duration(i) * time.Second)
				at := Point{Lat: 52.52, Lon: 13.405, At: now}
				if _, err := benchReserve(ctx, tc.state, customers[i%len(customers)], txns[i], now, &at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchReserve is one payment's Reserve of 42.50 EUR.
func benchReserve(ctx context.Context, s CustomerState, customer, txn string, now time.Time, at *Point) (Reservation, error) {
	return s.Reserve(ctx, customer, txn, "EUR", 4250, now, time.Minute, at)
}
