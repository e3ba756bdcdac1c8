package kaizen

import (
	"context"
	"strconv"
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
