package natsjs_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// rawPublish publishes payload with the header block hdr (the lines
// after NATS/1.0, each ending CRLF) to subject over the bare protocol,
// as a client of another language may, without nats.go's checks of
// header names, and waits for the server to have taken it.
func rawPublish(t *testing.T, addr, subject, hdr, payload string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n') // INFO
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "INFO "), line)
	block := "NATS/1.0\r\n" + hdr + "\r\n"
	_, err = fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\nHPUB %s %d %d\r\n%s%s\r\nPING\r\n",
		subject, len(block), len(block)+len(payload), block, payload)
	require.NoError(t, err)
	for {
		line, err = r.ReadString('\n')
		require.NoError(t, err)
		require.False(t, strings.HasPrefix(line, "-ERR"), line)
		if strings.HasPrefix(line, "PONG") {
			return
		}
	}
}

// TestMessageOfAnotherClientIsDeadLettered: a message another client
// published to the work subject, with headers that a dead letter cannot
// carry — one the server acts on (Nats-Expected-Stream, which
// jetstream's WithExpectStream and other clients' publish options set),
// or a name nats.go refuses to send — is dead-lettered once its handler
// gives up, with the headers it can carry. Its dead letter was refused,
// by the dead-letter stream or by nats.go, and the message handed back,
// again at each delivery, without end.
func TestMessageOfAnotherClientIsDeadLettered(t *testing.T) {
	for name, publish := range map[string]func(t *testing.T, srv *natsembed.Server, nc *nats.Conn){
		"expected stream": func(t *testing.T, _ *natsembed.Server, nc *nats.Conn) {
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			m := nats.NewMsg("FOREIGN")
			m.Data = []byte("7")
			m.Header.Set(natsjs.HeaderID, "other")
			m.Header.Set("X-Keep", "kept")
			_, err = js.PublishMsg(context.Background(), m, jetstream.WithExpectStream("FOREIGN"))
			require.NoError(t, err)
		},
		"header name nats.go refuses": func(t *testing.T, srv *natsembed.Server, _ *nats.Conn) {
			rawPublish(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()), "FOREIGN",
				natsjs.HeaderID+": other\r\nX-Keep: kept\r\nx/y: z\r\n", "7")
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, natsembed.Options{NoAuth: true})
			nc := connect(t, srv.Connect)
			ctx := context.Background()
			q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "FOREIGN", FetchWait: 50 * time.Millisecond})
			require.NoError(t, err)
			publish(t, srv, nc)

			failed := errLog{msg: "kanban: settling a message failed", errs: make(chan error, 1)}
			handled := make(chan int, 100)
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			defer func() {
				cancel()
				<-done
			}()
			go func() {
				done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
					handled <- d.Payload
					return kanban.Permanent(errors.New("refused"))
				}, kanban.ConsumeOptions{Logger: slog.New(failed)})
			}()
			var failure error
			require.Eventually(t, func() bool {
				select {
				case failure = <-failed.errs:
					return true
				default:
					return q.Stats().DeadLettered == 1
				}
			}, 30*time.Second, 5*time.Millisecond)
			require.NoError(t, failure, "dead-lettering failed")
			cancel()
			require.NoError(t, <-done)
			done <- nil
			dls, err := q.DeadLetters(ctx)
			require.NoError(t, err)
			require.Len(t, dls, 1)
			assert.Equal(t, "other", dls[0].ID)
			assert.Equal(t, "refused", dls[0].Reason)
			assert.Equal(t, "kept", dls[0].Headers["X-Keep"])
			assert.Equal(t, int64(0), depth(q), "terminated in the work stream")
			require.NoError(t, q.Shutdown(ctx))
		})
	}
}

// TestRedriveOfAnotherClientsDeadLetter: a dead letter another client
// published to the dead-letter stream, with headers a message cannot
// carry — one the server acts on (Nats-Expected-Stream, naming the
// dead-letter stream), and a name nats.go refuses to send — is redriven
// with the headers it can carry. Its redrive was refused, by the work
// stream or by nats.go, each time it was tried.
func TestRedriveOfAnotherClientsDeadLetter(t *testing.T) {
	srv := startServer(t, natsembed.Options{NoAuth: true})
	nc := connect(t, srv.Connect)
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "FOREIGNDL", FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	rawPublish(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()), "FOREIGNDL_DLQ",
		natsjs.HeaderID+": other\r\n"+natsjs.HeaderReason+": by hand\r\nNats-Expected-Stream: FOREIGNDL_DLQ\r\nX-Keep: kept\r\nx/y: z\r\n", "7")

	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	require.Equal(t, 1, n)

	got := make(chan kanban.Delivery[int], 1)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			got <- d
			cancel()
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	d := <-got
	require.NoError(t, <-done)
	assert.Equal(t, "other", d.ID)
	assert.Equal(t, 7, d.Payload)
	assert.Equal(t, "kept", d.Headers["X-Keep"])
	require.NoError(t, q.Shutdown(ctx))
}
