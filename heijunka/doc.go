// Package heijunka levels the load, so that no burst and no single
// customer floods the line.
//
// # Limits
//
// A Limit is a rate and a burst: PerSecond(100), PerMinute(5),
// Every(200*time.Millisecond), Unlimited(), or Limit{Rate: 10, Burst: 30}.
// Over any window of length w a limiter admits at most Burst + Rate·w
// events, the time between events rounded to a whole nanosecond (see
// Limit). Invalid limits (NaN, negative, absurd) are errors, never panics.
//
// A Limiter is one bucket, run as the generic cell rate algorithm (GCRA)
// on a single atomic word: no mutex, one clock read per call, no
// allocation (but for the Reservation that Reserve returns). Its API
// follows golang.org/x/time/rate: Allow, AllowN, Reserve/ReserveN (a
// *Reservation with Delay and Cancel), Wait, SetLimit, plus
// Decide/DecideN returning a Decision (allowed, remaining, retry-after,
// reset-after). The methods without a time read time.Now; the ...N forms
// take the time, so the logic is a pure function of it. Tests that need the
// clock itself to move run in a testing/synctest bubble.
//
// # Limits per key
//
// Keyed applies a Limit to every key separately ("5 payments per minute per
// customer") and is a tai.Gate: a rejection is a *LimitedError that matches
// ErrLimited and carries RetryAfter for tai.RetryAfter. Its state lives in a
// Store: the MemoryStore (the default: sharded, bounded by MaxKeys, forgets
// keys that are full again, needs no goroutine) or redisgcra.Store, shared
// by many replicas through Redis. Every Store passes the suite in
// heijunka/storetest. A store that fails open (Redis down) is visible in
// the Decision (FailedOpen) and to KeyedOptions.OnStoreError.
//
// # Ramps, warm-up and leveling
//
// A Ramp moves traffic in stages (canary 5% → staging 25% → prod 100%),
// choosing keys by hash so that the choice is the same on every replica and
// a key admitted at one stage stays admitted at the next. A WarmUp drives
// the limit of a Limiter from a fraction of full back to full after a
// recovery; the Limiter is used as ever.
// Leveler interleaves work from many keys by weighted deficit round robin,
// with a bounded backlog per key, so one heavy key cannot starve the rest.
package heijunka
