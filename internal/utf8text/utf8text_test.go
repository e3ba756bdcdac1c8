package utf8text_test

import (
	"fmt"
	"testing"

	"github.com/taipattern/taikit/internal/utf8text"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"order-1":         "order-1",
		"caf\u00e9 ☕":     "caf\u00e9 ☕",
		"order-\xfe\xff1": "order-\uFFFD1",
		"\xc3":            "\uFFFD",
		"a\xffb\xffc":     "a\uFFFDb\uFFFDc",
	} {
		if got := utf8text.Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func ExampleClean() {
	fmt.Printf("%q\n", utf8text.Clean("order-\xfe\xff1"))
	// Output: "order-�1"
}
