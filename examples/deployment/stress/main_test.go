package main

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
// serving v1, that deploys v2 at once the first time it is asked and
// answers 409 after, as the service does while a deployment holds the
// pair; it counts the deployments asked for.
func fakeService(t *testing.T, deployed *atomic.Int64) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /catalog", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"regions":["eu"],"services":{"web":{"versions":["v1","v2"],"serving":{"eu":"v1"}}}}`))
	})
	mux.HandleFunc("POST /deploy", func(w http.ResponseWriter, _ *http.Request) {
		if deployed.Add(1) > 1 {
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":{"code":"deployment_active","message":"web/eu is held"}}`))
			return
		}
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

// TestRunLeavesNothingRunning: a run sends its deployments at once,
// reports how each was answered, and once it returns leaves no goroutine
// behind, nor a connection open to the service: it left its keep-alive
// connections, and the goroutines reading them, in the process's shared
// transport.
func TestRunLeavesNothingRunning(t *testing.T) {
	var deployed atomic.Int64
	srv := fakeService(t, &deployed)
	before := goleak.IgnoreCurrent()
	var out bytes.Buffer
	if err := run([]string{"-url", srv.URL, "-n", "8"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if n := deployed.Load(); n != 8 {
		t.Errorf("%d deployments sent, want 8", n)
	}
	for _, want := range []string{`(?m)^8 deployments over 1 service/region pairs$`, `(?m)^\s+200 SUCCESS\s+1$`, `(?m)^\s+409\s+7$`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("the report does not match %s:\n%s", want, out.String())
		}
	}
	goleak.VerifyNone(t, before)
}
