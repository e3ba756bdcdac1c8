package main

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
