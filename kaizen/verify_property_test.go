package kaizen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// drawnTrail writes a trail of drawn records and returns it whole, each
// line with its newline, and its last hash.
func drawnTrail(rt *rapid.T, opts kaizen.AuditOptions) (data []byte, ends []int, last string) {
	var buf syncBuffer
	opts.Logger = slog.New(slog.DiscardHandler)
	a, err := kaizen.NewAudit(&buf, opts)
	require.NoError(rt, err)
	n := rapid.IntRange(1, 6).Draw(rt, "lines")
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	text := rapid.StringOf(rapid.RuneFrom([]rune{'a', 'é', '"', '\\', '\n', '\r', '<', '\x00', '\u2028', '}', '{'}))
	for i := range n {
		r := tai.Record{
			ID: fmt.Sprintf("sig-%d", i+1), Kind: text.Draw(rt, "kind"), Key: text.Draw(rt, "key"),
			Outcome:  tai.Outcome(rapid.IntRange(0, 3).Draw(rt, "outcome")),
			Decision: tai.Decision{Verdict: tai.Verdict(rapid.IntRange(0, 3).Draw(rt, "verdict")), Reason: text.Draw(rt, "reason")},
			Start:    start.Add(time.Duration(i) * time.Second), Duration: time.Duration(rapid.Int64().Draw(rt, "duration")),
		}
		if e := text.Draw(rt, "err"); e != "" {
			r.Err = errors.New(e)
		}
		if rapid.IntRange(0, 9).Draw(rt, "long") == 0 { // past the reader's buffer of 64 KiB
			r.Decision.Reason += strings.Repeat("x", rapid.IntRange(60<<10, 140<<10).Draw(rt, "longBy"))
		}
		a.Observe(context.Background(), r)
	}
	require.NoError(rt, a.Shutdown(context.Background()))
	last, lines := a.Last()
	require.Equal(rt, uint64(n), lines)
	data = buf.Bytes()
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	require.Len(rt, ends, n)
	return data, ends, last
}

// lineAt returns the 1-based number of the line that holds byte p of a
// trail whose lines end at ends, its newline included.
func lineAt(ends []int, p int) int {
	for i, e := range ends {
		if p < e {
			return i + 1
		}
	}
	return len(ends) + 1
}

// mutated is a trail changed by one mutation, with the line a verifier
// must name (0 when the trail still verifies), with and without the
// trail's last hash expected.
type mutated struct {
	what       string
	data       []byte
	line       int
	lineExpect int
}

func drawMutation(rt *rapid.T, data []byte, ends []int) mutated {
	n := len(ends)
	lineStart := func(k int) int { // of 1-based line k
		if k == 1 {
			return 0
		}
		return ends[k-2]
	}
	lineBytes := func(k int) []byte { return data[lineStart(k):ends[k-1]] }
	switch rapid.IntRange(0, 5).Draw(rt, "mutation") {
	case 0: // one byte changed
		p := rapid.IntRange(0, len(data)-1).Draw(rt, "at")
		b := rapid.Byte().Filter(func(b byte) bool { return b != data[p] }).Draw(rt, "byte")
		d := slices.Clone(data)
		d[p] = b
		return mutated{fmt.Sprintf("byte %d set to %q", p, b), d, lineAt(ends, p), lineAt(ends, p)}
	case 1: // one byte deleted
		p := rapid.IntRange(0, len(data)-1).Draw(rt, "at")
		d := slices.Delete(slices.Clone(data), p, p+1)
		if p == len(data)-1 { // the final newline: a last line without one verifies
			return mutated{"final newline deleted", d, 0, 0}
		}
		return mutated{fmt.Sprintf("byte %d deleted", p), d, lineAt(ends, p), lineAt(ends, p)}
	case 2: // one byte inserted
		p := rapid.IntRange(0, len(data)).Draw(rt, "at")
		b := rapid.Byte().Draw(rt, "byte")
		d := slices.Insert(slices.Clone(data), p, b)
		return mutated{fmt.Sprintf("%q inserted at %d", b, p), d, lineAt(ends, p), lineAt(ends, p)}
	case 3: // cut short
		p := rapid.IntRange(0, len(data)-1).Draw(rt, "at")
		d := slices.Clone(data[:p])
		k := lineAt(ends, p)
		switch {
		case p == lineStart(k): // at a line's start: lines 1 to k-1 verify
			return mutated{fmt.Sprintf("cut at line %d's start", k), d, 0, k}
		case p == ends[k-1]-1 && k == n: // the final newline lost: nothing else
			return mutated{"final newline cut", d, 0, 0}
		case p == ends[k-1]-1: // just its newline lost: line k verifies
			return mutated{fmt.Sprintf("cut at line %d's newline", k), d, 0, k + 1}
		}
		return mutated{fmt.Sprintf("cut in line %d at %d", k, p), d, k, k}
	case 4: // a line deleted
		k := rapid.IntRange(1, n).Draw(rt, "line")
		d := slices.Concat(data[:lineStart(k)], data[ends[k-1]:])
		if k == n {
			return mutated{"last line deleted", d, 0, n}
		}
		return mutated{fmt.Sprintf("line %d deleted", k), d, k, k}
	default: // two lines swapped, or a line copied
		if n == 1 || rapid.Bool().Draw(rt, "copy") {
			k := rapid.IntRange(1, n).Draw(rt, "line")
			d := slices.Concat(data[:ends[k-1]], lineBytes(k), data[ends[k-1]:])
			return mutated{fmt.Sprintf("line %d copied", k), d, k + 1, k + 1}
		}
		i := rapid.IntRange(1, n-1).Draw(rt, "first")
		j := rapid.IntRange(i+1, n).Draw(rt, "second")
		d := slices.Concat(data[:lineStart(i)], lineBytes(j), data[ends[i-1]:lineStart(j)], lineBytes(i), data[ends[j-1]:])
		return mutated{fmt.Sprintf("lines %d and %d swapped", i, j), d, i, i}
	}
}

// TestVerifyAuditNamesTheMutatedLine: every change of one byte, byte
// deleted or inserted, line deleted, copied or swapped, and every cut of
// a trail, keyed or not, is found, and the line named is the one
// changed; a cut at a line's end is found given the last hash.
func TestVerifyAuditNamesTheMutatedLine(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var opts kaizen.AuditOptions
		if rapid.Bool().Draw(rt, "keyed") {
			opts.Key = testKey
		}
		data, ends, last := drawnTrail(rt, opts)
		m := drawMutation(rt, data, ends)
		for _, expect := range []string{"", last} {
			want := m.line
			if expect != "" {
				want = m.lineExpect
			}
			_, err := kaizen.VerifyAuditWith(bytes.NewReader(m.data), kaizen.VerifyOptions{Key: opts.Key, Expect: expect})
			if want == 0 {
				require.NoError(rt, err, "%s, expect %q", m.what, expect)
				continue
			}
			var ae *kaizen.AuditError
			require.ErrorAs(rt, err, &ae, "%s, expect %q", m.what, expect)
			require.Equal(rt, want, ae.Line, "%s, expect %q: %v", m.what, expect, err)
		}
	})
}

// TestVerifyAuditFilesNamesTheMutatedLine: a trail cut into files, as a
// rotation cuts it, some of them empty, verifies as one, and a mutation
// of any of its files is named by file and line within that file.
func TestVerifyAuditFilesNamesTheMutatedLine(t *testing.T) {
	dir := t.TempDir()
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		var opts kaizen.AuditOptions
		if rapid.Bool().Draw(rt, "keyed") {
			opts.Key = testKey
		}
		data, ends, last := drawnTrail(rt, opts)
		// parts[i] holds lines [from[i], from[i+1]) of the trail.
		var parts [][]byte
		from := 0
		for k := 1; k <= len(ends); k++ {
			if k == len(ends) || rapid.Bool().Draw(rt, fmt.Sprintf("cut-%d", k)) {
				start := 0
				if from > 0 {
					start = ends[from-1]
				}
				parts = append(parts, data[start:ends[k-1]])
				from = k
			}
			if rapid.IntRange(0, 5).Draw(rt, fmt.Sprintf("empty-%d", k)) == 0 {
				parts = append(parts, nil) // a rotation can leave one
			}
		}
		var full []int // the parts that hold lines
		for i, p := range parts {
			if len(p) > 0 {
				full = append(full, i)
			}
		}
		j := rapid.SampledFrom(full).Draw(rt, "part")
		lastFull := j == full[len(full)-1]
		var partEnds []int
		for i, c := range parts[j] {
			if c == '\n' {
				partEnds = append(partEnds, i+1)
			}
		}
		m := drawMutation(rt, parts[j], partEnds)
		want := m.lineExpect
		nulNewline := append(slices.Clone(bytes.TrimSuffix(parts[j], []byte{'\n'})), 0)
		if nulAfter := append(slices.Clone(parts[j]), 0); j < len(parts)-1 && (bytes.Equal(m.data, nulNewline) || bytes.Equal(m.data, nulAfter)) {
			want = 0 // what a lost write leaves, which a file before the last may end in
		}
		if want == 0 || m.line > len(partEnds) && !lastFull {
			return // after a file's last line: the file after it shows it, if anything does
		}
		paths := make([]string, len(parts))
		for i, p := range parts {
			if i == j {
				p = m.data
			}
			paths[i] = filepath.Join(dir, fmt.Sprintf("%d-%d.jsonl", run, i))
			require.NoError(rt, os.WriteFile(paths[i], p, 0o600))
		}
		_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: opts.Key, Expect: last}, paths...)
		var ae *kaizen.AuditError
		require.ErrorAs(rt, err, &ae, m.what)
		wantFile := paths[j]
		switch {
		case m.line == 0 && !lastFull:
			// Lines cut from a file's end: the next file that holds one
			// does not continue it.
			wantFile, want = paths[full[slices.Index(full, j)+1]], 1
		case m.line == 0 && j < len(paths)-1:
			// The trail ends before the expected hash: at the line after
			// its last, the first of the empty files after it.
			wantFile, want = paths[len(paths)-1], 1
		}
		require.Equal(rt, wantFile, ae.File, "%s: %v", m.what, err)
		require.Equal(rt, want, ae.Line, "%s: %v", m.what, err)
	})
}

// TestAuditRotationAcrossRestartsVerifiesAsOne: however small the files
// (or in one file, without rotation) and however often a service
// restarts, with a crash that leaves a torn line now and then, its series
// of files verifies as one chain holding every record it was told was
// written, ending at its last hash; without rotation each reopening finds
// every line written before.
func TestAuditRotationAcrossRestartsVerifiesAsOne(t *testing.T) {
	dir := t.TempDir()
	tornLine := trail(t, 1)[0]
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		path := filepath.Join(dir, fmt.Sprintf("audit-%d.jsonl", run))
		// 0: one file, never rotated.
		opts := kaizen.AuditOptions{Logger: slog.New(slog.DiscardHandler), RotateBytes: rapid.Int64Range(0, 1500).Draw(rt, "rotate")}
		if rapid.Bool().Draw(rt, "keyed") {
			opts.Key = testKey
		}
		var want uint64
		var last string
		for i := range rapid.IntRange(1, 5).Draw(rt, "restarts") {
			a, state, err := kaizen.OpenAuditFile(path, opts)
			require.NoError(rt, err)
			if i > 0 {
				require.Equal(rt, last, state.Last)
			}
			if opts.RotateBytes == 0 {
				require.Equal(rt, want, state.Lines)
			}
			for j := range rapid.IntRange(0, 6).Draw(rt, fmt.Sprintf("lines-%d", i)) {
				a.Observe(context.Background(), record(fmt.Sprintf("%d-%d", i, j)))
			}
			require.NoError(rt, a.Shutdown(context.Background()))
			last, _ = a.Last() // its count is the current file's
			want += a.Written()
			if torn := rapid.IntRange(0, len(tornLine)-1).Draw(rt, fmt.Sprintf("torn-%d", i)); torn > 0 {
				files, err := filepath.Glob(path + "*")
				require.NoError(rt, err)
				f, err := os.OpenFile(files[len(files)-1], os.O_WRONLY|os.O_APPEND, 0)
				require.NoError(rt, err)
				_, err = f.WriteString(tornLine[:torn])
				require.NoError(rt, err)
				require.NoError(rt, f.Close())
			}
		}
		a, _, err := kaizen.OpenAuditFile(path, opts) // cuts a torn line off
		require.NoError(rt, err)
		require.NoError(rt, a.Shutdown(context.Background()))
		files, err := filepath.Glob(path + "*")
		require.NoError(rt, err)
		sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: opts.Key, Expect: last}, files...)
		require.NoError(rt, err)
		require.Equal(rt, kaizen.AuditSummary{Lines: want, Last: last}, sum)
	})
}

// TestAuditLineReadsBackAsItsRecord: every line an Audit writes verifies
// and reads back with encoding/json as the AuditEntry of its record: the
// same text (bytes that are not UTF-8 as U+FFFD), numbers, time and
// decision, NaN and infinite scores as zero.
func TestAuditLineReadsBackAsItsRecord(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		text := rapid.OneOf(rapid.String(), rapid.StringOf(rapid.SampledFrom([]rune{'a', '"', '\\', '\n', '\x00', '\u2028', 0xfffd, '<', '&'})),
			rapid.Map(rapid.SliceOf(rapid.Byte()), func(b []byte) string { return string(b) }))
		score := rapid.OneOf(rapid.Float64(), rapid.SampledFrom([]float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), 1e21, 5e-324}))
		r := tai.Record{
			ID: text.Draw(rt, "id"), Kind: text.Draw(rt, "kind"), Key: text.Draw(rt, "key"),
			Outcome: tai.Outcome(rapid.IntRange(0, 3).Draw(rt, "outcome")),
			Decision: tai.Decision{Verdict: tai.Verdict(rapid.IntRange(0, 3).Draw(rt, "verdict")), Policy: text.Draw(rt, "policy"),
				Reason: text.Draw(rt, "reason"), Score: score.Draw(rt, "score"), FailedOpen: rapid.Bool().Draw(rt, "failedOpen")},
			Start:    time.Unix(0, rapid.Int64().Draw(rt, "start")).In(time.FixedZone("x", rapid.IntRange(-50000, 50000).Draw(rt, "zone"))),
			Duration: time.Duration(rapid.Int64().Draw(rt, "duration")),
		}
		for i := range rapid.IntRange(0, 3).Draw(rt, "contributions") {
			r.Decision.Contributions = append(r.Decision.Contributions, tai.Contribution{Rule: text.Draw(rt, fmt.Sprint("rule", i)),
				Weight: score.Draw(rt, fmt.Sprint("weight", i)), Risk: score.Draw(rt, fmt.Sprint("risk", i)),
				Score: score.Draw(rt, fmt.Sprint("cscore", i)), Reason: text.Draw(rt, fmt.Sprint("creason", i))})
		}
		if e := text.Draw(rt, "err"); e != "" {
			r.Err = errors.New(e)
		}
		var buf syncBuffer
		a, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{Logger: slog.New(slog.DiscardHandler)})
		require.NoError(rt, err)
		a.Observe(context.Background(), r)
		require.NoError(rt, a.Shutdown(context.Background()))
		require.Equal(rt, uint64(1), a.Written())
		line := buf.Bytes()
		_, err = kaizen.VerifyAuditWith(bytes.NewReader(line), kaizen.VerifyOptions{})
		require.NoError(rt, err, "%s", line)

		var got kaizen.AuditEntry
		require.NoError(rt, json.Unmarshal(line, &got), "%s", line)
		finite := func(f float64) float64 {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return 0
			}
			return f
		}
		want := kaizen.AuditEntry{Time: r.Start, ID: r.ID, Kind: r.Kind, Key: r.Key, Outcome: r.Outcome.String(),
			Decision: r.Decision, Duration: r.Duration, TraceID: r.Span.TraceID.String(), SpanID: r.Span.SpanID.String()}
		if r.Err != nil {
			want.Error = r.Err.Error()
		}
		want.Decision.Contributions = slices.Clone(want.Decision.Contributions)
		want.Decision.Score = finite(want.Decision.Score)
		for i := range want.Decision.Contributions {
			c := &want.Decision.Contributions[i]
			c.Weight, c.Risk, c.Score = finite(c.Weight), finite(c.Risk), finite(c.Score)
		}
		js, err := json.Marshal(want) // encoding/json's reading of the text: U+FFFD for bytes not UTF-8
		require.NoError(rt, err)
		want = kaizen.AuditEntry{}
		require.NoError(rt, json.Unmarshal(js, &want))
		want.Prev, want.Hash = got.Prev, got.Hash
		require.True(rt, r.Start.Equal(got.Time), "time %v, want %v", got.Time, r.Start)
		want.Time = got.Time
		require.Equal(rt, want, got, "%s", line)
	})
}

// TestOpenAuditFileAgreesWithVerify: OpenAuditFile appends to a changed
// trail only where VerifyAuditFiles finds nothing wrong but the end a
// crash leaves, which it cuts off, and refuses it otherwise, naming the
// line VerifyAuditFiles names; a file it refuses is left as it was.
func TestOpenAuditFileAgreesWithVerify(t *testing.T) {
	dir := t.TempDir()
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		var opts kaizen.AuditOptions
		if rapid.Bool().Draw(rt, "keyed") {
			opts.Key = testKey
		}
		data, ends, _ := drawnTrail(rt, opts)
		m := drawMutation(rt, data, ends)
		path := filepath.Join(dir, fmt.Sprintf("%d.jsonl", run))
		require.NoError(rt, os.WriteFile(path, m.data, 0o600))
		sum, verr := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: opts.Key}, path)
		opts.Logger = slog.New(slog.DiscardHandler)
		a, state, oerr := kaizen.OpenAuditFile(path, opts)
		var vae, oae *kaizen.AuditError
		switch {
		case verr == nil:
			require.NoError(rt, oerr, m.what)
			require.Equal(rt, sum, state.AuditSummary, m.what)
			require.Zero(rt, state.Cut, m.what)
		case oerr == nil: // a repair: of the end of the file alone
			require.ErrorAs(rt, verr, &vae, m.what)
			require.Positive(rt, state.Cut, "%s: %v", m.what, verr)
			require.Contains(rt, []uint64{uint64(vae.Line - 1), uint64(vae.Line)}, state.Lines, "%s: %v", m.what, verr)
			require.Equal(rt, int64(len(m.data)), int64(linesLen(m.data, int(state.Lines)))+state.Cut, "%s: %v; %+v", m.what, verr, state)
		default:
			require.ErrorAs(rt, verr, &vae, m.what)
			require.ErrorAs(rt, oerr, &oae, "%s: %v", m.what, oerr)
			require.Equal(rt, *vae, *oae, m.what)
			got, err := os.ReadFile(path)
			require.NoError(rt, err)
			require.Equal(rt, m.data, got, "%s: a refused file is left as it was", m.what)
			return
		}
		a.Observe(context.Background(), record("after"))
		require.NoError(rt, a.Shutdown(context.Background()))
		after, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: opts.Key}, path)
		require.NoError(rt, err, m.what)
		require.Equal(rt, state.Lines+1, after.Lines, m.what)
	})
}

// linesLen returns the length of the first n lines of data, their newlines
// included, the last one's when it has one (not the NUL bytes that may
// follow it instead).
func linesLen(data []byte, n int) int {
	end := 0
	for range n {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			return end + len(bytes.TrimRight(data[end:], "\x00"))
		}
		end += i + 1
	}
	return end
}

// shortWriter takes up to room bytes, the rest of the Write that reaches
// it included, and then fails every Write, as a full disk does.
type shortWriter struct {
	buf    bytes.Buffer
	room   int
	failed bool
}

func (w *shortWriter) Write(p []byte) (int, error) {
	n := min(len(p), w.room)
	w.buf.Write(p[:n])
	w.room -= n
	if n < len(p) {
		w.failed = true
		return n, errors.New("no space left on device")
	}
	return n, nil
}

// TestAuditWriteFailureSettlesEveryRecord: whenever the writer fails, the
// trail holds the records it counts as written, first to last, as a
// prefix that verifies (but for a line cut short at its end); every
// other record goes to OnUnwritten, in order, and is counted as
// unwritten.
func TestAuditWriteFailureSettlesEveryRecord(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 8).Draw(rt, "records")
		recs := make([]tai.Record, n)
		for i := range recs {
			recs[i] = record(fmt.Sprintf("r%d-%s", i, rapid.StringN(0, 40, -1).Draw(rt, "id")))
		}
		opts := kaizen.AuditOptions{
			Buffer:     rapid.IntRange(1, 4).Draw(rt, "buffer"),
			BatchBytes: rapid.IntRange(1, 2000).Draw(rt, "batch"),
			Logger:     slog.New(slog.DiscardHandler),
		}
		if rapid.Bool().Draw(rt, "keyed") {
			opts.Key = testKey
		}
		var full syncBuffer // what a writer that does not fail gets
		a, err := kaizen.NewAudit(&full, opts)
		require.NoError(rt, err)
		for _, r := range recs {
			a.Observe(context.Background(), r)
		}
		require.NoError(rt, a.Shutdown(context.Background()))

		w := &shortWriter{room: rapid.IntRange(0, len(full.Bytes())+1).Draw(rt, "room")}
		// OnUnwritten runs on the writer goroutine for the records
		// queued, and on the one calling Observe for those observed once
		// the trail has stopped: the two may take turns.
		var mu sync.Mutex
		var lost []string
		opts.OnUnwritten = func(r tai.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				lost = append(lost, r.ID)
			}
		}
		a, err = kaizen.NewAudit(w, opts)
		require.NoError(rt, err)
		for _, r := range recs {
			a.Observe(context.Background(), r)
		}
		serr := a.Shutdown(context.Background())
		got := w.buf.Bytes()
		require.True(rt, bytes.HasPrefix(full.Bytes(), got))
		if !w.failed {
			require.NoError(rt, serr)
			require.Equal(rt, uint64(n), a.Written())
			require.Empty(rt, lost)
			return
		}
		require.Error(rt, serr)
		complete := bytes.Count(got, []byte{'\n'})
		if complete < n && len(got) == linesLen(full.Bytes(), complete+1)-1 {
			complete++ // all but its newline: it verifies as the last line
		}
		require.Equal(rt, uint64(complete), a.Written(), "%q", got)
		require.Equal(rt, uint64(n-complete), a.Unwritten())
		var want []string
		for _, r := range recs[complete:] {
			want = append(want, r.ID)
		}
		require.ElementsMatch(rt, want, lost)
		sum, err := kaizen.VerifyAuditWith(bytes.NewReader(got[:linesLen(got, complete)]), kaizen.VerifyOptions{Key: opts.Key})
		require.NoError(rt, err)
		require.Equal(rt, uint64(complete), sum.Lines)
		last, lines := a.Last() // a writer without Sync: durable once written
		require.Equal(rt, sum, kaizen.AuditSummary{Lines: lines, Last: last})
	})
}

// TestStatsManyKindsConcurrently: goroutines racing to add more kinds
// than MaxKinds keep exactly MaxKinds of them, and every record is either
// counted under its kind or in Dropped.
func TestStatsManyKindsConcurrently(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		maxKinds := rapid.IntRange(1, 40).Draw(rt, "maxKinds")
		kinds := rapid.IntRange(1, 80).Draw(rt, "kinds")
		per := rapid.IntRange(1, 50).Draw(rt, "perGoroutine")
		const goroutines = 4
		var failure string
		synctest.Test(t, func(*testing.T) { // the records' time stays in one slot
			s, err := kaizen.NewStats(kaizen.StatsOptions{MaxKinds: maxKinds})
			if err != nil {
				failure = err.Error()
				return
			}
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range per {
						s.Observe(context.Background(), tai.Record{Kind: fmt.Sprint((g*per + i) % kinds), Duration: time.Millisecond})
					}
				})
			}
			wg.Wait()
			snap := s.Snapshot()
			if want := min(kinds, maxKinds, goroutines*per); len(snap.Kinds) != want {
				failure = fmt.Sprintf("%d kinds kept, want %d", len(snap.Kinds), want)
				return
			}
			total := snap.Dropped
			for name := range snap.Kinds {
				w, _ := s.Window(name, time.Minute)
				total += w.Current.Total
			}
			if total != goroutines*uint64(per) {
				failure = fmt.Sprintf("%d records counted or dropped, want %d", total, goroutines*per)
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}
