package httpapi

import (
	"net/http"
	"strings"
)

// JSONErrors wraps mux so that its own answers for an unknown path (404) and
// a method the path does not allow (405, with its Allow header) are JSON in
// the error schema instead of net/http's plain text.
func JSONErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No pattern matched: the mux would answer 404 or 405 (or
		// redirect a path to its cleaned or slash-terminated form).
		mux.ServeHTTP(&errorWriter{ResponseWriter: w, r: r}, r)
	})
}

// errorWriter replaces the mux's plain-text 404 and 405 bodies.
type errorWriter struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool
}

func (e *errorWriter) WriteHeader(code int) {
	switch code {
	case http.StatusNotFound:
		e.replaced = true
		WriteError(e.ResponseWriter, Errorf(code, "not_found", "no route for %s %s", e.r.Method, Clip(e.r.URL.Path, 200)))
	case http.StatusMethodNotAllowed:
		e.replaced = true
		allow := e.ResponseWriter.Header().Get("Allow")
		err := Errorf(code, "method_not_allowed", "%s is not allowed on %s", e.r.Method, Clip(e.r.URL.Path, 200))
		if allow != "" {
			err.Details = map[string]any{"allow": strings.Split(allow, ", ")}
		}
		WriteError(e.ResponseWriter, err)
	default:
		e.ResponseWriter.WriteHeader(code)
	}
}

func (e *errorWriter) Write(b []byte) (int, error) {
	if e.replaced {
		return len(b), nil
	}
	return e.ResponseWriter.Write(b)
}

// Unwrap returns the ResponseWriter underneath, so that an
// http.ResponseController reaches its Flush and deadlines (a stream of
// server-sent events needs them).
func (e *errorWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }
