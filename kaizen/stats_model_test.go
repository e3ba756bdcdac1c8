package kaizen_test

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// modelRecord is a record as the model keeps it: when it finished, in
// Unix nanoseconds, and what it was.
type modelRecord struct {
	kind    string
	at      int64
	outcome tai.Outcome
	verdict tai.Verdict
	d       time.Duration
	ahead   bool // finished after the time it was observed at
}

// statsModel keeps every record a Stats was given, and computes what its
// docs say a window reads from them.
type statsModel struct {
	windows  []time.Duration
	res      int64
	maxKinds int
	kinds    []string // in the order first seen, at most maxKinds
	dropped  uint64
	records  []modelRecord
	ahead    map[string]bool // kinds given a record finished ahead of now
	since    int64           // when the statistics begin
}

// kept reports whether a record finished at t, observed at now, is kept
// by a window: one ending now, or the window before it, reads it.
func (m *statsModel) kept(t, now int64) bool {
	for _, w := range m.windows {
		if t >= 0 && m.slot(w, t) > m.slot(w, now)-2*m.res {
			return true
		}
	}
	return false
}

// slot returns the number of the slot of window w that holds time t:
// t×res/w rounded down. Slot k starts at k×w/res rounded up (slotStart):
// res slots make w exactly, when res does not divide w too.
func (m *statsModel) slot(w time.Duration, t int64) int64 {
	q, r := new(big.Int).QuoRem(new(big.Int).Mul(big.NewInt(t), big.NewInt(m.res)), big.NewInt(int64(w)), new(big.Int))
	if r.Sign() < 0 {
		q.Sub(q, big.NewInt(1))
	}
	return q.Int64()
}

// slotStart returns when slot k of window w starts: k×w/res rounded up.
func (m *statsModel) slotStart(w time.Duration, k int64) int64 {
	q, r := new(big.Int).QuoRem(new(big.Int).Mul(big.NewInt(k), big.NewInt(int64(w))), big.NewInt(m.res), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return q.Int64()
}

func (m *statsModel) observe(r modelRecord, now int64) {
	if !slices.Contains(m.kinds, r.kind) {
		if len(m.kinds) >= m.maxKinds {
			m.dropped++
			return
		}
		m.kinds = append(m.kinds, r.kind)
	}
	if r.at < 0 {
		return // before 1970: left out
	}
	if r.ahead {
		m.ahead[r.kind] = true
	} else if m.kept(r.at, now) {
		m.since = min(m.since, r.at)
	}
	m.records = append(m.records, r)
}

// modelPeriod is what the model expects of a Period.
type modelPeriod struct {
	start, end int64
	total      uint64
	ahead      uint64 // of total, finished ahead of the time they were observed at
	outcomes   kaizen.OutcomeCounts
	verdicts   kaizen.VerdictCounts
	latencies  []time.Duration // sorted, negative ones as zero
	mean       time.Duration
	throughput float64
}

func (m *statsModel) period(kind string, w time.Duration, last, now int64) modelPeriod {
	p := modelPeriod{start: m.slotStart(w, last-m.res+1), end: m.slotStart(w, last+1)}
	sum := new(big.Int)
	for _, r := range m.records {
		if r.kind != kind || r.at < p.start || r.at >= p.end {
			continue
		}
		p.total++
		if r.ahead {
			p.ahead++
		}
		switch r.outcome {
		case tai.Succeeded:
			p.outcomes.Succeeded++
		case tai.Denied:
			p.outcomes.Denied++
		case tai.Rejected:
			p.outcomes.Rejected++
		case tai.Failed:
			p.outcomes.Failed++
		}
		switch r.verdict {
		case 0:
			p.verdicts.None++
		case tai.Allow:
			p.verdicts.Allow++
		case tai.Review:
			p.verdicts.Review++
		case tai.Deny:
			p.verdicts.Deny++
		}
		d := max(r.d, 0)
		p.latencies = append(p.latencies, d)
		sum.Add(sum, big.NewInt(int64(d)))
	}
	slices.Sort(p.latencies)
	if p.total > 0 {
		p.mean = time.Duration(sum.Quo(sum, new(big.Int).SetUint64(p.total)).Int64())
	}
	length := int64(w)
	covered := min(p.end, now) - max(p.start, m.since)
	covered = max(covered, min(int64(time.Second), length))
	p.throughput = float64(p.total) / time.Duration(min(covered, length)).Seconds()
	return p
}

// nearestRank returns the rank, from 1, of quantile q of n values: the
// least whole number at or above q×n, where a q×n within floating-point
// rounding of a whole number is that number (0.9 of 10 is the 9th, though
// the float64 nearest 0.9 is a little above it).
func nearestRank(q float64, n uint64) uint64 {
	x := new(big.Rat).SetFloat64(q)
	x.Mul(x, new(big.Rat).SetInt(new(big.Int).SetUint64(n)))
	f, _ := x.Float64()
	if w := math.Round(f); math.Abs(f-w) <= w*1e-12 {
		return min(max(uint64(w), 1), n)
	}
	r := new(big.Int).Quo(x.Num(), x.Denom())
	if new(big.Rat).SetInt(r).Cmp(x) < 0 {
		r.Add(r, big.NewInt(1))
	}
	return min(max(r.Uint64(), 1), n)
}

func (p modelPeriod) check(got kaizen.Period, what string) string {
	if !got.Start.Equal(time.Unix(0, p.start)) || !got.End.Equal(time.Unix(0, p.end)) {
		return fmt.Sprintf("%s: covers %v to %v, want %v to %v", what, got.Start, got.End, time.Unix(0, p.start).UTC(), time.Unix(0, p.end).UTC())
	}
	if got.Total != p.total || got.Outcomes != p.outcomes || got.Verdicts != p.verdicts {
		return fmt.Sprintf("%s: total %d %+v %+v, want %d %+v %+v", what, got.Total, got.Outcomes, got.Verdicts, p.total, p.outcomes, p.verdicts)
	}
	if math.Abs(got.Throughput-p.throughput) > 1e-9*p.throughput {
		return fmt.Sprintf("%s: throughput %v, want %v", what, got.Throughput, p.throughput)
	}
	if p.total == 0 {
		if got.Min != 0 || got.Max != 0 || got.Mean != 0 || got.P50 != 0 || got.P99 != 0 || got.Quantile(0.5) != 0 ||
			got.SuccessRate != 0 || got.ErrorRate != 0 {
			return fmt.Sprintf("%s: an empty period has latencies or rates: %+v", what, got)
		}
		return ""
	}
	t := float64(p.total)
	rates := [4][2]float64{
		{got.SuccessRate, float64(p.outcomes.Succeeded) / t}, {got.DenyRate, float64(p.outcomes.Denied) / t},
		{got.RejectRate, float64(p.outcomes.Rejected) / t}, {got.ErrorRate, float64(p.outcomes.Failed) / t},
	}
	for _, r := range rates {
		if r[0] != r[1] {
			return fmt.Sprintf("%s: rates %v, want %v", what, got, rates)
		}
	}
	lo, hi := p.latencies[0], p.latencies[len(p.latencies)-1]
	if got.Min != lo || got.Max != hi || got.Mean != p.mean {
		return fmt.Sprintf("%s: min %d max %d mean %d, want %d %d %d", what, got.Min, got.Max, got.Mean, lo, hi, p.mean)
	}
	for _, q := range []float64{0, 1e-9, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1} {
		v := got.Quantile(q)
		exact := p.latencies[nearestRank(q, p.total)-1]
		if math.Abs(float64(v)-float64(exact)) > 0.004*float64(exact) {
			return fmt.Sprintf("%s: quantile %v is %d, want %d within 0.4%% (of %v; min %v max %v)", what, q, v, exact, p.latencies, got.Min, got.Max)
		}
	}
	if got.P50 != got.Quantile(0.5) || got.P90 != got.Quantile(0.9) || got.P99 != got.Quantile(0.99) {
		return fmt.Sprintf("%s: P50 %v P90 %v P99 %v are not its quantiles", what, got.P50, got.P90, got.P99)
	}
	return ""
}

// check compares every window of every kind that the Stats reads now, by
// Snapshot and by Window, with the model's.
func (m *statsModel) check(s *kaizen.Stats) string {
	now := time.Now().UnixNano()
	snap := s.Snapshot()
	if snap.Dropped != m.dropped {
		return fmt.Sprintf("dropped %d, want %d", snap.Dropped, m.dropped)
	}
	if len(snap.Kinds) != len(m.kinds) {
		return fmt.Sprintf("%d kinds, want %d", len(snap.Kinds), len(m.kinds))
	}
	for _, kind := range m.kinds {
		for _, w := range m.windows {
			ws, ok := snap.Window(kind, w)
			if !ok {
				return fmt.Sprintf("kind %q window %v missing", kind, w)
			}
			alone, ok := s.Window(kind, w)
			if !ok {
				return fmt.Sprintf("kind %q window %v missing from Window", kind, w)
			}
			last := m.slot(w, now)
			cur, prev := m.period(kind, w, last, now), m.period(kind, w, last-m.res, now)
			if m.ahead[kind] {
				// A record ahead of now gives its slot up to one observed
				// later, and one in the next slot takes the oldest of the
				// window before: the records up to now in the current
				// window are all counted, and of the others some.
				for _, c := range []struct {
					got    kaizen.Period
					lo, hi uint64
					what   string
				}{
					{ws.Current, cur.total - cur.ahead, cur.total, "current"}, {ws.Previous, 0, prev.total, "previous"},
					{alone.Current, cur.total - cur.ahead, cur.total, "current (Window)"}, {alone.Previous, 0, prev.total, "previous (Window)"},
				} {
					if c.got.Total < c.lo || c.got.Total > c.hi {
						return fmt.Sprintf("kind %q window %v %s: total %d, want %d to %d", kind, w, c.what, c.got.Total, c.lo, c.hi)
					}
				}
				continue
			}
			for _, c := range []struct {
				got  kaizen.Period
				want modelPeriod
				what string
			}{
				{ws.Current, cur, "current"}, {ws.Previous, prev, "previous"},
				{alone.Current, cur, "current (Window)"}, {alone.Previous, prev, "previous (Window)"},
			} {
				if f := c.want.check(c.got, fmt.Sprintf("kind %q window %v %s", kind, w, c.what)); f != "" {
					return f
				}
			}
			if f := checkTrends(ws, fmt.Sprintf("kind %q window %v", kind, w)); f != "" {
				return f
			}
		}
	}
	return ""
}

// checkTrends checks the trends of a window against its two periods and
// the default Tolerance.
func checkTrends(ws kaizen.WindowStats, what string) string {
	if ws.Current.Total == 0 || ws.Previous.Total == 0 {
		for _, tr := range []kaizen.Trend{ws.Trend.SuccessRate, ws.Trend.ErrorRate, ws.Trend.RejectRate, ws.Trend.P50, ws.Trend.P99} {
			if tr.Direction != kaizen.Unknown || tr.Delta != 0 {
				return fmt.Sprintf("%s: trend %+v of a window without a signal", what, tr)
			}
		}
		return ""
	}
	rate := func(cur, prev float64, higherIsBetter bool) kaizen.Direction {
		d := cur - prev
		switch {
		case math.Abs(d) <= 0.01+1e-12:
			return kaizen.Same
		case (d > 0) == higherIsBetter:
			return kaizen.Better
		}
		return kaizen.Worse
	}
	latency := func(cur, prev time.Duration) kaizen.Direction {
		d := float64(cur - prev)
		switch {
		case math.Abs(d) <= 0.1*float64(prev)*(1+1e-9):
			return kaizen.Same
		case d < 0:
			return kaizen.Better
		}
		return kaizen.Worse
	}
	c, p := ws.Current, ws.Previous
	for _, x := range []struct {
		got   kaizen.Trend
		want  kaizen.Direction
		delta float64
		name  string
	}{
		{ws.Trend.SuccessRate, rate(c.SuccessRate, p.SuccessRate, true), c.SuccessRate - p.SuccessRate, "success rate"},
		{ws.Trend.ErrorRate, rate(c.ErrorRate, p.ErrorRate, false), c.ErrorRate - p.ErrorRate, "error rate"},
		{ws.Trend.RejectRate, rate(c.RejectRate, p.RejectRate, false), c.RejectRate - p.RejectRate, "reject rate"},
		{ws.Trend.P50, latency(c.P50, p.P50), (c.P50 - p.P50).Seconds(), "p50"},
		{ws.Trend.P99, latency(c.P99, p.P99), (c.P99 - p.P99).Seconds(), "p99"},
	} {
		if x.got.Direction != x.want || x.got.Delta != x.delta {
			return fmt.Sprintf("%s: %s trend %+v, want %v %v", what, x.name, x.got, x.want, x.delta)
		}
	}
	return ""
}

// statsStep is one step of the model test: sleep, then observe a record
// finished back before now (at now when back is negative: its Start is
// zero), or check.
type statsStep struct {
	sleep time.Duration
	check bool
	rec   modelRecord
	back  time.Duration
	// edge, when not zero, places the record at an edge of window
	// edgeWindow instead: 1 the start of the slot of now, 2 the start of
	// the current window, 3 the start of the window before it, 4 the end
	// of the slot of now (in the next slot), 5 the start of the slot ahead
	// slots ahead; less edgeBefore nanoseconds.
	edge, edgeWindow int
	edgeBefore       time.Duration
	ahead            int64
}

// TestStatsMatchesModel drives a Stats and a model that keeps every
// record with the same records, finished at random times up to now (on
// slot and window edges too, long ago, before 1970), and some ahead of
// now, as after a step back of the wall clock, with random latencies
// (negative, zero, up to the longest time.Duration), over random windows
// and resolutions and gaps of time, and requires every window that
// Snapshot and Window read to count, rate, time and compare what the
// model does.
func TestStatsMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		res := rapid.IntRange(1, 12).Draw(rt, "resolution")
		windows := rapid.SliceOfNDistinct(rapid.OneOf(
			rapid.SampledFrom([]time.Duration{time.Second, time.Minute, 5 * time.Minute, time.Hour, 876000 * time.Hour}),
			rapid.Map(rapid.Int64Range(int64(res)*int64(time.Millisecond), int64(10*time.Minute)), toDuration),
		), 1, 3, rapid.ID).Draw(rt, "windows")
		maxKinds := rapid.IntRange(1, 3).Draw(rt, "maxKinds")
		longest := slices.Max(windows)
		width := func() time.Duration { return windows[0] / time.Duration(res) }
		var steps []statsStep
		for range rapid.IntRange(1, 60).Draw(rt, "steps") {
			var st statsStep
			switch rapid.IntRange(0, 5).Draw(rt, "sleepKind") {
			case 0:
				st.sleep = time.Duration(rapid.Int64Range(0, int64(min(width(), 8760*time.Hour))).Draw(rt, "sleep"))
			case 1:
				st.sleep = rapid.SampledFrom([]time.Duration{width(), windows[0], longest, 2 * min(longest, 8760*time.Hour), 100 * min(longest, 8760*time.Hour)}).Draw(rt, "sleep")
				// Up to a year a step: synctest's clock, from 2000 on, stays
				// within Unix nanoseconds.
				st.sleep = min(st.sleep, 8760*time.Hour)
			}
			if rapid.IntRange(0, 4).Draw(rt, "op") == 0 {
				st.check = true
				steps = append(steps, st)
				continue
			}
			st.rec = modelRecord{
				kind:    rapid.SampledFrom([]string{"a", "b", "c", "d"}).Draw(rt, "kind"),
				outcome: tai.Outcome(rapid.IntRange(0, 5).Draw(rt, "outcome")),
				verdict: tai.Verdict(rapid.IntRange(0, 4).Draw(rt, "verdict")),
				d: rapid.Map(rapid.OneOf(
					rapid.Int64Range(-int64(time.Second), int64(time.Second)),
					rapid.Int64Range(0, 1<<uint(rapid.IntRange(0, 62).Draw(rt, "bits"))),
					rapid.SampledFrom([]int64{0, 255, 256, math.MaxInt64, math.MinInt64 + 1}),
				), toDuration).Draw(rt, "duration"),
			}
			if rapid.IntRange(0, 3).Draw(rt, "atEdge") == 0 {
				st.edge = rapid.IntRange(1, 5).Draw(rt, "edge")
				st.edgeWindow = rapid.IntRange(0, len(windows)-1).Draw(rt, "edgeWindow")
				st.edgeBefore = time.Duration(rapid.IntRange(0, 1).Draw(rt, "edgeBefore"))
				st.ahead = rapid.Int64Range(1, int64(3*res)).Draw(rt, "ahead")
			}
			switch rapid.IntRange(0, 3).Draw(rt, "when") {
			case 0:
				st.back = -1 // Start zero: now
			case 1:
				st.back = time.Duration(rapid.Int64Range(0, 3*int64(min(longest, 30*8760*time.Hour))).Draw(rt, "back"))
			default:
				st.back = 0
			}
			steps = append(steps, st)
		}
		if f := runStatsModel(t, kaizen.StatsOptions{Windows: windows, Resolution: res, MaxKinds: maxKinds}, steps); f != "" {
			rt.Fatal(f)
		}
	})
}

func toDuration(ns int64) time.Duration { return time.Duration(ns) }

func runStatsModel(t *testing.T, opts kaizen.StatsOptions, steps []statsStep) (failure string) {
	synctest.Test(t, func(*testing.T) {
		s, err := kaizen.NewStats(opts)
		if err != nil {
			failure = err.Error()
			return
		}
		m := &statsModel{windows: s.Windows(), res: int64(opts.Resolution), maxKinds: opts.MaxKinds, since: time.Now().UnixNano(), ahead: map[string]bool{}}
		for i, st := range steps {
			time.Sleep(st.sleep)
			if st.check {
				if f := m.check(s); f != "" {
					failure = fmt.Sprintf("step %d, at %v: %s", i, time.Now().UTC(), f)
					return
				}
				continue
			}
			now := time.Now()
			r := tai.Record{ID: "id", Kind: st.rec.kind, Outcome: st.rec.outcome,
				Decision: tai.Decision{Verdict: st.rec.verdict}, Duration: st.rec.d}
			end := now
			if st.back >= 0 || st.edge != 0 {
				end = now.Add(-st.back)
				if st.edge != 0 {
					w := m.windows[st.edgeWindow]
					slot := m.slot(w, now.UnixNano())
					at := map[int]int64{1: slot, 2: slot - m.res + 1, 3: slot - 2*m.res + 1, 4: slot + 1, 5: slot + st.ahead}[st.edge]
					end = time.Unix(0, m.slotStart(w, at)-int64(st.edgeBefore))
				}
				r.Start = end.Add(-st.rec.d)
			}
			rec := st.rec
			rec.at = end.UnixNano()
			rec.ahead = rec.at > now.UnixNano()
			s.Observe(context.Background(), r)
			m.observe(rec, now.UnixNano())
		}
		if f := m.check(s); f != "" {
			failure = fmt.Sprintf("at the end, at %v: %s", time.Now().UTC(), f)
		}
	})
	return failure
}
