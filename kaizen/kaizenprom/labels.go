package kaizenprom

import (
	"strings"
	"sync"
	"sync/atomic"
)

// labelSet holds the series of at most limit label values (the kinds of
// Metrics, or the policies of one kind), each made once, and finds them
// by the name they count, without a lock once made. Names are counted
// against limit by their label value: those that share one (names that
// are not valid UTF-8 and clean to the same value, names longer than
// MaxLabelValueLen cut to the same value, or "" and "unnamed" as
// policies) share its series and take one slot. The names past the
// limit share the series of the overflow label value.
//
// The zero labelSet holds nothing: its table is nil until init.
type labelSet[T any] struct {
	mu       sync.Mutex // serializes the writers of table and overflow
	table    atomic.Pointer[labelTable[T]]
	overflow atomic.Pointer[T] // the series of the names past the limit, once one is seen
	limit    int
}

// labelTable is a copy-on-write snapshot of a labelSet.
type labelTable[T any] struct {
	// byName holds the series of each label value under that value,
	// and under each of at most limit other names that has it as its
	// label value and is no longer than MaxLabelValueLen (so that
	// finding them again neither locks nor cleans them).
	byName  map[string]*T
	labels  int // label values with series of their own, at most limit
	aliases int // names in byName that are not their own label value
}

// init empties s, to hold the series of at most limit label values.
func (s *labelSet[T]) init(limit int) {
	s.limit = limit
	s.table.Store(&labelTable[T]{byName: map[string]*T{}})
}

// get returns the series of name, whose label value is label(name),
// making them with newSeries when that value has none and s has room;
// once s holds limit label values, those of overflowLabel.
func (s *labelSet[T]) get(name string, label func(string) string, overflowLabel string, newSeries func(label string) *T) *T {
	t := s.table.Load()
	if v := t.byName[name]; v != nil {
		return v
	}
	// A name that would not be kept as an alias (see add) is found by
	// its label value, and one whose label value is not in a full table
	// has no series of its own: it is past the limit. Answered without
	// the lock, so that a flood of names does not contend on it.
	l := label(name)
	if l == name || !aliasable(name) || t.aliases >= s.limit {
		if v := t.byName[l]; v != nil {
			return v
		}
		if o := s.overflow.Load(); o != nil && t.labels >= s.limit {
			return o
		}
	}
	return s.add(name, l, overflowLabel, newSeries)
}

// aliasable reports whether a labelSet keeps name, which is not its own
// label value, as an alias: a name longer than MaxLabelValueLen is not,
// since it would hold all its bytes, however many, for as long as the
// labelSet lives. Found by its label value, it costs a cut, and a
// cleaning when its first MaxLabelValueLen bytes are not valid UTF-8.
func aliasable(name string) bool { return len(name) <= MaxLabelValueLen }

// add is get under the lock, for a name not found without it, whose
// label value is l.
func (s *labelSet[T]) add(name, l string, overflowLabel string, newSeries func(label string) *T) *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.table.Load()
	if v := old.byName[name]; v != nil {
		return v
	}
	v := old.byName[l]
	made := false
	switch {
	case v != nil:
	case old.labels < s.limit:
		// Copied: l may be part of a longer name, or of a buffer the
		// name was sliced from, which the series would keep alive.
		l = strings.Clone(l)
		v, made = newSeries(l), true
	default:
		if v = s.overflow.Load(); v == nil {
			// A name whose label value is overflowLabel, seen before the
			// limit, has its series already: they are the overflow's.
			if v = old.byName[overflowLabel]; v == nil {
				v = newSeries(overflowLabel)
			}
			s.overflow.Store(v)
		}
	}
	alias := name != l && aliasable(name) && old.aliases < s.limit
	if !made && !alias {
		return v
	}
	next := &labelTable[T]{byName: make(map[string]*T, len(old.byName)+2), labels: old.labels, aliases: old.aliases}
	for n, x := range old.byName {
		next.byName[n] = x
	}
	if made {
		next.byName[l] = v
		next.labels++
	}
	if alias {
		next.byName[strings.Clone(name)] = v
		next.aliases++
	}
	s.table.Store(next)
	return v
}
