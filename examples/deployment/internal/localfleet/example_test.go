package localfleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/localfleet"
)

// A canary in real processes: v1 takes all traffic, then v2 a quarter of
// it, through the proxy a person would curl.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "demoapp")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	binary, err := localfleet.Build(ctx, dir)
	if err != nil {
		panic(err)
	}
	f, err := localfleet.New(localfleet.Options{
		Binary: binary,
		Profile: func(service, version, region string) (localfleet.AppProfile, error) {
			if version == "v2" {
				return localfleet.AppProfile{Latency: 5 * time.Millisecond}, nil
			}
			return localfleet.AppProfile{}, nil
		},
	})
	if err != nil {
		panic(err)
	}
	defer f.Shutdown(ctx)

	if err := f.Deploy(ctx, "web", "eu", "v1", 1); err != nil {
		panic(err)
	}
	if err := f.Route(ctx, "web", "eu", "", "v1", 100); err != nil {
		panic(err)
	}
	proxy, _ := f.ProxyURL("web", "eu")
	fmt.Println(versions(proxy, 4))

	if err := f.Deploy(ctx, "web", "eu", "v2", 1); err != nil {
		panic(err)
	}
	if err := f.Route(ctx, "web", "eu", "v1", "v2", 25); err != nil {
		panic(err)
	}
	fmt.Println(versions(proxy, 8))

	s, err := f.Sample(ctx, "web", "eu", "v2", time.Minute)
	if err != nil {
		panic(err)
	}
	fmt.Printf("v2: %v requests, error rate %v, p99 at least 5ms: %v\n", s.Requests, s.ErrorRate, s.P99 >= 5*time.Millisecond)
	// Output:
	// [v1 v1 v1 v1]
	// [v1 v1 v2 v1 v1 v1 v2 v1]
	// v2: 2 requests, error rate 0, p99 at least 5ms: true
}

// versions calls url n times and returns which version answered each.
func versions(url string, n int) []string {
	var out []string
	for range n {
		resp, err := http.Get(url)
		if err != nil {
			panic(err)
		}
		var body struct{ Version string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			panic(err)
		}
		resp.Body.Close()
		out = append(out, body.Version)
	}
	http.DefaultClient.CloseIdleConnections()
	return out
}
