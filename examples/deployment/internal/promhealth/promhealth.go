// Package promhealth reads a version's health from a Prometheus server, as
// Argo Rollouts' Prometheus analysis does: a PromQL query per reading, each
// a Go text/template filled in with the service, region, version and
// window, sent to the server's HTTP API (/api/v1/query). DefaultQueries
// fit the demoapp's metrics; other apps bring their own.
//
// Every query must come back as one number: a vector of one series (so
// aggregate with sum or avg) or a scalar. No series, or NaN (a ratio of no
// requests), means no data yet: Sample returns an error wrapping
// fleet.ErrNoData, which an analysis takes as inconclusive. A reading
// that cannot be a measurement (negative, or an error rate over 1) is an
// error matching fleet.ErrNotAMeasurement, which an analysis fails. An
// error the server answers comes back as an *APIError.
package promhealth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

var _ fleet.Health = (*Health)(nil)

// Queries are PromQL templates, one per reading. Each is executed with a
// QueryData. Requests may be empty; the others are required.
type Queries struct {
	Requests  string // requests answered in the window
	ErrorRate string // share of requests that failed, in [0, 1]
	P99       string // 99th percentile latency, in seconds
	CPU       string // share of a core in use
	Memory    string // share of the memory limit in use
}

// QueryData is what a query template is executed with.
type QueryData struct {
	// Service, Region and Version are escaped for use inside a
	// double-quoted PromQL string: version="{{.Version}}".
	Service, Region, Version string
	// Window is the window as a PromQL duration, as in [{{.Window}}]:
	// "1m", "90s", "500ms".
	Window string
	// MemoryLimit is Options.MemoryLimit in bytes, as a PromQL number.
	MemoryLimit string
}

// selector matches the demoapp's series of one version.
const selector = `service="{{.Service}}",region="{{.Region}}",version="{{.Version}}"`

// DefaultQueries returns queries for the demoapp's metrics:
//
//   - Requests: the increase of http_requests_total over the window;
//   - ErrorRate: the rate of 5xx responses over the rate of all;
//   - P99: histogram_quantile(0.99) of http_request_duration_seconds;
//   - CPU: the rate of process_cpu_seconds_total, the mean over instances
//     (the share of one core each uses);
//   - Memory: process_resident_memory_bytes over the memory limit, the
//     mean over instances.
func DefaultQueries() Queries {
	return Queries{
		Requests: `sum(increase(http_requests_total{` + selector + `}[{{.Window}}]))`,
		ErrorRate: `(sum(rate(http_requests_total{` + selector + `,code=~"5.."}[{{.Window}}])) or vector(0))` +
			` / sum(rate(http_requests_total{` + selector + `}[{{.Window}}]))`,
		P99:    `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{` + selector + `}[{{.Window}}])))`,
		CPU:    `avg(rate(process_cpu_seconds_total{` + selector + `}[{{.Window}}]))`,
		Memory: `avg(process_resident_memory_bytes{` + selector + `}) / {{.MemoryLimit}}`,
	}
}

// Options configure a Health. URL is required; the other zero fields have
// defaults.
type Options struct {
	// URL is the Prometheus server's base URL, e.g. http://127.0.0.1:9090.
	URL string
	// Queries are the PromQL templates. Zero: DefaultQueries.
	Queries Queries
	// Client sends the queries. Nil: a client with a 30s timeout.
	Client *http.Client
	// MemoryLimit is the memory per instance Memory is a share of, in
	// bytes, given to the templates as .MemoryLimit. Default 256 MiB.
	MemoryLimit float64
}

// Health reads versions' health from a Prometheus server. It is safe for
// concurrent use.
type Health struct {
	endpoint    string // the query API's URL
	redacted    string // endpoint without its password and query, for messages
	client      *http.Client
	memoryLimit string
	queries     [numReadings]*template.Template // nil: not read
}

// The readings, in the order Sample queries them.
const (
	readRequests = iota
	readErrorRate
	readP99
	readCPU
	readMemory
	numReadings
)

var readingNames = [numReadings]string{"Requests", "ErrorRate", "P99", "CPU", "Memory"}

// CheckURL parses raw as the base URL of a Prometheus server: http or
// https, with a host. Its error does not quote raw, which may hold a
// password or a token in its query: it names the scheme and host alone.
// A user name or password with a '/', '?' or '#' in it, not escaped, ends
// the host part for url.Parse, which then reads a piece of it as the host
// or the port: when an '@' follows that end, the error names neither and
// says how to write those characters.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		return u, nil
	}
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if end := strings.IndexAny(rest, "/?#"); end >= 0 && strings.Contains(rest[end:], "@") {
			const hint = "a '/', '?' or '#' in a user name or password is written %2F, %3F or %23"
			if err != nil {
				return nil, errors.New("does not parse (" + hint + ")")
			}
			if u.Host != "" {
				return nil, fmt.Errorf("is not an http(s) URL with a host (scheme %q; %s)", u.Scheme, hint)
			}
		}
	}
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return nil, fmt.Errorf("does not parse: %w", ue.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("does not parse: %w", err)
	}
	return nil, fmt.Errorf("is not an http(s) URL with a host (scheme %q, host %q)", u.Scheme, u.Host)
}

// redacted returns u as messages name it: without its password, and with
// its query, where a proxy's token may be, hidden whole.
func redacted(u *url.URL) string {
	r := *u
	if r.RawQuery != "" {
		r.RawQuery = "xxxxx"
	}
	return r.Redacted()
}

// New returns a Health for the server at o.URL. It checks the URL and that
// every query template parses and executes.
func New(o Options) (*Health, error) {
	u, err := CheckURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("promhealth: Options.URL %w", err)
	}
	if o.MemoryLimit == 0 {
		o.MemoryLimit = 256 << 20
	}
	if !(o.MemoryLimit > 0) || math.IsInf(o.MemoryLimit, 0) {
		return nil, fmt.Errorf("promhealth: Options.MemoryLimit %v is not a positive number of bytes", o.MemoryLimit)
	}
	if o.Queries == (Queries{}) {
		o.Queries = DefaultQueries()
	}
	endpoint := u.JoinPath("api", "v1", "query")
	h := &Health{
		endpoint:    endpoint.String(),
		redacted:    redacted(endpoint),
		client:      o.Client,
		memoryLimit: strconv.FormatFloat(o.MemoryLimit, 'f', -1, 64),
	}
	if h.client == nil {
		h.client = &http.Client{Timeout: 30 * time.Second}
	}
	texts := [numReadings]string{o.Queries.Requests, o.Queries.ErrorRate, o.Queries.P99, o.Queries.CPU, o.Queries.Memory}
	for i, text := range texts {
		if strings.TrimSpace(text) == "" {
			if i == readRequests {
				continue
			}
			return nil, fmt.Errorf("promhealth: Queries.%s is empty", readingNames[i])
		}
		t, err := template.New(readingNames[i]).Option("missingkey=error").Parse(text)
		if err != nil {
			return nil, fmt.Errorf("promhealth: Queries.%s: %w", readingNames[i], err)
		}
		h.queries[i] = t
	}
	// Execute each once with sample values, so a template that names a
	// field QueryData lacks fails here rather than at the first Sample.
	if _, err := h.Render("web", "eu", "v1", time.Minute); err != nil {
		return nil, err
	}
	return h, nil
}

// Render returns the queries Sample sends for version of service in region
// over window: to log, or to paste into Prometheus' expression browser.
func (h *Health) Render(service, region, version string, window time.Duration) (Queries, error) {
	rendered, err := h.render(service, region, version, window)
	if err != nil {
		return Queries{}, err
	}
	return Queries{
		Requests:  rendered[readRequests],
		ErrorRate: rendered[readErrorRate],
		P99:       rendered[readP99],
		CPU:       rendered[readCPU],
		Memory:    rendered[readMemory],
	}, nil
}

func (h *Health) render(service, region, version string, window time.Duration) ([numReadings]string, error) {
	var out [numReadings]string
	if window <= 0 {
		return out, fmt.Errorf("promhealth: window %v is not positive", window)
	}
	data := QueryData{
		Service:     escape(service),
		Region:      escape(region),
		Version:     escape(version),
		Window:      promDuration(window),
		MemoryLimit: h.memoryLimit,
	}
	for i, t := range h.queries {
		if t == nil {
			continue
		}
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			return out, fmt.Errorf("promhealth: Queries.%s: %w", readingNames[i], err)
		}
		out[i] = b.String()
	}
	return out, nil
}

// escape makes s fit inside a double-quoted PromQL string, whose escapes
// are Go's. Go's quoting keeps U+FFFD as it is, which PromQL's lexer
// refuses ("invalid UTF-8 rune"): it is written \ufffd.
func escape(s string) string {
	q := strconv.Quote(s)
	return strings.ReplaceAll(q[1:len(q)-1], "\uFFFD", `\ufffd`)
}

// promDuration writes d as a PromQL duration in its largest whole unit.
func promDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default: // rounded up, without adding to d, which may be near math.MaxInt64
		ms := d / time.Millisecond
		if d%time.Millisecond != 0 {
			ms++
		}
		return strconv.FormatInt(int64(ms), 10) + "ms"
	}
}

// Sample runs the queries for version of service in region over window
// and returns their values: P99 converted from seconds; CPU and Memory
// held to at most 1, as fleet.Sample has them (a process busy on two cores
// reads 1). A negative reading, or an error rate over 1, cannot be a
// measurement: the error matches fleet.ErrNotAMeasurement, and an analysis
// fails the sample. All queries are evaluated at the moment the server
// evaluated the first one, which is the sample's Time.
func (h *Health) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	queries, err := h.render(service, region, version, window)
	if err != nil {
		return fleet.Sample{}, err
	}
	var values [numReadings]float64
	var at time.Time
	for i, q := range queries {
		if h.queries[i] == nil {
			continue
		}
		v, ts, err := h.query(ctx, q, at)
		if err != nil {
			return fleet.Sample{}, fmt.Errorf("promhealth: %s of %s of %s in %s: %w", readingNames[i], version, service, region, err)
		}
		if at.IsZero() {
			at = ts
		}
		values[i] = v
	}
	for i, v := range values {
		// A negative reading is a broken query, not a healthy version:
		// holding it to 0 would pass a check it must fail.
		if v < 0 {
			return fleet.Sample{}, notAMeasurement{fmt.Errorf("promhealth: %s of %s of %s in %s is %v, not a measurement: %s", readingNames[i], version, service, region, v, queries[i])}
		}
	}
	if h.queries[readRequests] != nil && values[readRequests] == 0 {
		return fleet.Sample{}, fmt.Errorf("promhealth: no requests to %s of %s in %s in the last %v: %w", version, service, region, window, fleet.ErrNoData)
	}
	if r := values[readErrorRate]; r > 1 { // +Inf too
		return fleet.Sample{}, notAMeasurement{fmt.Errorf("promhealth: ErrorRate of %s of %s in %s is %v, not a share in [0, 1]: %s", version, service, region, r, queries[readErrorRate])}
	}
	return fleet.Sample{
		Time:      at,
		Requests:  values[readRequests],
		ErrorRate: values[readErrorRate],
		P99:       seconds(values[readP99]),
		CPU:       share(values[readCPU]),
		Memory:    share(values[readMemory]),
	}, nil
}

// notAMeasurement is the error of a reading that cannot be a measurement:
// it matches fleet.ErrNotAMeasurement, and reads as the error it holds.
type notAMeasurement struct{ error }

func (notAMeasurement) Is(target error) bool { return target == fleet.ErrNotAMeasurement }

// seconds converts a latency in seconds; +Inf (beyond the histogram's last
// bucket) becomes the longest duration.
func seconds(s float64) time.Duration {
	if s >= math.MaxInt64/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(max(s, 0) * float64(time.Second))
}

func share(x float64) float64 { return min(max(x, 0), 1) }

// APIError is an error answer from the Prometheus server: a bad query,
// a timeout, or an HTTP error status.
type APIError struct {
	Query      string
	StatusCode int    // the HTTP status
	Type       string // Prometheus' errorType (bad_data, execution, timeout, ...); "" if the body was not Prometheus'
	Message    string
}

// Error says what the server answered, and to which query.
func (e *APIError) Error() string {
	kind := e.Type
	if kind == "" {
		kind = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("prometheus answered %d (%s): %s; query: %s", e.StatusCode, kind, e.Message, e.Query)
}

// maxBody bounds how much of a response is read.
const maxBody = 4 << 20

// query evaluates q at at (at the server's now if zero) and returns its one
// value and the evaluation time.
func (h *Health) query(ctx context.Context, q string, at time.Time) (float64, time.Time, error) {
	form := url.Values{"query": {q}}
	if !at.IsZero() {
		form.Set("time", strconv.FormatFloat(float64(at.UnixNano())/1e9, 'f', 3, 64))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		// net/http names the URL with its query, which may hold a token.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			ue.URL = h.redacted
		}
		return 0, time.Time{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("reading the answer from %s: %w", h.redacted, err)
	}
	truncated := len(body) > maxBody
	if truncated {
		body = body[:maxBody]
	}
	var answer struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.Status == "" {
		if resp.StatusCode/100 != 2 {
			return 0, time.Time{}, &APIError{Query: q, StatusCode: resp.StatusCode, Message: snippet(body)}
		}
		if truncated {
			return 0, time.Time{}, fmt.Errorf("answer from %s is larger than %d MiB (aggregate with sum or avg); query: %s", h.redacted, maxBody>>20, q)
		}
		return 0, time.Time{}, fmt.Errorf("answer from %s is not Prometheus' JSON: %s", h.redacted, snippet(body))
	}
	if answer.Status != "success" || resp.StatusCode/100 != 2 {
		return 0, time.Time{}, &APIError{Query: q, StatusCode: resp.StatusCode, Type: answer.ErrorType, Message: answer.Error}
	}
	var sample []json.RawMessage // [time, "value"]
	switch answer.Data.ResultType {
	case "vector":
		var series []struct {
			Value []json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(answer.Data.Result, &series); err != nil {
			return 0, time.Time{}, fmt.Errorf("vector result: %w", err)
		}
		switch len(series) {
		case 0:
			return 0, time.Time{}, fmt.Errorf("no series: %w; query: %s", fleet.ErrNoData, q)
		case 1:
			sample = series[0].Value
		default:
			return 0, time.Time{}, fmt.Errorf("%d series, want one (aggregate with sum or avg); query: %s", len(series), q)
		}
	case "scalar":
		if err := json.Unmarshal(answer.Data.Result, &sample); err != nil {
			return 0, time.Time{}, fmt.Errorf("scalar result: %w", err)
		}
	default:
		return 0, time.Time{}, fmt.Errorf("result type %q, want a vector or a scalar; query: %s", answer.Data.ResultType, q)
	}
	return parseSample(sample, q)
}

// parseSample reads Prometheus' [unix seconds, "value"] pair.
func parseSample(pair []json.RawMessage, q string) (float64, time.Time, error) {
	if len(pair) != 2 {
		return 0, time.Time{}, fmt.Errorf("sample %s is not a [time, value] pair", pair)
	}
	var unix float64
	var text string
	if err := errors.Join(json.Unmarshal(pair[0], &unix), json.Unmarshal(pair[1], &text)); err != nil {
		return 0, time.Time{}, fmt.Errorf("sample [%s, %s]: %w", pair[0], pair[1], err)
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("sample value %q: %w", text, err)
	}
	// A time.Time of nanoseconds since 1970 reaches the years 1677 to
	// 2262: beyond, the product below would wrap to another century.
	const maxUnix = float64(math.MaxInt64 / int64(time.Second))
	if !(math.Abs(unix) < maxUnix) {
		return 0, time.Time{}, fmt.Errorf("sample time %s is not a time; query: %s", pair[0], q)
	}
	at := time.Unix(0, int64(math.Round(unix*1e3))*int64(time.Millisecond))
	if math.IsNaN(v) {
		return 0, at, fmt.Errorf("NaN: %w; query: %s", fleet.ErrNoData, q)
	}
	return v, at, nil
}

// snippet is the start of a body, for an error message.
func snippet(body []byte) string {
	const n = 200
	s := string(bytes.TrimSpace(body))
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
