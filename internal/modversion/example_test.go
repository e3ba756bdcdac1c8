package modversion_test

import (
	"fmt"
	"runtime/debug"

	"github.com/taipattern/taikit/internal/modversion"
)

func ExampleOf() {
	bi := &debug.BuildInfo{
		Main: debug.Module{Path: "example.com/svc"},
		Deps: []*debug.Module{{Path: "github.com/taipattern/taikit", Version: "v0.1.0"}},
	}
	fmt.Println(modversion.Of("github.com/taipattern/taikit/kanban", bi))
	// Output: v0.1.0
}
