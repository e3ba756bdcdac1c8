package kaizen_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/kaizen"
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
		{"resolution", kaizen.StatsOptions{Resolution: -1}, "Resolution -1"},
		{"resolution too high", kaizen.StatsOptions{Resolution: 5000}, "Resolution 5000"},
		{"max kinds", kaizen.StatsOptions{MaxKinds: -2}, "MaxKinds -2"},
		{"rate tolerance", kaizen.StatsOptions{Tolerance: kaizen.Tolerance{Rate: math.NaN()}}, "Tolerance.Rate NaN"},
		{"latency tolerance", kaizen.StatsOptions{Tolerance: kaizen.Tolerance{Latency: -1}}, "Tolerance.Latency -1"},
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
	assert.Equal(t, kaizen.DefaultWindows, s.Windows())
}

func TestStatsCountsRatesAndWindows(t *testing.T) {
	clk := newFakeClock()
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, time.Hour}, Resolution: 6, Clock: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()
	now := clk.Now()

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
	assert.Equal(t, now, snap.Time)
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
	assert.InDelta(t, 8.0/60, p.Throughput, 1e-12)
	assert.Equal(t, time.Millisecond, p.Min)
	assert.Equal(t, 20*time.Millisecond, p.Max)
	assert.Equal(t, (6*10+20+1)*time.Millisecond/8, p.Mean)
	assert.InEpsilon(t, float64(10*time.Millisecond), float64(p.P50), 0.01)
	assert.InEpsilon(t, float64(20*time.Millisecond), float64(p.P99), 0.01)
	assert.Equal(t, p.P90, p.Quantile(0.9))
	// Slots are 10s wide; the window ends with the slot that holds now.
	assert.Equal(t, now.Truncate(10*time.Second).Add(10*time.Second), p.End)
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
	clk.Advance(time.Minute)
	m2, _ := s.Window("payment", time.Minute)
	assert.Zero(t, m2.Current.Total)
	assert.Equal(t, uint64(8), m2.Previous.Total)
	assert.Equal(t, kaizen.Unknown, m2.Trend.SuccessRate.Direction)

	clk.Advance(time.Minute)
	m3, _ := s.Window("payment", time.Minute)
	assert.Zero(t, m3.Previous.Total, "older than two windows is forgotten")
}

func TestStatsTrend(t *testing.T) {
	clk := newFakeClock()
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}, Clock: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()
	// Previous minute: 10% errors, p99 100ms. Current: 30% errors, p99 10ms.
	prevEnd := clk.Now().Add(-90 * time.Second)
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
		s.Observe(ctx, rec("k", o, tai.Allow, clk.Now().Add(-time.Second), 10*time.Millisecond))
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
		{"within default tolerance", kaizen.Tolerance{}, 10, 10, 100 * time.Millisecond, 105 * time.Millisecond, kaizen.Same, kaizen.Same},
		{"beyond default", kaizen.Tolerance{}, 10, 5, 100 * time.Millisecond, 150 * time.Millisecond, kaizen.Better, kaizen.Worse},
		{"wide tolerance", kaizen.Tolerance{Rate: 0.2, Latency: 1}, 10, 25, 100 * time.Millisecond, 190 * time.Millisecond, kaizen.Same, kaizen.Same},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := newFakeClock()
			s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}, Tolerance: c.tol, Clock: clk.Now})
			require.NoError(t, err)
			fill := func(end time.Time, errs int, lat time.Duration) {
				for i := range 100 {
					o := tai.Succeeded
					if i < errs {
						o = tai.Failed
					}
					s.Observe(context.Background(), rec("k", o, tai.Allow, end, lat))
				}
			}
			fill(clk.Now().Add(-90*time.Second), c.prevErr, c.prevLat)
			fill(clk.Now().Add(-time.Second), c.curErr, c.curLat)
			w, _ := s.Window("k", time.Minute)
			assert.Equal(t, c.wantErr, w.Trend.ErrorRate.Direction)
			assert.Equal(t, c.wantP99, w.Trend.P99.Direction)
		})
	}
}

// TestStatsQuantilesAgainstExact feeds random latencies spread over a
// window and checks the window's quantiles against exact ones.
func TestStatsQuantilesAgainstExact(t *testing.T) {
	clk := newFakeClock()
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{5 * time.Minute}, Clock: clk.Now})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(42, 43))
	vs := make([]time.Duration, 50000)
	for i := range vs {
		vs[i] = time.Duration(math.Exp(r.NormFloat64()) * float64(30*time.Millisecond))
		end := clk.Now().Add(-time.Duration(r.Int64N(int64(4 * time.Minute))))
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

func TestStatsMaxKinds(t *testing.T) {
	clk := newFakeClock()
	s, err := kaizen.NewStats(kaizen.StatsOptions{MaxKinds: 2, Clock: clk.Now})
	require.NoError(t, err)
	for _, k := range []string{"a", "b", "c", "a", "d"} {
		s.Observe(context.Background(), rec(k, tai.Succeeded, tai.Allow, clk.Now(), time.Millisecond))
	}
	snap := s.Snapshot()
	assert.Len(t, snap.Kinds, 2)
	assert.Equal(t, uint64(2), snap.Dropped)
	w, _ := snap.Window("a", time.Minute)
	assert.Equal(t, uint64(2), w.Current.Total)
}

func TestStatsRecordWithoutStartUsesClock(t *testing.T) {
	clk := newFakeClock()
	s, err := kaizen.NewStats(kaizen.StatsOptions{Clock: clk.Now})
	require.NoError(t, err)
	s.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Duration: time.Millisecond})
	w, _ := s.Window("k", time.Minute)
	assert.Equal(t, uint64(1), w.Current.Total)
}

func TestStatsTooOldRecordsAreIgnored(t *testing.T) {
	clk := newFakeClock()
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}, Clock: clk.Now})
	require.NoError(t, err)
	s.Observe(context.Background(), rec("k", tai.Succeeded, tai.Allow, clk.Now(), time.Millisecond))
	// Far older than the ring holds: must not reset the current slot.
	s.Observe(context.Background(), rec("k", tai.Failed, tai.Allow, clk.Now().Add(-time.Hour), time.Millisecond))
	w, _ := s.Window("k", time.Minute)
	assert.Equal(t, uint64(1), w.Current.Total)
	assert.Zero(t, w.Current.Outcomes.Failed)
}

func TestStatsHandler(t *testing.T) {
	clk := newFakeClock()
	s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, 72 * time.Hour}, Clock: clk.Now})
	require.NoError(t, err)
	s.Observe(context.Background(), rec("payment", tai.Succeeded, tai.Allow, clk.Now(), 250*time.Millisecond))
	s.Observe(context.Background(), rec("deployment", tai.Failed, 0, clk.Now(), time.Second))

	srv := httptest.NewServer(s)
	defer srv.Close()

	res, err := http.Get(srv.URL + "?kind=payment")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
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

	res2, err := http.Get(srv.URL + "?kind=nope")
	require.NoError(t, err)
	res2.Body.Close()
	assert.Equal(t, http.StatusNotFound, res2.StatusCode)

	res3, err := http.Post(srv.URL, "application/json", nil)
	require.NoError(t, err)
	res3.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, res3.StatusCode)

	res4, err := http.Get(srv.URL)
	require.NoError(t, err)
	var all kaizen.StatsSnapshot
	var raw map[string]json.RawMessage
	require.NoError(t, json.NewDecoder(res4.Body).Decode(&raw))
	res4.Body.Close()
	require.NoError(t, json.Unmarshal(raw["time"], &all.Time))
	assert.True(t, all.Time.Equal(clk.Now()))
	assert.Contains(t, string(raw["kinds"]), `"deployment"`)
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
				s.Observe(context.Background(), rec(kind, tai.Outcomes[i%4], tai.Allow, time.Now(), time.Duration(i)*time.Microsecond))
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

func TestStatsObserveAllocatesNothing(t *testing.T) {
	s, err := kaizen.NewStats(kaizen.StatsOptions{})
	require.NoError(t, err)
	r := realisticRecord()
	ctx := context.Background()
	s.Observe(ctx, r) // creates the kind and the histogram chunk
	assert.Zero(t, testing.AllocsPerRun(1000, func() { s.Observe(ctx, r) }))
}
