package kanban

// ring is a double-ended queue on a circular buffer that doubles when
// full: pushes and pops at either end cost O(1) and, once the buffer has
// grown to the queue's peak length, allocate nothing. The zero value is an
// empty ring.
type ring[E any] struct {
	buf  []E // len is zero or a power of two
	head int // index of the first element
	n    int // elements held
}

func (r *ring[E]) len() int { return r.n }

func (r *ring[E]) grow() {
	size := max(16, 2*len(r.buf))
	buf := make([]E, size)
	// Unwrap in order: head..end, then 0..head.
	k := copy(buf, r.buf[r.head:])
	copy(buf[k:], r.buf[:r.head])
	r.buf, r.head = buf, 0
}

// addBack makes room for an element at the back and returns it, for the
// caller to write in place.
func (r *ring[E]) addBack() *E {
	if r.n == len(r.buf) {
		r.grow()
	}
	e := &r.buf[(r.head+r.n)&(len(r.buf)-1)]
	r.n++
	return e
}

// addFront makes room for an element at the front and returns it, for
// the caller to write in place.
func (r *ring[E]) addFront() *E {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.head = (r.head - 1) & (len(r.buf) - 1)
	r.n++
	return &r.buf[r.head]
}

// takeFront moves the first element into dst and clears its slot, so the
// ring keeps nothing it no longer holds alive; the ring must not be empty.
func (r *ring[E]) takeFront(dst *E) {
	var zero E
	*dst = r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
}

// front returns the first element; the ring must not be empty.
func (r *ring[E]) front() *E { return &r.buf[r.head] }

func (r *ring[E]) pushBack(e E) { *r.addBack() = e }

// popFront removes and returns the first element; the ring must not be
// empty.
func (r *ring[E]) popFront() (e E) {
	r.takeFront(&e)
	return e
}
