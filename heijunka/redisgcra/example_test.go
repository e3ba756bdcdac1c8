package redisgcra_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/redisgcra"
)

// Every replica of a payment service builds the same limiter on the same
// Redis: five payments per minute per customer, in total.
//
// The choice of FailOpen shows when Redis cannot answer. Here nothing
// listens on the address (port 1 on the loopback), as in an outage: the
// payment passes, the Decision says the limit was not applied, and
// OnStoreError hears why.
func Example() {
	client := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:1",
		ContextTimeoutEnabled: true, // end commands at ctx's deadline
		MaxRetries:            -1,   // answer by the fallback, do not retry
		DialerRetries:         1,    // one dial per connection, not five
		DialTimeout:           250 * time.Millisecond,
	})
	defer client.Close()
	store, err := redisgcra.New(redisgcra.Options{Client: client, Prefix: "payments:", OnError: redisgcra.FailOpen})
	if err != nil {
		panic(err)
	}
	velocity, err := heijunka.NewKeyed(heijunka.PerMinute(5), heijunka.KeyedOptions{
		Name:  "velocity",
		Store: store,
		OnStoreError: func(key string, err error) {
			fmt.Println("store error for", key) // in a service: log err, count it
		},
	})
	if err != nil {
		panic(err)
	}
	// Each decision waits for Redis no longer than the request may.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	d, err := velocity.Allow(ctx, "cus_1")
	fmt.Println(d.Allowed, d.FailedOpen, err)
	// Output:
	// store error for cus_1
	// true true <nil>
}
