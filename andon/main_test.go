package andon_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the time the scripted tests evaluate from, with EvaluateAt.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// switchCond is a condition a test turns on and off.
type switchCond struct {
	mu      sync.Mutex
	active  bool
	value   float64
	samples uint64
	err     error
}

func newSwitch() *switchCond { return &switchCond{samples: 100} }

func (s *switchCond) Set(active bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = active
	if active {
		s.value = 0.1
	} else {
		s.value = 0.01
	}
}

func (s *switchCond) SetSamples(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = n
}

func (s *switchCond) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *switchCond) Measure(context.Context, time.Time) (andon.Measurement, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return andon.Measurement{Active: s.active, Value: s.value, Threshold: 0.05, Unit: andon.UnitRatio, Samples: s.samples}, s.err
}

// newStats returns a kaizen Stats keeping windows. It reads time.Now: a
// test that lets time pass runs in a synctest bubble.
func newStats(t *testing.T, windows ...time.Duration) *kaizen.Stats {
	t.Helper()
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: windows})
	require.NoError(t, err)
	return s
}

// observe records n signals of kind with outcome and verdict, finishing
// now, each lasting d.
func observe(s *kaizen.Stats, kind string, n int, o tai.Outcome, v tai.Verdict, d time.Duration) {
	now := time.Now()
	for range n {
		s.Observe(context.Background(), tai.Record{Kind: kind, Outcome: o, Decision: tai.Decision{Verdict: v},
			Start: now.Add(-d), Duration: d})
	}
}

// needBinary returns the path of an installed binary, or skips the test
// (fails it with TAIKIT_REQUIRE_SERVERS=1).
func needBinary(t *testing.T, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if lp, err := exec.LookPath(p); err == nil {
			return lp
		}
	}
	if os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" {
		t.Fatalf("%v not installed and TAIKIT_REQUIRE_SERVERS=1", paths)
	}
	t.Skipf("%v not installed; skipping (set TAIKIT_REQUIRE_SERVERS=1 to fail instead)", paths)
	return ""
}

// newEvaluator builds an evaluator shut down at the end of the test.
func newEvaluator(t *testing.T, opts andon.EvaluatorOptions) *andon.Evaluator {
	t.Helper()
	e, err := andon.NewEvaluator(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Shutdown(context.Background())) })
	return e
}

// newLine and newBreaker make the jidoka parts the tests watch.
func newLine(name string) *jidoka.Line {
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: name})
	if err != nil {
		panic(err)
	}
	return line
}

func newBreaker(t *testing.T, name string) *jidoka.Breaker {
	t.Helper()
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: name, OpenDuration: time.Hour})
	require.NoError(t, err)
	return b
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// evaluateAndFlush evaluates e at t0+at and waits until its notifications
// are delivered or given up.
func evaluateAndFlush(t *testing.T, e *andon.Evaluator, at time.Duration) {
	t.Helper()
	e.EvaluateAt(context.Background(), t0.Add(at))
	require.NoError(t, e.Flush(context.Background()))
}

// runPromtoolTest writes test to dir/test.yml, runs `promtool test rules
// test.yml` in dir, beside the rule files the test names, and fails t
// unless it passes, showing promtool's output, shown (the rules) and the
// test. It returns the output.
func runPromtoolTest(t *testing.T, promtool, dir, test string, shown ...string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.yml"), []byte(test), 0o600))
	cmd := exec.Command(promtool, "test", "rules", "test.yml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s\n%s\n%s", out, strings.Join(shown, "\n"), test)
	return string(out)
}
