package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/localfleet"
)

// traffic sends requests through every local proxy a rollout has used, at
// -local-traffic requests per second each: simulated users, so that a
// rollout on local processes has traffic to judge without anyone running
// a load generator. Each version deployed there that takes no share of
// their traffic (a blue-green deployment's new set in its preview) gets
// as many preview requests of its own (localfleet.PreviewHeader), as a
// blue-green set is tried before it takes any user's request. A
// person's curl goes through the same proxies.
type traffic struct {
	mu    sync.Mutex
	pairs map[[2]string]bool // service, region
}

func (t *traffic) add(service, region string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pairs == nil {
		t.pairs = map[[2]string]bool{}
	}
	t.pairs[[2]string{service, region}] = true
}

func (t *traffic) list() [][2]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([][2]string, 0, len(t.pairs))
	for p := range t.pairs {
		out = append(out, p)
	}
	return out
}

// runTraffic sends the simulated users' requests until ctx ends.
func (s *Service) runTraffic(ctx context.Context) {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Duration(float64(time.Second) / s.cfg.LocalTraffic))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 64) // requests in flight at most
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, p := range s.users.list() {
			url, ok := s.local.ProxyURL(p[0], p[1])
			if !ok {
				continue
			}
			// "" is a user's request, which the route sends on.
			for _, preview := range append([]string{""}, s.local.Previews(p[0], p[1])...) {
				select {
				case sem <- struct{}{}:
				default:
					continue // the proxies are slower than the rate: skip a beat
				}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
					if err != nil {
						return
					}
					if preview != "" {
						req.Header.Set(localfleet.PreviewHeader, preview)
					}
					resp, err := client.Do(req)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}()
			}
		}
	}
}
