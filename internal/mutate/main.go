// Command mutate measures how well a package's tests catch mistakes. It
// makes single, small changes to the package's source (mutants) — a
// comparison's boundary moved, a condition negated or inverted, an error
// return replaced by nil, a state update dropped, an arithmetic or logical
// operator swapped — and runs the tests that cover each changed line. A
// mutant the tests fail on is killed; one they pass on survived, and either a
// test is missing or the change is equivalent (no test could ever tell).
//
// Usage:
//
//	go run ./internal/mutate [flags] ./pkg
//
// The source tree is never modified: each mutant is compiled through
// `go test -overlay`. Before mutating, every test of the package is run once
// on its own with coverage, so that a mutant runs only the tests that reach
// it, and a mutant that no test reaches is reported as uncovered.
//
// -run restricts the tests to those matching a regular expression, as
// `go test -run` does (Test/sub selects subtests): a package whose whole
// suite is slow can be measured with its fast unit tests. Coverage is then
// measured with the filter too, so a mutant that only filtered-out tests
// reach counts as uncovered, and a score says which filter it was taken
// with.
//
// Equivalent mutants are listed in pkg/testdata/mutants-equivalent.txt (or
// -equivalent), one per line: the mutant's key as printed, a tab, and the
// reason no test can tell it from the original. Lines starting with # are
// comments. The score is killed / (mutants - equivalent - not compiling).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	var (
		files      = flag.String("files", "", "comma-separated file names to mutate (default: every non-test .go file of the package)")
		equivalent = flag.String("equivalent", "", "file of equivalent mutants (default: PKG/testdata/mutants-equivalent.txt)")
		timeout    = flag.Duration("timeout", time.Minute, "limit for one mutant's test run; a run that passes it counts as killed")
		jobs       = flag.Int("j", max(1, runtime.NumCPU()/2), "mutants tested at once")
		tags       = flag.String("tags", "", "build tags passed to go test")
		list       = flag.Bool("list", false, "list the mutants and exit without running tests")
		minScore   = flag.Float64("min", 0, "exit with status 1 when the score is below this fraction (0.9 = 90%)")
		verbose    = flag.Bool("v", false, "print every mutant's result as it finishes")
		runTests   = flag.String("run", "", "run only the tests, examples and fuzz seeds matching this regexp, as go test -run does (Test/sub selects subtests); mutants that no such test reaches count as uncovered")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: mutate [flags] PKGDIR\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	cfg := config{
		pkg: flag.Arg(0), equivalent: *equivalent, timeout: *timeout, jobs: *jobs,
		tags: *tags, list: *list, minScore: *minScore, verbose: *verbose, run: *runTests,
		stdout: os.Stdout, stderr: os.Stderr,
	}
	if *files != "" {
		cfg.files = strings.Split(*files, ",")
	}
	ok, err := run(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

type config struct {
	pkg        string
	files      []string
	equivalent string
	timeout    time.Duration
	jobs       int
	tags       string
	list       bool
	minScore   float64
	verbose    bool
	run        string // the tests' -run filter; "" runs every test

	stdout, stderr io.Writer // the report; progress and survivors as found
}

// A mutant is one change to one file: the bytes [start, end) replaced by repl.
type mutant struct {
	file       string // base name
	line, col  int
	start, end int
	repl       string
	key        string // stable name: file:func: "orig" → "repl" [#n]
	status     status
	tests      []string

	// The node the key names, which a schema wraps (see schema.go).
	id                 int
	host               hostKind
	hostStart, hostEnd int
}

type status uint8

const (
	pending status = iota
	killed
	survived
	uncovered
	invalid // does not compile
	equivalent
)

func (s status) String() string {
	return [...]string{"pending", "killed", "survived", "uncovered", "does not compile", "equivalent"}[s]
}

type pkgInfo struct {
	Dir        string
	ImportPath string
	GoFiles    []string
	Name       string
}

// run measures the package and writes the report; it reports whether the
// score reaches cfg.minScore.
func run(ctx context.Context, cfg config) (bool, error) {
	if cfg.stdout == nil {
		cfg.stdout = io.Discard
	}
	if cfg.stderr == nil {
		cfg.stderr = io.Discard
	}
	if cfg.run != "" {
		if _, err := regexp.Compile(cfg.run); err != nil {
			return false, fmt.Errorf("-run %q: %v", cfg.run, err)
		}
	}
	pkg, err := listPackage(ctx, cfg.pkg, cfg.tags)
	if err != nil {
		return false, err
	}
	names := pkg.GoFiles
	if len(cfg.files) > 0 {
		for _, f := range cfg.files {
			if !slices.Contains(pkg.GoFiles, f) {
				return false, fmt.Errorf("file %q is not a non-test Go file of %s (files: %s)", f, pkg.ImportPath, strings.Join(pkg.GoFiles, ", "))
			}
		}
		names = cfg.files
	}
	var mutants []*mutant
	sources := map[string][]byte{}
	for _, name := range names {
		src, err := os.ReadFile(filepath.Join(pkg.Dir, name))
		if err != nil {
			return false, err
		}
		sources[name] = src
		ms, err := generate(name, src)
		if err != nil {
			return false, err
		}
		mutants = append(mutants, ms...)
	}
	if cfg.list {
		for _, m := range mutants {
			fmt.Fprintf(cfg.stdout, "%s:%d:%d: %s\n", m.file, m.line, m.col, m.key)
		}
		fmt.Fprintf(cfg.stdout, "%d mutants\n", len(mutants))
		return true, nil
	}

	eqPath := cfg.equivalent
	if eqPath == "" {
		eqPath = filepath.Join(pkg.Dir, "testdata", "mutants-equivalent.txt")
	}
	equiv, err := readEquivalent(eqPath)
	if err != nil {
		return false, err
	}

	work, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(work)

	filter := ""
	if cfg.run != "" {
		filter = fmt.Sprintf(" (only tests matching -run %q)", cfg.run)
	}
	fmt.Fprintf(cfg.stderr, "mutate: %s: %d mutants in %d files; measuring each test's coverage%s\n", pkg.ImportPath, len(mutants), len(names), filter)
	cover, err := coverage(ctx, cfg, pkg, work)
	if err != nil {
		return false, err
	}
	for _, m := range mutants {
		if _, ok := equiv[m.key]; ok {
			m.status = equivalent
			continue
		}
		m.tests = cover.testsAt(m.file, m.line, m.col)
		if len(m.tests) == 0 {
			m.status = uncovered
		}
	}

	for i, m := range mutants {
		m.id = i + 1
	}
	leaveOutUncompilable(ctx, cfg, pkg, sources, mutants)
	schemaBin, err := buildSchema(ctx, cfg, pkg, sources, mutants, work)
	if err != nil {
		return false, err
	}
	if schemaBin == "" {
		for _, m := range mutants {
			m.host = hostNone
		}
	}
	inSchema := 0
	for _, m := range mutants {
		if m.status == pending && m.host != hostNone {
			inSchema++
		}
	}

	var (
		wg   sync.WaitGroup
		next = make(chan *mutant)
		mu   sync.Mutex
		done int
	)
	todo := 0
	for _, m := range mutants {
		if m.status == pending {
			todo++
		}
	}
	fmt.Fprintf(cfg.stderr, "mutate: testing %d covered mutants (%d in one schema build, %d built one by one), %d at a time\n", todo, inSchema, todo-inSchema, cfg.jobs)
	for i := 0; i < cfg.jobs; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			dir := filepath.Join(work, "m"+strconv.Itoa(i))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				panic(err)
			}
			for m := range next {
				if m.host != hostNone {
					m.status = testSchema(ctx, cfg, pkg, schemaBin, cover.selection(cfg, m), m)
				} else {
					m.status = test(ctx, cfg, pkg, sources[m.file], cover.selection(cfg, m), m, dir)
				}
				mu.Lock()
				done++
				if cfg.verbose || m.status == survived {
					fmt.Fprintf(cfg.stderr, "[%d/%d] %s: %s\n", done, todo, m.status, m.key)
				}
				mu.Unlock()
			}
		}(i)
	}
	for _, m := range mutants {
		if m.status == pending {
			next <- m
		}
	}
	close(next)
	wg.Wait()

	for key := range equiv {
		if !slices.ContainsFunc(mutants, func(m *mutant) bool { return m.key == key }) {
			fmt.Fprintf(cfg.stderr, "mutate: %s lists a mutant that no longer exists: %s\n", eqPath, key)
		}
	}
	if cfg.run != "" {
		fmt.Fprintf(cfg.stdout, "# tests run: -run %q\n", cfg.run)
	}
	return report(cfg.stdout, pkg.ImportPath, names, mutants, cfg.minScore), nil
}

func listPackage(ctx context.Context, dir, tags string) (pkgInfo, error) {
	args := []string{"list", "-json"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	out, err := exec.CommandContext(ctx, "go", append(args, dir)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return pkgInfo{}, fmt.Errorf("go list %s: %s", dir, ee.Stderr)
		}
		return pkgInfo{}, err
	}
	var p pkgInfo
	if err := json.Unmarshal(out, &p); err != nil {
		return pkgInfo{}, err
	}
	return p, nil
}

func readEquivalent(path string) (map[string]string, error) {
	m := map[string]string{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, reason, ok := strings.Cut(line, "\t")
		if !ok || strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("%s:%d: want the mutant's key, a tab and the reason it is equivalent", path, n)
		}
		m[key] = reason
	}
	return m, sc.Err()
}

// test runs the tests sel selects (see selection) against the mutated source.
func test(ctx context.Context, cfg config, pkg pkgInfo, src []byte, sel []string, m *mutant, dir string) status {
	mutated := make([]byte, 0, len(src)+len(m.repl))
	mutated = append(mutated, src[:m.start]...)
	mutated = append(mutated, m.repl...)
	mutated = append(mutated, src[m.end:]...)
	file := filepath.Join(dir, m.file)
	overlay := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(file, mutated, 0o644); err != nil {
		panic(err)
	}
	o, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(pkg.Dir, m.file): file}})
	if err := os.WriteFile(overlay, o, 0o644); err != nil {
		panic(err)
	}
	args := []string{"test", "-overlay", overlay, "-count=1", "-vet=off", "-failfast",
		"-timeout", cfg.timeout.String()}
	for i := 0; i < len(sel); i += 2 {
		args = append(args, "-"+sel[i], sel[i+1])
	}
	if cfg.tags != "" {
		args = append(args, "-tags", cfg.tags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Dir = pkg.Dir
	out, err := cmd.CombinedOutput()
	if err == nil {
		return survived
	}
	if bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")) {
		return invalid
	}
	return killed
}

// A coverage map says which tests reach each statement block.
type coverMap struct {
	blocks map[string][]coverBlock // by file base name
	names  []string                // every test, example and fuzz seed of the package
}

// selection returns the flags (names without the "test." prefix, then
// values) that make the test binary run the tests covering m: with a -run
// filter, the filter itself with every other test skipped, so that the
// filter's subtest patterns still apply.
func (c coverMap) selection(cfg config, m *mutant) []string {
	if cfg.run == "" {
		return []string{"run", "^(" + strings.Join(m.tests, "|") + ")$"}
	}
	var others []string
	for _, n := range c.names {
		if !slices.Contains(m.tests, n) {
			others = append(others, n)
		}
	}
	return withSkip([]string{"run", cfg.run}, others)
}

// withSkip adds to sel a -skip of the top-level tests named.
func withSkip(sel, names []string) []string {
	if len(names) == 0 {
		return sel
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return append(sel, "skip", "^("+strings.Join(quoted, "|")+")$")
}

type coverBlock struct {
	startLine, startCol, endLine, endCol int
	tests                                []string
}

// testsAt returns the tests that reach the position. Some expressions lie
// in no block of the cover profile — the case expressions of a switch sit
// between the block holding the switch and the blocks of its clauses — so
// the profile cannot say which tests evaluate them; they get every test
// that reaches the file.
func (c coverMap) testsAt(file string, line, col int) []string {
	var tests []string
	add := func(b coverBlock) {
		for _, t := range b.tests {
			if !slices.Contains(tests, t) {
				tests = append(tests, t)
			}
		}
	}
	before := func(l1, c1, l2, c2 int) bool { return l1 < l2 || l1 == l2 && c1 <= c2 }
	inside := false
	for _, b := range c.blocks[file] {
		if before(b.startLine, b.startCol, line, col) && before(line, col, b.endLine, b.endCol) {
			inside = true
			add(b)
		}
	}
	if !inside {
		for _, b := range c.blocks[file] {
			add(b)
		}
	}
	sort.Strings(tests)
	return tests
}

// coverage builds the package's test binary with coverage and runs each of
// its tests, examples and fuzz seeds alone (as far as cfg.run selects it),
// recording what each reaches.
func coverage(ctx context.Context, cfg config, pkg pkgInfo, work string) (coverMap, error) {
	bin := filepath.Join(work, "pkg.test")
	args := []string{"test", "-c", "-cover", "-covermode=set", "-o", bin}
	if cfg.tags != "" {
		args = append(args, "-tags", cfg.tags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Dir = pkg.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return coverMap{}, fmt.Errorf("building the test binary: %v\n%s", err, out)
	}
	if _, err := os.Stat(bin); err != nil {
		return coverMap{}, fmt.Errorf("%s has no tests", pkg.ImportPath)
	}
	cmd = exec.CommandContext(ctx, bin, "-test.list", ".*")
	cmd.Dir = pkg.Dir
	out, err := cmd.Output()
	if err != nil {
		return coverMap{}, fmt.Errorf("listing tests: %v", err)
	}
	var names []string
	for _, n := range strings.Fields(string(out)) {
		if strings.HasPrefix(n, "Test") || strings.HasPrefix(n, "Example") || strings.HasPrefix(n, "Fuzz") {
			names = append(names, n)
		}
	}
	cm := coverMap{blocks: map[string][]coverBlock{}, names: names}
	index := map[string]int{} // "file:block" → position in cm.blocks[file]
	profile := filepath.Join(work, "cover.out")
	reaching := 0
	for _, name := range names {
		sel := []string{"run", "^" + regexp.QuoteMeta(name) + "$"}
		if cfg.run != "" {
			sel = withSkip([]string{"run", cfg.run}, slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name }))
		}
		args := []string{"-test.count=1", "-test.coverprofile=" + profile, "-test.timeout=5m"}
		for i := 0; i < len(sel); i += 2 {
			args = append(args, "-test."+sel[i], sel[i+1])
		}
		// A profile left by the test before must not count for this one.
		if err := os.Remove(profile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return coverMap{}, err
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = pkg.Dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return coverMap{}, fmt.Errorf("%s fails without any mutant; fix it first:\n%s", name, out)
		}
		data, err := os.ReadFile(profile)
		if err != nil {
			return coverMap{}, err
		}
		reached := false
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// import/path/file.go:10.2,12.16 3 1
			// Blocks no test reached are kept too, without tests, so
			// that testsAt knows where blocks are.
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			loc, span, _ := strings.Cut(f[0], ":")
			file := filepath.Base(loc)
			var b coverBlock
			if _, err := fmt.Sscanf(span, "%d.%d,%d.%d", &b.startLine, &b.startCol, &b.endLine, &b.endCol); err != nil {
				return coverMap{}, fmt.Errorf("reading the cover profile %q: %v", line, err)
			}
			k := file + ":" + span
			i, ok := index[k]
			if !ok {
				i = len(cm.blocks[file])
				index[k] = i
				cm.blocks[file] = append(cm.blocks[file], b)
			}
			if f[2] != "0" {
				cm.blocks[file][i].tests = append(cm.blocks[file][i].tests, name)
				reached = true
			}
		}
		if reached {
			reaching++
		}
	}
	if reaching == 0 && cfg.run != "" {
		return coverMap{}, fmt.Errorf("no test of %s matching -run %q reaches its code", pkg.ImportPath, cfg.run)
	}
	return cm, nil
}

func report(w io.Writer, pkg string, files []string, mutants []*mutant, minScore float64) bool {
	type tally struct{ total, killed, survived, uncovered, invalid, equivalent int }
	per := map[string]*tally{}
	var all tally
	for _, f := range files {
		per[f] = &tally{}
	}
	for _, m := range mutants {
		for _, t := range []*tally{per[m.file], &all} {
			t.total++
			switch m.status {
			case killed:
				t.killed++
			case survived:
				t.survived++
			case uncovered:
				t.uncovered++
			case invalid:
				t.invalid++
			case equivalent:
				t.equivalent++
			}
		}
	}
	score := func(t *tally) float64 {
		n := t.total - t.invalid - t.equivalent
		if n == 0 {
			return 1
		}
		return float64(t.killed) / float64(n)
	}
	var surv []*mutant
	for _, m := range mutants {
		if m.status == survived || m.status == uncovered {
			surv = append(surv, m)
		}
	}
	if len(surv) > 0 {
		fmt.Fprintln(w, "# surviving mutants (add a test that kills each, or list it as equivalent with the reason)")
		for _, m := range surv {
			note := ""
			if m.status == uncovered {
				note = "  (no test reaches it)"
			}
			fmt.Fprintf(w, "%s%s\n", m.key, note)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-28s %7s %7s %9s %10s %11s %11s %7s\n", "file", "mutants", "killed", "survived", "uncovered", "equivalent", "not built", "score")
	for _, f := range files {
		t := per[f]
		fmt.Fprintf(w, "%-28s %7d %7d %9d %10d %11d %11d %6.1f%%\n", f, t.total, t.killed, t.survived, t.uncovered, t.equivalent, t.invalid, 100*score(t))
	}
	fmt.Fprintf(w, "%-28s %7d %7d %9d %10d %11d %11d %6.1f%%\n", pkg, all.total, all.killed, all.survived, all.uncovered, all.equivalent, all.invalid, 100*score(&all))
	return score(&all) >= minScore
}

// generate lists the mutants of one file.
func generate(name string, src []byte) ([]*mutant, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	g := &generator{fset: fset, src: src, file: name, seen: map[string]int{}, simple: map[ast.Node]bool{}}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.ForStmt:
			g.simple[x.Init], g.simple[x.Post] = true, true
		case *ast.IfStmt:
			g.simple[x.Init] = true
		case *ast.SwitchStmt:
			g.simple[x.Init] = true
		case *ast.TypeSwitchStmt:
			g.simple[x.Init] = true
		case *ast.CommClause:
			g.simple[x.Comm] = true
		}
		return true
	})
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		g.fn = funcName(fd)
		g.walk(fd.Body, returnsError(fd.Type))
	}
	return g.out, nil
}

type generator struct {
	fset   *token.FileSet
	src    []byte
	file   string
	fn     string
	seen   map[string]int
	out    []*mutant
	simple map[ast.Node]bool // statements in init, post or comm positions
}

func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	star := ""
	if s, ok := t.(*ast.StarExpr); ok {
		star, t = "*", s.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return "(" + star + id.Name + ")." + fd.Name.Name
	}
	return fd.Name.Name
}

func returnsError(ft *ast.FuncType) bool {
	if ft.Results == nil || len(ft.Results.List) == 0 {
		return false
	}
	last := ft.Results.List[len(ft.Results.List)-1]
	id, ok := last.Type.(*ast.Ident)
	return ok && id.Name == "error"
}

func (g *generator) text(n ast.Node) string {
	return string(g.src[g.fset.Position(n.Pos()).Offset:g.fset.Position(n.End()).Offset])
}

var spaces = regexp.MustCompile(`\s+`)

func (g *generator) add(at ast.Node, start, end token.Pos, repl string) {
	g.addKind(at, start, end, repl, g.hostOf(at))
}

// hostOf says how a schema can switch a mutant of the node at on and off.
func (g *generator) hostOf(at ast.Node) hostKind {
	switch x := at.(type) {
	case ast.Stmt:
		if g.simple[x] {
			return hostNone
		}
		return hostStmt
	case *ast.BinaryExpr:
		switch x.Op {
		case token.LSS, token.LEQ, token.GTR, token.GEQ, token.EQL, token.NEQ, token.LAND, token.LOR:
			return hostBool
		}
		return hostNone
	case *ast.UnaryExpr:
		if x.Op == token.NOT {
			return hostBool
		}
	}
	return hostNone
}

func (g *generator) addKind(at ast.Node, start, end token.Pos, repl string, kind hostKind) {
	s, e := g.fset.Position(start).Offset, g.fset.Position(end).Offset
	orig := spaces.ReplaceAllString(g.text(at), " ")
	mutated := spaces.ReplaceAllString(string(g.src[g.fset.Position(at.Pos()).Offset:s])+repl+string(g.src[e:g.fset.Position(at.End()).Offset]), " ")
	key := fmt.Sprintf("%s:%s: %q → %q", g.file, g.fn, orig, mutated)
	g.seen[key]++
	if n := g.seen[key]; n > 1 {
		key += " #" + strconv.Itoa(n)
	}
	p := g.fset.Position(start)
	g.out = append(g.out, &mutant{file: g.file, line: p.Line, col: p.Column, start: s, end: e, repl: repl, key: key,
		host: kind, hostStart: g.fset.Position(at.Pos()).Offset, hostEnd: g.fset.Position(at.End()).Offset})
}

var swaps = map[token.Token][]token.Token{
	token.LSS:  {token.LEQ, token.GEQ},
	token.LEQ:  {token.LSS, token.GTR},
	token.GTR:  {token.GEQ, token.LEQ},
	token.GEQ:  {token.GTR, token.LSS},
	token.EQL:  {token.NEQ},
	token.NEQ:  {token.EQL},
	token.LAND: {token.LOR},
	token.LOR:  {token.LAND},
	token.ADD:  {token.SUB},
	token.SUB:  {token.ADD},
	token.MUL:  {token.QUO},
	token.QUO:  {token.MUL},
	token.REM:  {token.MUL},
	token.AND:  {token.OR},
	token.OR:   {token.AND},
	token.SHL:  {token.SHR},
	token.SHR:  {token.SHL},
}

var opAssignSwaps = map[token.Token]token.Token{
	token.ADD_ASSIGN: token.SUB_ASSIGN,
	token.SUB_ASSIGN: token.ADD_ASSIGN,
	token.MUL_ASSIGN: token.QUO_ASSIGN,
	token.QUO_ASSIGN: token.MUL_ASSIGN,
}

// walk visits one function body. errFunc says whether the enclosing
// function's last result is an error (so `return ..., err` can become nil).
func (g *generator) walk(body ast.Node, errFunc bool) {
	ast.Inspect(body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.FuncLit:
			g.walk(x.Body, returnsError(x.Type))
			return false
		case *ast.BinaryExpr:
			if isConstExpr(x) {
				return true
			}
			for _, op := range swaps[x.Op] {
				g.add(x, x.OpPos, x.OpPos+token.Pos(len(x.Op.String())), op.String())
			}
		case *ast.IfStmt:
			g.addKind(x.Cond, x.Cond.Pos(), x.Cond.End(), "!("+g.text(x.Cond)+")", hostBool)
		case *ast.ForStmt:
			if x.Cond != nil {
				g.addKind(x.Cond, x.Cond.Pos(), x.Cond.End(), "!("+g.text(x.Cond)+")", hostBool)
			}
		case *ast.UnaryExpr:
			if x.Op == token.NOT {
				g.add(x, x.Pos(), x.X.Pos(), "")
			}
		case *ast.ReturnStmt:
			if errFunc && len(x.Results) > 0 {
				last := x.Results[len(x.Results)-1]
				if id, ok := last.(*ast.Ident); !ok || id.Name != "nil" {
					if _, isCall := last.(*ast.CallExpr); !isCall || len(x.Results) > 1 {
						g.add(x, last.Pos(), last.End(), "nil")
					} else {
						// return f(...) where f returns only an error: keep the call.
						g.add(x, x.Pos(), x.End(), "_ = "+g.text(last)+"; return nil")
					}
				}
			}
			for _, r := range x.Results {
				if id, ok := r.(*ast.Ident); ok && (id.Name == "true" || id.Name == "false") {
					g.add(x, id.Pos(), id.End(), map[string]string{"true": "false", "false": "true"}[id.Name])
				}
			}
		case *ast.AssignStmt:
			if op, ok := opAssignSwaps[x.Tok]; ok {
				g.add(x, x.TokPos, x.TokPos+token.Pos(len(x.Tok.String())), op.String())
			}
			if x.Tok == token.DEFINE {
				return true
			}
			if !slices.ContainsFunc(x.Lhs, func(e ast.Expr) bool { return !isBlank(e) }) {
				return true
			}
			// Drop the update, keep the right-hand side's evaluation.
			blanks := strings.TrimSuffix(strings.Repeat("_, ", len(x.Lhs)), ", ")
			if x.Tok != token.ASSIGN {
				blanks = "_"
			}
			rhs := make([]string, len(x.Rhs))
			for i, r := range x.Rhs {
				rhs[i] = g.text(r)
			}
			g.add(x, x.Pos(), x.End(), blanks+" = "+strings.Join(rhs, ", "))
		case *ast.IncDecStmt:
			g.add(x, x.Pos(), x.End(), "_ = "+g.text(x.X))
			other := map[token.Token]string{token.INC: "--", token.DEC: "++"}[x.Tok]
			g.add(x, x.TokPos, x.TokPos+2, other)
		}
		return true
	})
}

func isBlank(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "_"
}

// isConstExpr reports expressions made only of literals (1 << 20): mutating
// them changes a constant, usually caught at compile time or meaningless.
func isConstExpr(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.ParenExpr:
		return isConstExpr(x.X)
	case *ast.BinaryExpr:
		return isConstExpr(x.X) && isConstExpr(x.Y)
	}
	return false
}
