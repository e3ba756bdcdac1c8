package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"nats":"RECONNECTING"}`))
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	release := make(chan struct{})
	mux.HandleFunc("/stuck", func(http.ResponseWriter, *http.Request) { <-release })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	// A port nothing listens on: take one and give it back.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/healthz"
	_ = l.Close()

	for _, tc := range []struct {
		name        string
		args        []string
		code        int
		out, stderr string
	}{
		{"2xx", []string{srv.URL + "/ok"}, 0, "answered 200", ""},
		{"503 with its body", []string{srv.URL + "/down"}, 1, "", `answered 503: {"nats":"RECONNECTING"}`},
		{"a redirect is not followed", []string{srv.URL + "/moved"}, 1, "", "answered 302"},
		{"no answer in time", []string{"-timeout", "50ms", srv.URL + "/stuck"}, 1, "", "no answer within 50ms"},
		{"nothing listening", []string{closed}, 1, "", "connection refused"},
		{"no URL", nil, 2, "", "usage: probe"},
		{"two URLs", []string{srv.URL, srv.URL}, 2, "", "usage: probe"},
		{"not http", []string{"ftp://localhost/"}, 2, "", "is not http://host"},
		{"no host", []string{"http:///healthz"}, 2, "", "is not http://host"},
		{"bad URL", []string{"http://[::1"}, 2, "", "URL"},
		{"credentials in the URL", []string{"http://admin:s3cret@" + srv.Listener.Addr().String() + "/ok"}, 2, "", "carries credentials"},
		{"a token in the URL", []string{"http://t0ken@" + srv.Listener.Addr().String() + "/ok"}, 2, "", "carries credentials"},
		{"credentials in a URL not http", []string{"https://admin:s3cret@localhost/ok"}, 2, "", "carries credentials"},
		{"credentials in a bad URL", []string{"http://admin:s3cret@localhost:port/ok"}, 2, "", "URL is not valid: invalid port"},
		// A query's values and a fragment are sent (the fragment not)
		// but never printed: a token may ride there.
		{"a token in the query", []string{srv.URL + "/ok?token=s3cret&x"}, 0, "/ok?token=xxxxx&xxxxx answered 200", ""},
		{"a token in the query, a 503", []string{srv.URL + "/down?token=s3cret"}, 1, "", "/down?token=xxxxx answered 503"},
		{"a token in the query, nothing listening", []string{closed + "?token=s3cret"}, 1, "", "/healthz?token=xxxxx"},
		{"a token in the query, no answer in time", []string{"-timeout", "50ms", srv.URL + "/stuck?token=s3cret"}, 1, "", "no answer within 50ms"},
		{"a token in the fragment", []string{srv.URL + "/ok#s3cret"}, 0, "/ok#xxxxx answered 200", ""},
		{"a token in the query of a URL not http", []string{"ftp://localhost/?token=s3cret"}, 2, "", "is not http://host"},
		{"bad timeout", []string{"-timeout", "0s", srv.URL + "/ok"}, 2, "", "must be positive"},
		{"unknown flag", []string{"-x", srv.URL}, 2, "", "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if got := run(ctx, tc.args, &out, &errOut); got != tc.code {
				t.Fatalf("exit code %d, want %d (stdout %q, stderr %q)", got, tc.code, out.String(), errOut.String())
			}
			if !bytes.Contains(out.Bytes(), []byte(tc.out)) {
				t.Errorf("stdout %q does not contain %q", out.String(), tc.out)
			}
			if !bytes.Contains(errOut.Bytes(), []byte(tc.stderr)) {
				t.Errorf("stderr %q does not contain %q", errOut.String(), tc.stderr)
			}
			for _, secret := range []string{"s3cret", "t0ken"} {
				if bytes.Contains(out.Bytes(), []byte(secret)) || bytes.Contains(errOut.Bytes(), []byte(secret)) {
					t.Errorf("the output shows the secret %q: stdout %q, stderr %q", secret, out.String(), errOut.String())
				}
			}
		})
	}
}

// A password or token with a '/', '?' or '#' in it, not escaped, ends the
// host part for url.Parse: the URL parsed without user information and
// was asked, or failed on the "port" and quoted it; either way the output
// showed the secret, or a part of it.
func TestSecretWithReservedCharactersRefused(t *testing.T) {
	for _, raw := range []string{
		"http://admin:pw12/XYZW@127.0.0.1:1/healthz",
		"http://admin:1234?XYZW@127.0.0.1:1/healthz",
		"http://admin:1234#XYZW@127.0.0.1:1/healthz",
		"http://pw12/XYZW@127.0.0.1:1/healthz",
		"admin:pw12/XYZW@127.0.0.1:1/healthz",
	} {
		t.Run(raw, func(t *testing.T) {
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if got := run(ctx, []string{"-timeout", "1s", raw}, &out, &errOut); got != 2 {
				t.Errorf("exit code %d, want 2 (stderr %q)", got, errOut.String())
			}
			for _, secret := range []string{"pw12", "1234", "XYZW"} {
				if bytes.Contains(out.Bytes(), []byte(secret)) || bytes.Contains(errOut.Bytes(), []byte(secret)) {
					t.Errorf("the output shows %q, of the secret: stdout %q, stderr %q", secret, out.String(), errOut.String())
				}
			}
		})
	}
}

// -h prints the usage and exits 0, as it does for the services and for
// the flag package's own ExitOnError: asking for help is not a bad
// argument.
func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		var out, errOut bytes.Buffer
		if got := run(context.Background(), []string{arg}, &out, &errOut); got != 0 {
			t.Errorf("%s: exit code %d, want 0 (stderr %q)", arg, got, errOut.String())
		}
		if !bytes.Contains(errOut.Bytes(), []byte("usage: probe")) {
			t.Errorf("%s: stderr %q holds no usage", arg, errOut.String())
		}
	}
}

// An answer whose status came but whose body did not, in time: the
// status decides. A 2xx is healthy, its body unread (it is printed only on
// failure); another status is reported as such, with what of the body
// came, not as a timeout that hides it. The timeout is long enough for
// the status to come on a loaded machine: only the body ever stalls.
func TestStatusCameBodyStalled(t *testing.T) {
	release := make(chan struct{})
	stalled := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"nats":`))
			w.(http.Flusher).Flush()
			<-release
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/ok", stalled(http.StatusOK))
	mux.Handle("/down", stalled(http.StatusServiceUnavailable))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	for _, tc := range []struct {
		path        string
		code        int
		out, stderr string
	}{
		{"/ok", 0, "answered 200", ""},
		{"/down", 1, "", `answered 503: {"nats": (the rest of the answer did not come within 1s)`},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if got := run(ctx, []string{"-timeout", "1s", srv.URL + tc.path}, &out, &errOut); got != tc.code {
				t.Fatalf("exit code %d, want %d (stdout %q, stderr %q)", got, tc.code, out.String(), errOut.String())
			}
			if !bytes.Contains(out.Bytes(), []byte(tc.out)) {
				t.Errorf("stdout %q does not contain %q", out.String(), tc.out)
			}
			if !bytes.Contains(errOut.Bytes(), []byte(tc.stderr)) {
				t.Errorf("stderr %q does not contain %q", errOut.String(), tc.stderr)
			}
		})
	}
}
