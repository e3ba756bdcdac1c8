package storetest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/storetest"
)

func TestRunPassesAMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) heijunka.Store {
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
		require.NoError(t, err)
		return s
	})
}

// mutants are stores that each break the Store contract in one way a real
// store could, and that the suite must therefore fail.
var mutants = map[string]func() heijunka.Store{
	// Decides every finite Limit as the first one it was given: it keeps
	// the Limit with its state, as a store serving one limit might.
	"FirstLimitOnly": func() heijunka.Store { return &firstLimitOnly{Store: memoryStore()} },
	// Keeps a state per key and Limit: a changed Limit starts the key
	// afresh, where a Store keeps one schedule per key.
	"StatePerLimit": func() heijunka.Store { return &statePerLimit{Store: memoryStore(), seen: map[string][]string{}} },
	// Says every decision failed open, as a store that marks its own
	// answers so would.
	"FailedOpenAlways": func() heijunka.Store { return failedOpen{Store: memoryStore()} },
	// Admits a batch whose cost in time overflows, as arithmetic that
	// wraps would.
	"OverflowingBatch": func() heijunka.Store { return overflowingBatch{Store: memoryStore()} },
}

type failedOpen struct{ heijunka.Store }

func (s failedOpen) Take(ctx context.Context, key string, limit heijunka.Limit, now time.Time, n int) (heijunka.Decision, error) {
	d, err := s.Store.Take(ctx, key, limit, now, n)
	d.FailedOpen = d.Allowed
	return d, err
}

type overflowingBatch struct{ heijunka.Store }

func (s overflowingBatch) Take(ctx context.Context, key string, limit heijunka.Limit, now time.Time, n int) (heijunka.Decision, error) {
	if finite(limit) && time.Duration(n)*time.Duration(float64(time.Second)/limit.Rate) < 0 {
		return heijunka.Decision{Allowed: true, Limit: limit}, nil
	}
	return s.Store.Take(ctx, key, limit, now, n)
}

func memoryStore() *heijunka.MemoryStore {
	s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
	if err != nil {
		panic(err)
	}
	return s
}

func finite(l heijunka.Limit) bool {
	return l.Validate() == nil && !l.IsUnlimited() && !l.IsClosed()
}

type firstLimitOnly struct {
	heijunka.Store
	mu    sync.Mutex
	first *heijunka.Limit
}

func (s *firstLimitOnly) Take(ctx context.Context, key string, limit heijunka.Limit, now time.Time, n int) (heijunka.Decision, error) {
	if finite(limit) {
		s.mu.Lock()
		if s.first == nil {
			s.first = &limit
		}
		limit = *s.first
		s.mu.Unlock()
	}
	return s.Store.Take(ctx, key, limit, now, n)
}

type statePerLimit struct {
	heijunka.Store
	mu   sync.Mutex
	seen map[string][]string // the keys held for each key given
}

func (s *statePerLimit) Take(ctx context.Context, key string, limit heijunka.Limit, now time.Time, n int) (heijunka.Decision, error) {
	k := key + "\x00" + limit.String()
	s.mu.Lock()
	s.seen[key] = append(s.seen[key], k)
	s.mu.Unlock()
	return s.Store.Take(ctx, k, limit, now, n)
}

func (s *statePerLimit) Reset(ctx context.Context, key string) error {
	s.mu.Lock()
	keys := s.seen[key]
	delete(s.seen, key)
	s.mu.Unlock()
	for _, k := range keys {
		if err := s.Store.Reset(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

const mutantEnv = "STORETEST_MUTANT"

// TestRunMutant runs the suite against the mutant named in the
// environment; TestRunFailsMutants runs it in a process of its own.
func TestRunMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("runs only in the process TestRunFailsMutants starts")
	}
	newStore := mutants[name]
	require.NotNil(t, newStore, "no mutant %q", name)
	storetest.Run(t, func(*testing.T) heijunka.Store { return newStore() })
}

// TestRunFailsMutants checks that the suite tests what it claims: each
// mutant store fails it.
func TestRunFailsMutants(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("running a mutant")
	}
	for name := range mutants {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRunMutant$", "-test.count=1")
			cmd.Env = append(os.Environ(), mutantEnv+"="+name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "the suite passed the mutant store %s (%v):\n%s", name, err, out)
			assert.Contains(t, string(out), "--- FAIL: TestRunMutant/", "the suite itself, not the mutant's setup, fails:\n%s", out)
		})
	}
}

// TestStore fails each mutant store too, in the process that calls it, and
// names in its first line the cases that failed.
func TestTestStoreFailsMutants(t *testing.T) {
	for name, newStore := range mutants {
		t.Run(name, func(t *testing.T) {
			err := storetest.TestStore(func() (heijunka.Store, error) { return newStore(), nil })
			require.Error(t, err, "the suite passed the mutant store")
			summary, details, _ := strings.Cut(err.Error(), "\n")
			assert.Regexp(t, `^storetest: \d+ of \d+ cases failed: \w+`, summary)
			assert.Contains(t, details, "--- ")
		})
	}
}

// A store newStore cannot make, or one that panics, fails every case, on
// whatever goroutine of the suite it panics, and TestStore returns.
func TestTestStoreFailsAStoreItCannotUse(t *testing.T) {
	down := errors.New("connection refused")
	err := storetest.TestStore(func() (heijunka.Store, error) { return nil, down })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "storetest: 15 of 15 cases failed: StartsFull, Refills,")
	assert.Contains(t, err.Error(), "newStore: connection refused")

	err = storetest.TestStore(func() (heijunka.Store, error) { return panicking{}, nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "storetest: 15 of 15 cases failed:")
	assert.Contains(t, err.Error(), "ConcurrentAtOneInstant")
	assert.Contains(t, err.Error(), "panic: store exploded")
}

type panicking struct{ heijunka.Store }

func (panicking) Take(context.Context, string, heijunka.Limit, time.Time, int) (heijunka.Decision, error) {
	panic("store exploded")
}
