package natsjs

import (
	"reflect"
	"sync"

	"github.com/nats-io/nats.go"
)

// The server tells a connection that it refused a publish (a permission
// missing) only with an error on the connection: it sets the connection's
// last error (nats.Conn.LastError) and is handed to its error handler
// (nats.ErrorHandler). The last error holds one error, and a refusal that
// another error replaces before it is read is lost; the error handler is
// called with every error, in order. So while a Consume runs, an error
// handler of the queue's is chained in front of the connection's own
// (which it calls with every error, as before), and the consumer is told
// of each error (see source.ackRefused). The connection's own handler is
// put back when the last Consume on the connection ends, unless it was
// replaced meanwhile (nats.Conn.SetErrorHandler): then the replacement
// stays, and Consume reads the last error alone.

// errWatches holds the handler chained on each connection a Consume runs
// on.
var errWatches = struct {
	mu    sync.Mutex
	conns map[*nats.Conn]*errWatch
}{conns: make(map[*nats.Conn]*errWatch)}

// errWatch is the error handler chained on one connection.
type errWatch struct {
	prev nats.ErrHandler // the connection's own handler, nil for none

	mu       sync.Mutex
	watchers map[*errWatcher]struct{}
}

// errWatcher is one Consume's watch of its connection's errors.
type errWatcher struct {
	see func(error) // called with each error, on the client's goroutine
}

// handle is the chained handler: it tells every watcher of err, then
// calls the connection's own handler.
func (w *errWatch) handle(nc *nats.Conn, sub *nats.Subscription, err error) {
	w.mu.Lock()
	for x := range w.watchers {
		x.see(err)
	}
	w.mu.Unlock()
	if w.prev != nil {
		w.prev(nc, sub, err)
	}
}

// watchErrors calls see with each asynchronous error of nc (see above)
// until the function it returns is called.
func watchErrors(nc *nats.Conn, see func(error)) (stop func()) {
	x := &errWatcher{see: see}
	errWatches.mu.Lock()
	w := errWatches.conns[nc]
	if w == nil {
		w = &errWatch{prev: nc.ErrorHandler(), watchers: make(map[*errWatcher]struct{})}
		errWatches.conns[nc] = w
		nc.SetErrorHandler(w.handle)
	}
	w.mu.Lock()
	w.watchers[x] = struct{}{}
	w.mu.Unlock()
	errWatches.mu.Unlock()
	return func() {
		errWatches.mu.Lock()
		defer errWatches.mu.Unlock()
		w.mu.Lock()
		delete(w.watchers, x)
		last := len(w.watchers) == 0
		w.mu.Unlock()
		if !last {
			return
		}
		delete(errWatches.conns, nc)
		if isHandler(nc.ErrorHandler(), w.handle) {
			nc.SetErrorHandler(w.prev)
		}
	}
}

// isHandler reports whether h is the chained handler of a connection,
// handle (a method value of its errWatch): the same function. Only one
// errWatch is chained on a connection at a time, so a handler of that
// function on it is that errWatch's.
func isHandler(h, handle nats.ErrHandler) bool {
	return h != nil && reflect.ValueOf(h).Pointer() == reflect.ValueOf(handle).Pointer()
}
