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

func TestCut(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 4, ""},
		{"abcd", 4, "abcd"},
		{"abcde", 4, "abcd"},
		{"abc\xff", 4, "abc\uFFFD"[:3]}, // U+FFFD does not fit after abc
		{"a\xff", 4, "a\uFFFD"},
		{"ab€", 4, "ab"}, // the euro's three bytes do not fit
		{"a😀b", 4, "a"},  // nor the emoji's four after a
		{"😀b", 4, "😀"},
		{"\xff\xff\xffabc", 4, "\uFFFDa"}, // a run of bad bytes is one U+FFFD
		{"abc", 0, ""},
	} {
		if got := utf8text.Cut(c.in, c.n); got != c.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func ExampleClean() {
	fmt.Printf("%q\n", utf8text.Clean("order-\xfe\xff1"))
	// Output: "order-�1"
}
