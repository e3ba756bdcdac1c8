package kaizen

import (
	"math"
	"math/bits"
	"slices"
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
// reused allocates nothing once warm. Histograms merge by adding bins,
// into latencies, which keep only the bins in use.
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

// latencies is the merged latency histogram of a period, kept as the
// bins its values fell into, in order, with the running count of values up
// to each: 10 bytes per bin in use, at most one per value, where a dense
// merged histogram would take 1 KiB for each power of two its slots have
// ever held.
type latencies struct {
	bins []uint16 // bins in use, ascending; numChunks×chunkBins fits
	cum  []uint64 // cum[i] counts the values in bins[0] to bins[i]
}

// mergeLatencies merges hists into the bins in use, or returns nil when
// they hold no values. It allocates only the two slices of the result,
// sized exactly.
func mergeLatencies(hists []*histogram) *latencies {
	var sum [chunkBins]uint64
	n := 0
	for i := range numChunks {
		if sumChunk(hists, i, &sum) {
			for _, c := range sum {
				if c != 0 {
					n++
				}
			}
		}
	}
	if n == 0 {
		return nil
	}
	l := &latencies{bins: make([]uint16, 0, n), cum: make([]uint64, 0, n)}
	var seen uint64
	for i := range numChunks {
		if !sumChunk(hists, i, &sum) {
			continue
		}
		for j, c := range sum {
			if c != 0 {
				seen += c
				l.bins = append(l.bins, uint16(i*chunkBins+j))
				l.cum = append(l.cum, seen)
			}
		}
	}
	return l
}

// sumChunk sets sum to the sum of chunk i of hists, and reports whether
// any of them has that chunk.
func sumChunk(hists []*histogram, i int, sum *[chunkBins]uint64) bool {
	*sum = [chunkBins]uint64{}
	found := false
	for _, h := range hists {
		if c := h.chunks[i]; c != nil {
			found = true
			for j, n := range c {
				sum[j] += n
			}
		}
	}
	return found
}

// quantile returns the value at rank ceil(q*total) (the nearest-rank
// definition), clamped to [lo, hi], the smallest and largest values seen;
// for q = 0 and rank 1, lo itself, and for the last rank, hi itself. It
// returns 0 for an empty histogram (nil l or zero total). A q*total
// within floating-point rounding of a whole number is that number: 0.07
// of 100 values is rank 7, though 0.07*100 is 7.000000000000001.
func (l *latencies) quantile(q float64, total uint64, lo, hi time.Duration) time.Duration {
	if l == nil || total == 0 || math.IsNaN(q) {
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
	i, _ := slices.BinarySearch(l.cum, rank) // the first bin whose running count reaches rank
	if i == len(l.cum) {
		return hi
	}
	v := time.Duration(math.Round(binValue(int(l.bins[i]))))
	return min(max(v, lo), hi)
}
