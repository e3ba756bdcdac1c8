package kanban

// dedupSet remembers message IDs for a window. Each ID is kept with its
// publish time, so the answer is exact: an ID is a duplicate for exactly
// the window after it was stored. Memory is reclaimed by generations
// rather than by sweeping each ID: IDs go into cur; once cur is a window
// old it becomes prev and the old prev, whose IDs are all older than a
// window, is dropped whole, its memory with it. So at most two windows of
// IDs are held, and recording one costs a single map write.
type dedupSet struct {
	window    int64 // nanoseconds, > 0
	cur, prev map[string]int64
	// start is when cur began: 0, when the set was made, until the
	// first rotation.
	start int64
}

func newDedupSet(window int64) *dedupSet {
	return &dedupSet{window: window, cur: make(map[string]int64), prev: make(map[string]int64)}
}

// rotate moves to a new generation when cur is a window old.
func (d *dedupSet) rotate(now int64) {
	age := now - d.start
	if age < d.window {
		return
	}
	// Every ID in prev predates d.start, hence is more than a window old
	// now; so is every ID in cur when cur itself is two windows old. A
	// generation dropped is replaced by a new map, not cleared: a cleared
	// map keeps the room of the most IDs it held, and a burst would hold
	// its memory for good.
	if age >= 2*d.window {
		d.prev = make(map[string]int64)
	} else {
		d.prev = d.cur
	}
	d.cur = make(map[string]int64)
	d.start = now
}

// has reports whether id was recorded less than a window before now,
// without recording it.
func (d *dedupSet) has(id string, now int64) bool {
	if at, ok := d.cur[id]; ok && now-at < d.window {
		return true
	}
	at, ok := d.prev[id]
	return ok && now-at < d.window
}

// add records id at now and reports false when id was already recorded
// less than a window ago (a duplicate, not recorded again).
func (d *dedupSet) add(id string, now int64) bool {
	d.rotate(now)
	if d.has(id, now) {
		return false
	}
	d.cur[id] = now
	return true
}
