// Package kanban pulls work with bounded work in progress: a Queue that
// producers Publish to and consumers pull from, never working on more
// than their WIP at once.
//
// # Publishing
//
// A Message has an ID (the deduplication key: publishing an ID twice within
// the queue's window stores it once), a Key (what it is about), a typed
// Payload and Headers; NewMessage fills in a random ID for work without one
// of its own. Publish waits while the queue is full (backpressure);
// TryPublish returns ErrFull instead. A queue's Propagator writes the
// context of Publish's ctx (its trace) into the headers, and the consumer
// extracts it into the handler's ctx, so the handler's spans join the
// publisher's trace; kanban/kanbanotel adapts OpenTelemetry's propagators,
// and without a Propagator nothing is carried.
//
// # Consuming
//
// Consume runs a Handler on each message until its ctx ends, as
// ConsumeOptions say:
//
//   - WIP caps the messages pulled and not yet settled, hence the handlers
//     running at once. A consumer never pulls more than its free WIP;
//     but a consumer of a Memory queue without PerKey takes a backlog a
//     few messages at a time, as a prefetch: it holds up to four per
//     handler, and still runs no more than WIP handlers (see
//     Memory.Consume).
//   - PerKey handles the messages of one Key one at a time, in order,
//     within the consumer (not across consumers sharing the queue); a
//     failed one is retried in place so the order survives. The messages
//     of its key pulled behind it hold WIP slots while they wait, so a key
//     that keeps failing can hold back the others (see
//     ConsumeOptions.PerKey).
//   - A handler error retries the message after Backoff (Exponential with
//     jitter by default) until MaxAttempts; then it goes to the dead
//     letters with the error as reason. Permanent(err) dead-letters at
//     once, and so does a payload the Codec cannot decode, panics on, or
//     ends the goroutine on (runtime.Goexit). A handler that panics, or
//     ends its goroutine with runtime.Goexit, fails its attempt with a
//     PanicError, logged with the stack.
//   - When ctx ends the consumer drains: it stops pulling, hands back what
//     it pulled and did not start, lets running handlers finish within
//     DrainTimeout, then cancels them and hands their messages back.
//     Nothing pulled is lost, and Consume returns once every goroutine it
//     started has ended: its ctx is how a consumer is shut down.
//
// Delivery is at least once; handlers should be idempotent on the ID.
//
// # Backends
//
// Memory is an in-process queue. Package kanban/natsjs keeps the queue in a
// NATS JetStream stream shared by many processes; kanban/natsembed starts a
// NATS server in-process for tests and zero-setup services. Both pass the
// conformance suite in kanban/queuetest. A new backend implements Source and
// Lease and runs the shared consumer runtime, Serve.
//
// # Observing
//
// Every queue has a Stats method: published, duplicates, handled, retried,
// redelivered, dead-lettered, redriven and in-flight counts (QueueStats),
// read from atomics, for metrics collectors to poll. Its Backlog
// (BacklogReader) is what it holds now: depth, the age of its oldest
// message, and its dead letters. ConsumeOptions.Observer is told the
// duration of every handler attempt, and a queue's Tracer records a span
// around each publish and each attempt (OpenTelemetry's in
// kanban/kanbanotel); both are nil, and cost nothing, unless set.
// kaizen/kaizenprom exports all of it to Prometheus.
//
// # Dead letters
//
// A queue's dead letters are a DeadLetterStore: listed a page at a time
// (oldest or newest first, filtered by ID, key, reason or age), redriven —
// published back to the queue, their deliveries counted afresh, each
// removed only once its message is stored — or deleted. Redrive and delete
// take a DeadLetterFilter that must name something, or All.
// kanban/kanbanhttp serves these as JSON and shows them on the andon board.
//
// # Retrying outside a queue
//
// Permanent, IsPermanent, Backoff, BackoffFunc and Exponential are
// taikit's one vocabulary for retries: any retry loop (andon's notifiers,
// a client of a remote service) uses them, as ExampleBackoff shows.
package kanban
