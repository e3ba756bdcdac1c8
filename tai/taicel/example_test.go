package taicel_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/taipattern/taikit/kaizen"
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

func ExampleNewShadow() {
	env, err := taicel.NewEnv(taicel.Options[Transfer]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	compile := func(version, limit string) *taicel.Set[Transfer] {
		spec, err := taicel.Parse([]byte(`{version: "` + version + `", name: transfers, rules: [
			{name: large, verdict: deny, expr: "payload.Amount > ` + limit + `", reason: "over ` + limit + `"}]}`))
		if err != nil {
			panic(err)
		}
		set, err := env.Compile(spec)
		if err != nil {
			panic(err)
		}
		return set
	}
	live, candidate := compile("1", "10000.0"), compile("2", "5000.0")
	sh, err := taicel.NewShadow[Transfer](live, candidate, taicel.ShadowOptions[Transfer]{
		OnDisagree: func(s tai.Signal[Transfer], l, c tai.Decision) {
			fmt.Printf("  %s: live %s, candidate %s (%s)\n", s.ID, l.Verdict, c.Verdict, c.Reason)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, amount := range []float64{300, 7000, 12000, 6000} {
		s := tai.Signal[Transfer]{ID: fmt.Sprintf("t%d", i+1), Kind: "transfer", Payload: Transfer{Amount: amount}}
		d, err := sh.Evaluate(context.Background(), s) // the live decision
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %s\n", s.ID, d.Verdict)
	}
	st := sh.Stats()
	fmt.Printf("live %s, candidate %s: %d signals, %d disagreements (%.0f%%), by rule %v\n",
		st.LiveVersion, st.CandidateVersion, st.Signals, st.Disagreements, 100*st.DisagreementRate(), st.ByRule)
	// Output:
	// t1 allow
	//   t2: live allow, candidate deny (over 5000.0)
	// t2 allow
	// t3 deny
	//   t4: live allow, candidate deny (over 5000.0)
	// t4 allow
	// live 1, candidate 2: 4 signals, 2 disagreements (50%), by rule map[large:2]
}

func ExampleBacktest() {
	const live = `
version: "1"
name: transfers
rules:
  - {name: large, verdict: deny, expr: payload.Amount > 10000.0, reason: over 10000}
  - {name: risky, weight: 0.5, expr: payload.Country == "XX"}
`
	// The service records what its rules read; the customer stays out.
	env, err := taicel.NewEnv(taicel.Options[Transfer]{RecordInputs: true, Unrecorded: []string{"Customer"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	compile := func(text string) *taicel.Set[Transfer] {
		spec, err := taicel.Parse([]byte(text))
		if err != nil {
			panic(err)
		}
		set, err := env.Compile(spec)
		if err != nil {
			panic(err)
		}
		return set
	}
	var trail bytes.Buffer // a file, in a service: kaizen.OpenAuditFile
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	send := tai.ActionFunc[Transfer, string](func(context.Context, tai.Signal[Transfer]) (string, error) { return "sent", nil })
	p, err := tai.New[Transfer, string](compile(live), send, tai.WithObservers(audit))
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, tr := range []Transfer{{"ann", "DE", 500}, {"bob", "DE", 7000}, {"cid", "XX", 9000}, {"dan", "DE", 12000}, {"eve", "FR", 6000.5}} {
		_, _ = p.Process(context.Background(), tai.Signal[Transfer]{ID: fmt.Sprintf("t%d", i+1), Kind: "transfer", Key: tr.Customer, Payload: tr})
	}
	if err := audit.Shutdown(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	// Would a limit of 5000 have been better? Ann and Dan's transfers were
	// fraud.
	candidate := compile(strings.ReplaceAll(live, "10000", "5000"))
	rep, err := taicel.Backtest(context.Background(), candidate, &trail, taicel.BacktestOptions{
		Amount:   "payload.Amount",
		Labels:   map[string]bool{"t1": true, "t4": true},
		Examples: -1,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := rep.WriteText(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// candidate transfers version 1 against the decisions of policy "transfers"
	// 5 lines: 5 replayed, 0 without inputs, 0 of other kinds or policies, 0 errors
	// changed verdicts: 2 of 5 (40.00%), payload.Amount 13000.50; scores changed, verdict kept: 1
	//
	// flips:
	//   allow  -> deny         2  payload.Amount 13000.50
	//
	// rules in the changed decisions:
	//   rule   only old  only new  different  errors  only old amount  only new amount  different amount
	//   large         0         2          0       0             0.00         13000.50              0.00
	//
	// labels: 2 signals labelled positive (0 not replayed); a decision of deny or more flags a signal
	//                  TP      FP      FN      TN  precision  recall
	//   recorded        1       1       1       2      0.500   0.500
	//   candidate       1       3       1       0      0.250   0.500
}
