package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// targetsFile is the local fleet's instances in Prometheus's file-based
// service discovery format (file_sd_configs), rewritten after every Deploy
// and Retire, and whenever an instance exits: a Prometheus given the file scrapes every demoapp process,
// and -prometheus-url can then judge rollouts from what it scraped.
const targetsFile = "prometheus-targets.json"

// sdGroup is one entry of a file_sd file.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// discovered is a fleet.Target that keeps the targets file current.
type discovered struct {
	fleet.Target
	s  *Service
	mu sync.Mutex // one rewrite at a time
}

func (t *discovered) Deploy(ctx context.Context, service, region, version string, instances int) error {
	err := t.Target.Deploy(ctx, service, region, version, instances)
	t.write()
	return err
}

func (t *discovered) Retire(ctx context.Context, service, region, version string) error {
	err := t.Target.Retire(ctx, service, region, version)
	t.write()
	return err
}

// exited takes an instance that exited, whatever ended it, off the file:
// its port may be another process's by now. A Deploy that starts it again
// writes it back. The local fleet's Options.OnExit.
func (t *discovered) exited(service, region, version string) {
	t.write()
}

// write rewrites the file with every running instance, by service, region
// and version. It replaces the file whole (write, then rename), so a
// Prometheus reading it never sees half of it.
func (t *discovered) write() {
	t.mu.Lock()
	defer t.mu.Unlock()
	groups := []sdGroup{}
	for _, p := range t.s.users.list() {
		for _, version := range t.s.catalog.VersionNames(p[0]) {
			addrs := t.s.local.Instances(p[0], p[1], version)
			if len(addrs) == 0 {
				continue
			}
			sort.Strings(addrs)
			groups = append(groups, sdGroup{Targets: addrs, Labels: map[string]string{
				"service": p[0], "region": p[1], "version": version,
			}})
		}
	}
	sort.Slice(groups, func(i, j int) bool {
		a, b := groups[i].Labels, groups[j].Labels
		if a["service"] != b["service"] {
			return a["service"] < b["service"]
		}
		if a["region"] != b["region"] {
			return a["region"] < b["region"]
		}
		return a["version"] < b["version"]
	})
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return
	}
	path := filepath.Join(t.s.cfg.DataDir, targetsFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		t.s.log.Warn("Prometheus targets not written", "path", path, "err", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.s.log.Warn("Prometheus targets not written", "path", path, "err", err)
	}
}
