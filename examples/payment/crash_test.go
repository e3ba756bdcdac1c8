package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svctest"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kanban/natsembed"
)

// childArgsEnv, when set, makes the test binary run the service itself
// with these arguments (see TestMain): the crash test runs it as a
// process of its own, to kill it.
const childArgsEnv = "PAYMENT_TEST_CHILD_ARGS"

var readyLine = regexp.MustCompile(`msg="payment service ready" .*\bapi=(http://[^ ]+)/payment`)

// startChild starts the service on dir in a child process and waits, until
// ctx ends, for it to be ready.
func startChild(ctx context.Context, t *testing.T, dir string) *svctest.Child {
	t.Helper()
	return svctest.StartChild(ctx, t, childArgsEnv, "-data-dir "+dir+" -addr 127.0.0.1:0 -instance crash -log-level info", readyLine)
}

// attempt is one payment request of the crash test and its answer, if it
// got one.
type attempt struct {
	key, customer string
	answered      bool
	code          int
	body          []byte
}

func (a *attempt) request() []byte {
	return []byte(`{"amount": 10.00, "customer_id": "` + a.customer + `", "currency": "USD", "merchant_id": "merc_crash"}`)
}

// post sends a's payment with its key.
func post(ctx context.Context, client *http.Client, url string, a *attempt) (int, []byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/payment", bytes.NewReader(a.request()))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", a.key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, b, resp.Header, nil
}

// txnOfBody returns the transaction ID of a payment's answer.
func txnOfBody(t *testing.T, body []byte) string {
	t.Helper()
	var r struct {
		TransactionID string `json:"transaction_id"`
	}
	require.NoError(t, json.Unmarshal(body, &r), string(body))
	return r.TransactionID
}

// TestCrashLosesNothing runs the service as a process of its own, sends it
// concurrent payments with idempotency keys, kills it with SIGKILL in the
// middle, and starts it again on the same data dir. Then every payment
// answered SUCCESS is found by GET and confirmed; every request sent again
// with its key gets its first answer, or, if it never got one, an answer
// now; the payments bucket holds one charge per key at most; and the
// audit trail verifies across the kill and holds the line of every
// payment answered before it.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the service in processes of its own")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	client := &http.Client{Timeout: 30 * time.Second}

	first := startChild(ctx, t, dir)
	const workers, killAfter = 16, 300
	var (
		mu        sync.Mutex
		attempts  []*attempt
		successes int
		killed    = make(chan struct{})
		kill      sync.Once
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-killed:
					return
				case <-ctx.Done():
					return
				default:
				}
				a := &attempt{key: fmt.Sprintf("crash-%d-%d", w, i), customer: fmt.Sprintf("crash_%d_%d", w, i)}
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
				code, body, _, err := post(ctx, client, first.URL, a)
				mu.Lock()
				if err == nil {
					a.answered, a.code, a.body = true, code, body
					if code == http.StatusOK {
						successes++
					}
				}
				n := successes
				mu.Unlock()
				if n >= killAfter {
					kill.Do(func() {
						require.NoError(t, first.Cmd.Process.Signal(syscall.SIGKILL))
						close(killed)
					})
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("the load ended before the kill\n%s", first.Logs.String())
	}
	select {
	case <-first.Done:
	case <-ctx.Done():
		t.Fatal("the killed service did not exit")
	}

	answered := 0
	for _, a := range attempts {
		if a.answered {
			answered++
			require.Equal(t, http.StatusOK, a.code, "before the kill every payment is a charge: %s", a.body)
		}
	}
	t.Logf("%d requests, %d answered before the kill", len(attempts), answered)
	var answeredBefore []string
	for _, a := range attempts {
		if a.answered {
			answeredBefore = append(answeredBefore, txnOfBody(t, a.body))
		}
	}

	second := startChild(ctx, t, dir)
	get := func(id string) map[string]any {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, second.URL+"/payment/"+id, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var rec map[string]any
		if resp.StatusCode != http.StatusOK {
			return nil
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&rec))
		return rec
	}
	txnOf := func(body []byte) string { return txnOfBody(t, body) }

	// Every request again, with its key: the first answer where there was
	// one, an answer now where there was none.
	for _, a := range attempts {
		code, body, hdr, err := post(ctx, client, second.URL, a)
		require.NoError(t, err)
		if a.answered {
			assert.Equal(t, a.code, code, "%s replayed", a.key)
			assert.Equal(t, string(a.body), string(body), "%s replayed", a.key)
			assert.Equal(t, "true", hdr.Get("Idempotent-Replayed"), a.key)
			continue
		}
		require.Equal(t, http.StatusOK, code, "%s, unanswered before the kill, is charged now: %s", a.key, body)
		a.answered, a.code, a.body = true, code, body
	}

	// Every SUCCESS answered is stored, and its confirmation processed.
	for _, a := range attempts {
		id := txnOf(a.body)
		require.Eventually(t, func() bool {
			rec := get(id)
			return rec != nil && rec["confirmed"] == true
		}, 60*time.Second, 20*time.Millisecond, "%s (%s) stored and confirmed\n%s", id, a.key, second.Logs.String())
		rec := get(id)
		assert.Equal(t, StatusSuccess, rec["status"])
		assert.Equal(t, a.customer, rec["customer_id"])
	}

	require.NoError(t, second.Stop(ctx, t, syscall.SIGTERM), second.Logs.String())

	// The audit trail verifies as one chain across the kill, and holds
	// the line of every payment answered before it.
	trail, err := filepath.Glob(filepath.Join(dir, "audit-crash.jsonl*"))
	require.NoError(t, err)
	require.NotEmpty(t, trail)
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, trail...)
	require.NoError(t, err)
	audited := map[string]bool{}
	for _, f := range trail {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for line := range bytes.Lines(raw) {
			var e kaizen.AuditEntry
			require.NoError(t, json.Unmarshal(line, &e))
			audited[e.ID] = true
		}
	}
	for _, id := range answeredBefore {
		assert.True(t, audited[id], "%s, answered before the kill, is in the audit trail", id)
	}

	// The durable record: one charge per key (each key has a customer of
	// its own), and no confirmation dead-lettered.
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: filepath.Join(dir, "nats"), InProcess: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, srv.Shutdown(context.Background())) }()
	nc, err := srv.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	charges := storedCharges(ctx, t, js)
	for _, a := range attempts {
		assert.Equal(t, []string{txnOf(a.body)}, charges[a.customer], "%s charged once, as answered", a.key)
	}
	assert.Len(t, charges, len(attempts), "no charge but the ones answered")
	dead, err := js.Stream(ctx, "PAYMENT_CONFIRMATIONS_DEAD")
	require.NoError(t, err)
	info, err := dead.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs, "no confirmation dead-lettered")
}
