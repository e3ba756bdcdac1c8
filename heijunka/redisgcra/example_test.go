package redisgcra_test

import (
	"context"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/redisgcra"
)

// Every replica of a payment service builds the same limiter on the same
// Redis: five payments per minute per customer, in total.
func Example() {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		fmt.Println("set REDIS_ADDR to run against Redis")
		return
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	store, err := redisgcra.New(redisgcra.Options{Client: client, Prefix: "payments:", OnError: redisgcra.FailOpen})
	if err != nil {
		panic(err)
	}
	velocity, err := heijunka.NewKeyed(heijunka.PerMinute(5), heijunka.KeyedOptions{Name: "velocity", Store: store})
	if err != nil {
		panic(err)
	}
	d, err := velocity.Allow(context.Background(), "cus_1")
	fmt.Println(d.Allowed, err)
}
