package kaizen_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kaizen/internal/pipelinetest"
	"github.com/taipattern/taikit/tai"
)

// rec returns a record of kind that finished at end after taking d.
func rec(kind string, o tai.Outcome, v tai.Verdict, end time.Time, d time.Duration) tai.Record {
	r := tai.Record{ID: "id", Kind: kind, Key: "k", Outcome: o, Decision: tai.Decision{Verdict: v, Policy: "p"},
		Start: end.Add(-d), Duration: d}
	if o != tai.Succeeded {
		r.Err = errors.New("x")
	}
	return r
}

func TestNewStatsValidates(t *testing.T) {
	cases := []struct {
		name string
		opts kaizen.StatsOptions
		want string
	}{
		{"negative window", kaizen.StatsOptions{Windows: []time.Duration{-time.Second}}, "Windows[0] -1s"},
		{"tiny window", kaizen.StatsOptions{Windows: []time.Duration{time.Minute, time.Millisecond}}, "Windows[1] 1ms"},
		{"duplicate window", kaizen.StatsOptions{Windows: []time.Duration{time.Minute, time.Minute}}, "Windows[1] 1m0s is listed twice"},
		{"window longer than 100 years", kaizen.StatsOptions{Windows: []time.Duration{time.Hour, math.MaxInt64}}, "Windows[1] 2562047h47m16.854775807s is longer than 876000h0m0s (100 years)"},
		{"resolution", kaizen.StatsOptions{Resolution: -1}, "Resolution -1"},
		{"resolution too high", kaizen.StatsOptions{Resolution: 5000}, "Resolution 5000"},
		{"max kinds", kaizen.StatsOptions{MaxKinds: -2}, "MaxKinds -2"},
		{"rate tolerance", kaizen.StatsOptions{Tolerance: kaizen.Tolerance{Rate: math.NaN()}}, "Tolerance.Rate NaN"},
		{"rate tolerance above 1", kaizen.StatsOptions{Tolerance: kaizen.Tolerance{Rate: 1.5}}, "Tolerance.Rate 1.5 is outside [0, 1]"},
		{"rate tolerance negative", kaizen.StatsOptions{Tolerance: kaizen.Tolerance{Rate: -0.1}}, "Tolerance.Rate -0.1"},
		{"latency tolerance", kaizen.StatsOptions{Tolerance: kaizen.Tolerance{Latency: -1}}, "Tolerance.Latency -1"},
		{"latency tolerance above 100", kaizen.StatsOptions{Tolerance: kaizen.Tolerance{Latency: 101}}, "Tolerance.Latency 101 is outside [0, 100]"},
		{"latency tolerance NaN", kaizen.StatsOptions{Tolerance: kaizen.Tolerance{Latency: math.NaN()}}, "Tolerance.Latency NaN"},
		{"resolution above 1000", kaizen.StatsOptions{Resolution: 1001}, "Resolution 1001 is outside [1, 1000]"},
		{"max kinds message", kaizen.StatsOptions{MaxKinds: -1}, "MaxKinds -1 is negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := kaizen.NewStats(c.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), "kaizen: StatsOptions.")
		})
	}
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{time.Minute, 5 * time.Minute, time.Hour}, s.Windows())
	assert.Equal(t, s.Windows(), kaizen.DefaultWindows())
}

// TestNewStatsAcceptsTheBounds runs in a bubble, where time moves only
// when the test sleeps: on the real clock, the 12ms window (slots of
// 1ms) no longer held the record when the test was not run for 11ms
// between Observe and Window, as on a busy machine, nor did the 1m window
// of one slot when a minute turned in between.
func TestNewStatsAcceptsTheBounds(t *testing.T) {
	for _, opts := range []kaizen.StatsOptions{
		{Resolution: 1},
		{Resolution: 1000},
		{Resolution: 12, Windows: []time.Duration{12 * time.Millisecond}},
		{MaxKinds: 1},
		{Tolerance: kaizen.Tolerance{Rate: 1, Latency: 100}},
		{Windows: []time.Duration{100 * 365 * 24 * time.Hour}},
		{Windows: []time.Duration{100 * 365 * 24 * time.Hour}, Resolution: 1},
	} {
		synctest.Test(t, func(t *testing.T) {
			s, err := kaizen.NewStats(opts)
			require.NoError(t, err, "%+v", opts)
			s.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Start: time.Now()})
			w, ok := s.Window("k", s.Windows()[0])
			require.True(t, ok)
			assert.Equal(t, uint64(1), w.Current.Total, "%+v", opts)
			// The window before ends where the current one starts.
			assert.True(t, w.Previous.Start.Before(w.Previous.End), "%+v: previous %v to %v", opts, w.Previous.Start, w.Previous.End)
			assert.Equal(t, w.Current.Start, w.Previous.End, "%+v", opts)
		})
	}
}

func TestDefaultWindowsIsACopy(t *testing.T) {
	w := kaizen.DefaultWindows()
	w[0] = time.Nanosecond
	assert.Equal(t, time.Minute, kaizen.DefaultWindows()[0], "changing the result changes no later one")
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	require.NoError(t, err)
	s.Windows()[0] = time.Nanosecond
	assert.Equal(t, time.Minute, s.Windows()[0], "Windows returns a copy")
}

func TestStatsCountsRatesAndWindows(t *testing.T) {
	synctest.Test(t, testStatsCountsRatesAndWindows)
}

func testStatsCountsRatesAndWindows(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, time.Hour}, Resolution: 6})
	require.NoError(t, err)
	ctx := context.Background()
	time.Sleep(7 * time.Second) // off the boundary of a slot
	now := time.Now()

	// 30 minutes ago: only in the hour window.
	s.Observe(ctx, rec("payment", tai.Failed, tai.Allow, now.Add(-30*time.Minute), 40*time.Millisecond))
	// Within the last minute.
	for range 6 {
		s.Observe(ctx, rec("payment", tai.Succeeded, tai.Allow, now.Add(-10*time.Second), 10*time.Millisecond))
	}
	s.Observe(ctx, rec("payment", tai.Denied, tai.Deny, now.Add(-5*time.Second), 20*time.Millisecond))
	s.Observe(ctx, rec("payment", tai.Rejected, 0, now.Add(-time.Second), time.Millisecond))
	s.Observe(ctx, rec("deployment", tai.Succeeded, tai.Review, now.Add(-time.Second), time.Second))

	snap := s.Snapshot()
	assert.True(t, now.Equal(snap.Time), "the snapshot is taken now")
	require.Len(t, snap.Kinds, 2)

	m, ok := snap.Window("payment", time.Minute)
	require.True(t, ok)
	p := m.Current
	assert.Equal(t, uint64(8), p.Total)
	assert.Equal(t, kaizen.OutcomeCounts{Succeeded: 6, Denied: 1, Rejected: 1}, p.Outcomes)
	assert.Equal(t, kaizen.VerdictCounts{None: 1, Allow: 6, Deny: 1}, p.Verdicts)
	assert.InDelta(t, 6.0/8, p.SuccessRate, 1e-12)
	assert.InDelta(t, 1.0/8, p.DenyRate, 1e-12)
	assert.InDelta(t, 1.0/8, p.RejectRate, 1e-12)
	assert.Zero(t, p.ErrorRate)
	assert.InDelta(t, 2.0/8, p.Ratio(tai.Denied, tai.Rejected), 1e-12)
	assert.InDelta(t, 2.0/8, p.Ratio(tai.Denied, tai.Rejected, tai.Denied), 1e-12, "an outcome listed twice counts once")
	// The window runs from 50s before the Stats was made (the records 30
	// minutes ago moved its start back) to the end of the slot holding
	// now, 3s from now: 57s of it have passed.
	assert.InDelta(t, 8.0/57, p.Throughput, 1e-12)
	assert.Equal(t, time.Millisecond, p.Min)
	assert.Equal(t, 20*time.Millisecond, p.Max)
	assert.Equal(t, (6*10+20+1)*time.Millisecond/8, p.Mean)
	assert.InEpsilon(t, float64(10*time.Millisecond), float64(p.P50), 0.01)
	assert.InEpsilon(t, float64(20*time.Millisecond), float64(p.P99), 0.01)
	assert.Equal(t, p.P90, p.Quantile(0.9))
	// Slots are 10s wide; the window ends with the slot that holds now.
	assert.Equal(t, now.Truncate(10*time.Second).Add(10*time.Second).UTC(), p.End)
	assert.Equal(t, p.End.Add(-time.Minute), p.Start)

	h, ok := snap.Window("payment", time.Hour)
	require.True(t, ok)
	assert.Equal(t, uint64(9), h.Current.Total)
	assert.Equal(t, uint64(1), h.Current.Outcomes.Failed)
	assert.InDelta(t, 1.0/9, h.Current.Ratio(tai.Failed), 1e-12)
	assert.Equal(t, 40*time.Millisecond, h.Current.Max)

	d, ok := snap.Window("deployment", time.Minute)
	require.True(t, ok)
	assert.Equal(t, uint64(1), d.Current.Verdicts.Review)

	_, ok = snap.Window("payment", 5*time.Minute)
	assert.False(t, ok, "window not kept")
	_, ok = snap.Window("nope", time.Minute)
	assert.False(t, ok)

	w, ok := s.Window("payment", time.Minute)
	require.True(t, ok)
	assert.Equal(t, m, w, "Stats.Window computes the same as the snapshot")
	_, ok = s.Window("payment", 2*time.Minute)
	assert.False(t, ok)

	// Time passes: the minute window empties, the previous one fills.
	time.Sleep(time.Minute)
	m2, _ := s.Window("payment", time.Minute)
	assert.Zero(t, m2.Current.Total)
	assert.Equal(t, uint64(8), m2.Previous.Total)
	assert.Equal(t, kaizen.Unknown, m2.Trend.SuccessRate.Direction)

	time.Sleep(time.Minute)
	m3, _ := s.Window("payment", time.Minute)
	assert.Zero(t, m3.Previous.Total, "older than two windows is forgotten")
}

func TestStatsTrend(t *testing.T) { synctest.Test(t, testStatsTrend) }

func testStatsTrend(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}})
	require.NoError(t, err)
	ctx := context.Background()
	// Previous minute: 10% errors, p99 100ms. Current: 30% errors, p99 10ms.
	prevEnd := time.Now().Add(-90 * time.Second)
	for i := range 100 {
		o := tai.Succeeded
		if i < 10 {
			o = tai.Failed
		}
		s.Observe(ctx, rec("k", o, tai.Allow, prevEnd, 100*time.Millisecond))
	}
	for i := range 100 {
		o := tai.Succeeded
		if i < 30 {
			o = tai.Failed
		}
		s.Observe(ctx, rec("k", o, tai.Allow, time.Now().Add(-time.Second), 10*time.Millisecond))
	}
	w, ok := s.Window("k", time.Minute)
	require.True(t, ok)
	assert.Equal(t, uint64(100), w.Previous.Total)
	assert.Equal(t, uint64(100), w.Current.Total)
	assert.Equal(t, kaizen.Worse, w.Trend.ErrorRate.Direction)
	assert.InDelta(t, 0.2, w.Trend.ErrorRate.Delta, 1e-12)
	assert.Equal(t, kaizen.Worse, w.Trend.SuccessRate.Direction)
	assert.InDelta(t, -0.2, w.Trend.SuccessRate.Delta, 1e-12)
	assert.Equal(t, kaizen.Same, w.Trend.RejectRate.Direction)
	assert.Equal(t, kaizen.Better, w.Trend.P99.Direction)
	assert.InDelta(t, -0.09, w.Trend.P99.Delta, 0.001)
	assert.Equal(t, kaizen.Better, w.Trend.P50.Direction)
}

func TestStatsTrendTolerance(t *testing.T) {
	cases := []struct {
		name             string
		tol              kaizen.Tolerance
		prevErr, curErr  int
		prevLat, curLat  time.Duration
		wantErr, wantP99 kaizen.Direction
	}{
		// Errors per thousand signals.
		{"within default tolerance", kaizen.Tolerance{}, 100, 100, 100 * time.Millisecond, 105 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"half a point is within the default", kaizen.Tolerance{}, 100, 105, 100 * time.Millisecond, 100 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"beyond default", kaizen.Tolerance{}, 100, 50, 100 * time.Millisecond, 150 * time.Millisecond, kaizen.Better, kaizen.Worse},
		{"latency better", kaizen.Tolerance{}, 100, 100, 100 * time.Millisecond, 50 * time.Millisecond, kaizen.Same, kaizen.Better},
		{"wide tolerance", kaizen.Tolerance{Rate: 0.2, Latency: 1}, 100, 250, 100 * time.Millisecond, 190 * time.Millisecond, kaizen.Same, kaizen.Same},
		// Every latency of a window is the same, so its quantiles are
		// exact: a change of exactly the tolerance is the Same.
		{"change equal to the tolerance", kaizen.Tolerance{Rate: 0.25, Latency: 0.5}, 250, 500, 100 * time.Millisecond, 150 * time.Millisecond, kaizen.Same, kaizen.Same},
		// A change of exactly the tolerance is the Same whatever the rates
		// and latencies: 0.51-0.50 and 0.7×3s are not exact in floating
		// point, and a rounding error must not make them Better or Worse.
		{"one point from one half", kaizen.Tolerance{}, 500, 510, 100 * time.Millisecond, 100 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"one point down from one half", kaizen.Tolerance{}, 510, 500, 100 * time.Millisecond, 100 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"one point from a fifth", kaizen.Tolerance{}, 200, 210, 100 * time.Millisecond, 100 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"latency up by exactly 30%", kaizen.Tolerance{Latency: 0.3}, 100, 100, 100 * time.Millisecond, 130 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"latency down by exactly 30%", kaizen.Tolerance{Latency: 0.3}, 100, 100, 100 * time.Millisecond, 70 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"latency up by exactly 70%", kaizen.Tolerance{Latency: 0.7}, 100, 100, 3 * time.Second, 5100 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"just beyond one point", kaizen.Tolerance{}, 500, 511, 100 * time.Millisecond, 131 * time.Millisecond, kaizen.Worse, kaizen.Worse},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}, Tolerance: c.tol})
				require.NoError(t, err)
				fill := func(end time.Time, errs int, lat time.Duration) {
					for i := range 1000 {
						o := tai.Succeeded
						if i < errs {
							o = tai.Failed
						}
						s.Observe(context.Background(), rec("k", o, tai.Allow, end, lat))
					}
				}
				fill(time.Now().Add(-90*time.Second), c.prevErr, c.prevLat)
				fill(time.Now().Add(-time.Second), c.curErr, c.curLat)
				w, _ := s.Window("k", time.Minute)
				assert.Equal(t, c.wantErr, w.Trend.ErrorRate.Direction, "error rate")
				assert.Equal(t, c.wantP99, w.Trend.P99.Direction, "p99")
			})
		})
	}
}

// TestStatsQuantilesAgainstExact feeds random latencies spread over a
// window and checks the window's quantiles against exact ones.
func TestStatsQuantilesAgainstExact(t *testing.T) { synctest.Test(t, testStatsQuantilesAgainstExact) }

func testStatsQuantilesAgainstExact(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{5 * time.Minute}})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(42, 43))
	vs := make([]time.Duration, 50000)
	for i := range vs {
		vs[i] = time.Duration(math.Exp(r.NormFloat64()) * float64(30*time.Millisecond))
		end := time.Now().Add(-time.Duration(r.Int64N(int64(4 * time.Minute))))
		s.Observe(context.Background(), rec("k", tai.Succeeded, tai.Allow, end, vs[i]))
	}
	slices.Sort(vs)
	w, ok := s.Window("k", 5*time.Minute)
	require.True(t, ok)
	require.Equal(t, uint64(len(vs)), w.Current.Total)
	exact := func(q float64) time.Duration { return vs[int(math.Ceil(q*float64(len(vs))))-1] }
	for q, got := range map[float64]time.Duration{0.5: w.Current.P50, 0.9: w.Current.P90, 0.99: w.Current.P99, 0.999: w.Current.Quantile(0.999)} {
		assert.InEpsilon(t, float64(exact(q)), float64(got), 0.01, "q=%v", q)
	}
}

// TestStatsZeroValueKeepsNothing: a Stats not made by NewStats (a struct
// field left as it is) keeps nothing instead of panicking in Observe on
// every signal, and in Snapshot, Window and ServeHTTP on every read.
func TestStatsZeroValueKeepsNothing(t *testing.T) {
	var s kaizen.Stats
	require.NotPanics(t, func() {
		s.Observe(context.Background(), tai.Record{ID: "1", Kind: "payment", Outcome: tai.Succeeded})
	})
	var snap kaizen.StatsSnapshot
	require.NotPanics(t, func() { snap = s.Snapshot() })
	assert.Empty(t, snap.Kinds)
	assert.Zero(t, snap.Dropped)
	require.NotPanics(t, func() {
		_, ok := s.Window("payment", time.Minute)
		assert.False(t, ok)
	})
	assert.Empty(t, s.Windows())
	rr := httptest.NewRecorder()
	require.NotPanics(t, func() { s.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/stats", nil)) })
	assert.Equal(t, http.StatusOK, rr.Code)
	assert.JSONEq(t, `{"kinds":{},"dropped":0}`, jsonWithoutTime(t, rr.Body.Bytes()))
}

// jsonWithoutTime returns the JSON object body without its "time" member.
func jsonWithoutTime(t *testing.T, body []byte) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m))
	delete(m, "time")
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return string(out)
}

func TestStatsMaxKinds(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{MaxKinds: 2})
	require.NoError(t, err)
	for _, k := range []string{"a", "b", "c", "a", "d"} {
		s.Observe(context.Background(), rec(k, tai.Succeeded, tai.Allow, time.Now(), time.Millisecond))
	}
	snap := s.Snapshot()
	assert.Len(t, snap.Kinds, 2)
	assert.Equal(t, uint64(2), snap.Dropped)
	w, _ := snap.Window("a", time.Minute)
	assert.Equal(t, uint64(2), w.Current.Total)
}

func TestStatsRecordWithoutStartIsPlacedNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}})
		require.NoError(t, err)
		time.Sleep(time.Hour)
		s.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Duration: 10 * time.Minute})
		w, _ := s.Window("k", time.Minute)
		assert.Equal(t, uint64(1), w.Current.Total, "placed at time.Now(), not at the zero time plus Duration")
		time.Sleep(time.Minute)
		w, _ = s.Window("k", time.Minute)
		assert.Zero(t, w.Current.Total)
		assert.Equal(t, uint64(1), w.Previous.Total)
	})
}

// TestStatsCountsRecordsStartedAtTimeNow: a pipeline sets Record.Start
// from time.Now() when a signal begins and Duration from the monotonic
// clock; Stats places the record when it finished and reads its windows
// at time.Now(), so a signal that just finished is in the current window.
func TestStatsCountsRecordsStartedAtTimeNow(t *testing.T) {
	t.Run("real time", func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{})
		require.NoError(t, err)
		start := time.Now()
		s.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Start: start, Duration: time.Since(start)})
		for _, d := range kaizen.DefaultWindows() {
			w, ok := s.Window("k", d)
			require.True(t, ok)
			assert.Equal(t, uint64(1), w.Current.Total, "window %v", d)
		}
	})
	t.Run("through a pipeline", func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{})
		require.NoError(t, err)
		p, err := pipelinetest.New(tai.WithObservers(s))
		require.NoError(t, err)
		for _, sig := range pipelinetest.Signals() {
			_, _ = p.Process(context.Background(), sig)
		}
		w, ok := s.Window("payment", time.Minute)
		require.True(t, ok)
		assert.Equal(t, uint64(len(pipelinetest.Signals())), w.Current.Total)
		assert.Equal(t, kaizen.OutcomeCounts{Succeeded: 1, Denied: 2, Rejected: 1, Failed: 1}, w.Current.Outcomes)
	})
	t.Run("a long signal counts when it finished", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// 12 slots of 5s: the current window of 1m covers the last
			// 55 to 60 seconds.
			s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}})
			require.NoError(t, err)
			start := time.Now()
			time.Sleep(50 * time.Second)
			s.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Start: start, Duration: time.Since(start)})
			time.Sleep(30 * time.Second) // started 80s ago, finished 30s ago
			w, _ := s.Window("k", time.Minute)
			assert.Equal(t, uint64(1), w.Current.Total)
			assert.Zero(t, w.Previous.Total)
			time.Sleep(40 * time.Second) // finished 70s ago
			w, _ = s.Window("k", time.Minute)
			assert.Zero(t, w.Current.Total)
			assert.Equal(t, uint64(1), w.Previous.Total)
		})
	})
}

// TestStatsCountsAfterTheClockIsSetBack: the records of a wall clock
// that ran ahead, and was then set back (an NTP step, a VM resumed), lie
// in slots ahead of now, which no window reads until the clock catches
// up. They give their slots to the records stamped after the step: the
// windows counted nothing for as long as the clock had been ahead (an
// hour here), and an alert reading them saw no traffic.
func TestStatsCountsAfterTheClockIsSetBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{})
		require.NoError(t, err)
		ahead := time.Now().Add(time.Hour)
		for i := range 600 { // ten minutes of records, an hour ahead
			s.Observe(context.Background(), rec("k", tai.Succeeded, tai.Allow, ahead.Add(time.Duration(i)*time.Second), time.Millisecond))
		}
		time.Sleep(time.Second)
		for range 10 {
			s.Observe(context.Background(), rec("k", tai.Failed, tai.Allow, time.Now(), time.Millisecond))
		}
		for _, d := range kaizen.DefaultWindows() {
			w, ok := s.Window("k", d)
			require.True(t, ok)
			assert.Equal(t, uint64(10), w.Current.Total, "window %v", d)
			assert.Equal(t, uint64(10), w.Current.Outcomes.Failed, "window %v", d)
		}
		// A record too old for a slot that holds the present is still
		// ignored.
		s.Observe(context.Background(), rec("k", tai.Failed, tai.Allow, time.Now().Add(-3*time.Hour), time.Millisecond))
		w, _ := s.Window("k", time.Minute)
		assert.Equal(t, uint64(10), w.Current.Total)
	})
}

// TestStatsRecordAheadOfNowKeepsThePresent: a signal in flight while the
// wall clock was set back finishes, by its Start and Duration, ahead of
// now. Its slot in a ring is one that holds the last two windows; it
// reset that slot, and the records of the present were lost: an hour
// ahead falls on the current slot of the 1m and 5m windows, which then
// counted nothing.
func TestStatsRecordAheadOfNowKeepsThePresent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{})
		require.NoError(t, err)
		ctx := context.Background()
		for range 10 {
			s.Observe(ctx, rec("k", tai.Failed, tai.Allow, time.Now(), time.Millisecond))
		}
		time.Sleep(2 * time.Minute)
		for range 5 {
			s.Observe(ctx, rec("k", tai.Succeeded, tai.Allow, time.Now(), time.Millisecond))
		}
		for _, ahead := range []time.Duration{time.Hour, time.Hour + 2*time.Minute, time.Hour - 5*time.Second, 5 * time.Second, 6 * time.Minute} {
			s.Observe(ctx, rec("k", tai.Succeeded, tai.Allow, time.Now().Add(ahead), time.Millisecond))
		}
		// At 00:02:00, 5s ahead is in the current slot of the 1h window
		// (slots of 5m), so it counts there.
		want := map[time.Duration]kaizen.OutcomeCounts{
			time.Minute:     {Succeeded: 5},
			5 * time.Minute: {Succeeded: 5, Failed: 10},
			time.Hour:       {Succeeded: 6, Failed: 10},
		}
		for d, o := range want {
			w, ok := s.Window("k", d)
			require.True(t, ok)
			assert.Equal(t, o, w.Current.Outcomes, "window %v", d)
		}
	})
}

// A record a little ahead of now, in the next slot (a signal timed across
// a slot's end while the wall clock ran a little slow), is counted.
func TestStatsRecordInTheNextSlotCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}})
		require.NoError(t, err)
		ctx := context.Background()
		// The ring holds 24 slots of 5 s: the one at 00:00:05 is the slot
		// 00:02:05 takes over, read as the oldest of the previous window
		// until then.
		time.Sleep(5 * time.Second)
		s.Observe(ctx, rec("k", tai.Failed, tai.Allow, time.Now(), time.Millisecond))
		// 1 ms before that slot ends, a record that ends in the next one.
		time.Sleep(2*time.Minute - time.Millisecond)
		s.Observe(ctx, rec("k", tai.Succeeded, tai.Allow, time.Now().Add(time.Millisecond), 2*time.Millisecond))
		time.Sleep(5 * time.Millisecond)
		w, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		assert.Equal(t, kaizen.OutcomeCounts{Succeeded: 1}, w.Current.Outcomes)
	})
}

func TestStatsTooOldRecordsAreIgnored(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}})
	require.NoError(t, err)
	s.Observe(context.Background(), rec("k", tai.Succeeded, tai.Allow, time.Now(), time.Millisecond))
	// Far older than the ring holds: must not reset the current slot.
	s.Observe(context.Background(), rec("k", tai.Failed, tai.Allow, time.Now().Add(-time.Hour), time.Millisecond))
	w, _ := s.Window("k", time.Minute)
	assert.Equal(t, uint64(1), w.Current.Total)
	assert.Zero(t, w.Current.Outcomes.Failed)
}

func TestStatsHandler(t *testing.T) { synctest.Test(t, testStatsHandler) }

func testStatsHandler(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, 72 * time.Hour}})
	require.NoError(t, err)
	s.Observe(context.Background(), rec("payment", tai.Succeeded, tai.Allow, time.Now(), 250*time.Millisecond))
	s.Observe(context.Background(), rec("deployment", tai.Failed, 0, time.Now(), time.Second))

	serve := func(method, target string) *http.Response {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(method, target, nil))
		return w.Result()
	}

	res := serve(http.MethodGet, "/stats?kind=payment")
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
	var body struct {
		Time  time.Time `json:"time"`
		Kinds map[string]struct {
			Windows []struct {
				Window   string  `json:"window"`
				Seconds  float64 `json:"seconds"`
				Current  map[string]any
				Previous map[string]any
				Trend    map[string]map[string]any
			} `json:"windows"`
		} `json:"kinds"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	require.Len(t, body.Kinds, 1)
	ws := body.Kinds["payment"].Windows
	require.Len(t, ws, 2)
	assert.Equal(t, "1m", ws[0].Window)
	assert.Equal(t, "3d", ws[1].Window)
	assert.Equal(t, 259200.0, ws[1].Seconds)
	assert.Equal(t, 1.0, ws[0].Current["total"])
	assert.Equal(t, 1.0, ws[0].Current["success_rate"])
	lat := ws[0].Current["latency_seconds"].(map[string]any)
	assert.InEpsilon(t, 0.25, lat["p99"], 0.01)
	assert.Equal(t, "unknown", ws[0].Trend["error_rate"]["direction"])

	res2 := serve(http.MethodGet, "/stats?kind=nope")
	assert.Equal(t, http.StatusNotFound, res2.StatusCode)
	assert.Contains(t, readAll(t, res2), `unknown kind "nope"`)

	// A query that does not parse, or names the kind twice, is refused:
	// read as no kind, it answered every kind's statistics.
	for _, target := range []string{"/stats?kind=%zz", "/stats?kind=a;b", "/stats?kind=payment&kind=deployment"} {
		bad := serve(http.MethodGet, target)
		assert.Equal(t, http.StatusBadRequest, bad.StatusCode, target)
		assert.Contains(t, readAll(t, bad), "query", target)
	}

	res3 := serve(http.MethodPost, "/stats")
	assert.Equal(t, http.StatusMethodNotAllowed, res3.StatusCode)
	assert.Equal(t, "GET, HEAD", res3.Header.Get("Allow"))

	res5 := serve(http.MethodHead, "/stats")
	assert.Equal(t, http.StatusOK, res5.StatusCode, "HEAD is allowed")

	res4 := serve(http.MethodGet, "/stats")
	var all kaizen.StatsSnapshot
	var raw map[string]json.RawMessage
	require.NoError(t, json.NewDecoder(res4.Body).Decode(&raw))
	require.NoError(t, json.Unmarshal(raw["time"], &all.Time))
	assert.True(t, all.Time.Equal(time.Now()))
	assert.Contains(t, string(raw["kinds"]), `"deployment"`)
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

func TestStatsConcurrentObserveAndSnapshot(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	require.NoError(t, err)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 2000 {
				kind := []string{"a", "b"}[(g+i)%2]
				s.Observe(context.Background(), rec(kind, tai.Outcome(i%4), tai.Allow, time.Now(), time.Duration(i)*time.Microsecond))
			}
		}()
	}
	for range 20 {
		_ = s.Snapshot()
	}
	for range 4 {
		<-done
	}
	snap := s.Snapshot()
	a, _ := snap.Window("a", time.Hour)
	b, _ := snap.Window("b", time.Hour)
	assert.Equal(t, uint64(8000), a.Current.Total+b.Current.Total)
}

// TestStatsConcurrentRecordsBeforeTheStart: records finished before the
// Stats was made, most too old for every window, observed from several
// goroutines while snapshots are taken, are counted where a window reads
// them, and the statistics begin with the earliest of those.
func TestStatsConcurrentRecordsBeforeTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(30 * time.Second)
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, time.Hour}, Resolution: 1})
		require.NoError(t, err)
		now := time.Now()
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 500 {
					// From 0s to 4h9m50s back, every 10s, and those up to
					// 1h23m10s back twice.
					back := time.Duration((i*4+g)%1500) * 10 * time.Second
					s.Observe(context.Background(), rec("k", tai.Succeeded, tai.Allow, now.Add(-back), 0))
				}
			})
		}
		for range 20 {
			_ = s.Snapshot()
		}
		wg.Wait()
		w, ok := s.Window("k", time.Hour)
		require.True(t, ok)
		// Now is 00:00:30; the hour window reads 23:00 to 01:00: the
		// records 0s to 1h0m30s back, twice each.
		assert.Equal(t, uint64(8), w.Current.Total, "0s, 10s, 20s and 30s back")
		assert.Equal(t, uint64(720), w.Previous.Total)
		assert.InDelta(t, 8/30.0, w.Current.Throughput, 1e-9)
		assert.InDelta(t, 720/3600.0, w.Previous.Throughput, 1e-9)
		m, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		assert.Equal(t, uint64(8), m.Current.Total)
		assert.Equal(t, uint64(12), m.Previous.Total, "23:59:00 to 23:59:50")
		assert.InDelta(t, 12/60.0, m.Previous.Throughput, 1e-9, "the statistics began before the previous minute")
	})
}

func TestStatsObserveAllocatesNothing(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	require.NoError(t, err)
	r := pipelinetest.RealisticRecord()
	ctx := context.Background()
	s.Observe(ctx, r) // creates the kind and the histogram chunk
	assert.Zero(t, testing.AllocsPerRun(1000, func() { s.Observe(ctx, r) }))
}

// TestStatsSlotReusedForgetsItsPast: a window's ring reuses its slots; a
// slot taken again two windows later keeps nothing of what it held.
func TestStatsSlotReusedForgetsItsPast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}, Resolution: 6})
		require.NoError(t, err)
		ctx := context.Background()
		for range 3 {
			s.Observe(ctx, rec("k", tai.Failed, tai.Deny, time.Now(), 2*time.Second))
		}
		time.Sleep(2 * time.Minute) // the ring's length: the same slot again
		s.Observe(ctx, rec("k", tai.Succeeded, tai.Allow, time.Now(), time.Millisecond))
		w, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		p := w.Current
		assert.Equal(t, uint64(1), p.Total)
		assert.Equal(t, kaizen.OutcomeCounts{Succeeded: 1}, p.Outcomes)
		assert.Equal(t, kaizen.VerdictCounts{Allow: 1}, p.Verdicts)
		assert.Equal(t, time.Millisecond, p.Min)
		assert.Equal(t, time.Millisecond, p.Max)
		assert.Equal(t, time.Millisecond, p.Mean)
		assert.Equal(t, time.Millisecond, p.P99)
		assert.Equal(t, time.Millisecond, p.Quantile(1))
		assert.Zero(t, w.Previous.Total)
	})
}

// TestStatsRecordsOutsideTheEnums: a record whose Outcome or Verdict is
// not one tai defines counts in Total and in no outcome or verdict.
func TestStatsRecordsOutsideTheEnums(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	require.NoError(t, err)
	s.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Start: time.Now(), Outcome: tai.Failed + 1, Decision: tai.Decision{Verdict: tai.Deny + 1}})
	s.Observe(context.Background(), tai.Record{ID: "2", Kind: "k", Start: time.Now(), Outcome: 255, Decision: tai.Decision{Verdict: 255}})
	w, ok := s.Window("k", time.Minute)
	require.True(t, ok)
	assert.Equal(t, uint64(2), w.Current.Total)
	assert.Equal(t, kaizen.OutcomeCounts{}, w.Current.Outcomes)
	assert.Equal(t, kaizen.VerdictCounts{}, w.Current.Verdicts)
	assert.Zero(t, w.Current.Ratio(tai.Succeeded, tai.Denied, tai.Rejected, tai.Failed))
}

// TestStatsMeanOfLongDurations: the sum of a window's durations can pass
// what a time.Duration holds (292 years; signals lasting 30s at 3000 a
// second over a 72h window sum to 740); the mean stays exact.
func TestStatsMeanOfLongDurations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}, Resolution: 1})
		require.NoError(t, err)
		for _, d := range []time.Duration{math.MaxInt64, math.MaxInt64 - 2, 3 * time.Second} {
			s.Observe(context.Background(), tai.Record{Kind: "k", Outcome: tai.Succeeded, Duration: d})
		}
		w, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		sum := new(big.Int).Mul(big.NewInt(math.MaxInt64), big.NewInt(2))
		sum.Add(sum, big.NewInt(int64(3*time.Second-2)))
		assert.Equal(t, time.Duration(sum.Div(sum, big.NewInt(3)).Int64()), w.Current.Mean)
		assert.Equal(t, time.Duration(math.MaxInt64), w.Current.Max)
		assert.Equal(t, 3*time.Second, w.Current.Min)
	})
}

// TestStatsP99OfFewSignalsIsTheMax: of fewer than 100 signals the p99 is
// the slowest, whose latency Stats knows exactly; it was the middle of
// its histogram bin, a little below Max.
func TestStatsP99OfFewSignalsIsTheMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{})
		require.NoError(t, err)
		slowest := 5*time.Second + 368709119 // at the top of its histogram bin
		now := time.Now()
		for _, d := range []time.Duration{time.Second, 2 * time.Second, slowest} {
			s.Observe(context.Background(), rec("payment", tai.Succeeded, tai.Allow, now, d))
		}
		w, ok := s.Window("payment", time.Minute)
		require.True(t, ok)
		p := w.Current
		assert.Equal(t, slowest, p.Max)
		assert.Equal(t, slowest, p.P99)
		assert.Equal(t, slowest, p.Quantile(1))
		assert.Equal(t, time.Second, p.Quantile(0.01), "the first rank is Min")
	})
}

// Throughput divides the signals of a window by the time it has covered:
// for a fresh Stats, the time since it was made (at least a second), not
// the whole window; in the current window, up to now, not to the end of
// the slot that holds now.
func TestStatsThroughputIsPerSecondCovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{})
		require.NoError(t, err)
		ctx := context.Background()
		throughput := func(w time.Duration) (cur, prev float64) {
			ws, ok := s.Window("payment", w)
			require.True(t, ok)
			return ws.Current.Throughput, ws.Previous.Throughput
		}

		time.Sleep(100 * time.Millisecond)
		s.Observe(ctx, rec("payment", tai.Succeeded, tai.Allow, time.Now(), 0))
		cur, _ := throughput(time.Minute)
		assert.InDelta(t, 1.0, cur, 1e-9, "one signal in the first 100ms is counted over a second, not 0.1s")

		// 10 signals a second from then on.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		signals := 1
		observeUntil := func(d time.Duration) {
			end := time.Now().Add(d)
			for time.Now().Before(end) {
				<-tick.C
				s.Observe(ctx, rec("payment", tai.Succeeded, tai.Allow, time.Now(), 0))
				signals++
			}
		}
		observeUntil(9900 * time.Millisecond) // 10s after the Stats was made
		require.Equal(t, 100, signals)
		for _, w := range kaizen.DefaultWindows() {
			cur, prev := throughput(w)
			assert.InDelta(t, 10.0, cur, 1e-9, "window %v", w)
			assert.Zero(t, prev, "window %v", w)
		}

		// Two minutes later, halfway through a 5s slot of the 1m window.
		observeUntil(112500 * time.Millisecond)
		cur, prev := throughput(time.Minute)
		assert.InDelta(t, 576/57.5, cur, 1e-9, "the signals from 65s to 122.5s, over the 57.5s of the window that have passed")
		assert.InDelta(t, 10.0, prev, 1e-9)
		cur, prev = throughput(5 * time.Minute)
		assert.InDelta(t, 10.0, cur, 1e-9)
		assert.Zero(t, prev)
	})
}

// TestStatsSnapshotAllocatesForTheBinsInUse: a period's latencies are
// kept as the histogram bins its signals fell into, not as a whole merged
// histogram of 1 KiB per power of two that any of its slots has ever seen.
// Latencies spread over 55 powers of two, and later one signal in a slot
// that once held them, cost a few hundred bytes per Snapshot, not 55 KiB
// per period.
func TestStatsSnapshotAllocatesForTheBinsInUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}, Resolution: 1})
		require.NoError(t, err)
		ctx := context.Background()
		// allocated returns the bytes one call of f allocates: the least of
		// a few tries, as TotalAlloc counts every goroutine's allocations.
		allocated := func(f func()) uint64 {
			least := uint64(math.MaxUint64)
			for range 5 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				f()
				runtime.ReadMemStats(&after)
				least = min(least, after.TotalAlloc-before.TotalAlloc)
			}
			return least
		}
		for e := 8; e < 63; e++ {
			s.Observe(ctx, tai.Record{Kind: "k", Outcome: tai.Succeeded, Duration: 1 << e})
		}
		w, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		require.Equal(t, uint64(55), w.Current.Total)
		assert.Equal(t, time.Duration(1<<62), w.Current.Max)
		assert.Equal(t, time.Duration(1<<35+1<<27), w.Current.P50, "the 28th of 2^8 to 2^62: 2^35, at its bin's middle")
		assert.Less(t, allocated(func() { _ = s.Snapshot() }), uint64(4096), "Snapshot, latencies over 55 powers of two")
		assert.Less(t, allocated(func() { _, _ = s.Window("k", time.Minute) }), uint64(2048), "Window, latencies over 55 powers of two")

		time.Sleep(2 * time.Minute) // the ring's length: the same slot again
		s.Observe(ctx, tai.Record{Kind: "k", Outcome: tai.Succeeded, Duration: time.Millisecond})
		w, ok = s.Window("k", time.Minute)
		require.True(t, ok)
		require.Equal(t, uint64(1), w.Current.Total)
		assert.Equal(t, time.Millisecond, w.Current.Quantile(0.5))
		assert.Less(t, allocated(func() { _ = s.Snapshot() }), uint64(2048), "Snapshot, one signal in a slot that held many")
		assert.Less(t, allocated(func() { _, _ = s.Window("k", time.Minute) }), uint64(1024), "Window, one signal in a slot that held many")
	})
}

// TestStatsTooOldRecordDoesNotMoveTheStart: a record too old for every
// window is left out, and leaves out the time it names too: the
// statistics still begin when the Stats was made, so a window's
// Throughput counts only the time since then.
func TestStatsTooOldRecordDoesNotMoveTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}})
		require.NoError(t, err)
		ctx := context.Background()
		time.Sleep(10 * time.Second)
		s.Observe(ctx, rec("k", tai.Succeeded, tai.Allow, time.Now(), 0))
		// Far older than either window the ring keeps, in a slot not used yet.
		s.Observe(ctx, rec("k", tai.Failed, tai.Allow, time.Now().Add(-time.Hour-30*time.Second), time.Millisecond))
		w, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		assert.Equal(t, uint64(1), w.Current.Total)
		assert.Zero(t, w.Previous.Total)
		assert.InDelta(t, 0.1, w.Current.Throughput, 1e-9, "one signal in the 10s since the Stats was made")
	})
}

// TestStatsTooOldRecordInAStaleSlotDoesNotMoveTheStart: a record too old
// for every window is left out also when a ring's slot for its time still
// holds records of that time, from before the windows moved on: it does
// not take the statistics' start back to its time, and the Throughput of
// a window that began before the Stats was made still counts only the
// time since.
func TestStatsTooOldRecordInAStaleSlotDoesNotMoveTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(8*time.Minute + 30*time.Second)
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, 100 * time.Second}, Resolution: 1})
		require.NoError(t, err)
		ctx := context.Background()
		made := time.Now()
		// In the 1m ring's slot of 8:00 to 9:00, and the 100s ring's of
		// 8:20 to 10:00.
		s.Observe(ctx, rec("k", tai.Succeeded, tai.Allow, made, 0))
		time.Sleep(2*time.Minute + 25*time.Second)
		// At 10:55 the 1m ring reads 9:00 to 11:00 and the 100s ring 8:20 to
		// 11:40: 8:10 is too old for both, though the 1m ring's slot of 8:00
		// has not been reused yet.
		s.Observe(ctx, rec("k", tai.Failed, tai.Allow, made.Add(-20*time.Second), 0))
		w, ok := s.Window("k", 100*time.Second)
		require.True(t, ok)
		assert.Equal(t, uint64(1), w.Previous.Total)
		assert.Zero(t, w.Previous.Outcomes.Failed)
		assert.InDelta(t, 1/90.0, w.Previous.Throughput, 1e-9, "one signal in the 90s of 8:20 to 10:00 since the Stats was made")
	})
}

// TestStatsRecordOutsideUnixNanosIsLeftOut: a record that finished
// before 1678 or after 2262, whose time Unix nanoseconds cannot hold, is
// left out, as one too old for the windows is. Such a time wrapped
// around: one 2^64 ns (some 584 years) from now counted as now.
func TestStatsRecordOutsideUnixNanosIsLeftOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}})
		require.NoError(t, err)
		ctx := context.Background()
		now := time.Now()
		const quarter = time.Duration(1 << 62) // 2^64 ns is four of them
		later, earlier := now, now
		for range 4 {
			later, earlier = later.Add(quarter), earlier.Add(-quarter)
		}
		require.Equal(t, now.UnixNano(), later.UnixNano(), "wraps around")
		for _, start := range []time.Time{later, earlier} {
			s.Observe(ctx, tai.Record{ID: "far", Kind: "k", Outcome: tai.Failed, Start: start, Duration: time.Millisecond})
		}
		s.Observe(ctx, rec("k", tai.Succeeded, tai.Allow, now, time.Millisecond))
		w, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		assert.Equal(t, uint64(1), w.Current.Total)
		assert.Zero(t, w.Current.Outcomes.Failed)
	})
}

// TestStatsRecordStartedPastUnixNanosFinishingNowCounts: a record is
// placed when it finished, Start plus Duration: one whose Start is past
// 2262 but whose (negative) Duration brings it back to now is counted
// now, as one placed so in the range of Unix nanoseconds is; only where
// it finished decides whether it is left out.
func TestStatsRecordStartedPastUnixNanosFinishingNowCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}})
		require.NoError(t, err)
		now := time.Now()
		const back = 280 * 365 * 24 * time.Hour
		start := now.Add(back)
		require.Greater(t, start.Year(), 2262)
		s.Observe(context.Background(), tai.Record{ID: "a", Kind: "k", Outcome: tai.Failed, Start: start, Duration: -back})
		w, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		assert.Equal(t, uint64(1), w.Current.Total)
		assert.Equal(t, uint64(1), w.Current.Outcomes.Failed)
	})
}

// TestStatsWindowNotAMultipleOfItsResolution: a window of W cut into
// Resolution slots covers between W-W/Resolution and W of history at
// every moment, also when Resolution does not divide W (1m in 7 slots of
// 8.571428571428…s). A record that finished W-W/Resolution ago, or
// later, is in the current window; one that finished W ago is not.
func TestStatsWindowNotAMultipleOfItsResolution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const w, res = time.Minute, 7
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{w}, Resolution: res})
		require.NoError(t, err)
		ctx := context.Background()
		// The longest whole number of nanoseconds no more than
		// W-W/Resolution: 51428571428ns.
		kept := (int64(w)*(res-1) - 1) / res
		// The moments around the slot edges a width rounded either way
		// would give: W/Resolution rounded down (8571428571ns) and k×W/
		// Resolution rounded down and up, for a few slots from now.
		var at []int64
		first := time.Now().UnixNano()/int64(w)*res + res
		for k := first; k < first+3; k++ {
			exact := k * int64(w) / res
			at = append(at, k*(int64(w)/res)-1, k*(int64(w)/res), exact-1, exact, exact+1, exact+2)
		}
		slices.Sort(at)
		at = slices.Compact(at)
		for i, nanos := range at {
			time.Sleep(time.Until(time.Unix(0, nanos)))
			now := time.Now()
			require.Equal(t, nanos, now.UnixNano())
			kind := "k" + strconv.Itoa(i)
			s.Observe(ctx, rec(kind, tai.Succeeded, tai.Allow, now.Add(-time.Duration(kept)), 0))
			s.Observe(ctx, rec(kind, tai.Failed, tai.Allow, now.Add(-w), 0))
			got, ok := s.Window(kind, w)
			require.True(t, ok)
			assert.Equal(t, kaizen.OutcomeCounts{Succeeded: 1}, got.Current.Outcomes,
				"at %v: the record of %v ago, and not the one of %v ago", now, time.Duration(kept), w)
			assert.Equal(t, w, got.Current.End.Sub(got.Current.Start), "current period at %v", now)
			assert.Equal(t, w, got.Previous.End.Sub(got.Previous.Start), "previous period at %v", now)
		}
	})
}
