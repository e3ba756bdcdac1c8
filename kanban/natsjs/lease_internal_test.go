package natsjs

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban/natsembed"
)

// settledMsg is a delivered message that records how it was settled.
type settledMsg struct {
	jetstream.Msg // the methods not overridden are not called
	settled       []string
	delays        []time.Duration
}

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
// fail again and spin, logging each turn.
func TestDeadLetterFailureHandsBackWithADelay(t *testing.T) {
	nc := inProcessConn(t)
	ctx := context.Background()
	q, err := New[int](ctx, nc, Options{Stream: "NODLQ"})
	require.NoError(t, err)
	require.NoError(t, q.js.DeleteStream(ctx, "NODLQ_DLQ"))

	var delays []time.Duration
	for _, attempts := range []int{1, 2, 1000} {
		m := &settledMsg{}
		err := (&lease[int]{s: &source[int]{q: q}, m: m, attempt: attempts}).DeadLetter(ctx, "no", attempts)
		require.Error(t, err)
		assert.Equal(t, []string{"nak with delay"}, m.settled, "after %d attempts", attempts)
		require.Len(t, m.delays, 1)
		delays = append(delays, m.delays[0])
	}
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
