package kaizen_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

func TestAuditWaitWrittenWaitsForTheWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &blockingWriter{release: make(chan struct{})}
		a, err := kaizen.NewAudit(w, kaizen.AuditOptions{})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, a.WaitWritten(ctx), "nothing observed: nothing to wait for")

		a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
		synctest.Wait() // the writer blocks in Write
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		require.ErrorIs(t, a.WaitWritten(short), context.DeadlineExceeded, "the line is not written yet")

		var waited sync.WaitGroup
		var got error
		returned := false
		waited.Go(func() {
			got = a.WaitWritten(ctx)
			returned = true
		})
		synctest.Wait()
		assert.False(t, returned, "WaitWritten waits while the line is in Write")
		close(w.release)
		waited.Wait()
		require.NoError(t, got)
		assert.Contains(t, string(w.buf.Bytes()), `"id":"1"`, "written when WaitWritten returned")
		require.NoError(t, a.Shutdown(ctx))
		require.NoError(t, a.WaitWritten(ctx))
	})
}

func TestAuditWaitWrittenReturnsTheTrailsError(t *testing.T) {
	// A record that could not be written is settled all the same: it
	// went to OnUnwritten, and WaitWritten returns the error that stopped
	// the trail.
	var unwritten []string
	a, err := kaizen.NewAudit(brokenWriter{}, kaizen.AuditOptions{OnUnwritten: func(r tai.Record, _ error) {
		unwritten = append(unwritten, r.ID)
	}})
	require.NoError(t, err)
	a.Observe(context.Background(), tai.Record{ID: "1", Kind: "k"})
	err = a.WaitWritten(context.Background())
	require.Error(t, err)
	assert.Equal(t, a.Err(), err)
	assert.Equal(t, []string{"1"}, unwritten, "handed over before WaitWritten returned")
	require.Error(t, a.Shutdown(context.Background()))
}

func TestAuditWaitWrittenConcurrently(t *testing.T) {
	// Each caller finds its own line written once WaitWritten returns,
	// however the writer batches them.
	var buf syncBuffer
	a, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{BatchBytes: 2048})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var missing sync.Map
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := fmt.Sprintf("%d-%d", g, i)
				a.Observe(context.Background(), tai.Record{ID: id, Kind: "k"})
				if err := a.WaitWritten(context.Background()); err != nil {
					missing.Store(id, err)
					continue
				}
				if !bytes.Contains(buf.Bytes(), []byte(`"id":"`+id+`"`)) {
					missing.Store(id, errors.New("not written"))
				}
			}
		})
	}
	wg.Wait()
	missing.Range(func(k, v any) bool {
		t.Errorf("%v: %v", k, v)
		return true
	})
	require.NoError(t, a.Shutdown(context.Background()))
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}

// A record handed to OnUnwritten on the goroutine calling Observe, after
// Shutdown or once the trail failed, is none of the records a
// WaitWritten called before it waits for: it does not let WaitWritten
// return while a record observed before the call is still queued, or in
// the io.Writer's Write, or not yet handed to OnUnwritten.
func TestAuditWaitWrittenIsNotEndedByALaterRecordLost(t *testing.T) {
	t.Run("after Shutdown", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := &blockingWriter{release: make(chan struct{})}
			a, err := kaizen.NewAudit(w, kaizen.AuditOptions{OnUnwritten: func(tai.Record, error) {}})
			require.NoError(t, err)
			ctx := context.Background()
			a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
			synctest.Wait() // the writer blocks in Write with line 1
			var waited sync.WaitGroup
			var got error
			returned := false
			waited.Go(func() {
				got = a.WaitWritten(ctx)
				returned = true
			})
			waited.Go(func() { assert.NoError(t, a.Shutdown(ctx)) })
			synctest.Wait()
			a.Observe(ctx, tai.Record{ID: "2", Kind: "k"}) // after Shutdown: not written
			synctest.Wait()
			assert.False(t, returned, "WaitWritten returned while line 1 is in Write")
			close(w.release)
			waited.Wait()
			require.NoError(t, got)
			assert.Contains(t, string(w.buf.Bytes()), `"id":"1"`)
		})
	})
	t.Run("after a failed write", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := &blockedFailingWriter{release: make(chan struct{})}
			hold := make(chan struct{})
			var mu sync.Mutex
			var handed []string
			a, err := kaizen.NewAudit(w, kaizen.AuditOptions{OnUnwritten: func(r tai.Record, _ error) {
				if r.ID == "1" {
					<-hold // on the writer goroutine, with record 2 queued
				}
				mu.Lock()
				handed = append(handed, r.ID)
				mu.Unlock()
			}})
			require.NoError(t, err)
			ctx := context.Background()
			a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
			synctest.Wait()                                // the writer blocks in Write with line 1
			a.Observe(ctx, tai.Record{ID: "2", Kind: "k"}) // queued
			var waited sync.WaitGroup
			var got error
			returned := false
			waited.Go(func() {
				got = a.WaitWritten(ctx)
				returned = true
			})
			close(w.release) // the write fails; record 1 is being handed over
			synctest.Wait()
			require.Error(t, a.Err())
			a.Observe(ctx, tai.Record{ID: "3", Kind: "k"}) // handed over here, the trail having failed
			a.Observe(ctx, tai.Record{ID: "4", Kind: "k"})
			synctest.Wait()
			assert.False(t, returned, "WaitWritten returned before records 1 and 2 were handed to OnUnwritten")
			close(hold)
			waited.Wait()
			require.Error(t, got)
			mu.Lock()
			assert.Equal(t, []string{"3", "4", "1", "2"}, handed)
			mu.Unlock()
			require.Error(t, a.Shutdown(ctx))
		})
	})
}

// blockedFailingWriter fails every Write once release is closed.
type blockedFailingWriter struct{ release chan struct{} }

func (w *blockedFailingWriter) Write([]byte) (int, error) {
	<-w.release
	return 0, errors.New("disk gone")
}

// A record that is not written for a reason of its own (Redact panics or
// calls runtime.Goexit, its line is too long) is handed to OnUnwritten
// only once the lines queued before it are written: it does not let a
// WaitWritten that waits for one of them return while that line is
// still in the writer's buffer, or in the io.Writer's Write.
func TestAuditWaitWrittenWaitsForTheLinesBeforeAnUnwrittenRecord(t *testing.T) {
	for _, how := range []string{"panic", "goexit"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := &gatedWriter{gate: make(chan struct{})}
				var mu sync.Mutex
				var handed []string
				a, err := kaizen.NewAudit(w, kaizen.AuditOptions{
					Logger: slog.New(slog.DiscardHandler),
					Redact: func(e *kaizen.AuditEntry) {
						if e.ID == "2" {
							if how == "panic" {
								panic("redact: unexpected key")
							}
							runtime.Goexit()
						}
					},
					OnUnwritten: func(r tai.Record, _ error) {
						mu.Lock()
						handed = append(handed, r.ID)
						mu.Unlock()
					},
				})
				require.NoError(t, err)
				ctx := context.Background()
				a.Observe(ctx, tai.Record{ID: "0", Kind: "k"})
				synctest.Wait() // the writer blocks in Write with line 0
				a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
				var waited sync.WaitGroup
				var got error
				returned := false
				waited.Go(func() {
					got = a.WaitWritten(ctx)
					returned = true
				})
				synctest.Wait() // WaitWritten waits for lines 0 and 1
				a.Observe(ctx, tai.Record{ID: "2", Kind: "k"})
				w.gate <- struct{}{} // line 0 is written; 1 is encoded, 2 is not
				synctest.Wait()
				assert.False(t, returned, "WaitWritten returned while line 1 is not written")
				close(w.gate)
				waited.Wait()
				require.NoError(t, got)
				assert.Contains(t, string(w.buf.Bytes()), `"id":"1"`, "written when WaitWritten returned")
				require.NoError(t, a.Shutdown(ctx))
				mu.Lock()
				assert.Equal(t, []string{"2"}, handed)
				mu.Unlock()
				require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(w.buf.Bytes())))
			})
		})
	}
}

// gatedWriter lets a Write through for every value sent on gate, and
// every Write once gate is closed.
type gatedWriter struct {
	gate chan struct{}
	buf  syncBuffer
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	<-w.gate
	return w.buf.Write(p)
}

// A record Redact refuses while the lines before it are pending is handed
// to OnUnwritten after them even when their Write ends the writer
// goroutine with runtime.Goexit: none is lost silently, and WaitWritten
// returns the error that stopped the trail.
func TestAuditRejectedRecordAfterAWriteThatCallsGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &gatedWriter{gate: make(chan struct{})}
		writes := 0
		exiting := &goexitOnSecondWrite{w: w, writes: &writes}
		var mu sync.Mutex
		unwritten := map[string]error{}
		var order []string
		a, err := kaizen.NewAudit(exiting, kaizen.AuditOptions{
			Logger: slog.New(slog.DiscardHandler),
			Redact: func(e *kaizen.AuditEntry) {
				if e.ID == "2" {
					panic("redact: unexpected key")
				}
			},
			OnUnwritten: func(r tai.Record, err error) {
				mu.Lock()
				unwritten[r.ID] = err
				order = append(order, r.ID)
				mu.Unlock()
			},
		})
		require.NoError(t, err)
		ctx := context.Background()
		a.Observe(ctx, tai.Record{ID: "0", Kind: "k"})
		synctest.Wait() // the writer blocks in Write with line 0
		a.Observe(ctx, tai.Record{ID: "1", Kind: "k"})
		a.Observe(ctx, tai.Record{ID: "2", Kind: "k"})
		close(w.gate) // line 0 is written; the Write of line 1 calls Goexit
		require.ErrorContains(t, a.WaitWritten(ctx), "runtime.Goexit in the io.Writer's Write")
		mu.Lock()
		assert.Equal(t, []string{"1", "2"}, order)
		assert.ErrorContains(t, unwritten["1"], "runtime.Goexit in the io.Writer's Write")
		assert.ErrorContains(t, unwritten["2"], "panic in AuditOptions.Redact")
		mu.Unlock()
		assert.EqualValues(t, 1, a.Written())
		require.Error(t, a.Shutdown(ctx))
	})
}

// goexitOnSecondWrite writes to w, and calls runtime.Goexit in its
// second Write.
type goexitOnSecondWrite struct {
	w      *gatedWriter
	writes *int
}

func (g *goexitOnSecondWrite) Write(p []byte) (int, error) {
	if *g.writes++; *g.writes == 2 {
		runtime.Goexit()
	}
	return g.w.Write(p)
}

// TestAuditWaitWrittenReportsARefusedRecord: a record the trail refuses
// for a reason of its own (Redact panics, its line is too long), or one
// observed after Shutdown, is not written, though the trail goes on: a
// WaitWritten given the context it was observed under (TrackWritten)
// reports it, with the reason, rather than return nil as if it were; one
// given another tracked context, whose records were written, returns nil.
func TestAuditWaitWrittenReportsARefusedRecord(t *testing.T) {
	var buf syncBuffer
	a, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{
		Logger:      slog.New(slog.DiscardHandler),
		OnUnwritten: func(tai.Record, error) {},
		Redact: func(e *kaizen.AuditEntry) {
			switch e.ID {
			case "panics":
				panic("redact: unexpected key")
			case "exits":
				runtime.Goexit()
			case "long":
				e.Error = strings.Repeat("x", kaizen.MaxAuditLineLen)
			}
		},
	})
	require.NoError(t, err)
	bg := context.Background()
	for id, reason := range map[string]string{
		"panics": "panic in AuditOptions.Redact",
		"exits":  "runtime.Goexit in AuditOptions.Redact",
		"long":   "longer than",
	} {
		ctx := kaizen.TrackWritten(bg)
		a.Observe(ctx, tai.Record{ID: id, Kind: "k"})
		err := a.WaitWritten(ctx)
		require.ErrorIs(t, err, kaizen.ErrAuditUnwritten, id)
		assert.ErrorContains(t, err, reason, id)
		// A context made from the tracked one reports it too.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		assert.ErrorIs(t, a.WaitWritten(wctx), kaizen.ErrAuditUnwritten, id)
		cancel()
	}
	ok := kaizen.TrackWritten(bg)
	a.Observe(ok, tai.Record{ID: "ok", Kind: "k"})
	require.NoError(t, a.WaitWritten(ok))
	assert.Contains(t, string(buf.Bytes()), `"id":"ok"`)
	require.NoError(t, a.Err(), "the trail goes on")

	require.NoError(t, a.Shutdown(bg))
	late := kaizen.TrackWritten(bg)
	a.Observe(late, tai.Record{ID: "late", Kind: "k"})
	err = a.WaitWritten(late)
	require.ErrorIs(t, err, kaizen.ErrAuditUnwritten)
	require.ErrorIs(t, err, kaizen.ErrAuditClosed)
}

// TestAuditWaitWrittenReportsARecordLostWithTheTrail: a tracked record
// lost with the write that stopped the trail is reported as not written,
// and the error is the trail's too.
func TestAuditWaitWrittenReportsARecordLostWithTheTrail(t *testing.T) {
	a, err := kaizen.NewAudit(brokenWriter{}, kaizen.AuditOptions{OnUnwritten: func(tai.Record, error) {}})
	require.NoError(t, err)
	for _, id := range []string{"in the failed write", "after it"} {
		ctx := kaizen.TrackWritten(context.Background())
		a.Observe(ctx, tai.Record{ID: id, Kind: "k"})
		err = a.WaitWritten(ctx)
		require.ErrorIs(t, err, kaizen.ErrAuditUnwritten, id)
		require.ErrorIs(t, err, a.Err(), id)
	}
	require.Error(t, a.Shutdown(context.Background()))
}

// TestAuditWaitWrittenTrackedConcurrently: each caller, observing under a
// context of its own, learns whether its own record was written, however
// the records of the others, written or refused, fall around it.
func TestAuditWaitWrittenTrackedConcurrently(t *testing.T) {
	var buf syncBuffer
	refused := func(id string) bool { return strings.HasSuffix(id, "7") }
	a, err := kaizen.NewAudit(&buf, kaizen.AuditOptions{
		BatchBytes:  2048,
		Logger:      slog.New(slog.DiscardHandler),
		OnUnwritten: func(tai.Record, error) {},
		Redact: func(e *kaizen.AuditEntry) {
			if refused(e.ID) {
				panic("redact: refused")
			}
		},
	})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var wrong sync.Map
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				id := fmt.Sprintf("%d-%d", g, i)
				ctx := kaizen.TrackWritten(context.Background())
				a.Observe(ctx, tai.Record{ID: id, Kind: "k"})
				err := a.WaitWritten(ctx)
				switch {
				case refused(id) && !errors.Is(err, kaizen.ErrAuditUnwritten):
					wrong.Store(id, fmt.Errorf("refused, but WaitWritten returned %v", err))
				case !refused(id) && err != nil:
					wrong.Store(id, err)
				case !refused(id) && !bytes.Contains(buf.Bytes(), []byte(`"id":"`+id+`"`)):
					wrong.Store(id, errors.New("not written"))
				}
			}
		})
	}
	wg.Wait()
	wrong.Range(func(k, v any) bool {
		t.Errorf("%v: %v", k, v)
		return true
	})
	require.NoError(t, a.Shutdown(context.Background()))
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}

// TestAuditWaitWrittenReportsAWrittenRecordAfterTheTrailFailed: a
// tracked record that was written is reported written, though a later
// write stopped the trail before WaitWritten was called: the caller's
// line is in the trail, and an error would say it is not. Err tells of
// the failure; a record lost with it is reported not written.
func TestAuditWaitWrittenReportsAWrittenRecordAfterTheTrailFailed(t *testing.T) {
	w := &failingAfterWrites{ok: 1}
	a, err := kaizen.NewAudit(w, kaizen.AuditOptions{OnUnwritten: func(tai.Record, error) {}})
	require.NoError(t, err)
	bg := context.Background()
	written := kaizen.TrackWritten(bg)
	a.Observe(written, tai.Record{ID: "written", Kind: "k"})
	require.NoError(t, a.WaitWritten(written))

	lost := kaizen.TrackWritten(bg)
	a.Observe(lost, tai.Record{ID: "lost", Kind: "k"})
	require.Error(t, a.Flush(bg), "the second write fails")
	require.Error(t, a.Err())

	require.NoError(t, a.WaitWritten(written), "its line was written before the trail failed")
	assert.Contains(t, w.buf.String(), `"id":"written"`)
	err = a.WaitWritten(lost)
	require.ErrorIs(t, err, kaizen.ErrAuditUnwritten)
	require.ErrorIs(t, err, a.Err())
	assert.NotContains(t, w.buf.String(), `"id":"lost"`)
	require.Error(t, a.Shutdown(bg))
}

// failingAfterWrites writes its first ok Writes and fails every later
// one, writing nothing.
type failingAfterWrites struct {
	ok  int
	buf bytes.Buffer
}

func (w *failingAfterWrites) Write(p []byte) (int, error) {
	if w.ok == 0 {
		return 0, errors.New("disk gone")
	}
	w.ok--
	return w.buf.Write(p)
}
