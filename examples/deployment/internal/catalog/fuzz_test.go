package catalog

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts is valid and
// survives a trip through its JSON form unchanged.
func FuzzParse(f *testing.F) {
	f.Add(demoJSON)
	f.Add([]byte(small))
	for _, seed := range []string{
		``, `{}`, `[]`, `null`, `{"services": {}, "regions": {}}`,
		`{"regions": {"r": {"capacity": 1}}, "services": {"s": {"instances": 1, "running": {"r": "v"}, "versions": {"v": {"error_rate": 0, "p99_ms": 0, "cpu": 0, "memory": 0}}}}}`,
		`{"regions": {"r": {"capacity": 1e400}}}`,
		`{"regions": {"r": {"capacity": 1, "capacity": 2}}}`,
		`{"services": {"s": {"versions": {"v": {"degrade_after_secs": 1e-12, "degraded": {}}}}}}`,
		`{"regions": {"r": {"capacity": 1}}} {"x": 1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(bytes.NewReader(data))
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a catalog and the error %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a catalog Validate refuses: %v", err)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Parse refuses its own output %s: %v", b, err)
		}
		b2, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the catalog:\n%s\n%s", b, b2)
		}
	})
}
