package catalog

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// small is a valid catalog the error cases below change one thing in.
const small = `{
  "regions": {"us-west-2": {"capacity": 10}, "eu-west-1": {"capacity": 10}},
  "services": {
    "api": {
      "running": {"us-west-2": "v1"},
      "versions": {
        "v1": {"error_rate": 0.01, "p99_ms": 200, "cpu": 0.4, "memory": 0.5},
        "v2": {"error_rate": 0.01, "p99_ms": 200, "cpu": 0.4, "memory": 0.5}
      }
    }
  }
}`

func TestParseSmall(t *testing.T) {
	c, err := Parse(strings.NewReader(small))
	require.NoError(t, err)
	want := &Catalog{
		Regions: map[string]Region{"us-west-2": {Capacity: 10}, "eu-west-1": {Capacity: 10}},
		Services: map[string]Service{"api": {
			Running: map[string]string{"us-west-2": "v1"},
			Versions: map[string]Version{
				"v1": {Profile: Profile{ErrorRate: 0.01, P99: 200 * time.Millisecond, CPU: 0.4, Memory: 0.5}},
				"v2": {Profile: Profile{ErrorRate: 0.01, P99: 200 * time.Millisecond, CPU: 0.4, Memory: 0.5}},
			},
		}},
	}
	assert.Equal(t, want, c)
}

func TestParseFull(t *testing.T) {
	c, err := Parse(strings.NewReader(`{
	  "regions": {"r1": {"capacity": 8}, "r2": {"capacity": 3}},
	  "services": {"s": {
	    "description": "a service",
	    "instances": 3,
	    "running": {},
	    "versions": {"1.0": {
	      "description": "degrades",
	      "error_rate": 0, "p99_ms": 0.5, "cpu": 1, "memory": 0,
	      "regions": {"r2": {"error_rate": 0.5, "p99_ms": 3600000, "cpu": 0.1, "memory": 0.2}},
	      "degrade_after_secs": 1.5,
	      "degraded": {"error_rate": 1, "p99_ms": 900, "cpu": 0.9, "memory": 0.95}
	    }}
	  }}
	}`))
	require.NoError(t, err)
	s := c.Services["s"]
	assert.Equal(t, "a service", s.Description)
	assert.Equal(t, 3, s.Instances)
	assert.Nil(t, s.Running, "an empty running object parses as nil")
	v := s.Versions["1.0"]
	assert.Equal(t, "degrades", v.Description)
	assert.Equal(t, Profile{ErrorRate: 0, P99: 500 * time.Microsecond, CPU: 1, Memory: 0}, v.Profile)
	assert.Equal(t, map[string]Profile{"r2": {ErrorRate: 0.5, P99: time.Hour, CPU: 0.1, Memory: 0.2}}, v.Regions)
	assert.Equal(t, 1500*time.Millisecond, v.DegradeAfter)
	assert.Equal(t, &Profile{ErrorRate: 1, P99: 900 * time.Millisecond, CPU: 0.9, Memory: 0.95}, v.Degraded)
}

// TestParseErrors: every way a catalog can be wrong gives an error naming
// the path of what is wrong.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string // a whole catalog, or a replacement of small
		from  string // when set, input replaces from in small
		want  []string
	}{
		{name: "empty", input: ``, want: []string{"catalog: empty input, want a JSON object"}},
		{name: "only space", input: " \n\t", want: []string{"catalog: empty input, want a JSON object"}},
		{name: "not an object", input: `[]`, want: []string{"catalog: top level: want an object, got an array"}},
		{name: "null", input: `null`, want: []string{"catalog: top level: want an object, got null"}},
		{name: "empty object", input: `{}`, want: []string{"catalog: top level: missing services, regions"}},
		{name: "no services", input: `{"regions": {"r": {"capacity": 1}}, "services": {}}`, want: []string{"catalog: services: at least one service is needed"}},
		{name: "no regions", input: `{"regions": {}, "services": {"s": {"versions": {"v": {"error_rate": 0, "p99_ms": 1, "cpu": 0, "memory": 0}}}}}`,
			want: []string{"catalog: regions: at least one region is needed"}},
		{name: "truncated", input: `{"regions": {"r": {"capacity": 1}`, want: []string{"catalog: regions: unexpected end of input"}},
		{name: "truncated in a value", input: `{"regions": {"r": {"capacity": `, want: []string{"catalog: regions.r.capacity: unexpected end of input"}},
		{name: "syntax error", input: `{"regions": {"r": {"capacity": 1,}}}`, want: []string{"catalog: regions.r: invalid character '}'"}},
		{name: "trailing data", input: small + `{}`, want: []string{"catalog: unexpected data after the end of the object"}},
		{name: "trailing garbage", input: small + `x`, want: []string{"catalog: unexpected data after the end of the object"}},

		{name: "unknown top-level field", from: `"regions":`, input: `"region": {}, "regions":`,
			want: []string{"catalog: region: unknown field (want one of services, regions)"}},
		{name: "field names are case-sensitive", from: `"regions":`, input: `"Regions":`,
			want: []string{"catalog: Regions: unknown field"}},
		{name: "unknown service field", from: `"running":`, input: `"replicas": 3, "running":`,
			want: []string{"catalog: services.api.replicas: unknown field (want one of description, instances, versions, running)"}},
		{name: "unknown version field", from: `"v2": {"error_rate": 0.01,`, input: `"v2": {"error_rate": 0.01, "latency": 1,`,
			want: []string{"catalog: services.api.versions.v2.latency: unknown field"}},
		{name: "unknown region field", from: `{"capacity": 10}, "eu`, input: `{"capacity": 10, "zone": "a"}, "eu`,
			want: []string{"catalog: regions.us-west-2.zone: unknown field (want one of capacity)"}},
		{name: "duplicate field", from: `"cpu": 0.4, "memory": 0.5},`, input: `"cpu": 0.4, "cpu": 0.3, "memory": 0.5},`,
			want: []string{"catalog: services.api.versions.v1.cpu: given twice"}},
		{name: "duplicate version", from: `"v2": {`, input: `"v1": {`,
			want: []string{"catalog: services.api.versions.v1: given twice"}},
		{name: "duplicate region", from: `"eu-west-1": {"capacity": 10}`, input: `"us-west-2": {"capacity": 10}`,
			want: []string{"catalog: regions.us-west-2: given twice"}},
		{name: "duplicate written differently", from: `"v2": {`, input: `"v\u0031": {`,
			want: []string{"catalog: services.api.versions.v1: given twice"}},
		{name: "versions differing in case", from: `"v2": {`, input: `"V1": {`,
			want: []string{"catalog: services.api.versions.v1: differs from version V1 only in case"}},
		{name: "missing profile field", from: `"v2": {"error_rate": 0.01, "p99_ms": 200, `, input: `"v2": {"p99_ms": 200, `,
			want: []string{"catalog: services.api.versions.v2: missing error_rate"}},
		{name: "missing capacity", from: `{"capacity": 10}, "eu`, input: `{}, "eu`,
			want: []string{"catalog: regions.us-west-2: missing capacity"}},
		{name: "missing versions", input: `{"regions": {"r": {"capacity": 1}}, "services": {"s": {}}}`,
			want: []string{"catalog: services.s: missing versions"}},
		{name: "no versions", input: `{"regions": {"r": {"capacity": 1}}, "services": {"s": {"versions": {}}}}`,
			want: []string{"catalog: services.s.versions: at least one version is needed"}},

		{name: "string for number", from: `"cpu": 0.4, "memory": 0.5},`, input: `"cpu": "0.4", "memory": 0.5},`,
			want: []string{`catalog: services.api.versions.v1.cpu: want a number, got the string "0.4"`}},
		{name: "number for object", from: `"regions": {`, input: `"regions": 3, "x": {`,
			want: []string{"catalog: regions: want an object, got the number 3"}},
		{name: "null profile", from: `"v2": {"error_rate"`, input: `"v3": null, "v2": {"error_rate"`,
			want: []string{"catalog: services.api.versions.v3: want an object, got null"}},
		{name: "number for running version", from: `"us-west-2": "v1"`, input: `"us-west-2": 1`,
			want: []string{"catalog: services.api.running.us-west-2: want a string, got the number 1"}},
		{name: "huge number", from: `"cpu": 0.4, "memory": 0.5},`, input: `"cpu": 1e999, "memory": 0.5},`,
			want: []string{"catalog: services.api.versions.v1.cpu: number 1e999 is out of range"}},

		{name: "error rate above one", from: `"v2": {"error_rate": 0.01`, input: `"v2": {"error_rate": 1.5`,
			want: []string{"catalog: services.api.versions.v2.error_rate: must be in [0,1], got 1.5"}},
		{name: "negative cpu", from: `"cpu": 0.4, "memory": 0.5},`, input: `"cpu": -0.1, "memory": 0.5},`,
			want: []string{"catalog: services.api.versions.v1.cpu: must be in [0,1], got -0.1"}},
		{name: "memory as a percentage", from: `"cpu": 0.4, "memory": 0.5},`, input: `"cpu": 0.4, "memory": 50},`,
			want: []string{"catalog: services.api.versions.v1.memory: must be in [0,1], got 50"}},
		{name: "negative p99", from: `"v2": {"error_rate": 0.01, "p99_ms": 200`, input: `"v2": {"error_rate": 0.01, "p99_ms": -1`,
			want: []string{"catalog: services.api.versions.v2.p99_ms: must be in [0,3.6e+06], got -1"}},
		{name: "p99 over an hour", from: `"v2": {"error_rate": 0.01, "p99_ms": 200`, input: `"v2": {"error_rate": 0.01, "p99_ms": 3600001`,
			want: []string{"catalog: services.api.versions.v2.p99_ms: must be in [0,3.6e+06], got 3.600001e+06"}},
		{name: "negative instances", from: `"running":`, input: `"instances": -1, "running":`,
			want: []string{"catalog: services.api.instances: must be in [0,1000000], got -1"}},
		{name: "fractional instances", from: `"running":`, input: `"instances": 2.5, "running":`,
			want: []string{"catalog: services.api.instances: must be a whole number, got 2.5"}},
		{name: "zero capacity", from: `{"capacity": 10}, "eu`, input: `{"capacity": 0}, "eu`,
			want: []string{"catalog: regions.us-west-2.capacity: must be in [1,1000000], got 0"}},
		{name: "capacity too small for what runs", from: `{"capacity": 10}, "eu`, input: `{"capacity": 3}, "eu`,
			want: []string{"catalog: regions.us-west-2.capacity: the running services need 4 instances, more than the capacity of 3"}},
		{name: "negative degrade after", from: `"v2": {"error_rate": 0.01,`, input: `"v2": {"degrade_after_secs": -4, "error_rate": 0.01,`,
			want: []string{"catalog: services.api.versions.v2.degrade_after_secs: must be in [0,2.592e+06], got -4"}},
		{name: "degrade after without degraded", from: `"v2": {"error_rate": 0.01,`, input: `"v2": {"degrade_after_secs": 4, "error_rate": 0.01,`,
			want: []string{"catalog: services.api.versions.v2: degrade_after_secs needs a degraded profile"}},
		{name: "degraded without degrade after", from: `"v2": {"error_rate": 0.01,`,
			input: `"v2": {"degraded": {"error_rate": 0.5, "p99_ms": 1, "cpu": 0, "memory": 0}, "error_rate": 0.01,`,
			want:  []string{"catalog: services.api.versions.v2: degraded needs a positive degrade_after_secs"}},
		{name: "bad degraded profile", from: `"v2": {"error_rate": 0.01,`,
			input: `"v2": {"degrade_after_secs": 4, "degraded": {"error_rate": 2, "p99_ms": 1, "cpu": 0, "memory": 0}, "error_rate": 0.01,`,
			want:  []string{"catalog: services.api.versions.v2.degraded.error_rate: must be in [0,1], got 2"}},
		{name: "incomplete degraded profile", from: `"v2": {"error_rate": 0.01,`,
			input: `"v2": {"degrade_after_secs": 4, "degraded": {"error_rate": 0.5}, "error_rate": 0.01,`,
			want:  []string{"catalog: services.api.versions.v2.degraded: missing p99_ms, cpu, memory"}},
		{name: "override for unknown region", from: `"v2": {"error_rate": 0.01,`,
			input: `"v2": {"regions": {"mars-1": {"error_rate": 0.5, "p99_ms": 1, "cpu": 0, "memory": 0}}, "error_rate": 0.01,`,
			want:  []string{`catalog: services.api.versions.v2.regions.mars-1: unknown region "mars-1"`}},
		{name: "bad override", from: `"v2": {"error_rate": 0.01,`,
			input: `"v2": {"regions": {"eu-west-1": {"error_rate": 0.5, "p99_ms": 1, "cpu": 3, "memory": 0}}, "error_rate": 0.01,`,
			want:  []string{"catalog: services.api.versions.v2.regions.eu-west-1.cpu: must be in [0,1], got 3"}},

		{name: "running in unknown region", from: `"us-west-2": "v1"`, input: `"us-west-2": "v1", "mars-1": "v1"`,
			want: []string{`catalog: services.api.running.mars-1: unknown region "mars-1"`}},
		{name: "running unknown version", from: `"us-west-2": "v1"`, input: `"us-west-2": "v9"`,
			want: []string{`catalog: services.api.running.us-west-2: unknown version "v9"`}},

		{name: "upper-case service", from: `"api": {`, input: `"API": {`,
			want: []string{`catalog: services.API: invalid service name "API": want 1 to 63 lowercase letters, digits and '-'`}},
		{name: "service with underscore", from: `"api": {`, input: `"api_v2": {`,
			want: []string{`catalog: services.api_v2: invalid service name "api_v2"`}},
		{name: "empty service name", from: `"api": {`, input: `"": {`,
			want: []string{`catalog: services.: invalid service name ""`}},
		{name: "service name too long", from: `"api": {`, input: `"` + strings.Repeat("a", 64) + `": {`,
			want: []string{`invalid service name "` + strings.Repeat("a", 64) + `"`}},
		{name: "region with dot", from: `"eu-west-1": {"capacity": 10}`, input: `"eu.west": {"capacity": 10}`,
			want: []string{`catalog: regions.eu.west: invalid region name "eu.west"`}},
		{name: "upper-case region", from: `"eu-west-1": {"capacity": 10}`, input: `"EU-WEST-1": {"capacity": 10}`,
			want: []string{`catalog: regions.EU-WEST-1: invalid region name "EU-WEST-1"`}},
		{name: "version with space", from: `"v2": {`, input: `"v 2": {`,
			want: []string{`catalog: services.api.versions.v 2: invalid version name "v 2": want 1 to 128 bytes of printable characters, without spaces or '/'`}},
		{name: "version with slash", from: `"v2": {`, input: `"release/2": {`,
			want: []string{`invalid version name "release/2"`}},
		{name: "version with control character", from: `"v2": {`, input: `"v2\u0007": {`,
			want: []string{`invalid version name "v2\a"`}},
		{name: "empty version", from: `"v2": {`, input: `"": {`,
			want: []string{`catalog: services.api.versions.: invalid version name ""`}},
		{name: "version too long", from: `"v2": {`, input: `"` + strings.Repeat("9", 129) + `": {`,
			want: []string{`invalid version name "` + strings.Repeat("9", 129) + `"`}},

		{name: "every problem reported", from: `"v2": {"error_rate": 0.01, "p99_ms": 200, "cpu": 0.4, "memory": 0.5}`,
			input: `"v2": {"error_rate": 7, "p99_ms": 200, "cpu": 0.4, "memory": 9}, "x/y": {"error_rate": 0, "p99_ms": 1, "cpu": 0, "memory": 0}`,
			want: []string{
				"catalog: services.api.versions.v2.error_rate: must be in [0,1], got 7",
				"catalog: services.api.versions.v2.memory: must be in [0,1], got 9",
				`catalog: services.api.versions.x/y: invalid version name "x/y"`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := tt.input
			if tt.from != "" {
				require.Contains(t, small, tt.from, "the case changes something small has")
				input = strings.Replace(small, tt.from, tt.input, 1)
			}
			c, err := Parse(strings.NewReader(input))
			require.Error(t, err)
			assert.Nil(t, c)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// TestParseByteOrderMark: a catalog saved by an editor that starts files
// with a UTF-8 byte order mark parses (RFC 8259 lets a parser ignore it);
// a mark anywhere else is still an error.
func TestParseByteOrderMark(t *testing.T) {
	c, err := Parse(strings.NewReader("\ufeff" + small))
	require.NoError(t, err)
	want, err := Parse(strings.NewReader(small))
	require.NoError(t, err)
	assert.Equal(t, want, c)

	_, err = Parse(strings.NewReader("\ufeff"))
	assert.EqualError(t, err, "catalog: empty input, want a JSON object")
	_, err = Parse(strings.NewReader("\ufeff\ufeff" + small))
	assert.Error(t, err)
	_, err = Parse(strings.NewReader(strings.Replace(small, `"regions"`, "\ufeff"+`"regions"`, 1)))
	assert.Error(t, err)
}

// TestParseRefusesInvalidUTF8: a byte that is not UTF-8, in a name or
// in free text, is an error naming where it is; it was read as U+FFFD, so
// a version "v2\xff" in the file became "v2\ufffd" in the catalog, a name
// nobody could ask for, and two such names were "given twice". Runes cut
// between reads still parse.
func TestParseRefusesInvalidUTF8(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"version name", strings.Replace(small, `"v2"`, "\"v2\xff\"", 1), "catalog: line 8: byte 0xff at offset 255 is not UTF-8"},
		{"two version names", strings.Replace(strings.Replace(small, `"v2"`, "\"v\xfe\"", 1), `"v1"`, "\"v\xff\"", 1), "is not UTF-8"},
		{"description", strings.Replace(small, `"api": {`, "\"api\": {\"description\": \"caf\xe9\",", 1), "is not UTF-8"},
		{"cut short at the end", small + "\xe2\x82", "is not UTF-8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				c, err := Parse(r)
				require.Error(t, err)
				assert.Nil(t, c)
				assert.Contains(t, err.Error(), tt.want)
			}
		})
	}
	unicode := strings.Replace(strings.Replace(small, `"v2"`, `"v2-ünïcode-日本-😀"`, 1), `"api": {`, `"api": {"description": "café ☕",`, 1)
	for _, r := range []io.Reader{strings.NewReader(unicode), iotest.OneByteReader(strings.NewReader(unicode))} {
		c, err := Parse(r)
		require.NoError(t, err)
		assert.True(t, c.HasImage("api", "v2-ünïcode-日本-😀"))
		assert.Equal(t, "café ☕", c.Services["api"].Description)
	}
}

func TestNames(t *testing.T) {
	for _, name := range []string{"a", "api-service", "9", "-", strings.Repeat("z", 63)} {
		assert.NoError(t, CheckServiceName(name), name)
		assert.NoError(t, CheckRegionName(name), name)
	}
	for _, name := range []string{"", "Api", "api_service", "api service", "api.service", "ä", strings.Repeat("z", 64)} {
		assert.Error(t, CheckServiceName(name), name)
		assert.Error(t, CheckRegionName(name), name)
	}
	for _, name := range []string{"v1", "V1.0.0-rc.1+build.5", "sha256:abc", "1", "ünïcode", strings.Repeat("9", 128)} {
		assert.NoError(t, CheckVersionName(name), name)
	}
	for _, name := range []string{"", "v 1", "v\t1", "a/b", "v1\n", "v1\x00", "\xff", "\u00a0", strings.Repeat("9", 129)} {
		assert.Error(t, CheckVersionName(name), "%q", name)
	}
}

// TestValidateInCode: a catalog built in code gets the same checks,
// including ones JSON cannot reach (NaN).
func TestValidateInCode(t *testing.T) {
	c := Demo()
	assert.NoError(t, c.Validate())

	v := c.Services["api-service"].Versions["v2.0.0"]
	v.ErrorRate = nanValue()
	v.P99 = -time.Millisecond
	v.DegradeAfter = 31 * 24 * time.Hour
	c.Services["api-service"].Versions["v2.0.0"] = v
	s := c.Services["auth"]
	s.Instances = -4
	c.Services["auth"] = s
	c.Regions["us-east-1"] = Region{Capacity: 0}

	err := c.Validate()
	require.Error(t, err)
	for _, w := range []string{
		"catalog: regions.us-east-1.capacity: must be in [1,1000000], got 0",
		"catalog: services.api-service.versions.v2.0.0.error_rate: must be in [0,1], got NaN",
		"catalog: services.api-service.versions.v2.0.0.p99_ms: must be in [0,3.6e+06], got -1",
		"catalog: services.api-service.versions.v2.0.0.degrade_after_secs: must be in [0,2.592e+06], got 2.6784e+06",
		"catalog: services.api-service.versions.v2.0.0: degrade_after_secs needs a degraded profile",
		"catalog: services.auth.instances: must be in [0,1000000], got -4",
	} {
		assert.Contains(t, err.Error(), w)
	}
	assert.NoError(t, Demo().Validate(), "Demo hands out copies")
}

func nanValue() float64 {
	zero := 0.0
	return zero / zero
}

func TestRoundTrip(t *testing.T) {
	c := Demo()
	b, err := json.MarshalIndent(c, "", "  ")
	require.NoError(t, err)
	again, err := Parse(bytes.NewReader(b))
	require.NoError(t, err, "%s", b)
	assert.Equal(t, c, again)

	// json.Unmarshal goes through Parse, validation included.
	var viaJSON Catalog
	require.NoError(t, json.Unmarshal(b, &viaJSON))
	assert.Equal(t, c, &viaJSON)
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"services": {}, "regions": {}}`), &viaJSON),
		"catalog: regions: at least one region is needed")
}

func TestProfileJSON(t *testing.T) {
	p := Profile{ErrorRate: 0.072, P99: 1500 * time.Millisecond, CPU: 0.4, Memory: 0.5}
	b, err := json.Marshal(p)
	require.NoError(t, err)
	assert.JSONEq(t, `{"error_rate": 0.072, "p99_ms": 1500, "cpu": 0.4, "memory": 0.5}`, string(b))
	var back Profile
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, p, back)

	assert.ErrorContains(t, json.Unmarshal([]byte(`{"error_rate": 0.1}`), &back), "catalog: profile: missing p99_ms, cpu, memory")
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"error_rate": 0.1, "p99_ms": 1, "cpu": 0, "memory": 0, "disk": 1}`), &back),
		"catalog: profile.disk: unknown field")
}

// TestProfileJSONRanges: unmarshalling a profile or a version checks the
// durations' ranges, which a time.Duration must hold, and leaves the
// shares' to Validate.
func TestProfileJSONRanges(t *testing.T) {
	var p Profile
	require.NoError(t, json.Unmarshal([]byte(`{"error_rate": 2, "p99_ms": 1, "cpu": -1, "memory": 3}`), &p))
	assert.Equal(t, Profile{ErrorRate: 2, P99: time.Millisecond, CPU: -1, Memory: 3}, p)
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"error_rate": 0, "p99_ms": 3600001, "cpu": 0, "memory": 0}`), &p),
		"catalog: profile.p99_ms: must be in [0,3.6e+06], got 3.600001e+06")
	var v Version
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"error_rate": 0, "p99_ms": 1, "cpu": 0, "memory": 0, "degrade_after_secs": -1}`), &v),
		"catalog: version.degrade_after_secs: must be in [0,2.592e+06], got -1")
}

func TestVersionJSON(t *testing.T) {
	v := Version{
		Profile:      Profile{ErrorRate: 0.008, P99: 210 * time.Millisecond, CPU: 0.4, Memory: 0.5},
		Description:  "degrades",
		Regions:      map[string]Profile{"eu-west-1": {ErrorRate: 0.09, P99: 220 * time.Millisecond, CPU: 0.42, Memory: 0.52}},
		DegradeAfter: 4 * time.Second,
		Degraded:     &Profile{ErrorRate: 0.15, P99: 400 * time.Millisecond, CPU: 0.45, Memory: 0.55},
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, `{
	  "error_rate": 0.008, "p99_ms": 210, "cpu": 0.4, "memory": 0.5,
	  "description": "degrades",
	  "regions": {"eu-west-1": {"error_rate": 0.09, "p99_ms": 220, "cpu": 0.42, "memory": 0.52}},
	  "degrade_after_secs": 4,
	  "degraded": {"error_rate": 0.15, "p99_ms": 400, "cpu": 0.45, "memory": 0.55}
	}`, string(b))
	var back Version
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, v, back)

	plain, err := json.Marshal(Version{Profile: v.Profile})
	require.NoError(t, err)
	assert.JSONEq(t, `{"error_rate": 0.008, "p99_ms": 210, "cpu": 0.4, "memory": 0.5}`, string(plain))
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "catalog.json")
	require.NoError(t, os.WriteFile(good, []byte(small), 0o600))
	c, err := Load(good)
	require.NoError(t, err)
	assert.Equal(t, []string{"eu-west-1", "us-west-2"}, c.RegionNames())

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"regions": 1}`), 0o600))
	_, err = Load(bad)
	assert.ErrorContains(t, err, bad+": catalog: regions: want an object, got the number 1")

	_, err = Load(filepath.Join(dir, "missing.json"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}
