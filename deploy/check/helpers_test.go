package check

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// repoRoot is the repository's root, for the tests.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// deployPath is a path under the repository's deploy directory.
func deployPath(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{repoRoot(t), "deploy"}, elem...)...)
}

// tool returns the path of a server tool the tests run (promtool, amtool,
// nats-server). When it is missing the test is skipped, with the Debian
// package to install, or fails when TAIKIT_REQUIRE_SERVERS=1.
func tool(t testing.TB, debianPackage, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" {
		t.Fatalf("%s not found and TAIKIT_REQUIRE_SERVERS=1 (Debian package %s)", name, debianPackage)
	}
	t.Skipf("%s not found; install the Debian package %s, or set TAIKIT_REQUIRE_SERVERS=1 to fail instead", name, debianPackage)
	return ""
}

// loadStack loads deploy/compose.yaml strictly.
func loadStack(t testing.TB) (*types.Project, error) {
	t.Helper()
	return LoadCompose(context.Background(), deployPath(t, "compose.yaml"))
}
