package taicel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// writeFile replaces path with data the way a deployment should: a
// complete file renamed over the old one.
func writeFile(t testing.TB, path string, data string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(data), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// orderRules is a set of version v: a Deny rule over payload.Total.
func orderRules(v int, limit string) string {
	return fmt.Sprintf("version: %q\nname: orders\nrules:\n  - name: big\n    verdict: deny\n    expr: payload.Total > %s\n    reason: 'v%d: over %s'\n", fmt.Sprint(v), limit, v, limit)
}

type reports struct {
	mu   sync.Mutex
	list []taicel.Reload
}

func (r *reports) add(rep taicel.Reload) { r.mu.Lock(); r.list = append(r.list, rep); r.mu.Unlock() }
func (r *reports) get() []taicel.Reload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]taicel.Reload(nil), r.list...)
}

func TestLoaderReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	v1, v2 := orderRules(1, "100.0"), orderRules(2, "10.0")
	broken := strings.Replace(orderRules(3, "1.0"), "payload.Total", "payload.Totl", 1)
	writeFile(t, path, v1)

	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	var reps reports
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: -1, OnReload: reps.add, Observer: audit})
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Shutdown(t.Context())) }()
	assert.Equal(t, "orders", l.Name())

	judge := func() tai.Decision {
		d, err := l.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Total: 50}})
		require.NoError(t, err)
		return d
	}
	assert.Equal(t, tai.Allow, judge().Verdict)

	writeFile(t, path, v2)
	changed, err := l.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, "2", l.Current().Version())
	assert.Equal(t, "v2: over 10.0", judge().Reason)

	writeFile(t, path, v2) // same bytes: nothing to do
	changed, err = l.Reload()
	require.NoError(t, err)
	assert.False(t, changed)

	writeFile(t, path, broken)
	changed, err = l.Reload()
	assert.False(t, changed)
	var ce *taicel.CompileError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "big", ce.Rule)
	assert.Equal(t, 6, ce.FileLine)
	assert.Equal(t, "2", l.Current().Version(), "the old set keeps running")
	assert.Equal(t, "v2: over 10.0", judge().Reason)
	refusal := err
	changed, err = l.Reload() // reported once, not again and again, but still refused
	assert.False(t, changed)
	assert.Equal(t, refusal, err)

	require.NoError(t, os.Remove(path))
	changed, err = l.Reload()
	assert.False(t, changed)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = l.Reload()
	assert.ErrorIs(t, err, os.ErrNotExist)

	writeFile(t, path, v1)
	changed, err = l.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, tai.Allow, judge().Verdict)

	got := reps.get()
	require.Len(t, got, 5)
	want := []struct {
		version, hash string
		failed        bool
	}{{"1", sha(v1), false}, {"2", sha(v2), false}, {"3", sha(broken), true}, {"", "", true}, {"1", sha(v1), false}}
	for i, w := range want {
		assert.Equal(t, path, got[i].Path)
		assert.Equal(t, w.version, got[i].Version, "report %d", i)
		assert.Equal(t, w.hash, got[i].Hash, "report %d", i)
		assert.Equal(t, w.failed, got[i].Err != nil, "report %d", i)
		assert.False(t, got[i].Time.IsZero())
	}

	require.NoError(t, audit.Shutdown(t.Context()))
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(trail.Bytes())))
	lines := strings.Split(strings.TrimSpace(trail.String()), "\n")
	require.Len(t, lines, 5)
	for i, line := range lines {
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		assert.Equal(t, taicel.ReloadKind, e.Kind)
		assert.Equal(t, path, e.Key)
		assert.Equal(t, "version "+want[i].version+" sha256 "+want[i].hash, e.Decision.Reason)
		if want[i].failed {
			assert.Equal(t, "failed", e.Outcome)
			assert.NotEmpty(t, e.Error)
		} else {
			assert.Equal(t, "succeeded", e.Outcome)
			assert.Equal(t, tai.Allow, e.Decision.Verdict)
			assert.Equal(t, "orders", e.Decision.Policy)
		}
	}
	assert.Contains(t, lines[2], "undefined field 'Totl'")
}

func TestNewLoaderErrors(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = taicel.NewLoader[Order](nil, filepath.Join(dir, "x"), taicel.LoaderOptions{})
	assert.ErrorContains(t, err, "nil Env")
	_, err = taicel.NewLoader(env, filepath.Join(dir, "missing.yaml"), taicel.LoaderOptions{})
	assert.ErrorIs(t, err, os.ErrNotExist)
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "version: 1\nrules: []\n")
	_, err = taicel.NewLoader(env, bad, taicel.LoaderOptions{})
	assert.ErrorContains(t, err, "at least one rule")
}

// An Interval above zero and below MinLoaderInterval would read and hash
// the file without pause; NewLoader refuses it, naming the field, and
// starts nothing. MinLoaderInterval itself, zero and -1 are accepted.
func TestNewLoaderRefusesATooShortInterval(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, orderRules(1, "100.0"))
	for _, d := range []time.Duration{time.Nanosecond, time.Millisecond, taicel.MinLoaderInterval - 1} {
		l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: d})
		assert.ErrorContains(t, err, "taicel: LoaderOptions.Interval "+d.String()+" is shorter than 10ms", "Interval %v", d)
		if l != nil {
			require.NoError(t, l.Shutdown(t.Context()))
		}
	}
	for _, d := range []time.Duration{taicel.MinLoaderInterval, 0, -1} {
		l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: d})
		require.NoError(t, err, "Interval %v", d)
		require.NoError(t, l.Shutdown(t.Context()))
	}
}

func TestLoaderPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path, l, reps := pollingLoader(t)

		writeFile(t, path, orderRules(2, "10.0"))
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, "1", l.Current().Version(), "not before the interval")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		assert.Equal(t, "2", l.Current().Version())

		writeFile(t, path, "version: 3\nrules: [")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, "2", l.Current().Version())
		time.Sleep(10 * time.Second) // refused once, not on every tick
		synctest.Wait()
		got := reps.get()
		require.Len(t, got, 3)
		assert.Error(t, got[2].Err)

		require.NoError(t, l.Shutdown(t.Context()))
		require.NoError(t, l.Shutdown(t.Context()), "Shutdown twice")
		writeFile(t, path, orderRules(4, "1.0"))
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, "2", l.Current().Version(), "no reload after Shutdown")
		_, err := l.Evaluate(t.Context(), tai.Signal[Order]{})
		assert.NoError(t, err, "still evaluates after Shutdown")
	})
}

// A Loader that has stopped watching, or never watched, has nothing left
// to wait for: Shutdown returns nil even under a ctx that has ended. It
// chose at random between the two, and answered ctx's error about half
// the time.
func TestLoaderShutdownOfAStoppedLoaderUnderAnEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, polling, _ := pollingLoader(t)
		require.NoError(t, polling.Shutdown(t.Context()))
		path := filepath.Join(t.TempDir(), "rules.yaml")
		writeFile(t, path, orderRules(1, "100.0"))
		env, err := taicel.NewEnv(taicel.Options[Order]{})
		require.NoError(t, err)
		manual, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: -1})
		require.NoError(t, err)

		ended, cancel := context.WithCancel(t.Context())
		cancel()
		for range 64 {
			require.NoError(t, polling.Shutdown(ended), "stopped")
			require.NoError(t, manual.Shutdown(ended), "never watched")
		}
	})
}

// uniformRules is a set whose name and every rule's reason are its
// version, so a decision made with parts of two sets shows.
func uniformRules(v int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: \"%d\"\nname: v%d\nthresholds: {deny: 1}\nrules:\n", v, v)
	for i := range 4 {
		fmt.Fprintf(&b, "  - {name: r%d, weight: 0.1, expr: 'payload.Items >= 0 && %d > 0', reason: 'v%d'}\n", i, v, v)
	}
	return b.String()
}

func TestLoaderNeverMixesSets(t *testing.T) {
	const reloads = 1000
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, uniformRules(1))
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: -1})
	require.NoError(t, err)

	var stop atomic.Bool
	var decisions, mixed atomic.Int64
	seen := sync.Map{}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				d, err := l.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Items: 1}})
				if err != nil {
					t.Error(err)
					return
				}
				decisions.Add(1)
				seen.Store(d.Policy, true)
				ok := len(d.Contributions) == 4 && d.Reason == d.Policy
				for _, c := range d.Contributions {
					ok = ok && c.Reason == d.Policy
				}
				if !ok {
					mixed.Add(1)
				}
			}
		})
	}
	for v := 2; v <= reloads+1; v++ {
		writeFile(t, path, uniformRules(v))
		changed, err := l.Reload()
		require.NoError(t, err)
		require.True(t, changed)
	}
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, mixed.Load(), "decisions mixing two sets")
	assert.Equal(t, fmt.Sprint(reloads+1), l.Current().Version())
	versions := 0
	seen.Range(func(any, any) bool { versions++; return true })
	assert.Greater(t, versions, 1, "evaluations saw more than one set")
	t.Logf("%d decisions over %d sets", decisions.Load(), versions)
}

// A Reload that swaps a newer set in while another Reload is still
// reporting an older one must not have its report overtaken: an audit
// trail read in order ends with the set in force, and each record names
// the set it reports.
func TestLoaderReportsInLoadOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, uniformRules(1))
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)

	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var onReload []string
	var records []tai.Record
	opts := taicel.LoaderOptions{
		Interval: -1,
		OnReload: func(rep taicel.Reload) {
			mu.Lock()
			onReload = append(onReload, rep.Version)
			mu.Unlock()
			if rep.Version == "2" {
				close(entered)
				<-release
			}
		},
		Observer: tai.ObserverFunc(func(_ context.Context, r tai.Record) {
			mu.Lock()
			records = append(records, r)
			mu.Unlock()
		}),
	}
	l, err := taicel.NewLoader(env, path, opts)
	require.NoError(t, err)

	writeFile(t, path, uniformRules(2))
	first := make(chan error, 1)
	go func() {
		_, err := l.Reload()
		first <- err
	}()
	<-entered // version 2 is in force and being reported
	writeFile(t, path, uniformRules(3))
	changed, err := l.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	close(release)
	require.NoError(t, <-first)
	assert.Equal(t, "3", l.Current().Version())

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"1", "2", "3"}, onReload)
	var got []string
	for _, r := range records {
		got = append(got, r.Decision.Policy+" "+strings.Fields(r.Decision.Reason)[1])
	}
	assert.Equal(t, []string{"v1 1", "v2 2", "v3 3"}, got, "records in load order, each naming its own set")
}

// A rule file written in place can be read when only part of it is
// written. Cut at the end of a rule, that part is a valid, smaller set:
// the Loader has no way to tell, and loads it until the next check reads
// the whole file. That is why a file should be renamed over the old one.
func TestLoaderTakesAFileCutAtARule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, uniformRules(1))
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: -1})
	require.NoError(t, err)

	whole := uniformRules(2)
	lines := strings.SplitAfter(whole, "\n")
	part := strings.Join(lines[:len(lines)-3], "") // two of its four rules
	require.NoError(t, os.WriteFile(path, []byte(part), 0o600))
	changed, err := l.Reload()
	require.NoError(t, err)
	assert.True(t, changed, "the part written is a valid set")
	d, err := l.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Items: 1}})
	require.NoError(t, err)
	assert.Len(t, d.Contributions, 2, "judged with the rules written so far")

	require.NoError(t, os.WriteFile(path, []byte(whole), 0o600))
	changed, err = l.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	d, err = l.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Items: 1}})
	require.NoError(t, err)
	assert.Len(t, d.Contributions, 4)
}

// A file written in place and read cut within a rule's weight is a valid
// set with another weight, as the Loader's doc warns.
func TestLoaderTakesAFileCutWithinAWeight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, uniformRules(1))
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: -1})
	require.NoError(t, err)

	whole := "version: \"2\"\nrules:\n  - name: r\n    expr: 'true'\n    weight: 0.25\n"
	require.NoError(t, os.WriteFile(path, []byte(strings.TrimSuffix(whole, "5\n")), 0o600))
	changed, err := l.Reload()
	require.NoError(t, err)
	assert.True(t, changed, "the part written is a valid set")
	d, err := l.Evaluate(t.Context(), tai.Signal[Order]{})
	require.NoError(t, err)
	assert.InDelta(t, 0.2, d.Score, 1e-9, "judged with the weight cut short")
}

// A panic in OnReload or in the Observer, on the Loader's own goroutine,
// is recovered and logged as a *PanicError; the other callback still
// hears of the load, and later loads are still reported.
func TestLoaderRecoversCallbackPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "rules.yaml")
		writeFile(t, path, orderRules(1, "100.0"))
		env, err := taicel.NewEnv(taicel.Options[Order]{})
		require.NoError(t, err)
		var logs logRecords
		var reps reports
		var mu sync.Mutex
		var observed []string
		l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{
			Interval: time.Second,
			Logger:   slog.New(&logs),
			OnReload: func(rep taicel.Reload) {
				reps.add(rep)
				if rep.Version == "2" {
					panic("OnReload fails on 2")
				}
			},
			Observer: tai.ObserverFunc(func(_ context.Context, r tai.Record) {
				v := strings.Fields(r.Decision.Reason)[1]
				mu.Lock()
				observed = append(observed, v)
				mu.Unlock()
				if v == "3" {
					panic(errors.New("observer fails on 3"))
				}
			}),
		})
		require.NoError(t, err)
		defer func() { assert.NoError(t, l.Shutdown(t.Context())) }()

		for v := 2; v <= 4; v++ {
			writeFile(t, path, orderRules(v, "10.0"))
			time.Sleep(time.Second)
			synctest.Wait()
			assert.Equal(t, fmt.Sprint(v), l.Current().Version())
		}
		var versions []string
		for _, rep := range reps.get() {
			versions = append(versions, rep.Version)
		}
		assert.Equal(t, []string{"1", "2", "3", "4"}, versions, "OnReload after the Observer panicked")
		mu.Lock()
		assert.Equal(t, []string{"1", "2", "3", "4"}, observed, "the Observer after OnReload panicked")
		mu.Unlock()

		panics := logs.panics()
		require.Len(t, panics, 2)
		assert.Equal(t, "OnReload", panics[0].Where)
		assert.Equal(t, "OnReload fails on 2", panics[0].Value)
		assert.NotEmpty(t, panics[0].Stack)
		assert.Equal(t, "Observer", panics[1].Where)
		assert.EqualError(t, panics[1], "taicel: panic in Observer: observer fails on 3")
		assert.EqualError(t, errors.Unwrap(panics[1]), "observer fails on 3")
	})
}

// A panic in OnReload on the goroutine that calls Reload (or NewLoader)
// is recovered too: Reload returns how the load went.
func TestLoaderReloadRecoversCallbackPanics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, orderRules(1, "100.0"))
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	var logs logRecords
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{
		Interval: -1,
		Logger:   slog.New(&logs),
		OnReload: func(taicel.Reload) { panic("always") },
	})
	require.NoError(t, err)
	writeFile(t, path, orderRules(2, "10.0"))
	changed, err := l.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Len(t, logs.panics(), 2)
}

// logRecords is a slog.Handler that keeps the records it handles.
type logRecords struct {
	mu   sync.Mutex
	list []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.list = append(h.list, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

// panics returns the *PanicError of each record that has one.
func (h *logRecords) panics() []*taicel.PanicError {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*taicel.PanicError
	for _, r := range h.list {
		r.Attrs(func(a slog.Attr) bool {
			if pe, ok := a.Value.Any().(*taicel.PanicError); ok {
				out = append(out, pe)
			}
			return true
		})
	}
	return out
}

// A Reload of a file refused before, by the Loader's own check or an
// earlier Reload, answers that refusal again, without reporting it again:
// the caller can tell a refused file from one already loaded.
func TestLoaderReloadAnswersARefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path, l, reps := pollingLoader(t)
		defer func() { assert.NoError(t, l.Shutdown(t.Context())) }()

		writeFile(t, path, "version: 2\nrules: [")
		time.Sleep(time.Second) // the Loader's check refuses it
		synctest.Wait()
		require.Len(t, reps.get(), 2)
		refusal := reps.get()[1].Err
		require.Error(t, refusal)

		changed, err := l.Reload()
		assert.False(t, changed)
		assert.Equal(t, refusal, err, "the refusal of the file as it is")
		changed, err = l.Reload()
		assert.False(t, changed)
		assert.Equal(t, refusal, err)
		assert.Equal(t, "1", l.Current().Version(), "the old set keeps running")

		require.NoError(t, os.Remove(path))
		changed, err = l.Reload()
		assert.False(t, changed)
		assert.ErrorIs(t, err, os.ErrNotExist)
		changed, err = l.Reload()
		assert.False(t, changed)
		assert.ErrorIs(t, err, os.ErrNotExist, "still missing")

		writeFile(t, path, orderRules(3, "100.0"))
		changed, err = l.Reload()
		require.NoError(t, err)
		assert.True(t, changed)
		changed, err = l.Reload()
		assert.NoError(t, err, "the file loaded is not refused")
		assert.False(t, changed)
		assert.Len(t, reps.get(), 4, "each refusal reported once")
	})
}

// TestRuleFileTooLarge: a file larger than MaxRuleFileBytes is refused
// by ParseFile, by NewLoader and by a running Loader, which keeps its set;
// a file of exactly that size is read and loaded.
func TestRuleFileTooLarge(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	// A valid set padded with a comment to one byte over the bound.
	rules := orderRules(2, "100.0")
	over := rules + "#" + strings.Repeat("x", taicel.MaxRuleFileBytes-len(rules))
	writeFile(t, big, over)
	_, err := taicel.ParseFile(big)
	require.ErrorContains(t, err, "MaxRuleFileBytes")

	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	_, err = taicel.NewLoader(env, big, taicel.LoaderOptions{Interval: -1})
	require.ErrorContains(t, err, "MaxRuleFileBytes")

	path := filepath.Join(dir, "rules.yaml")
	writeFile(t, path, orderRules(1, "100.0"))
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: -1})
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Shutdown(t.Context())) }()
	writeFile(t, path, over)
	changed, err := l.Reload()
	assert.False(t, changed)
	require.ErrorContains(t, err, "MaxRuleFileBytes")
	assert.Equal(t, "1", l.Current().Version(), "the old set keeps running")

	// At the bound exactly the file is read and parsed.
	writeFile(t, path, over[:taicel.MaxRuleFileBytes])
	changed, err = l.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, "2", l.Current().Version())
}

// pollingLoader returns a Loader of a rule file of version 1 that checks
// it every second, and the reports of its loads.
func pollingLoader(t *testing.T) (string, *taicel.Loader[Order], *reports) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, orderRules(1, "100.0"))
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	reps := &reports{}
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: time.Second, OnReload: reps.add})
	require.NoError(t, err)
	return path, l, reps
}

// nameTracer keeps the name of every policy span it opens.
type nameTracer struct {
	mu    sync.Mutex
	names []string
}

type nopSpan struct{}

func (nopSpan) End(error)                    {}
func (nopSpan) SpanContext() tai.SpanContext { return tai.SpanContext{} }

func (t *nameTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage == tai.StagePolicy {
		t.mu.Lock()
		t.names = append(t.names, info.Name)
		t.mu.Unlock()
	}
	return ctx, nopSpan{}
}

// A pipeline whose policy is a Loader names its policy span after the
// set in force: a reloaded file that renamed its set names the spans of
// the signals after it with the new name, as their decisions and errors
// are named.
func TestLoaderRenameNamesPolicySpan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, orderRules(1, "10.0"))
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	l, err := taicel.NewLoader(env, path, taicel.LoaderOptions{Interval: -1})
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Shutdown(t.Context())) }()

	tr := &nameTracer{}
	p, err := tai.New[Order, int](l, tai.ActionFunc[Order, int](func(context.Context, tai.Signal[Order]) (int, error) { return 1, nil }),
		tai.WithTracer(tr))
	require.NoError(t, err)
	_, err = p.Process(t.Context(), tai.Signal[Order]{ID: "1", Kind: "order", Payload: Order{Total: 50}})
	var de *tai.DeniedError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "orders", de.Decision.Policy)

	writeFile(t, path, strings.Replace(orderRules(2, "10.0"), "name: orders", "name: payments", 1))
	swapped, err := l.Reload()
	require.NoError(t, err)
	require.True(t, swapped)
	require.Equal(t, "payments", l.Name())
	_, err = p.Process(t.Context(), tai.Signal[Order]{ID: "2", Kind: "order", Payload: Order{Total: 50}})
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "payments", de.Decision.Policy)

	tr.mu.Lock()
	defer tr.mu.Unlock()
	assert.Equal(t, []string{"orders", "payments"}, tr.names)
}
