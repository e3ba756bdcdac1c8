package modversion_test

import (
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/taipattern/taikit/internal/modversion"
)

func TestOf(t *testing.T) {
	bi := func(main string, deps ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{Main: debug.Module{Path: main}}
		for i, d := range deps {
			b.Deps = append(b.Deps, &debug.Module{Path: d, Version: "v0." + strconv.Itoa(i+1) + ".0"})
		}
		return b
	}
	const root, sub = "github.com/taipattern/taikit", "github.com/taipattern/taikit/kaizen/kaizenotel"
	cases := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"a dependency of a service", bi("example.com/svc", "example.com/other", root), "v0.2.0"},
		{"its own module, once split", bi("example.com/svc", root, sub), "v0.2.0"},
		{"a module whose path only starts the same", bi("example.com/svc", root+"x"), "(devel)"},
		{"built from its own tree", bi(root), "(devel)"},
		{"not in the binary", bi("example.com/svc"), "(devel)"},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, modversion.Of(sub, c.bi), c.name)
	}
	// A replace directive puts other code in the binary under the
	// required version: the replacement's version is the one that ran, and
	// a directory's has none.
	forked := bi("example.com/svc", root, sub)
	forked.Deps[1].Replace = &debug.Module{Path: "example.com/fork/kaizenotel", Version: "v0.9.1"}
	assert.Equal(t, "v0.9.1", modversion.Of(sub, forked), "a module replaced by another")
	local := bi("example.com/svc", root, sub)
	local.Deps[1].Replace = &debug.Module{Path: "../kaizenotel", Version: "(devel)"}
	assert.Equal(t, "(devel)", modversion.Of(sub, local), "a module replaced by a directory")
	local.Deps[1].Replace.Version = ""
	assert.Equal(t, "(devel)", modversion.Of(sub, local), "a module replaced by a directory, no version given")
	released := bi(root)
	released.Main.Version = "v0.1.0"
	assert.Equal(t, "v0.1.0", modversion.Of(sub, released), "the main module's version")
}

// In a test binary the main module is the one under test, built from its
// own tree.
func TestRunning(t *testing.T) {
	assert.Equal(t, "(devel)", modversion.Running("github.com/taipattern/taikit/internal/modversion"))
}
