package svc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// failing returns a step that fails with errs in turn, then succeeds, and
// counts its calls.
func failing(calls *int, errs ...error) func(context.Context) error {
	return func(context.Context) error {
		*calls++
		if *calls <= len(errs) {
			return errs[*calls-1]
		}
		return nil
	}
}

func TestRetry(t *testing.T) {
	unreachable := fmt.Errorf("bucket: %w", nats.ErrTimeout)
	refused := errors.New("stream name already in use with a different configuration")
	ctx := context.Background()

	t.Run("out of reach, then done", func(t *testing.T) {
		var logs bytes.Buffer
		calls := 0
		err := svc.Retry(ctx, slog.New(slog.NewTextHandler(&logs, nil)), time.Minute, "opening the bucket", []any{"bucket", "b"},
			failing(&calls, unreachable, nats.ErrNoResponders))
		assert.NoError(t, err)
		assert.Equal(t, 3, calls)
		assert.Equal(t, 2, strings.Count(logs.String(), `msg="opening the bucket not done yet; retrying" bucket=b err=`), logs.String())
	})
	t.Run("another error at once", func(t *testing.T) {
		calls := 0
		err := svc.Retry(ctx, slog.New(slog.DiscardHandler), time.Minute, "x", nil, failing(&calls, unreachable, refused))
		assert.Equal(t, refused, err)
		assert.Equal(t, 2, calls)
	})
	t.Run("no longer than within", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			errs := make([]error, 100)
			for i := range errs {
				errs[i] = unreachable
			}
			// Waits of 0.1, 0.2 and 0.4 s fit in 1 s, the next 0.8 s
			// does not: four calls, 0.7 s apart from first to last.
			start := time.Now()
			err := svc.Retry(context.Background(), slog.New(slog.DiscardHandler), time.Second, "x", nil, failing(&calls, errs...))
			assert.Equal(t, unreachable, err)
			assert.Equal(t, 4, calls)
			assert.Equal(t, 700*time.Millisecond, time.Since(start))
		})
	})
	t.Run("ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		calls := 0
		err := svc.Retry(ctx, slog.New(slog.DiscardHandler), time.Minute, "x", nil, func(context.Context) error {
			calls++
			cancel()
			return context.DeadlineExceeded
		})
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 1, calls)
	})
}
