package heijunka_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
)

func TestLimitedErrorMessages(t *testing.T) {
	limit := heijunka.PerMinute(5)
	for _, tc := range []struct {
		name string
		err  *heijunka.LimitedError
		want string
	}{
		{"named", &heijunka.LimitedError{Name: "velocity", Decision: heijunka.Decision{Limit: limit, RetryAfter: 12 * time.Second}},
			`heijunka: "velocity" over limit 5/min burst 5; retry after 12s`},
		{"unnamed", &heijunka.LimitedError{Decision: heijunka.Decision{Limit: limit, RetryAfter: time.Second}},
			`heijunka: over limit 5/min burst 5; retry after 1s`},
		{"never", &heijunka.LimitedError{Name: "velocity", Decision: heijunka.Decision{Limit: limit, RetryAfter: heijunka.InfDuration}},
			`heijunka: "velocity" over limit 5/min burst 5; the request can never pass`},
		{"no retry time", &heijunka.LimitedError{Decision: heijunka.Decision{Limit: limit}},
			`heijunka: over limit 5/min burst 5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.err.Error())
			assert.ErrorIs(t, tc.err, heijunka.ErrLimited)
			assert.NotErrorIs(t, tc.err, heijunka.ErrStoreFull)
			assert.Equal(t, tc.err.Decision.RetryAfter, tai.RetryAfter(tc.err))
		})
	}
}
