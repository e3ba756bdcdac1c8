package taihttp_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/taihttp"
)

// The fields of a limiter's decision say what the limiter will do: after
// an allowed request, one more request than RateLimit's r fits t seconds
// later and not a second sooner; after a denial, the same request passes
// Retry-After seconds later, which t names too, and not a second sooner.
// Every field parses as a structured-field List.
func TestDecisionHeadersProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		limit := heijunka.Limit{
			Rate:  rapid.SampledFrom([]float64{0.5, 1, 3, 6, 10, 1.0 / 60, 1.0 / 7}).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 8).Draw(t, "burst"),
		}
		type step struct {
			gap time.Duration
			n   int
		}
		steps := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) step {
			return step{
				gap: time.Duration(rapid.Int64Range(0, int64(3*time.Second)).Draw(t, "gap")),
				n:   rapid.IntRange(1, 3).Draw(t, "n"),
			}
		}), 1, 12).Draw(t, "steps")
		// replay returns a limiter that has decided steps[:i], and the
		// time of the last.
		replay := func(i int) (*heijunka.Limiter, time.Time) {
			lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			now := t0
			for _, s := range steps[:i] {
				now = now.Add(s.gap)
				lim.DecideN(now, s.n)
			}
			return lim, now
		}
		for i, s := range steps {
			lim, now := replay(i)
			now = now.Add(s.gap)
			d := lim.DecideN(now, s.n)
			h := http.Header{}
			taihttp.SetDecisionHeaders(h, "p", d)
			for _, f := range []string{"RateLimit", "RateLimit-Policy"} {
				if _, err := parseSFList(h.Get(f)); err != nil {
					t.Fatalf("%s: %q: %v", f, h.Get(f), err)
				}
			}
			items, _ := parseSFList(h.Get("RateLimit"))
			if len(items) != 1 {
				t.Fatalf("RateLimit %q: want one item", h.Get("RateLimit"))
			}
			r, _ := items[0].Params["r"].(int64)
			tp, hasT := items[0].Params["t"].(int64)
			if r != int64(d.Remaining) {
				t.Fatalf("r=%d, Remaining %d", r, d.Remaining)
			}
			if d.Allowed {
				if h.Get("Retry-After") != "" {
					t.Fatalf("Retry-After %q on an allowed request", h.Get("Retry-After"))
				}
				if !hasT {
					if d.Remaining < limit.Burst {
						t.Fatalf("no t, yet %d of %d remain", d.Remaining, limit.Burst)
					}
					continue
				}
				more := int(r) + 1
				// Decided on fresh replays, the decision above included.
				at, _ := replay(i + 1)
				if !at.DecideN(now.Add(time.Duration(tp)*time.Second), more).Allowed {
					t.Fatalf("%v: t=%d, yet %d requests do not fit then (decision %+v)", limit, tp, more, d)
				}
				if tp > 1 {
					early, _ := replay(i + 1)
					if early.DecideN(now.Add(time.Duration(tp-1)*time.Second), more).Allowed {
						t.Fatalf("%v: t=%d, yet %d requests fit a second sooner (decision %+v)", limit, tp, more, d)
					}
				}
				continue
			}
			ra, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64)
			if err != nil || ra < 1 {
				t.Fatalf("Retry-After %q", h.Get("Retry-After"))
			}
			if d.RetryAfter == heijunka.InfDuration {
				if hasT || ra != int64(taihttp.MaxRetryAfter/time.Second) {
					t.Fatalf("a request that never passes: Retry-After %d, t %v", ra, items[0].Params["t"])
				}
				continue
			}
			if !hasT || tp != ra {
				t.Fatalf("Retry-After %d, t %v: one moment", ra, items[0].Params["t"])
			}
			later, _ := replay(i)
			if !later.DecideN(now.Add(time.Duration(ra)*time.Second), s.n).Allowed {
				t.Fatalf("%v: Retry-After %d, yet %d requests are denied then (decision %+v)", limit, ra, s.n, d)
			}
			if ra > 1 {
				sooner, _ := replay(i)
				if sooner.DecideN(now.Add(time.Duration(ra-1)*time.Second), s.n).Allowed {
					t.Fatalf("%v: Retry-After %d, yet %d requests pass a second sooner (decision %+v)", limit, ra, s.n, d)
				}
			}
		}
	})
}
