package kaizen_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
