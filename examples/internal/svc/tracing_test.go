package svc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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

// Spans reach the collector at the endpoint's path with /v1/traces added,
// whatever follows the path: a fragment, which HTTP never sends, is
// dropped, not read as the end of a URL that /v1/traces is then appended
// to (which sent the spans to the collector's root, where it answers 404).
func TestTracerProviderExportsToTheEndpointPath(t *testing.T) {
	for _, c := range []struct{ suffix, want string }{
		{"", "/v1/traces"},
		{"/", "/v1/traces"},
		{"/otlp/", "/otlp/v1/traces"},
		{"#frag", "/v1/traces"},
		{"/otlp#frag", "/otlp/v1/traces"},
		{"?", "/v1/traces"},
	} {
		got := make(chan string, 10)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- r.URL.RequestURI()
		}))
		tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: srv.URL + c.suffix}.TracerProvider()
		require.NoError(t, err, c.suffix)
		_, span := tp.Tracer("t").Start(context.Background(), "s")
		span.End()
		require.NoError(t, tp.ForceFlush(context.Background()), c.suffix)
		require.NoError(t, tp.Shutdown(context.Background()), c.suffix)
		srv.Close()
		require.Len(t, got, 1, c.suffix)
		assert.Equal(t, c.want, <-got, c.suffix)
	}
}

// OTLP/HTTP sends no query and no user info: an endpoint with either is
// refused, without its values, rather than exported to without them (the
// exporter dropped both, and a query before /v1/traces left the spans at
// the collector's root).
func TestTracerProviderRefusesAQueryOrUserInfo(t *testing.T) {
	for _, bad := range []string{
		"http://collector:4318?token=s3cret",
		"http://collector:4318/v1?token=s3cret",
		"https://collector:4318/?token=s3cret#frag",
		"http://user:s3cret@collector:4318",
	} {
		tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: bad}.TracerProvider()
		if tp != nil {
			assert.NoError(t, tp.Shutdown(context.Background()))
		}
		require.Error(t, err, bad)
		assert.ErrorContains(t, err, "OTLP endpoint", bad)
		assert.ErrorContains(t, err, "OTEL_EXPORTER_OTLP_HEADERS", bad)
		assert.NotContains(t, err.Error(), "s3cret", bad)
	}
}

// An endpoint given as host:port is only that: one with a path, query,
// fragment or user info made a URL the exporter could not parse, so that
// every export failed and was logged with the URL, token and all. It is
// refused at start, without its values; host:port itself exports.
func TestTracerProviderHostPortEndpoint(t *testing.T) {
	for _, bad := range []string{
		"collector:4318?token=s3cret",
		"collector:4318/v1/traces",
		"collector:4318#frag",
		"u:s3cret@collector:4318",
		"collector:4318 s3cret",
	} {
		tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: bad}.TracerProvider()
		if tp != nil {
			assert.NoError(t, tp.Shutdown(context.Background()))
		}
		require.Error(t, err, bad)
		assert.ErrorContains(t, err, "OTLP endpoint", bad)
		assert.NotContains(t, err.Error(), "s3cret", bad)
	}

	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.RequestURI()
	}))
	defer srv.Close()
	tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: srv.Listener.Addr().String()}.TracerProvider()
	require.NoError(t, err)
	_, span := tp.Tracer("t").Start(context.Background(), "s")
	span.End()
	require.NoError(t, tp.ForceFlush(context.Background()))
	require.NoError(t, tp.Shutdown(context.Background()))
	require.Len(t, got, 1)
	assert.Equal(t, "/v1/traces", <-got)
}

// A request the mux redirects to its path with a slash added is named by
// the route of that path: for a CONNECT request the mux names the path it
// redirects to as the pattern, a path the client chose, and the span was
// named by it (and its http.route was that path).
func TestTraceHTTPNamesNoSpanByARedirectedPath(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/files/{name}/", func(w http.ResponseWriter, r *http.Request) {})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := svc.TraceHTTP(mux, mux, tp, propagation.TraceContext{}, func(*http.Request) bool { return false })

	for _, c := range []struct{ method, path, want string }{
		{"CONNECT", "/files/chosen-by-the-client", "CONNECT /files/{name}/"},
		{"GET", "/files/chosen-by-the-client", "GET /files/{name}/"},
		{"CONNECT", "/files/f/x", "CONNECT /files/{name}/"},
		{"CONNECT", "/files/a%2Fchosen", "CONNECT /files/{name}/"},
		{"CONNECT", "/files/..//chosen", "CONNECT /files/{name}/"},
	} {
		rec.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, nil))
		spans := rec.Ended()
		require.Len(t, spans, 1, c.method+" "+c.path)
		assert.Equal(t, c.want, spans[0].Name(), c.method+" "+c.path)
		for _, a := range spans[0].Attributes() {
			if a.Key == "http.route" {
				assert.NotContains(t, a.Value.AsString(), "chosen", c.method+" "+c.path)
			}
		}
	}
}

// A nil skip traces every request; it made every request panic.
func TestTraceHTTPNilSkipTracesAll(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := svc.TraceHTTP(mux, mux, tp, propagation.TraceContext{}, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	assert.Equal(t, http.StatusOK, w.Code)
	require.Len(t, rec.Ended(), 1)
	assert.Equal(t, "GET /x", rec.Ended()[0].Name())
}

// An endpoint given as host alone, or host with an empty port, was taken
// as host:port, and the spans went to port 80 of that host, not to the
// collector's OTLP/HTTP port (4318); every export failed. It is refused
// at start, saying to name the port.
func TestTracerProviderHostEndpointWithoutAPort(t *testing.T) {
	for _, bad := range []string{"collector", "collector:", "[::1]", "[::1]:"} {
		tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: bad}.TracerProvider()
		if tp != nil {
			assert.NoError(t, tp.Shutdown(context.Background()))
		}
		require.Error(t, err, bad)
		assert.ErrorContains(t, err, "OTLP endpoint "+bad+" has no port", bad)
	}
}

// A URL's scheme is read whatever its case, as url.Parse reads it:
// "HTTP://collector:4318" was taken for host:port and refused as neither
// a URL nor host:port.
func TestTracerProviderEndpointSchemeInUpperCase(t *testing.T) {
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.RequestURI()
	}))
	defer srv.Close()
	tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: "HTTP://" + srv.Listener.Addr().String() + "/otlp"}.TracerProvider()
	require.NoError(t, err)
	_, span := tp.Tracer("t").Start(context.Background(), "s")
	span.End()
	require.NoError(t, tp.ForceFlush(context.Background()))
	require.NoError(t, tp.Shutdown(context.Background()))
	require.Len(t, got, 1)
	assert.Equal(t, "/otlp/v1/traces", <-got)
}

// Spaces and a final newline around the endpoint, as an environment file
// or a secret store leaves them, are not part of it (as around a NATS
// URL): the endpoint was refused as not a URL (or not host:port), named
// without them, so that the message named a good endpoint as bad.
func TestTracerProviderEndpointAmidSpaces(t *testing.T) {
	for _, c := range []struct {
		name   string
		around func(url, hostPort string) string
	}{
		{"URL, newline", func(url, _ string) string { return url + "/otlp\n" }},
		{"URL, spaces", func(url, _ string) string { return "  " + url + "/otlp " }},
		{"host:port, newline", func(_, hostPort string) string { return hostPort + "\r\n" }},
	} {
		got := make(chan string, 10)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- r.URL.RequestURI()
		}))
		endpoint := c.around(srv.URL, srv.Listener.Addr().String())
		tp, err := svc.Tracing{Service: "t", Instance: "i", Endpoint: endpoint}.TracerProvider()
		require.NoError(t, err, c.name)
		_, span := tp.Tracer("t").Start(context.Background(), "s")
		span.End()
		require.NoError(t, tp.ForceFlush(context.Background()), c.name)
		require.NoError(t, tp.Shutdown(context.Background()), c.name)
		srv.Close()
		require.Len(t, got, 1, c.name)
		if strings.HasPrefix(c.name, "URL") {
			assert.Equal(t, "/otlp/v1/traces", <-got, c.name)
		} else {
			assert.Equal(t, "/v1/traces", <-got, c.name)
		}
	}
}

// A nil Sampler records every trace that begins in the service, and
// follows the caller's decision for one it joins (a traceparent): a
// caller that does not record its trace has none recorded here either.
func TestTracerProviderNilSamplerFollowsTheCaller(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp, err := svc.Tracing{Service: "t", Instance: "i", Processor: rec}.TracerProvider()
	require.NoError(t, err)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {})
	h := svc.TraceHTTP(mux, mux, tp, propagation.TraceContext{}, nil)
	for _, c := range []struct {
		traceparent string
		recorded    int
	}{
		{"", 1},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 0},
	} {
		rec.Reset()
		r := httptest.NewRequest("GET", "/x", nil)
		if c.traceparent != "" {
			r.Header.Set("traceparent", c.traceparent)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		assert.Len(t, rec.Ended(), c.recorded, c.traceparent)
	}
}
