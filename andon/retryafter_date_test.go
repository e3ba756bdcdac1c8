package andon_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/tai"
)

// A Retry-After given as an HTTP date is the receiver's clock's: it is
// counted from the answer's Date, when that is a valid HTTP date, so that
// a receiver whose clock is off the sender's gets the wait it asked for
// (RFC 9110, section 10.2.3); from the sender's clock when Date is
// missing or malformed.
func TestNotifyRetryAfterDateCountsFromTheAnswersDate(t *testing.T) {
	for name, newNotifier := range httpNotifiers() {
		for _, tc := range []struct {
			why  string
			skew time.Duration // of the receiver's clock
			date bool          // whether the answer carries it
			bad  bool          // a Date that is no HTTP date
			want time.Duration
		}{
			{"receiver an hour ahead", time.Hour, true, false, 2 * time.Minute},
			{"receiver an hour behind", -time.Hour, true, false, 2 * time.Minute},
			{"receiver in step", 0, true, false, 2 * time.Minute},
			{"no Date, receiver in step", 0, false, false, 2 * time.Minute},
			{"malformed Date, receiver in step", 0, true, true, 2 * time.Minute},
		} {
			t.Run(fmt.Sprintf("%s/%s", name, tc.why), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						now := time.Now().Add(tc.skew).UTC()
						switch {
						case tc.bad:
							w.Header().Set("Date", "yesterday")
						case tc.date:
							w.Header().Set("Date", now.Format(http.TimeFormat))
						default:
							w.Header()["Date"] = nil // net/http adds none
						}
						w.Header().Set("Retry-After", now.Add(2*time.Minute).Format(http.TimeFormat))
						http.Error(w, "busy", http.StatusServiceUnavailable)
					}))
					defer srv.Close()
					n, err := newNotifier(srv.URL)
					require.NoError(t, err)
					err = n.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}})
					require.Error(t, err)
					assert.Equal(t, tc.want, tai.RetryAfter(err))
				})
			})
		}
	}
}
