package kaizen_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// order is the payload of the example pipelines.
type order struct {
	Amount float64
}

var errGateway = errors.New("gateway down")

// examplePipeline returns a pipeline that denies amounts over 1000 and
// fails the action for amount 13.
func examplePipeline(opts ...tai.Option) *tai.Pipeline[order, string] {
	policy := tai.Named("amount", tai.PolicyFunc[order](func(_ context.Context, s tai.Signal[order]) (tai.Decision, error) {
		if s.Payload.Amount > 1000 {
			return tai.Decision{Verdict: tai.Deny, Reason: "amount over 1000"}, nil
		}
		return tai.Decision{Verdict: tai.Allow}, nil
	}))
	action := tai.ActionFunc[order, string](func(_ context.Context, s tai.Signal[order]) (string, error) {
		if s.Payload.Amount == 13 {
			return "", errGateway
		}
		return "charged", nil
	})
	p, err := tai.New(policy, action, opts...)
	if err != nil {
		log.Fatal(err)
	}
	return p
}

func processAll(p *tai.Pipeline[order, string], amounts ...float64) {
	for i, a := range amounts {
		_, _ = p.Process(context.Background(), tai.Signal[order]{
			ID: fmt.Sprintf("pay-%d", i+1), Kind: "payment", Key: "cust_1", Payload: order{Amount: a}})
	}
}

func ExampleStats() {
	stats, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, 5 * time.Minute}})
	if err != nil {
		log.Fatal(err)
	}
	p := examplePipeline(tai.WithObservers(stats))
	processAll(p, 10, 20, 30, 5000, 13)

	// Serve it as JSON with http.Handle("/stats", stats); andon rules read
	// the windows directly.
	w, ok := stats.Window("payment", 5*time.Minute)
	fmt.Println(ok, w.Current.Total, w.Current.Outcomes)
	fmt.Printf("success %.2f, errors %.2f, not served %.2f\n",
		w.Current.SuccessRate, w.Current.Ratio(tai.Failed), w.Current.Ratio(tai.Failed, tai.Rejected, tai.Denied))
	fmt.Println("trend:", w.Trend.ErrorRate.Direction, "(nothing to compare with yet)")
	fmt.Println("p99 measured:", w.Current.P99 > 0)
	// Output:
	// true 5 {3 1 0 1}
	// success 0.60, errors 0.20, not served 0.40
	// trend: unknown (nothing to compare with yet)
	// p99 measured: true
}

func ExampleNewAudit() {
	var file bytes.Buffer // an *os.File in a service
	audit, err := kaizen.NewAudit(&file, kaizen.AuditOptions{
		Redact: func(e *kaizen.AuditEntry) { e.Key = "cust_***" },
	})
	if err != nil {
		log.Fatal(err)
	}
	p := examplePipeline(tai.WithObservers(audit))
	processAll(p, 10, 5000)
	if err := audit.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}

	for _, line := range strings.Split(strings.TrimSpace(file.String()), "\n") {
		// Show the stable part of each line.
		fmt.Println(line[strings.Index(line, `"id"`):strings.Index(line, `,"error"`)])
	}
	fmt.Println("verify:", kaizen.VerifyAudit(&file))
	// Output:
	// "id":"pay-1","kind":"payment","key":"cust_***","outcome":"succeeded","decision":{"verdict":"allow","policy":"amount","reason":"","score":0}
	// "id":"pay-2","kind":"payment","key":"cust_***","outcome":"denied","decision":{"verdict":"deny","policy":"amount","reason":"amount over 1000","score":0}
	// verify: <nil>
}

func ExampleVerifyAudit() {
	var file bytes.Buffer
	audit, err := kaizen.NewAudit(&file, kaizen.AuditOptions{})
	if err != nil {
		log.Fatal(err)
	}
	p := examplePipeline(tai.WithObservers(audit))
	processAll(p, 10, 5000, 20)
	if err := audit.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}

	// Someone turns the denial into a success.
	forged := strings.Replace(file.String(), `"outcome":"denied"`, `"outcome":"succeeded"`, 1)
	fmt.Println(kaizen.VerifyAudit(strings.NewReader(forged)))

	// Someone deletes the first line.
	lines := strings.SplitAfter(file.String(), "\n")
	fmt.Println(kaizen.VerifyAudit(strings.NewReader(strings.Join(lines[1:], ""))))
	// Output:
	// kaizen: audit line 2: edited: its hash does not match its content
	// kaizen: audit line 1: its prev hash is not the genesis hash: the trail does not start here
}

func ExampleOpenAuditFile() {
	dir, err := os.MkdirTemp("", "audit")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.jsonl")
	// From a secret store in a service: at least 16 bytes, 32 random ones
	// best.
	key := []byte("an example key of 32 bytes......")
	ctx := context.Background()

	// The service starts twice; each time it reopens its trail and goes
	// on with the chain.
	var published string
	for run := 1; run <= 2; run++ {
		audit, state, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Key: key})
		if err != nil {
			log.Fatal(err) // a line that does not verify: keep the file for a look
		}
		fmt.Printf("run %d: %d lines in the file\n", run, state.Lines)
		p := examplePipeline(tai.WithObservers(audit))
		processAll(p, 10, 5000)
		// Now and then: make the lines durable and publish the last hash
		// somewhere the service cannot rewrite.
		if err := audit.Flush(ctx); err != nil {
			log.Fatal(err)
		}
		published, _ = audit.Last()
		if err := audit.Shutdown(ctx); err != nil {
			log.Fatal(err)
		}
	}

	// A crash in the middle of a write leaves the start of a line.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := f.WriteString(`{"time":"2026-03-01T12:`); err != nil {
		log.Fatal(err)
	}
	f.Close()
	audit, state, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Key: key, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after the crash: %d lines, %d bytes of a torn line cut off\n", state.Lines, state.Cut)
	if err := audit.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}

	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: key, Expect: published}, path)
	fmt.Println("verify:", sum.Lines, "lines,", err)
	// Output:
	// run 1: 0 lines in the file
	// run 2: 2 lines in the file
	// after the crash: 4 lines, 23 bytes of a torn line cut off
	// verify: 4 lines, <nil>
}

func ExampleVerifyAuditFiles() {
	dir, err := os.MkdirTemp("", "audit")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	// A service starts a new file each day, continuing the chain of the
	// day before.
	genesis := kaizen.GenesisHash
	var files []string
	for _, day := range []string{"2026-03-01", "2026-03-02"} {
		path := filepath.Join(dir, "audit-"+day+".jsonl")
		audit, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Genesis: genesis})
		if err != nil {
			log.Fatal(err)
		}
		processAll(examplePipeline(tai.WithObservers(audit)), 10, 20, 30)
		if err := audit.Shutdown(ctx); err != nil {
			log.Fatal(err)
		}
		genesis, _ = audit.Last()
		files = append(files, path)
	}

	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, files...)
	fmt.Println(sum.Lines, sum.Last == genesis, err)

	// In the wrong order they do not verify.
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, files[1], files[0])
	var ae *kaizen.AuditError
	if errors.As(err, &ae) {
		fmt.Printf("%s:%d: %s\n", filepath.Base(ae.File), ae.Line, ae.Reason)
	}
	// Output:
	// 6 true <nil>
	// audit-2026-03-02.jsonl:1: its prev hash is not the genesis hash: the trail does not start here
}

func ExampleVerifyAuditWith() {
	key := []byte("an example key of 32 bytes......")
	var file bytes.Buffer
	audit, err := kaizen.NewAudit(&file, kaizen.AuditOptions{Key: key})
	if err != nil {
		log.Fatal(err)
	}
	processAll(examplePipeline(tai.WithObservers(audit)), 10, 5000, 20)
	if err := audit.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}
	trail := file.String()

	sum, err := kaizen.VerifyAuditWith(strings.NewReader(trail), kaizen.VerifyOptions{Key: key})
	fmt.Println(sum.Lines, err)

	_, err = kaizen.VerifyAuditWith(strings.NewReader(trail), kaizen.VerifyOptions{Key: []byte("not the key, though 32 bytes....")})
	fmt.Println(err)

	// The last line is cut: the chain still holds, the hash published
	// after the last Flush is missing.
	cut := trail[:strings.LastIndex(strings.TrimSuffix(trail, "\n"), "\n")+1]
	_, err = kaizen.VerifyAuditWith(strings.NewReader(cut), kaizen.VerifyOptions{Key: key, Expect: sum.Last})
	fmt.Println(strings.Replace(err.Error(), sum.Last, "<published>", 1))
	// Output:
	// 3 <nil>
	// kaizen: audit line 1: its hash does not match its content under the given key: the key is wrong, or the line was edited
	// kaizen: audit line 3: the trail ends without the expected hash <published>: lines were cut from its end, or the hash is not from this trail
}

func ExampleTrackWritten() {
	var file bytes.Buffer // an *os.File in a service
	audit, err := kaizen.NewAudit(&file, kaizen.AuditOptions{
		Logger: slog.New(slog.DiscardHandler),
		Redact: func(e *kaizen.AuditEntry) {
			if !strings.HasPrefix(e.Key, "cust_") {
				panic("a key Redact cannot mask") // the record is refused, not written unmasked
			}
			e.Key = "cust_***"
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	p := examplePipeline(tai.WithObservers(audit))
	for i, key := range []string{"cust_1", "someone@example.com"} {
		// One context per request: its record's line is waited for alone.
		ctx := kaizen.TrackWritten(context.Background())
		_, _ = p.Process(ctx, tai.Signal[order]{ID: fmt.Sprintf("pay-%d", i+1), Kind: "payment", Key: key, Payload: order{Amount: 10}})
		err := audit.WaitWritten(ctx)
		fmt.Printf("pay-%d written: %v\n", i+1, !errors.Is(err, kaizen.ErrAuditUnwritten))
	}
	if err := audit.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}
	// Output:
	// pay-1 written: true
	// pay-2 written: false
}
