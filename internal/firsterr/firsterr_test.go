package firsterr

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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

// shortWriter writes at most n bytes a call and, against io.Writer's
// contract, reports no error when it writes fewer than it was given.
type shortWriter struct {
	n   int
	buf bytes.Buffer
}

func (s *shortWriter) Write(p []byte) (int, error) {
	return s.buf.Write(p[:min(len(p), s.n)])
}

// TestWriterTakesAShortWriteForAnError: a write that takes fewer bytes
// than it was given and says nothing is an error all the same, as io.Copy
// takes it (io.ErrShortWrite): the text is cut, and nothing is written
// after the cut.
func TestWriterTakesAShortWriteForAnError(t *testing.T) {
	s := &shortWriter{n: 3}
	w := &Writer{W: s}
	fmt.Fprint(w, "abc")
	fmt.Fprint(w, "defgh") // only "def" is taken
	fmt.Fprint(w, "i")
	if !errors.Is(w.Err, io.ErrShortWrite) {
		t.Fatalf("Err = %v, want %v", w.Err, io.ErrShortWrite)
	}
	if got := s.buf.String(); got != "abcdef" {
		t.Fatalf("written %q, want %q", got, "abcdef")
	}
}
