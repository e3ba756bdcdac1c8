package taihttp_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/taihttp"
)

// A server whose certificate the client does not trust, or one that does
// not name the host asked for, fails every handshake alike: no retry can
// mend it. The Transport returns the certificate error after the one
// attempt, marked jidoka.Permanent, without a backoff before it, with a
// Hedge as without; the breaker counts the attempt, as it counts a
// refused connection. A RetryOn that asks for such errors still has them
// retried.
func TestTransportDoesNotRetryACertificateError(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("a request came over a connection whose certificate the client does not trust")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the server's "TLS handshake error" lines
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	trusted := srv.Client().Transport.(*http.Transport)

	for _, base := range []struct {
		name string
		new  func() *http.Transport
	}{
		{"unknown authority", func() *http.Transport {
			return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}
		}},
		{"hostname mismatch", func() *http.Transport {
			b := trusted.Clone()
			b.TLSClientConfig.ServerName = "elsewhere.test"
			return b
		}},
	} {
		for _, tc := range []struct {
			name     string
			hedge    bool
			retryOn  func(error) bool
			attempts int32
		}{
			{name: "retry", attempts: 1},
			{name: "retry and hedge", hedge: true, attempts: 1},
			{name: "a RetryOn that asks for it", attempts: 3, retryOn: func(err error) bool {
				var ce *tls.CertificateVerificationError
				return errors.As(err, &ce)
			}},
		} {
			t.Run(base.name+"/"+tc.name, func(t *testing.T) {
				conns.Store(0)
				var waits atomic.Int32
				opts := taihttp.TransportOptions{Base: base.new()}
				opts.Retry = newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, RetryOn: tc.retryOn,
					Jitter: func(d time.Duration) time.Duration { waits.Add(1); return 0 }})
				b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 100})
				require.NoError(t, err)
				opts.Breaker = b
				if tc.hedge {
					opts.Hedge, err = jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Hour})
					require.NoError(t, err)
				}
				c := client(t, nil, opts)

				resp, err := c.Get(srv.URL)
				if resp != nil {
					_ = resp.Body.Close()
				}
				var ce *tls.CertificateVerificationError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, tc.attempts, conns.Load(), "handshakes the server saw")
				assert.Equal(t, tc.attempts-1, waits.Load(), "backoff waits")
				assert.Equal(t, int(tc.attempts), b.Snapshot().ConsecutiveFailures, "attempts the breaker counted")
				if tc.retryOn == nil {
					assert.ErrorIs(t, err, jidoka.ErrPermanent)
				}
			})
		}
	}
}
