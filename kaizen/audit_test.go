package kaizen_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kaizen/internal/pipelinetest"
	"github.com/taipattern/taikit/tai"
)

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func lines(b []byte) []string {
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func newAudit(t *testing.T, w interface{ Write([]byte) (int, error) }, opts kaizen.AuditOptions) *kaizen.Audit {
	t.Helper()
	a, err := kaizen.NewAudit(w, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	return a
}

func TestNewAuditValidates(t *testing.T) {
	cases := []struct {
		name string
		opts kaizen.AuditOptions
		want string
	}{
		{"buffer", kaizen.AuditOptions{Buffer: -1}, "AuditOptions.Buffer -1"},
		{"buffer huge", kaizen.AuditOptions{Buffer: 1 << 30}, "AuditOptions.Buffer 1073741824"},
		{"batch", kaizen.AuditOptions{BatchBytes: -5}, "AuditOptions.BatchBytes -5"},
		{"batch huge", kaizen.AuditOptions{BatchBytes: 64<<20 + 1}, "AuditOptions.BatchBytes 67108865"},
		{"genesis", kaizen.AuditOptions{Genesis: "abc"}, `AuditOptions.Genesis "abc": want 64 hex digits, got 3 characters`},
		{"genesis short", kaizen.AuditOptions{Genesis: "abcd"}, `AuditOptions.Genesis "abcd": want 64 hex digits, got 4 characters`},
		{"genesis hex", kaizen.AuditOptions{Genesis: strings.Repeat("zz", 32)}, "AuditOptions.Genesis"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := kaizen.NewAudit(&bytes.Buffer{}, c.opts)
			require.ErrorContains(t, err, "kaizen: "+c.want)
		})
	}
	_, err := kaizen.NewAudit(nil, kaizen.AuditOptions{})
	require.ErrorContains(t, err, "nil io.Writer")
	// A nil pointer in the interface (a file whose open failed, its error
	// dropped) would start a trail that fails at its first line.
	var file *os.File
	_, err = kaizen.NewAudit(file, kaizen.AuditOptions{})
	require.ErrorContains(t, err, "kaizen: NewAudit: nil io.Writer (a nil *os.File)")
	var buf *bytes.Buffer
	_, err = kaizen.NewAudit(buf, kaizen.AuditOptions{})
	require.ErrorContains(t, err, "kaizen: NewAudit: nil io.Writer (a nil *bytes.Buffer)")

	for _, opts := range []kaizen.AuditOptions{{Buffer: 1, BatchBytes: 1}, {Buffer: 1 << 20, BatchBytes: 64 << 20}} {
		a, err := kaizen.NewAudit(&bytes.Buffer{}, opts)
		require.NoError(t, err, "%+v is within the bounds", opts)
		require.NoError(t, a.Shutdown(context.Background()))
	}
}

// countingWriter records the length of every Write.
type countingWriter struct {
	mu     sync.Mutex
	writes []int
	buf    bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, len(p))
	return w.buf.Write(p)
}

// TestAuditBatchBytes: lines queued while the writer is busy go out
// together, in Writes of BatchBytes or more only when one line alone is
// longer.
func TestAuditBatchBytes(t *testing.T) {
	// Every line of these records has the same length.
	recs := make([]tai.Record, 6)
	for i := range recs {
		recs[i] = tai.Record{ID: strconv.Itoa(i), Kind: "k", Start: time.Unix(1, 0)}
	}
	var probe syncBuffer
	pa := newAudit(t, &probe, kaizen.AuditOptions{})
	pa.Observe(context.Background(), recs[0])
	require.NoError(t, pa.Shutdown(context.Background()))
	lineLen := len(probe.Bytes())

	for _, c := range []struct {
		batch int
		want  []int
	}{
		{batch: lineLen, want: []int{1, 1, 1, 1, 1, 1}},
		{batch: lineLen + 1, want: []int{1, 2, 2, 1}},
		{batch: 3 * lineLen, want: []int{1, 3, 2}},
		{batch: 1, want: []int{1, 1, 1, 1, 1, 1}},
	} {
		synctest.Test(t, func(t *testing.T) {
			w := &countingWriter{}
			bw := &blockingWriter{release: make(chan struct{})}
			first := true
			a, err := kaizen.NewAudit(writerFunc(func(p []byte) (int, error) {
				if first { // the first Write waits until every record is queued
					first = false
					if _, err := bw.Write(nil); err != nil {
						return 0, err
					}
				}
				return w.Write(p)
			}), kaizen.AuditOptions{BatchBytes: c.batch})
			require.NoError(t, err)
			for _, r := range recs {
				a.Observe(context.Background(), r)
				synctest.Wait()
			}
			close(bw.release)
			require.NoError(t, a.Shutdown(context.Background()))
			lines := make([]int, len(w.writes))
			for i, n := range w.writes {
				require.Zero(t, n%lineLen, "a Write holds whole lines")
				lines[i] = n / lineLen
			}
			assert.Equal(t, c.want, lines, "lines per Write with BatchBytes %d (a line is %d bytes)", c.batch, lineLen)
			require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(w.buf.Bytes())))
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// idTracer is a tai.Tracer that gives each span the next IDs, sampled, as
// a tracing SDK would.
type idTracer struct{ n atomic.Uint64 }

type idSpan struct{ sc tai.SpanContext }

func (idSpan) End(error)                      {}
func (s idSpan) SpanContext() tai.SpanContext { return s.sc }

func (t *idTracer) Start(ctx context.Context, _ tai.SpanInfo) (context.Context, tai.Span) {
	n := t.n.Add(1)
	sc := tai.SpanContext{Sampled: true}
	binary.BigEndian.PutUint64(sc.TraceID[8:], n)
	binary.BigEndian.PutUint64(sc.SpanID[:], n)
	return ctx, idSpan{sc}
}

func TestAuditThroughPipeline(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{})
	p, err := pipelinetest.New(tai.WithObservers(a), tai.WithTracer(new(idTracer)))
	require.NoError(t, err)
	sigs := pipelinetest.Signals()
	results := make([]tai.Result[string], len(sigs))
	for i, s := range sigs {
		results[i], _ = p.Process(context.Background(), s)
	}
	require.NoError(t, a.Flush(context.Background()))
	assert.Equal(t, uint64(len(sigs)), a.Written())

	out := buf.Bytes()
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(out)))
	ls := lines(out)
	require.Len(t, ls, len(sigs))
	prev := kaizen.GenesisHash
	for i, l := range ls {
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal([]byte(l), &e), l)
		assert.Equal(t, sigs[i].ID, e.ID)
		assert.Equal(t, "payment", e.Kind)
		assert.Equal(t, sigs[i].Key, e.Key)
		assert.Equal(t, results[i].Outcome.String(), e.Outcome)
		assert.Equal(t, results[i].Decision.Verdict, e.Decision.Verdict)
		require.True(t, results[i].Span.TraceID.IsValid())
		assert.Equal(t, results[i].Span.TraceID.String(), e.TraceID)
		assert.Equal(t, results[i].Span.SpanID.String(), e.SpanID)
		assert.Positive(t, e.Duration)
		assert.False(t, e.Time.IsZero())
		assert.Equal(t, prev, e.Prev, "line %d links to the one before", i+1)
		prev = e.Hash
	}
	var denied kaizen.AuditEntry
	require.NoError(t, json.Unmarshal([]byte(ls[1]), &denied))
	assert.Equal(t, "fraud", denied.Decision.Policy)
	assert.Equal(t, "amount over 5000", denied.Decision.Reason)
	require.Len(t, denied.Decision.Contributions, 2)
	assert.Equal(t, "velocity", denied.Decision.Contributions[1].Rule)
	assert.InDelta(t, 0.04, denied.Decision.Contributions[1].Score, 1e-9)
	assert.Contains(t, denied.Error, "deny")
	var failed kaizen.AuditEntry
	require.NoError(t, json.Unmarshal([]byte(ls[4]), &failed))
	assert.Equal(t, pipelinetest.ErrGateway.Error(), failed.Error)
}

func TestAuditEncodesStringsExactly(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{})
	tricky := []string{"quote \" backslash \\ slash /", "nl\nret\rtab\t", "ctl \x00\x01\x1f\x7f", "ünïcødé ✓ 🚀", "<script>&amp;", "\u2028\u2029", "a real \ufffd replacement character", ""}
	for i, s := range tricky {
		a.Observe(context.Background(), tai.Record{ID: fmt.Sprint(i), Kind: "k", Key: s,
			Decision: tai.Decision{Verdict: tai.Allow, Reason: s, Score: 0.125,
				Contributions: []tai.Contribution{{Rule: s, Weight: 1, Risk: 0.5, Score: 0.5, Reason: s}}},
			Err: errors.New(s)})
	}
	a.Observe(context.Background(), tai.Record{ID: "bad", Kind: "k", Key: "bad \xff utf8"})
	require.NoError(t, a.Flush(context.Background()))
	ls := lines(buf.Bytes())
	for i, s := range tricky {
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal([]byte(ls[i]), &e))
		assert.Equal(t, s, e.Key)
		assert.Equal(t, s, e.Decision.Reason)
		assert.Equal(t, s, e.Decision.Contributions[0].Reason)
		assert.Equal(t, s, e.Error)
		assert.InDelta(t, 0.125, e.Decision.Score, 0)
	}
	var e kaizen.AuditEntry
	require.NoError(t, json.Unmarshal([]byte(ls[len(tricky)]), &e))
	assert.Equal(t, "bad \ufffd utf8", e.Key)
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}

// TestAuditWritesValidUTF8 reads the trail back as bytes from the file,
// without decoding it first: encoding/json would turn raw invalid UTF-8
// into U+FFFD on the way in and hide a trail that other readers (jq, a
// log shipper, a strict JSON parser) reject. Each invalid byte must be
// written as the escape \ufffd, as encoding/json writes it, and the
// line's hash must cover those bytes.
func TestAuditWritesValidUTF8(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	f, err := os.Create(path)
	require.NoError(t, err)
	a := newAudit(t, f, kaizen.AuditOptions{})
	invalid := []string{
		"bad \xff utf8",          // a byte that never starts a rune
		"cut \xe2\x82",           // a rune cut short
		"surrogate \xed\xa0\x80", // UTF-16 surrogates are not UTF-8
		"overlong \xc0\xaf",      // an overlong '/'
		"\x80",                   // a lone continuation byte
	}
	for i, s := range invalid {
		a.Observe(context.Background(), tai.Record{ID: "id " + s, Kind: "kind " + s, Key: s,
			Decision: tai.Decision{Verdict: tai.Deny, Policy: "policy " + s, Reason: s,
				Contributions: []tai.Contribution{{Rule: "rule " + s, Reason: s}}},
			Outcome: tai.Denied, Err: errors.New(s), Start: time.Unix(int64(i), 0)})
	}
	require.NoError(t, a.Shutdown(context.Background()))
	require.NoError(t, f.Close())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, utf8.Valid(raw), "the file is valid UTF-8")
	ls := lines(raw)
	require.Len(t, ls, len(invalid))
	for i, s := range invalid {
		line := []byte(ls[i])
		require.True(t, json.Valid(line), "line %d is valid JSON: %s", i+1, line)
		want, err := json.Marshal(s) // encoding/json's replacement
		require.NoError(t, err)
		wantField := string(want)
		for _, field := range []string{`"key":`, `"reason":`, `"error":`} {
			assert.Contains(t, ls[i], field+wantField, "line %d: %s holds each invalid byte as \\ufffd", i+1, field)
		}
		assert.Contains(t, ls[i], `"id":"id `+wantField[1:])
		assert.Contains(t, ls[i], `"kind":"kind `+wantField[1:])
		assert.Contains(t, ls[i], `"policy":"policy `+wantField[1:])
		assert.Contains(t, ls[i], `"rule":"rule `+wantField[1:])
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal(line, &e))
		var text string
		require.NoError(t, json.Unmarshal(want, &text))
		assert.Equal(t, text, e.Key, "read back, the key is what encoding/json makes of it")
	}
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(raw)), "the hash covers the bytes as written")
}

// TestAuditEncodesNumbersJSONCanHold: NaN and infinities, which JSON
// cannot hold, are written as null; the line stays valid and verifies.
func TestAuditEncodesNumbersJSONCanHold(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{})
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Decision: tai.Decision{Verdict: tai.Allow, Score: f,
			FailedOpen:    true,
			Contributions: []tai.Contribution{{Rule: "r", Weight: f, Risk: f, Score: f}}}})
	}
	a.Observe(context.Background(), tai.Record{ID: "2", Kind: "k", Duration: -3, Decision: tai.Decision{Verdict: tai.Deny, Score: 0.25}})
	require.NoError(t, a.Flush(context.Background()))
	ls := lines(buf.Bytes())
	require.Len(t, ls, 4)
	for _, l := range ls[:3] {
		require.True(t, json.Valid([]byte(l)), l)
		assert.Contains(t, l, `"decision":{"verdict":"allow","policy":"","reason":"","score":null,"contributions":[{"rule":"r","weight":null,"risk":null,"score":null,"reason":""}],"failed_open":true}`)
	}
	assert.Contains(t, ls[3], `"decision":{"verdict":"deny","policy":"","reason":"","score":0.25},"error":"","duration_ns":-3,`,
		"no contributions, not failed open")
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}

// TestAuditReadsBackAVerdictOutsideTheEnum: a record whose verdict is
// none of tai's (observed directly, or set so by Redact) is written as
// one encoding/json reads back into an AuditEntry: none, as the pipeline
// counts a verdict that is not Valid. "verdict(7)" made the line one that
// verified but that no reader of AuditEntry could decode.
func TestAuditReadsBackAVerdictOutsideTheEnum(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{Redact: func(e *kaizen.AuditEntry) {
		if e.ID == "2" {
			e.Decision.Verdict = 200
		}
	}})
	a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Decision: tai.Decision{Verdict: 7, Policy: "p"}})
	a.Observe(context.Background(), tai.Record{ID: "2", Kind: "k", Decision: tai.Decision{Verdict: tai.Deny}})
	a.Observe(context.Background(), tai.Record{ID: "3", Kind: "k", Decision: tai.Decision{Verdict: tai.Review}})
	require.NoError(t, a.Flush(context.Background()))
	ls := lines(buf.Bytes())
	require.Len(t, ls, 3)
	for i, want := range []tai.Verdict{0, 0, tai.Review} {
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal([]byte(ls[i]), &e), ls[i])
		assert.Equal(t, want, e.Decision.Verdict, ls[i])
	}
	assert.Contains(t, ls[0], `"decision":{"verdict":"none","policy":"p",`)
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}

func TestAuditWritesDecisionInputs(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{})
	in := []byte("{\n  \"payload\": {\"Amount\": 12.5},\n  \"vars\": {\"attempts\": 3}\n}")
	a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Decision: tai.Decision{Verdict: tai.Allow, Inputs: in}})
	a.Observe(context.Background(), tai.Record{ID: "2", Kind: "k", Decision: tai.Decision{Verdict: tai.Deny, Inputs: []byte(`{"cut`)}})
	require.NoError(t, a.Flush(context.Background()))
	ls := lines(buf.Bytes())
	require.Len(t, ls, 2)
	assert.Contains(t, ls[0], `"score":0,"inputs":{"payload":{"Amount":12.5},"vars":{"attempts":3}}}`, "compacted onto the line")
	var e kaizen.AuditEntry
	require.NoError(t, json.Unmarshal([]byte(ls[0]), &e))
	assert.JSONEq(t, string(in), string(e.Decision.Inputs))
	require.NoError(t, json.Unmarshal([]byte(ls[1]), &e))
	assert.Equal(t, `"{\"cut"`, string(e.Decision.Inputs), "invalid JSON is kept as a string")
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}

// TestAuditWritesInputsAsValidUTF8: inputs that are valid JSON but hold
// bytes that are not UTF-8 in a string (a policy that builds its inputs
// by hand) are written with each bad byte as the escape \ufffd, as the
// other fields are, so the trail stays valid UTF-8 for every reader, and
// read back they are what encoding/json makes of them.
func TestAuditWritesInputsAsValidUTF8(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{})
	in := []byte("{\"name\": \"bad \xff utf8\", \"cut\": \"\xe2\x82\", \"ok\": \"é ✓\"}")
	require.True(t, json.Valid(in))
	a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Decision: tai.Decision{Verdict: tai.Allow, Inputs: in}})
	require.NoError(t, a.Flush(context.Background()))
	raw := buf.Bytes()
	require.True(t, utf8.Valid(raw), "the trail is valid UTF-8: %q", raw)
	ls := lines(raw)
	require.Len(t, ls, 1)
	assert.Contains(t, ls[0], `"inputs":{"name":"bad \ufffd utf8","cut":"\ufffd\ufffd","ok":"é ✓"}}`)
	var e kaizen.AuditEntry
	require.NoError(t, json.Unmarshal([]byte(ls[0]), &e))
	var got, want any
	require.NoError(t, json.Unmarshal(e.Decision.Inputs, &got))
	require.NoError(t, json.Unmarshal(in, &want))
	assert.Equal(t, want, got, "read back as encoding/json reads the inputs given")
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(raw)))
}

// Inputs nested as deeply as encoding/json allows, 10000 levels, make a
// line nested two levels deeper, which json.Valid refuses: such inputs go
// on the line as a string, and the line verifies.
func TestAuditDeeplyNestedInputs(t *testing.T) {
	for _, depth := range []int{9998, 9999, 10000} {
		var buf syncBuffer
		a := newAudit(t, &buf, kaizen.AuditOptions{})
		in := strings.Repeat("[", depth-1) + `{"a":"]}\\\"["}` + strings.Repeat("]", depth-1)
		a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Decision: tai.Decision{Verdict: tai.Allow, Inputs: []byte(in)}})
		require.NoError(t, a.Flush(context.Background()))
		require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())), "inputs %d deep", depth)
		ls := lines(buf.Bytes())
		require.Len(t, ls, 1)
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal([]byte(ls[0]), &e), "inputs %d deep", depth)
		if depth <= 9998 {
			assert.Equal(t, in, string(e.Decision.Inputs), "compacted onto the line")
			continue
		}
		var s string
		require.NoError(t, json.Unmarshal(e.Decision.Inputs, &s), "inputs %d deep are a string", depth)
		assert.Equal(t, in, s)
	}
}

func TestAuditRedact(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{Redact: func(e *kaizen.AuditEntry) {
		e.Key = "cust_***"
		e.Decision.Reason = strings.ReplaceAll(e.Decision.Reason, "4111111111111111", "[card]")
		for i := range e.Decision.Contributions {
			e.Decision.Contributions[i].Reason = "[redacted]"
		}
		e.Error = "[redacted]"
	}})
	contribs := []tai.Contribution{{Rule: "blacklist", Weight: 1, Risk: 1, Score: 1, Reason: "card 4111111111111111 listed"}}
	r := tai.Record{ID: "1", Kind: "payment", Key: "cust_42", Outcome: tai.Denied,
		Decision: tai.Decision{Verdict: tai.Deny, Reason: "card 4111111111111111 listed", Contributions: contribs},
		Err:      errors.New("card 4111111111111111 listed")}
	a.Observe(context.Background(), r)
	require.NoError(t, a.Flush(context.Background()))
	out := string(buf.Bytes())
	assert.NotContains(t, out, "4111111111111111")
	assert.NotContains(t, out, "cust_42")
	assert.Contains(t, out, `"key":"cust_***"`)
	assert.Contains(t, out, `"reason":"card [card] listed"`)
	assert.Equal(t, "card 4111111111111111 listed", contribs[0].Reason, "the record's contributions are not changed")
	require.NoError(t, kaizen.VerifyAudit(strings.NewReader(out)), "the redacted line is what is hashed")
}

// Redact may mask a decision's inputs in place, as it may its
// contributions: they are a copy, and the record, which the pipeline's
// caller and other observers may keep, is not changed.
func TestAuditRedactInputsInPlace(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{Redact: func(e *kaizen.AuditEntry) {
		for i, c := range e.Decision.Inputs {
			if c >= '0' && c <= '9' {
				e.Decision.Inputs[i] = '0'
			}
		}
	}})
	inputs := json.RawMessage(`{"card":"4111111111111111"}`)
	a.Observe(context.Background(), tai.Record{ID: "1", Kind: "payment", Outcome: tai.Denied,
		Decision: tai.Decision{Verdict: tai.Deny, Inputs: inputs}})
	require.NoError(t, a.Flush(context.Background()))
	out := string(buf.Bytes())
	assert.Contains(t, out, `"inputs":{"card":"0000000000000000"}`)
	assert.JSONEq(t, `{"card":"4111111111111111"}`, string(inputs), "the record's inputs are not changed")
}

// Redact may append to the copies of an empty Inputs and Contributions:
// what it appends lands in memory of its own, not in the spare capacity
// of the record's slices, which the pipeline's caller and other
// observers share.
func TestAuditRedactAppendsToEmptyInputsInPlace(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{Redact: func(e *kaizen.AuditEntry) {
		e.Decision.Inputs = append(e.Decision.Inputs, `{"masked":true}`...)
		e.Decision.Contributions = append(e.Decision.Contributions, tai.Contribution{Rule: "masked"})
	}})
	inputs := make(json.RawMessage, 0, 64)
	contributions := make([]tai.Contribution, 0, 4)
	a.Observe(context.Background(), tai.Record{ID: "1", Kind: "payment", Outcome: tai.Denied,
		Decision: tai.Decision{Verdict: tai.Deny, Inputs: inputs, Contributions: contributions}})
	require.NoError(t, a.Flush(context.Background()))
	assert.Contains(t, string(buf.Bytes()), `"inputs":{"masked":true}`)
	assert.Equal(t, make(json.RawMessage, 64), inputs[:cap(inputs)], "the record's inputs' memory is not written")
	assert.Equal(t, make([]tai.Contribution, 4), contributions[:cap(contributions)], "the record's contributions' memory is not written")
}

// panickyError's Error method panics.
type panickyError struct{}

func (*panickyError) Error() string { panic("no message") }

// A record whose Redact, or whose error's Error method, panics is handed
// to OnUnwritten and not written; the process goes on, and so does the
// trail.
func TestAuditRedactPanics(t *testing.T) {
	var buf syncBuffer
	var mu sync.Mutex
	unwritten := map[string]error{}
	a := newAudit(t, &buf, kaizen.AuditOptions{
		Redact: func(e *kaizen.AuditEntry) {
			if e.Key == "cust_bad" {
				panic("redact: unexpected key")
			}
			e.Key = "cust_***"
		},
		OnUnwritten: func(r tai.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			unwritten[r.ID] = err
		},
	})
	ctx := context.Background()
	a.Observe(ctx, tai.Record{ID: "1", Kind: "payment", Key: "cust_1", Outcome: tai.Succeeded})
	a.Observe(ctx, tai.Record{ID: "2", Kind: "payment", Key: "cust_bad", Outcome: tai.Succeeded})
	a.Observe(ctx, tai.Record{ID: "3", Kind: "payment", Key: "cust_3", Outcome: tai.Failed, Err: &panickyError{}})
	a.Observe(ctx, tai.Record{ID: "4", Kind: "payment", Key: "cust_4", Outcome: tai.Succeeded})
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, a.Err(), "the trail goes on")

	out := string(buf.Bytes())
	assert.NotContains(t, out, "cust_bad", "nothing Redact was to hide is written")
	assert.Contains(t, out, `"id":"1"`)
	assert.Contains(t, out, `"id":"4"`)
	assert.Equal(t, 2, strings.Count(out, "\n"))
	assert.EqualValues(t, 2, a.Written())
	assert.EqualValues(t, 2, a.Unwritten())
	require.NoError(t, kaizen.VerifyAudit(strings.NewReader(out)), "the lines written chain")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, unwritten, 2)
	assert.ErrorContains(t, unwritten["2"], "panic in AuditOptions.Redact: redact: unexpected key")
	assert.ErrorContains(t, unwritten["3"], "panic in the record's Err.Error: no message")
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	buf     syncBuffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.buf.Write(p)
}

func TestAuditBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &blockingWriter{release: make(chan struct{})}
		a, err := kaizen.NewAudit(w, kaizen.AuditOptions{Buffer: 1})
		require.NoError(t, err)
		ctx := context.Background()
		a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
		synctest.Wait()                                // the writer took record 1 and blocks in Write
		a.Observe(ctx, tai.Record{ID: "2", Kind: "k"}) // fills the queue

		var third sync.WaitGroup
		returned := false
		third.Go(func() {
			a.Observe(ctx, tai.Record{ID: "3", Kind: "k"})
			returned = true
		})
		synctest.Wait()
		assert.False(t, returned, "Observe blocks while the queue is full")

		// A cancelled context does not make it give up.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		var fourth sync.WaitGroup
		fourth.Go(func() { a.Observe(cctx, tai.Record{ID: "4", Kind: "k"}) })
		synctest.Wait()

		close(w.release)
		third.Wait()
		fourth.Wait()
		require.NoError(t, a.Shutdown(ctx))
		assert.True(t, returned)
		assert.Equal(t, uint64(4), a.Written())
		assert.Zero(t, a.Unwritten())
		require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(w.buf.Bytes())))
		assert.Len(t, lines(w.buf.Bytes()), 4)
	})
}

func TestAuditShutdownHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &blockingWriter{release: make(chan struct{})}
		a, err := kaizen.NewAudit(w, kaizen.AuditOptions{})
		require.NoError(t, err)
		a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k"})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		require.ErrorIs(t, a.Shutdown(ctx), context.DeadlineExceeded, "the writer is stuck; Shutdown gives up waiting")
		fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
		defer fcancel()
		close(w.release)
		require.NoError(t, a.Shutdown(context.Background()), "a second Shutdown waits for the same drain")
		require.NoError(t, a.Flush(fctx), "Flush after Shutdown has nothing to do")
		assert.Equal(t, uint64(1), a.Written())
	})
}

// TestAuditFlushWaitsForAShutdownDrain: a Flush after a Shutdown that
// gave up waiting returns once the drain has written the records observed
// before it, not at once as if they were written.
func TestAuditFlushWaitsForAShutdownDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &blockingWriter{release: make(chan struct{})}
		a, err := kaizen.NewAudit(w, kaizen.AuditOptions{})
		require.NoError(t, err)
		a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k"})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		require.ErrorIs(t, a.Shutdown(ctx), context.DeadlineExceeded)

		fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
		defer fcancel()
		assert.ErrorIs(t, a.Flush(fctx), context.DeadlineExceeded, "the record is not written yet")
		assert.Zero(t, a.Written())

		flushed := make(chan error, 1)
		go func() { flushed <- a.Flush(context.Background()) }()
		synctest.Wait()
		assert.Empty(t, flushed, "Flush waits for the drain")
		close(w.release)
		require.NoError(t, <-flushed)
		assert.Equal(t, uint64(1), a.Written(), "the record observed before Flush is written")
	})
}

// TestAuditShutdownDoneBeforeItsContextEnded: once the writer goroutine
// has ended, Shutdown and Flush report how the trail ended, whatever the
// context given them: the drain ended before the context did. A failed
// trail's error, not the context's, tells the caller records were lost.
func TestAuditShutdownDoneBeforeItsContextEnded(t *testing.T) {
	ctx := context.Background()
	ended, cancel := context.WithCancel(ctx)
	cancel()

	a := newAudit(t, &syncBuffer{}, kaizen.AuditOptions{})
	a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
	require.NoError(t, a.Shutdown(ctx))
	for range 64 {
		require.NoError(t, a.Shutdown(ended), "the trail was written and synced before")
		require.NoError(t, a.Flush(ended), "the trail was written and synced before")
	}

	failed := newAudit(t, writerFunc(func([]byte) (int, error) { return 0, errDiskFull }),
		kaizen.AuditOptions{OnUnwritten: func(tai.Record, error) {}})
	failed.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
	require.ErrorIs(t, failed.Shutdown(ctx), errDiskFull)
	for range 64 {
		require.ErrorIs(t, failed.Shutdown(ended), errDiskFull)
		require.ErrorIs(t, failed.Flush(ended), errDiskFull)
	}
}

func TestAuditShutdownStopsItsGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		ctx := context.Background()
		w := &blockingWriter{release: make(chan struct{})}
		a, err := kaizen.NewAudit(w, kaizen.AuditOptions{Buffer: 1, OnUnwritten: func(tai.Record, error) {}})
		require.NoError(t, err)
		a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
		synctest.Wait() // the writer took record 1 and blocks in Write
		a.Observe(ctx, tai.Record{ID: "2", Kind: "k"})
		var third sync.WaitGroup
		third.Go(func() { a.Observe(ctx, tai.Record{ID: "3", Kind: "k"}) }) // blocks: the queue is full
		synctest.Wait()

		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		require.ErrorIs(t, a.Shutdown(sctx), context.DeadlineExceeded)
		close(w.release)
		third.Wait()
		require.NoError(t, a.Shutdown(ctx))
		goleak.VerifyNone(t, before)
		assert.Equal(t, uint64(3), a.Written(), "what was observed before Shutdown is written")
		require.NoError(t, a.Shutdown(ctx), "Shutdown is idempotent")
		a.Observe(ctx, tai.Record{ID: "4", Kind: "k"})
		assert.Equal(t, uint64(1), a.Unwritten(), "what is observed after it is not")
	})
}

// failingWriter takes its first write, blocks its second until release
// is closed (telling entered), writes only partial bytes of the third and
// fails it and every later one.
type failingWriter struct {
	mu      sync.Mutex
	calls   int
	partial int
	entered chan struct{}
	release chan struct{}
	buf     bytes.Buffer
}

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.calls++
	call := w.calls
	w.mu.Unlock()
	if call == 2 {
		close(w.entered)
		<-w.release
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if call <= 2 {
		return w.buf.Write(p)
	}
	n := min(w.partial, len(p))
	w.buf.Write(p[:n])
	w.partial = 0
	return n, errDiskFull
}

func TestAuditWriteFailureIsLoud(t *testing.T) {
	// The failing write takes line 2 and cut bytes of line 3.
	for _, cut := range []int{10, 0} {
		t.Run(fmt.Sprintf("cut %d bytes into the next line", cut), func(t *testing.T) {
			testAuditWriteFailure(t, cut)
		})
	}
}

func testAuditWriteFailure(t *testing.T, cut int) {
	ctx := context.Background()
	// The length of the line of record "2".
	var probe syncBuffer
	pa := newAudit(t, &probe, kaizen.AuditOptions{})
	pa.Observe(ctx, tai.Record{ID: "2", Kind: "k"})
	require.NoError(t, pa.Flush(ctx))
	lineLen := len(probe.Bytes())

	var mu sync.Mutex
	var lost []string
	w := &failingWriter{partial: lineLen + cut, entered: make(chan struct{}), release: make(chan struct{})}
	a := newAudit(t, w, kaizen.AuditOptions{OnUnwritten: func(r tai.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		lost = append(lost, r.ID+": "+err.Error())
	}})
	a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
	require.NoError(t, a.Flush(ctx))
	a.Observe(ctx, tai.Record{ID: "1b", Kind: "k"})
	<-w.entered // the writer is inside its second write
	a.Observe(ctx, tai.Record{ID: "2", Kind: "k"})
	a.Observe(ctx, tai.Record{ID: "3", Kind: "k"})
	close(w.release)
	// Lines 2 and 3 go out in one write, which takes line 2 and cut bytes
	// of line 3, then fails.
	err := a.Flush(ctx)
	require.ErrorIs(t, err, errDiskFull)
	require.ErrorIs(t, a.Err(), errDiskFull)
	a.Observe(ctx, tai.Record{ID: "4", Kind: "k"})
	require.ErrorIs(t, a.Shutdown(ctx), errDiskFull)
	require.ErrorIs(t, a.Flush(ctx), errDiskFull, "Flush after Shutdown still reports the failure")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, lost, 2)
	assert.True(t, strings.HasPrefix(lost[0], "3: kaizen: writing audit trail: disk full"), lost[0])
	assert.True(t, strings.HasPrefix(lost[1], "4: "), lost[1])
	assert.Equal(t, uint64(3), a.Written(), "lines 1, 1b and 2 are written in full")
	assert.Equal(t, uint64(2), a.Unwritten())

	if cut == 0 {
		require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(w.buf.Bytes())), "the trail ends with line 2")
		assert.Len(t, lines(w.buf.Bytes()), 3)
		return
	}
	// The file holds lines 1 to 3 intact and the start of line 4, which
	// VerifyAudit names.
	var ae *kaizen.AuditError
	require.ErrorAs(t, kaizen.VerifyAudit(bytes.NewReader(w.buf.Bytes())), &ae)
	assert.Equal(t, 4, ae.Line)
	assert.Len(t, lines(w.buf.Bytes()), 4)
}

// A failed Write that wrote a line all but its newline wrote the record:
// the line verifies as the trail's last (OpenAuditFile ends it), so the
// Audit counts it written, and Last includes it, rather than hand over as
// unwritten a record that the trail holds.
func TestAuditWriteFailureJustBeforeANewline(t *testing.T) {
	ctx := context.Background()
	var probe syncBuffer
	pa := newAudit(t, &probe, kaizen.AuditOptions{})
	pa.Observe(ctx, tai.Record{ID: "2", Kind: "k"})
	require.NoError(t, pa.Flush(ctx))
	lineLen := len(probe.Bytes())

	var mu sync.Mutex
	var lost []string
	// The failing write takes line 2 and line 3 but its newline.
	w := &failingWriter{partial: 2*lineLen - 1, entered: make(chan struct{}), release: make(chan struct{})}
	a := newAudit(t, w, kaizen.AuditOptions{OnUnwritten: func(r tai.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		lost = append(lost, r.ID)
	}})
	a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
	require.NoError(t, a.Flush(ctx))
	a.Observe(ctx, tai.Record{ID: "1b", Kind: "k"})
	<-w.entered
	a.Observe(ctx, tai.Record{ID: "2", Kind: "k"})
	a.Observe(ctx, tai.Record{ID: "3", Kind: "k"})
	close(w.release)
	require.ErrorIs(t, a.Flush(ctx), errDiskFull)
	a.Observe(ctx, tai.Record{ID: "4", Kind: "k"})
	require.ErrorIs(t, a.Shutdown(ctx), errDiskFull)

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"4"}, lost)
	assert.Equal(t, uint64(4), a.Written(), "lines 1, 1b, 2 and 3")
	assert.Equal(t, uint64(1), a.Unwritten())
	sum, err := kaizen.VerifyAuditWith(bytes.NewReader(w.buf.Bytes()), kaizen.VerifyOptions{})
	require.NoError(t, err)
	last, n := a.Last()
	assert.Equal(t, sum.Lines, n, "Last counts every line the trail holds")
	assert.Equal(t, sum.Last, last)
}

// TestAuditFlushHonoursContext: Flush gives up when its context ends,
// whether it waits for room in the queue or for the writer.
func TestAuditFlushHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &blockingWriter{release: make(chan struct{})}
		a, err := kaizen.NewAudit(w, kaizen.AuditOptions{Buffer: 1})
		require.NoError(t, err)
		ctx := context.Background()
		a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
		synctest.Wait() // the writer blocks in Write

		fctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		require.ErrorIs(t, a.Flush(fctx), context.DeadlineExceeded, "queued, waiting for the writer")
		// The queue now holds that Flush request: a second one waits for room.
		fctx2, cancel2 := context.WithTimeout(ctx, time.Second)
		defer cancel2()
		require.ErrorIs(t, a.Flush(fctx2), context.DeadlineExceeded, "waiting for room in the queue")

		close(w.release)
		require.NoError(t, a.Flush(ctx))
		require.NoError(t, a.Shutdown(ctx))
		assert.Equal(t, uint64(1), a.Written())
	})
}

func TestAuditUnwrittenAreLoggedByDefault(t *testing.T) {
	var logs syncBuffer
	a, err := kaizen.NewAudit(&bytes.Buffer{}, kaizen.AuditOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	require.NoError(t, a.Shutdown(context.Background()))
	a.Observe(context.Background(), tai.Record{ID: "late-1", Kind: "payment"})
	out := string(logs.Bytes())
	assert.Contains(t, out, "level=ERROR")
	assert.Contains(t, out, "signal_id=late-1")
	assert.Contains(t, out, "audit trail is closed")
	assert.Equal(t, uint64(1), a.Unwritten())
}

// TestAuditUnwrittenGoToTheDefaultLogger: without OnUnwritten and Logger,
// a lost record is logged with slog.Default(), read when NewAudit runs.
// The test sets the process's default logger, so it must not run in
// parallel with others. Setting slog's default back does not give the
// log package its writer and flags back (it still wrote into logs, and
// so did slog.Default() in every later test): the test restores them.
func TestAuditUnwrittenGoToTheDefaultLogger(t *testing.T) {
	var logs syncBuffer
	old, oldOut, oldFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	a, err := kaizen.NewAudit(&bytes.Buffer{}, kaizen.AuditOptions{})
	slog.SetDefault(old)
	log.SetOutput(oldOut)
	log.SetFlags(oldFlags)
	require.NoError(t, err)
	require.NoError(t, a.Shutdown(context.Background()))
	a.Observe(context.Background(), tai.Record{ID: "late-2", Kind: "payment", Outcome: tai.Denied})
	out := string(logs.Bytes())
	assert.Contains(t, out, "level=ERROR")
	assert.Contains(t, out, `msg="kaizen: audit record not written" signal_id=late-2 kind=payment outcome=denied error="kaizen: audit trail is closed"`)
}

// TestAuditZeroValueDoesNotHang: an Audit not made by NewAudit or
// OpenAuditFile has no writer goroutine. Its Observe, which a pipeline
// calls on the signal's goroutine, sent on a nil queue and blocked the
// signal for good; it now logs the record as unwritten, and Flush,
// Shutdown and WaitWritten say the Audit was not made. WaitWritten
// returned nil, telling its caller the records were written when nothing
// could write them; under a context from TrackWritten with a record
// observed, it says that record was not written.
func TestAuditZeroValueDoesNotHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		old := slog.Default()
		slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
		defer slog.SetDefault(old)
		var a kaizen.Audit
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.Observe(context.Background(), tai.Record{ID: "1", Kind: "payment", Outcome: tai.Succeeded})
		}()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Observe of the zero Audit blocks")
		}
		assert.Contains(t, string(logs.Bytes()), `msg="kaizen: audit record not written" signal_id=1 kind=payment outcome=succeeded`)
		assert.Equal(t, uint64(1), a.Unwritten())
		require.ErrorContains(t, a.Flush(context.Background()), "not made by NewAudit or OpenAuditFile")
		require.ErrorContains(t, a.Shutdown(context.Background()), "not made by NewAudit or OpenAuditFile")
		require.ErrorContains(t, a.WaitWritten(context.Background()), "not made by NewAudit or OpenAuditFile")
		require.ErrorContains(t, a.WaitWritten(kaizen.TrackWritten(context.Background())), "not made by NewAudit or OpenAuditFile",
			"no record observed under the context")
		ctx := kaizen.TrackWritten(context.Background())
		a.Observe(ctx, tai.Record{ID: "2", Kind: "payment", Outcome: tai.Succeeded})
		err := a.WaitWritten(ctx)
		require.ErrorIs(t, err, kaizen.ErrAuditUnwritten)
		require.ErrorContains(t, err, "not made by NewAudit or OpenAuditFile")
	})
}

func TestAuditAfterShutdownGoesToOnUnwritten(t *testing.T) {
	var got error
	a, err := kaizen.NewAudit(&bytes.Buffer{}, kaizen.AuditOptions{OnUnwritten: func(_ tai.Record, err error) { got = err }})
	require.NoError(t, err)
	require.NoError(t, a.Shutdown(context.Background()))
	a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k"})
	require.ErrorIs(t, got, kaizen.ErrAuditClosed)
}

func TestAuditConcurrentObserversKeepTheChain(t *testing.T) {
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{Buffer: 16, BatchBytes: 512})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 250 {
				a.Observe(context.Background(), tai.Record{ID: fmt.Sprintf("%d-%d", g, i), Kind: "k", Outcome: tai.Outcome(i % 4)})
			}
		})
	}
	wg.Wait()
	require.NoError(t, a.Shutdown(context.Background()))
	require.Len(t, lines(buf.Bytes()), 1000)
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}

func TestAuditGenesisContinuesAChain(t *testing.T) {
	var first, second syncBuffer
	a1 := newAudit(t, &first, kaizen.AuditOptions{})
	a1.Observe(context.Background(), tai.Record{ID: "1", Kind: "k"})
	require.NoError(t, a1.Shutdown(context.Background()))
	last, err := kaizen.VerifyAuditFrom(bytes.NewReader(first.Bytes()), kaizen.GenesisHash)
	require.NoError(t, err)

	a2 := newAudit(t, &second, kaizen.AuditOptions{Genesis: last})
	a2.Observe(context.Background(), tai.Record{ID: "2", Kind: "k"})
	require.NoError(t, a2.Shutdown(context.Background()))
	_, err = kaizen.VerifyAuditFrom(bytes.NewReader(second.Bytes()), last)
	require.NoError(t, err)

	var ae *kaizen.AuditError
	require.ErrorAs(t, kaizen.VerifyAudit(bytes.NewReader(second.Bytes())), &ae)
	assert.Equal(t, 1, ae.Line)
	assert.Contains(t, ae.Reason, "genesis")
}

// BufferedFileSanity: the benchmark's output verifies.
func TestAuditOutputThroughBufio(t *testing.T) {
	var sink bytes.Buffer
	w := bufio.NewWriter(&sink)
	a, err := kaizen.NewAudit(w, kaizen.AuditOptions{})
	require.NoError(t, err)
	r := pipelinetest.RealisticRecord()
	for range 3000 {
		a.Observe(context.Background(), r)
	}
	require.NoError(t, a.Shutdown(context.Background()))
	require.NoError(t, w.Flush())
	require.NoError(t, kaizen.VerifyAudit(&sink))
}

// brokenWriter fails every Write.
type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("disk gone") }

// A panic in OnUnwritten, on the writer goroutine or on Observe's caller,
// is logged on Logger: the process goes on, and so do the later records'
// reports and Shutdown.
func TestAuditOnUnwrittenPanics(t *testing.T) {
	var logs syncBuffer
	var calls atomic.Int64
	a, err := kaizen.NewAudit(brokenWriter{}, kaizen.AuditOptions{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		OnUnwritten: func(r tai.Record, err error) {
			calls.Add(1)
			panic("unwritten " + r.ID)
		},
	})
	require.NoError(t, err)
	ctx := context.Background()
	a.Observe(ctx, tai.Record{ID: "1", Kind: "payment"}) // lost on the writer goroutine
	require.ErrorContains(t, a.Flush(ctx), "disk gone")
	a.Observe(ctx, tai.Record{ID: "2", Kind: "payment"}) // lost on this one
	require.ErrorContains(t, a.Shutdown(ctx), "disk gone")
	a.Observe(ctx, tai.Record{ID: "3", Kind: "payment"}) // closed

	assert.EqualValues(t, 3, calls.Load())
	assert.EqualValues(t, 3, a.Unwritten())
	out := string(logs.Bytes())
	for _, id := range []string{"1", "2", "3"} {
		assert.Contains(t, out, `msg="kaizen: AuditOptions.OnUnwritten panicked" signal_id=`+id+` panic="unwritten `+id+`"`)
	}
}

// panickingWriter panics in Write, or in Sync, as a writer with a bug does.
type panickingWriter struct {
	inSync bool // panic in Sync; Write takes the bytes
	buf    syncBuffer
}

func (w *panickingWriter) Write(p []byte) (int, error) {
	if !w.inSync {
		panic("write bug")
	}
	return w.buf.Write(p)
}

func (w *panickingWriter) Sync() error {
	if w.inSync {
		panic("sync bug")
	}
	return nil
}

// A panic in the io.Writer's Write or Sync, on the writer goroutine, stops
// the trail as a failed Write or Sync does: Err says so, the records not
// written go to OnUnwritten, and the panic is logged with its stack. It
// ended the process.
func TestAuditWriterPanicStopsTheTrail(t *testing.T) {
	for _, method := range []string{"Write", "Sync"} {
		t.Run(method, func(t *testing.T) {
			var logs syncBuffer
			var mu sync.Mutex
			var lost []string
			w := &panickingWriter{inSync: method == "Sync"}
			a, err := kaizen.NewAudit(w, kaizen.AuditOptions{
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				OnUnwritten: func(r tai.Record, err error) {
					mu.Lock()
					defer mu.Unlock()
					lost = append(lost, r.ID+": "+err.Error())
				},
			})
			require.NoError(t, err)
			ctx := context.Background()
			a.Observe(ctx, tai.Record{ID: "1", Kind: "payment"})
			want := "panic in the io.Writer's " + method + ": " + strings.ToLower(method) + " bug"
			require.ErrorContains(t, a.Flush(ctx), want)
			require.ErrorContains(t, a.Err(), want)
			a.Observe(ctx, tai.Record{ID: "2", Kind: "payment"})
			require.ErrorContains(t, a.Shutdown(ctx), want)

			_, durable := a.Last()
			assert.Zero(t, durable, "no line is known to be durable")
			mu.Lock()
			defer mu.Unlock()
			if method == "Write" {
				assert.Zero(t, a.Written())
				assert.Equal(t, []string{"1: kaizen: writing audit trail: " + want, "2: kaizen: writing audit trail: " + want}, lost)
			} else {
				assert.EqualValues(t, 1, a.Written(), "the line was written, then Sync panicked")
				assert.Equal(t, []string{"2: kaizen: syncing audit trail: " + want}, lost)
			}
			assert.EqualValues(t, len(lost), a.Unwritten())
			out := string(logs.Bytes())
			assert.Contains(t, out, `msg="kaizen: audit trail's io.Writer panicked" method=`+method)
			assert.Contains(t, out, "panickingWriter).", "the stack is logged")
		})
	}
}

// lenWriter counts the bytes written to it and keeps none.
type lenWriter struct{ n atomic.Int64 }

func (w *lenWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// The writer's buffer grows to hold a line far longer than BatchBytes,
// such as one with megabytes of decision inputs; once the line is
// written, the Audit lets that memory go rather than keep it for the rest
// of its life.
func TestAuditLetsGoOfAHugeLine(t *testing.T) {
	ctx := context.Background()
	var w lenWriter
	a := newAudit(t, &w, kaizen.AuditOptions{})
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	a.Observe(ctx, tai.Record{ID: "0", Kind: "k"})
	require.NoError(t, a.Flush(ctx))
	before := heap()
	inputs := `["` + strings.Repeat("x", 8<<20) + `"]`
	a.Observe(ctx, tai.Record{ID: "1", Kind: "k", Decision: tai.Decision{Inputs: []byte(inputs)}})
	inputs = ""
	a.Observe(ctx, tai.Record{ID: "2", Kind: "k"})
	require.NoError(t, a.Flush(ctx))
	require.Greater(t, w.n.Load(), int64(8<<20), "the huge line was written")
	after := heap()
	assert.Less(t, int64(after)-int64(before), int64(4<<20), "heap kept after the line was written: %d bytes", int64(after)-int64(before))
	runtime.KeepAlive(a)
}

// goexitWriter calls runtime.Goexit in its Write or its Sync, as a writer
// that calls t.FailNow does, and takes the bytes otherwise.
type goexitWriter struct {
	inSync bool
	buf    syncBuffer
}

func (w *goexitWriter) Write(p []byte) (int, error) {
	if !w.inSync {
		runtime.Goexit()
	}
	return w.buf.Write(p)
}

func (w *goexitWriter) Sync() error {
	if w.inSync {
		runtime.Goexit()
	}
	return nil
}

// The caller's code that the writer goroutine runs (Redact, the io.Writer,
// OnUnwritten) may end it with runtime.Goexit, which no recover stops:
// another goroutine goes on where it stopped, so that no record is lost
// silently, Flush does not wait for good, and Shutdown does not report a
// trail written in full. A Goexit in Redact loses its record, as a panic
// does, and the trail goes on.
func TestAuditRedactGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncBuffer
		var mu sync.Mutex
		unwritten := map[string]error{}
		a, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{
			Redact: func(e *kaizen.AuditEntry) {
				if e.ID == "2" || e.ID == "5" {
					runtime.Goexit()
				}
			},
			OnUnwritten: func(r tai.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				unwritten[r.ID] = err
			},
		})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, id := range []string{"1", "2", "3"} {
			a.Observe(ctx, tai.Record{ID: id, Kind: "payment", Outcome: tai.Succeeded})
		}
		require.NoError(t, a.Flush(ctx))
		a.Observe(ctx, tai.Record{ID: "4", Kind: "payment", Outcome: tai.Succeeded})
		a.Observe(ctx, tai.Record{ID: "5", Kind: "payment", Outcome: tai.Succeeded}) // in Shutdown's drain, maybe
		a.Observe(ctx, tai.Record{ID: "6", Kind: "payment", Outcome: tai.Succeeded})
		require.NoError(t, a.Shutdown(ctx), "the trail goes on")

		out := string(buf.Bytes())
		assert.Equal(t, 4, strings.Count(out, "\n"))
		assert.NotContains(t, out, `"id":"2"`)
		assert.NotContains(t, out, `"id":"5"`)
		assert.Contains(t, out, `"id":"6"`)
		assert.EqualValues(t, 4, a.Written())
		assert.EqualValues(t, 2, a.Unwritten())
		require.NoError(t, kaizen.VerifyAudit(strings.NewReader(out)), "the lines written chain")
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, unwritten, 2)
		assert.ErrorContains(t, unwritten["2"], "kaizen: audit record not written: runtime.Goexit in AuditOptions.Redact")
		assert.ErrorContains(t, unwritten["5"], "kaizen: audit record not written: runtime.Goexit in AuditOptions.Redact")
	})
}

// A runtime.Goexit in the io.Writer's Write or Sync stops the trail as a
// panic there does.
func TestAuditWriterGoexitStopsTheTrail(t *testing.T) {
	for _, method := range []string{"Write", "Sync"} {
		t.Run(method, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs syncBuffer
				var mu sync.Mutex
				var lost []string
				a, err := kaizen.NewAudit(&goexitWriter{inSync: method == "Sync"}, kaizen.AuditOptions{
					Logger: slog.New(slog.NewTextHandler(&logs, nil)),
					OnUnwritten: func(r tai.Record, err error) {
						mu.Lock()
						defer mu.Unlock()
						lost = append(lost, r.ID+": "+err.Error())
					},
				})
				require.NoError(t, err)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				a.Observe(ctx, tai.Record{ID: "1", Kind: "payment"})
				want := "runtime.Goexit in the io.Writer's " + method
				require.ErrorContains(t, a.Flush(ctx), want)
				require.ErrorContains(t, a.Err(), want)
				a.Observe(ctx, tai.Record{ID: "2", Kind: "payment"})
				require.ErrorContains(t, a.Shutdown(ctx), want)

				_, durable := a.Last()
				assert.Zero(t, durable, "no line is known to be durable")
				mu.Lock()
				defer mu.Unlock()
				if method == "Write" {
					assert.Zero(t, a.Written())
					assert.Equal(t, []string{"1: kaizen: writing audit trail: " + want, "2: kaizen: writing audit trail: " + want}, lost)
				} else {
					assert.EqualValues(t, 1, a.Written(), "the line was written, then Sync called Goexit")
					assert.Equal(t, []string{"2: kaizen: syncing audit trail: " + want}, lost)
				}
				assert.EqualValues(t, len(lost), a.Unwritten())
				assert.Contains(t, string(logs.Bytes()), `msg="kaizen: audit trail's io.Writer called runtime.Goexit" method=`+method)
			})
		})
	}
}

// A runtime.Goexit in OnUnwritten, on the writer goroutine, is logged, and
// the records after it are handed over all the same: those of the same
// failed write and those queued behind it.
func TestAuditOnUnwrittenGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		var mu sync.Mutex
		var lost []string
		entered, release := make(chan struct{}), make(chan struct{})
		a, err := kaizen.NewAudit(brokenWriter{}, kaizen.AuditOptions{
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Redact: func(e *kaizen.AuditEntry) {
				if e.ID == "1" { // hold the writer until 2 and 3 are queued: one batch
					close(entered)
					<-release
				}
			},
			OnUnwritten: func(r tai.Record, err error) {
				mu.Lock()
				lost = append(lost, r.ID)
				mu.Unlock()
				if r.ID != "4" { // 4 is handed over on the test's goroutine
					runtime.Goexit()
				}
			},
		})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a.Observe(ctx, tai.Record{ID: "1", Kind: "payment"})
		<-entered
		a.Observe(ctx, tai.Record{ID: "2", Kind: "payment"})
		a.Observe(ctx, tai.Record{ID: "3", Kind: "payment"})
		close(release)
		require.ErrorContains(t, a.Flush(ctx), "disk gone")
		a.Observe(ctx, tai.Record{ID: "4", Kind: "payment"})
		require.ErrorContains(t, a.Shutdown(ctx), "disk gone")
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []string{"1", "2", "3", "4"}, lost, "each once, in order")
		assert.EqualValues(t, 4, a.Unwritten())
		assert.Contains(t, string(logs.Bytes()), `msg="kaizen: AuditOptions.OnUnwritten called runtime.Goexit" signal_id=1`)
	})
}

// OnUnwritten, on the goroutine calling Observe, may shut the trail down
// once it has failed: Shutdown does not wait for the Observe that calls
// it.
func TestAuditOnUnwrittenMayShutDownAFailedTrail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a *kaizen.Audit
		shutdown := make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, err := kaizen.NewAudit(brokenWriter{}, kaizen.AuditOptions{
			OnUnwritten: func(r tai.Record, err error) {
				if r.ID == "2" { // observed after the failure, on the test's goroutine
					shutdown <- a.Shutdown(ctx)
				}
			},
		})
		require.NoError(t, err)
		a.Observe(ctx, tai.Record{ID: "1", Kind: "payment"})
		require.ErrorContains(t, a.Flush(ctx), "disk gone")
		a.Observe(ctx, tai.Record{ID: "2", Kind: "payment"})
		require.ErrorContains(t, <-shutdown, "disk gone", "not context.DeadlineExceeded: Shutdown waited for its own caller")
		assert.EqualValues(t, 2, a.Unwritten())
	})
}

// TestAuditBufferIsNotReservedUpFront: NewAudit with the largest Buffer
// reserves a pointer per record, not a whole record: a queued record
// takes its memory only while it waits. A queue of 1<<20 records took
// some 290 MB as the Audit was made.
func TestAuditBufferIsNotReservedUpFront(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	a, err := kaizen.NewAudit(&bytes.Buffer{}, kaizen.AuditOptions{Buffer: 1 << 20})
	require.NoError(t, err)
	runtime.ReadMemStats(&after)
	require.NoError(t, a.Shutdown(context.Background()))
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "bytes allocated by NewAudit: 8 MiB of pointers, not 293 MB of records (the margin is for other goroutines allocating meanwhile)")

	// Each record is written as it was observed, however the queue
	// holds it.
	var buf syncBuffer
	a, err = kaizen.NewAudit(&buf, kaizen.AuditOptions{Buffer: 2, BatchBytes: 1})
	require.NoError(t, err)
	for i := range 100 {
		a.Observe(context.Background(), record(strconv.Itoa(i)))
	}
	require.NoError(t, a.Shutdown(context.Background()))
	ls := lines(buf.Bytes())
	require.Len(t, ls, 100)
	for i, l := range ls {
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal([]byte(l), &e))
		assert.Equal(t, strconv.Itoa(i), e.ID)
	}
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}

// slowSyncWriter takes the bytes at once; its Sync waits for release, as
// an fsync of megabytes on a busy disk takes tens of milliseconds.
type slowSyncWriter struct {
	buf     syncBuffer
	syncing chan struct{} // a Sync has begun
	release chan struct{}
}

func (w *slowSyncWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *slowSyncWriter) Sync() error {
	w.syncing <- struct{}{}
	<-w.release
	return nil
}

// TestAuditWritesWhileAFlushSyncs: a Flush's Sync runs beside the writer,
// not in its way. A service that answers once its record's line is
// written (WaitWritten) would otherwise stall every answer for as long as
// the periodic Flush's Sync takes. The Flush returns once its lines are
// synced, and only the lines written before its Sync are durable.
func TestAuditWritesWhileAFlushSyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &slowSyncWriter{syncing: make(chan struct{}, 1), release: make(chan struct{})}
		a, err := kaizen.NewAudit(w, kaizen.AuditOptions{})
		require.NoError(t, err)
		ctx := context.Background()
		a.Observe(ctx, tai.Record{ID: "1", Kind: "payment"})
		flushed := make(chan error, 1)
		go func() { flushed <- a.Flush(ctx) }()
		<-w.syncing

		wctx, cancel := context.WithTimeout(kaizen.TrackWritten(ctx), time.Minute)
		defer cancel()
		a.Observe(wctx, tai.Record{ID: "2", Kind: "payment"})
		require.NoError(t, a.WaitWritten(wctx), "line 2 is written while line 1 is synced")
		assert.EqualValues(t, 2, a.Written())
		_, durable := a.Last()
		assert.Zero(t, durable, "nothing is durable before the Sync returns")
		select {
		case err := <-flushed:
			t.Fatalf("Flush returned before its Sync did: %v", err)
		default:
		}

		close(w.release)
		require.NoError(t, <-flushed)
		_, durable = a.Last()
		assert.EqualValues(t, 1, durable, "the line written before the Sync began is durable; the one after is not yet")
		require.NoError(t, a.Flush(ctx))
		_, durable = a.Last()
		assert.EqualValues(t, 2, durable)
		require.NoError(t, a.Shutdown(ctx))
	})
}
