package localfleet

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// load sends requests through a proxy at a steady rate from a pool of
// workers until stopped, and counts the answers.
type load struct {
	mu       sync.Mutex
	versions map[string]int // 200 answers by version
	failed   []string       // anything else, described
	sent     atomic.Int64
	stop     chan struct{}
	done     sync.WaitGroup
	began    time.Time
	ended    time.Time
}

// startLoad sends about perSecond requests a second to url from workers
// goroutines; stopLoad ends it.
func startLoad(t *testing.T, url string, perSecond, workers int) *load {
	t.Helper()
	c := client(t)
	l := &load{versions: map[string]int{}, stop: make(chan struct{}), began: time.Now()}
	tokens := make(chan struct{})
	l.done.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		defer close(tokens)
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default: // every worker busy: the rate drops rather than queues
				}
			}
		}
	})
	for range workers {
		l.done.Go(func() {
			for range tokens {
				l.sent.Add(1)
				a, err := call(c, url+"/")
				l.mu.Lock()
				switch {
				case err != nil:
					l.failed = append(l.failed, err.Error())
				case a.Code != http.StatusOK:
					l.failed = append(l.failed, http.StatusText(a.Code)+" from "+a.Version)
				default:
					l.versions[a.Version]++
				}
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.stopLoad)
	return l
}

func (l *load) stopLoad() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	l.done.Wait()
	l.ended = time.Now()
}

// answered returns how many 200s version has given so far.
func (l *load) answered(version string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.versions[version]
}

// waitAnswers waits until version has given n more 200s than it had.
func (l *load) waitAnswers(t *testing.T, version string, n int) {
	t.Helper()
	from := l.answered(version)
	require.Eventually(t, func() bool { return l.answered(version) >= from+n }, 20*time.Second, 5*time.Millisecond,
		"%s gave no %d answers", version, n)
}

func TestShiftUnderLoadLosesNoRequest(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{
		Profile: func(service, version, region string) (AppProfile, error) {
			return AppProfile{Latency: 20 * time.Millisecond}, nil
		},
	})
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	l := startLoad(t, proxyURL(t, f, "web", "eu"), 300, 16)
	l.waitAnswers(t, "v1", 100)

	// A rollout to v2 in steps, v1 retired the moment it gets nothing
	// (with its last requests still in flight), then v3 started and
	// rolled back, all while requests keep coming.
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))
	for _, percent := range []float64{10, 25, 50} {
		require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", percent))
		l.waitAnswers(t, "v2", 50)
	}
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 100))
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	l.waitAnswers(t, "v2", 100)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v3", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "v2", "v3", 50))
	l.waitAnswers(t, "v3", 100)
	require.NoError(t, f.Route(ctx, "web", "eu", "v2", "v3", 0))
	require.NoError(t, f.Retire(ctx, "web", "eu", "v3"))
	l.waitAnswers(t, "v2", 100)
	l.stopLoad()

	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Empty(t, l.failed, "no request failed during the shifts")
	total := l.versions["v1"] + l.versions["v2"] + l.versions["v3"]
	assert.Equal(t, int(l.sent.Load()), total+len(l.failed))
	secs := l.ended.Sub(l.began).Seconds()
	t.Logf("%d requests in %.1fs (%.0f/s) through the proxy while shifting: %v, %d failed",
		total, secs, float64(total)/secs, l.versions, len(l.failed))
}

func TestRetireDrainsRequestsInFlight(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{
		Profile: func(service, version, region string) (AppProfile, error) {
			if version == "v1" {
				return AppProfile{Latency: 400 * time.Millisecond}, nil
			}
			return AppProfile{}, nil
		},
	})
	c := client(t)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	url := proxyURL(t, f, "web", "eu")

	const n = 20
	answers := make(chan answer, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			a, err := call(c, url+"/")
			answers <- a
			errs <- err
		}()
	}
	g, err := f.existingRegion("web", "eu")
	require.NoError(t, err)
	g.mu.RLock()
	v1 := g.versions["v1"]
	g.mu.RUnlock()
	require.Eventually(t, func() bool { return v1.inflight.count() == n }, 10*time.Second, time.Millisecond)

	err = f.Retire(ctx, "web", "eu", "v1")
	require.ErrorContains(t, err, "still gets 100% of the traffic; route it away first")
	pids := versionPIDs(t, f, "web", "eu", "v1")
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 100))
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	// Retire returned after the requests in flight were answered.
	assert.Equal(t, 0, v1.inflight.count())
	for range n {
		require.NoError(t, <-errs)
		a := <-answers
		assert.Equal(t, http.StatusOK, a.Code)
		assert.Equal(t, "v1", a.Version)
	}
	for _, pid := range pids {
		assert.False(t, running(pid), "v1's pid %d is stopped", pid)
	}
	assert.Empty(t, f.Instances("web", "eu", "v1"))
	assert.Equal(t, "v2", mustCall(t, c, url+"/").Version)
	_, err = f.Sample(ctx, "web", "eu", "v1", time.Minute)
	assert.ErrorIs(t, err, ErrNotDeployed)
	assert.ErrorIs(t, err, fleet.ErrNoData, "nothing to judge")
	_, err = f.Sample(ctx, "web", "nowhere", "v1", time.Minute)
	assert.ErrorIs(t, err, ErrNotDeployed)
	assert.ErrorIs(t, err, fleet.ErrNoData, "nothing to judge")
}

func TestRetireDrainIsBounded(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{
		Profile: func(service, version, region string) (AppProfile, error) {
			if version == "v1" {
				return AppProfile{Latency: time.Minute}, nil
			}
			return AppProfile{}, nil
		},
		Drain:     50 * time.Millisecond,
		StopGrace: 100 * time.Millisecond,
	})
	c := client(t)
	_, got := requestOnV1(t, f, c)

	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 100))
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	// The request a minute long was cut: v1 was killed after the drain
	// and the grace ran out.
	assert.Equal(t, http.StatusBadGateway, (<-got).Code)
}

func TestIdempotent(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	c := client(t)
	for range 2 {
		require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	}
	addrs := f.Instances("web", "eu", "v1")
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	assert.Equal(t, addrs, f.Instances("web", "eu", "v1"), "no second process")
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))
	for range 2 {
		require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 100))
		require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	}
	// Repeating the route after v1 is gone is fine: it gets nothing.
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 100))
	require.NoError(t, f.Retire(ctx, "web", "eu", "v9"))
	require.NoError(t, f.Retire(ctx, "web", "nowhere", "v1"))
	assert.Equal(t, "v2", mustCall(t, c, proxyURL(t, f, "web", "eu")+"/").Version)
}

func TestDeployRestartsExitedInstances(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{Instances: func(string) int { return 2 }})
	c := client(t)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 2))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	url := proxyURL(t, f, "web", "eu")
	pids := versionPIDs(t, f, "web", "eu", "v1")
	require.Len(t, pids, 2)
	before := f.Instances("web", "eu", "v1")

	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
	g, err := f.existingRegion("web", "eu")
	require.NoError(t, err)
	g.mu.RLock()
	dead := g.versions["v1"].procs[0]
	g.mu.RUnlock()
	<-dead.done
	// Its port is free for any process to take: it is no instance to
	// scrape.
	assert.Equal(t, before[1:], f.Instances("web", "eu", "v1"), "the dead instance is not listed")
	// The proxy sends nothing to the dead instance while another runs.
	for range 4 {
		a := mustCall(t, c, url+"/")
		assert.Equal(t, http.StatusOK, a.Code)
		assert.Equal(t, before[1], a.Instance)
	}

	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 2))
	after := f.Instances("web", "eu", "v1")
	require.Len(t, after, 2)
	assert.Equal(t, before[1], after[0], "the running one is kept")
	assert.NotEqual(t, before[0], after[1], "the dead one is replaced")
	seen := map[string]bool{}
	for range 4 {
		seen[mustCall(t, c, url+"/").Instance] = true
	}
	assert.Equal(t, map[string]bool{after[0]: true, after[1]: true}, seen)
}

func TestShutdownStopsEverything(t *testing.T) {
	ctx := t.Context()
	f, err := New(Options{Binary: binary})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Shutdown(context.Background()) })
	c := client(t)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))
	require.NoError(t, f.Deploy(ctx, "api", "us", "v1", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 50))
	urls := []string{proxyURL(t, f, "web", "eu"), proxyURL(t, f, "api", "us")}
	assert.Equal(t, http.StatusOK, mustCall(t, c, urls[0]+"/").Code)
	pids := pidsOf(f)
	require.Len(t, pids, 3)

	require.NoError(t, f.Shutdown(ctx))
	for _, pid := range pids {
		assert.False(t, running(pid), "pid %d", pid)
	}
	for _, u := range urls {
		_, err := net.DialTimeout("tcp", u[len("http://"):], time.Second)
		assert.Error(t, err, "proxy %s is closed", u)
	}
	require.NoError(t, f.Shutdown(ctx), "a second Shutdown")
	assert.ErrorIs(t, f.Deploy(ctx, "web", "eu", "v3", 1), ErrClosed)
	assert.ErrorIs(t, f.Route(ctx, "web", "eu", "v1", "v2", 10), ErrClosed)
	assert.ErrorIs(t, f.Retire(ctx, "web", "eu", "v1"), ErrClosed)
	_, err = f.Sample(ctx, "web", "eu", "v1", time.Minute)
	assert.ErrorIs(t, err, ErrClosed)
	_, ok := f.ProxyURL("web", "eu")
	assert.False(t, ok)
}

func TestNewRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(notExec, []byte("x"), 0o644))
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "Options.Binary is required"},
		{Options{Binary: filepath.Join(dir, "missing")}, "no such file"},
		{Options{Binary: dir}, "is not an executable file"},
		{Options{Binary: notExec}, "is not an executable file"},
		{Options{Binary: binary, Window: -time.Second}, "Options.Window -1s is negative"},
		{Options{Binary: binary, Window: time.Millisecond}, "Options.Window 1ms is less than a second"},
		{Options{Binary: binary, StopGrace: -1}, "Options.StopGrace"},
		{Options{Binary: binary, MemoryLimit: -1}, "Options.MemoryLimit -1"},
		{Options{Binary: binary, MemoryLimit: math.NaN()}, "Options.MemoryLimit NaN"},
	} {
		_, err := New(tc.o)
		require.Error(t, err, "%+v", tc.o)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestDeployRejectsBadInput(t *testing.T) {
	ctx := t.Context()
	bad := errors.New("no such version")
	f := newFleet(t, Options{
		Profile: func(service, version, region string) (AppProfile, error) {
			switch version {
			case "unknown":
				return AppProfile{}, bad
			case "broken":
				return AppProfile{ErrorRate: 2}, nil
			}
			return AppProfile{}, nil
		},
		Instances: func(service string) int {
			if service == "none" {
				return 0
			}
			return 1
		},
	})
	assert.ErrorContains(t, f.Deploy(ctx, "", "eu", "v1", 1), "must not be empty")
	assert.ErrorContains(t, f.Deploy(ctx, "web", "eu", "v1", 0), "instances 0 is less than 1")
	assert.ErrorContains(t, f.Deploy(ctx, "none", "eu", "v1", 1), `Options.Instances("none") is 0`)
	assert.ErrorIs(t, f.Deploy(ctx, "web", "eu", "unknown", 1), bad)
	assert.ErrorContains(t, f.Deploy(ctx, "web", "eu", "broken", 1), "ErrorRate 2 is not in [0, 1]")
	assert.Empty(t, pidsOf(f), "nothing started")

	assert.ErrorIs(t, f.Route(ctx, "web", "eu", "", "v1", 100), ErrNotDeployed)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	for _, percent := range []float64{-1, 100.5, math.NaN()} {
		assert.ErrorContains(t, f.Route(ctx, "web", "eu", "v1", "v2", percent), "is not in [0, 100]")
	}
	assert.ErrorIs(t, f.Route(ctx, "web", "eu", "v1", "v2", 10), ErrNotDeployed, "v2 is not deployed")
	assert.ErrorIs(t, f.Route(ctx, "web", "eu", "v0", "v1", 100), nil, "v0 gets nothing, so need not run")
	assert.ErrorContains(t, f.Route(ctx, "web", "eu", "v1", "", 10), "must not be empty")
	assert.ErrorContains(t, f.Retire(ctx, "web", "eu", ""), "must not be empty")
}

// script writes an executable shell script into a temp dir.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	return path
}

func TestDeployFailsOnABadBinary(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name, script, want string
	}{
		{"exits", "echo broken >&2; exit 3", "no address printed (exit status 3: broken)"},
		{"says something else", "echo hello; exec sleep 60", `first line of output is "hello"`},
		{"never healthy", "echo listening on 127.0.0.1:1; exec sleep 60", "not healthy within 300ms"},
		{"silent", "exec sleep 60", "no address within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New(Options{Binary: script(t, tc.script), StartTimeout: 300 * time.Millisecond, StopGrace: time.Second})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, f.Shutdown(context.Background())) })
			err = f.Deploy(ctx, "web", "eu", "v1", 1)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Empty(t, f.Instances("web", "eu", "v1"))
			_, ok := f.ProxyURL("web", "eu")
			assert.False(t, ok, "no proxy to curl: nothing is deployed")
		})
	}
}

// TestNoProxyURLAfterAFailedFirstDeploy: a first Deploy that fails leaves
// nothing to curl; ProxyURL says so until a version is deployed.
func TestNoProxyURLAfterAFailedFirstDeploy(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{Profile: func(service, version, region string) (AppProfile, error) {
		if version == "bad" {
			return AppProfile{}, errors.New("no profile")
		}
		return AppProfile{}, nil
	}})
	require.Error(t, f.Deploy(ctx, "web", "eu", "bad", 1))
	_, ok := f.ProxyURL("web", "eu")
	assert.False(t, ok, "no proxy after a failed first deploy")

	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	assert.Equal(t, "v1", mustCall(t, client(t), proxyURL(t, f, "web", "eu")+"/").Version)
}

func TestStopReachesTheProcessGroup(t *testing.T) {
	// A script that starts a child and waits for it, without exec: the
	// child must end with it.
	pidFile := filepath.Join(t.TempDir(), "child")
	f, err := New(Options{
		Binary:       script(t, "sleep 60 >/dev/null 2>&1 & echo $! > "+pidFile+"; wait"),
		StartTimeout: 300 * time.Millisecond,
		StopGrace:    time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Shutdown(context.Background())) })
	require.Error(t, f.Deploy(t.Context(), "web", "eu", "v1", 1))
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	// The child is the script's, not ours, so it may linger as a zombie
	// until init reaps it; either way it is not sleeping any more.
	require.Eventually(t, func() bool { return !alive(child) }, 5*time.Second, 10*time.Millisecond, "child %d still runs", child)
}

// alive reports whether pid runs (exists and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && !strings.HasPrefix(string(b[i+1:]), " Z")
}

func TestDeployStopsWhenCanceled(t *testing.T) {
	f, err := New(Options{Binary: script(t, "echo $$ >&2; exec sleep 60"), StopGrace: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Shutdown(context.Background())) })
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err = f.Deploy(ctx, "web", "eu", "v1", 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "signal: terminated", "the process was stopped")
	assert.Contains(t, err.Error(), "no address before the deploy's context ended")
	assert.NotContains(t, err.Error(), "within 10s", "the start timeout did not run out")
}

// TestDeployCanceledWhileStarting: a deploy whose context ends while an
// instance is not yet healthy says so, not that the start timeout ran out.
func TestDeployCanceledWhileStarting(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The instance's /healthz: the deploy is canceled while it waits for
	// a 200.
	healthz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(healthz.Close)
	f, err := New(Options{
		Binary:    script(t, "echo listening on "+strings.TrimPrefix(healthz.URL, "http://")+"; exec sleep 60"),
		StopGrace: time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Shutdown(context.Background())) })
	err = f.Deploy(ctx, "web", "eu", "v1", 1)
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "not healthy before the deploy's context ended")
	assert.NotContains(t, err.Error(), "within 10s")
}

// TestShutdownDuringRetireDrain: Shutdown with a context that has ended
// does not wait out the drain of a Retire in progress (an hour here): it
// closes the proxy, which ends the requests the Retire waits for.
func TestShutdownDuringRetireDrain(t *testing.T) {
	f, err := New(Options{
		Binary: binary,
		Profile: func(service, version, region string) (AppProfile, error) {
			if version == "v1" {
				return AppProfile{Latency: time.Hour}, nil
			}
			return AppProfile{}, nil
		},
		Drain:     time.Hour,
		StopGrace: time.Second,
	})
	require.NoError(t, err)
	ctx := t.Context()
	c := client(t)
	c.Timeout = 0 // the request ends when the proxy closes, not before
	v1, got := requestOnV1(t, f, c)
	pids := pidsOf(f)
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 100))
	retired := make(chan error, 1)
	go func() { retired <- f.Retire(ctx, "web", "eu", "v1") }()
	require.Eventually(t, func() bool { // the Retire waits for the request
		v1.inflight.mu.Lock()
		defer v1.inflight.mu.Unlock()
		return v1.inflight.idle != nil
	}, 10*time.Second, time.Millisecond)

	ended, cancel := context.WithCancel(ctx)
	cancel()
	shut := make(chan error, 1)
	go func() { shut <- f.Shutdown(ended) }()
	select {
	case err := <-shut:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(time.Minute): // a guard against a hang only
		t.Fatal("Shutdown waits for the drain of a Retire in progress")
	}
	require.NoError(t, <-retired)
	<-got
	for _, pid := range pids {
		assert.False(t, running(pid), "pid %d", pid)
	}
}

// requestOnV1 deploys v1 and v2 of web in eu, routes every request to v1
// and sends one through the proxy with c; it returns once v1 handles it,
// with v1 and the request's answer to come.
func requestOnV1(t *testing.T, f *Fleet, c *http.Client) (*release, <-chan answer) {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	url := proxyURL(t, f, "web", "eu")
	got := make(chan answer, 1)
	go func() {
		a, _ := call(c, url+"/")
		got <- a
	}()
	g, err := f.existingRegion("web", "eu")
	require.NoError(t, err)
	g.mu.RLock()
	v1 := g.versions["v1"]
	g.mu.RUnlock()
	require.Eventually(t, func() bool { return v1.inflight.count() == 1 }, 10*time.Second, time.Millisecond)
	return v1, got
}

// TestInstanceOutlivesTheThreadThatDeployedIt: Linux sends a process's
// parent-death signal when the thread that started it ends, not the
// process. A Deploy from a goroutine locked to its thread, which ends with
// the goroutine, must leave the instance running.
func TestInstanceOutlivesTheThreadThatDeployedIt(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	var tid int
	for tid == 0 {
		type result struct {
			tid int
			err error
		}
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			if id := syscall.Gettid(); id != os.Getpid() {
				// Never unlocked: the thread ends with this goroutine.
				done <- result{id, f.Deploy(ctx, "web", "eu", "v1", 1)}
				return
			}
			// The main thread is not ended, so it would prove nothing:
			// try again on another.
			runtime.UnlockOSThread()
			done <- result{}
		}()
		r := <-done
		require.NoError(t, r.err)
		tid = r.tid
	}
	require.Eventually(t, func() bool {
		_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
		return errors.Is(err, fs.ErrNotExist)
	}, 10*time.Second, 10*time.Millisecond, "thread %d has not ended", tid)

	// The signal was sent before the thread left /proc: a killed instance
	// could not answer now.
	addrs := f.Instances("web", "eu", "v1")
	require.Len(t, addrs, 1)
	resp, err := client(t).Get("http://" + addrs[0] + "/healthz")
	require.NoError(t, err, "the instance was killed with the thread that started it")
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	for _, pid := range versionPIDs(t, f, "web", "eu", "v1") {
		assert.True(t, alive(pid), "pid %d", pid)
	}
}

// TestFailedFirstDeployClosesTheProxy: a first Deploy that fails leaves no
// proxy listening, since nothing is deployed for it to send requests to.
func TestFailedFirstDeployClosesTheProxy(t *testing.T) {
	var (
		f   *Fleet
		url string
	)
	f = newFleet(t, Options{Profile: func(service, version, region string) (AppProfile, error) {
		g, err := f.existingRegion(service, region)
		if err != nil {
			return AppProfile{}, err
		}
		url = g.url
		return AppProfile{}, errors.New("no profile")
	}})
	require.Error(t, f.Deploy(t.Context(), "web", "eu", "v1", 1))
	require.NotEmpty(t, url, "the deploy started a proxy")
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err == nil {
		conn.Close()
	}
	assert.Error(t, err, "the proxy %s still listens", url)
	_, err = f.existingRegion("web", "eu")
	assert.ErrorIs(t, err, ErrNotDeployed)
}

// TestFailedFirstDeployKeepsTheProxyForADeployWaiting: a Deploy waiting
// for the region while the first fails finds the proxy open, and serves
// through it.
func TestFailedFirstDeployKeepsTheProxyForADeployWaiting(t *testing.T) {
	ctx := t.Context()
	var f *Fleet
	waiting := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		g := f.regions[regionKey{"web", "eu"}]
		return g != nil && g.deploys == 2
	}
	deploying := make(chan struct{})
	f = newFleet(t, Options{Profile: func(service, version, region string) (AppProfile, error) {
		if version == "bad" {
			close(deploying)
			// Fail once the second Deploy holds the region, waiting for
			// this one.
			assert.Eventually(t, waiting, 10*time.Second, time.Millisecond)
			return AppProfile{}, errors.New("no profile")
		}
		return AppProfile{}, nil
	}})
	failed := make(chan error, 1)
	go func() { failed <- f.Deploy(ctx, "web", "eu", "bad", 1) }()
	<-deploying
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.Error(t, <-failed)
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	assert.Equal(t, "v1", mustCall(t, client(t), proxyURL(t, f, "web", "eu")+"/").Version)
}

// TestStopEndsWhatAnExitedInstanceLeft: an instance whose process exited
// leaves nothing running of what it started in its process group.
func TestStopEndsWhatAnExitedInstanceLeft(t *testing.T) {
	ctx := t.Context()
	pidFile := filepath.Join(t.TempDir(), "child")
	// The instance starts a child in its group, then becomes the demoapp.
	f := newFleet(t, Options{})
	f.o.Binary = script(t, "sleep 60 >/dev/null 2>&1 & echo $! > "+pidFile+"; exec "+binary+` "$@"`)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	require.True(t, alive(child))

	g, err := f.existingRegion("web", "eu")
	require.NoError(t, err)
	g.mu.RLock()
	pr := g.versions["v1"].procs[0]
	g.mu.RUnlock()
	require.NoError(t, syscall.Kill(pr.pid, syscall.SIGKILL))
	<-pr.done

	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	require.Eventually(t, func() bool { return !alive(child) }, 5*time.Second, 10*time.Millisecond, "child %d still runs", child)
}

// TestStopSignalsNoGroupOnceReaped: once the process was reaped its pid
// may be another process's, even another group's leader; stop signals
// nothing then.
func TestStopSignalsNoGroupOnceReaped(t *testing.T) {
	f := newFleet(t, Options{StopGrace: time.Second})
	// A group leader that took the reaped instance's pid.
	other := exec.Command("sleep", "60")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, other.Start())
	ended := make(chan struct{})
	go func() {
		_ = other.Wait()
		close(ended)
	}()
	t.Cleanup(func() {
		_ = other.Process.Kill()
		<-ended
	})
	// Reaped: its waiter has not yet said so by closing done.
	reaped := &process{pid: other.Process.Pid, addr: "127.0.0.1:1", done: make(chan struct{})}
	t.Cleanup(func() { close(reaped.done) })

	stopped := make(chan struct{})
	go func() {
		f.stop(reaped, f.log)
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ended:
		t.Fatalf("stop signalled the group of pid %d, no longer the instance's", other.Process.Pid)
	}
	assert.True(t, alive(other.Process.Pid))
}

// TestOnExit: OnExit hears of every process that exits, crashed or
// stopped, once Instances no longer lists it, and Shutdown waits for it.
func TestOnExit(t *testing.T) {
	ctx := t.Context()
	type exit struct {
		service, region, version string
		listed                   int
	}
	exits := make(chan exit, 4)
	var f *Fleet
	f, err := New(Options{Binary: binary, OnExit: func(service, region, version string) {
		exits <- exit{service, region, version, len(f.Instances(service, region, version))}
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Shutdown(context.Background()) })
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))

	pids := versionPIDs(t, f, "web", "eu", "v1")
	require.Len(t, pids, 1)
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
	assert.Equal(t, exit{"web", "eu", "v1", 0}, <-exits, "a crash")

	require.NoError(t, f.Shutdown(ctx))
	select {
	case e := <-exits:
		assert.Equal(t, exit{"web", "eu", "v2", 0}, e, "a stop")
	default:
		t.Fatal("Shutdown returned before OnExit was called")
	}
}

// TestRetiringTheLastVersionClosesTheProxy: once nothing is deployed in a
// region its proxy no longer listens; a later Deploy starts another.
func TestRetiringTheLastVersionClosesTheProxy(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	url := proxyURL(t, f, "web", "eu")
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err == nil {
		conn.Close()
	}
	assert.Error(t, err, "the proxy %s still listens", url)
	_, ok := f.ProxyURL("web", "eu")
	assert.False(t, ok)
	_, err = f.existingRegion("web", "eu")
	assert.ErrorIs(t, err, ErrNotDeployed)
	assert.ErrorIs(t, f.Route(ctx, "web", "eu", "", "v1", 100), ErrNotDeployed)
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))

	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v2", 100))
	assert.Equal(t, "v2", mustCall(t, client(t), proxyURL(t, f, "web", "eu")+"/").Version)
}

// hookHandler calls fn on each record whose message is msg.
type hookHandler struct {
	msg string
	fn  func()
}

func (h hookHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h hookHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.fn()
	}
	return nil
}
func (h hookHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h hookHandler) WithGroup(string) slog.Handler      { return h }

// TestRetiringTheLastVersionKeepsTheProxyForADeployWaiting: a Deploy
// waiting for the region while its last version is retired finds the proxy
// open, at the same URL, and serves through it.
func TestRetiringTheLastVersionKeepsTheProxyForADeployWaiting(t *testing.T) {
	ctx := t.Context()
	var f *Fleet
	deployed := make(chan error, 1)
	waiting := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		g := f.regions[regionKey{"web", "eu"}]
		return g != nil && g.deploys == 1
	}
	// v1 is stopped, and Retire still holds the region: a Deploy comes
	// and waits for it.
	f = newFleet(t, Options{Logger: slog.New(hookHandler{msg: "retired", fn: func() {
		go func() { deployed <- f.Deploy(ctx, "web", "eu", "v2", 1) }()
		assert.Eventually(t, waiting, 10*time.Second, time.Millisecond)
	}})})
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	url := proxyURL(t, f, "web", "eu")
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	require.NoError(t, <-deployed)
	assert.Equal(t, url, proxyURL(t, f, "web", "eu"))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v2", 100))
	assert.Equal(t, "v2", mustCall(t, client(t), url+"/").Version)
}

// A first deployment rolled back routes nothing: the proxy answers 503
// and the version, no longer given traffic, can be retired.
func TestRouteNothing(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	c := client(t)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	url := proxyURL(t, f, "web", "eu")
	a, err := call(c, url+"/")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, a.Code)

	require.ErrorContains(t, f.Retire(ctx, "web", "eu", "v1"), "route it away first")
	require.NoError(t, f.Route(ctx, "web", "eu", "", "", 0))
	a, err = call(c, url+"/")
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, a.Code)
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	assert.NoError(t, f.Route(ctx, "web", "eu", "", "", 0), "nothing deployed there: nothing to route")
}

// TestExitedInstanceWhoseLeftoverKeepsItsOutput: an instance started a
// process that left its group (setsid) and holds the instance's output
// open. Once the instance exits, the fleet still reaps it and says it
// ended, and Retire returns, instead of waiting for that output to close.
func TestExitedInstanceWhoseLeftoverKeepsItsOutput(t *testing.T) {
	setsid, err := exec.LookPath("setsid")
	if err != nil {
		t.Skip("setsid not found")
	}
	ctx := t.Context()
	pidFile := filepath.Join(t.TempDir(), "escaped")
	f := newFleet(t, Options{StopGrace: time.Second})
	f.o.Binary = script(t, setsid+` sh -c 'echo $$ > `+pidFile+`.new && mv `+pidFile+`.new `+pidFile+`; exec sleep 60' & exec `+binary+` "$@"`)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	var escaped int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		escaped, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	t.Cleanup(func() { _ = syscall.Kill(escaped, syscall.SIGKILL) })

	g, err := f.existingRegion("web", "eu")
	require.NoError(t, err)
	g.mu.RLock()
	pr := g.versions["v1"].procs[0]
	g.mu.RUnlock()
	require.NoError(t, syscall.Kill(pr.pid, syscall.SIGKILL))
	select {
	case <-pr.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the instance (pid %d) exited, but the fleet still waits for the output pid %d holds", pr.pid, escaped)
	}
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	assert.True(t, alive(escaped), "a process outside the group is not the fleet's to stop")
}

// TestNoRequestToTheAddressOfAnExitedInstance: once every instance of a
// version has exited, the proxy answers 502 itself, and counts it against
// the version, rather than send the request to an address another process
// may listen on by now.
func TestNoRequestToTheAddressOfAnExitedInstance(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	c := client(t)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	url := proxyURL(t, f, "web", "eu")
	addr := f.Instances("web", "eu", "v1")[0]
	g, err := f.existingRegion("web", "eu")
	require.NoError(t, err)
	g.mu.RLock()
	dead := g.versions["v1"].procs[0]
	g.mu.RUnlock()
	require.NoError(t, syscall.Kill(dead.pid, syscall.SIGKILL))
	<-dead.done

	// Another process takes the port the instance listened on.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the exited instance's port %s was taken before the test could take it: %v", addr, err)
	}
	impostor := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"version":"impostor"}`))
	})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = impostor.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = impostor.Close()
		<-served
	})

	for range 3 {
		a := mustCall(t, c, url+"/")
		assert.Equal(t, http.StatusBadGateway, a.Code)
		assert.Empty(t, a.Version, "answered by whatever holds the port now")
	}
	s, err := f.Sample(ctx, "web", "eu", "v1", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 3.0, s.Requests)
	assert.Equal(t, 1.0, s.ErrorRate)
}
