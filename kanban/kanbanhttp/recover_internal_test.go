package kanbanhttp

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A panic once the answer has begun aborts it (http.ErrAbortHandler, which
// the server answers by cutting the connection): a JSON error written
// after a part of the answer would make one that reads as whole, or as
// garbage. Before the answer begins it is answered 500.
func TestPanicAfterTheAnswerBeganAbortsIt(t *testing.T) {
	var logged bytes.Buffer
	h := &Handler{log: slog.New(slog.NewTextHandler(&logged, nil))}
	for _, begun := range []bool{false, true} {
		logged.Reset()
		serve := h.read(func(w http.ResponseWriter, _ *http.Request) error {
			if begun {
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(`{"dead_letters":[`))
			}
			panic("encoding bug")
		})
		w := httptest.NewRecorder()
		var got any
		func() {
			defer func() { got = recover() }()
			serve(w, httptest.NewRequest("GET", "/queues", nil))
		}()
		if !bytes.Contains(logged.Bytes(), []byte("encoding bug")) {
			t.Errorf("begun %v: the panic is not logged: %s", begun, logged.String())
		}
		if begun {
			if got != http.ErrAbortHandler {
				t.Errorf("begun: recovered %v, want http.ErrAbortHandler", got)
			}
			if w.Body.String() != `{"dead_letters":[` {
				t.Errorf("begun: body %q: something was written after the panic", w.Body.String())
			}
			continue
		}
		if got != nil {
			t.Errorf("not begun: panicked on with %v", got)
		}
		if w.Code != http.StatusInternalServerError {
			t.Errorf("not begun: status %d, want 500", w.Code)
		}
	}
	// http.ErrAbortHandler, panicked by the handler itself, goes on as
	// it is, not logged as a bug.
	logged.Reset()
	var got any
	func() {
		defer func() { got = recover() }()
		h.read(func(http.ResponseWriter, *http.Request) error { panic(http.ErrAbortHandler) })(httptest.NewRecorder(), httptest.NewRequest("GET", "/queues", nil))
	}()
	if got != http.ErrAbortHandler || logged.Len() != 0 {
		t.Errorf("recovered %v, logged %q; want http.ErrAbortHandler and nothing logged", got, logged.String())
	}
}
