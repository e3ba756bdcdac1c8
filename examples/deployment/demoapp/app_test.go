package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEvery(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		n    int
		want []int // which of 1..n are picked
	}{
		{rate: 0, n: 10, want: nil},
		{rate: 1, n: 4, want: []int{1, 2, 3, 4}},
		{rate: 0.2, n: 15, want: []int{5, 10, 15}},
		{rate: 0.5, n: 6, want: []int{2, 4, 6}},
		{rate: 1.0 / 3, n: 9, want: []int{3, 6, 9}},
		{rate: 0.25, n: 8, want: []int{4, 8}},
	} {
		var got []int
		for n := 1; n <= tc.n; n++ {
			if every(uint64(n), tc.rate) {
				got = append(got, n)
			}
		}
		assert.Equal(t, tc.want, got, "rate %v", tc.rate)
	}
	// Over many requests the count is exactly floor(n*rate).
	picked := 0
	for n := uint64(1); n <= 10000; n++ {
		if every(n, 0.037) {
			picked++
		}
	}
	assert.Equal(t, 370, picked)
}

func TestAppAnswersPerProfile(t *testing.T) {
	a := newApp(profile{Service: "web", Version: "v2", Region: "eu", Instance: "i-1", ErrorRate: 0.2})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)

	codes := map[int]int{}
	for n := 1; n <= 50; n++ {
		resp, err := http.Get(srv.URL + "/")
		require.NoError(t, err)
		var body map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		assert.Equal(t, map[string]string{"service": "web", "version": "v2", "region": "eu", "instance": "i-1"}, body)
		want := http.StatusOK
		if n%5 == 0 {
			want = http.StatusInternalServerError
		}
		require.Equal(t, want, resp.StatusCode, "request %d", n)
		codes[resp.StatusCode]++
	}
	assert.Equal(t, map[int]int{200: 40, 500: 10}, codes)

	metrics := get(t, srv.URL+"/metrics")
	assert.Contains(t, metrics, `http_requests_total{code="200",region="eu",service="web",version="v2"} 40`)
	assert.Contains(t, metrics, `http_requests_total{code="500",region="eu",service="web",version="v2"} 10`)
	assert.Contains(t, metrics, `http_request_duration_seconds_count{region="eu",service="web",version="v2"} 50`)
	assert.Contains(t, metrics, `http_request_duration_seconds_bucket{region="eu",service="web",version="v2",le="0.0075"}`)
	assert.Contains(t, metrics, `go_goroutines{region="eu",service="web",version="v2"}`)
	assert.NotContains(t, metrics, "go_info")
	assert.Contains(t, metrics, `process_resident_memory_bytes{region="eu",service="web",version="v2"}`)

	assert.Equal(t, "ok\n", get(t, srv.URL+"/healthz"))

	resp, err := http.Get(srv.URL + "/other")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, err = http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	// Neither counts as a request to /.
	assert.Contains(t, get(t, srv.URL+"/metrics"), `http_request_duration_seconds_count{region="eu",service="web",version="v2"} 50`)
}

func TestAppLatency(t *testing.T) {
	a := newApp(profile{Service: "web", Version: "v1", Region: "eu", Latency: 30 * time.Millisecond,
		SlowRate: 0.5, SlowLatency: 120 * time.Millisecond})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)

	for n := 1; n <= 4; n++ {
		start := time.Now()
		get(t, srv.URL+"/")
		took := time.Since(start)
		if n%2 == 0 {
			assert.GreaterOrEqual(t, took, 120*time.Millisecond, "slow request %d", n)
		} else {
			assert.GreaterOrEqual(t, took, 30*time.Millisecond, "request %d", n)
			assert.Less(t, took, 120*time.Millisecond, "request %d", n)
		}
	}
	// The histogram saw two requests of at least 120ms.
	metrics := get(t, srv.URL+"/metrics")
	assert.Contains(t, metrics, `http_request_duration_seconds_bucket{region="eu",service="web",version="v1",le="0.1"} 2`)
}

func TestParseConfig(t *testing.T) {
	c, err := parseConfig(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:0", c.Addr)
	assert.Equal(t, profile{Service: "demo", Version: "v1", Region: "local"}, c.Profile)

	c, err = parseConfig([]string{"-service", "web", "-version", "v3", "-region", "us", "-error-rate", "0.1",
		"-latency", "5ms", "-slow-rate", "0.01", "-slow-latency", "1s", "-instance", "a"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, profile{Service: "web", Version: "v3", Region: "us", Instance: "a", ErrorRate: 0.1,
		Latency: 5 * time.Millisecond, SlowRate: 0.01, SlowLatency: time.Second}, c.Profile)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-error-rate", "1.5"}, "-error-rate 1.5 is not in [0, 1]"},
		{[]string{"-error-rate", "-0.1"}, "-error-rate -0.1 is not in [0, 1]"},
		{[]string{"-error-rate", "NaN"}, "-error-rate NaN is not in [0, 1]"},
		{[]string{"-slow-rate", "2"}, "-slow-rate 2 is not in [0, 1]"},
		{[]string{"-latency", "-1s"}, "-latency -1s is negative"},
		{[]string{"-slow-latency", "-1s"}, "-slow-latency -1s is negative"},
		{[]string{"-version", ""}, "must not be empty"},
		{[]string{"-shutdown-timeout", "0s"}, "-shutdown-timeout 0s is not positive"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-nope"}, "flag provided but not defined"},
	} {
		_, err := parseConfig(tc.args, io.Discard)
		require.Error(t, err, "%q", tc.args)
		assert.Contains(t, err.Error(), tc.want, "%q", tc.args)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
