package kaizen_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
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
		{"blank line", func(l []string) []string { return slices.Insert(l, 1, "") }, 2, blankReason + undone},
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
		{"line endings changed to CRLF", func(l []string) []string {
			for i := range l {
				l[i] += "\r"
			}
			return l
		}, 1, crReason},
		{"hash in upper case", func(l []string) []string {
			// The same value, but not the text the Audit wrote.
			cut := strings.LastIndex(l[2], `,"hash":"`) + len(`,"hash":"`)
			l[2] = l[2][:cut] + strings.ToUpper(l[2][cut:])
			return l
		}, 3, "lower-case hex"},
		{"prev in upper case, rehashed", func(l []string) []string {
			start := strings.LastIndex(l[2], `,"prev":"`) + len(`,"prev":"`)
			end := strings.LastIndex(l[2], `,"hash":"`)
			l[2] = rehash(l[2][:start] + strings.ToUpper(l[2][start:end]) + l[2][end:])
			return l
		}, 3, "lower-case hex"},
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
	require.EqualError(t, err, "kaizen: reading audit trail: io broke")
	assert.NotErrorIs(t, err, kaizen.ErrAuditTampered)
}

// testKey is an HMAC key for tests: 32 bytes, as a service would use.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// trailWith returns a trail of n lines written with opts, and the hash of
// each line.
func trailWith(t *testing.T, opts kaizen.AuditOptions, n int) (ls, hashes []string) {
	t.Helper()
	var buf syncBuffer
	a := newAudit(t, &buf, opts)
	for i := range n {
		a.Observe(context.Background(), tai.Record{ID: fmt.Sprintf("sig-%d", i+1), Kind: "payment", Key: "cust",
			Outcome: tai.Succeeded, Start: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC)})
	}
	require.NoError(t, a.Shutdown(context.Background()))
	if n == 0 {
		return nil, nil
	}
	ls = lines(buf.Bytes())
	for _, l := range ls {
		hashes = append(hashes, hashOf(l))
	}
	return ls, hashes
}

// hashOf returns the hash a line states.
func hashOf(line string) string {
	return line[strings.LastIndex(line, `"hash":"`)+len(`"hash":"`) : len(line)-2]
}

func TestVerifyAuditWithKey(t *testing.T) {
	keyed, hashes := trailWith(t, kaizen.AuditOptions{Key: testKey}, 4)
	plain, plainHashes := trailWith(t, kaizen.AuditOptions{}, 4)
	assert.NotEqual(t, plainHashes, hashes, "the same records hash differently with a key")
	body := strings.Join(keyed, "\n") + "\n"

	sum, err := kaizen.VerifyAuditWith(strings.NewReader(body), kaizen.VerifyOptions{Key: testKey})
	require.NoError(t, err)
	assert.Equal(t, kaizen.AuditSummary{Lines: 4, Last: hashes[3]}, sum)

	other := slices.Clone(testKey)
	other[0] ^= 1
	forged := slices.Clone(keyed)
	// A forger without the key edits line 3 and rehashes the rest with
	// SHA-256, which is all they can do.
	forged[2] = strings.Replace(forged[2], `"key":"cust"`, `"key":"other"`, 1)
	for i := 2; i < len(forged); i++ {
		if i > 2 {
			forged[i] = strings.Replace(forged[i], hashes[i-1], hashOf(forged[i-1]), 1)
		}
		forged[i] = rehash(forged[i])
	}

	for _, c := range []struct {
		name   string
		trail  []string
		key    []byte
		line   int
		reason string
	}{
		{"wrong key", keyed, other, 1, "its hash does not match its content under the given key: the key is wrong, or the line was edited"},
		{"no key for a keyed trail", keyed, nil, 1, "edited: its hash does not match its content (or the trail was written with a key: verify it with that key)"},
		{"key for a trail without one", plain, testKey, 1, "its hash is plain SHA-256, not an HMAC: the trail was written without a key, but a key was given"},
		{"rehashed without the key", forged, testKey, 3, "edited: its hash does not match its content"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := kaizen.VerifyAuditWith(strings.NewReader(strings.Join(c.trail, "\n")+"\n"), kaizen.VerifyOptions{Key: c.key})
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, c.line, ae.Line)
			assert.Equal(t, c.reason, ae.Reason)
		})
	}
	// The forgery is a valid chain to anyone who verifies without the key:
	// which is why a keyed trail must be verified with it.
	_, err = kaizen.VerifyAuditWith(strings.NewReader(strings.Join(forged[2:], "\n")), kaizen.VerifyOptions{Genesis: hashes[1]})
	require.NoError(t, err)
}

func TestAuditKeyIsCopied(t *testing.T) {
	key := slices.Clone(testKey)
	var buf syncBuffer
	a := newAudit(t, &buf, kaizen.AuditOptions{Key: key})
	clear(key) // the caller wipes its copy
	a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k"})
	require.NoError(t, a.Shutdown(context.Background()))
	_, err := kaizen.VerifyAuditWith(bytes.NewReader(buf.Bytes()), kaizen.VerifyOptions{Key: testKey})
	require.NoError(t, err)
}

func TestAuditKeyLength(t *testing.T) {
	for _, c := range []struct {
		key  []byte
		want string // empty: accepted
	}{
		{nil, ""},
		{[]byte{}, "Key is 0 bytes; it must hold at least 16"},
		{testKey[:15], "Key is 15 bytes; it must hold at least 16"},
		{testKey[:16], ""},
		{testKey, ""},
	} {
		a, err := kaizen.NewAudit(&bytes.Buffer{}, kaizen.AuditOptions{Key: c.key})
		_, verr := kaizen.VerifyAuditWith(strings.NewReader(""), kaizen.VerifyOptions{Key: c.key})
		if c.want == "" {
			require.NoError(t, err, "%d bytes", len(c.key))
			require.NoError(t, a.Shutdown(context.Background()))
			require.NoError(t, verr)
			continue
		}
		require.EqualError(t, err, "kaizen: AuditOptions."+c.want)
		require.EqualError(t, verr, "kaizen: VerifyOptions."+c.want)
		if len(c.key) > 0 {
			assert.NotContains(t, err.Error(), string(c.key), "the key is not in the message")
		}
	}
}

func TestVerifyAuditExpect(t *testing.T) {
	l, hashes := trailWith(t, kaizen.AuditOptions{}, 5)
	body := strings.Join(l, "\n") + "\n"
	for i, h := range append([]string{kaizen.GenesisHash}, hashes...) {
		sum, err := kaizen.VerifyAuditWith(strings.NewReader(body), kaizen.VerifyOptions{Expect: h})
		require.NoError(t, err, "the hash of line %d is in the trail", i)
		assert.Equal(t, uint64(5), sum.Lines)
	}
	// The tail after the published hash of line 4 is cut: the chain still
	// verifies, the expected hash is missing.
	cut := strings.Join(l[:3], "\n") + "\n"
	require.NoError(t, kaizen.VerifyAudit(strings.NewReader(cut)))
	_, err := kaizen.VerifyAuditWith(strings.NewReader(cut), kaizen.VerifyOptions{Expect: hashes[3]})
	var ae *kaizen.AuditError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 4, ae.Line, "the first missing line")
	assert.Equal(t, "the trail ends without the expected hash "+hashes[3]+
		": lines were cut from its end, or the hash is not from this trail", ae.Reason)
	_, err = kaizen.VerifyAuditWith(strings.NewReader(""), kaizen.VerifyOptions{Expect: hashes[0]})
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 1, ae.Line, "an empty trail lacks it at line 1")

	// A hash from a trail with another genesis is not this one's.
	_, err = kaizen.VerifyAuditWith(strings.NewReader(body), kaizen.VerifyOptions{Expect: strings.Repeat("ab", 32)})
	require.ErrorIs(t, err, kaizen.ErrAuditTampered)

	for _, c := range []struct{ opts kaizen.VerifyOptions }{
		{kaizen.VerifyOptions{Expect: "abc"}},
		{kaizen.VerifyOptions{Expect: strings.Repeat("zz", 32)}},
		{kaizen.VerifyOptions{Genesis: "abc"}},
	} {
		_, err := kaizen.VerifyAuditWith(strings.NewReader(body), c.opts)
		require.Error(t, err)
		assert.NotErrorIs(t, err, kaizen.ErrAuditTampered, "an invalid option is not a bad trail")
		assert.Contains(t, err.Error(), "kaizen: VerifyOptions.")
	}
}

func TestVerifyAuditWithGenesis(t *testing.T) {
	first, hashes := trailWith(t, kaizen.AuditOptions{}, 2)
	second, hashes2 := trailWith(t, kaizen.AuditOptions{Genesis: hashes[1]}, 2)
	sum, err := kaizen.VerifyAuditWith(strings.NewReader(strings.Join(second, "\n")), kaizen.VerifyOptions{Genesis: hashes[1]})
	require.NoError(t, err)
	assert.Equal(t, kaizen.AuditSummary{Lines: 2, Last: hashes2[1]}, sum)
	sum, err = kaizen.VerifyAuditWith(strings.NewReader(strings.Join(append(first, second...), "\n")), kaizen.VerifyOptions{})
	require.NoError(t, err, "two trails one after the other are one chain")
	assert.Equal(t, uint64(4), sum.Lines)
	sum, err = kaizen.VerifyAuditWith(strings.NewReader(""), kaizen.VerifyOptions{Genesis: hashes[1]})
	require.NoError(t, err)
	assert.Equal(t, kaizen.AuditSummary{Lines: 0, Last: hashes[1]}, sum, "an empty trail ends at its genesis")

	last, err := kaizen.VerifyAuditFrom(strings.NewReader(strings.Join(second, "\n")), hashes[1])
	require.NoError(t, err)
	assert.Equal(t, hashes2[1], last)
	_, err = kaizen.VerifyAuditFrom(strings.NewReader(strings.Join(second, "\n")), kaizen.GenesisHash)
	require.ErrorIs(t, err, kaizen.ErrAuditTampered, "VerifyAuditFrom reports a trail that does not verify")
}

func TestAuditErrorNamesTheFile(t *testing.T) {
	err := &kaizen.AuditError{File: "audit-1.jsonl", Line: 7, Reason: "edited"}
	assert.Equal(t, "kaizen: audit audit-1.jsonl:7: edited", err.Error())
	assert.ErrorIs(t, err, kaizen.ErrAuditTampered)
}

// TestVerifyAuditNamesATrailBegunAgain: a line whose prev is the genesis
// hash in the middle of a trail is a second trail begun there, as an Audit
// that did not continue the file (NewAudit on a file that already held a
// trail, or a new file without AuditOptions.Genesis) writes it, and a line
// that repeats the one before it is a copy. The reason says which, not
// only that a line was deleted, inserted or moved, which reads as
// tampering.
func TestVerifyAuditNamesATrailBegunAgain(t *testing.T) {
	first, _ := trailWith(t, kaizen.AuditOptions{}, 3)
	second, _ := trailWith(t, kaizen.AuditOptions{}, 2)
	var ae *kaizen.AuditError
	_, err := kaizen.VerifyAuditWith(strings.NewReader(strings.Join(append(first, second...), "\n")), kaizen.VerifyOptions{})
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 4, ae.Line)
	assert.Equal(t, "its prev hash is not the hash of line 3: a line was deleted, inserted or moved before it, or line 3 was edited and rehashed; "+
		"it is the genesis hash, which only a trail's first line links to: a trail begins again here, as one written by an Audit that did not continue "+
		"this one (NewAudit on a file that held a trail, rather than OpenAuditFile) begins", ae.Reason)

	g := first[0][strings.LastIndex(first[0], `"hash":"`)+len(`"hash":"`) : len(first[0])-2]
	later, _ := trailWith(t, kaizen.AuditOptions{Genesis: g}, 2)
	restarted, _ := trailWith(t, kaizen.AuditOptions{Genesis: g}, 1)
	_, err = kaizen.VerifyAuditWith(strings.NewReader(strings.Join(append(later, restarted...), "\n")), kaizen.VerifyOptions{Genesis: g})
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 3, ae.Line)
	assert.Contains(t, ae.Reason, "it is the genesis hash", "the genesis of VerifyOptions too")

	l := slices.Insert(slices.Clone(first), 2, first[1])
	_, err = kaizen.VerifyAuditWith(strings.NewReader(strings.Join(l, "\n")), kaizen.VerifyOptions{})
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 3, ae.Line)
	assert.Equal(t, "its prev hash is not the hash of line 2: a line was deleted, inserted or moved before it, or line 2 was edited and rehashed; "+
		"it is a copy of line 2", ae.Reason)
}

// ReadAuditKeyFile takes a key as stored, from MinAuditKeyLen bytes to
// MaxAuditKeyFile, and refuses the rest with the file's name and size.
func TestReadAuditKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte{'k'}, n), 0o600))
		return path
	}
	for _, n := range []int{kaizen.MinAuditKeyLen, 33, kaizen.MaxAuditKeyFile} {
		key, err := kaizen.ReadAuditKeyFile(write("ok", n))
		require.NoError(t, err, "%d bytes", n)
		assert.Len(t, key, n)
	}
	withNewline := filepath.Join(dir, "newline")
	require.NoError(t, os.WriteFile(withNewline, []byte("0123456789abcdef0123456789abcdef\n"), 0o600))
	key, err := kaizen.ReadAuditKeyFile(withNewline)
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef0123456789abcdef\n", string(key), "used as stored")

	short := write("short", kaizen.MinAuditKeyLen-1)
	_, err = kaizen.ReadAuditKeyFile(short)
	assert.EqualError(t, err, fmt.Sprintf("kaizen: audit key file %s holds 15 bytes; the key needs at least 16", short))
	big := write("big", kaizen.MaxAuditKeyFile+1)
	_, err = kaizen.ReadAuditKeyFile(big)
	assert.EqualError(t, err, fmt.Sprintf("kaizen: audit key file %s holds more than 65536 bytes; it should hold the key alone", big))
	_, err = kaizen.ReadAuditKeyFile(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = kaizen.ReadAuditKeyFile("/dev/zero")
	assert.ErrorContains(t, err, "holds more than 65536 bytes", "an endless file is not read whole")
}

// TestReadAuditKey: a key read from a reader has the bounds of a key
// file, and an endless reader is not read whole.
func TestReadAuditKey(t *testing.T) {
	for _, n := range []int{kaizen.MinAuditKeyLen, kaizen.MaxAuditKeyFile} {
		key, err := kaizen.ReadAuditKey(bytes.NewReader(bytes.Repeat([]byte{'k'}, n)))
		require.NoError(t, err, "%d bytes", n)
		assert.Len(t, key, n)
	}
	_, err := kaizen.ReadAuditKey(strings.NewReader("fifteen bytes.."))
	assert.EqualError(t, err, "kaizen: audit key holds 15 bytes; the key needs at least 16")
	f, err := os.Open("/dev/zero")
	require.NoError(t, err)
	defer f.Close()
	_, err = kaizen.ReadAuditKey(f)
	assert.EqualError(t, err, "kaizen: audit key holds more than 65536 bytes; it should hold the key alone")
	_, err = kaizen.ReadAuditKey(iotest.ErrReader(io.ErrUnexpectedEOF))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// Without a key, the chain's hashes are plain SHA-256, which anyone can
// compute: a line edited and rehashed, with every line after it rehashed
// too, verifies, and only a hash published before the edit (Expect)
// shows it. With a key, the same rewrite fails at the edited line.
func TestVerifyAuditKeylessRewriteNeedsExpect(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		opts := kaizen.AuditOptions{}
		if keyed {
			opts.Key = testKey
		}
		l, hashes := trailWith(t, opts, 4)
		l[1] = strings.Replace(l[1], `"key":"`, `"key":"forged-`, 1)
		prev := hashes[0]
		for i := 1; i < len(l); i++ {
			start := strings.LastIndex(l[i], `,"prev":"`) + len(`,"prev":"`)
			l[i] = rehash(l[i][:start] + prev + l[i][start+64:])
			prev = hashOf(l[i])
		}
		body := strings.Join(l, "\n") + "\n"
		_, err := kaizen.VerifyAuditWith(strings.NewReader(body), kaizen.VerifyOptions{Key: opts.Key})
		if keyed {
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, 2, ae.Line, "the rewritten line")
			continue
		}
		require.NoError(t, err, "a keyless chain rewritten in full verifies")
		_, err = kaizen.VerifyAuditWith(strings.NewReader(body), kaizen.VerifyOptions{Expect: hashes[3]})
		require.ErrorIs(t, err, kaizen.ErrAuditTampered, "the hash published before the rewrite is gone")
	}
}
