package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runCLI runs the command line args, with an empty standard input, and
// returns its exit status and output.
func runCLI(args ...string) (code int, stdout, stderr string) {
	return runCLIWithStdin(strings.NewReader(""), args...)
}

// runCLIWithStdin runs the command line args with stdin as its standard
// input, and returns its exit status and output.
func runCLIWithStdin(stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, stdin, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCommandTree(t *testing.T) {
	for _, c := range []struct {
		name     string
		args     []string
		code     int
		stdout   []string // each must be in the output
		stderr   []string
		noStdout bool
	}{
		{name: "nothing", args: nil, code: 2, stderr: []string{"taikit: a command is needed", "usage: taikit <command> ...", "audit "}, noStdout: true},
		{name: "help", args: []string{"-h"}, code: 0, stdout: []string{"usage: taikit <command> ...", "  audit      work with audit trails",
			"  backtest   replay audit trails through a candidate rule file", `Run "taikit <command> -h"`}},
		{name: "help word", args: []string{"help"}, code: 0, stdout: []string{"usage: taikit <command> ..."}},
		{name: "help word and a command", args: []string{"help", "audit"}, code: 0, stdout: []string{"usage: taikit audit <command> ..."}},
		{name: "help word and a leaf", args: []string{"help", "audit", "verify"}, code: 0, stdout: []string{"usage: taikit audit verify [-key-file FILE]"}},
		{name: "help flag and a leaf", args: []string{"audit", "-h", "verify"}, code: 0, stdout: []string{"usage: taikit audit verify [-key-file FILE]"}},
		{name: "help word twice", args: []string{"help", "help"}, code: 0, stdout: []string{"usage: taikit <command> ..."}},
		{name: "help word and a command's help", args: []string{"help", "audit", "-h"}, code: 0, stdout: []string{"usage: taikit audit <command> ..."}},
		{name: "help word and an unknown command", args: []string{"help", "deploy"}, code: 2, stderr: []string{`taikit: unknown command "deploy"`}, noStdout: true},
		{name: "unknown", args: []string{"deploy"}, code: 2, stderr: []string{`taikit: unknown command "deploy"`, "audit "}, noStdout: true},
		{name: "group without command", args: []string{"audit"}, code: 2, stderr: []string{"taikit audit: a command is needed", "  verify     verify audit trail files"}, noStdout: true},
		{name: "group help", args: []string{"audit", "--help"}, code: 0, stdout: []string{"usage: taikit audit <command> ...", "  verify     verify audit trail files as one hash chain"}},
		{name: "group unknown", args: []string{"audit", "sign"}, code: 2, stderr: []string{`taikit audit: unknown command "sign"`}, noStdout: true},
		{name: "leaf help", args: []string{"audit", "verify", "-h"}, code: 0, stdout: []string{
			"usage: taikit audit verify [-key-file FILE] [-genesis HASH] [-expect HASH] FILE...",
			"Exit status: 0 when the files verify, 1 when they do not",
			"  -key-file FILE", "  -genesis HASH", "  -expect HASH"}},
		{name: "leaf help after a flag", args: []string{"audit", "verify", "-genesis", "x", "-help"}, code: 0, stdout: []string{"usage: taikit audit verify"}},
		{name: "bad flag", args: []string{"audit", "verify", "-key", "k", "f"}, code: 2, stderr: []string{
			"taikit audit verify: flag provided but not defined: -key", `Run "taikit audit verify -h" for help.`}, noStdout: true},
		{name: "flag without value", args: []string{"audit", "verify", "-expect"}, code: 2, stderr: []string{"flag needs an argument: -expect"}, noStdout: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(c.args...)
			assert.Equal(t, c.code, code)
			for _, s := range c.stdout {
				assert.Contains(t, stdout, s)
			}
			for _, s := range c.stderr {
				assert.Contains(t, stderr, s)
			}
			if c.code == 0 {
				assert.Empty(t, stderr)
			}
			if c.noStdout {
				assert.Empty(t, stdout)
			}
		})
	}
}

// Help asked for and not written (a full disk, a closed pipe) is not a
// success either: exit status 2, as for a result not written.
func TestHelpNotWritten(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"audit", "help"}, {"audit", "verify", "-h"}, {"backtest", "-help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stderr strings.Builder
			code := run(args, strings.NewReader(""), failWriter{}, &stderr)
			assert.Equal(t, 2, code)
			path := strings.Join(append([]string{"taikit"}, args[:len(args)-1]...), " ")
			assert.Equal(t, path+": writing the help: no space left on device\n", stderr.String())
		})
	}
}
