package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Payment is the payload of the service whose trail the tests replay.
type Payment struct {
	Customer string
	Country  string
	Amount   float64
	Card     string // personal data, never recorded
}

// liveRules are the rules the service ran.
const liveRules = `version: "1"
name: fraud
thresholds: {review: 0.3, deny: 0.5}
sets:
  countries: [KP]
rules:
  - name: blacklist
    verdict: deny
    expr: payload.Country in sets.countries
    reason: "{{payload.Country}} is blacklisted"
  - name: velocity
    weight: 0.6
    expr: attempts > 5
    reason: "{{attempts}} attempts"
  - name: amount
    weight: 0.6
    expr: "payload.Amount > 4.0 * 5000.0 ? 1.0 : payload.Amount > 5000.0 ? 0.5 : 0.0"
    reason: 'amount {{"%.2f".format([payload.Amount])}}'
`

// candidateRules flags amounts over 2500 instead of 5000.
var candidateRules = strings.Replace(liveRules, "5000.0 ? 0.5", "2500.0 ? 0.5", 1)

type gen struct {
	id       string
	p        Payment
	attempts int64
}

func (g gen) blacklisted() bool { return g.p.Country == "KP" }

// flipped reports whether the candidate's verdict differs: an amount
// between the two limits, which nothing else flags, goes from allow to
// review.
func (g gen) flipped() bool {
	return !g.blacklisted() && g.attempts <= 5 && g.p.Amount > 2500 && g.p.Amount <= 5000
}

// flagged reports whether a decision is review or deny, by the live rules
// or the candidate's.
func (g gen) flagged(candidate bool) bool {
	limit := 5000.0
	if candidate {
		limit = 2500
	}
	return g.blacklisted() || g.attempts > 5 || g.p.Amount > limit
}

func payments(n int) []gen {
	out := make([]gen, n)
	for i := range out {
		p := Payment{Customer: fmt.Sprintf("cust_%d", i%30), Country: "DE", Amount: float64((i*7919)%25000) + 0.5, Card: "4242424242424242"}
		if i%50 == 7 {
			p.Country = "KP"
		}
		out[i] = gen{id: fmt.Sprintf("pay-%d", i), p: p, attempts: int64(i % 9)}
	}
	return out
}

// serviceTrail runs gs through a pipeline judging with liveRules, inputs
// recorded, into kaizen audit trail files at paths, the stream split
// evenly, each file continuing the chain of the one before.
func serviceTrail(t testing.TB, gs []gen, paths ...string) {
	t.Helper()
	attempts := make(map[string]int64, len(gs))
	for _, g := range gs {
		attempts[g.id] = g.attempts
	}
	env, err := taicel.NewEnv(taicel.Options[Payment]{
		Vars: map[string]*cel.Type{"attempts": cel.IntType},
		Lookup: func(_ context.Context, s tai.Signal[Payment]) (map[string]any, error) {
			return map[string]any{"attempts": attempts[s.ID]}, nil
		},
		RecordInputs: true,
		Unrecorded:   []string{"Card"},
	})
	require.NoError(t, err)
	spec, err := taicel.Parse([]byte(liveRules))
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)
	genesis := ""
	per := (len(gs) + len(paths) - 1) / len(paths)
	for i, path := range paths {
		audit, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Genesis: genesis})
		require.NoError(t, err)
		p, err := tai.New[Payment, string](set, tai.ActionFunc[Payment, string](func(context.Context, tai.Signal[Payment]) (string, error) {
			return "charged", nil
		}), tai.WithObservers(audit))
		require.NoError(t, err)
		base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		for _, g := range gs[min(i*per, len(gs)):min((i+1)*per, len(gs))] {
			_, err := p.Process(context.Background(), tai.Signal[Payment]{ID: g.id, Kind: "payment", Key: g.p.Customer, Time: base, Payload: g.p})
			var denied *tai.DeniedError
			if err != nil && !errors.As(err, &denied) {
				require.NoError(t, err)
			}
		}
		require.NoError(t, audit.Shutdown(context.Background()))
		genesis, _ = audit.Last()
	}
}

type backtestFixture struct {
	dir                string
	gs                 []gen
	trailA, trailB     string
	live, cand, labels string
	flips              int
	flipAmount         float64
	labelled           int
}

func newBacktestFixture(t *testing.T) *backtestFixture {
	dir := t.TempDir()
	f := &backtestFixture{dir: dir, gs: payments(400)}
	name := func(n string) string { return filepath.Join(dir, n) }
	f.trailA, f.trailB = name("audit-1.jsonl"), name("audit-2.jsonl")
	serviceTrail(t, f.gs, f.trailA, f.trailB)
	f.live, f.cand, f.labels = name("live.yaml"), name("candidate.yaml"), name("labels.txt")
	require.NoError(t, os.WriteFile(f.live, []byte(liveRules), 0o600))
	require.NoError(t, os.WriteFile(f.cand, []byte(candidateRules), 0o600))
	// The truth: fraud was confirmed for the amounts the candidate now
	// flags.
	var labels strings.Builder
	labels.WriteString("# confirmed fraud\n\n")
	for _, g := range f.gs {
		if g.flipped() {
			f.flips++
			f.flipAmount += g.p.Amount
			fmt.Fprintf(&labels, "  %s\n", g.id)
			f.labelled++
		}
	}
	require.NoError(t, os.WriteFile(f.labels, []byte(labels.String()), 0o600))
	require.NotZero(t, f.flips)
	return f
}

func TestBacktestCommand(t *testing.T) {
	f := newBacktestFixture(t)
	both := []string{"-audit", f.trailA, "-audit", f.trailB}
	args := func(rules string, more ...string) []string {
		return append(append([]string{"backtest", "-rules", rules}, both...), more...)
	}

	t.Run("the live rules change nothing", func(t *testing.T) {
		code, stdout, stderr := runCLI(args(f.live)...)
		assert.Equal(t, 0, code, stderr)
		assert.Empty(t, stderr)
		assert.Contains(t, stdout, `candidate fraud version 1 against the decisions of policy "fraud"`)
		assert.Contains(t, stdout, "400 lines: 400 replayed, 0 without inputs, 0 of other kinds or policies, 0 errors")
		assert.Contains(t, stdout, "changed verdicts: 0 of 400 (0.00%); scores changed, verdict kept: 0")
	})

	t.Run("text", func(t *testing.T) {
		code, stdout, stderr := runCLI(args(f.cand, "-amount", "payload.Amount", "-labels", f.labels, "-positive", "review", "-examples", "2")...)
		assert.Equal(t, 1, code, stderr)
		assert.Empty(t, stderr)
		t.Logf("\n%s", stdout)
		for _, want := range []string{
			fmt.Sprintf("changed verdicts: %d of 400", f.flips),
			fmt.Sprintf("  allow  -> review %7d  payload.Amount %.2f", f.flips, f.flipAmount),
			"        now review 0.30 amount ",
			"rules in the changed decisions:",
			fmt.Sprintf("labels: %d signals labelled positive (0 not replayed); a decision of review or more flags a signal", f.labelled),
		} {
			assert.Contains(t, stdout, want)
		}
		assert.Equal(t, 2, strings.Count(stdout, "        was allow "), "two examples")
		assert.NotContains(t, stdout, "4242", "the card was never recorded")
	})

	t.Run("json", func(t *testing.T) {
		code, stdout, stderr := runCLI(args(f.cand, "-json", "-amount", "payload.Amount", "-labels", f.labels, "-positive", "review", "-kind", "payment", "-workers", "3")...)
		assert.Equal(t, 1, code, stderr)
		var rep taicel.Report
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
		assert.Equal(t, 400, rep.Replayed)
		assert.Equal(t, f.flips, rep.Changed)
		require.Len(t, rep.Flips, 1)
		assert.Equal(t, tai.Allow, rep.Flips[0].From)
		assert.Equal(t, tai.Review, rep.Flips[0].To)
		assert.InDelta(t, f.flipAmount, rep.Flips[0].Amount, 1e-6)
		assert.Len(t, rep.Flips[0].Examples, 5)
		require.Len(t, rep.Rules, 1)
		assert.Equal(t, taicel.RuleChange{Rule: "amount", OnlyNew: f.flips, OnlyNewAmount: rep.Flips[0].Amount}, rep.Rules[0])
		require.NotNil(t, rep.Labels)
		var old, cand taicel.Confusion
		for _, g := range f.gs {
			for _, c := range []struct {
				conf *taicel.Confusion
				flag bool
			}{{&old, g.flagged(false)}, {&cand, g.flagged(true)}} {
				switch pos := g.flipped(); {
				case c.flag && pos:
					c.conf.TP++
				case c.flag:
					c.conf.FP++
				case pos:
					c.conf.FN++
				default:
					c.conf.TN++
				}
			}
		}
		assert.Equal(t, [4]int{old.TP, old.FP, old.FN, old.TN}, [4]int{rep.Labels.Recorded.TP, rep.Labels.Recorded.FP, rep.Labels.Recorded.FN, rep.Labels.Recorded.TN})
		assert.Equal(t, [4]int{cand.TP, cand.FP, cand.FN, cand.TN}, [4]int{rep.Labels.Candidate.TP, rep.Labels.Candidate.FP, rep.Labels.Candidate.FN, rep.Labels.Candidate.TN})
		assert.Zero(t, rep.Labels.Recorded.Recall)
		assert.Equal(t, 1.0, rep.Labels.Candidate.Recall)
	})

	t.Run("a field no record has", func(t *testing.T) {
		rules := filepath.Join(f.dir, "card.yaml")
		require.NoError(t, os.WriteFile(rules, []byte(liveRules+"  - {name: card, weight: 0.1, expr: 'payload.Card.startsWith(\"4\")'}\n"), 0o600))
		code, stdout, stderr := runCLI(args(rules, "-examples", "1")...)
		assert.Equal(t, 1, code, stderr)
		assert.Contains(t, stdout, "errors (the first 1 of ")
		assert.Contains(t, stdout, `taicel: rule "card": no such key: Card`)
		assert.Regexp(t, `\n\s+card\s+0\s+0\s+0\s+\d+\n`, stdout)
	})

	t.Run("no examples", func(t *testing.T) {
		code, stdout, _ := runCLI(args(f.cand, "-examples", "0")...)
		assert.Equal(t, 1, code)
		assert.NotContains(t, stdout, "was allow")
	})
}

func TestBacktestCommandErrors(t *testing.T) {
	f := newBacktestFixture(t)
	missing := filepath.Join(f.dir, "missing")
	broken := filepath.Join(f.dir, "broken.yaml")
	require.NoError(t, os.WriteFile(broken, []byte(strings.Replace(liveRules, "payload.Country in", "payload.Country in in", 1)), 0o600))
	torn := filepath.Join(f.dir, "torn.jsonl")
	raw, err := os.ReadFile(f.trailA)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(torn, raw[:len(raw)-30], 0o600))
	empty := filepath.Join(f.dir, "empty.txt")
	require.NoError(t, os.WriteFile(empty, []byte("# nothing\n"), 0o600))
	link := filepath.Join(f.dir, "link.jsonl")
	require.NoError(t, os.Symlink(f.trailA, link))
	base := []string{"backtest", "-rules", f.cand, "-audit", f.trailA}
	dangling, gone := filepath.Join(f.dir, "dangling"), filepath.Join(f.dir, "gone", "file")
	require.NoError(t, os.Symlink(gone, dangling))
	isDangling := "open " + dangling + ": no such file or directory: it is a symbolic link to " + gone + ", which does not exist\n"

	for _, c := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no rules", []string{"backtest", "-audit", f.trailA}, "taikit backtest: no -rules FILE\nRun \"taikit backtest -h\" for help.\n"},
		{"no trail", []string{"backtest", "-rules", f.cand}, "taikit backtest: no -audit FILE"},
		{"an argument", append(base, f.trailB), `unexpected argument "` + f.trailB + `"; trail files are given with -audit`},
		{"bad positive", append(base, "-positive", "allow"), `-positive "allow" is not deny or review`},
		{"negative examples", append(base, "-examples", "-1"), "-examples -1 is negative"},
		{"negative workers", append(base, "-workers", "-2"), "-workers -2 is negative"},
		{"too many workers", append(base, "-workers", "4000000000"), "-workers 4000000000 is more than 256"},
		{"bad flag", append(base, "-label", "x"), "flag provided but not defined: -label"},
		{"rules missing", []string{"backtest", "-rules", missing, "-audit", f.trailA}, "taikit backtest: taicel: open " + missing + ": no such file or directory"},
		{"rules do not compile", []string{"backtest", "-rules", broken, "-audit", f.trailA}, `taikit backtest: ` + broken + `: taicel: rule "blacklist"`},
		{"trail missing", append(base, "-audit", missing), "open " + missing + ": no such file or directory"},
		{"rules a dangling link", []string{"backtest", "-rules", dangling, "-audit", f.trailA}, isDangling},
		{"trail a dangling link", append(base, "-audit", dangling), isDangling},
		{"labels a dangling link", append(base, "-labels", dangling), isDangling},
		{"a trail twice", append(base, "-audit", f.trailB, "-audit", f.trailA), "-audit " + f.trailA + " is given twice: each trail is read once"},
		{"a trail twice, through a link", append(base, "-audit", link), "-audit " + link + " is the file " + f.trailA + " given before: each trail is read once"},
		{"trail torn", []string{"backtest", "-rules", f.cand, "-audit", torn}, "taikit backtest: taicel: backtest: " + torn + ":200: not an audit trail entry"},
		{"labels missing", append(base, "-labels", missing), "taikit backtest: -labels: open " + missing},
		{"labels empty", append(base, "-labels", empty), "taikit backtest: -labels: " + empty + ": no signal ID"},
		{"bad amount", append(base, "-amount", "payload.Amount +"), `taikit backtest: taicel: BacktestOptions.Amount "payload.Amount +": ERROR: amount:1:17: Syntax error`},
		{"nothing to replay", append(base, "-kind", "refund"), `taikit backtest: no decision of kind "refund" in policy "fraud" to replay: 200 lines read, 0 without inputs, 200 of other kinds or policies`},
		{"another policy", append(base, "-policy", "fraud-v2"), `no decision of policy "fraud-v2" to replay`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(c.args...)
			assert.Equal(t, 2, code, "stdout: %s", stdout)
			assert.Contains(t, stderr, c.stderr)
		})
	}

	// Any policy replays them again.
	code, _, stderr := runCLI(append(base, "-policy", "*")...)
	assert.Equal(t, 1, code, stderr)

	code, stdout, _ := runCLI("backtest", "-h")
	assert.Equal(t, 0, code)
	for _, want := range []string{"usage: taikit backtest -rules FILE -audit FILE [-audit FILE]... [flags]", "taicel.Backtest.", "Exit status: 0 when the candidate",
		"  -rules FILE", "  -audit FILE", "  -labels FILE", "  -positive VERDICT", "  -amount EXPR", "  -kind KIND", "  -policy POLICY", "  -json", "  -examples int", "  -workers N"} {
		assert.Contains(t, stdout, want)
	}
	// The variables named are the payment service's, which its trails record.
	assert.Contains(t, stdout, "attempts, day_total, moved_km")
	assert.NotContains(t, stdout, "spent_today")
}

var benchRecords = flag.Int("backtest.records", 100_000, "the number of decisions BenchmarkBacktestCommand replays")

// BenchmarkBacktestCommand runs the backtest command on a trail of
// -backtest.records decisions (100,000 by default) written by a pipeline
// with a kaizen.Audit, as a user would from the shell, less the process
// start: the signals/s metric is its speed. The command is meant to
// replay 1M decisions in 10 s: go test -bench BacktestCommand -benchtime
// 1x -args -backtest.records=1000000.
func BenchmarkBacktestCommand(b *testing.B) {
	dir := b.TempDir()
	trail, rules := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "candidate.yaml")
	serviceTrail(b, payments(*benchRecords), trail)
	require.NoError(b, os.WriteFile(rules, []byte(candidateRules), 0o600))
	fi, err := os.Stat(trail)
	require.NoError(b, err)
	b.SetBytes(fi.Size())
	for b.Loop() {
		code, _, stderr := runCLI("backtest", "-rules", rules, "-audit", trail, "-amount", "payload.Amount", "-json")
		if code != 1 {
			b.Fatalf("exit status %d: %s", code, stderr)
		}
	}
	b.ReportMetric(float64(*benchRecords*b.N)/b.Elapsed().Seconds(), "signals/s")
}

// TestReadLabelsSkipsAByteOrderMark: a labels file saved by a spreadsheet
// or an editor on Windows begins with a UTF-8 byte order mark; it is not
// part of the first ID, which would otherwise match no signal and count
// a confirmed case as a negative.
func TestReadLabelsSkipsAByteOrderMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "labels.txt")
	require.NoError(t, os.WriteFile(path, []byte("\ufeffpay-1\r\npay-2\r\n"), 0o600))
	ids, err := readLabels(path)
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"pay-1": true, "pay-2": true}, ids)

	require.NoError(t, os.WriteFile(path, []byte("\ufeff# confirmed\npay-1\n"), 0o600))
	ids, err = readLabels(path)
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"pay-1": true}, ids, "a comment on the first line is a comment")
}

// TestReadLabelsRefusesWhatIsNotUTF8 refuses a labels file that is not
// UTF-8 text: one saved as UTF-16 (PowerShell's "> labels.txt" writes
// it) or a binary file given by mistake. Its IDs, read as bytes, match no
// signal (the IDs of a trail are UTF-8), and every confirmed case would
// count as a negative with nothing said but "not replayed". A line too
// long for an ID (the IDs of a spreadsheet's row) is named by its number.
func TestReadLabelsRefusesWhatIsNotUTF8(t *testing.T) {
	utf16 := func(bom []byte, s string, le bool) []byte {
		out := slices.Clone(bom)
		for _, r := range s {
			if le {
				out = append(out, byte(r), 0)
			} else {
				out = append(out, 0, byte(r))
			}
		}
		return out
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"UTF-16LE", utf16([]byte{0xff, 0xfe}, "pay-1\r\npay-2\r\n", true), "UTF-16"},
		{"UTF-16BE", utf16([]byte{0xfe, 0xff}, "pay-1\npay-2\n", false), "UTF-16"},
		{"binary", []byte("pay-1\n\x1f\x8b\x08\x00\xff\xc3pay\n"), "line 2: not UTF-8 text"},
		{"one long line", []byte("pay-1\n" + strings.Repeat("pay-2,", 20000) + "\n"), "line 2: longer than 65536 bytes; give a file of signal IDs, one per line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "labels.txt")
			require.NoError(t, os.WriteFile(path, c.data, 0o600))
			ids, err := readLabels(path)
			assert.Nil(t, ids)
			assert.ErrorContains(t, err, path+": ")
			assert.ErrorContains(t, err, c.want)
		})
	}
}

// An empty value given to a flag, as "-labels $LABELS" gives with LABELS
// unset, is refused, not taken for the flag left out: the report left out
// the precision and recall asked for, or replayed every kind or policy,
// and said nothing of it.
func TestBacktestRefusesEmptyFlagValues(t *testing.T) {
	f := newBacktestFixture(t)
	base := []string{"backtest", "-rules", f.cand, "-audit", f.trailA}
	for _, c := range []struct {
		flag, name string
	}{{"-labels", "FILE"}, {"-amount", "EXPR"}, {"-kind", "KIND"}, {"-policy", "POLICY"}, {"-rules", "FILE"}, {"-audit", "FILE"}} {
		t.Run(c.flag, func(t *testing.T) {
			args := slices.Clone(base)
			if i := slices.Index(args, c.flag); i >= 0 {
				args = slices.Delete(args, i, i+2) // given once, empty
			}
			code, stdout, stderr := runCLI(append(args, c.flag, "")...)
			assert.Equal(t, 2, code)
			assert.Empty(t, stdout)
			assert.Equal(t, "taikit backtest: "+c.flag+": empty "+c.name+"\nRun \"taikit backtest -h\" for help.\n", stderr)
		})
	}
}

// When nothing is left to replay, the command names every filter that
// left it so: a -kind no decision has was not named, and the message blamed
// the policy, even -policy *, which takes any.
func TestBacktestNothingToReplayNamesTheFilters(t *testing.T) {
	f := newBacktestFixture(t)
	base := []string{"backtest", "-rules", f.cand, "-audit", f.trailA}
	for _, c := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"the policy", []string{"-policy", "fraud-v2"}, `no decision of policy "fraud-v2" to replay: 200 lines read`},
		{"a kind", []string{"-kind", "refund"}, `no decision of kind "refund" in policy "fraud" to replay: 200 lines read`},
		{"a kind, any policy", []string{"-kind", "refund", "-policy", "*"}, `no decision of kind "refund" in any policy to replay: 200 lines read`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append(slices.Clone(base), c.flags...)...)
			assert.Equal(t, 2, code, "stdout: %s", stdout)
			assert.Equal(t, "taikit backtest: "+c.want+", 0 without inputs, 200 of other kinds or policies\n", stderr)
		})
	}
}

// A flag that takes one value, given twice, is refused, as -audit, which
// takes many, is not: "-labels a -labels b" read b alone, and reckoned
// the precision and recall with the cases of a counted as negatives.
func TestBacktestRefusesAFlagGivenTwice(t *testing.T) {
	f := newBacktestFixture(t)
	base := []string{"backtest", "-rules", f.cand, "-audit", f.trailA}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"labels", []string{"-labels", f.labels, "-labels", f.labels}},
		{"kind", []string{"-kind", "payment", "-kind", "refund"}},
		{"rules", []string{"-rules", f.live}},
		{"json", []string{"-json", "-json=false"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(slices.Concat(base, c.args)...)
			assert.Equal(t, 2, code, "stdout: %s", stdout)
			assert.Empty(t, stdout)
			assert.Equal(t, "taikit backtest: "+c.args[0]+" is given twice: it takes one value, and only the last would count\n"+
				"Run \"taikit backtest -h\" for help.\n", stderr)
		})
	}
	code, _, stderr := runCLI(slices.Concat(base, []string{"-audit", f.trailB})...)
	assert.Equal(t, 1, code, "-audit takes many: %s", stderr)
}

// An -audit of - is the standard input, the only -audit: a trail piped in
// (zcat audit.jsonl.gz | taikit backtest ... -audit -) replays as its
// files do.
func TestBacktestReadsStandardInput(t *testing.T) {
	f := newBacktestFixture(t)
	a, err := os.ReadFile(f.trailA)
	require.NoError(t, err)
	b, err := os.ReadFile(f.trailB)
	require.NoError(t, err)
	both := string(a) + string(b)

	code, stdout, stderr := runCLIWithStdin(strings.NewReader(both), "backtest", "-rules", f.cand, "-audit", "-", "-examples", "0")
	assert.Equal(t, 1, code, stderr)
	assert.Empty(t, stderr)
	assert.Contains(t, stdout, "400 lines: 400 replayed, 0 without inputs, 0 of other kinds or policies, 0 errors")
	assert.Contains(t, stdout, fmt.Sprintf("changed verdicts: %d of 400", f.flips))
	_, fromFiles, _ := runCLI("backtest", "-rules", f.cand, "-audit", f.trailA, "-audit", f.trailB, "-examples", "0")
	assert.Equal(t, fromFiles, stdout, "the same report as from the files")

	code, _, stderr = runCLIWithStdin(strings.NewReader(""), "backtest", "-rules", f.cand, "-audit", "-")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `no decision of policy "fraud" to replay: 0 lines read`, "nothing on it")

	firstLine, _, _ := strings.Cut(string(a), "\n")
	code, _, stderr = runCLIWithStdin(strings.NewReader(firstLine+"\n"), "backtest", "-rules", f.cand, "-audit", "-", "-kind", "refund")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `no decision of kind "refund" in policy "fraud" to replay: 1 line read, 0 without inputs, 1 of other kinds or policies`)

	for _, c := range []stdinCase{
		{"with another -audit", strings.NewReader(both), []string{"backtest", "-rules", f.cand, "-audit", "-", "-audit", f.trailA}, 2, "",
			"-audit - (the standard input) is given with another -audit: it is then the only one"},
		{"after another -audit", strings.NewReader(both), []string{"backtest", "-rules", f.cand, "-audit", f.trailA, "-audit", "-"}, 2, "",
			"-audit - (the standard input) is given with another -audit"},
		{"not a trail", strings.NewReader("hello\n"), []string{"backtest", "-rules", f.cand, "-audit", "-"}, 2, "",
			"taikit backtest: taicel: backtest: (standard input):1: not an audit trail entry: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLIWithStdin(c.stdin, c.args...)
			cliCase{c.name, c.args, c.code, c.stdout, c.stderr}.check(t, code, stdout, stderr)
		})
	}
}

// -rules - and -labels - read the rule file and the labels from the
// standard input, as -audit - reads the trail: the report is the one of
// the same files. The errors of what it holds name it (standard input).
func TestBacktestReadsRulesOrLabelsFromStandardInput(t *testing.T) {
	f := newBacktestFixture(t)
	audits := []string{"-audit", f.trailA, "-audit", f.trailB}
	labels, err := os.ReadFile(f.labels)
	require.NoError(t, err)
	withLabels := []string{"-labels", f.labels, "-positive", "review", "-examples", "1"}

	_, fromFiles, _ := runCLI(slices.Concat([]string{"backtest", "-rules", f.cand}, audits, withLabels)...)
	require.Contains(t, fromFiles, "labels: ")
	for _, c := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"the rules", candidateRules, slices.Concat([]string{"backtest", "-rules", "-"}, audits, withLabels)},
		{"the labels", string(labels), slices.Concat([]string{"backtest", "-rules", f.cand}, audits, withLabels[2:], []string{"-labels", "-"})},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLIWithStdin(strings.NewReader(c.stdin), c.args...)
			assert.Equal(t, 1, code, stderr)
			assert.Empty(t, stderr)
			assert.Equal(t, fromFiles, stdout, "the same report as from the files")
		})
	}

	base := []string{"backtest", "-audit", f.trailA}
	tooLarge := candidateRules + "#" + strings.Repeat("x", taicel.MaxRuleFileBytes-len(candidateRules))
	for _, c := range []stdinCase{
		{"not a rule file", strings.NewReader("hello\n"), slices.Concat(base, []string{"-rules", "-"}), 2, "", "taikit backtest: (standard input): taicel: "},
		{"rules that do not compile", strings.NewReader(strings.Replace(liveRules, "payload.Country in", "payload.Country in in", 1)),
			slices.Concat(base, []string{"-rules", "-"}), 2, "", `taikit backtest: (standard input): taicel: rule "blacklist"`},
		{"a rule file too large", strings.NewReader(tooLarge), slices.Concat(base, []string{"-rules", "-"}), 2, "",
			fmt.Sprintf("taikit backtest: (standard input) holds more than %d bytes (taicel.MaxRuleFileBytes)\n", taicel.MaxRuleFileBytes)},
		{"labels that are not UTF-8", strings.NewReader("pay-1\n\xff\xc3pay\n"), slices.Concat(base, []string{"-rules", f.cand, "-labels", "-"}), 2, "",
			"taikit backtest: -labels: (standard input): line 2: not UTF-8 text"},
		{"no label", strings.NewReader("# nothing\n"), slices.Concat(base, []string{"-rules", f.cand, "-labels", "-"}), 2, "",
			"taikit backtest: -labels: (standard input): no signal ID\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLIWithStdin(c.stdin, c.args...)
			cliCase{c.name, c.args, c.code, c.stdout, c.stderr}.check(t, code, stdout, stderr)
		})
	}
}

// The standard input can be read once: one of -rules, -labels and -audit
// may be -, not two; nor may another name the file the standard input is
// (/dev/stdin) while one is -.
func TestBacktestReadsStandardInputOnce(t *testing.T) {
	f := newBacktestFixture(t)
	open := func(path string) *os.File {
		in, err := os.Open(path)
		require.NoError(t, err)
		t.Cleanup(func() { in.Close() })
		return in
	}
	rules, labels, audit := []string{"-rules", "-"}, []string{"-labels", "-"}, []string{"-audit", "-"}
	for _, c := range []stdinCase{
		{"-rules and -audit", strings.NewReader(candidateRules), slices.Concat([]string{"backtest"}, rules, audit), 2, "",
			"taikit backtest: -rules - and -audit - both read the standard input: give one of them as a file\n" +
				"Run \"taikit backtest -h\" for help.\n"},
		{"-rules and -labels", strings.NewReader(candidateRules), slices.Concat([]string{"backtest", "-audit", f.trailA}, rules, labels), 2, "",
			"taikit backtest: -rules - and -labels - both read the standard input: give one of them as a file\n"},
		{"-labels and -audit", strings.NewReader(""), slices.Concat([]string{"backtest", "-rules", f.cand}, labels, audit), 2, "",
			"taikit backtest: -labels - and -audit - both read the standard input: give one of them as a file\n"},
		{"all three", strings.NewReader(""), slices.Concat([]string{"backtest"}, audit, labels, rules), 2, "",
			"taikit backtest: -rules -, -labels - and -audit - all read the standard input: give all but one of them as files\n"},
		{"-rules - and a -labels that is the standard input", open(f.labels), slices.Concat([]string{"backtest", "-audit", f.trailA, "-labels", f.labels}, rules), 2, "",
			"taikit backtest: -labels " + f.labels + " is the standard input, which -rules - reads: give one of them as a file\n"},
		{"-labels - and an -audit that is the standard input", open(f.trailB), slices.Concat([]string{"backtest", "-rules", f.cand, "-audit", f.trailA, "-audit", f.trailB}, labels), 2, "",
			"taikit backtest: -audit " + f.trailB + " is the standard input, which -labels - reads: give one of them as a file\n"},
		{"-audit - and a -rules that is the standard input", open(f.cand), slices.Concat([]string{"backtest", "-rules", f.cand}, audit), 2, "",
			"taikit backtest: -rules " + f.cand + " is the standard input, which -audit - reads: give one of them as a file\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLIWithStdin(c.stdin, c.args...)
			cliCase{c.name, c.args, c.code, c.stdout, c.stderr}.check(t, code, stdout, stderr)
		})
	}
}

// A trail whose last line a crash cut short stops the backtest at that
// line, as any line that is not an audit trail entry does (exit status
// 2), and as audit verify fails on it: the help promises a report of the
// whole trail, or an error. The error names the input the same way
// whether it is a file or the standard input.
func TestBacktestStopsAtALastLineCutShort(t *testing.T) {
	f := newBacktestFixture(t)
	raw, err := os.ReadFile(f.trailA)
	require.NoError(t, err)
	torn := filepath.Join(f.dir, "torn.jsonl")
	require.NoError(t, os.WriteFile(torn, raw[:len(raw)-30], 0o600))

	code, stdout, fromFile := runCLI("backtest", "-rules", f.cand, "-audit", torn)
	assert.Equal(t, 2, code, fromFile)
	assert.Empty(t, stdout)
	assert.True(t, strings.HasPrefix(fromFile, "taikit backtest: taicel: backtest: "+torn+":200: not an audit trail entry: "), fromFile)

	in, err := os.Open(torn)
	require.NoError(t, err)
	defer in.Close()
	code, stdout, fromStdin := runCLIWithStdin(in, "backtest", "-rules", f.cand, "-audit", "-")
	assert.Equal(t, 2, code, fromStdin)
	assert.Empty(t, stdout)
	assert.Equal(t, strings.Replace(fromFile, torn, stdinName, 1), fromStdin)

	code, _, verified := runCLI("audit", "verify", torn)
	assert.Equal(t, 1, code, verified)
	assert.Contains(t, verified, torn+":200: not an audit line (malformed or truncated): the last line is cut short")
}
