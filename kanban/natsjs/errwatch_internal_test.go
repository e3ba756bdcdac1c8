package natsjs

import (
	"reflect"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func handlerPtr(h nats.ErrHandler) uintptr { return reflect.ValueOf(h).Pointer() }

// TestWatchErrorsChainsOnce: consumers watching one connection's errors
// share one chained handler, which calls the connection's own with every
// error and tells each watcher; the connection's own is put back when
// the last stops watching, unless another replaced the chained one
// meanwhile, which then stays. A connection without a handler has none
// again.
func TestWatchErrorsChainsOnce(t *testing.T) {
	nc := inProcessConn(t)
	var own, seen1, seen2 []error
	ownHandler := func(_ *nats.Conn, _ *nats.Subscription, err error) { own = append(own, err) }
	nc.SetErrorHandler(ownHandler)

	stop1 := watchErrors(nc, func(err error) { seen1 = append(seen1, err) })
	stop2 := watchErrors(nc, func(err error) { seen2 = append(seen2, err) })
	chained := nc.ErrorHandler()
	require.NotEqual(t, handlerPtr(ownHandler), handlerPtr(chained))
	chained(nc, nil, nats.ErrSlowConsumer)
	assert.Equal(t, []error{nats.ErrSlowConsumer}, own)
	assert.Equal(t, []error{nats.ErrSlowConsumer}, seen1)
	assert.Equal(t, []error{nats.ErrSlowConsumer}, seen2)

	stop1()
	assert.Equal(t, handlerPtr(chained), handlerPtr(nc.ErrorHandler()), "chained while one watches")
	nc.ErrorHandler()(nc, nil, nats.ErrStaleConnection)
	assert.Len(t, seen1, 1, "no longer watching")
	assert.Len(t, seen2, 2)
	stop2()
	assert.Equal(t, handlerPtr(ownHandler), handlerPtr(nc.ErrorHandler()), "the connection's own put back")

	stop := watchErrors(nc, func(error) {})
	replaced := func(*nats.Conn, *nats.Subscription, error) {}
	nc.SetErrorHandler(replaced)
	stop()
	assert.Equal(t, handlerPtr(replaced), handlerPtr(nc.ErrorHandler()), "a handler set meanwhile stays")

	nc.SetErrorHandler(nil)
	stop = watchErrors(nc, func(error) {})
	assert.NotNil(t, nc.ErrorHandler())
	stop()
	assert.Nil(t, nc.ErrorHandler())
	errWatches.mu.Lock()
	assert.NotContains(t, errWatches.conns, nc)
	errWatches.mu.Unlock()
}

// TestWatchErrorsKeepsAnOldChainSetBack: a handler set while a Consume
// runs stays when the last Consume returns, also when it is the chained
// handler of an earlier Consume on the connection (saved with
// nc.ErrorHandler and set back by a user restoring what was there): it
// is the same function as the current chained one, and was taken for
// it, so the handler before the current Consume — one the user had
// replaced — came back.
func TestWatchErrorsKeepsAnOldChainSetBack(t *testing.T) {
	nc := inProcessConn(t)
	var own, theirs []error
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { own = append(own, err) })

	stop1 := watchErrors(nc, func(error) {})
	saved := nc.ErrorHandler() // a user's handler chains in front
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { theirs = append(theirs, err) })
	stop1()
	stop2 := watchErrors(nc, func(error) {})
	nc.SetErrorHandler(saved) // and puts back what it found
	stop2()

	nc.ErrorHandler()(nc, nil, nats.ErrSlowConsumer)
	assert.Equal(t, []error{nats.ErrSlowConsumer}, own, "the handler set back stays")
	assert.Empty(t, theirs, "the replaced handler does not come back")
}
