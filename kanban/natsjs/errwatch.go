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
//
// nats.go reads and sets a connection's handler in two calls, with no
// way to swap it at once: a handler a user sets between the queue's
// read of the one in place and its setting of its own (as the first
// Consume on the connection starts), or between its check that its own
// is in place and its putting back the one before (as the last
// returns), is replaced, and lost. Consume's doc says so.

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
// calls the connection's own handler. A *whichWatch is answered instead.
func (w *errWatch) handle(nc *nats.Conn, sub *nats.Subscription, err error) {
	if q, ok := err.(*whichWatch); ok {
		q.is = q.w == w
		return
	}
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
		if w.isHandler(nc.ErrorHandler()) {
			nc.SetErrorHandler(w.prev)
		}
	}
}

// whichWatch asks a chained handler (errWatch.handle) whether it is w's.
type whichWatch struct {
	w  *errWatch
	is bool // set by the handler: it is w's
}

func (*whichWatch) Error() string { return "natsjs: which error watch" }

// isHandler reports whether h is w's chained handler. A handler of the
// same function (a method value of errWatch) may be another errWatch's:
// one chained by an earlier Consume on the connection, that a user saved
// (nc.ErrorHandler) and set back. Such a handler is asked, with a
// *whichWatch: no user's handler is ever called with one.
func (w *errWatch) isHandler(h nats.ErrHandler) bool {
	if h == nil || reflect.ValueOf(h).Pointer() != reflect.ValueOf(w.handle).Pointer() {
		return false
	}
	q := &whichWatch{w: w}
	h(nil, nil, q)
	return q.is
}
