// Command probe asks a URL over HTTP and exits 0 when it answers 2xx, 1
// when it answers otherwise or not at all, and 2 for bad arguments (-h
// prints the usage and exits 0): the container images' HEALTHCHECK, where
// the final image (distroless) has no shell and no curl.
//
//	probe [-timeout 2s] http://127.0.0.1:3001/healthz
//
// It sends no credentials (a URL with user information, which would be
// sent as Basic credentials and printed, is refused, and so is any URL
// with an '@': one of a path is written %40) and follows no redirects.
// The URL is printed with the values of its query and its fragment
// hidden (?token=xxxxx), where a token may ride.
// The status decides: the body of a 2xx answer is not read. Of another
// answer it reads at most 4 KiB, within the timeout, and prints it
// (stderr) so `docker inspect` shows why a container is unhealthy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run probes the URL of args and returns the exit code: 0 for a 2xx
// answer (and for -h, which prints the usage), 1 for any other answer or
// none, 2 for bad arguments.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: probe [-timeout 2s] http://host:port/path")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h: the usage was asked for, and printed
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	target, shown, err := checkURL(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "probe:", err)
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "probe: -timeout %v must be positive\n", *timeout)
		return 2
	}
	status, body, err := probe(ctx, target, shown, *timeout)
	switch {
	case status == 0:
		fmt.Fprintln(stderr, "probe:", err)
		return 1
	case status < 200 || status > 299:
		text := strings.TrimSpace(body)
		if err != nil { // the status came, not the whole body
			text += " (" + err.Error() + ")"
		}
		fmt.Fprintf(stderr, "probe: %s answered %d: %s\n", shown, status, text)
		return 1
	}
	fmt.Fprintf(stdout, "%s answered %d\n", shown, status)
	return 0
}

// checkURL accepts an absolute http URL with a host and no user
// information: the HTTP client would send it as Basic credentials, and
// the URL is printed. It returns the URL to ask and the URL to print,
// whose query values and fragment are hidden (see redacted). No error
// shows the user information, even one with
// a '/', '?' or '#' in it, not escaped, which url.Parse reads as the end
// of the host and so not as user information at all: a URL with an '@'
// is refused (one of a path is written %40), and what comes before its
// last '@' is never shown.
func checkURL(raw string) (target, shown string, err error) {
	hidden, userinfo := hideUserInfo(raw)
	u, err := url.Parse(hidden)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) { // its message quotes the URL
			err = uerr.Err
		}
		return "", "", fmt.Errorf("URL is not valid: %w", err)
	}
	if userinfo {
		u.User = nil
		return "", "", fmt.Errorf("URL %q carries credentials (user@ or user:password@): the probe sends none; drop them (an '@' of the path is written %%40)", redacted(u))
	}
	if u.Scheme != "http" || u.Host == "" {
		return "", "", fmt.Errorf("URL %q is not http://host[:port]/path", redacted(u))
	}
	return u.String(), redacted(u), nil
}

// redacted returns u as printed: each value of its query (or a name
// alone) and its fragment written xxxxx.
func redacted(u *url.URL) string {
	c := *u
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, p := range parts {
			name, value, hasValue := strings.Cut(p, "=")
			switch {
			case !hasValue && p != "":
				parts[i] = "xxxxx"
			case value != "":
				parts[i] = name + "=xxxxx"
			}
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	if c.Fragment != "" {
		c.Fragment, c.RawFragment = "xxxxx", ""
	}
	return c.String()
}

// hideUserInfo returns raw with what it holds before its last '@' (after
// the scheme's "//") replaced by "xxxxx", and whether it holds an '@'.
func hideUserInfo(raw string) (string, bool) {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw, false
	}
	start := 0
	if i := strings.Index(raw, "//"); i >= 0 && i < at {
		start = i + 2
	}
	return raw[:start] + "xxxxx" + raw[at:], true
}

// probe GETs target within timeout and returns the status and, unless it
// is 2xx, the start of the body. A status of 0 means no answer, and err
// says why; with another status, err says why the body is incomplete.
// Errors name the URL as shown.
func probe(ctx context.Context, target, shown string, timeout time.Duration) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, "", err
	}
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, "", fmt.Errorf("%s: no answer within %v", shown, timeout)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) { // its message quotes the URL asked
			err = uerr.Err
		}
		return 0, "", fmt.Errorf("GET %s: %w", shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp.StatusCode, "", nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("the rest of the answer did not come within %v", timeout)
	case err != nil:
		err = fmt.Errorf("reading the rest of the answer: %w", err)
	}
	return resp.StatusCode, string(body), err
}
