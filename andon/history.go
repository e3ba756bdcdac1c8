package andon

// ring keeps the last len(buf) values pushed, overwriting the oldest; buf
// is never empty.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func newRing[T any](n int) ring[T] { return ring[T]{buf: make([]T, n)} }

func (r *ring[T]) push(v T) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// values returns the kept values, oldest first, in a new slice.
func (r *ring[T]) values() []T {
	if !r.full {
		return append([]T(nil), r.buf[:r.next]...)
	}
	out := make([]T, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}

// last returns the last n kept values (all of them if fewer are kept),
// oldest first, in a new slice: it copies n values, not the whole ring.
func (r *ring[T]) last(n int) []T {
	kept := r.next
	if r.full {
		kept = len(r.buf)
	}
	n = max(0, min(n, kept))
	out := make([]T, 0, n)
	if start := r.next - n; start < 0 {
		out = append(out, r.buf[len(r.buf)+start:]...) // the older part, at the end of buf
	}
	return append(out, r.buf[max(0, r.next-n):r.next]...)
}
