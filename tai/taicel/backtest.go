package taicel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/taipattern/taikit/tai"
)

// BacktestOptions configures a backtest. The zero value is useful: every
// signal kind, the decisions of the candidate's policy name, no amounts,
// no labels, Deny counted as positive, 5 examples per flip, one worker per
// CPU.
type BacktestOptions struct {
	// Kind, if set, replays only the signals of this kind.
	Kind string
	// Policy replays only the decisions whose Decision.Policy is this:
	// those of the live set the candidate would replace. Empty means the
	// candidate's Name; "*" means any policy (a trail of one set's
	// decisions under another name). Decisions of other policies are
	// counted as Filtered, never replayed: their inputs may be of another
	// payload type.
	Policy string
	// Amount is a CEL expression over the same variables as the rules
	// ("payload.Amount"), evaluated with the candidate for each replayed
	// decision and summed per flip and per rule: what a change is worth.
	// It returns a double or an int. An amount that is NaN, infinite or
	// beyond ±1e280, which the sums could not hold, fails the decision's
	// replay (counted in Report.Errors). Empty means no amounts.
	Amount string
	// Labels holds the IDs of the signals known to be positive: fraud
	// confirmed later, deployments rolled back. With labels, the report
	// scores the recorded decisions and the candidate's side by side:
	// precision and recall, every replayed signal missing from Labels (or
	// false in it) counting as negative. Nil means no labels.
	Labels map[string]bool
	// Positive is the verdict at or above which a decision flags a
	// signal, for Labels. Zero means Deny.
	Positive tai.Verdict
	// Examples is how many examples each flip and the errors keep, the
	// first ones in trail order. Zero means 5; a negative value none.
	Examples int
	// Workers is how many goroutines decode and judge in parallel, at
	// most MaxBacktestWorkers; the report does not depend on it. Zero
	// means runtime.GOMAXPROCS(0), or MaxBacktestWorkers if that is less.
	Workers int
}

// MaxBacktestWorkers is the most BacktestOptions.Workers may be. Each
// worker keeps up to four batches of lines (a few MiB) in memory, and
// workers beyond the CPUs only add to that.
const MaxBacktestWorkers = 256

// maxLine is the longest line of a trail a backtest reads, its newline
// not counted: kaizen.MaxAuditLineLen, the longest a kaizen.Audit writes.
const maxLine = 64 << 20

// Backtest replays an audit trail through a candidate set and reports
// which decisions it would have changed. The trail is JSON lines as
// kaizen.Audit writes them (kaizen.AuditEntry); each decision recorded
// with its inputs (Options.RecordInputs) of the chosen policy and kind is
// judged again by candidate with the recorded payload and variables (no
// Lookup: what the store said then), and its verdict compared with the
// recorded one. The signal's ID, kind and key are the line's; a Redact
// hook that rewrote the key changes what signal.key reads.
//
// A line that is not such JSON stops the backtest with a *TrailError
// naming its line number: verify the trail first (kaizen.VerifyAudit).
// Decisions recorded without inputs are counted as Skipped; an inputs
// object that does not decode or a candidate that fails to judge it is
// counted in Errors, with the rule when a rule failed, and the backtest
// goes on.
//
// When ctx ends, Backtest stops and returns its error (context.Cause) at
// once. A Read of trail in progress then is not interrupted: the reading
// stops when it returns, so close a trail that may block (a pipe, a
// network stream) to end it.
func Backtest[T any](ctx context.Context, candidate *Set[T], trail io.Reader, opts BacktestOptions) (*Report, error) {
	if trail == nil {
		return nil, errors.New("taicel: Backtest: nil io.Reader")
	}
	return backtest(ctx, candidate, []trailSource{{open: func() (io.ReadCloser, error) { return io.NopCloser(trail), nil }}}, opts)
}

// BacktestFiles is Backtest over the trail files at paths, read in turn as
// one trail; errors (a *TrailError's File) and examples name the file and
// the line.
func BacktestFiles[T any](ctx context.Context, candidate *Set[T], opts BacktestOptions, paths ...string) (*Report, error) {
	if len(paths) == 0 {
		return nil, errors.New("taicel: BacktestFiles: no file")
	}
	srcs := make([]trailSource, len(paths))
	for i, p := range paths {
		srcs[i] = trailSource{name: p, open: func() (io.ReadCloser, error) { return os.Open(p) }}
	}
	return backtest(ctx, candidate, srcs, opts)
}

// TrailError is the error that stops a backtest at a line of its trail:
// a line that is not an audit trail entry, a line longer than a
// kaizen.Audit writes, or an error reading the trail there.
type TrailError struct {
	// File is the trail file the line is in, as named to BacktestFiles;
	// empty for the io.Reader of Backtest, which the caller can name (a
	// command sets it to the name it gives its standard input).
	File string
	// Line is the 1-based line number, counted from the start of File
	// (or of the reader).
	Line int
	// Err is what is wrong with the line.
	Err error
}

// Error returns "taicel: backtest: line N: " and the cause, or
// "taicel: backtest: FILE:N: " and the cause when File is set.
func (e *TrailError) Error() string {
	return "taicel: backtest: " + where(e.File, e.Line) + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *TrailError) Unwrap() error { return e.Err }

type trailSource struct {
	name string // the file's path; empty for an io.Reader
	open func() (io.ReadCloser, error)
}

// backtester is what the workers share.
type backtester[T any] struct {
	cand     *Set[T]
	policy   string
	kind     string
	amount   *program // nil without BacktestOptions.Amount
	labels   map[string]bool
	positive tai.Verdict
}

func backtest[T any](ctx context.Context, cand *Set[T], srcs []trailSource, opts BacktestOptions) (*Report, error) {
	if ctx == nil {
		return nil, errors.New("taicel: Backtest: nil context")
	}
	if cand == nil {
		return nil, errors.New("taicel: Backtest: nil candidate Set")
	}
	if opts.Positive == 0 {
		opts.Positive = tai.Deny
	}
	if !opts.Positive.Valid() {
		return nil, fmt.Errorf("taicel: BacktestOptions.Positive %d is not a verdict", uint8(opts.Positive))
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("taicel: BacktestOptions.Workers %d is negative", opts.Workers)
	}
	if opts.Workers > MaxBacktestWorkers {
		return nil, fmt.Errorf("taicel: BacktestOptions.Workers %d is more than %d (MaxBacktestWorkers)", opts.Workers, MaxBacktestWorkers)
	}
	if opts.Workers == 0 {
		opts.Workers = min(runtime.GOMAXPROCS(0), MaxBacktestWorkers)
	}
	switch {
	case opts.Examples == 0:
		opts.Examples = 5
	case opts.Examples < 0:
		opts.Examples = 0
	}
	bt := &backtester[T]{cand: cand, policy: opts.Policy, kind: opts.Kind, labels: opts.Labels, positive: opts.Positive}
	if bt.policy == "" {
		bt.policy = cand.name
	}
	if opts.Amount != "" {
		prg, err := cand.compileAmount(opts.Amount)
		if err != nil {
			return nil, err
		}
		bt.amount = prg
	}

	m := newMerger(cand, opts)
	batches := make(chan *batch, 2*opts.Workers)
	results := make(chan *batch, 2*opts.Workers)
	// stop, closed on return, ends the reader at its next batch and the
	// workers at theirs.
	stop := make(chan struct{})
	defer close(stop)

	go readTrail(srcs, batches, stop)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Go(func() {
			for b := range batches {
				select {
				case <-stop: // nobody merges any more
					continue
				default:
				}
				bt.judge(ctx, b)
				select {
				case results <- b:
				case <-stop:
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	pending := map[int]*batch{}
	next := 0
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("taicel: backtest: %w", context.Cause(ctx))
		case b, ok := <-results:
			if !ok {
				return m.report(), nil
			}
			pending[b.seq] = b
		}
		for {
			b, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if err := m.merge(b); err != nil {
				return nil, err
			}
		}
	}
}

// compileAmount compiles BacktestOptions.Amount in the set's environment.
func (s *Set[T]) compileAmount(expr string) (*program, error) {
	env := s.cel
	if s.env.dynamic {
		found := map[string]bool{}
		s.env.exprVars(expr, found)
		var decls []cel.EnvOption
		for name := range found {
			if !slices.Contains(s.free, name) {
				decls = append(decls, cel.Variable(name, cel.DynType))
			}
		}
		if len(decls) > 0 {
			var err error
			if env, err = env.Extend(decls...); err != nil {
				return nil, fmt.Errorf("taicel: BacktestOptions.Amount: %w", err)
			}
		}
	}
	prg, out, cerr := compileExpr(env, expr, "amount", s.env.maxCost)
	if cerr != nil {
		return nil, fmt.Errorf("taicel: BacktestOptions.Amount %q: %s", expr, cerr.Detail)
	}
	if !out.IsExactType(cel.DoubleType) && !out.IsExactType(cel.IntType) && !out.IsExactType(cel.UintType) && !out.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("taicel: BacktestOptions.Amount %q returns %s; want a double or an int", expr, out)
	}
	return prg, nil
}

// batch is a run of lines of one file, read and judged together.
type batch struct {
	seq   int
	file  string
	data  []byte
	ends  []int // where each line ends in data
	lines []int // the line number of each line
	// err, a *TrailError, ends the trail after the lines: a read error
	// after them, or, once judged, the first line that is not an entry,
	// which out then stops before.
	err error
	out []judged
}

// A batch holds batchLines lines, or fewer that add up to batchBytes, so
// that the batches in flight hold a few MiB whatever the lines' length.
const (
	batchLines = 256
	batchBytes = 1 << 20
)

// readTrail reads the sources' lines into batches, in order, until the
// end, a read error (sent as the last batch's err) or stop.
func readTrail(srcs []trailSource, batches chan<- *batch, stop <-chan struct{}) {
	defer close(batches)
	seq := 0
	send := func(b *batch) bool {
		select {
		case batches <- b:
			seq++
			return true
		case <-stop:
			return false
		}
	}
	for _, src := range srcs {
		b := &batch{seq: seq, file: src.name}
		rc, err := src.open()
		if err != nil {
			b.err = fmt.Errorf("taicel: backtest: %w", err)
			send(b)
			return
		}
		sc := bufio.NewScanner(rc)
		// The buffer holds the line and its newline: a Scanner refuses
		// a line that fills its largest buffer.
		sc.Buffer(make([]byte, 0, 64<<10), maxLine+1)
		line := 0
		for sc.Scan() {
			line++
			text := sc.Bytes()
			if len(b.ends) == 0 {
				b.data = make([]byte, 0, min(batchLines*(len(text)+16), batchBytes))
			}
			b.data = append(b.data, text...)
			b.ends = append(b.ends, len(b.data))
			b.lines = append(b.lines, line)
			if len(b.ends) == batchLines || len(b.data) >= batchBytes {
				if !send(b) {
					rc.Close()
					return
				}
				b = &batch{seq: seq, file: src.name}
			}
		}
		rc.Close()
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = fmt.Errorf("%w (the line is longer than %d bytes, the most a kaizen.Audit writes)", err, maxLine)
			}
			b.err = &TrailError{File: src.name, Line: line + 1, Err: err}
			send(b)
			return
		}
		if len(b.ends) > 0 && !send(b) {
			return
		}
	}
}

// where names a line: "FILE:LINE", or "line LINE" for an io.Reader.
func where(file string, line int) string {
	if file == "" {
		return fmt.Sprintf("line %d", line)
	}
	return fmt.Sprintf("%s:%d", file, line)
}

// What became of a line.
const (
	lineBlank    = iota // white space only: ignored
	lineFiltered        // another kind or policy, or a reload record
	lineSkipped         // no inputs
	lineFailed          // the inputs did not decode, or the candidate failed
	lineReplayed
)

// judged is what a worker made of one line.
type judged struct {
	status       uint8
	changed      bool
	scoreChanged bool
	positive     bool // labelled positive
	old, new     tai.Verdict
	line         int
	id           string
	time         time.Time
	oldScore     float64
	newScore     float64
	oldReason    string
	newReason    string
	amount       float64
	diffs        []ruleDiff // the rules whose firing differs, when changed
	errRule      string
	err          error // the line's error
	fatal        bool  // not an entry: judge ends the batch's lines before it
}

type ruleDiff struct {
	rule string
	diff firingDiff
}

// trailEntry is what a backtest reads of a kaizen.AuditEntry.
type trailEntry struct {
	Time     time.Time
	ID       string
	Kind     string
	Key      string
	Decision struct {
		Verdict       tai.Verdict
		Policy        string
		Reason        string
		Score         float64
		Contributions []tai.Contribution // Rule and Score only
		Inputs        []byte             // the JSON, within the line
	}
}

// parseEntry reads a line of an audit trail: the members of a
// kaizen.AuditEntry a backtest needs, the others checked to be JSON and
// skipped. A null reads as the zero value.
func parseEntry(line []byte, e *trailEntry) error {
	r := jsonReader{data: line}
	str := func(dst *string) error {
		if r.null() {
			return nil
		}
		s, err := r.string()
		*dst = s
		return err
	}
	num := func(dst *float64) error {
		if r.null() {
			return nil
		}
		if r.peek() == '"' {
			// A score is a JSON number, as kaizen.Audit writes it; the
			// strings a recorded float may be ("NaN", "+Inf") are none,
			// and the report could not hold them as JSON.
			return r.errorf("want a number")
		}
		f, err := r.float(64)
		*dst = f
		return err
	}
	d := &e.Decision
	err := r.object(func(key []byte) error {
		switch string(key) {
		case "time":
			if r.null() {
				return nil
			}
			t, err := r.time()
			e.Time = t
			return member("time", err)
		case "id":
			return member("id", str(&e.ID))
		case "kind":
			return member("kind", str(&e.Kind))
		case "key":
			return member("key", str(&e.Key))
		case "decision":
			return member("decision", r.object(func(key []byte) error {
				switch string(key) {
				case "verdict":
					b, err := r.stringBytes()
					if err == nil {
						err = d.Verdict.UnmarshalText(b)
					}
					return member("verdict", err)
				case "policy":
					return member("policy", str(&d.Policy))
				case "reason":
					return member("reason", str(&d.Reason))
				case "score":
					return member("score", num(&d.Score))
				case "contributions":
					if r.null() {
						return nil
					}
					return member("contributions", r.array(func(int) error {
						var c tai.Contribution
						err := r.object(func(key []byte) error {
							switch string(key) {
							case "rule":
								return member("rule", str(&c.Rule))
							case "score":
								return member("score", num(&c.Score))
							}
							return r.skip()
						})
						d.Contributions = append(d.Contributions, c)
						return err
					}))
				case "inputs":
					r.ws()
					start := r.pos
					if err := r.skip(); err != nil {
						return member("inputs", err)
					}
					d.Inputs = line[start:r.pos]
					return nil
				}
				return r.skip()
			}))
		}
		return r.skip()
	})
	if err == nil {
		err = r.end()
	}
	return err
}

// judge fills b.out, one judged per line, up to the first line that is
// not an entry, which ends the trail as b.err; a rule still running when
// ctx ends stops.
func (bt *backtester[T]) judge(ctx context.Context, b *batch) {
	b.out = make([]judged, len(b.ends))
	start := 0
	for i, end := range b.ends {
		j := &b.out[i]
		bt.judgeLine(ctx, b.data[start:end], j)
		j.line = b.lines[i]
		if j.fatal {
			b.out, b.err = b.out[:i], &TrailError{File: b.file, Line: j.line, Err: j.err}
			break
		}
		start = end
	}
	b.data = nil
}

func (bt *backtester[T]) judgeLine(ctx context.Context, line []byte, j *judged) {
	if len(line) == 0 || isSpace(line) {
		j.status = lineBlank
		return
	}
	var e trailEntry
	if err := parseEntry(line, &e); err != nil {
		j.fatal, j.err = true, fmt.Errorf("not an audit trail entry: %w", err)
		return
	}
	if e.Kind == ReloadKind || bt.kind != "" && e.Kind != bt.kind || bt.policy != "*" && e.Decision.Policy != bt.policy {
		j.status = lineFiltered
		return
	}
	if len(e.Decision.Inputs) == 0 || string(e.Decision.Inputs) == "null" {
		j.status = lineSkipped
		return
	}
	j.id, j.time = e.ID, e.Time
	j.status = lineFailed
	if !e.Decision.Verdict.Valid() {
		j.err = errors.New("the recorded decision has no verdict")
		return
	}
	var in Inputs[T]
	if err := bt.cand.env.decodeInputs(e.Decision.Inputs, &in); err != nil {
		j.err = err
		return
	}
	sig := tai.Signal[T]{ID: e.ID, Kind: e.Kind, Key: e.Key, Time: in.Time, Payload: in.Payload}
	if err := bt.cand.env.checkPayload(sig); err != nil {
		j.err = err
		return
	}
	act := newActivation(sig, in.Vars)
	d, rule, err := bt.cand.decide(ctx, act)
	if err != nil {
		var re *RuleError
		if errors.As(err, &re) {
			j.errRule = re.Rule
		}
		j.err = err
		return
	}
	if bt.amount != nil {
		if j.amount, err = evalAmount(ctx, bt.amount, act); err != nil {
			j.err = err
			return
		}
	}
	j.status = lineReplayed
	j.old, j.new = e.Decision.Verdict, d.Verdict
	j.positive = bt.labels[e.ID]
	j.changed = j.old != j.new
	j.scoreChanged = !j.changed && e.Decision.Score != d.Score
	if j.changed {
		j.oldScore, j.newScore = e.Decision.Score, d.Score
		j.oldReason, j.newReason = e.Decision.Reason, d.Reason
		diffFirings(firing{in.VerdictRule, e.Decision.Verdict, e.Decision.Contributions}, firing{bt.cand.ruleName(rule), d.Verdict, d.Contributions}, func(rule string, d firingDiff) {
			j.diffs = append(j.diffs, ruleDiff{rule, d})
		})
	}
}

func evalAmount(ctx context.Context, prg *program, act *activation) (float64, error) {
	out, err := prg.eval(ctx, act)
	if err != nil {
		return 0, fmt.Errorf("taicel: amount: %w", err)
	}
	var f float64
	switch v := out.(type) {
	case types.Double:
		f = float64(v)
	case types.Int:
		f = float64(v)
	case types.Uint:
		f = float64(v)
	default:
		return 0, fmt.Errorf("taicel: amount: result %v is not a number", out.Type())
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("taicel: amount: %v", f)
	}
	if math.Abs(f) > maxAmount {
		return 0, fmt.Errorf("taicel: amount: %g is beyond ±%g, more than the report's sums can hold", f, maxAmount)
	}
	return f, nil
}

// maxAmount is the largest amount, in absolute value, a backtest sums.
// Fewer than 1e19 decisions (an int's worth) of at most 1e280 each sum to
// less than 1e299, which a float64 holds: a sum never overflows to an
// infinity, which the report could not hold as JSON, and no money comes
// near the limit.
const maxAmount = 1e280

// member names the member of an object whose value err is about.
func member(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}
