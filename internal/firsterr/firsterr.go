// Package firsterr has a writer that keeps the first error of a run of
// writes, so that text written with many fmt.Fprintf calls is checked
// once, at the end.
package firsterr

import "io"

// Writer writes to W and keeps the first error in Err; after it, it
// writes nothing more and returns that error. A write that W takes only
// part of without an error (which io.Writer does not allow) counts as
// io.ErrShortWrite, as io.Copy counts it, so that cut text is not taken
// for whole.
type Writer struct {
	W   io.Writer
	Err error
}

// Write implements io.Writer.
func (e *Writer) Write(p []byte) (int, error) {
	if e.Err != nil {
		return 0, e.Err
	}
	n, err := e.W.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	e.Err = err
	return n, err
}
