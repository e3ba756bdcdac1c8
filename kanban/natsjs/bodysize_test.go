package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
	"github.com/taipattern/taikit/kanban/queuetest"
)

// sizedOrder is a payload of a known size as JSON.
type sizedOrder struct {
	Item string `json:"item"`
}

// TestSpansHaveTheBodySize: the Tracer is told the size of a message's
// body, its payload as the Codec encoded it and not its headers, on the
// send of Publish, TryPublish, PublishAsync and the redrive of its dead
// letter, and on each attempt to handle it.
func TestSpansHaveTheBodySize(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	tr := queuetest.NewTracer()
	q, err := natsjs.New[sizedOrder](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "BODYSIZE", FetchWait: 100 * time.Millisecond, Tracer: tr,
	})
	require.NoError(t, err)
	payload := sizedOrder{Item: "a book"}
	body, err := kanban.JSON{}.Marshal(payload)
	require.NoError(t, err)
	hdr := kanban.Header{"note": "a header that is not part of the body"}
	require.NoError(t, q.Publish(ctx, kanban.Message[sizedOrder]{ID: "publish", Headers: hdr, Payload: payload}))
	require.NoError(t, q.TryPublish(ctx, kanban.Message[sizedOrder]{ID: "try", Headers: hdr, Payload: payload}))
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[sizedOrder]{ID: "async", Headers: hdr, Payload: payload}))
	require.NoError(t, q.Flush(ctx))

	// "publish" fails for good at first, is dead-lettered, and redriven.
	consume := func(n int, refuse bool) {
		t.Helper()
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		handled := make(chan struct{}, n)
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[sizedOrder]) error {
				defer func() { handled <- struct{}{} }()
				if refuse && d.ID == "publish" {
					return kanban.Permanent(errors.New("refused"))
				}
				return nil
			}, kanban.ConsumeOptions{})
		}()
		for range n {
			<-handled
		}
		cancel()
		require.NoError(t, <-done)
	}
	consume(3, true)
	dl, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dl, 1)
	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	consume(1, false)

	spans := tr.Spans()
	var sends, processes []string
	for _, s := range spans {
		assert.Equal(t, len(body), s.Op.BodySize, "%v of %s", s.Op.Type, s.Op.MessageID)
		switch s.Op.Type {
		case kanban.OpSend:
			sends = append(sends, s.Op.MessageID)
		case kanban.OpProcess:
			processes = append(processes, s.Op.MessageID)
		}
	}
	assert.Equal(t, []string{"publish", "try", "async", "publish"}, sends)
	assert.ElementsMatch(t, []string{"publish", "try", "async", "publish"}, processes)
}

// failingCodec fails or panics encoding, as a Codec with a bug does.
type failingCodec struct {
	kanban.JSON
	panics bool
}

var errEncoding = errors.New("cannot encode")

func (c failingCodec) Marshal(any) ([]byte, error) {
	if c.panics {
		panic("codec bug")
	}
	return nil, errEncoding
}

// TestSendSpanOfAPayloadThatCannotBeEncoded: a publish whose payload
// the Codec cannot encode has its send span, without a body size, ended
// with the Codec's error, or with kanban.ErrPublishInterrupted when the
// Codec panics; an invalid ID is told as such, and the Codec is not
// called for it.
func TestSendSpanOfAPayloadThatCannotBeEncoded(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	for _, panics := range []bool{false, true} {
		for _, async := range []bool{false, true} {
			tr := queuetest.NewTracer()
			q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
				Stream: fmt.Sprintf("ENCODING_%v_%v", panics, async), Codec: failingCodec{panics: panics}, Tracer: tr,
			})
			require.NoError(t, err)
			publish := q.Publish
			if async {
				publish = q.PublishAsync
			}
			if panics {
				require.PanicsWithValue(t, "codec bug", func() { _ = publish(ctx, kanban.Message[int]{ID: "m1"}) })
			} else {
				require.ErrorIs(t, publish(ctx, kanban.Message[int]{ID: "m1"}), errEncoding)
			}
			require.ErrorIs(t, publish(ctx, kanban.Message[int]{}), kanban.ErrNoID)
			spans := tr.Spans()
			require.Len(t, spans, 2)
			for _, s := range spans {
				assert.Equal(t, kanban.OpSend, s.Op.Type)
				assert.Zero(t, s.Op.BodySize)
				assert.True(t, s.Ended)
			}
			assert.Equal(t, "m1", spans[0].Op.MessageID)
			if panics {
				assert.ErrorIs(t, spans[0].Err, kanban.ErrPublishInterrupted, "panics %v, async %v", panics, async)
			} else {
				assert.ErrorIs(t, spans[0].Err, errEncoding, "panics %v, async %v", panics, async)
			}
			assert.ErrorIs(t, spans[1].Err, kanban.ErrNoID)
		}
	}
}
