// Package natsjs is the kanban Queue on NATS JetStream: durable, shared by
// many processes, surviving server restarts.
//
// A Queue is a work-queue stream (a message is removed once acknowledged)
// and a durable pull consumer every process shares. The consumer's
// MaxAckPending is the WIP, so the server holds the cap across all
// processes; each process also never asks for more messages than its free
// WIP (a fetch past it leaves messages waiting in a buffer while their
// AckWait runs out, and they come back as duplicates). A file-stored
// work stream also holds a keeper, a small message of the queue's own on
// the subject Stream+".keeper" that the durable never delivers: a work
// queue whose consumer keeps up empties its stream with nearly every
// acknowledgement, and the server replaces an emptied last block file
// with a new one each time (see Options.Storage).
//
//	nc, _ := nats.Connect(url)
//	q, err := natsjs.New[Order](ctx, nc, natsjs.Options{Stream: "ORDERS"})
//	err = q.Publish(ctx, kanban.Message[Order]{ID: id, Key: customer, Payload: o})
//	err = q.Consume(ctx, handle, kanban.ConsumeOptions{WIP: 16, PerKey: true})
//
// Publish waits for the stream's acknowledgement; PublishAsync sends and
// returns, with at most MaxPublishPending messages unsettled. The message
// ID travels as Nats-Msg-Id, so the stream stores an ID once within
// DedupWindow (a server restarted forgets the IDs of messages handled
// before: see Options.DedupWindow), and that makes repeats safe: an
// asynchronous send that fails — no acknowledgement within
// PublishTimeout, a lost connection, a server restarting, a full stream —
// is sent again, up to AsyncAttempts times (10 by default), after waits
// from AsyncRetryWait doubling to 2s.
// Only a final failure goes to OnPublishError and is returned by Flush.
// Flush and Shutdown wait for messages waiting to be sent again too, so
//
//	for _, c := range confirmations {
//		err = q.PublishAsync(ctx, c) // returns at once while fewer than MaxPublishPending are unsettled
//	}
//	err = q.Flush(ctx) // every message stored, or its final failure returned
//
// loses nothing to a NATS restart shorter than the attempts. Shutdown
// stops re-publishing once Flush is done or its ctx ends; it is the one
// call a service makes on the queue when it stops, after cancelling its
// consumers' ctx and before closing the connection.
//
// Consume waits out JetStream being out of reach — a server restarting, a
// cluster electing a leader or not yet hearing from enough servers to
// place replicas — both when it creates the durable and when it
// pulls: it logs each failure and tries again, up to a second apart, until
// its ctx ends. New does not: it returns the error, which Unreachable tells
// apart from a refusal, so that the caller decides how long to wait. A
// connection that is closed, not reconnecting, is not waited for: Consume
// drains and returns an error matching nats.ErrConnectionClosed.
//
// A failed handler attempt is negatively acknowledged with a delay (the
// back-off). JetStream counts a message waiting out its back-off among the
// durable's unacknowledged ones until it delivers it again: it holds a
// slot of MaxAckPending, the WIP, meanwhile, so while WIP messages wait
// for their retries the durable delivers nothing else, to any process
// sharing it (with a WIP of 1, every failure holds the consumer for its
// back-off), where a Memory queue's consumer handles other messages. After
// MaxAttempts the message is published to the
// dead-letter stream, with the reason and attempts in headers, and
// terminated. The reason kept is the error text's first 1024 bytes, its
// line breaks turned into spaces (a Memory queue keeps it whole), and
// Publish refuses with ErrTooLarge a message too large for its dead letter
// to fit within the server's max_payload, so that every message taken can
// be dead-lettered. A message's lease is extended (InProgress) at most a third
// of AckWait after the pull and at most a third of it apart after that (so
// that one extension lost leaves time for the next; of the shortest entry
// of the durable's BackOff instead, for a durable used as it is that has
// one: see Consume), while its
// handler runs, and while it waits behind an earlier message of its key
// (PerKey). A message handed back unstarted when a
// consumer stops is negatively acknowledged at once — one that the open
// pull request delivers after the stop, once the request has ended
// (within FetchWait), its lease extended meanwhile, so that it does not
// come back into the same request — and JetStream counts that delivery
// among its attempts (see kanban.ConsumeOptions.MaxAttempts). A stopping
// consumer opens no request. One whose open request delivers, after the
// stop, a message delivered before (handed back by another consumer,
// stopping with it, say) hands it back to be delivered again only once
// FetchWait has passed, when every request open now has ended: the
// server gives a message handed back to the oldest request open, and
// consumers stopping together (a service's replicas scaled down at once)
// passed it on so from one to the next, until its attempts were used up
// and it was dead-lettered unhandled. So a stop costs a message two of
// its attempts at most. Consume
// returns once the server has answered each such release, or once the
// release has waited PublishTimeout from its send; every
// acknowledgement, retry and dead letter's termination made once
// Consume's ctx has ended waits so for its answer; and those made
// before, sent without waiting, are confirmed as Consume returns: it
// acknowledges once more a message it acknowledged, which changes
// nothing, and waits for the answer, which the server sends only once it
// has taken every settlement the connection sent before (not to a
// durable deleted and made again since: one of a stream made again too
// numbers other messages as the old one did). A consumer that
// has acknowledged no message yet (every handler failing) sends its
// retries with a reply subject instead, without waiting for the answers
// while it runs, and Consume waits for the answer to the last one. So a
// server stopped right after the consumer (a service shutting down with
// its embedded server) delivers the messages handed back at once when it
// starts again, and those retried after their back-off, not once their
// leases have run out, and not again those handled before the stop or
// during the drain.
//
// What an answer confirms depends on the durable's replicas. With one, the
// consumer has taken the settlement into its state, which the server
// writes to its files within about a tenth of a second and as it stops (a
// server that crashes instead may lose the last ones). With more
// (Options.Replicas), an acknowledgement or termination is answered once
// the consumer's followers have it too, but a negative acknowledgement — a
// release, a retry — once its leader has taken it, before its followers
// have: a change of leader at that moment can lose it, and JetStream has
// no way to wait for more. A release or retry lost so, or not answered,
// costs time, never the message: the message stays in the work stream,
// unacknowledged, and is delivered again once its lease has run out
// (AckWait after its pull or its lease's last extension) instead of at
// once or after its back-off. An acknowledgement lost has its message
// handled again.
//
// The releases are sent one after the other without waiting for each
// answer in turn, up to 256 unanswered, so that a drain handing back many
// over a slow link takes a round trip or so, not one for each. The first
// release that fails (no answer within PublishTimeout, a connection
// closed) is logged to kanban.ConsumeOptions.Logger, as a settlement that
// fails is, and the settlements after it are sent without waiting; a
// confirmation of the settlements sent before the stop that fails is
// logged there too. The messages handed back are negatively acknowledged
// in the order they were pulled, and with PerKey those waiting behind a
// running message of their key once it is settled, not at once: JetStream
// delivers such messages again ahead of those it has not delivered yet,
// in the order it is told of them, so the next consumer, even one
// started at once, gets each key's in their order (see
// kanban.ReleaseOrder). Each release is two negative acknowledgements: one
// with a delay, which the server keeps in the durable's stored state, so
// that a server restarted delivers the message at once, then a plain one,
// which has it delivered again at once now: the first alone holds it
// back until the server's timer next fires, some milliseconds later, and
// a consumer pulling meanwhile would be given the next messages of its
// key first. (Should that timer fire between the two, a server stalled
// for as long, and the message be delivered meanwhile, the plain one has
// it delivered once more: a duplicate, as at-least-once delivery allows.)
// A connection hands the server what it sends in the order sent, so
// releases sent without waiting keep that order.
//
// The dead-letter stream keeps the newest DeadLetterLimit dead letters,
// and, when DeadLetterMaxBytes is set, no more bytes than that: the
// oldest go first. It is the queue's kanban.DeadLetterStore: listed,
// redriven (each message published to the work stream under a dedup ID of
// its own, and its dead letter deleted once the stream has stored it; see
// RedriveDeadLetters for what that guarantees) and deleted. Backlog reads
// the depth, the oldest message's age and the dead letters from the
// server.
//
// Trace context travels in the message headers through Options.Propagator
// (kanban/kanbanotel adapts OpenTelemetry's); the headers' names are kept
// exactly as written. The ID and Key travel in headers too, so a message
// arrives with the very ID, Key and headers it was published with: Publish
// refuses, with ErrInvalidMessage, one that NATS headers would change, and
// a header named Kanban-... or Nats-..., which the queue and the server
// read, or Status on a message without payload bytes, which the client
// reads (see Queue.Publish). Options.Tracer records spans around publishes
// and handler attempts.
//
// A connection whose user may not publish to a subject a call needs (NATS
// permissions) is told so by the server only as an error on the
// connection, and a request waits for a reply that never comes. New,
// Consume, Backlog and the dead-letter calls look for that refusal (and
// for the refusal to subscribe to the inbox a reply comes to) and fail
// at once, with an error that wraps nats.ErrPermissionViolation and
// names the subject; New and Consume use streams and a durable an
// administrator made when they may not make them (see New and Consume).
// So do Publish, TryPublish and PublishAsync, until the server has
// answered one publish of the Queue to the work subject, and a
// consumer's dead-lettering, until it has answered one to the
// dead-letter stream's; after that they do not look, to cost nothing.
//
// The Queue works against any nats-server with JetStream enabled (2.9 or
// later); kanban/natsembed starts one in-process.
package natsjs
