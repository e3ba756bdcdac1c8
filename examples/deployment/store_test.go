package main

import (
	"math"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
)

// TestWriterTurnsPastMaxInt32: the store's counter of record writes
// passes 2^31 after enough of them; where int has 32 bits (386, arm) the
// writer it picks must stay in range.
func TestWriterTurnsPastMaxInt32(t *testing.T) {
	s := &Store{writers: make([]jetstream.KeyValue, 3)}
	for _, start := range []uint32{math.MaxInt32 - 1, math.MaxUint32 - 1} {
		s.next.Store(start)
		for range 4 {
			assert.NotPanics(t, func() { s.writer() })
		}
	}
}
