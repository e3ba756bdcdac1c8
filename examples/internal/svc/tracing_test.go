package svc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// A span's name is the route's, or the method's alone: a method a client
// made up is named HTTP, as the conventions say, so that clients cannot
// fill a tracing backend with names of their choosing.
func TestTraceHTTPSpanNames(t *testing.T) {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) {}
	mux.HandleFunc("GET /payment/{id}", ok)
	mux.HandleFunc("/any", ok)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) }) // t.Context() is canceled by now
	h := svc.TraceHTTP(mux, mux, tp, propagation.TraceContext{}, func(*http.Request) bool { return false })

	for _, c := range []struct{ method, path, want string }{
		{"GET", "/payment/p-1", "GET /payment/{id}"},
		{"POST", "/nowhere", "POST"},
		{"XYZZY-1", "/nowhere", "HTTP"},
		{"get", "/nowhere", "HTTP"},
		{"XYZZY-2", "/any", "HTTP /any"},
	} {
		rec.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, nil))
		spans := rec.Ended()
		require.Len(t, spans, 1, c.method+" "+c.path)
		assert.Equal(t, c.want, spans[0].Name(), c.method+" "+c.path)
	}
}

// An endpoint URL that does not parse was logged whole, password and all,
// by the OTLP exporter, which then sent the spans to its default,
// localhost:4318, instead: it is refused, named redacted.
func TestTracerProviderRefusesABadEndpointURL(t *testing.T) {
	for _, bad := range []string{"http://u:s3cret@collector:port", "https://collector:4318/%zz?token=s3cret", "http:///v1"} {
		tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: bad}.TracerProvider()
		if tp != nil {
			assert.NoError(t, tp.Shutdown(context.Background()))
		}
		require.Error(t, err, bad)
		assert.ErrorContains(t, err, "OTLP endpoint", bad)
		assert.NotContains(t, err.Error(), "s3cret", bad)
	}
	tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: "http://collector:4318"}.TracerProvider()
	require.NoError(t, err)
	assert.NoError(t, tp.Shutdown(context.Background()))
}
