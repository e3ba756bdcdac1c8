package kaizen

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/tai"
)

// DefaultWindows returns the windows a Stats keeps when
// StatsOptions.Windows is empty: 1m, 5m and 1h. Each call returns a new
// slice.
func DefaultWindows() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, time.Hour}
}

// maxWindow is the longest window a Stats keeps: the window before it
// still starts at a time that Unix nanoseconds hold.
const maxWindow = 100 * 365 * 24 * time.Hour

// StatsOptions configures a Stats. The zero value is useful: the
// DefaultWindows, 12 slots per window, up to 64 kinds and the default
// Tolerance.
//
// Windows, Resolution and MaxKinds bound the memory a Stats takes. Each
// kind seen keeps 2×Resolution slots per window. A slot is about 600
// bytes of counters and a latency histogram that grows by 1 KiB for each
// power of two of nanoseconds its latencies have fallen into, and keeps
// that memory when the slot is reused: up to 57 KiB, when latencies span
// every power of two a time.Duration holds. A slot so takes at most about
// 59 KB, and about 26 KB when latencies run from 1µs to 10s (25 powers of
// two). The bound is MaxKinds × len(Windows) × 2×Resolution slots: at
// the defaults 64 × 3 × 24 = 4608 slots, at most about 272 MB, about 120
// MB with latencies from 1µs to 10s, and 1/64 of that per kind actually
// seen. Snapshot and Window also copy each period's latencies, as the
// histogram bins its signals fell into: 10 bytes a bin in use, at most
// one per signal and 128 per power of two, kept with the Period for its
// Quantile.
type StatsOptions struct {
	// Windows lists the window lengths to keep, each at least Resolution
	// milliseconds and at most 100 years (876000h) long, none twice.
	// Empty means DefaultWindows. An SLO burn-rate rule needs every window
	// it reads: for example 5m, 30m, 1h, 2h, 6h, 24h and 72h.
	Windows []time.Duration
	// Resolution is the number of slots a window is cut into, from 1 to
	// 1000. Zero means 12. A window of length W covers the last W rounded
	// to its slot width W/Resolution: between W-W/Resolution and W of
	// history. When Resolution does not divide W, the slots are W/Resolution
	// rounded to a nanosecond, some up and some down, so that Resolution
	// of them make W exactly (Period.End less Period.Start). Memory per kind grows with len(Windows) × Resolution: up to
	// about 59 KB per slot (see above).
	Resolution int
	// MaxKinds bounds the number of signal kinds kept. Records of further
	// kinds are counted in StatsSnapshot.Dropped and not kept. Zero means
	// 64; it must not be negative. Each kind takes up to
	// len(Windows) × 2×Resolution × about 59 KB (see above): about 4.2 MB
	// at the default windows and Resolution.
	MaxKinds int
	// Tolerance decides when a trend is Same.
	Tolerance Tolerance
}

// Stats keeps rolling statistics per signal kind in memory: counts by
// outcome and verdict, rates, latency quantiles and trends over each
// configured window and the window before it. It is a tai.Observer and an
// http.Handler serving its Snapshot as JSON. Make it with NewStats: the
// zero Stats keeps nothing (its Snapshot has no kind, and no window).
//
// A record is placed in time when its signal finished: Record.Start plus
// Record.Duration, read as wall time, or time.Now() when its Start is
// zero. A record placed before 1970, or after 2262, where Unix
// nanoseconds end, is left out, as one too old for the windows is.
// Snapshot and Window read the windows that end at time.Now(). Tests
// control both with testing/synctest. Records placed ahead of now, as a
// wall clock that is then set back leaves them, give their slots up to
// the records placed after the step; and a record placed more than a
// slot ahead of now (a signal in flight when the clock was set back) is
// left out rather than take the slot of records the windows ending now
// still read.
//
// Memory is bounded: each window is a ring of 2×Resolution time slots (the
// window and the one before it), each slot a set of counters and a
// log-linear latency histogram; StatsOptions gives the figures. Observing
// a record costs a map lookup, a mutex, one slot update per window and an
// atomic read, and allocates nothing once the slots are warm.
type Stats struct {
	windows []time.Duration
	res     int
	maxKind int
	tol     Tolerance

	kinds   atomic.Pointer[map[string]*kindStats] // copy on write
	mu      sync.Mutex                            // serializes writers of kinds
	dropped atomic.Uint64
	// since is when the statistics begin (Unix nanoseconds): when the
	// Stats was made, or the time of the earliest record kept, if earlier.
	// A window's Throughput counts no time before it. A record moves it
	// back under its kind's mutex, and a read of a kind loads it under
	// that mutex, so the read sees the start of every record it counts.
	since atomic.Int64

	// counted and reading, when set (by tests), run in Observe once the
	// record is in its slots and in Snapshot before it reads the kinds:
	// the moments another goroutine can run between.
	counted, reading func()
}

type kindStats struct {
	mu    sync.Mutex
	rings []ring
}

// NewStats returns a Stats, or an error naming the first invalid option.
func NewStats(opts StatsOptions) (*Stats, error) {
	s := &Stats{res: opts.Resolution, maxKind: opts.MaxKinds, tol: opts.Tolerance.withDefaults()}
	if s.res == 0 {
		s.res = 12
	}
	if s.res < 1 || s.res > 1000 {
		return nil, fmt.Errorf("kaizen: StatsOptions.Resolution %d is outside [1, 1000]", opts.Resolution)
	}
	switch {
	case s.maxKind == 0:
		s.maxKind = 64
	case s.maxKind < 0:
		return nil, fmt.Errorf("kaizen: StatsOptions.MaxKinds %d is negative", opts.MaxKinds)
	}
	if t := opts.Tolerance; !(t.Rate >= 0 && t.Rate <= 1) {
		return nil, fmt.Errorf("kaizen: StatsOptions.Tolerance.Rate %v is outside [0, 1]", t.Rate)
	}
	if t := opts.Tolerance; !(t.Latency >= 0 && t.Latency <= 100) {
		return nil, fmt.Errorf("kaizen: StatsOptions.Tolerance.Latency %v is outside [0, 100]", t.Latency)
	}
	s.windows = slices.Clone(opts.Windows)
	if len(s.windows) == 0 {
		s.windows = DefaultWindows()
	}
	minWindow := time.Duration(s.res) * time.Millisecond
	for i, w := range s.windows {
		if w < minWindow {
			return nil, fmt.Errorf("kaizen: StatsOptions.Windows[%d] %v is shorter than %v (Resolution × 1ms)", i, w, minWindow)
		}
		if w > maxWindow {
			return nil, fmt.Errorf("kaizen: StatsOptions.Windows[%d] %v is longer than %v (100 years)", i, w, maxWindow)
		}
		if slices.Contains(s.windows[:i], w) {
			return nil, fmt.Errorf("kaizen: StatsOptions.Windows[%d] %v is listed twice", i, w)
		}
	}
	slices.Sort(s.windows)
	empty := map[string]*kindStats{}
	s.kinds.Store(&empty)
	s.since.Store(time.Now().UnixNano())
	return s, nil
}

// Windows returns the window lengths kept, shortest first.
func (s *Stats) Windows() []time.Duration { return slices.Clone(s.windows) }

// Observe adds a finished signal to the statistics of its kind.
func (s *Stats) Observe(_ context.Context, r tai.Record) {
	kinds := s.kinds.Load()
	if kinds == nil {
		return // the zero Stats keeps nothing
	}
	k := (*kinds)[r.Kind]
	if k == nil {
		if k = s.addKind(r.Kind); k == nil {
			s.dropped.Add(1)
			return
		}
	}
	t := finishedAt(&r)
	bin := binOf(r.Duration)
	kept := false
	k.mu.Lock()
	for i := range k.rings {
		if sl := k.rings[i].slotAt(t); sl != nil {
			sl.add(r.Outcome, r.Decision.Verdict, r.Duration, bin)
			kept = true
		}
	}
	if kept && t < s.since.Load() {
		// Before the kind's lock is let go: a read of the kind that sees
		// the record sees the start it sets, and never counts the record
		// over the shorter time since the start before.
		s.beginAt(k, t)
	}
	k.mu.Unlock()
	if s.counted != nil {
		s.counted()
	}
}

// beginAt takes the start of the statistics back to t, the time of a
// record of k that a ring took, if a window ending now reads t: a ring
// puts a record in the slot that holds its time already without reading
// the clock, also when that slot is too old for any window to read. It
// is called with k's mutex held.
func (s *Stats) beginAt(k *kindStats, t int64) {
	now := time.Now().UnixNano()
	read := false
	for i := range k.rings { // a ring's width and slots are set once, when it is made
		read = read || !k.rings[i].tooOld(t, now)
	}
	for read {
		since := s.since.Load()
		if t >= since || s.since.CompareAndSwap(since, t) {
			return
		}
	}
}

// finishedAt returns when r's signal finished, in Unix nanoseconds: its
// Start plus its Duration, or now when its Start is zero. It is -1, which
// no ring keeps (nor any time before 1970), for a finish outside what
// Unix nanoseconds hold (1678 to 2262), where UnixNano would wrap around
// to any time, now's too. A Start outside that range may still finish in
// it, by a negative Duration.
func finishedAt(r *tai.Record) int64 {
	if r.Start.IsZero() {
		return time.Now().UnixNano()
	}
	if !inUnixNanos(r.Start) {
		// Rare: the sum is taken as a time.Time, which costs more.
		end := r.Start.Add(r.Duration)
		if !inUnixNanos(end) {
			return -1
		}
		return end.UnixNano()
	}
	t := r.Start.UnixNano()
	end := t + int64(r.Duration)
	if (end < t) != (r.Duration < 0) {
		return -1 // past what Unix nanoseconds hold, either way
	}
	return end
}

// inUnixNanos reports whether t.UnixNano() is t's time, not one wrapped
// around.
func inUnixNanos(t time.Time) bool {
	sec := t.Unix()
	return sec > math.MinInt64/int64(time.Second) && sec < math.MaxInt64/int64(time.Second)
}

// addKind returns the stats of kind, creating them, or nil when MaxKinds
// is reached.
func (s *Stats) addKind(kind string) *kindStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.kinds.Load()
	if k := old[kind]; k != nil {
		return k
	}
	if len(old) >= s.maxKind {
		return nil
	}
	k := &kindStats{rings: make([]ring, len(s.windows))}
	for i, w := range s.windows {
		k.rings[i] = newRing(w, s.res)
	}
	m := make(map[string]*kindStats, len(old)+1)
	for name, v := range old {
		m[name] = v
	}
	m[kind] = k
	s.kinds.Store(&m)
	return k
}

// StatsSnapshot is the state of a Stats at one moment: plain values, safe
// to keep and to read from any goroutine.
type StatsSnapshot struct {
	// Time is when the snapshot was taken. The windows of each kind end
	// when that kind was read, at Time or a moment after: a window ending
	// at Time could have lost the oldest slot of its previous period to a
	// record observed since.
	Time  time.Time            `json:"time"`
	Kinds map[string]KindStats `json:"kinds"`
	// Dropped counts the records not kept because MaxKinds was reached.
	Dropped uint64 `json:"dropped"`
}

// KindStats holds the windows of one kind of signal, shortest first.
type KindStats struct {
	Windows []WindowStats `json:"windows"`
}

// WindowStats is one window of a kind: the last Window of time (Current),
// the Window before it (Previous), and how the first compares with the
// second.
type WindowStats struct {
	Window   time.Duration
	Current  Period
	Previous Period
	Trend    Trends
}

// MarshalJSON encodes the window with its length as text ("5m", "1h",
// "3d").
func (w WindowStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Window   string  `json:"window"`
		Seconds  float64 `json:"seconds"`
		Current  Period  `json:"current"`
		Previous Period  `json:"previous"`
		Trend    Trends  `json:"trend"`
	}{formatWindow(w.Window), w.Window.Seconds(), w.Current, w.Previous, w.Trend})
}

// Window returns the stats of the window of length d, if it is kept.
func (k KindStats) Window(d time.Duration) (WindowStats, bool) {
	for _, w := range k.Windows {
		if w.Window == d {
			return w, true
		}
	}
	return WindowStats{}, false
}

// Window returns the stats of kind over the window of length d. ok is
// false when the window is not kept or the kind was never seen.
func (s StatsSnapshot) Window(kind string, d time.Duration) (w WindowStats, ok bool) {
	k, ok := s.Kinds[kind]
	if !ok {
		return WindowStats{}, false
	}
	return k.Window(d)
}

// Snapshot returns the statistics of every kind over every window that
// ends now.
func (s *Stats) Snapshot() StatsSnapshot {
	now := time.Now()
	kinds := s.kindsNow()
	snap := StatsSnapshot{Time: now, Kinds: make(map[string]KindStats, len(kinds)), Dropped: s.dropped.Load()}
	if s.reading != nil {
		s.reading()
	}
	for name, k := range kinds {
		snap.Kinds[name] = k.snapshot(&s.since, s.tol)
	}
	return snap
}

// Window returns the statistics of kind over the window of length d that
// ends now, without computing the other windows. ok is false when d is not
// one of the Windows or the kind was never seen.
func (s *Stats) Window(kind string, d time.Duration) (w WindowStats, ok bool) {
	k := s.kindsNow()[kind]
	i := slices.Index(s.windows, d)
	if k == nil || i < 0 {
		return WindowStats{}, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// now is read under the mutex: a record observed in a later slot while
	// the read waited for it has taken the oldest slot of the window
	// before, which a window ending at an earlier now would still cover.
	now := time.Now().UnixNano()
	return k.rings[i].stats(now, s.since.Load(), s.tol), true
}

// kindsNow returns the kinds kept: none for the zero Stats.
func (s *Stats) kindsNow() map[string]*kindStats {
	if p := s.kinds.Load(); p != nil {
		return *p
	}
	return nil
}

// snapshot returns the windows of k ending now. It reads the clock under
// k's mutex, as Window does: a record observed in a later slot since an
// earlier reading has taken the oldest slot of the window before. It
// loads since, when the statistics begin, under that mutex too: after the
// records it reads have moved it back.
func (k *kindStats) snapshot(since *atomic.Int64, tol Tolerance) KindStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now().UnixNano()
	ks := KindStats{Windows: make([]WindowStats, len(k.rings))}
	begin := since.Load()
	for i := range k.rings {
		ks.Windows[i] = k.rings[i].stats(now, begin, tol)
	}
	return ks
}

// ServeHTTP serves the Snapshot as JSON. The query parameter kind limits
// it to one kind; a query that does not parse, or gives kind more than
// once, is refused with 400 (read as no kind, it would answer every
// kind). Only GET and HEAD are allowed.
func (s *Stats) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "the query does not parse: "+strconv.Quote(err.Error()), http.StatusBadRequest)
		return
	}
	if len(q["kind"]) > 1 {
		http.Error(w, "the query gives kind more than once", http.StatusBadRequest)
		return
	}
	snap := s.Snapshot()
	if kind := q.Get("kind"); kind != "" {
		k, ok := snap.Kinds[kind]
		if !ok {
			http.Error(w, "unknown kind "+strconv.Quote(kind), http.StatusNotFound)
			return
		}
		snap.Kinds = map[string]KindStats{kind: k}
	}
	body, err := json.Marshal(snap)
	if err != nil {
		http.Error(w, "kaizen: encoding stats: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}

// formatWindow writes a window length in the largest whole unit: "90s",
// "5m", "1h", "3d"; other lengths as time.Duration.String does.
func formatWindow(d time.Duration) string {
	units := []struct {
		d      time.Duration
		suffix string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	for _, u := range units {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.suffix
		}
	}
	return d.String()
}
