package localfleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// binary is the demoapp, built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "localfleet-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	binary, err = Build(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// newFleet returns a fleet running the demoapp with o's other fields; the
// test's cleanup shuts it down and checks that none of its processes is
// left.
func newFleet(t *testing.T, o Options) *Fleet {
	t.Helper()
	o.Binary = binary
	f, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() {
		pids := pidsOf(f)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, f.Shutdown(ctx))
		for _, pid := range pids {
			assert.False(t, running(pid), "pid %d still runs after Shutdown", pid)
		}
	})
	return f
}

// pidsOf returns the pids of the fleet's processes.
func pidsOf(f *Fleet) []int {
	var pids []int
	for _, pr := range f.processes() {
		pids = append(pids, pr.pid)
	}
	return pids
}

// running reports whether a process pid exists.
func running(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// versionPIDs returns the pids of version's processes of service in region.
func versionPIDs(t *testing.T, f *Fleet, service, region, version string) []int {
	t.Helper()
	g, err := f.existingRegion(service, region)
	require.NoError(t, err)
	g.mu.RLock()
	defer g.mu.RUnlock()
	var pids []int
	if v := g.versions[version]; v != nil {
		for _, pr := range v.procs {
			pids = append(pids, pr.pid)
		}
	}
	return pids
}

// client is an HTTP client whose connections the test's cleanup closes.
func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// answer is a demoapp's reply through a proxy.
type answer struct {
	Code     int
	Version  string `json:"version"`
	Service  string `json:"service"`
	Region   string `json:"region"`
	Instance string `json:"instance"`
}

func call(c *http.Client, url string) (answer, error) {
	resp, err := c.Get(url)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{Code: resp.StatusCode}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &a); err != nil {
			return a, fmt.Errorf("%s: %w", body, err)
		}
	}
	return a, nil
}

func mustCall(t *testing.T, c *http.Client, url string) answer {
	t.Helper()
	a, err := call(c, url)
	require.NoError(t, err)
	return a
}

func proxyURL(t *testing.T, f *Fleet, service, region string) string {
	t.Helper()
	u, ok := f.ProxyURL(service, region)
	require.True(t, ok, "no proxy for %s in %s", service, region)
	return u
}

func TestDeployRouteAndSplit(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	c := client(t)

	_, ok := f.ProxyURL("web", "eu")
	assert.False(t, ok, "no proxy before a deploy")
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	url := proxyURL(t, f, "web", "eu")
	assert.True(t, strings.HasPrefix(url, "http://127.0.0.1:"), url)
	assert.Equal(t, http.StatusServiceUnavailable, mustCall(t, c, url).Code, "nothing routed yet")

	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 0)) // a first deployment: all to next
	for range 5 {
		a := mustCall(t, c, url+"/")
		assert.Equal(t, answer{Code: 200, Version: "v1", Service: "web", Region: "eu", Instance: f.Instances("web", "eu", "v1")[0]}, a)
	}

	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 25))
	var seq strings.Builder
	counts := map[string]int{}
	for range 400 {
		a := mustCall(t, c, url+"/")
		require.Equal(t, 200, a.Code)
		counts[a.Version]++
		seq.WriteString(map[string]string{"v1": "S", "v2": "N"}[a.Version])
	}
	assert.Equal(t, map[string]int{"v1": 300, "v2": 100}, counts, "exactly a quarter to v2")
	assert.Equal(t, strings.Repeat("SSNS", 100), seq.String(), "spread evenly")

	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 100))
	for range 5 {
		assert.Equal(t, "v2", mustCall(t, c, url+"/").Version)
	}
	// Each version's instance answers directly too, for Prometheus.
	for _, v := range []string{"v1", "v2"} {
		addrs := f.Instances("web", "eu", v)
		require.Len(t, addrs, 1)
		assert.Equal(t, v, mustCall(t, c, "http://"+addrs[0]+"/").Version)
	}
	assert.Empty(t, f.Instances("web", "eu", "v9"))
	assert.Empty(t, f.Instances("web", "us", "v1"))
}

// TestPreviewOfAVersionWithNoShare: a version deployed that the route
// gives no share of the traffic (a blue-green deployment's new set while
// it is analysed) answers the requests that name it in PreviewHeader,
// and Sample counts them: with none, its analysis had no data for as
// long as its preview lasted, and every blue-green deployment on local
// processes was rolled back. Requests without the header follow the
// route; one naming a version not deployed is answered 404.
func TestPreviewOfAVersionWithNoShare(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	c := client(t)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	url := proxyURL(t, f, "web", "eu")
	assert.Empty(t, f.Previews("web", "eu"), "v1 takes all the traffic")
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 0))
	assert.Equal(t, []string{"v2"}, f.Previews("web", "eu"))
	assert.Empty(t, f.Previews("web", "us"))

	get := func(version string) answer {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
		require.NoError(t, err)
		if version != "" {
			req.Header.Set(PreviewHeader, version)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		a := answer{Code: resp.StatusCode}
		if resp.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
		}
		return a
	}
	for range 4 {
		assert.Equal(t, "v1", get("").Version, "the users' traffic follows the route")
		assert.Equal(t, "v2", get("v2").Version)
	}
	assert.Equal(t, "v1", get("v1").Version)
	assert.Equal(t, http.StatusNotFound, get("v9").Code)

	s, err := f.Sample(ctx, "web", "eu", "v2", time.Minute)
	require.NoError(t, err, "the preview's requests are counted")
	assert.InDelta(t, 4, s.Requests, 0.001)
	s, err = f.Sample(ctx, "web", "eu", "v1", time.Minute)
	require.NoError(t, err)
	assert.InDelta(t, 5, s.Requests, 0.001)

	// Routed all to v2, v1 is the one with no share, until retired.
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 100))
	assert.Equal(t, []string{"v1"}, f.Previews("web", "eu"))
	require.NoError(t, f.Retire(ctx, "web", "eu", "v1"))
	assert.Empty(t, f.Previews("web", "eu"))
	assert.Equal(t, http.StatusNotFound, get("v1").Code, "retired")
}

func TestRegionsAreSeparate(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	c := client(t)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	require.NoError(t, f.Deploy(ctx, "web", "us", "v2", 1))
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))
	require.NoError(t, f.Route(ctx, "web", "us", "", "v2", 100))
	eu, us := proxyURL(t, f, "web", "eu"), proxyURL(t, f, "web", "us")
	assert.NotEqual(t, eu, us)
	assert.Equal(t, answer{Code: 200, Service: "web", Region: "eu", Version: "v1", Instance: f.Instances("web", "eu", "v1")[0]}, mustCall(t, c, eu))
	assert.Equal(t, answer{Code: 200, Service: "web", Region: "us", Version: "v2", Instance: f.Instances("web", "us", "v2")[0]}, mustCall(t, c, us))
	err := f.Route(ctx, "web", "eu", "v1", "v2", 10)
	assert.ErrorIs(t, err, ErrNotDeployed, "v2 runs in us, not eu")
}

func TestSampleReportsProfile(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{
		Profile: func(service, version, region string) (AppProfile, error) {
			if version == "v2" {
				return AppProfile{ErrorRate: 0.2, Latency: 20 * time.Millisecond}, nil
			}
			return AppProfile{}, nil
		},
		Instances: func(string) int { return 2 },
	})
	c := client(t)
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 5))
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v2", 2))
	assert.Len(t, f.Instances("web", "eu", "v1"), 2, "capped at Options.Instances")
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 50))

	_, err := f.Sample(ctx, "web", "eu", "v2", 10*time.Second)
	require.ErrorIs(t, err, fleet.ErrNoData, "no traffic yet")

	url := proxyURL(t, f, "web", "eu")
	codes := map[string]map[int]int{"v1": {}, "v2": {}}
	for range 200 {
		a := mustCall(t, c, url+"/")
		codes[a.Version][a.Code]++
	}
	assert.Equal(t, map[string]map[int]int{"v1": {200: 100}, "v2": {200: 80, 500: 20}}, codes)

	s, err := f.Sample(ctx, "web", "eu", "v2", 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, 100.0, s.Requests)
	assert.Equal(t, 0.2, s.ErrorRate)
	// At least the app's delay; how much more depends on the machine.
	assert.GreaterOrEqual(t, s.P99, 20*time.Millisecond)
	assert.Less(t, s.P99, 5*time.Second)
	assert.WithinDuration(t, time.Now(), s.Time, 5*time.Second)
	assertResources(t, s, versionPIDs(t, f, "web", "eu", "v2"))

	s, err = f.Sample(ctx, "web", "eu", "v1", 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, 100.0, s.Requests)
	assert.Equal(t, 0.0, s.ErrorRate)
	assert.Greater(t, s.P99, time.Duration(0))

	_, err = f.Sample(ctx, "web", "eu", "v3", 10*time.Second)
	assert.ErrorIs(t, err, ErrNotDeployed)
	_, err = f.Sample(ctx, "web", "us", "v1", 10*time.Second)
	assert.ErrorIs(t, err, ErrNotDeployed)
	_, err = f.Sample(ctx, "web", "eu", "v1", time.Hour)
	assert.ErrorContains(t, err, "sample window 1h0m0s is not in (0, 5m0s]")
	_, err = f.Sample(ctx, "web", "eu", "v1", 0)
	assert.Error(t, err)
}

// assertResources checks a sample's CPU and memory against what /proc says
// of the processes.
func assertResources(t *testing.T, s fleet.Sample, pids []int) {
	t.Helper()
	var cpu, rss float64
	for _, pid := range pids {
		c, err := cpuSeconds(pid)
		require.NoError(t, err)
		cpu += c
		r, err := residentBytes(pid)
		require.NoError(t, err)
		rss += r
	}
	assert.Greater(t, s.Memory, 0.0)
	assert.LessOrEqual(t, s.Memory, 1.0)
	// Memory is the mean RSS over 256 MiB; RSS moves a little between
	// the two readings.
	assert.InDelta(t, rss/float64(len(pids))/(256<<20), s.Memory, 0.01)
	assert.GreaterOrEqual(t, s.CPU, 0.0)
	assert.LessOrEqual(t, s.CPU, 1.0)
	if cpu > 0 {
		assert.Greater(t, s.CPU, 0.0, "the processes used %vs of CPU", cpu)
	}
}

func TestCPUAndMemoryFromProc(t *testing.T) {
	pid := os.Getpid()
	pr := &process{pid: pid, started: time.Now()}
	pr.cpu.readings = make([]cpuReading, 0, 4)
	before, err := cpuSeconds(pid)
	require.NoError(t, err)
	pr.cpu.add(cpuReading{at: time.Now(), seconds: before})
	// Burn CPU until /proc shows at least 100ms more.
	for x := 0.0; ; x++ {
		if int(x)%100000 == 0 {
			used, err := cpuSeconds(pid)
			require.NoError(t, err)
			if used-before >= 0.1 {
				break
			}
		}
		_ = math.Sqrt(x)
	}
	share, err := pr.cpuShare(time.Now(), time.Hour)
	require.NoError(t, err)
	assert.Greater(t, share, 0.0)

	rss, err := residentBytes(pid)
	require.NoError(t, err)
	assert.Greater(t, rss, float64(1<<20), "a Go test binary has more than 1 MiB resident")

	_, err = cpuSeconds(math.MaxInt32)
	assert.Error(t, err, "no such process")
	_, err = residentBytes(math.MaxInt32)
	assert.Error(t, err)
}

func TestCPUHistory(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	h := cpuHistory{readings: make([]cpuReading, 0, 3)}
	_, ok := h.since(t0)
	assert.False(t, ok)
	for i := range 5 {
		h.add(cpuReading{at: t0.Add(time.Duration(i) * time.Second), seconds: float64(i)})
	}
	assert.Len(t, h.readings, 3, "keeps its capacity's worth")
	r, ok := h.since(t0.Add(3500 * time.Millisecond))
	assert.True(t, ok)
	assert.Equal(t, 3.0, r.seconds)
	_, ok = h.since(t0.Add(time.Second))
	assert.False(t, ok, "older than kept")
}

func TestSchedule(t *testing.T) {
	for _, tc := range []struct {
		percent float64
		want    string // one period, S for stable, N for next
	}{
		{0, "S"},
		{100, "N"},
		{25, "SSNS"},
		{50, "SN"},
		{75, "NSNN"},
		{10, "SSSSSNSSSS"},
	} {
		r := newRoute("a", "b", tc.percent)
		var got strings.Builder
		for _, i := range r.schedule {
			got.WriteByte("SN"[i])
		}
		assert.Equal(t, tc.want, got.String(), "%v%%", tc.percent)
	}
	// Any share is exact over a period, and never bunched: no run of
	// either version is longer than its share calls for.
	for _, percent := range []float64{0.01, 1, 12.5, 33.33, 66.67, 99.99} {
		r := newRoute("a", "b", percent)
		next, run, longest := 0, 0, 0
		for i, v := range r.schedule {
			if v == 1 {
				next++
				run = 0
				continue
			}
			if i > 0 && r.schedule[i-1] == 0 {
				run++
			} else {
				run = 1
			}
			longest = max(longest, run)
		}
		assert.InDelta(t, percent/100, float64(next)/float64(len(r.schedule)), 1e-9, "%v%%", percent)
		if percent >= 1 {
			assert.LessOrEqual(t, longest, int(math.Ceil(100/percent)), "%v%%: stable ran %d in a row", percent, longest)
		}
	}
	assert.Equal(t, 0, newRoute("a", "b", 0.004).weights[1], "rounded to a hundredth of a percent")
}

// An instance that has exited counts as using no CPU and no memory, even
// once the kernel has given its pid to another process.
func TestSampleSkipsExitedInstances(t *testing.T) {
	f := newFleet(t, Options{})
	g, err := f.region("web", "eu")
	require.NoError(t, err)
	done := make(chan struct{})
	close(done)
	// The pid of the test itself stands for a process that took over the
	// exited instance's pid: it has both CPU time and a resident set.
	exited := &process{pid: os.Getpid(), started: time.Now().Add(-time.Minute), done: done}
	v := &release{name: "v1", procs: []*process{exited}, stats: newWindow(time.Minute)}
	v.stats.record(time.Now(), http.StatusOK, time.Millisecond)
	g.mu.Lock()
	g.versions["v1"] = v
	g.mu.Unlock()
	t.Cleanup(func() {
		g.mu.Lock()
		delete(g.versions, "v1")
		g.mu.Unlock()
	})

	s, err := f.Sample(t.Context(), "web", "eu", "v1", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 1.0, s.Requests)
	assert.Zero(t, s.CPU)
	assert.Zero(t, s.Memory)
}

// An instance that breaks off its answer midway has failed the request,
// and the version's health says so.
func TestSampleCountsAnAnswerBrokenOff(t *testing.T) {
	ctx := t.Context()
	var logs syncLog
	f := newFleet(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	instance := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
		_ = buf.Flush()
		_ = conn.Close()
	}))
	t.Cleanup(instance.Close)
	g, err := f.region("web", "eu")
	require.NoError(t, err)
	addr := instance.Listener.Addr().String()
	pr := &process{pid: math.MaxInt32, done: make(chan struct{}), proxy: f.instanceProxy(addr, f.log)}
	g.mu.Lock()
	g.versions["v1"] = &release{name: "v1", procs: []*process{pr}, stats: newWindow(time.Minute)}
	g.mu.Unlock()
	t.Cleanup(func() {
		g.mu.Lock()
		delete(g.versions, "v1")
		g.mu.Unlock()
	})
	require.NoError(t, f.Route(ctx, "web", "eu", "", "v1", 100))

	_, err = call(client(t), proxyURL(t, f, "web", "eu")+"/")
	require.Error(t, err, "the client sees the answer cut short")
	s, err := f.Sample(ctx, "web", "eu", "v1", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 1.0, s.Requests)
	assert.Equal(t, 1.0, s.ErrorRate)
	assert.Contains(t, logs.String(), "instance="+addr, "the proxy's error goes to the fleet's Logger, not the standard logger")
}

// syncLog is a log for a test to read while the fleet writes it.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An instance reaped a moment ago, whose done is not yet closed, counts as
// using nothing: its pid may be another process's already.
func TestSampleReadsNoReapedInstance(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, Options{})
	require.NoError(t, f.Deploy(ctx, "web", "eu", "v1", 1))
	g, err := f.existingRegion("web", "eu")
	require.NoError(t, err)
	// The pid of the test itself stands for a process that took over the
	// reaped instance's pid: it has both CPU time and a resident set.
	reaped := &process{pid: os.Getpid(), started: time.Now().Add(-time.Minute), done: make(chan struct{})}
	reaped.cpu.readings = make([]cpuReading, 0, 4)
	v := &release{name: "v2", procs: []*process{reaped}, stats: newWindow(time.Minute)}
	v.stats.record(time.Now(), http.StatusOK, time.Millisecond)
	g.mu.Lock()
	g.versions["v2"] = v
	running := g.versions["v1"].procs[0]
	g.mu.Unlock()
	t.Cleanup(func() {
		g.mu.Lock()
		delete(g.versions, "v2")
		g.mu.Unlock()
	})

	s, err := f.Sample(ctx, "web", "eu", "v2", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 1.0, s.Requests)
	assert.Zero(t, s.CPU)
	assert.Zero(t, s.Memory)

	// Once the sampler has read the running instance twice it has been
	// past the reaped one at least once.
	require.Eventually(t, func() bool {
		running.cpu.mu.Lock()
		defer running.cpu.mu.Unlock()
		return len(running.cpu.readings) >= 2
	}, 10*time.Second, 10*time.Millisecond)
	reaped.cpu.mu.Lock()
	defer reaped.cpu.mu.Unlock()
	assert.Empty(t, reaped.cpu.readings, "the sampler read the pid of a reaped instance")
}
