package main

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHelpHidesTheToken: -h lists -token without the API token taken from
// API_TOKEN as its default.
func TestHelpHidesTheToken(t *testing.T) {
	const secret = "sekrit-token-4711"
	t.Setenv("API_TOKEN", secret)
	var out bytes.Buffer
	err := run([]string{"-h"}, &out)
	if err != flag.ErrHelp {
		t.Fatalf("run -h: %v", err)
	}
	if !strings.Contains(out.String(), "-token") {
		t.Fatalf("-h does not list -token:\n%s", out.String())
	}
	if strings.Contains(out.String(), secret) {
		t.Errorf("-h prints the API token:\n%s", out.String())
	}
}

// fakeService is a deployment service with one service in one region,
// serving v1, that deploys v2 at once; it counts the deployments made.
func fakeService(t *testing.T, deployed *atomic.Int64) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /catalog", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"regions":["eu"],"services":{"web":{"versions":["v1","v2"],"serving":{"eu":"v1"}}}}`))
	})
	mux.HandleFunc("POST /deploy", func(w http.ResponseWriter, _ *http.Request) {
		deployed.Add(1)
		w.Write([]byte(`{"status":"SUCCESS"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestFlagsRefusedByName: a flag out of its range is an error naming it
// and its value, before a deployment is sent; -n -1 panicked making the
// requests, and a -url without its scheme panicked sending the first.
func TestFlagsRefusedByName(t *testing.T) {
	var deployed atomic.Int64
	srv := fakeService(t, &deployed)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-url", srv.URL, "-n", "0"}, "-n 0"},
		{[]string{"-url", srv.URL, "-n", "-1"}, "-n -1"},
		{[]string{"-url", strings.TrimPrefix(srv.URL, "http://")}, "-url " + strings.TrimPrefix(srv.URL, "http://")},
		{[]string{"-url", "ftp://127.0.0.1:3002"}, "-url ftp://127.0.0.1:3002"},
		{[]string{"-url", "http://"}, "-url http://"},
	} {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("stress %q: panic: %v", tc.args, p)
				}
			}()
			var out bytes.Buffer
			if err := run(tc.args, &out); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("stress %q: %v, want an error naming %q\n%s", tc.args, err, tc.want, out.String())
			}
		}()
	}
	if n := deployed.Load(); n != 0 {
		t.Errorf("%d deployments sent", n)
	}
}
