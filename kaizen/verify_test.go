package kaizen_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// trail returns an audit trail of n lines.
func trail(t *testing.T, n int) []string {
	t.Helper()
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{})
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		a.Observe(context.Background(), tai.Record{ID: fmt.Sprintf("sig-%d", i+1), Kind: "payment", Key: "cust",
			Outcome: tai.Succeeded, Decision: tai.Decision{Verdict: tai.Allow, Policy: "fraud", Score: 0.1},
			Start: start.Add(time.Duration(i) * time.Second), Duration: time.Millisecond})
	}
	require.NoError(t, a.Shutdown(context.Background()))
	return lines(buf.Bytes())
}

// rehash recomputes the hash of an edited line, as a forger would.
func rehash(line string) string {
	cut := strings.LastIndex(line, `,"hash":"`)
	sum := sha256.Sum256([]byte(line[:cut] + "}"))
	return line[:cut] + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}`
}

func TestVerifyAuditFindsTampering(t *testing.T) {
	orig := trail(t, 6)
	cases := []struct {
		name   string
		tamper func([]string) []string
		line   int
		reason string
	}{
		{"edited outcome", func(l []string) []string {
			l[2] = strings.Replace(l[2], `"outcome":"succeeded"`, `"outcome":"failed"`, 1)
			return l
		}, 3, "edited"},
		{"edited and rehashed", func(l []string) []string {
			l[2] = rehash(strings.Replace(l[2], `"key":"cust"`, `"key":"other"`, 1))
			return l
		}, 4, "its prev hash is not the hash of line 3: a line was deleted, inserted or moved before it, or line 3 was edited and rehashed"},
		{"deleted line", func(l []string) []string { return slices.Delete(l, 3, 4) }, 4, "deleted, inserted or moved"},
		{"deleted first line", func(l []string) []string { return l[1:] }, 1, "genesis"},
		{"swapped lines", func(l []string) []string { l[1], l[2] = l[2], l[1]; return l }, 2, "prev hash"},
		{"duplicated line", func(l []string) []string { return slices.Insert(l, 2, l[1]) }, 3, "prev hash"},
		{"truncated line", func(l []string) []string { l[5] = l[5][:40]; return l }, 6, "malformed or truncated"},
		{"blank line", func(l []string) []string { return slices.Insert(l, 1, "") }, 2, "malformed"},
		{"not json", func(l []string) []string { l[0] = "hello"; return l }, 1, "malformed"},
		{"hash removed", func(l []string) []string {
			l[4] = l[4][:strings.LastIndex(l[4], `,"hash"`)] + "}"
			return l
		}, 5, "malformed"},
		{"bad hex in hash", func(l []string) []string {
			l[0] = l[0][:len(l[0])-4] + `zz"}`
			return l
		}, 1, "malformed"},
		{"bad hex in prev", func(l []string) []string {
			end := strings.LastIndex(l[1], `","hash":"`) // of the prev value
			l[1] = rehash(l[1][:end-2] + "zz" + l[1][end:])
			return l
		}, 2, "malformed"},
		{"prev renamed and rehashed", func(l []string) []string {
			l[2] = rehash(strings.Replace(l[2], `,"prev":"`, `,"prex":"`, 1))
			return l
		}, 3, "malformed"},
		{"hash renamed", func(l []string) []string {
			l[3] = strings.Replace(l[3], `,"hash":"`, `,"hasx":"`, 1)
			return l
		}, 4, "malformed"},
		{"valid json, short", func(l []string) []string {
			// Ends as an audit line does, but is too short to hold a prev.
			l[0] = `{"a":"` + strings.Repeat("x", 65) + `","hash":"` + strings.Repeat("0", 64) + `"}`
			return l
		}, 1, "malformed"},
		{"truncated last line", func(l []string) []string { l[5] = l[5][:len(l[5])-1]; return l }, 6, "malformed"},
	}
	for _, c := range cases {
		for _, end := range []string{"\n", ""} { // with and without a final newline
			t.Run(fmt.Sprintf("%s/end %q", c.name, end), func(t *testing.T) {
				l := c.tamper(slices.Clone(orig))
				err := kaizen.VerifyAudit(strings.NewReader(strings.Join(l, "\n") + end))
				require.ErrorIs(t, err, kaizen.ErrAuditTampered)
				var ae *kaizen.AuditError
				require.ErrorAs(t, err, &ae)
				assert.Equal(t, c.line, ae.Line)
				assert.Contains(t, ae.Reason, c.reason)
				assert.Equal(t, fmt.Sprintf("kaizen: audit line %d: %s", c.line, ae.Reason), err.Error())
			})
		}
	}
}

func TestVerifyAuditAcceptsIntactTrails(t *testing.T) {
	l := trail(t, 5)
	body := strings.Join(l, "\n")
	require.NoError(t, kaizen.VerifyAudit(strings.NewReader(body+"\n")))
	require.NoError(t, kaizen.VerifyAudit(strings.NewReader(body)), "a missing final newline is fine")
	require.NoError(t, kaizen.VerifyAudit(strings.NewReader("")), "an empty trail verifies")

	last, err := kaizen.VerifyAuditFrom(strings.NewReader(body), kaizen.GenesisHash)
	require.NoError(t, err)
	assert.Equal(t, l[4][strings.LastIndex(l[4], `"hash":"`)+8:len(l[4])-2], last)
	last, err = kaizen.VerifyAuditFrom(strings.NewReader(""), kaizen.GenesisHash)
	require.NoError(t, err)
	assert.Equal(t, kaizen.GenesisHash, last)

	// Cutting lines from the end is invisible to the chain but changes
	// the last hash, which the owner compares with an anchored copy.
	short, err := kaizen.VerifyAuditFrom(strings.NewReader(strings.Join(l[:4], "\n")), kaizen.GenesisHash)
	require.NoError(t, err)
	assert.NotEqual(t, last, short)

	_, err = kaizen.VerifyAuditFrom(strings.NewReader(body), "nothex")
	require.ErrorContains(t, err, "genesis")
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("io broke") }

func TestVerifyAuditReadError(t *testing.T) {
	err := kaizen.VerifyAudit(io.MultiReader(strings.NewReader(""), failingReader{}))
	require.ErrorContains(t, err, "io broke")
	assert.NotErrorIs(t, err, kaizen.ErrAuditTampered)
}
