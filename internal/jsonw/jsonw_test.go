package jsonw_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/taipattern/taikit/internal/jsonw"
)

// check reports whether AppendString(s) is valid JSON that reads back as
// encoding/json reads its own encoding of s (invalid UTF-8 as U+FFFD).
func check(t *testing.T, s string) {
	t.Helper()
	out := jsonw.AppendString([]byte("x"), s)[1:]
	if !json.Valid(out) {
		t.Fatalf("AppendString(%q) = %s: not JSON", s, out)
	}
	var got, want string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	ref, _ := json.Marshal(s)
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("AppendString(%q) reads back as %q, encoding/json's as %q", s, got, want)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "line\nfeed\r\ttab", "\x00\x01\x1f\x7f",
		"<html> & 'x'", "héllo wörld ✓ 🚀", "bad \xff byte", "cut \xe2\x82", "\u2028\u2029"} {
		check(t, s)
	}
	if got := string(jsonw.AppendString(nil, "a\x01")); got != `"a\u0001"` {
		t.Errorf("control byte: %s", got)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff", "✓\n"} {
		f.Add(s)
	}
	f.Fuzz(check)
}

func ExampleAppendString() {
	b := []byte(`{"reason":`)
	b = jsonw.AppendString(b, "amount \"4,000.00\"\tnear the limit")
	fmt.Println(string(append(b, '}')))
	// Output: {"reason":"amount \"4,000.00\"\tnear the limit"}
}
