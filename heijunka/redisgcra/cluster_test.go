package redisgcra_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/redisgcra"
	"github.com/taipattern/taikit/heijunka/storetest"
	"github.com/taipattern/taikit/internal/servers"
)

// startCluster starts a Redis Cluster of one node that serves every slot,
// stopped when the test ends, and returns its address.
func startCluster(t *testing.T) string {
	t.Helper()
	bin := servers.Binary(t, "redis-server", "redis-server")
	dir := t.TempDir()
	port := servers.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--dir", dir)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	// Wait for the node to listen, give it every slot, and wait for the
	// cluster to be up.
	var err error
	for range 500 {
		if err = c.Ping(ctx).Err(); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, err, "redis-server in cluster mode did not start")
	require.NoError(t, c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err())
	for range 500 {
		info, err := c.ClusterInfo(ctx).Result()
		require.NoError(t, err)
		if strings.Contains(info, "cluster_state:ok") {
			return addr
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the cluster did not come up")
	return ""
}

func clusterClient(t *testing.T, addr string) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformanceCluster(t *testing.T) {
	c := clusterClient(t, startCluster(t))
	storetest.Run(t, func(t *testing.T) heijunka.Store {
		return newStore(t, c, redisgcra.Options{Prefix: "{limits}:"})
	})
}

// TestDeadlineClusterUnloaded pauses a cluster before a new client has
// learned its slots: the client fails at ctx's deadline with a network
// timeout of its own, and Take and Reset still return errors that wrap
// context.DeadlineExceeded, as their doc says.
func TestDeadlineClusterUnloaded(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	addr := startCluster(t)
	pauser := redisClient(t, &servers.Redis{Addr: addr})
	require.NoError(t, pauser.Do(context.Background(), "CLIENT", "PAUSE", 500, "ALL").Err())

	s := newStore(t, clusterClient(t, addr), redisgcra.Options{OnError: redisgcra.FailOpen})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	d, err := s.Take(ctx, "k", heijunka.PerSecond(10), time.Now(), 1)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "redisgcra: ")
	assert.True(t, d.Allowed && d.FailedOpen, "the fallback")

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	err = s.Reset(ctx, "k")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Wait for the pause to end: the pauser's next command runs after it.
	require.NoError(t, pauser.Ping(context.Background()).Err())
}
