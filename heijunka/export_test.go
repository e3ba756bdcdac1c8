package heijunka

// Slots returns how many slots the tables of s hold, for tests of its
// memory use (a slot is 16 bytes).
func Slots(s *MemoryStore) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.slots)
		sh.mu.Unlock()
	}
	return n
}

// ShardLimits returns the number of keys each shard of s may hold.
func ShardLimits(s *MemoryStore) []int {
	var limits []int
	for i := range s.shards {
		limits = append(limits, s.shards[i].limit)
	}
	return limits
}

// RetainedKeys returns how many keys that left the rotation l still holds
// past the end of its active list.
func RetainedKeys[T any](l *Leveler[T]) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, k := range l.active[len(l.active):cap(l.active)] {
		if k != nil {
			n++
		}
	}
	return n
}
