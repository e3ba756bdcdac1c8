// Package kanbanhttp serves the operations on kanban queues as JSON over
// HTTP — their backlog, and listing, redriving and deleting their dead
// letters — and shows them on an andon board as panels.
//
//	h, err := kanbanhttp.New(kanbanhttp.Options{Prefix: "/ops", Token: os.Getenv("QUEUE_OPS_TOKEN")})
//	err = h.AddQueue("confirmations", q) // a kanban.Memory or a natsjs.Queue
//	mux.Handle("/ops/", h)
//
// Under Prefix a Handler serves:
//
//	GET    {prefix}/queues                                   every queue: its backlog and counts
//	GET    {prefix}/queues/{queue}/deadletters               a page of dead letters (query: limit, order, cursor and a filter)
//	POST   {prefix}/queues/{queue}/deadletters/redrive       redrive those a JSON filter matches
//	POST   {prefix}/queues/{queue}/deadletters/{seq}/redrive redrive one
//	DELETE {prefix}/queues/{queue}/deadletters               delete those a filter in the query matches
//	DELETE {prefix}/queues/{queue}/deadletters/{seq}         delete one
//
// A filter has the fields of kanban.DeadLetterFilter: seq, id, key, reason
// (a substring), older_than (a Go duration, "1h30m", reckoned back from the
// request's arrival) or before (an RFC 3339 time, the same bound given as an
// instant; not both), and all (true: every dead letter; no other field with
// it). A listing takes them all, and lists every dead letter with all=true
// as with no filter. Redrive and delete refuse an empty filter, so that
// acting on every dead letter is always asked for with all=true. A field
// that selects every dead letter counts as not given: older_than "0s" (every
// dead letter is older than 0) or an empty id, key, reason or before. So
// ?older_than=0s alone is an empty filter, refused with 400 "empty_filter",
// and ?older_than=0s&all=true is all=true. A seq of 0, no dead letter's, is
// refused (in a query and in JSON alike): taken as not given, it would
// leave the other fields to select many where one was meant. A page is limit dead letters (1
// to 1000; 100 when not given), order "oldest" (the default) or "newest",
// continuing after cursor — the next_cursor of the page before. The next
// link of a page listed with older_than gives the bound as before, the
// instant the first page's request reckoned, so that the pages followed
// through next list the same dead letters however much later each is asked
// for. One dead letter is read with ?seq=N (a GET of deadletters/N is a 405
// that says so). Unknown query parameters and JSON fields are refused, so a
// misspelt filter is an error rather than a wider one; so are a parameter or
// field given twice, a JSON field named in another case ("ID" for "id"), a
// query that does not parse, a redrive's body that is not one JSON object
// (empty, null, an array) and a body sent with a delete or with the
// redrive of one dead letter.
//
// Errors are JSON too: {"error": {"code": "...", "message": "..."}} with
// 400 for bad input, 401 or 403 for a refused caller, 404 for an unknown
// path, queue or dead letter (dead_letter_not_found; dead_letter_not_matched,
// saying what the letter has, for a filter whose seq names a dead letter
// that its other fields do not match), 405 (with Allow, and the same methods in
// error.details.allow) for a method the path does not take, 413 for a body
// over MaxBodyBytes, 415 for a body that is not JSON, 503 (with
// Retry-After) when a redrive finds the queue full, 504 when the request's
// context ends first and 502 when the backend fails. A redrive or delete
// that stopped partway says how many it did in the same body ("redriven" or
// "deleted"). The backend's error text may name servers or credentials, so
// 5xx answers (and a backlog that cannot be read in GET /queues, and a
// queue the panels could not read) carry a fixed message and
// Options.Logger gets the detail.
//
// The token is presented as "Authorization: Bearer <token>"; the scheme
// is case-insensitive ("bearer" too), as RFC 9110 has it.
//
// Mutations (redrive, delete) are refused with 403 unless Options.Token or
// Options.Authorize is set: nothing can change a queue until the service
// says who may. Reads are open by default, since the board links to them;
// a dead letter's payload may hold personal data, so set AuthorizeReads
// to guard them too. Mutations also pass http.CrossOriginProtection, so a
// browser session (with an Authorize that reads cookies) cannot be made to
// call them from another site.
//
// QueuePanel and DeadLetterPanel are andon.Panels for the board. Their
// rows come from what Refresh (or Watch, which calls it periodically) last
// read, since a panel's Rows must not block on a server.
package kanbanhttp
