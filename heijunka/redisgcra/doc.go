// Package redisgcra keeps heijunka's per-key limits in Redis, so that many
// replicas of a service share them: five payments per minute per customer
// means five in total, not five on each replica.
//
// A Store implements heijunka.Store with one atomic Lua script per
// decision (the same generic cell rate algorithm as the in-memory store,
// in microseconds), keys that expire when they become fresh, and an
// explicit choice of what happens when Redis fails:
//
//	store, err := redisgcra.New(redisgcra.Options{
//		Client:  redis.NewClient(&redis.Options{Addr: "localhost:6379"}),
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
package redisgcra
