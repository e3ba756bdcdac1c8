package servers

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A port that another redis-server took before this one bound it is not
// this one's: the other's answer must not pass for this server's
// readiness, or two tests would share one server, and the first to end
// would stop it under the other.
func TestStartRedisOnATakenPortFails(t *testing.T) {
	other := StartRedis(t)
	_, port, err := net.SplitHostPort(other.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tryStartRedis(Binary(t, "redis-server", "redis-server"), p, nil)
	if err == nil {
		s.Stop()
		t.Fatalf("started on %s, the port of another redis-server", s.Addr)
	}
	// The error says why, in the server's own words.
	if !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("error %q does not hold redis-server's reason", err)
	}
}

// As TestStartRedisOnATakenPortFails, for prometheus.
func TestStartPrometheusOnATakenPortFails(t *testing.T) {
	other := StartPrometheus(t, "global:\n  scrape_interval: 1m\n")
	dir := t.TempDir()
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte("global:\n  scrape_interval: 2m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := Binary(t, "prometheus", "prometheus")
	if url, _, ok := tryStartPrometheus(t, bin, dir, configFile, strings.TrimPrefix(other, "http://")); ok {
		t.Fatalf("started at %s, the address of another prometheus", url)
	}
}
