// Package taihttp puts taikit in front of net/http handlers and behind
// net/http clients, so the glue every service writes — 429 with
// Retry-After, RateLimit fields, 503 while a line is stopped, an outcome
// mapped to a status — is one call.
//
// # Server middleware
//
// Each constructor validates its options, returns an error naming a bad
// field, and gives a Middleware, a func(http.Handler) http.Handler:
//
//   - RateLimit asks a per-key limiter (heijunka.Keyed, or any
//     KeyLimiter) about each request's key (KeyFunc: RemoteNetwork, the
//     default, RemoteIP, Header)
//     and answers a request over its limit 429 Too Many Requests, with
//     Retry-After in whole seconds, rounded up and never 0, and the fields
//     of draft-ietf-httpapi-ratelimit-headers on every response, such as
//     RateLimit-Policy: "default";q=100;w=60 and
//     RateLimit: "default";r=42;t=1: structured-field Lists whose items
//     name a policy with a String, as the draft has written them since
//     its version 08 (version 07 sent RateLimit as a Dictionary, limit,
//     remaining and reset, and policies without names; earlier ones
//     had RateLimit-Limit, -Remaining and -Reset).
//   - Gate asks any tai.Gate: a stopped jidoka.Line gives 503 with the
//     line's Retry-After.
//   - Pipeline runs each request through a tai pipeline whose action is
//     the handler: gates and policy admit it, guards (a breaker) wrap the
//     handler and count its 5xx responses as failures, observers see
//     every request. Rejected is 429 or 503, Denied 403, Failed 5xx.
//
// For handlers that call limiters or pipelines themselves,
// WriteDecisionHeaders sets a heijunka.Decision's fields in one line,
// ProblemOf and StatusOf map any error of the taikit packages to a status
// and a retry hint, and WriteError answers with them.
//
// Error responses never show an error's text: a Problem has a fixed
// message per code, written as an RFC 9457 problem document (JSONErrors,
// the default) or a line of text (PlainErrors), or by an ErrorWriter of
// yours. The options' OnError hands the error itself to your logger.
//
// # Client transport
//
// NewTransport makes an http.RoundTripper that sends requests through
// jidoka's guards and a heijunka limiter, in this order, outermost first:
//
//	Retry → Hedge → Limiter → AttemptTimeout → Breaker → Base
//
// Only requests that can safely be sent twice are retried or hedged: an
// idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or any
// method with RetryNonIdempotent, or an Idempotency-Key header with a
// key in it, one and not blank (retried only: a copy sent while the first
// is in progress would meet the key, so a request of any method with a
// key in that header, one or given twice, is not hedged);
// and a body that can be sent again (GetBody). A response with a status of
// RetryStatus (408, 429, 500, 502, 503, 504) fails its attempt, and its
// Retry-After (seconds or an HTTP date, counted from the response's
// Date; see ParseRetryAfter) is the retry's hint; the breaker counts 5xx
// (FailureStatus), transport errors and timeouts. An error no retry can
// mend — a certificate the client cannot verify, a scheme with no
// protocol — ends the retries at its first attempt. The responses of
// failed and losing attempts are drained and closed; the one returned
// keeps a readable body.
package taihttp
