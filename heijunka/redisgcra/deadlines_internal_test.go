package redisgcra

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
)

// TestHonoursDeadlines checks which clients the Store trusts to end
// commands at ctx's deadline: those with ContextTimeoutEnabled whose read
// and write deadlines are not disabled, whatever the type's own spelling
// of "no timeout" (-1) and "no deadline" (-2) once its options are
// normalised. A Ring keeps its options as given and passes them to each
// shard's client.
func TestHonoursDeadlines(t *testing.T) {
	const addr = "127.0.0.1:1" // never dialled
	for _, tc := range []struct {
		name        string
		read, write time.Duration
		want        bool
	}{
		{"defaults", 0, 0, true},
		{"timeouts", time.Second, 2 * time.Second, true},
		{"no read timeout", -1, 0, true},
		{"no timeouts", -1, -1, true},
		{"no write timeout", 0, -1, true},
		{"read deadlines disabled", -2, 0, false},
		{"write deadlines disabled", 0, -2, false},
		{"deadlines disabled", -2, -2, false},
		{"below -2", -3, -3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, enabled := range []bool{false, true} {
				clients := map[string]redis.UniversalClient{
					"Client": redis.NewClient(&redis.Options{Addr: addr,
						ContextTimeoutEnabled: enabled, ReadTimeout: tc.read, WriteTimeout: tc.write}),
					"ClusterClient": redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr},
						ContextTimeoutEnabled: enabled, ReadTimeout: tc.read, WriteTimeout: tc.write}),
					"Ring": redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr},
						ContextTimeoutEnabled: enabled, ReadTimeout: tc.read, WriteTimeout: tc.write}),
				}
				for typ, c := range clients {
					assert.Equal(t, tc.want && enabled, honoursDeadlines(c), "%s, ContextTimeoutEnabled %v", typ, enabled)
					_ = c.Close()
				}
			}
		})
	}
}
