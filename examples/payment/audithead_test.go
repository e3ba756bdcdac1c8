package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// runService starts the service of cfg, makes a payment for each of
// customers, and shuts it down, which publishes its audit trail's head.
// It returns the head published.
func runService(t *testing.T, cfg Config, customers ...string) (lines uint64, hash string) {
	t.Helper()
	s, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	ts := &testService{Service: s, URL: srv.URL, http: srv, logs: &syncBuffer{}}
	for _, c := range customers {
		require.Equal(t, http.StatusOK, ts.pay(t, c, 10, nil).Code)
	}
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, s.publishAuditHead(ctx))
	lines, hash, err = AuditHead(ctx, s.js, cfg.Instance)
	require.NoError(t, err)
	require.NoError(t, s.Close(ctx))
	return lines, hash
}

// A trail cut short while the service was down still verifies as a chain
// (it is a shorter one), but no longer holds the head the service
// published: the next start fails and says so, changing neither the
// trail nor the published head, which a new head would otherwise replace
// within seconds, and the evidence with it. -audit-accept-lost-head starts
// anyway, and says so in the log.
func TestStartRefusedWhenTheTrailLostItsHead(t *testing.T) {
	for _, damage := range []struct {
		name string
		edit func(raw string) string
	}{
		{"the last line cut", func(raw string) string {
			return raw[:strings.LastIndexByte(raw[:len(raw)-1], '\n')+1]
		}},
		{"every line deleted", func(string) string { return "" }},
		{"only its first line kept", func(raw string) string {
			return raw[:strings.IndexByte(raw, '\n')+1]
		}},
		{"rewritten without a key", func(raw string) string {
			// A customer renamed and every hash from there computed
			// again, as anyone can without a key: as many lines, a chain
			// that verifies, and a last hash other than the head's.
			return rehash(strings.Replace(raw, `"key":"two"`, `"key":"twx"`, 1))
		}},
	} {
		t.Run(damage.name, func(t *testing.T) {
			cfg := testConfig(t)
			runService(t, cfg, "one", "two")
			lines, hash := runService(t, cfg, "three")

			path := filepath.Join(cfg.DataDir, "audit-test.jsonl")
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(raw), rehash(string(raw)), "rehash computes the hashes the service wrote")
			edited := damage.edit(string(raw))
			require.NotEqual(t, string(raw), edited)
			require.NoError(t, os.WriteFile(path, []byte(edited), 0o600))
			_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
			require.NoError(t, err, "the damaged trail is still a chain")

			_, err = NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.ErrorIs(t, err, errAuditHeadLost)
			assert.ErrorContains(t, err, fmt.Sprintf("does not hold line %d with hash %s", lines, hash))
			assert.ErrorContains(t, err, "-audit-accept-lost-head")
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, edited, string(after), "the trail is left as it was")

			// The head is still the one published: a second start fails
			// the same way.
			_, err = NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.ErrorIs(t, err, errAuditHeadLost)

			cfg.AuditAcceptLostHead = true
			logs := &syncBuffer{}
			s, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
			require.NoError(t, err)
			assert.Contains(t, logs.String(), "lost its published head")
			assert.Contains(t, logs.String(), hash)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, s.Close(ctx))

			// Its shutdown published the trail's own head: the next start
			// needs no flag.
			cfg.AuditAcceptLostHead = false
			runService(t, cfg)
		})
	}
}

// A head that cannot be read (written by something else) stops the
// start too, and -audit-accept-lost-head starts past it.
func TestStartRefusedOnAHeadItCannotRead(t *testing.T) {
	cfg := testConfig(t)
	runService(t, cfg, "one")
	s, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = s.heads.kv.PutString(ctx, cfg.Instance, "not a head")
	require.NoError(t, err)
	s.heads.stop() // shut down without publishing over it
	s.heads.wg.Wait()
	s.heads = nil
	require.NoError(t, s.Close(ctx))

	_, err = NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.ErrorIs(t, err, errAuditHeadLost)
	assert.ErrorContains(t, err, `"not a head", not "<lines> <hash>"`)
	assert.ErrorContains(t, err, "-audit-accept-lost-head")

	cfg.AuditAcceptLostHead = true
	runService(t, cfg)
	cfg.AuditAcceptLostHead = false
	runService(t, cfg) // the trail's own head replaced it
}

// rehash computes every line's prev and hash of the keyless trail raw
// again, from the genesis.
func rehash(raw string) string {
	const hashMember = `,"hash":"`
	var out strings.Builder
	prev := kaizen.GenesisHash
	for _, line := range strings.SplitAfter(raw, "\n") {
		if line == "" {
			continue
		}
		body := line[:strings.LastIndex(line, `,"prev":"`)] + `,"prev":"` + prev + `"}`
		sum := sha256.Sum256([]byte(body))
		prev = hex.EncodeToString(sum[:])
		out.WriteString(body[:len(body)-1] + hashMember + prev + "\"}\n")
	}
	return out.String()
}

// A trail that holds its published head starts: after a clean shutdown
// (the head is the trail's last line), and after lines written past the
// head, as a crash between two publications leaves them. The trail going
// on in a new file after the head was published is TestTrailHolds's.
func TestStartWithTheTrailHoldingItsHead(t *testing.T) {
	cfg := testConfig(t)
	runService(t, cfg, "one")
	runService(t, cfg, "two")

	s, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	ts := &testService{Service: s, URL: srv.URL, http: srv, logs: &syncBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, s.publishAuditHead(ctx))
	require.Equal(t, http.StatusOK, ts.pay(t, "three", 10, nil).Code)
	require.NoError(t, s.audit.Flush(ctx))
	_, hash, err := AuditHead(ctx, s.js, cfg.Instance)
	require.NoError(t, err)
	last, _ := s.audit.Last()
	require.NotEqual(t, hash, last, "a line past the published head")
	srv.Close()
	// Shut down without the last publication, as kill -9 does.
	s.heads.stop()
	s.heads.wg.Wait()
	s.heads = nil
	require.NoError(t, s.Close(ctx))

	runService(t, cfg, "four")
}

// trailHolds finds a head in the file the trail was written to when it was
// published, the last or, after a rotation since, the one before; and at
// the start of a file, the hash its first line links to.
func TestTrailHolds(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	a, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 600})
	require.NoError(t, err)
	var heads [][2]any
	for i := range 5 {
		a.Observe(context.Background(), tai.Record{ID: fmt.Sprintf("r-%d", i), Kind: "test", Outcome: tai.Succeeded, Start: time.Now()})
		require.NoError(t, a.Flush(context.Background()))
		h, n := a.Last()
		heads = append(heads, [2]any{n, h})
	}
	require.NoError(t, a.Shutdown(context.Background()))
	reopened, state, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 600})
	require.NoError(t, err)
	require.NoError(t, reopened.Shutdown(context.Background()))
	files, err := filepath.Glob(path + "*")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 3, "the trail rotated")

	last := heads[len(heads)-1]
	held, err := trailHolds(path, state, last[0].(uint64), last[1].(string))
	require.NoError(t, err)
	assert.True(t, held, "the last head")
	prev := heads[len(heads)-2]
	held, err = trailHolds(path, state, prev[0].(uint64), prev[1].(string))
	require.NoError(t, err)
	assert.True(t, held, "the head before, in the file before the last")
	first := heads[0]
	held, err = trailHolds(path, state, first[0].(uint64), first[1].(string))
	require.NoError(t, err)
	assert.False(t, held, "a head older than the file before the last is not looked for")
	held, err = trailHolds(path, state, prev[0].(uint64)+1, prev[1].(string))
	require.NoError(t, err)
	assert.False(t, held, "the right hash at another line")
	raw, err := os.ReadFile(state.File)
	require.NoError(t, err)
	var firstLine kaizen.AuditEntry
	require.NoError(t, json.Unmarshal(raw[:bytes.IndexByte(raw, '\n')], &firstLine))
	held, err = trailHolds(path, state, 0, firstLine.Prev)
	require.NoError(t, err)
	assert.True(t, held, "the start of the last file")
	held, err = trailHolds(path, state, 0, firstLine.Hash)
	require.NoError(t, err)
	assert.False(t, held, "the first line's own hash is not the file's start")

	assert.Equal(t, []string{"a.000041"}, func() []string {
		p, _ := previousAuditFile("a", "a.000042")
		return []string{p}
	}())
	p, ok := previousAuditFile("a", "a.000001")
	assert.True(t, ok)
	assert.Equal(t, "a", p)
	_, ok = previousAuditFile("a", "a")
	assert.False(t, ok)
}
