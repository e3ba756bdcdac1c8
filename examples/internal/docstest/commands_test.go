package docstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// commandsInfo is the info string of a block of taikit commands whose
// output the doc shows, in full, in the "output" block after it.
const commandsInfo = "sh taikit"

var (
	goRunTaikit  = regexp.MustCompile(`\bgo run \./cmd/taikit\b`)
	goRunProgram = regexp.MustCompile(`\bgo run \./examples/mytask\b`)
	goRun        = regexp.MustCompile(`\bgo run\b\s*\S*`)
)

// goRunShim stands for "go run" in a block: it runs the binary it is
// given with the arguments after it and, as go run does, writes "exit
// status N" to the standard error when the binary exits with N, not 0.
const goRunShim = `gorun() { "$@"; s=$?; if [ "$s" -ne 0 ]; then echo "exit status $s" >&2; fi; return "$s"; }` + "\n"

// varying are the parts of a command's output that change from run to
// run, as the docs say: an audit trail's hashes (its lines hold times and
// random IDs) and the times of signals. Each is replaced by its name, in
// the output and in the doc alike, before the two are compared.
var varying = []struct {
	pattern *regexp.Regexp
	name    string
}{
	{regexp.MustCompile(`\b[0-9a-f]{64}\b`), "<hash>"},
	{regexp.MustCompile(`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
}

// sameOutput compares a command's output with the block a doc shows, line
// by line, every character but the varying parts; it returns the first
// line that differs, or "".
func sameOutput(got, want string) string {
	g := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	w := strings.Split(strings.TrimSuffix(want, "\n"), "\n")
	for i := range max(len(g), len(w)) {
		switch {
		case i >= len(g):
			return fmt.Sprintf("line %d: the doc shows %q, the output has ended", i+1, w[i])
		case i >= len(w):
			return fmt.Sprintf("line %d: the output goes on with %q, the doc has ended", i+1, g[i])
		case steady(g[i]) != steady(w[i]):
			return fmt.Sprintf("line %d: the doc shows %q, the output has %q", i+1, w[i], g[i])
		}
	}
	return ""
}

// steady returns line with each varying part replaced by its name.
func steady(line string) string {
	for _, v := range varying {
		line = v.pattern.ReplaceAllString(line, v.name)
	}
	return line
}

func TestSameOutput(t *testing.T) {
	const (
		hash = "d72204ef2cee90589eda776ec9f670519c5fd1eecf50fb6dd0565c6d4c2991e7"
		ok   = "ok: 3 lines; last hash " + hash + "\n"
		flip = "  tr-82 2026-12-02T20:34:25Z  3034.00\n"
		exit = "exit status 1\n"
		got  = ok + flip + exit
	)
	for _, tc := range []struct {
		want string
		same bool
	}{
		{got, true},
		{strings.TrimSuffix(got, "\n"), true},
		{strings.ReplaceAll(got, hash, strings.Repeat("0", 64)), true},                    // another hash
		{strings.ReplaceAll(got, "2026-12-02T20:34:25Z", "2025-01-31T08:00:00.5Z"), true}, // another time
		{strings.ReplaceAll(got, hash, hash[:63]), false},                                 // not a hash
		{strings.ReplaceAll(got, "3 lines", "4 lines"), false},
		{strings.ReplaceAll(got, "tr-82", "tr-83"), false},        // an ID the program sets
		{strings.ReplaceAll(got, "  3034.00", " 3034.00"), false}, // spaces count
		{ok + flip, false},               // a line missing
		{got + exit, false},              // a line too many
		{ok + "\n" + flip + exit, false}, // an empty line too many
		{ok + exit + flip, false},        // out of order
	} {
		if same := sameOutput(got, tc.want) == ""; same != tc.same {
			t.Errorf("sameOutput(%q) = %v, want %v", tc.want, same, tc.same)
		}
	}
}

// TestTaikitBlocks runs each doc's "sh taikit" blocks, in order, and
// compares what they print with the output block after each, as
// sameOutput does.
//
// The blocks stand for commands run from the repository's root, with
// the doc's last Go program before them saved as examples/mytask, as the
// how-to says. The test builds cmd/taikit once, and each program that
// blocks follow, and rewrites "go run ./cmd/taikit" and "go run
// ./examples/mytask" to run those binaries, printing "exit status N" as
// go run does. The blocks after one program run in a new, empty
// directory of their own, in which the program runs first, as the doc
// had its reader run it, unless the first of those blocks runs it
// itself.
func TestTaikitBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the taikit command and the programs the blocks follow")
	}
	type doc struct {
		rel   string
		bs    []block
		steps []int // the "sh taikit" blocks among bs
	}
	var found []doc
	for _, path := range docs(t) {
		rel, _ := filepath.Rel(root, path)
		d := doc{rel: rel, bs: blocks(t, path)}
		for i, b := range d.bs {
			if b.info == commandsInfo {
				d.steps = append(d.steps, i)
			}
		}
		if len(d.steps) > 0 {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		t.Fatalf("no doc has a %q block", commandsInfo)
	}
	taikit := buildTaikit(t)
	for _, d := range found {
		t.Run(d.rel, func(t *testing.T) {
			var (
				program *block // the last Go program before the block
				bin     string // program, built
				dir     string // where the blocks after program run
				next    int    // the first block not yet looked at
			)
			for _, i := range d.steps {
				for ; next < i; next++ {
					if d.bs[next].info == "go" {
						program, bin, dir = &d.bs[next], "", ""
					}
				}
				b := d.bs[i]
				where := fmt.Sprintf("%s:%d", d.rel, b.line)
				if i+1 >= len(d.bs) || d.bs[i+1].info != "output" {
					t.Errorf("%s: no output block follows this %q block, so nothing checks it", where, commandsInfo)
					continue
				}
				want := d.bs[i+1]
				runsProgram := goRunProgram.MatchString(b.body)
				if runsProgram && program == nil {
					t.Errorf("%s: the block runs ./examples/mytask, but no Go program comes before it", where)
					continue
				}
				script := goRunTaikit.ReplaceAllLiteralString(b.body, `gorun "$TAIKIT"`)
				script = goRunProgram.ReplaceAllLiteralString(script, `gorun "$PROGRAM"`)
				if other := goRun.FindString(script); other != "" {
					t.Errorf("%s: the block runs %q: only ./cmd/taikit and ./examples/mytask can be run here", where, other)
					continue
				}
				if program != nil && bin == "" {
					bin = buildProgram(t, writeProgram(t, program.body))
				}
				if dir == "" {
					dir = t.TempDir()
					if program != nil && !runsProgram {
						if out, err := runCommands(dir, `"$PROGRAM"`, taikit, bin); err != nil {
							t.Fatalf("%s: the program at line %d, run before the block, failed: %v\n%s", where, program.line, err, out)
						}
					}
				}
				out, err := runCommands(dir, goRunShim+script, taikit, bin)
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s: the block did not finish in time\n%s", where, out)
				}
				// A failing command is not an error: its "exit status N"
				// is in out, which must match what the doc shows.
				if msg := sameOutput(out, want.body); msg != "" {
					t.Errorf("%s:%d: %s\n--- block:\n%s--- output:\n%s", d.rel, want.line, msg, b.body, out)
				}
			}
		})
	}
}

// buildTaikit builds cmd/taikit into a directory of the test's and
// returns the binary's absolute path.
func buildTaikit(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join(t.TempDir(), "taikit"))
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(root, "cmd", "taikit")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/taikit: %v\n%s", err, out)
	}
	return bin
}

// runCommands runs script with bash in dir, as a reader would type it
// (a command that fails does not stop the ones after it), with TAIKIT and
// PROGRAM set to those binaries, for at most two minutes. It returns what
// the script printed, standard output and error together, and how the
// script ended: context.DeadlineExceeded if it did not in time.
func runCommands(dir, script, taikit, program string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "TAIKIT="+taikit, "PROGRAM="+program)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return string(out), err
}
