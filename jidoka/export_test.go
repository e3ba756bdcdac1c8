package jidoka

// GiveBackBeforeHandOn gives back a slot of b as done does, but stops
// where done would hand the slot on to the calls in line, and returns the
// function that does that. A call made in between arrives as it may while
// done runs in another goroutine.
func GiveBackBeforeHandOn(b *Bulkhead) (handOn func()) {
	b.giveBack()
	return func() {
		if b.waiting.Load() != 0 {
			b.handOn()
		}
	}
}
