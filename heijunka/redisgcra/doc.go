// Package redisgcra keeps heijunka's per-key limits in Redis, so that many
// replicas of a service share them: five payments per minute per customer
// means five in total, not five on each replica.
//
// A Store implements heijunka.Store with one atomic Lua script per
// decision (the same generic cell rate algorithm as the in-memory store,
// in microseconds), keys that expire when they become fresh, and an
// explicit choice of what happens when Redis fails:
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  "localhost:6379",
//		ContextTimeoutEnabled: true,                   // end commands at ctx's deadline
//		MaxRetries:            -1,                     // answer by the fallback, do not retry
//		DialerRetries:         1,                      // one dial per connection, not five
//		DialTimeout:           250 * time.Millisecond, // an unreachable Redis fails fast
//	})
//	store, err := redisgcra.New(redisgcra.Options{
//		Client:  client,
//		Prefix:  "payments:",
//		OnError: redisgcra.FailOpen, // or FailClosed
//	})
//	limiter, err := heijunka.NewKeyed(heijunka.PerMinute(5), heijunka.KeyedOptions{Store: store})
//
// With FailOpen a Redis outage lets traffic through unlimited: the Keyed
// limiter's Decision says FailedOpen, and heijunka.KeyedOptions.OnStoreError
// sees the error. With FailClosed it turns traffic away: Allow and Admit
// return the error.
//
// The Store passes the heijunka/storetest conformance suite. Set
// Options.ServerClock to decide at Redis's clock rather than each
// replica's.
//
// # Deadlines and client options
//
// Store.Take and Store.Reset return by ctx's deadline, whatever the
// client's options; Take then gives the OnError fallback with an error
// that wraps ctx's (context.DeadlineExceeded), as for any Redis failure.
// A decision whose ctx ended may still be recorded in Redis, as Redis may
// have run the script before the answer was abandoned.
//
// go-redis bounds a command's socket reads and writes by ctx's deadline
// only with ContextTimeoutEnabled; without it a slow Redis holds a call
// for the client's ReadTimeout (five seconds by default). A Store whose
// client is a *redis.Client, *redis.ClusterClient or *redis.Ring with
// ContextTimeoutEnabled (and read and write deadlines not disabled by a
// timeout of -2) leaves the deadline to the client, at no cost; such a
// client notices a ctx cancelled without a deadline before it sends the
// command, not while it waits for the answer. For any other client the
// Store enforces the deadline, and cancellation, itself: when ctx can be
// done, each call runs the command in a goroutine of its own and stops
// waiting when ctx is done, leaving the command to finish in the
// background within the client's ReadTimeout and WriteTimeout (never, if
// those are disabled). That costs a goroutine, a channel and their
// wake-ups on every call: against a Redis on the loopback, about half as
// much time and CPU again as the call itself. So set
// ContextTimeoutEnabled.
//
// Without a deadline on ctx, a Redis that is down costs each call what
// the client spends finding out: with go-redis's defaults (MaxRetries 3,
// DialerRetries 5, a 100 ms pause between dials) about 1.7 s per call
// when the connection is refused, and up to DialTimeout (default 5 s) per
// dial when packets are dropped. A limiter wants its fallback at once:
// MaxRetries -1 and DialerRetries 1, as above, make a refused connection
// fail in about a millisecond, and a short DialTimeout bounds an
// unreachable one. No retries also means a script is never run twice
// after a timeout; the cost is that a request which meets a connection
// Redis has closed gets the fallback. Whatever the options, give each
// call a ctx with a deadline.
//
// # Memory
//
// Give the limiter's Redis room, or a maxmemory-policy of noeviction.
// Under an eviction policy a Redis at its maxmemory drops keys, and the
// volatile-* policies choose among keys with an expiry, which every key
// of a Store has: a dropped key is a key gone full, so its limit admits
// a whole burst again, with no error for OnError to decide. Under
// noeviction Redis refuses the script's write instead: a decision that
// would record an event fails and gets the OnError fallback with Redis's
// OOM error, while a denial, which writes nothing, is still decided. A
// read-only replica (a node a failover demoted, with the client still on
// it) does the same, with Redis's READONLY error, and decides its denials
// on its copy of the schedules.
//
// # Time
//
// The Store keeps times as microseconds since 1970 and the nanoseconds of
// the caller's time (with ServerClock, Redis's TIME, in whole
// microseconds): two events are never let closer than the Limit lets them.
// A Limit's interval (Limit.Interval, in nanoseconds as for every heijunka
// limiter) is rounded up to a whole microsecond, so the Store never admits
// more than the Limit allows and may admit less:
// Limit{Rate: 7e5, Burst: 1} has a 2 µs interval here, 500 000 events a
// second. A Limit faster than one event per microsecond (Rate above 1e6)
// is refused with an error: by heijunka.NewKeyed and Keyed.SetLimit, which
// ask the Store (it is a heijunka.LimitChecker), and by Take.
//
// Without Options.ServerClock the time passed to Take must lie from
// 1970-01-01 up to, not including, 2200-01-01 (UTC); another time, such as
// the zero time.Time, is refused with an error and a denied Decision, not
// the OnError fallback, since Redis was not asked. With ServerClock the
// time passed is ignored.
//
// # Keys
//
// The Redis key of a limit's key is Options.Prefix followed by the key,
// as it is when the key is at most 128 bytes long and holds no brace. A
// longer key, which may be request data a client chose, is kept as
// Prefix, "sha256:" and the key's SHA-256 in unpadded base64url: 50 bytes
// after the prefix however long the key, so a client sending
// megabyte-long keys does not cost Redis megabytes. A key that holds a
// brace ("{" or "}") is kept so too: in a Redis Cluster the part of a
// name between braces, its hash tag, picks the name's slot, and a client
// that chose keys with one tag would put all of their limits on one node.
// A key that begins with "sha256:" is kept as its digest as well, so that
// no key a client chooses can name the digest of another.
// Each decision touches one key, so no hash tag is needed; a Prefix with
// one of its own ("{limits}:") puts every key in the slot of that tag.
//
// # Stored values
//
// A key holds the schedule as a decimal number of microseconds: an
// integer, followed by exactly three decimals (the nanoseconds) when the
// time it was taken at had any. A value the Store cannot have written,
// because it is not a number (NaN and infinities included) or lies more
// than twenty years after 2200-01-01 (a schedule runs at most a Limit's
// refill time ahead of a time before 2200: ten years, or just under
// twenty once an interval such as 1001 ns is rounded up to 2 µs), counts
// as absent: the key is full, and the next event recorded overwrites the
// value. A schedule however far ahead of now within that bound is kept,
// so a replica whose clock is decades behind the others', or a time
// going back, waits as long as it went back, as on a MemoryStore, and
// leaves the others' limits as they are. A value in the past, negative
// included, means full as usual; a fraction of other than three decimals
// is cut to whole microseconds.
//
// A key of another type (a list, a hash, a set) is neither read nor
// overwritten, as it may be another program's data: every Take on it gets
// Redis's WRONGTYPE error and the OnError fallback, until the key is
// deleted (Store.Reset deletes it). Give the Store a Prefix of its own.
package redisgcra
