package kanban

import (
	"context"
	"time"
)

// Backlog is what a queue holds now, as a metrics collector or a board
// reads it (QueueStats counts what one process did; Backlog is the queue's
// state, which every process sharing it sees alike).
type Backlog struct {
	// Depth is the messages held and not yet settled: waiting, being
	// handled, and waiting for a retry.
	Depth int64
	// Oldest is the age of the oldest message waiting, as the backend can
	// know it cheaply (see its Backlog method); 0 when nothing waits.
	// OldestKnown is false when the backend does not track it, and Oldest
	// then 0.
	Oldest      time.Duration
	OldestKnown bool
	// DeadLetters is the number of dead letters kept now.
	DeadLetters int64
}

// BacklogReader is a queue that reports its Backlog. Memory and
// natsjs.Queue implement it; for natsjs it costs requests to the server,
// so call it from a collector's scrape or a poll, not per message.
type BacklogReader interface {
	Backlog(ctx context.Context) (Backlog, error)
}
