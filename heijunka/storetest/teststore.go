package storetest

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/taipattern/taikit/heijunka"
)

// TestStore runs the conformance suite against the stores newStore makes,
// as Run does, but without a *testing.T, in the manner of
// testing/fstest.TestFS and testing/slogtest.TestHandler: in a program
// that checks a store before it relies on it (a Redis server's version
// and configuration, say), or under a test framework of another kind. It
// calls newStore once per case of the suite, for a fresh, empty store,
// and runs the cases one after another.
//
// TestStore returns nil when the store passes every case. Otherwise its
// error's first line names the cases the store failed, in the suite's
// order ("storetest: 1 of 15 cases failed: Reset"), and the lines after
// it say what each of them found. A case fails as well when newStore
// returns an error, or when the store panics.
func TestStore(newStore func() (heijunka.Store, error)) error {
	var failed []string
	var details strings.Builder
	for _, tc := range cases {
		c := &checker{name: "TestStore/" + tc.name}
		c.run(func() {
			s, err := newStore()
			if err != nil {
				c.Errorf("newStore: %v", err)
				return
			}
			tc.run(c, s)
		})
		if msgs, ok := c.result(); !ok {
			failed = append(failed, tc.name)
			fmt.Fprintf(&details, "\n--- %s:", tc.name)
			for _, m := range msgs {
				details.WriteString("\n" + strings.Trim(m, "\n"))
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("storetest: %d of %d cases failed: %s%s", len(failed), len(cases), strings.Join(failed, ", "), details.String())
}

// checker runs one case of the suite for TestStore, as a *testing.T runs
// a test: FailNow ends the case's goroutine, and the messages of the
// case's failures are kept.
type checker struct {
	name string

	mu     sync.Mutex
	msgs   []string
	failed bool
}

func (c *checker) Helper()      {}
func (c *checker) Name() string { return c.name }

func (c *checker) Error(args ...any) { c.fail(fmt.Sprintln(args...)) }

func (c *checker) Errorf(format string, args ...any) { c.fail(fmt.Sprintf(format, args...)) }

// FailNow marks the case failed and ends its goroutine, as
// testing.T.FailNow does; run waits for that goroutine.
func (c *checker) FailNow() {
	c.mu.Lock()
	c.failed = true
	c.mu.Unlock()
	runtime.Goexit()
}

func (c *checker) fail(msg string) {
	c.mu.Lock()
	c.msgs = append(c.msgs, msg)
	c.failed = true
	c.mu.Unlock()
}

// run runs the case fn on a goroutine of its own, so that FailNow can end
// it, and waits for it. A panic fails the case, with its stack.
func (c *checker) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		returned := false
		defer func() {
			if returned {
				return
			}
			if v := recover(); v != nil { // nil: FailNow ended the goroutine
				c.Errorf("panic: %v\n%s", v, debug.Stack())
			}
		}()
		fn()
		returned = true
	}()
	<-done
}

// result returns the messages of the case's failures, and whether it
// passed.
func (c *checker) result() ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs, !c.failed
}
