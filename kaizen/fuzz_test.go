package kaizen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// FuzzAuditLineVerifies checks that the lines an Audit writes, whatever
// the record holds, verify and read back with encoding/json.
func FuzzAuditLineVerifies(f *testing.F) {
	f.Add("sig-1", "payment", "cust", "fraud", "ok", "", 0.25, []byte(`{"amount":1}`), int64(1), uint8(1), false)
	f.Add("a\u2028b", "k\x00", "\xff", "p\"", "r\n", "boom\\", math.NaN(), []byte(`not json`), int64(-1), uint8(3), true)
	f.Add("", "", "", "", "", "", math.Inf(1), []byte(" [1, 2] "), int64(math.MaxInt64), uint8(0), false)
	f.Add("deep", "k", "", "", "", "", 1.0, []byte(strings.Repeat("[", 9999)+strings.Repeat("]", 9999)), int64(0), uint8(2), false)
	f.Fuzz(func(t *testing.T, id, kind, key, policy, reason, errText string, score float64, inputs []byte, ns int64, verdict uint8, keyed bool) {
		rec := tai.Record{ID: id, Kind: kind, Key: key, Outcome: tai.Failed,
			Decision: tai.Decision{Verdict: tai.Verdict(verdict % 4), Policy: policy, Reason: reason, Score: score, Inputs: inputs,
				Contributions: []tai.Contribution{{Rule: reason, Weight: score, Risk: -score, Score: score * 2, Reason: policy}}},
			Start: time.Unix(0, ns), Duration: time.Duration(ns)}
		if errText != "" {
			rec.Err = errors.New(errText)
		}
		opts := kaizen.AuditOptions{}
		if keyed {
			opts.Key = []byte("0123456789abcdef0123456789abcdef")
		}
		var buf bytes.Buffer
		a, err := kaizen.NewAudit(&buf, opts)
		if err != nil {
			t.Fatal(err)
		}
		a.Observe(context.Background(), rec)
		a.Observe(context.Background(), rec)
		if err := a.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(buf.Bytes(), []byte{'\n'}); n != 2 {
			t.Fatalf("two records wrote %d lines: %q", n, buf.Bytes())
		}
		sum, err := kaizen.VerifyAuditWith(bytes.NewReader(buf.Bytes()), kaizen.VerifyOptions{Key: opts.Key})
		if err != nil {
			t.Fatalf("a trail an Audit wrote does not verify: %v\n%s", err, buf.Bytes())
		}
		if last, lines := a.Last(); sum.Last != last || sum.Lines != lines {
			t.Fatalf("verified %d lines to %s; Audit.Last says %d to %s", sum.Lines, sum.Last, lines, last)
		}
		line, _, _ := bytes.Cut(buf.Bytes(), []byte{'\n'})
		var e kaizen.AuditEntry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("an audit line does not read back: %v\n%s", err, line)
		}
		for _, p := range [][2]string{{e.ID, id}, {e.Kind, kind}, {e.Key, key}, {e.Decision.Policy, policy}, {e.Decision.Reason, reason}, {e.Error, errText}} {
			if utf8.ValidString(p[1]) && p[0] != p[1] {
				t.Fatalf("wrote %q, read back %q", p[1], p[0])
			}
		}
		if !e.Time.Equal(rec.Start) || e.Duration != rec.Duration || e.Decision.Verdict != rec.Decision.Verdict {
			t.Fatalf("read back %+v from %+v", e, rec)
		}
	})
}

// FuzzOpenAuditFile checks that OpenAuditFile either refuses a file and
// leaves it as it was, or repairs it so that, with a line appended, it
// verifies.
func FuzzOpenAuditFile(f *testing.F) {
	var buf bytes.Buffer
	a, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 2 {
		a.Observe(context.Background(), tai.Record{ID: "sig", Kind: "k", Key: string(rune('a' + i)), Outcome: tai.Succeeded,
			Decision: tai.Decision{Verdict: tai.Allow}, Start: time.Unix(1e9, 0)})
	}
	if err := a.Shutdown(context.Background()); err != nil {
		f.Fatal(err)
	}
	good := buf.Bytes()
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(good[:len(good)-20])
	f.Add(append(bytes.Clone(good), `{"time":"20`...))
	f.Add(append(bytes.Clone(good), "\x00\x00\x00"...))
	f.Add(append(bytes.Clone(good), "\n"...))
	f.Add(append(bytes.Clone(good[:len(good)-1]), "\x00\x00"...))
	f.Add([]byte(""))
	quiet := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		a, state, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Logger: quiet})
		if err != nil {
			got, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("a refused file was changed: %v\nbefore %q\nafter  %q", err, data, got)
			}
			return
		}
		a.Observe(context.Background(), tai.Record{ID: "new", Kind: "k", Outcome: tai.Succeeded, Start: time.Unix(2e9, 0)})
		if err := a.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
		if err != nil {
			got, _ := os.ReadFile(path)
			t.Fatalf("opened (%+v) and appended to, the file does not verify: %v\nbefore %q\nafter  %q", state, err, data, got)
		}
		if sum.Lines != state.Lines+1 {
			t.Fatalf("verified %d lines; the file held %d and one was added", sum.Lines, state.Lines)
		}
	})
}
