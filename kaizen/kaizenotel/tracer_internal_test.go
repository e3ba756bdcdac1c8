package kaizenotel

import (
	"context"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taipattern/taikit/tai"
)

func TestTracerShapesAreBounded(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := NewTracer(TracerOptions{Provider: tp})
	for i := range maxShapes + 100 {
		_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: "kind-" + strconv.Itoa(i)})
		sp.End(nil)
	}
	m := tr.shapes.Load()
	require.NotNil(t, m)
	assert.Len(t, *m, maxShapes, "kinds beyond the bound are built per span, not kept")
	s := tr.shape(tai.SpanInfo{Stage: tai.StagePolicy, Kind: "kind-1", Name: "fraud"})
	assert.Equal(t, "policy fraud", s.name)
}

func TestUnsampledStagesAllocateNothing(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := NewTracer(TracerOptions{Provider: tp})
	ctx, root := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: "payment"})
	defer root.End(nil)
	allocs := testing.AllocsPerRun(100, func() {
		_, sp := tr.Start(ctx, tai.SpanInfo{Stage: tai.StagePolicy, Kind: "payment", Name: "fraud"})
		sp.End(nil)
	})
	assert.Zero(t, allocs)
}

func TestVersionOfTheModuleHoldingThePackage(t *testing.T) {
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
		assert.Equal(t, c.want, versionOf(ScopeName, c.bi), c.name)
	}
	// A replace directive puts other code in the binary under the
	// required version: the replacement's version is the one that ran, and
	// a directory's has none.
	forked := bi("example.com/svc", root, sub)
	forked.Deps[1].Replace = &debug.Module{Path: "example.com/fork/kaizenotel", Version: "v0.9.1"}
	assert.Equal(t, "v0.9.1", versionOf(ScopeName, forked), "a module replaced by another")
	local := bi("example.com/svc", root, sub)
	local.Deps[1].Replace = &debug.Module{Path: "../kaizenotel", Version: "(devel)"}
	assert.Equal(t, "(devel)", versionOf(ScopeName, local), "a module replaced by a directory")
	local.Deps[1].Replace.Version = ""
	assert.Equal(t, "(devel)", versionOf(ScopeName, local), "a module replaced by a directory, no version given")
	released := bi(root)
	released.Main.Version = "v0.1.0"
	assert.Equal(t, "v0.1.0", versionOf(ScopeName, released), "the main module's version")
	assert.Equal(t, ScopeName, sub)
}

// A Kind or hook name of any length makes its span, but only short ones
// are kept for later spans: 1024 kinds made up from input, each a
// megabyte long, held a gigabyte for the life of the Tracer.
func TestTracerKeepsNoLongShapes(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := NewTracer(TracerOptions{Provider: tp})
	long := strings.Repeat("k", 1<<20)
	_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Name: long, Kind: long})
	sp.End(nil)
	s := tr.shape(tai.SpanInfo{Stage: tai.StagePolicy, Kind: "payment", Name: long})
	assert.Equal(t, "policy "+long, s.name)
	if m := tr.shapes.Load(); m != nil {
		for k := range *m {
			assert.LessOrEqual(t, len(k.kind)+len(k.name), maxShapeKey, "no long key kept")
		}
	}
	_, sp = tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Name: "payment", Kind: "payment"})
	sp.End(nil)
	require.NotNil(t, tr.shapes.Load())
	assert.Len(t, *tr.shapes.Load(), 1, "a short one is kept")
}
