package heijunka_test

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
)

// TestLimiterDecisionFieldsMatchProbes checks every Decision a Limiter
// gives, through random requests, reservations, cancels and changes of
// Limit, against what the Limiter itself says at the times the Decision
// names, asked with n = 0, which records nothing: Remaining more events
// pass right after it, and one more would not; a denied request passes
// RetryAfter later and not a nanosecond sooner; and the limiter is full
// ResetAfter later, and not a nanosecond sooner.
func TestLimiterDecisionFieldsMatchProbes(t *testing.T) {
	limits := []heijunka.Limit{
		{Rate: 10, Burst: 3}, {Rate: 20, Burst: 3}, {Rate: 3, Burst: 1},
		{Rate: 7, Burst: 5}, {Rate: 0, Burst: 1}, heijunka.Unlimited(),
	}
	rapid.Check(t, func(t *rapid.T) {
		limit := limits[rapid.IntRange(0, 3).Draw(t, "limit")]
		lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		type booking struct {
			r  *heijunka.Reservation
			at time.Time
		}
		var booked []booking
		now := t0
		for step := range rapid.IntRange(20, 120).Draw(t, "steps") {
			now = now.Add(time.Duration(rapid.IntRange(-400, 200).Draw(t, "gap ms")) * time.Millisecond)
			n := rapid.IntRange(0, limit.Burst+1).Draw(t, "n")
			switch rapid.IntRange(0, 5).Draw(t, "op") {
			case 0, 1:
				checkDecision(t, lim, limit, now, n, step)
			case 2:
				if r := lim.ReserveN(now, n); r.OK() {
					booked = append(booked, booking{r, now})
				}
			case 3:
				if len(booked) > 0 {
					b := booked[rapid.IntRange(0, len(booked)-1).Draw(t, "booking")]
					b.r.CancelAt(now)
				}
			case 4:
				limit = limits[rapid.IntRange(0, len(limits)-1).Draw(t, "new limit")]
				if err := lim.SetLimitAt(now, limit); err != nil {
					t.Fatal(err)
				}
			case 5:
				lim.AllowN(now, n)
			}
		}
	})
}

// checkDecision decides on n events at now and checks the Decision's
// fields by probes of n = 0.
func checkDecision(t *rapid.T, lim *heijunka.Limiter, limit heijunka.Limit, now time.Time, n, step int) {
	before := lim.DecideN(now, 0)
	d := lim.DecideN(now, n)
	if d.Limit != limit {
		t.Fatalf("step %d: Limit %v, want %v", step, d.Limit, limit)
	}
	probe := func(at time.Time) heijunka.Decision { return lim.DecideN(at, 0) }
	// passes reports whether n events would pass at `at`, as the probe
	// there says.
	passes := func(at time.Time) bool {
		p := probe(at)
		if n == 0 {
			return p.Allowed
		}
		return p.Remaining >= n
	}
	switch {
	case limit.IsUnlimited():
		if !d.Allowed || d.Remaining != int(^uint(0)>>1) || d.RetryAfter != 0 || d.ResetAfter != 0 {
			t.Fatalf("step %d: unlimited: %+v", step, d)
		}
		return
	case limit.IsClosed():
		if d.Allowed != (n == 0) || d.Remaining != 0 || d.ResetAfter != 0 ||
			d.Allowed && d.RetryAfter != 0 || !d.Allowed && d.RetryAfter != heijunka.InfDuration {
			t.Fatalf("step %d: closed: n %d: %+v", step, n, d)
		}
		return
	}
	wantAllowed := n <= limit.Burst && (n == 0 && before.Allowed || n > 0 && before.Remaining >= n)
	if d.Allowed != wantAllowed {
		t.Fatalf("step %d: n %d allowed %v, but %+v before", step, n, d.Allowed, before)
	}
	after := probe(now)
	if d.Remaining != after.Remaining {
		t.Fatalf("step %d: n %d: Remaining %d, a probe right after says %d (%+v)", step, n, d.Remaining, after.Remaining, d)
	}
	if !d.Allowed && d.Remaining != before.Remaining {
		t.Fatalf("step %d: n %d denied: Remaining %d, before %d", step, n, d.Remaining, before.Remaining)
	}
	switch {
	case d.Allowed && d.RetryAfter != 0:
		t.Fatalf("step %d: allowed with RetryAfter %v", step, d.RetryAfter)
	case !d.Allowed && n > limit.Burst:
		if d.RetryAfter != heijunka.InfDuration {
			t.Fatalf("step %d: n %d over the burst: RetryAfter %v", step, n, d.RetryAfter)
		}
	case !d.Allowed:
		if d.RetryAfter <= 0 || !passes(now.Add(d.RetryAfter)) || passes(now.Add(d.RetryAfter-1)) {
			t.Fatalf("step %d: n %d: RetryAfter %v: passes then %v, a nanosecond before %v",
				step, n, d.RetryAfter, passes(now.Add(d.RetryAfter)), passes(now.Add(d.RetryAfter-1)))
		}
	}
	if d.ResetAfter < 0 || probe(now.Add(d.ResetAfter)).Remaining != limit.Burst ||
		d.ResetAfter > 0 && probe(now.Add(d.ResetAfter-1)).Remaining == limit.Burst {
		t.Fatalf("step %d: n %d: ResetAfter %v: remaining then %d, a nanosecond before %d", step, n, d.ResetAfter,
			probe(now.Add(d.ResetAfter)).Remaining, probe(now.Add(d.ResetAfter-1)).Remaining)
	}
}
