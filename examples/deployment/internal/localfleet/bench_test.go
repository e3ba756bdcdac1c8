package localfleet

import (
	"net/http"
	"testing"
)

// BenchmarkProxy measures requests through a region's proxy to one
// instance answering at once, from parallel clients: the proxy's own cost
// plus a loopback hop to the demoapp.
func BenchmarkProxy(b *testing.B) {
	f, err := New(Options{Binary: binary})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Shutdown(b.Context()) })
	if err := f.Deploy(b.Context(), "web", "eu", "v1", 1); err != nil {
		b.Fatal(err)
	}
	if err := f.Deploy(b.Context(), "web", "eu", "v2", 1); err != nil {
		b.Fatal(err)
	}
	if err := f.Route(b.Context(), "web", "eu", "v1", "v2", 25); err != nil {
		b.Fatal(err)
	}
	url, _ := f.ProxyURL("web", "eu")
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url + "/")
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkPick measures choosing a version and instance for a request.
func BenchmarkPick(b *testing.B) {
	v1 := &release{name: "v1", procs: []*process{{done: make(chan struct{})}}}
	v2 := &release{name: "v2", procs: []*process{{done: make(chan struct{})}, {done: make(chan struct{})}}}
	r := newRoute("v1", "v2", 25)
	r.versions = [2]*release{v1, v2}
	g := &region{versions: map[string]*release{"v1": v1, "v2": v2}, route: r}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			v, _ := g.pick("")
			v.inflight.done()
		}
	})
}
