// Package docstest checks the project's documentation against the code:
// its tests run every shell block marked runnable in README.md, docs/*.md
// and the examples' READMEs against the two services, started fresh, and
// compare the output with the block the doc shows after it; and they
// build every Go block the docs show, each a whole program, and run those
// whose output the doc shows, comparing it the same way; and they run
// the taikit commands the docs show with their output, comparing that
// line by line.
//
// A runnable block is a fenced block whose info string is "sh run". The
// fenced block right after it, if its info string is "output", lists what
// the run must print: each line, with spaces ignored, must appear in the
// output, in order; "…" in a line stands for anything, such as a number
// that changes from run to run. The services listen on ports of their
// own; the blocks' localhost:3001 and localhost:3002 are rewritten to
// them, and ADMIN_TOKEN is set in the blocks' environment to the token the
// services were started with.
//
// Every go block must be a whole program (it starts with a package
// clause), and builds in the examples module. When the fenced block right
// after it is an "output" block, the program is also run, in an empty
// directory of its own so that the files it writes stay out of the
// repository, with a minute to finish, and what it prints (standard output
// and error together) is checked as a shell block's is. Such a program
// must need nothing but itself: no service, no server outside its process.
// A program whose output is shown in a plain block instead is built only.
// Code meant to be added to a package as part of a change a doc walks
// through is marked "go change" instead: it builds only once the rest of
// the change is made.
//
// A block whose info string is "sh taikit" holds commands a reader types
// at the repository's root: "go run ./cmd/taikit ..." and, for the doc's
// last Go program before the block, saved as examples/mytask, "go run
// ./examples/mytask". The test builds the command and the program once
// and runs the blocks, in the doc's order, with bash, with those two
// rewritten to run the binaries and to print "exit status N" as go run
// does when one exits with N. The blocks after one program run in a new,
// empty directory, in which the program has run once first, unless the
// first of those blocks runs it itself. The "output" block that must
// follow shows all the block prints, standard output and error together,
// and is compared line by line, every character, except the parts that
// change from run to run: any 64 hexadecimal digits, such as an audit
// trail's hash, and any RFC 3339 time.
//
// An "output" block that follows no "sh run", "sh taikit" or "go" block
// is an error, since nothing would check it.
package docstest
