package tai_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"testing"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/tai"
)

// TestScoredMatchesModel checks Scored against its documentation for
// random rules: risks anywhere (negative, above 1, infinite, NaN), errors
// with and without FailOpen, and random thresholds. The score is in
// [0, 1], the verdict follows the thresholds within ScoreTolerance, the
// contributions are the rules that added something, in order, and the
// reason is that of the largest one.
func TestScoredMatchesModel(t *testing.T) {
	risks := rapid.OneOf(
		rapid.Float64Range(-2, 2),
		rapid.SampledFrom([]float64{0, 1, 0.5, math.Inf(1), math.Inf(-1), math.NaN(), 1e-300, math.Copysign(0, -1)}),
	)
	rapid.Check(t, func(t *rapid.T) {
		deny := rapid.SampledFrom([]float64{0, 0.3, 0.5, 0.9, 1}).Draw(t, "deny")
		effDeny := deny
		if effDeny == 0 {
			effDeny = 0.5
		}
		review := rapid.Float64Range(0, effDeny).Draw(t, "review")
		effReview := review
		if effReview == 0 {
			effReview = effDeny
		}
		n := rapid.IntRange(1, 6).Draw(t, "rules")
		type ruleSpec struct {
			weight   float64
			risk     float64
			fail     bool
			failOpen bool
		}
		specs := make([]ruleSpec, n)
		runs := make([]int, n)
		rules := make([]tai.Rule[int], n)
		for i := range specs {
			specs[i] = ruleSpec{
				weight:   rapid.SampledFrom([]float64{0, 0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 1, 2, 1e-320}).Draw(t, "weight"),
				risk:     risks.Draw(t, "risk"),
				fail:     rapid.IntRange(0, 5).Draw(t, "fail") == 0,
				failOpen: rapid.Bool().Draw(t, "failOpen"),
			}
			sp := specs[i]
			rules[i] = tai.Rule[int]{
				Name: "r" + strconv.Itoa(i), Weight: sp.weight, FailOpen: sp.failOpen,
				Check: func(context.Context, tai.Signal[int]) (float64, string, error) {
					runs[i]++
					if sp.fail {
						return 0, "", errors.New("down")
					}
					return sp.risk, "reason " + strconv.Itoa(i), nil
				},
			}
		}
		p, err := tai.NewScored(tai.ScoredOptions{Name: "s", Deny: deny, Review: review}, rules...)
		if err != nil {
			t.Fatal(err)
		}
		d, err := p.Evaluate(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})

		var (
			score      float64
			top        float64
			reason     string
			contribs   []tai.Contribution
			failedOpen bool
			failedAt   = -1
		)
		for i, sp := range specs {
			if sp.fail || math.IsNaN(sp.risk) {
				if !sp.failOpen {
					failedAt = i
					break
				}
				failedOpen = true
				continue
			}
			risk := min(max(sp.risk, 0), 1)
			s := sp.weight * risk
			if s <= 0 {
				continue
			}
			score += s
			if s > top {
				top, reason = s, "reason "+strconv.Itoa(i)
			}
			contribs = append(contribs, tai.Contribution{Rule: "r" + strconv.Itoa(i), Weight: sp.weight, Risk: risk, Score: s, Reason: "reason " + strconv.Itoa(i)})
		}
		for i := range specs {
			want := 1
			if failedAt >= 0 && i > failedAt {
				want = 0
			}
			if runs[i] != want {
				t.Fatalf("rule %d ran %d times, want %d", i, runs[i], want)
			}
		}
		if failedAt >= 0 {
			if err == nil {
				t.Fatalf("no error for failing rule %d", failedAt)
			}
			if d.FailedOpen != failedOpen || d.Verdict != 0 || d.Policy != "s" {
				t.Fatalf("decision with the error: %+v", d)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		score = min(score, 1)
		want := tai.Allow
		switch {
		case score > 0 && score >= effDeny-tai.ScoreTolerance:
			want, score = tai.Deny, max(score, effDeny)
		case score > 0 && score >= effReview-tai.ScoreTolerance:
			want, score = tai.Review, max(score, effReview)
		}
		if d.Verdict != want || d.Score != score || !(d.Score >= 0 && d.Score <= 1) {
			t.Fatalf("verdict %v score %v, want %v %v (review %v, deny %v)", d.Verdict, d.Score, want, score, effReview, effDeny)
		}
		if d.Reason != reason || d.FailedOpen != failedOpen || d.Policy != "s" {
			t.Fatalf("decision %+v, want reason %q failedOpen %v", d, reason, failedOpen)
		}
		if len(d.Contributions) != len(contribs) {
			t.Fatalf("contributions %+v, want %+v", d.Contributions, contribs)
		}
		for i := range contribs {
			if d.Contributions[i] != contribs[i] {
				t.Fatalf("contribution %d %+v, want %+v", i, d.Contributions[i], contribs[i])
			}
		}
	})
}
