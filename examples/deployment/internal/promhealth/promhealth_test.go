package promhealth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeProm is an httptest server speaking Prometheus' query API: answer
// decides the reply to each query; it records the requests.
type fakeProm struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	forms    []map[string]string
}

func newFakeProm(t *testing.T, answer func(query string) (status int, body string)) *fakeProm {
	t.Helper()
	f := &fakeProm{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.requests = append(f.requests, r)
		f.forms = append(f.forms, map[string]string{"query": r.PostForm.Get("query"), "time": r.PostForm.Get("time")})
		f.mu.Unlock()
		status, body := answer(r.PostForm.Get("query"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(f.Close)
	return f
}

// vector is a success answer of one series with value v at unix time at.
func vector(at float64, v string) string {
	return fmt.Sprintf(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%v,%q]}]}}`, at, v)
}

// byReading answers each default query with the value given for it,
// telling them apart by their metric and shape.
func byReading(values map[string]string) func(string) (int, string) {
	return func(q string) (int, string) {
		var name string
		switch {
		case strings.HasPrefix(q, "sum(increase("):
			name = "Requests"
		case strings.Contains(q, "code=~"):
			name = "ErrorRate"
		case strings.HasPrefix(q, "histogram_quantile"):
			name = "P99"
		case strings.Contains(q, "process_cpu"):
			name = "CPU"
		case strings.Contains(q, "process_resident"):
			name = "Memory"
		}
		v, ok := values[name]
		if !ok {
			return 200, `{"status":"success","data":{"resultType":"vector","result":[]}}`
		}
		return 200, vector(1780000000.5, v)
	}
}

func healthy() map[string]string {
	return map[string]string{"Requests": "120", "ErrorRate": "0.05", "P99": "0.25", "CPU": "0.3", "Memory": "0.125"}
}

func newHealth(t *testing.T, url string) *Health {
	t.Helper()
	h, err := New(Options{URL: url})
	require.NoError(t, err)
	return h
}

func TestSampleReadsEveryQuery(t *testing.T) {
	prom := newFakeProm(t, byReading(healthy()))
	h := newHealth(t, prom.URL+"/prom/") // a server under a path prefix
	s, err := h.Sample(t.Context(), "web", "eu", "v2", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, fleet.Sample{
		Time:      time.Unix(1780000000, 5e8),
		Requests:  120,
		ErrorRate: 0.05,
		P99:       250 * time.Millisecond,
		CPU:       0.3,
		Memory:    0.125,
	}, s)

	require.Len(t, prom.requests, 5)
	for i, r := range prom.requests {
		assert.Equal(t, http.MethodPost, r.Method)
		assert.Equal(t, "/prom/api/v1/query", r.URL.Path)
		if i == 0 {
			assert.Empty(t, prom.forms[i]["time"], "the first query runs at the server's now")
		} else {
			assert.Equal(t, "1780000000.500", prom.forms[i]["time"], "the rest at the same moment")
		}
	}
	assert.Equal(t,
		`(sum(rate(http_requests_total{service="web",region="eu",version="v2",code=~"5.."}[1m])) or vector(0))`+
			` / sum(rate(http_requests_total{service="web",region="eu",version="v2"}[1m]))`,
		prom.forms[1]["query"])
	assert.Equal(t, `avg(process_resident_memory_bytes{service="web",region="eu",version="v2"}) / 268435456`, prom.forms[4]["query"])
}

func TestSampleValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change map[string]string
		check  func(t *testing.T, s fleet.Sample, err error)
	}{
		{"no requests", map[string]string{"Requests": "0"}, func(t *testing.T, _ fleet.Sample, err error) {
			assert.ErrorIs(t, err, fleet.ErrNoData)
		}},
		{"NaN error rate", map[string]string{"ErrorRate": "NaN"}, func(t *testing.T, _ fleet.Sample, err error) {
			assert.ErrorIs(t, err, fleet.ErrNoData)
			assert.ErrorContains(t, err, "ErrorRate of v2 of web in eu")
			assert.NotErrorIs(t, err, fleet.ErrNotAMeasurement, "no data is inconclusive")
		}},
		{"error rate beyond 1", map[string]string{"ErrorRate": "1.5"}, func(t *testing.T, _ fleet.Sample, err error) {
			assert.ErrorContains(t, err, "is 1.5, not a share in [0, 1]")
			assert.ErrorIs(t, err, fleet.ErrNotAMeasurement, "an analysis fails it")
			assert.NotErrorIs(t, err, fleet.ErrNoData)
		}},
		{"p99 beyond the last bucket", map[string]string{"P99": "+Inf"}, func(t *testing.T, s fleet.Sample, err error) {
			require.NoError(t, err)
			assert.Equal(t, time.Duration(math.MaxInt64), s.P99)
		}},
		{"two cores", map[string]string{"CPU": "2.0", "Memory": "1.5"}, func(t *testing.T, s fleet.Sample, err error) {
			require.NoError(t, err)
			assert.Equal(t, 1.0, s.CPU)
			assert.Equal(t, 1.0, s.Memory)
		}},
		{"negative cpu", map[string]string{"CPU": "-0.4"}, func(t *testing.T, _ fleet.Sample, err error) {
			assert.ErrorContains(t, err, "CPU of v2 of web in eu is -0.4, not a measurement")
			assert.ErrorIs(t, err, fleet.ErrNotAMeasurement, "an analysis fails it")
			assert.NotErrorIs(t, err, fleet.ErrNoData)
		}},
		{"negative memory", map[string]string{"Memory": "-1e-9"}, func(t *testing.T, _ fleet.Sample, err error) {
			assert.ErrorContains(t, err, "Memory of v2 of web in eu is -1e-09, not a measurement")
			assert.ErrorIs(t, err, fleet.ErrNotAMeasurement, "an analysis fails it")
		}},
		{"negative p99", map[string]string{"P99": "-Inf"}, func(t *testing.T, _ fleet.Sample, err error) {
			assert.ErrorContains(t, err, "P99 of v2 of web in eu is -Inf, not a measurement")
			assert.ErrorIs(t, err, fleet.ErrNotAMeasurement, "an analysis fails it")
		}},
		{"negative requests", map[string]string{"Requests": "-3"}, func(t *testing.T, _ fleet.Sample, err error) {
			assert.ErrorContains(t, err, "Requests of v2 of web in eu is -3, not a measurement")
			assert.ErrorIs(t, err, fleet.ErrNotAMeasurement, "an analysis fails it")
		}},
		{"not a number", map[string]string{"CPU": "lots"}, func(t *testing.T, _ fleet.Sample, err error) {
			assert.ErrorContains(t, err, `sample value "lots"`)
			assert.NotErrorIs(t, err, fleet.ErrNotAMeasurement, "an answer that does not parse is the source failing")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values := healthy()
			for k, v := range tc.change {
				values[k] = v
			}
			prom := newFakeProm(t, byReading(values))
			s, err := newHealth(t, prom.URL).Sample(t.Context(), "web", "eu", "v2", time.Minute)
			tc.check(t, s, err)
		})
	}

	// A query with no series is no data.
	values := healthy()
	delete(values, "P99")
	prom := newFakeProm(t, byReading(values))
	_, err := newHealth(t, prom.URL).Sample(t.Context(), "web", "eu", "v2", time.Minute)
	assert.ErrorIs(t, err, fleet.ErrNoData)
	assert.ErrorContains(t, err, "P99 of v2 of web in eu: no series")
}

func TestSampleAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		check  func(t *testing.T, err error)
	}{
		{"bad query", 400, `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}`,
			func(t *testing.T, err error) {
				var apiErr *APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, 400, apiErr.StatusCode)
				assert.Equal(t, "bad_data", apiErr.Type)
				assert.Equal(t, "1:5: parse error: unexpected end of input", apiErr.Message)
				assert.Contains(t, apiErr.Query, "http_requests_total")
				assert.ErrorContains(t, err, "prometheus answered 400 (bad_data): 1:5: parse error")
			}},
		{"timeout", 503, `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`,
			func(t *testing.T, err error) {
				var apiErr *APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, "timeout", apiErr.Type)
			}},
		{"not Prometheus", 502, `<html>bad gateway</html>`,
			func(t *testing.T, err error) {
				var apiErr *APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, "", apiErr.Type)
				assert.ErrorContains(t, err, "prometheus answered 502 (Bad Gateway): <html>bad gateway</html>")
			}},
		{"error with 200", 200, `{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}`,
			func(t *testing.T, err error) {
				var apiErr *APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, "execution", apiErr.Type)
			}},
		{"garbage with 200", 200, `not json`,
			func(t *testing.T, err error) { assert.ErrorContains(t, err, "is not Prometheus' JSON: not json") }},
		{"two series", 200, `{"status":"success","data":{"resultType":"vector","result":[` +
			`{"metric":{"instance":"a"},"value":[1,"1"]},{"metric":{"instance":"b"},"value":[1,"2"]}]}}`,
			func(t *testing.T, err error) {
				assert.ErrorContains(t, err, "2 series, want one (aggregate with sum or avg)")
			}},
		{"matrix", 200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`,
			func(t *testing.T, err error) {
				assert.ErrorContains(t, err, `result type "matrix", want a vector or a scalar`)
			}},
		{"bad pair", 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1]}]}}`,
			func(t *testing.T, err error) { assert.ErrorContains(t, err, "is not a [time, value] pair") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prom := newFakeProm(t, func(string) (int, string) { return tc.status, tc.body })
			_, err := newHealth(t, prom.URL).Sample(t.Context(), "web", "eu", "v2", time.Minute)
			require.Error(t, err)
			assert.NotErrorIs(t, err, fleet.ErrNoData)
			tc.check(t, err)
		})
	}

	// A scalar answers as well as a vector.
	prom := newFakeProm(t, func(q string) (int, string) {
		return 200, `{"status":"success","data":{"resultType":"scalar","result":[1780000000,"0.5"]}}`
	})
	s, err := newHealth(t, prom.URL).Sample(t.Context(), "web", "eu", "v2", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 0.5, s.ErrorRate)
}

func TestSampleUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	h, err := New(Options{URL: url, Client: &http.Client{Timeout: 5 * time.Second}})
	require.NoError(t, err)
	_, err = h.Sample(t.Context(), "web", "eu", "v1", time.Minute)
	require.Error(t, err)
	assert.ErrorContains(t, err, url+"/api/v1/query")
	assert.ErrorContains(t, err, "connection refused")
	assert.NotErrorIs(t, err, fleet.ErrNoData)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	prom := newFakeProm(t, byReading(healthy()))
	_, err = newHealth(t, prom.URL).Sample(ctx, "web", "eu", "v1", time.Minute)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestNewRejectsBadOptions(t *testing.T) {
	good := DefaultQueries()
	withErrorRate := func(q string) Queries { c := good; c.ErrorRate = q; return c }
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, `Options.URL is not an http(s) URL with a host (scheme "", host "")`},
		{Options{URL: "localhost:9090"}, "is not an http(s) URL with a host"},
		{Options{URL: "ftp://prom:21"}, "is not an http(s) URL with a host"},
		{Options{URL: "http://"}, "is not an http(s) URL with a host"},
		{Options{URL: "http://[::1"}, "Options.URL"},
		{Options{URL: "http://prom:9090", MemoryLimit: -1}, "Options.MemoryLimit -1"},
		{Options{URL: "http://prom:9090", MemoryLimit: math.Inf(1)}, "Options.MemoryLimit +Inf"},
		{Options{URL: "http://prom:9090", Queries: withErrorRate("")}, "Queries.ErrorRate is empty"},
		{Options{URL: "http://prom:9090", Queries: withErrorRate("rate(x[{{.Window}]")}, "Queries.ErrorRate: template: ErrorRate:1"},
		{Options{URL: "http://prom:9090", Queries: withErrorRate(`x{team="{{.Team}}"}`)}, `Queries.ErrorRate: template: ErrorRate:1:10: executing "ErrorRate" at <.Team>: can't evaluate field Team`},
		{Options{URL: "http://prom:9090", Queries: withErrorRate(`{{template "nope"}}`)}, "Queries.ErrorRate"},
	} {
		_, err := New(tc.o)
		require.Error(t, err, "%+v", tc.o)
		assert.Contains(t, err.Error(), tc.want)
	}
	// Only Requests may be left out.
	q := good
	q.Requests = ""
	h, err := New(Options{URL: "http://prom:9090", Queries: q})
	require.NoError(t, err)
	_, err = h.Sample(t.Context(), "web", "eu", "v1", 0)
	assert.ErrorContains(t, err, "window 0s is not positive")
}

func TestSampleWithoutRequestsQuery(t *testing.T) {
	prom := newFakeProm(t, byReading(healthy()))
	q := DefaultQueries()
	q.Requests = ""
	h, err := New(Options{URL: prom.URL, Queries: q})
	require.NoError(t, err)
	s, err := h.Sample(t.Context(), "web", "eu", "v1", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 0.0, s.Requests)
	assert.Equal(t, 0.05, s.ErrorRate)
	assert.Len(t, prom.requests, 4)
}

func TestRender(t *testing.T) {
	h, err := New(Options{URL: "http://prom:9090", MemoryLimit: 512 << 20})
	require.NoError(t, err)
	q, err := h.Render(`we"b`, `eu\1`, "v2", 90*time.Second)
	require.NoError(t, err)
	assert.Equal(t, `sum(increase(http_requests_total{service="we\"b",region="eu\\1",version="v2"}[90s]))`, q.Requests)
	assert.Equal(t, `avg(process_resident_memory_bytes{service="we\"b",region="eu\\1",version="v2"}) / 536870912`, q.Memory)

	for d, want := range map[time.Duration]string{
		time.Minute:             "1m",
		2 * time.Hour:           "2h",
		90 * time.Minute:        "90m",
		30 * time.Second:        "30s",
		1500 * time.Millisecond: "1500ms",
		time.Microsecond:        "1ms",
		// The longest window: rounding up to a millisecond must not
		// wrap around to a negative duration.
		math.MaxInt64: "9223372036855ms",
	} {
		assert.Equal(t, want, promDuration(d), "%v", d)
	}
}

// TestRenderEscapesTheReplacementCharacter: PromQL's lexer refuses a
// literal U+FFFD in a string as "invalid UTF-8 rune", though it is valid
// UTF-8 and Go's quoting keeps it; it is written \ufffd instead.
func TestRenderEscapesTheReplacementCharacter(t *testing.T) {
	h := newHealth(t, "http://prom:9090")
	q, err := h.Render("web", "eu", "v\uFFFD2", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, `sum(increase(http_requests_total{service="web",region="eu",version="v\ufffd2"}[1m]))`, q.Requests)
	assert.NotContains(t, q.ErrorRate+q.P99+q.CPU+q.Memory, "\uFFFD")
	// Invalid UTF-8 is not U+FFFD: it keeps its own bytes, as \x escapes.
	q, err = h.Render("web", "eu", "v\xff2", time.Minute)
	require.NoError(t, err)
	assert.Contains(t, q.Requests, `version="v\xff2"`)
}

func TestAPIErrorMessage(t *testing.T) {
	err := error(&APIError{Query: "up", StatusCode: 422, Type: "execution", Message: "boom"})
	assert.Equal(t, "prometheus answered 422 (execution): boom; query: up", err.Error())
	var apiErr *APIError
	assert.True(t, errors.As(fmt.Errorf("wrapped: %w", err), &apiErr))
}

// TestErrorsHideURLPassword: a password in Options.URL never shows in an
// error, which ends up in logs and in a deployment's failure reason.
func TestErrorsHideURLPassword(t *testing.T) {
	prom := newFakeProm(t, func(string) (int, string) { return 200, `not json` })
	u := strings.Replace(prom.URL, "http://", "http://ops:s3cret@", 1)
	_, err := newHealth(t, u).Sample(t.Context(), "web", "eu", "v2", time.Minute)
	require.ErrorContains(t, err, "is not Prometheus' JSON")
	assert.NotContains(t, err.Error(), "s3cret")
	assert.ErrorContains(t, err, "http://ops:xxxxx@"+strings.TrimPrefix(prom.URL, "http://")+"/api/v1/query")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = newHealth(t, "http://ops:s3cret@"+addr).Sample(t.Context(), "web", "eu", "v2", time.Minute)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
}

// TestSampleHugeAnswer: an answer too large to read, such as a query
// that forgot to aggregate returning thousands of series, is an error
// that says so, not a claim that the server does not speak Prometheus.
func TestSampleHugeAnswer(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for i := 0; b.Len() <= maxBody; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"metric":{"instance":"10.0.%d.%d:8080"},"value":[1780000000,"0.01"]}`, i/256, i%256)
	}
	b.WriteString(`]}}`)
	prom := newFakeProm(t, func(string) (int, string) { return 200, b.String() })
	_, err := newHealth(t, prom.URL).Sample(t.Context(), "web", "eu", "v2", time.Minute)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "not Prometheus' JSON")
	assert.ErrorContains(t, err, "is larger than 4 MiB (aggregate with sum or avg)")
	assert.ErrorContains(t, err, "query: sum(increase(")
}

// TestParseSampleTime: a sample's time that a time.Time of nanoseconds
// cannot hold (beyond the year 2262, or not a number of seconds JSON can
// carry) is an error, not a time wrapped around to another century.
func TestParseSampleTime(t *testing.T) {
	raw := func(ts string) []json.RawMessage {
		return []json.RawMessage{json.RawMessage(ts), json.RawMessage(`"1"`)}
	}
	v, at, err := parseSample(raw("1700000000.123"), "q")
	require.NoError(t, err)
	assert.Equal(t, 1.0, v)
	assert.Equal(t, time.UnixMilli(1700000000123), at)
	for _, ts := range []string{"1e19", "-1e19", "9300000000", "1e308"} {
		_, _, err := parseSample(raw(ts), "q")
		assert.ErrorContains(t, err, "is not a time", ts)
	}
}

// TestNewErrorsHideThePassword: a URL refused by New, unparsable or not
// http(s), is not quoted with its password.
func TestNewErrorsHideThePassword(t *testing.T) {
	for _, raw := range []string{"ftp://reader:pw-s3cret@prom:9090", "http://reader:pw-s3cret@prom:port/", "reader:pw-s3cret@prom:9090", "http:///?token=pw-s3cret"} {
		_, err := New(Options{URL: raw})
		if err == nil {
			t.Fatalf("New(%q) took it", raw)
		}
		if strings.Contains(err.Error(), "pw-s3cret") {
			t.Errorf("New(%q): %v", raw, err)
		}
	}
}

// TestCheckURLHidesAPasswordWithAReservedCharacter: a password (or a token
// as the user name) with a '/', '?' or '#' in it, not escaped, ends the
// host part for url.Parse, which then reads a piece of it as the host or
// the port; CheckURL's error quotes neither.
func TestCheckURLHidesAPasswordWithAReservedCharacter(t *testing.T) {
	for raw, secret := range map[string]string{
		"http://reader:s3cret/x@prom:9090":   "s3cret",
		"https://reader:s3cret?x@prom:9090":  "s3cret",
		"http://reader:s3cret#x@prom:9090":   "s3cret",
		"http://s3cret:x/y@prom:9090":        "s3cret",
		"ftp://reader:4711/s3cret@prom:9090": "4711",
		"ftp://s3cret/x@prom:9090":           "s3cret",
	} {
		_, err := CheckURL(raw)
		require.Error(t, err, raw)
		assert.NotContains(t, err.Error(), secret, raw)
		assert.ErrorContains(t, err, "%2F", raw) // says how to write it
	}
	// Where url.Parse reads the user information as written, the error
	// names what is wrong after it.
	_, err := CheckURL("http://reader:s3cret@prom:port")
	assert.EqualError(t, err, `does not parse: invalid port ":port" after host`)
	_, err = CheckURL("ftp://reader:s3cret@prom:21")
	assert.EqualError(t, err, `is not an http(s) URL with a host (scheme "ftp", host "prom:21")`)
	_, err = CheckURL("http:///x@prom")
	assert.EqualError(t, err, `is not an http(s) URL with a host (scheme "http", host "")`)
}

// TestErrorsHideTheQuery: a token in Options.URL's query, which a proxy in
// front of Prometheus may check, never shows in an error either.
func TestErrorsHideTheQuery(t *testing.T) {
	prom := newFakeProm(t, func(string) (int, string) { return 200, `not json` })
	_, err := newHealth(t, prom.URL+"/?token=s3cret").Sample(t.Context(), "web", "eu", "v2", time.Minute)
	require.ErrorContains(t, err, "is not Prometheus' JSON")
	assert.NotContains(t, err.Error(), "s3cret")
	assert.ErrorContains(t, err, prom.URL+"/api/v1/query?xxxxx")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = newHealth(t, "http://"+addr+"/?token=s3cret").Sample(t.Context(), "web", "eu", "v2", time.Minute)
	require.ErrorContains(t, err, "connection refused")
	assert.NotContains(t, err.Error(), "s3cret")
	assert.ErrorContains(t, err, "http://"+addr+"/api/v1/query?xxxxx")
}
