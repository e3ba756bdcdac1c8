package taicel_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Transfer is the payload the rules read.
type Transfer struct {
	Customer string
	Country  string
	Amount   float64
}

func Example() {
	const rules = `
version: "2026-12-02.1"
name: transfers
thresholds: {review: 0.3, deny: 0.6}
sets:
  embargoed: [KP, IR]
rules:
  - name: embargo
    verdict: deny
    expr: payload.Country in sets.embargoed
    reason: "transfers to {{payload.Country}} are refused"
  - name: velocity
    weight: 0.6
    expr: attempts > 5
    reason: "{{attempts}} attempts in a minute"
  - name: amount
    weight: 0.4
    expr: "payload.Amount > 10000.0 ? 1.0 : payload.Amount / 10000.0"
    reason: 'amount {{"%.2f".format([payload.Amount])}}'
`
	// attempts stands in for a store of per-customer counters.
	attempts := map[string]int64{"alice": 1, "bob": 9}
	env, err := taicel.NewEnv(taicel.Options[Transfer]{
		Vars: map[string]*cel.Type{"attempts": cel.IntType},
		Lookup: func(_ context.Context, s tai.Signal[Transfer]) (map[string]any, error) {
			return map[string]any{"attempts": attempts[s.Key]}, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	spec, err := taicel.Parse([]byte(rules))
	if err != nil {
		fmt.Println(err)
		return
	}
	set, err := env.Compile(spec)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, tr := range []Transfer{
		{Customer: "alice", Country: "DE", Amount: 250},
		{Customer: "alice", Country: "DE", Amount: 9000},
		{Customer: "bob", Country: "FR", Amount: 100},
		{Customer: "alice", Country: "KP", Amount: 10},
	} {
		s := tai.Signal[Transfer]{ID: "t", Kind: "transfer", Key: tr.Customer, Time: time.Now(), Payload: tr}
		d, err := set.Evaluate(context.Background(), s)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%-6s %.2f %s\n", d.Verdict, d.Score, d.Reason)
	}

	// A misspelt field is found when the set is compiled.
	spec.Rules[2].Expr = "payload.Amont > 10000.0"
	_, err = env.Compile(spec)
	fmt.Println(err)
	// Output:
	// allow  0.01 amount 250.00
	// review 0.36 amount 9000.00
	// deny   0.60 9 attempts in a minute
	// deny   0.00 transfers to KP are refused
	// taicel: rule "amount" at 1:8 (file line 18): ERROR: expr:1:8: undefined field 'Amont'
	//  | payload.Amont > 10000.0
	//  | .......^
}

func ExampleLoader() {
	dir, err := os.MkdirTemp("", "taicel")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "rules.yaml")
	write := func(text string) {
		// Write a whole new file and rename it over the old one, so the
		// Loader never reads half of it.
		err := os.WriteFile(path+".tmp", []byte(text), 0o600)
		if err == nil {
			err = os.Rename(path+".tmp", path)
		}
		if err != nil {
			fmt.Println(err)
		}
	}
	write("version: 1\nrules:\n  - {name: big, verdict: deny, expr: payload.Amount > 1000.0}\n")

	env, err := taicel.NewEnv(taicel.Options[Transfer]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{
		Interval: -1, // in a service: every few seconds; here Reload is called
		OnReload: func(r taicel.Reload) {
			if r.Err != nil {
				fmt.Println("refused version", r.Version)
				return
			}
			fmt.Println("loaded version", r.Version, "sha256", r.Hash[:12])
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Shutdown(context.Background())
	judge := func() {
		d, _ := l.Evaluate(context.Background(), tai.Signal[Transfer]{Payload: Transfer{Amount: 500}})
		fmt.Println(d.Verdict)
	}
	judge()

	write("version: 2\nrules:\n  - {name: big, verdict: deny, expr: payload.Amount > 100.0}\n")
	_, _ = l.Reload()
	judge()

	write("version: 3\nrules:\n  - {name: big, verdict: deny, expr: payload.Amout > 10.0}\n")
	_, _ = l.Reload()
	judge() // version 2 still runs
	// Output:
	// loaded version 1 sha256 f8f3dc377d45
	// allow
	// loaded version 2 sha256 a68dcbd33073
	// deny
	// refused version 3
	// deny
}
