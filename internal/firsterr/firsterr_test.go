package firsterr

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// failAfter fails every write after its first n bytes.
type failAfter struct {
	n   int
	buf bytes.Buffer
}

var errFull = errors.New("full")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.buf.Len()+len(p) > f.n {
		return 0, errFull
	}
	return f.buf.Write(p)
}

func TestWriterKeepsTheFirstError(t *testing.T) {
	f := &failAfter{n: 5}
	w := &Writer{W: f}
	fmt.Fprint(w, "abc")
	fmt.Fprint(w, "defgh") // fails: 8 bytes
	fmt.Fprint(w, "i")     // would fit, but is not written after the error
	if !errors.Is(w.Err, errFull) {
		t.Fatalf("Err = %v, want %v", w.Err, errFull)
	}
	if got := f.buf.String(); got != "abc" {
		t.Fatalf("written %q, want %q", got, "abc")
	}
}
