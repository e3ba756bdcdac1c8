package kaizenotel

import (
	"context"
	"reflect"
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

// The scope's version is that of the module whose path ScopeName names:
// this package's own.
func TestScopeNameIsThePackagesPath(t *testing.T) {
	type probe struct{}
	assert.Equal(t, reflect.TypeFor[probe]().PkgPath(), ScopeName)
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
