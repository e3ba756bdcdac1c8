package docstest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// adminToken is the services' admin token in the docs and in the tests.
const adminToken = "quickstart-admin-token"

// root is the repository's root, from this package's directory.
var root = filepath.Join("..", "..", "..")

// block is a fenced block of a Markdown file.
type block struct {
	file string
	line int // of the opening fence
	info string
	body string
}

// blocks returns the fenced blocks of a Markdown file, in order.
func blocks(t *testing.T, path string) []block {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []block
	var cur *block
	var fence string
	for i, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			fence = trimmed[:3]
			cur = &block{file: path, line: i + 1, info: strings.TrimSpace(trimmed[3:])}
		case cur != nil && strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: a fenced block is not closed", path, cur.line)
	}
	return out
}

// docs returns the Markdown files the tests read.
func docs(t *testing.T) []string {
	t.Helper()
	files := []string{
		filepath.Join(root, "README.md"),
		filepath.Join(root, "examples", "payment", "README.md"),
		filepath.Join(root, "examples", "deployment", "README.md"),
	}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append(files, more...)
}

// startService builds the example in dir and runs it on a free port with
// a fresh data dir and the admin token, until the test ends.
func startService(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	build := exec.Command("go", "build", "-o", bin, "./"+pkg)
	build.Dir = filepath.Join(root, "examples")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-addr", addr, "-data-dir", t.TempDir(), "-instance", "docs")
	cmd.Env = append(os.Environ(), "ADMIN_TOKEN="+adminToken)
	logs := &strings.Builder{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case err := <-done:
			t.Fatalf("%s exited: %v\n%s", pkg, err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within a minute", pkg)
		}
	}
}

var (
	paymentPort    = regexp.MustCompile(`(localhost|127\.0\.0\.1):3001\b`)
	deploymentPort = regexp.MustCompile(`(localhost|127\.0\.0\.1):3002\b`)
)

// TestRunnableBlocks runs each doc's runnable blocks, in order, against
// services started for that doc, and checks their output.
func TestRunnableBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both services")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" {
			t.Fatal("the docs' blocks use curl, which is not installed (TAIKIT_REQUIRE_SERVERS=1)")
		}
		t.Skip("the docs' blocks use curl, which is not installed")
	}
	ran := 0
	for _, path := range docs(t) {
		bs := blocks(t, path)
		var runnable []int
		for i, b := range bs {
			if b.info == "sh run" {
				runnable = append(runnable, i)
			}
		}
		if len(runnable) == 0 {
			continue
		}
		rel, _ := filepath.Rel(root, path)
		t.Run(rel, func(t *testing.T) {
			var pay, dep string
			for _, i := range runnable {
				b := bs[i]
				script := b.body
				if paymentPort.MatchString(script) && pay == "" {
					pay = startService(t, "payment")
				}
				if deploymentPort.MatchString(script) && dep == "" {
					dep = startService(t, "deployment")
				}
				script = paymentPort.ReplaceAllString(script, pay)
				script = deploymentPort.ReplaceAllString(script, dep)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
				cmd.Env = append(os.Environ(), "ADMIN_TOKEN="+adminToken)
				out, err := cmd.CombinedOutput()
				cancel()
				where := fmt.Sprintf("%s:%d", rel, b.line)
				if err != nil {
					t.Errorf("%s: the block failed: %v\n%s\n--- output:\n%s", where, err, b.body, out)
					continue
				}
				ran++
				if i+1 < len(bs) && bs[i+1].info == "output" {
					if msg := matches(string(out), bs[i+1].body); msg != "" {
						t.Errorf("%s: %s\n--- block:\n%s--- output:\n%s", where, msg, b.body, out)
					}
				}
			}
		})
	}
	if ran == 0 {
		t.Error("no runnable block ran")
	}
}

// matches checks that every line of want appears in got, in order,
// spaces ignored, "…" standing for anything; it returns what did not.
func matches(got, want string) string {
	squash := func(s string) string { return strings.Join(strings.Fields(s), "") }
	g := squash(got)
	pos := 0
	sc := bufio.NewScanner(strings.NewReader(want))
	for sc.Scan() {
		line := squash(sc.Text())
		if line == "" {
			continue
		}
		for _, part := range strings.Split(line, "…") {
			if part == "" {
				continue
			}
			i := strings.Index(g[pos:], part)
			if i < 0 {
				return fmt.Sprintf("the output lacks %q (after what matched before it)", part)
			}
			pos += i + len(part)
		}
	}
	return ""
}

func TestMatches(t *testing.T) {
	got := `{"status":"SUCCESS","id":"dpl_0123"}` + "\nHTTP 200\n"
	for want, ok := range map[string]bool{
		`"status": "SUCCESS"` + "\nHTTP 200":  true,
		`"id":"dpl_…"` + "\nHTTP 200":         true,
		"HTTP 200\n" + `"status": "SUCCESS"`:  false, // out of order
		`"status":"FAILED"`:                   false,
		`"status":"SUCCESS"…"id"` + "\n\n":    true,
		`{"status":"SUCCESS",…"id":"dpl_9…"}`: false,
	} {
		if got := matches(got, want) == ""; got != ok {
			t.Errorf("matches(%q) = %v, want %v", want, got, ok)
		}
	}
}

// program is a Go block of a doc and, when the block right after it is
// marked "output", that block: what the program must print.
type program struct {
	code   block
	output *block
}

// programs returns the Go blocks among bs, in order, each with its output
// block if it has one. A "go change" block is not a program.
func programs(bs []block) []program {
	var out []program
	for i, b := range bs {
		if b.info != "go" {
			continue
		}
		p := program{code: b}
		if i+1 < len(bs) && bs[i+1].info == "output" {
			p.output = &bs[i+1]
		}
		out = append(out, p)
	}
	return out
}

func TestPrograms(t *testing.T) {
	bs := []block{
		{line: 1, info: "go"}, {line: 2, info: "output"}, // run, its output checked
		{line: 3, info: "go"}, {line: 4, info: ""}, // built only: the block after it is not marked
		{line: 5, info: "go change"}, {line: 6, info: "output"}, // not a program
		{line: 7, info: "go"}, {line: 8, info: "sh"}, {line: 9, info: "output"}, // the output is the shell block's
		{line: 10, info: "go"},
	}
	var got []string
	for _, p := range programs(bs) {
		s := fmt.Sprint(p.code.line)
		if p.output != nil {
			s += fmt.Sprintf("->%d", p.output.line)
		}
		got = append(got, s)
	}
	if want := "1->2 3 7 10"; strings.Join(got, " ") != want {
		t.Errorf("programs: %s, want %s", strings.Join(got, " "), want)
	}
}

// TestOutputsFollowARun checks that every output block comes right after
// a block that is run, a "sh run", "sh taikit" or "go" one: any other
// would be checked by nothing.
func TestOutputsFollowARun(t *testing.T) {
	for _, path := range docs(t) {
		rel, _ := filepath.Rel(root, path)
		bs := blocks(t, path)
		for i, b := range bs {
			if b.info == "output" && (i == 0 || bs[i-1].info != "sh run" && bs[i-1].info != commandsInfo && bs[i-1].info != "go") {
				t.Errorf("%s:%d: an output block follows no block that is run (\"sh run\", %q or \"go\")", rel, b.line, commandsInfo)
			}
		}
	}
}

// TestGoPrograms builds every Go block of the docs inside the examples
// module, which requires the library and its adapters, and runs each that
// an output block follows, checking what it prints as TestRunnableBlocks
// does. Each block must be a whole program (it starts with a package
// clause): a fragment could not be checked.
func TestGoPrograms(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every program the docs show")
	}
	n, ran := 0, 0
	for _, path := range docs(t) {
		rel, _ := filepath.Rel(root, path)
		for _, p := range programs(blocks(t, path)) {
			where := fmt.Sprintf("%s:%d", rel, p.code.line)
			if !strings.HasPrefix(strings.TrimSpace(p.code.body), "package ") {
				t.Errorf("%s: a Go block is not a whole program, so it cannot be built: write one that is", where)
				continue
			}
			n++
			if p.output != nil {
				ran++
			}
			t.Run(where, func(t *testing.T) {
				checkProgram(t, p)
			})
		}
	}
	if n == 0 {
		t.Error("no Go program found in the docs")
	}
	if ran == 0 {
		t.Error("no Go program in the docs shows its output")
	}
}

// checkProgram vets p's code in a package of the examples module and, if
// p has an output block, builds it and runs it in an empty directory of
// its own, so that the files it writes stay out of the repository, and
// checks what it prints, standard output and error together.
func checkProgram(t *testing.T, p program) {
	dir := writeProgram(t, p.code.body)
	vet := exec.Command("go", "vet", "./"+filepath.Base(dir))
	if out, err := vet.CombinedOutput(); err != nil {
		t.Fatalf("the program does not build: %v\n%s", err, out)
	}
	if p.output == nil {
		return
	}
	bin := buildProgram(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = t.TempDir()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the program failed: %v\n--- output:\n%s", err, out)
	}
	if msg := matches(string(out), p.output.body); msg != "" {
		rel, _ := filepath.Rel(root, p.output.file)
		t.Errorf("%s:%d: %s\n--- output:\n%s", rel, p.output.line, msg, out)
	}
}

// writeProgram writes code as the main.go of a package of the examples
// module, in a directory of this package's that is removed when the test
// ends, and returns the directory.
func writeProgram(t *testing.T, code string) string {
	t.Helper()
	dir, err := os.MkdirTemp(".", "_snippet") // a leading _ keeps it out of ./...
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildProgram builds the package writeProgram wrote in dir and returns
// the binary's absolute path.
func buildProgram(t *testing.T, dir string) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join(t.TempDir(), "program"))
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, "./"+filepath.Base(dir))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
