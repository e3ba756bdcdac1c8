package svc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing configures a service's tracer provider.
type Tracing struct {
	Service  string // the service's name; OTEL_SERVICE_NAME overrides it
	Instance string // the replica's name
	// Endpoint exports spans over OTLP/HTTP: a URL ("http://jaeger:4318",
	// "/v1/traces" added to its path) without a query or user info, or
	// host:port (plain HTTP); spaces around it are dropped. Credentials go
	// in headers (OTEL_EXPORTER_OTLP_HEADERS). Empty exports nothing.
	Endpoint string
	// Processor, if set, also receives every span (tests).
	Processor sdktrace.SpanProcessor
	// Sampler decides which traces are recorded; nil records every trace
	// begun here and, of a trace a request joins (its traceparent), those
	// its caller records (sdktrace.ParentBased(sdktrace.AlwaysSample())).
	Sampler sdktrace.Sampler
}

// TracerProvider returns the provider t describes. Its resource names the
// service and instance, which OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override, as everywhere in OpenTelemetry. It is
// passed to the library explicitly; no global is set.
func (t Tracing) TracerProvider() (*sdktrace.TracerProvider, error) {
	res, err := resource.New(context.Background(),
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(t.Service), semconv.ServiceInstanceID(t.Instance)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if t.Sampler != nil {
		opts = append(opts, sdktrace.WithSampler(t.Sampler))
	}
	if t.Processor != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(t.Processor))
	}
	// Spaces around it, a final newline from a file, are not part of it,
	// as around a NATS URL.
	if endpoint := strings.TrimSpace(t.Endpoint); endpoint != "" {
		var eopts []otlptracehttp.Option
		if scheme, _, _ := strings.Cut(endpoint, "://"); strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https") {
			full, err := endpointURL(endpoint)
			if err != nil {
				return nil, err
			}
			eopts = append(eopts, otlptracehttp.WithEndpointURL(full))
		} else {
			// The exporter puts host:port in a URL of its own: anything
			// more (a path, a query, user info) made every export fail,
			// logged with that URL, token and all.
			if u, err := url.Parse("http://" + endpoint); err != nil || u.Host != endpoint {
				return nil, fmt.Errorf("OTLP endpoint %s is neither a URL (http://collector:4318) nor host:port (collector:4318)", RedactURL(endpoint))
			}
			// Without a port, the exporter sends to port 80, where no
			// collector listens for OTLP/HTTP (4318).
			if _, port, err := net.SplitHostPort(endpoint); err != nil || port == "" {
				return nil, fmt.Errorf("OTLP endpoint %s has no port: give host:port (collector:4318) or a URL (http://collector:4318)", RedactURL(endpoint))
			}
			eopts = append(eopts, otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(context.Background(), eopts...)
		if err != nil {
			return nil, fmt.Errorf("OTLP exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// endpointURL is the URL spans are sent to for an endpoint given as a URL:
// its path with /v1/traces added. The exporter sends to the scheme, host
// and path alone, so an endpoint with a query or user info, which it would
// drop, is refused; a fragment, which HTTP never sends, is dropped.
func endpointURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	// The exporter logs a URL it cannot parse whole and sends to its
	// default, localhost:4318, instead.
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("OTLP endpoint %s is not a URL with a host (http://collector:4318)", RedactURL(endpoint))
	}
	if u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("OTLP endpoint %s has a query or user info, which OTLP/HTTP does not send: give the collector's credentials as headers in OTEL_EXPORTER_OTLP_HEADERS (Authorization=Bearer%%20...)", RedactURL(endpoint))
	}
	u.ForceQuery, u.Fragment, u.RawFragment = false, "", ""
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	u.RawPath = ""
	return u.String(), nil
}

// TraceHTTP opens a server span per request with otelhttp (the current
// HTTP semantic conventions), joined to the caller's trace when the request
// carries a traceparent header, except for the requests skip reports
// (scrapes, probes, event streams); a nil skip traces every request. Spans
// are named by mux's route, as the conventions say ("GET /payment/{id}",
// with http.route), or by method alone for a path no route serves: never
// by a path a client chose. A request mux redirects to its path with a
// slash added is named by the route of that path. A method other than the
// nine of RFC 9110 and RFC 5789 (GET, POST, ..., PATCH), in upper case, is
// named HTTP ("HTTP /payment/{id}"), as the conventions say: a client may
// send any word as the method, and a name of its choosing per span would
// fill a tracing backend with names. otelhttp's metrics go nowhere: the
// services export their own.
func TraceHTTP(mux *http.ServeMux, next http.Handler, tp trace.TracerProvider, prop propagation.TextMapPropagator, skip func(*http.Request) bool) http.Handler {
	routed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if route := routeOf(mux, r); route != "" {
			trace.SpanFromContext(r.Context()).SetAttributes(semconv.HTTPRoute(route))
		}
		next.ServeHTTP(w, r)
	})
	return otelhttp.NewHandler(routed, "",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(prop),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithFilter(func(r *http.Request) bool { return skip == nil || !skip(r) }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			method := spanMethod(r.Method)
			if route := routeOf(mux, r); route != "" {
				return method + " " + route
			}
			return method
		}),
	)
}

// spanMethod is method as a span's name gives it: a method HTTP defines
// as it is, any other "HTTP".
func spanMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "HTTP"
}

// routeOf is the route of mux that serves r ("/payment/{id}"), or "".
// For a request mux redirects to its path with a slash added, it is the
// route of that path: mux gives a CONNECT request the path itself as the
// pattern, a path the client chose.
func routeOf(mux *http.ServeMux, r *http.Request) string {
	_, pattern := mux.Handler(r)
	if p := r.URL.Path; pattern != "" && !strings.HasSuffix(p, "/") && isSlashed(pattern, cleanPath(p)) {
		u := *r.URL
		u.Path, u.RawPath = pattern, ""
		redirected := r.WithContext(r.Context()) // a shallow copy
		redirected.URL = &u
		_, pattern = mux.Handler(redirected)
	}
	if _, route, found := strings.Cut(pattern, " "); found {
		return route
	}
	return pattern
}

// isSlashed reports whether pattern is p with a slash added, without
// building that string on every request.
func isSlashed(pattern, p string) bool {
	return len(pattern) == len(p)+1 && strings.HasPrefix(pattern, p) && pattern[len(p)] == '/'
}

// cleanPath is p as http.ServeMux cleans a path: rooted, without "." and
// ".." elements or repeated slashes, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}
