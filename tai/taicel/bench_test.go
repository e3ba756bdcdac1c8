package taicel_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// tenRules is a scored set of ten rules over the payload, a named set and
// two variables of the caller's: the shape of a fraud policy.
const tenRules = `
version: "bench"
thresholds: {review: 0.3, deny: 0.5}
sets:
  risky_merchants: [merc_1, merc_2, merc_3, merc_4]
  risky_countries: [KP, IR, SY]
rules:
  - {name: merchant, weight: 0.5, expr: payload.MerchantID in sets.risky_merchants}
  - {name: country, weight: 0.5, expr: payload.Country in sets.risky_countries}
  - {name: velocity, weight: 0.6, expr: attempts > 5, reason: "{{attempts}} attempts"}
  - {name: amount, weight: 0.6, expr: "payload.Amount > 20000.0 ? 1.0 : payload.Amount > 5000.0 ? 0.5 : 0.0"}
  - {name: daily, weight: 0.1, expr: spent_today + payload.Amount > 5000.0}
  - {name: currency, weight: 0.2, expr: 'payload.Currency != "EUR" && payload.Currency != "USD"'}
  - {name: round_amount, weight: 0.1, expr: payload.Amount >= 1000.0 && payload.Amount == double(int(payload.Amount))}
  - {name: test_customer, weight: 0.3, expr: payload.CustomerID.startsWith("test_")}
  - {name: no_country, weight: 0.2, expr: payload.Country == ""}
  - {name: tiny, weight: 0.1, expr: payload.Amount < 1.0}
`

func BenchmarkScoredTenRules(b *testing.B) {
	benchTenRules(b, false)
}

// BenchmarkScoredTenRulesRecorded is BenchmarkScoredTenRules with
// Options.RecordInputs: the extra cost of recording what the set read.
func BenchmarkScoredTenRulesRecorded(b *testing.B) {
	benchTenRules(b, true)
}

func benchTenRules(b *testing.B, record bool) {
	set := tenRuleSet(b, record)
	s := tai.Signal[Payment]{ID: "sig", Kind: "payment", Key: "cust_1", Time: time.Now(),
		Payload: Payment{CustomerID: "cust_1", MerchantID: "merc_2", Country: "DE", Currency: "EUR", Amount: 1200}}
	ctx := context.Background()
	d, err := set.Evaluate(ctx, s)
	require.NoError(b, err)
	require.Equal(b, tai.Deny, d.Verdict) // merchant, velocity, daily and round_amount fire
	require.Len(b, d.Contributions, 4)
	require.Equal(b, record, d.Inputs != nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := set.Evaluate(ctx, s); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// tenRuleSet compiles tenRules with the variables a store would return.
func tenRuleSet(b testing.TB, record bool) *taicel.Set[Payment] {
	env, err := taicel.NewEnv(taicel.Options[Payment]{
		Vars: map[string]*cel.Type{"attempts": cel.IntType, "spent_today": cel.DoubleType},
		Lookup: func(context.Context, tai.Signal[Payment]) (map[string]any, error) {
			return map[string]any{"attempts": int64(7), "spent_today": 4200.0}, nil
		},
		RecordInputs: record,
	})
	require.NoError(b, err)
	spec, err := taicel.Parse([]byte(tenRules))
	require.NoError(b, err)
	set, err := env.Compile(spec)
	require.NoError(b, err)
	return set
}

// BenchmarkShadowTenRules judges each signal with the ten-rule set and,
// in its shadow, a candidate of the same rules: about twice the work of
// one set, with one Lookup.
func BenchmarkShadowTenRules(b *testing.B) {
	set := tenRuleSet(b, false)
	spec, err := taicel.Parse([]byte(strings.Replace(tenRules, "attempts > 5", "attempts > 6", 1)))
	require.NoError(b, err)
	cand, err := set.Env().Compile(spec)
	require.NoError(b, err)
	sh, err := taicel.NewShadow[Payment](set, cand, taicel.ShadowOptions[Payment]{})
	require.NoError(b, err)
	s := tai.Signal[Payment]{ID: "sig", Kind: "payment", Key: "cust_1", Time: time.Now(),
		Payload: Payment{CustomerID: "cust_1", MerchantID: "merc_2", Country: "DE", Currency: "EUR", Amount: 1200}}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := sh.Evaluate(ctx, s); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if st := sh.Stats(); st.Agreements != st.Signals {
		b.Fatalf("%+v", st)
	}
}

// BenchmarkBacktestThroughput replays a trail of 100,000 decisions
// written by a pipeline with a kaizen.Audit through a candidate of the
// fraud rules, with an amount: the signals/s metric is the backtest's
// speed (1M decisions in 10 s is 100,000/s).
func BenchmarkBacktestThroughput(b *testing.B) {
	trail := writeTrail(b, stream(100_000))
	for _, mode := range []string{"typed", "dynamic"} {
		b.Run(mode, func(b *testing.B) {
			var cand interface {
				backtest(trail []byte) (*taicel.Report, error)
			}
			if mode == "typed" {
				cand = typedBacktest{candidateSet(b, lowered)}
			} else {
				env, err := taicel.NewEnv(taicel.Options[map[string]any]{})
				require.NoError(b, err)
				raw, err := os.ReadFile("testdata/fraud.yaml")
				require.NoError(b, err)
				spec, err := taicel.Parse([]byte(lowered(string(raw))))
				require.NoError(b, err)
				set, err := env.Compile(spec)
				require.NoError(b, err)
				cand = dynamicBacktest{set}
			}
			b.SetBytes(int64(len(trail)))
			b.ReportAllocs()
			for b.Loop() {
				rep, err := cand.backtest(trail)
				if err != nil || rep.Replayed != 100_000 {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "signals/s")
		})
	}
}

type typedBacktest struct{ set *taicel.Set[Payment] }

func (c typedBacktest) backtest(trail []byte) (*taicel.Report, error) {
	return taicel.Backtest(context.Background(), c.set, bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount"})
}

type dynamicBacktest struct{ set *taicel.Set[map[string]any] }

func (c dynamicBacktest) backtest(trail []byte) (*taicel.Report, error) {
	return taicel.Backtest(context.Background(), c.set, bytes.NewReader(trail), taicel.BacktestOptions{Amount: "payload.Amount"})
}
