package natsjs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// Publish, TryPublish and PublishAsync refuse, without sending it, a
// message whose ID, Key or headers NATS headers would change on the way,
// with an error naming the field or header.
func TestPublishRefusesWhatHeadersWouldChange(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "CHECKED"})
	require.NoError(t, err)
	tests := []struct {
		msg  kanban.Message[int]
		want string
	}{
		{kanban.Message[int]{ID: " spaced "}, `natsjs: invalid message ID " spaced ": begins or ends with a space`},
		{kanban.Message[int]{ID: "trailing "}, `natsjs: invalid message ID "trailing "`},
		{kanban.Message[int]{ID: "crlf\r\nKanban-Key: injected"}, `natsjs: invalid message ID "crlf\r\nKanban-Key: injected": control character '\r' at byte 4`},
		{kanban.Message[int]{ID: "nul\x00"}, `natsjs: invalid message ID "nul\x00": control character '\x00'`},
		{kanban.Message[int]{ID: "tab\tid"}, `natsjs: invalid message ID "tab\tid": control character '\t'`},
		{kanban.Message[int]{ID: "id", Key: " k "}, `natsjs: invalid message Key " k "`},
		{kanban.Message[int]{ID: "id", Key: "k\n"}, `natsjs: invalid message Key "k\n": control character '\n'`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"bad name:": "v"}}, `natsjs: invalid message header name "bad name:": ' ' at byte 3`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"": "v"}}, `natsjs: invalid message header name "": must not be empty`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"a/b": "v"}}, `natsjs: invalid message header name "a/b"`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"X-Split": "secret\r\nX-Injected: 1"}}, `natsjs: invalid message header "X-Split": its value holds CR or LF`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"X-Padded": " secret"}}, `natsjs: invalid message header "X-Padded": its value begins or ends with white space`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"X-Padded": "secret\t"}}, `natsjs: invalid message header "X-Padded"`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"Kanban-Id": "secret"}}, `natsjs: invalid message header "Kanban-Id": names beginning Kanban- or Nats- are the queue's and the server's`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"Kanban-Key": "secret"}}, `natsjs: invalid message header "Kanban-Key"`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"Kanban-Reason": "secret"}}, `natsjs: invalid message header "Kanban-Reason"`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"Nats-Msg-Id": "secret"}}, `natsjs: invalid message header "Nats-Msg-Id"`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"Nats-Expected-Stream": "secret"}}, `natsjs: invalid message header "Nats-Expected-Stream"`},
		{kanban.Message[int]{ID: "id", Headers: kanban.Header{"Nats-TTL": "secret"}}, `natsjs: invalid message header "Nats-TTL"`},
	}
	for _, tc := range tests {
		for name, publish := range map[string]func(context.Context, kanban.Message[int]) error{
			"Publish": q.Publish, "TryPublish": q.TryPublish, "PublishAsync": q.PublishAsync,
		} {
			err := publish(ctx, tc.msg)
			require.Error(t, err, "%s %q", name, tc.msg.ID)
			assert.ErrorIs(t, err, natsjs.ErrInvalidMessage, name)
			assert.ErrorContains(t, err, tc.want, name)
			assert.NotContains(t, err.Error(), "secret", "%s: a header's value is not shown", name)
		}
	}
	require.NoError(t, q.Flush(ctx))
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Zero(t, b.Depth, "nothing was sent")
	assert.Zero(t, q.Stats().Published)
	require.NoError(t, q.Shutdown(ctx))
}

// What Publish accepts arrives exactly as published.
func TestPublishedArrivesAsWritten(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "ASIS", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	sent := kanban.Message[int]{
		ID:      "in ner: id\u00a0",
		Key:     "key=1; é",
		Payload: 7,
		Headers: kanban.Header{"X-Tab": "a\tb", "!#$%&'*+-.^_`|~": "ünï\x00code", "X-Empty": ""},
	}
	require.NoError(t, q.Publish(ctx, sent))
	got := make(chan kanban.Delivery[int], 1)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			got <- d
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	select {
	case d := <-got:
		assert.Equal(t, sent.ID, d.ID)
		assert.Equal(t, sent.Key, d.Key)
		assert.Equal(t, sent.Payload, d.Payload)
		for k, v := range sent.Headers {
			require.Contains(t, d.Headers, k)
			assert.Equal(t, v, d.Headers[k], "header %q", k)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("message not delivered")
	}
	cancel()
	require.NoError(t, <-done)
}

// TestEmptyPayloadWithAStatusHeader: a message whose payload encodes to
// nothing and that has a header named Status is refused. nats.go reads
// such a delivery as the server's status message (a 404, a 409, a
// heartbeat): it ended the pull request with an error, or dropped the
// message, which never reached a handler, was never dead-lettered, and
// came back every AckWait holding a WIP slot — with a WIP of 1, the queue
// handled nothing more. With a payload, or without the header, it
// arrives as written.
func TestEmptyPayloadWithAStatusHeader(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[[]byte](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "STATUS", Codec: rawCodec{}, FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	for name, publish := range map[string]func(context.Context, kanban.Message[[]byte]) error{
		"Publish": q.Publish, "TryPublish": q.TryPublish, "PublishAsync": q.PublishAsync,
	} {
		err := publish(ctx, kanban.Message[[]byte]{ID: "refused", Headers: kanban.Header{"Status": "secret"}})
		assert.ErrorIs(t, err, natsjs.ErrInvalidMessage, name)
		assert.ErrorContains(t, err, `natsjs: invalid message header "Status"`, name)
		assert.NotContains(t, fmt.Sprint(err), "secret", "%s: a header's value is not shown", name)
	}
	require.NoError(t, q.Flush(ctx))
	sent := map[string]kanban.Message[[]byte]{
		"with payload":   {ID: "with payload", Payload: []byte("x"), Headers: kanban.Header{"Status": "shipped"}},
		"without header": {ID: "without header", Headers: kanban.Header{"X-Status": "shipped"}},
		"empty status":   {ID: "empty status", Headers: kanban.Header{"Status": ""}},
	}
	for _, m := range sent {
		require.NoError(t, q.Publish(ctx, m))
	}
	got := make(chan kanban.Delivery[[]byte], len(sent))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[[]byte]) error {
			got <- d
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	for range sent {
		select {
		case d := <-got:
			m := sent[d.ID]
			assert.Equal(t, len(m.Payload), len(d.Payload), d.ID)
			assert.Equal(t, m.Headers, d.Headers, d.ID)
		case <-time.After(30 * time.Second):
			t.Fatal("a message was not delivered")
		}
	}
	cancel()
	require.NoError(t, <-done)
}
