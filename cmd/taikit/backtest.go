package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

const backtestDoc = `Replay the decisions recorded in kaizen audit trails through the rule set
in a taicel rule file, the candidate, and report what it would have
changed: the verdicts that flip (allow -> deny, ...) with the first
examples of each, the rules involved, the decisions it cannot judge, and,
with -labels, the precision and recall of the recorded decisions and of
the candidate's side by side. It is taicel.BacktestFiles.

Only decisions recorded with their inputs are replayed: those of a service
whose taicel.Env has Options.RecordInputs. Each is judged again with the
payload and the variables recorded (what the store said then) and its
verdict compared with the recorded one. By default only the decisions of
the policy the rule file names are replayed (-policy); the others, the
decisions without inputs and the rule file reloads are counted apart.

The command knows no Go type of the payload: the rules are compiled with a
dynamic payload, a map (taicel.NewEnv[map[string]any]), and every variable
they read (the payment service's attempts, day_total, moved_km, ...) is
declared dyn. Numbers keep the type they were recorded with, so
payload.Amount > 4.0 * 5000.0 compares a double and attempts > 5 an int.
Names are checked only at replay: an expression reading a field or a
variable no record has fails on each record, and is reported under its
rule. To have field names and types checked when the rules compile,
backtest from Go with the payload's type: taicel.Backtest. The strings,
math, lists, sets and encoders extensions of CEL are on.

Any one of -rules, -labels and -audit may be -, the standard input (a file
named - is given as ./-): zcat audit.jsonl.gz | taikit backtest -rules
candidate.yaml -audit -. It is read once, so only one of them may be -, and
none of the others may name the file it is (/dev/stdin). An -audit of - is
the only -audit; errors and examples name its lines by number. Errors name
it (standard input).

The report goes to the standard output, as text or, with -json, as the
JSON of a taicel.Report. A change of score that keeps the verdict is
counted but is not a change.

Exit status: 0 when the candidate decides every replayed decision as
recorded; 1 when it changes a verdict or cannot judge a recorded decision;
2 when the command is called wrongly or cannot run: a bad flag, a flag
given an empty value, a flag other than -audit given twice, a trail file
given twice, more than one input read from the standard input, a rule file
that does not parse or compile, an -amount that does not compile, a file
that cannot be read, a line that is not an audit trail entry, or no
decision to replay at all.`

// maxWorkers bounds -workers: each worker keeps up to four batches of
// lines in memory, and far more than the CPUs only adds to that (a
// number in the billions ran the command out of memory).
const maxWorkers = 256

// auditFiles collects the -audit flags, in order.
type auditFiles []string

func (a *auditFiles) String() string { return strings.Join(*a, ",") }

func (a *auditFiles) Set(v string) error {
	*a = append(*a, v)
	return nil
}

func (*auditFiles) repeatable() {}

func backtestCommand() *command {
	return &command{
		name:    "backtest",
		summary: "replay audit trails through a candidate rule file",
		args:    "-rules FILE -audit FILE [-audit FILE]... [flags]",
		doc:     backtestDoc,
		flags: func(fs *flag.FlagSet) runFunc {
			rules := fs.String("rules", "", "the candidate's rule `FILE` (taicel YAML or JSON), or - for the standard input")
			var audits auditFiles
			fs.Var(&audits, "audit", "an audit trail `FILE` written by kaizen.Audit, or - for the standard input; repeat the flag for more, read in turn")
			labels := fs.String("labels", "", "a `FILE` of the IDs of the signals known to be positive (fraud confirmed, deployments\n"+
				"rolled back), one per line, or - for the standard input; blank lines and lines starting with # are skipped")
			positive := fs.String("positive", "deny", "the `VERDICT` (deny or review) at or above which a decision flags a signal, for -labels")
			var opts taicel.BacktestOptions
			fs.StringVar(&opts.Amount, "amount", "", "a CEL `EXPR` summed per flip and per rule, such as payload.Amount")
			fs.StringVar(&opts.Kind, "kind", "", "replay only the signals of this `KIND`")
			fs.StringVar(&opts.Policy, "policy", "", "replay only the decisions of this `POLICY` (default the rule file's name; * for any)")
			fs.IntVar(&opts.Examples, "examples", 5, "the number of examples of each flip and of the errors, 0 for none")
			fs.IntVar(&opts.Workers, "workers", 0, "decode and judge with `N` goroutines, at most 256 (default one per CPU)")
			asJSON := fs.Bool("json", false, "write the report as JSON")
			return func(path string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
				if err := emptyFlag(fs, "rules", "labels", "amount", "kind", "policy"); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if slices.Contains(audits, "") {
					return usageError(stderr, path, "-audit: empty FILE")
				}
				switch {
				case len(args) > 0:
					return usageError(stderr, path, "unexpected argument %q; trail files are given with -audit", args[0])
				case *rules == "":
					return usageError(stderr, path, "no -rules FILE")
				case len(audits) == 0:
					return usageError(stderr, path, "no -audit FILE")
				case opts.Examples < 0:
					return usageError(stderr, path, "-examples %d is negative", opts.Examples)
				case opts.Workers < 0:
					return usageError(stderr, path, "-workers %d is negative", opts.Workers)
				case opts.Workers > maxWorkers:
					return usageError(stderr, path, "-workers %d is more than %d", opts.Workers, maxWorkers)
				}
				if slices.Contains(audits, stdinArg) && len(audits) > 1 {
					return usageError(stderr, path, "-audit - (the standard input) is given with another -audit: it is then the only one")
				}
				if err := backtestStdinOnce(*rules, *labels, audits, stdin); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if err := distinctFiles("-audit ", audits); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if opts.Examples == 0 {
					opts.Examples = -1 // none, not the library's default
				}
				switch *positive {
				case "deny":
					opts.Positive = tai.Deny
				case "review":
					opts.Positive = tai.Review
				default:
					return usageError(stderr, path, "-positive %q is not deny or review", *positive)
				}
				if *labels != "" {
					var ids map[string]bool
					var err error
					if *labels == stdinArg {
						ids, err = scanLabels(stdinName, stdin)
					} else {
						ids, err = readLabels(*labels)
					}
					if err != nil {
						fmt.Fprintf(stderr, "%s: -labels: %v\n", path, explainDanglingLink(err))
						return exitUsage
					}
					opts.Labels = ids
				}
				return backtest(path, *rules, audits, opts, *asJSON, stdin, stdout, stderr)
			}
		},
	}
}

// backtestStdinOnce returns an error when more than one input of backtest
// would read the standard input, which can be read once: two or more of
// -rules, -labels and -audit given as -, or one given as - with another
// that names the file the standard input is (/dev/stdin).
func backtestStdinOnce(rules, labels string, audits []string, stdin io.Reader) error {
	type input struct{ flag, path string }
	inputs := []input{{"-rules", rules}, {"-labels", labels}}
	for _, a := range audits {
		inputs = append(inputs, input{"-audit", a})
	}
	var dashes []string
	for _, in := range inputs {
		if in.path == stdinArg {
			dashes = append(dashes, in.flag+" -")
		}
	}
	switch n := len(dashes); {
	case n == 2:
		return fmt.Errorf("%s and %s both read the standard input: give one of them as a file", dashes[0], dashes[1])
	case n > 2:
		return fmt.Errorf("%s and %s all read the standard input: give all but one of them as files", strings.Join(dashes[:n-1], ", "), dashes[n-1])
	case n == 1:
		for _, in := range inputs {
			if isStdin(in.path, stdin) {
				return fmt.Errorf("%s %s is the standard input, which %s reads: give one of them as a file", in.flag, in.path, dashes[0])
			}
		}
	}
	return nil
}

// backtest runs the backtest and reports as the help says. A rules or
// audit of "-" is stdin; an audit of "-" is the only one.
func backtest(path, rules string, audits []string, opts taicel.BacktestOptions, asJSON bool, stdin io.Reader, stdout, stderr io.Writer) int {
	set, err := compileRules(rules, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, explainDanglingLink(err))
		return exitUsage
	}
	var rep *taicel.Report
	if audits[0] == stdinArg {
		rep, err = taicel.Backtest(context.Background(), set, stdin, opts)
		// The library names a reader's lines by number alone: name the
		// input as a file's error names the file.
		var te *taicel.TrailError
		if errors.As(err, &te) && te.File == "" {
			te.File = stdinName
		}
	} else {
		rep, err = taicel.BacktestFiles(context.Background(), set, opts, audits...)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, explainDanglingLink(err))
		return exitUsage
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: writing the report: %v\n", path, err)
		return exitUsage
	}
	switch {
	case rep.Replayed == 0 && rep.Errors == 0:
		fmt.Fprintf(stderr, "%s: no decision of %s to replay: %d %s read, %d without inputs, %d of other kinds or policies\n",
			path, replayedFilter(rep), rep.Read, plural(rep.Read, "line"), rep.Skipped, rep.Filtered)
		return exitUsage
	case rep.Changed > 0 || rep.Errors > 0:
		return exitProblem
	}
	return exitOK
}

// replayedFilter names the decisions rep's backtest replays, by the
// kind and the policy they must have: policy "fraud", or kind "refund"
// in any policy.
func replayedFilter(rep *taicel.Report) string {
	policy := fmt.Sprintf("policy %q", rep.Policy)
	if rep.Policy == "*" {
		policy = "any policy"
	}
	if rep.Kind == "" {
		return policy
	}
	return fmt.Sprintf("kind %q in %s", rep.Kind, policy)
}

// compileRules compiles the rule file with a dynamic payload, read from
// stdin when path is "-".
func compileRules(path string, stdin io.Reader) (*taicel.Set[map[string]any], error) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{
		EnvOptions: []cel.EnvOption{ext.Math(), ext.Lists(), ext.Sets(), ext.Encoders()},
	})
	if err != nil {
		return nil, err
	}
	var spec *taicel.Spec
	name := path
	if path == stdinArg {
		name = stdinName
		spec, err = parseRules(stdin)
	} else {
		spec, err = taicel.ParseFile(path)
	}
	if err != nil {
		return nil, err
	}
	set, err := env.Compile(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return set, nil
}

// parseRules reads and parses a rule file from the standard input r,
// within taicel.MaxRuleFileBytes, as taicel.ParseFile does a file's; its
// errors name it (standard input).
func parseRules(r io.Reader) (*taicel.Spec, error) {
	data, err := io.ReadAll(io.LimitReader(r, taicel.MaxRuleFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stdinName, err)
	}
	if len(data) > taicel.MaxRuleFileBytes {
		return nil, fmt.Errorf("%s holds more than %d bytes (taicel.MaxRuleFileBytes)", stdinName, taicel.MaxRuleFileBytes)
	}
	spec, err := taicel.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stdinName, err)
	}
	return spec, nil
}

// readLabels reads a file of signal IDs, one per line. A UTF-8 byte order
// mark at its start, which spreadsheets and Windows editors write, is not
// part of the first ID. A file that is not UTF-8 text (UTF-16, or binary)
// is refused: the IDs of a trail are UTF-8, and its lines would match
// none of them. So is a line longer than bufio.MaxScanTokenSize, which no
// ID is.
func readLabels(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return scanLabels(path, f)
}

// scanLabels reads signal IDs from r as readLabels does from a file; its
// errors call r name.
func scanLabels(name string, r io.Reader) (map[string]bool, error) {
	ids := map[string]bool{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if n == 1 {
			if strings.HasPrefix(line, "\xff\xfe") || strings.HasPrefix(line, "\xfe\xff") {
				return nil, fmt.Errorf("%s: the file is UTF-16 text; save it as UTF-8", name)
			}
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if !utf8.ValidString(line) || strings.ContainsRune(line, 0) {
			return nil, fmt.Errorf("%s: line %d: not UTF-8 text; give a file of signal IDs, one per line", name, n)
		}
		id := strings.TrimSpace(line)
		if id != "" && !strings.HasPrefix(id, "#") {
			ids[id] = true
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, fmt.Errorf("%s: line %d: longer than %d bytes; give a file of signal IDs, one per line", name, n+1, bufio.MaxScanTokenSize)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(ids) == 0 {
		return nil, errors.New(name + ": no signal ID")
	}
	return ids, nil
}
