// Package modversion tells the version of the module that holds a package
// in the running binary, for the instrumentation scopes of the adapters.
package modversion

import (
	"cmp"
	"runtime/debug"
	"strings"
)

// Running returns the version, in the running binary, of the module that
// holds the package pkg: "(devel)" when the binary has no build
// information or is built from that module's own tree.
func Running(pkg string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return Of(pkg, bi)
}

// Of returns the version of the module that holds the package pkg: of the
// modules in bi, the one with the longest path that is pkg or a parent of
// it, so the answer stays right when a package moves to a module of its
// own. Of a module a replace directive replaced, it is the version of the
// replacement, the code in the binary: "(devel)" for a directory, not the
// version required.
func Of(pkg string, bi *debug.BuildInfo) string {
	version, longest := "(devel)", -1
	for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
		if len(m.Path) <= longest || !(pkg == m.Path || strings.HasPrefix(pkg, m.Path+"/")) {
			continue
		}
		longest = len(m.Path)
		if r := m.Replace; r != nil {
			version = cmp.Or(r.Version, "(devel)")
		} else {
			version = cmp.Or(m.Version, "(devel)")
		}
	}
	return version
}
