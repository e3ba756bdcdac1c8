package kaizen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// TestStatsPeriodsAreHalfOpen places records at the edges of a window's
// periods: a record at a period's Start is in it, one a nanosecond before
// is in the period before, and each record is counted once across the
// two periods; the periods meet, each exactly a window long.
func TestStatsPeriodsAreHalfOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, 7 * time.Second}, Resolution: 3})
		require.NoError(t, err)
		ctx := context.Background()
		time.Sleep(3*time.Minute + 1500*time.Millisecond)
		for _, window := range s.Windows() {
			w, ok := s.Window("probe", window)
			if !ok {
				s.Observe(ctx, rec("probe", tai.Succeeded, tai.Allow, time.Now(), 0))
				w, ok = s.Window("probe", window)
			}
			require.True(t, ok)
			cur, prev := w.Current, w.Previous
			assert.Equal(t, window, cur.End.Sub(cur.Start), "%v", window)
			assert.Equal(t, cur.Start, prev.End, "%v: the periods meet", window)
			assert.False(t, cur.End.Before(time.Now()), "%v: the current period holds now", window)
		}

		w, _ := s.Window("probe", time.Minute)
		start := w.Current.Start
		kind := "edges"
		s.Observe(ctx, rec(kind, tai.Failed, tai.Deny, start, 0))                             // at the Start: current
		s.Observe(ctx, rec(kind, tai.Denied, tai.Deny, start.Add(-time.Nanosecond), 0))       // just before: previous
		s.Observe(ctx, rec(kind, tai.Rejected, 0, w.Previous.Start, 0))                       // previous Start: previous
		s.Observe(ctx, rec(kind, tai.Rejected, 0, w.Previous.Start.Add(-time.Nanosecond), 0)) // too old
		got, ok := s.Window(kind, time.Minute)
		require.True(t, ok)
		assert.Equal(t, kaizen.OutcomeCounts{Failed: 1}, got.Current.Outcomes)
		assert.Equal(t, kaizen.OutcomeCounts{Denied: 1, Rejected: 1}, got.Previous.Outcomes)
		assert.Equal(t, kaizen.VerdictCounts{None: 1, Deny: 1}, got.Previous.Verdicts)
		assert.Equal(t, 1.0, got.Current.Ratio(tai.Failed, tai.Failed, tai.Outcome(99)), "each outcome once; an unknown one none")
		assert.Equal(t, time.Duration(0), got.Current.Quantile(-1))
		assert.Equal(t, time.Duration(0), got.Previous.Quantile(2))
	})
}

// TestAuditAwkwardValuesVerify writes records whose fields hold what a
// JSON line must escape or replace — quotes, backslashes, newlines, the
// line and paragraph separators, bytes that are not UTF-8, a NUL, very
// long values — and verifies the trail: each is one line, and the chain
// holds.
func TestAuditAwkwardValuesVerify(t *testing.T) {
	var buf bytes.Buffer
	a, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{Key: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	awkward := []string{"", `quo"te`, `back\slash`, "new\nline\r", "sep\u2028\u2029", "bad\xff\xfe", "nul\x00", "<script>&", strings.Repeat("長", 100000)}
	for i, v := range awkward {
		a.Observe(context.Background(), tai.Record{ID: v + "id", Kind: v, Key: v, Outcome: tai.Outcome(i % 6),
			Decision: tai.Decision{Verdict: tai.Verdict(i % 5), Policy: v, Reason: v, Score: float64(i) / 3}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
	require.NoError(t, a.Err())
	assert.Equal(t, len(awkward), bytes.Count(buf.Bytes(), []byte("\n")), "one line a record")
	sum, err := kaizen.VerifyAuditWith(bytes.NewReader(buf.Bytes()), kaizen.VerifyOptions{Key: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	assert.Equal(t, uint64(len(awkward)), sum.Lines)
	assert.Error(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())), "keyed lines need the key")
}

// TestStatsAfterAGapOfAWindowOrMore: as in a time-based sliding window,
// the signals of a window leave the current period once a window has
// passed, and the previous one once two have; rates, latencies and
// throughput of the emptied periods are zero (not NaN: the snapshot
// still encodes), their trends Unknown; and a signal long after, in the
// slot that once held them, is counted alone.
func TestStatsAfterAGapOfAWindowOrMore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute}, Resolution: 6})
		require.NoError(t, err)
		ctx := context.Background()
		time.Sleep(time.Second)
		for _, o := range []tai.Outcome{tai.Failed, tai.Failed, tai.Failed, tai.Succeeded} {
			s.Observe(ctx, rec("k", o, tai.Allow, time.Now(), time.Second))
		}
		read := func() kaizen.WindowStats {
			w, ok := s.Window("k", time.Minute)
			require.True(t, ok)
			_, err := json.Marshal(s.Snapshot())
			require.NoError(t, err)
			return w
		}
		empty := func(p kaizen.Period, what string) {
			assert.Zero(t, p.Total, what)
			assert.Zero(t, p.ErrorRate, what)
			assert.Zero(t, p.Throughput, what)
			assert.Zero(t, p.P99, what)
			assert.Zero(t, p.Quantile(0.5), what)
		}
		w := read()
		assert.Equal(t, 0.75, w.Current.ErrorRate)

		time.Sleep(time.Minute)
		w = read()
		empty(w.Current, "a window later, current")
		assert.Equal(t, uint64(4), w.Previous.Total, "a window later, previous")
		assert.Equal(t, 0.75, w.Previous.ErrorRate)
		assert.Equal(t, kaizen.Unknown, w.Trend.ErrorRate.Direction)

		time.Sleep(time.Minute)
		w = read()
		empty(w.Current, "two windows later, current")
		empty(w.Previous, "two windows later, previous")
		assert.Equal(t, kaizen.Unknown, w.Trend.P99.Direction)

		time.Sleep(98 * time.Minute) // 50 rings later: the slot of the first signals
		s.Observe(ctx, rec("k", tai.Succeeded, tai.Allow, time.Now(), time.Millisecond))
		w = read()
		assert.Equal(t, kaizen.OutcomeCounts{Succeeded: 1}, w.Current.Outcomes)
		assert.Equal(t, time.Millisecond, w.Current.Max)
		empty(w.Previous, "long after, previous")
	})
}

// TestAuditKeyOfAnyLengthVerifies: an HMAC key of the shortest length
// accepted, of the hash's block size, longer than the block (which
// HMAC hashes first) and of the most a key file holds writes a trail
// that verifies with it, and not with a key one byte different.
func TestAuditKeyOfAnyLengthVerifies(t *testing.T) {
	for _, n := range []int{kaizen.MinAuditKeyLen, 64, 65, 1000, kaizen.MaxAuditKeyFile} {
		key := bytes.Repeat([]byte{byte(n)}, n)
		var buf bytes.Buffer
		a, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{Key: key})
		require.NoError(t, err)
		for _, id := range []string{"1", "2"} {
			a.Observe(context.Background(), tai.Record{ID: id, Kind: "k", Outcome: tai.Succeeded})
		}
		require.NoError(t, a.Shutdown(context.Background()))
		sum, err := kaizen.VerifyAuditWith(bytes.NewReader(buf.Bytes()), kaizen.VerifyOptions{Key: key})
		require.NoError(t, err, "%d bytes", n)
		assert.Equal(t, uint64(2), sum.Lines)
		other := bytes.Clone(key)
		other[n-1]++
		_, err = kaizen.VerifyAuditWith(bytes.NewReader(buf.Bytes()), kaizen.VerifyOptions{Key: other})
		var ae *kaizen.AuditError
		require.ErrorAs(t, err, &ae, "%d bytes", n)
		assert.Equal(t, 1, ae.Line)
		assert.Contains(t, ae.Reason, "the key is wrong")
	}
}
