package main

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codePatterns find the error codes the service can answer in its source
// and the shared HTTP helpers': a requestError's Code, the code given to
// httpapi.Errorf, the code of a payment not charged (outcomeError's e) and
// a code written as JSON.
var codePatterns = []*regexp.Regexp{
	regexp.MustCompile(`\bCode:\s*"([a-z_]+)"`),
	regexp.MustCompile(`\bErrorf\([^,()]+,\s*"([a-z_]+)"`),
	regexp.MustCompile(`\be\("([a-z_]+)",`),
	regexp.MustCompile(`"code":"([a-z_]+)"`),
}

// answeredCodes are the error codes found in the Go files (tests aside)
// of the directories given.
func answeredCodes(t *testing.T, dirs ...string) map[string]bool {
	t.Helper()
	codes := map[string]bool{}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			require.NoError(t, err)
			for _, re := range codePatterns {
				for _, m := range re.FindAllSubmatch(src, -1) {
					codes[string(m[1])] = true
				}
			}
		}
	}
	return codes
}

// readmeCodes are the codes in the first column of the README's tables of
// error codes, those headed "| code | HTTP | meaning |".
func readmeCodes(t *testing.T) map[string]bool {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	codes := map[string]bool{}
	in := false
	for line := range strings.Lines(string(readme)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "| code | HTTP | meaning |":
			in = true
		case !strings.HasPrefix(line, "|"):
			in = false
		case in:
			cells := strings.Split(line, "|")
			for _, code := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(cells[1], -1) {
				codes[code[1]] = true
			}
		}
	}
	return codes
}

// boardCodePatterns find the error codes the andon board the service
// mounts at /andon/ answers: the code given to its fail, and the one
// openStream returns.
var boardCodePatterns = []*regexp.Regexp{
	regexp.MustCompile(`\bfail\(w,[^,]+,\s*"([a-z_]+)"`),
	regexp.MustCompile(`\breturn "([a-z_]+)", "`),
}

// boardCodes are the error codes the andon board answers, found in its
// source. streaming_unsupported is left out: the service's writers flush,
// so the board streams its events (TestShutdownWithOpenBoardStreams); so
// is not_made, the answer of a Board not made by NewBoard, which the
// service never serves.
func boardCodes(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "andon", "board.go"))
	require.NoError(t, err)
	codes := map[string]bool{}
	for _, re := range boardCodePatterns {
		for _, m := range re.FindAllSubmatch(src, -1) {
			codes[string(m[1])] = true
		}
	}
	delete(codes, "streaming_unsupported")
	delete(codes, "not_made")
	return codes
}

// The README's tables of error codes list every code the service can
// answer, the board's included, and no other.
func TestREADMEListsEveryErrorCode(t *testing.T) {
	answered := answeredCodes(t, ".", filepath.Join("..", "internal", "httpapi"))
	board := boardCodes(t)
	for _, code := range []string{"too_many_streams", "shutting_down", "forbidden", "cross_origin"} {
		require.True(t, board[code], "the scan of the board's source misses %s", code)
	}
	maps.Copy(answered, board)
	for _, code := range []string{"fraud_blocked", "store_full", "payment_failed", "idempotency_in_flight", "unauthorized", "not_found", "internal"} {
		require.True(t, answered[code], "the scan of the source misses %s", code)
	}
	listed := readmeCodes(t)
	for _, code := range slices.Sorted(maps.Keys(answered)) {
		assert.True(t, listed[code], "error code %s is not in the README's tables of error codes", code)
	}
	for code := range listed {
		assert.True(t, answered[code], "the README lists error code %s, which the service does not answer", code)
	}
}

// A client that hangs up while its payment is read is no outage of the
// payments store: the read cut short by the request's end is not logged
// as one (an operator would chase a store that never failed), and
// nothing is answered to no one.
func TestGetPaymentOfAClientGoneIsNoStoreOutage(t *testing.T) {
	ts := startService(t, testConfig(t))
	const id = "txn_00000000000000000000000000000000"
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the server ends a request's context when its client goes
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/payment/"+id, nil)
	r.SetPathValue("id", id)
	w := httptest.NewRecorder()
	ts.handleGetPayment(w, r)
	assert.NotContains(t, ts.logs.String(), "store unavailable")
	assert.Empty(t, w.Body.String(), "no store_unavailable answer")

	got := ts.do(t, http.MethodGet, "/payment/"+id, nil)
	assert.Equal(t, http.StatusNotFound, got.Code, "a client still there is answered: %s", got.Raw)
}

// Some requests are answered by Go's HTTP server before the service sees
// them, without the error schema, and two of those answers are a 5xx: the
// README says which, beside its word that client input never gets a 5xx
// from the service.
func TestREADMEListsTheServersOwnAnswers(t *testing.T) {
	ts := startService(t, testConfig(t))
	host := strings.TrimPrefix(ts.URL, "http://")
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, found := strings.Cut(string(readme), "Client input never gets a 5xx")
	require.True(t, found, "the README says client input never gets a 5xx")
	paragraph, _, _ := strings.Cut(rest, "\n\n")

	for _, c := range []struct {
		name, head string
		code       int
	}{
		{"headers over 64 KiB", "GET /payment/x HTTP/1.1\r\nX-Big: " + strings.Repeat("x", 70<<10) + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"a path with a bad escape", "GET /payment/%zz HTTP/1.1\r\n", http.StatusBadRequest},
		{"an Expect other than 100-continue", "GET /payment/x HTTP/1.1\r\nExpect: teapot\r\n", http.StatusExpectationFailed},
		{"a Transfer-Encoding other than chunked", "POST /payment HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n", http.StatusNotImplemented},
		{"HTTP/2.0 in an HTTP/1 request line", "GET /payment/x HTTP/2.0\r\n", http.StatusHTTPVersionNotSupported},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", host)
			require.NoError(t, err)
			defer conn.Close()
			_, err = io.WriteString(conn, c.head+"Host: "+host+"\r\nConnection: close\r\n\r\n")
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			require.Equal(t, c.code, resp.StatusCode, "%s", body)
			assert.NotContains(t, string(body), `"error"`, "Go's server answers it, not the service")
			assert.Contains(t, paragraph, "`"+strconv.Itoa(c.code), "the README names the %d Go's server answers for %s", c.code, c.name)
		})
	}
}
