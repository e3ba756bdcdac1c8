package natsjs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban/natsembed"
)

// settledMsg is a delivered message that records how it was settled
// through its methods; what is sent to its reply subject goes to the
// server.
type settledMsg struct {
	jetstream.Msg // the methods not overridden are not called
	reply         string
	settled       []string
	delays        []time.Duration
}

func (m *settledMsg) Reply() string { return m.reply }

func (m *settledMsg) Data() []byte         { return []byte("1") }
func (m *settledMsg) Headers() nats.Header { return nats.Header{HeaderID: {"m"}} }
func (m *settledMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: 1}, NumDelivered: 6}, nil
}
func (m *settledMsg) Nak() error  { m.settled = append(m.settled, "nak"); return nil }
func (m *settledMsg) Term() error { m.settled = append(m.settled, "term"); return nil }
func (m *settledMsg) NakWithDelay(d time.Duration) error {
	m.settled = append(m.settled, "nak with delay")
	m.delays = append(m.delays, d)
	return nil
}

// TestDeadLetterFailureHandsBackWithADelay: a message whose dead letter
// cannot be stored (its stream gone, a payload too large with the
// dead-letter headers) is handed back after a wait that grows with its
// deliveries, not at once: the consumer would take it straight back,
// fail again and spin, logging each turn. The consumer has acknowledged
// no message, so the negative acknowledgement asks for an answer (see
// retry): it is read where the server would take it.
func TestDeadLetterFailureHandsBackWithADelay(t *testing.T) {
	nc := inProcessConn(t)
	ctx := context.Background()
	q, err := New[int](ctx, nc, Options{Stream: "NODLQ"})
	require.NoError(t, err)
	require.NoError(t, q.js.DeleteStream(ctx, "NODLQ_DLQ"))
	acks, err := nc.SubscribeSync("SETTLED.m")
	require.NoError(t, err)

	var delays []time.Duration
	for _, attempts := range []int{1, 2, 1000} {
		m := &settledMsg{reply: "SETTLED.m"}
		src := &source[int]{q: q}
		err := (&lease[int]{s: src, m: m, attempt: attempts}).DeadLetter(ctx, "no", attempts)
		require.Error(t, err)
		assert.Empty(t, m.settled, "after %d attempts", attempts)
		nak, err := acks.NextMsg(5 * time.Second)
		require.NoError(t, err, "after %d attempts", attempts)
		assert.NotEmpty(t, nak.Reply, "an answer is asked for")
		var d time.Duration
		_, err = fmt.Sscanf(string(nak.Data), `-NAK {"delay": %d}`, &d)
		require.NoError(t, err, "%q", nak.Data)
		delays = append(delays, d)
		require.NotNil(t, src.sent.answers)
		require.NoError(t, src.sent.answers.Unsubscribe()) // as Consume would
	}
	_, err = acks.NextMsg(10 * time.Millisecond)
	assert.ErrorIs(t, err, nats.ErrTimeout, "one settlement each")
	assert.Greater(t, delays[0], time.Duration(0))
	assert.Less(t, delays[0], delays[1])
	assert.LessOrEqual(t, delays[2], maxRetryWait)
}

// TestDeadLetterTwiceIsStoredOnce: a delivery dead-lettered a second time
// (its Term lost, so it came back) is stored once in the dead-letter
// stream: its dead letter's dedup ID is the same on every delivery.
func TestDeadLetterTwiceIsStoredOnce(t *testing.T) {
	nc := inProcessConn(t)
	ctx := context.Background()
	q, err := New[int](ctx, nc, Options{Stream: "DEAD_TWICE"})
	require.NoError(t, err)
	for range 2 {
		m := &settledMsg{}
		require.NoError(t, (&lease[int]{s: &source[int]{q: q}, m: m, attempt: 6}).DeadLetter(ctx, "no", 6))
		assert.Equal(t, []string{"term"}, m.settled)
	}
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), b.DeadLetters)
}

// inProcessConn starts an embedded server, connected in process, and
// returns a connection to it; both end with the test.
func inProcessConn(t *testing.T) *nats.Conn {
	t.Helper()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Shutdown(context.Background())) })
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}
