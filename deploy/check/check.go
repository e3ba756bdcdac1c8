// Package check validates taikit's operations files — the Dockerfiles, the
// Compose stack and the Kubernetes manifests under deploy/ — against the
// repository they build from: that what they copy and build exists, that
// the tools that read them accept them (the Compose specification's own
// loader, Kubernetes' API types decoded strictly), and that the pieces
// agree with each other (probes on the ports the containers open, disruption
// budgets and network policies that select the pods they are for, no two
// services on one host port).
//
// The package's tests run these checks on the files in the repository, and
// run the servers' own tools on the rest: promtool on the Prometheus
// configuration, rules and rule unit tests, amtool on Alertmanager's
// configuration and routes, nats-server -t on the NATS configuration.
//
// It also builds the services' Grafana dashboards ([Dashboards]), which go
// generate writes into deploy/grafana/dashboards; the tests evaluate every
// panel's query through a real Prometheus scraping the running services.
// docs/operations.md says what each file is for.
package check

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// rootModule is the module path whose directory is the repository's root.
const rootModule = "github.com/taipattern/taikit"

// RepoRoot returns the repository's root: the nearest directory at or
// above dir whose go.mod declares the module github.com/taipattern/taikit.
func RepoRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && modulePath(b) == rootModule {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no directory at or above %s holds the go.mod of %s", abs, rootModule)
		}
	}
}

// modulePath returns the module path a go.mod declares, or "".
func modulePath(gomod []byte) string {
	for line := range bytes.Lines(gomod) {
		f := strings.Fields(string(line))
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// inside reports whether path is root or lies under it (both clean and
// absolute).
func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// problems collects what a check finds wrong, each prefixed by where.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

func (p problems) err() error { return errors.Join(p...) }
