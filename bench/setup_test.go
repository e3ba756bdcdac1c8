package bench

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// benchmarkAt runs f as testing.Benchmark does, with b.N = n after its
// first run (of 1), so that a test can read what a benchmark counts.
func benchmarkAt(t *testing.T, n int, f func(*testing.B)) testing.BenchmarkResult {
	t.Helper()
	benchtime := flag.Lookup("test.benchtime")
	if benchtime == nil {
		t.Fatal("no -test.benchtime flag")
	}
	was := benchtime.Value.String()
	if err := benchtime.Value.Set(strconv.Itoa(n) + "x"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := benchtime.Value.Set(was); err != nil {
			t.Error(err)
		}
	}()
	return testing.Benchmark(f)
}

// The benchmarks that run under RunParallel learn their keys first: the
// timer runs from the start of the benchmark function (only b.Loop resets
// it by itself), so unless they reset it, the keys' setup is timed with the
// calls, and a side whose setup costs more is measured slower. What the
// timed part allocates tells: the calls' allocations and nothing more.

func TestHeijunkaKeyedParallelTimesOnlyTheCalls(t *testing.T) {
	keys := heijunkaKeyNames()[:10_000]
	r := benchmarkAt(t, len(keys), func(b *testing.B) { benchKeyedAllowParallel(b, keys) })
	if got := r.AllocedBytesPerOp(); got != 0 {
		t.Errorf("Keyed.Allow under RunParallel: %d B/op timed (%d B in all over %d calls), want 0: the setup is timed", got, r.MemBytes, r.N)
	}
}

func TestTaihttpRateLimitParallelTimesOnlyTheRequests(t *testing.T) {
	addrs := clientAddrs()[:10_000]
	hs := rateLimitHandlers(t)
	for _, name := range rateLimitOrder {
		h := hs[name]
		learnAddrs(t, h, addrs)
		// A request's allocations, the addresses taken in turn as the
		// benchmark takes them (taihttp's RateLimit fields are formatted
		// once for the keys that share them).
		w := &benchWriter{h: http.Header{}}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		i := 0
		want := int64(testing.AllocsPerRun(1000, func() {
			r.RemoteAddr = addrs[i]
			h.ServeHTTP(w, r)
			w.reset()
			i = (i + 1) % len(addrs)
		}))
		res := benchmarkAt(t, len(addrs), func(b *testing.B) { benchRateLimitParallel(b, h, addrs) })
		if got := res.AllocsPerOp(); got != want {
			t.Errorf("%s under RunParallel: %d allocs/op timed, a request makes %d: the setup is timed", name, got, want)
		}
	}
}
