package kaizen

import (
	"math"
	"math/bits"
	"time"
)

// histogram counts durations in log-linear bins, as HDR histograms do:
// values below 256 ns have a bin each; above, every power of two is split
// into 128 equal bins. A bin's width is at most 1/128 of its lower bound,
// so the middle of a bin is within 1/256 (0.39%) of any value in it, and a
// quantile read from the histogram is within 0.4% of the exact one.
//
// Bins are stored in chunks of 128, allocated the first time a value falls
// in them and kept when the histogram is reset, so a histogram that is
// reused allocates nothing once warm. Histograms merge by adding bins.
type histogram struct {
	chunks [numChunks]*[chunkBins]uint64
}

const (
	subBits   = 7
	chunkBins = 1 << subBits // bins per chunk, and per power of two above 256 ns
	// Values below 2*chunkBins have exact bins (chunks 0 and 1); each
	// power of two from 2^8 to 2^63 has a chunk.
	numChunks = 2 + (64 - subBits - 1)
)

// binOf returns the bin of a duration; negative durations count as zero.
func binOf(d time.Duration) int {
	if d < 0 {
		d = 0
	}
	v := uint64(d)
	if v < 2*chunkBins {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [128, 256)
	return (e+1)*chunkBins + int(v>>e) - chunkBins
}

// binValue returns the middle of bin b, in nanoseconds.
func binValue(b int) float64 {
	if b < 2*chunkBins {
		return float64(b)
	}
	e := b/chunkBins - 1
	lower := uint64(chunkBins+b%chunkBins) << e
	return float64(lower) + float64(uint64(1)<<e)/2
}

func (h *histogram) add(b int) {
	c := h.chunks[b>>subBits]
	if c == nil {
		c = new([chunkBins]uint64)
		h.chunks[b>>subBits] = c
	}
	c[b&(chunkBins-1)]++
}

// reset zeroes every bin and keeps the chunks.
func (h *histogram) reset() {
	for _, c := range h.chunks {
		if c != nil {
			*c = [chunkBins]uint64{}
		}
	}
}

// merge adds the bins of o to h.
func (h *histogram) merge(o *histogram) {
	for i, oc := range o.chunks {
		if oc == nil {
			continue
		}
		c := h.chunks[i]
		if c == nil {
			c = new([chunkBins]uint64)
			h.chunks[i] = c
		}
		for j, n := range oc {
			c[j] += n
		}
	}
}

// quantile returns the value at rank ceil(q*total) (the nearest-rank
// definition), clamped to [lo, hi], the smallest and largest values seen;
// for q = 0 and rank 1, lo itself, and for the last rank, hi itself. It
// returns 0 for an empty histogram. A q*total within floating-point
// rounding of a whole number is that number: 0.07 of 100 values is rank
// 7, though 0.07*100 is 7.000000000000001.
func (h *histogram) quantile(q float64, total uint64, lo, hi time.Duration) time.Duration {
	if total == 0 || math.IsNaN(q) {
		return 0
	}
	q = min(max(q, 0), 1)
	x := q * float64(total)
	r := math.Ceil(x)
	// q is the nearest float64 to a decimal such as 0.07, and q*total is
	// rounded again: together a few units in the last place, which
	// 2^-50 of the rank covers.
	if w := math.Round(x); math.Abs(x-w) <= w*0x1p-50 {
		r = w
	}
	// The first rank is the smallest value seen and the last the largest,
	// both known exactly: a bin's middle would be up to 0.4% off.
	rank := uint64(r)
	switch {
	case rank <= 1: // q is 0 too
		return lo
	case rank >= total:
		return hi
	}
	var seen uint64
	for i, c := range h.chunks {
		if c == nil {
			continue
		}
		for j, n := range c {
			seen += n
			if seen >= rank {
				v := time.Duration(math.Round(binValue(i*chunkBins + j)))
				return min(max(v, lo), hi)
			}
		}
	}
	return hi
}
