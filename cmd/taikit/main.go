// Command taikit is the command-line companion of the taikit library.
//
// Usage:
//
//	taikit <command> [<subcommand>] [flags] [arguments]
//
// The commands are:
//
//	audit verify   verify audit trail files written by package kaizen
//	backtest       replay audit trails through a candidate taicel rule file
//
// A command's flags may come before or after its arguments
// ("taikit audit verify FILE -key-file KEY"); after "--" every argument is
// one, even if it begins with '-'. A flag is given once, unless its help
// says to repeat it (backtest -audit): the first value of a flag given
// twice would count for nothing.
//
// Every command prints its own help with -h, for example
// "taikit audit verify -h" (or "taikit help audit verify"). The exit
// status is 0 on success, 1 when the command ran and found a problem (an
// audit trail that does not verify, a rule file that changes decisions),
// and 2 when it was called wrongly (an unknown command, a bad flag), could
// not write its result (or the help asked for) or, for backtest, could not
// run.
//
// In a clone of the repository, run it with "go run ./cmd/taikit" or
// install it with "go install ./cmd/taikit". Its go.mod points at the
// library in the same clone, so "go install …@latest" waits for a tagged
// release.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/taipattern/taikit/internal/firsterr"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK      = 0
	exitProblem = 1 // the command ran and found a problem
	exitUsage   = 2 // the command was called wrongly
)

// run runs the command that args (without the program name) name, with
// stdin for a FILE given as "-", and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return commands().run("", args, stdin, stdout, stderr)
}

// commands returns the tree of commands. A new command is a new entry
// in a subs list.
func commands() *command {
	return &command{
		name:    "taikit",
		summary: "the command-line companion of the taikit library",
		subs:    []*command{auditCommand(), backtestCommand()},
	}
}

// command is a node of the command tree: a group of subcommands, or a
// leaf with flags that runs.
type command struct {
	name    string
	summary string // one line, shown in the parent's list
	// A group has subs.
	subs []*command
	// A leaf has args (its synopsis after the flags), doc (its help, in
	// paragraphs) and flags, which defines its flags on fs and returns
	// the function that runs it.
	args  string
	doc   string
	flags func(fs *flag.FlagSet) runFunc
}

// runFunc runs a leaf command, named path ("taikit audit verify") in
// messages, with the arguments left after its flags, and returns the
// exit status.
type runFunc func(path string, args []string, stdin io.Reader, stdout, stderr io.Writer) int

// run runs c, reached through the commands named by parent, with args.
func (c *command) run(parent string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	path := strings.TrimSpace(parent + " " + c.name)
	if c.flags != nil {
		return c.runLeaf(path, args, stdin, stdout, stderr)
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "%s: a command is needed\n\n", path)
		c.groupHelp(stderr, path)
		return exitUsage
	}
	if isHelp(args[0]) {
		if len(args) > 1 && !isHelp(args[1]) { // "help audit verify": the help of that command
			return c.run(parent, append(slices.Clone(args[1:]), "-h"), stdin, stdout, stderr)
		}
		return helpWritten(stderr, path, c.groupHelp(stdout, path))
	}
	for _, sub := range c.subs {
		if sub.name == args[0] {
			return sub.run(path, args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", path, args[0])
	c.groupHelp(stderr, path)
	return exitUsage
}

// isHelp reports whether arg asks a group for its help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// groupHelp writes the help of a group to w, and returns the first error
// writing it.
func (c *command) groupHelp(w io.Writer, path string) error {
	ew := &firsterr.Writer{W: w}
	fmt.Fprintf(ew, "%s: %s\n\nusage: %s <command> ...\n\ncommands:\n", path, c.summary, path)
	for _, sub := range c.subs {
		fmt.Fprintf(ew, "  %-10s %s\n", sub.name, sub.summary)
	}
	fmt.Fprintf(ew, "\nRun \"%s <command> -h\" for the help of a command.\n", path)
	return ew.Err
}

// helpWritten returns the exit status of help asked for, written with
// err: exitOK, or exitUsage after saying on stderr that it could not be
// written, as for a result.
func helpWritten(stderr io.Writer, path string, err error) int {
	if err != nil {
		fmt.Fprintf(stderr, "%s: writing the help: %v\n", path, err)
		return exitUsage
	}
	return exitOK
}

func (c *command) runLeaf(path string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints the errors and the help
	exec := c.flags(fs)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpWritten(stderr, path, c.leafHelp(stdout, path, fs))
		}
		return usageError(stderr, path, "%v", err)
	}
	return exec(path, rest, stdin, stdout, stderr)
}

// parseInterspersed parses the flags of args into fs wherever they are,
// before, between or after the arguments ("audit verify FILE -key-file
// KEY" as well as "audit verify -key-file KEY FILE"), and returns the
// arguments in order. The flag package stops at the first argument that
// is not a flag; this parses on after it. After "--" every argument is
// one, even if it begins with '-'. A flag given twice is an error unless
// its value is repeatable (-audit): the flag package keeps the last
// value, and "-expect NEW -expect OLD" would check OLD alone.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	given := map[string]bool{}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		used, dashes := flagsUsed(fs, args[:len(args)-len(left)])
		for _, f := range used {
			if _, ok := f.Value.(repeatable); given[f.Name] && !ok {
				return nil, fmt.Errorf("-%s is given twice: it takes one value, and only the last would count", f.Name)
			}
			given[f.Name] = true
		}
		if len(left) == 0 {
			return rest, nil
		}
		if dashes {
			return append(rest, left...), nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// repeatable is implemented by the value of a flag that may be given
// more than once, each value added to the ones before.
type repeatable interface{ repeatable() }

// flagsUsed returns the flags of the arguments used, which fs parsed
// without error, in order, and reports whether used ends with the "--"
// that ends the flags, and not with a "--" that is a flag's value
// ("-key-file --", a file named "--").
func flagsUsed(fs *flag.FlagSet, used []string) (flags []*flag.Flag, dashes bool) {
	for i := 0; i < len(used); i++ {
		if used[i] == "--" {
			return flags, i == len(used)-1
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(used[i], "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		flags = append(flags, f)
		if hasValue {
			continue // -name=value
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			i++ // its value, the next argument
		}
	}
	return flags, false
}

// leafHelp writes the help of a leaf to w, and returns the first error
// writing it.
func (c *command) leafHelp(w io.Writer, path string, fs *flag.FlagSet) error {
	ew := &firsterr.Writer{W: w}
	fmt.Fprintf(ew, "usage: %s %s\n\n%s\n", path, c.args, c.doc)
	fmt.Fprintln(ew, "\nflags:")
	fs.SetOutput(ew)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	return ew.Err
}

// usageError prints what was wrong with how command path was called and
// returns exitUsage.
func usageError(stderr io.Writer, path, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\nRun \"%s -h\" for help.\n", path, fmt.Sprintf(format, args...), path)
	return exitUsage
}

// emptyFlag returns an error naming the first of the flags names that
// was given an empty value, as "-key-file $KEY" gives with KEY unset, and
// nil if none was. Their default is the empty string, the flag left out:
// taken for it, an empty value would silently skip what was asked for,
// such as the key a trail was written with.
func emptyFlag(fs *flag.FlagSet, names ...string) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err == nil && f.Value.String() == "" && slices.Contains(names, f.Name) {
			name, _ := flag.UnquoteUsage(f)
			err = fmt.Errorf("-%s: empty %s", f.Name, name)
		}
	})
	return err
}

// distinctFiles returns an error naming a file of paths given twice, by
// the same name or another (a link), with prefix before its name: it
// would be read twice. A file that cannot be read is left to the command
// to report. Each file is compared only with the files before it of the
// same fileID, so that the many files of a rotated trail (PATH*) are
// not compared pair by pair.
func distinctFiles(prefix string, paths []string) error {
	seen := make(map[any][]int, len(paths)) // by fileID, the paths' indexes
	infos := make([]os.FileInfo, len(paths))
	for i, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			continue
		}
		id := fileID(fi)
		for _, j := range seen[id] {
			switch {
			case !sameFile(fi, infos[j]):
			case paths[j] == path:
				return fmt.Errorf("%s%s is given twice: each trail is read once", prefix, path)
			default:
				return fmt.Errorf("%s%s is the file %s given before: each trail is read once", prefix, path, paths[j])
			}
		}
		infos[i] = fi
		seen[id] = append(seen[id], i)
	}
	return nil
}

// sameFile is os.SameFile; tests count its calls.
var sameFile = os.SameFile

// explainDanglingLink returns err, saying so when the file it names (its
// *fs.PathError's) does not exist and is a symbolic link, whose target
// does not exist: the error alone says that a file listed in its
// directory does not exist.
func explainDanglingLink(err error) error {
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
		return err
	}
	target, lerr := os.Readlink(pe.Path)
	if lerr != nil {
		return err
	}
	return fmt.Errorf("%w: it is a symbolic link to %s, which does not exist", err, target)
}
