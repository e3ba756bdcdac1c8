package check

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// seriesLabel is a label matcher of a promtool input series: name="value".
var seriesLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"`)

// scrapeLabels are the labels Prometheus adds to what it scrapes, and a
// histogram bucket's bound: the services do not set them.
var scrapeLabels = map[string]bool{"instance": true, "job": true, "le": true}

// ruleSeriesProblems reads the input series of promtool unit test files
// (deploy/prometheus/tests/*.yml) and returns each label value that no series
// Prometheus (at promURL, scraping the services) holds under that label
// name: a unit test fed outcome="success" passes whatever its value, as
// the rules compare the failed share, and proves nothing about series the
// services never export.
func ruleSeriesProblems(t *testing.T, promURL string, files []string) []string {
	t.Helper()
	exported := map[string][]string{}
	values := func(name string) []string {
		if v, ok := exported[name]; ok {
			return v
		}
		resp, err := http.Get(promURL + "/api/v1/label/" + url.PathEscape(name) + "/values")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var r struct {
			Status string   `json:"status"`
			Data   []string `json:"data"`
		}
		require.NoError(t, json.Unmarshal(b, &r), "%s", b)
		require.Equal(t, "success", r.Status, "%s", b)
		exported[name] = r.Data
		return r.Data
	}
	var out []string
	seen := map[string]bool{}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var tests struct {
			Tests []struct {
				InputSeries []struct {
					Series string `json:"series"`
				} `json:"input_series"`
			} `json:"tests"`
		}
		require.NoError(t, yaml.Unmarshal(b, &tests), filepath.Base(f))
		for _, tc := range tests.Tests {
			for _, s := range tc.InputSeries {
				n++
				for _, m := range seriesLabel.FindAllStringSubmatch(s.Series, -1) {
					name, value := m[1], m[2]
					if scrapeLabels[name] {
						continue
					}
					if have := values(name); !slices.Contains(have, value) && !seen[name+"="+value] {
						seen[name+"="+value] = true
						out = append(out, fmt.Sprintf("%s: series %s: %s=%q is not a value the services export (they export %q)", filepath.Base(f), s.Series, name, value, have))
					}
				}
			}
		}
	}
	require.NotZero(t, n, "input series read")
	return out
}
