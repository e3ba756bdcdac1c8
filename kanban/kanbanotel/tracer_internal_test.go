package kanbanotel

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taipattern/taikit/kanban"
)

// The scope's version is that of the module whose path instrumentation
// names: this package's own.
func TestInstrumentationIsThePackagesPath(t *testing.T) {
	type probe struct{}
	assert.Equal(t, reflect.TypeFor[probe]().PkgPath(), instrumentation)
}

func TestTracerShapesAreBounded(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := NewTracer(TracerOptions{Provider: tp}).(*tracer)
	for i := range maxShapes + 100 {
		_, end := tr.Start(context.Background(), kanban.Operation{Type: kanban.OpSend, System: "kanban", Queue: "q-" + strconv.Itoa(i)})
		end(nil)
	}
	m := tr.shapes.Load()
	require.NotNil(t, m)
	assert.Len(t, *m, maxShapes, "queues beyond the bound are built per span, not kept")
	assert.Equal(t, "send q-1100", tr.shape(kanban.Operation{Type: kanban.OpSend, System: "kanban", Queue: "q-1100"}).name)
}

// A queue name of any length makes its span, but only short ones are kept
// for later spans.
func TestTracerKeepsNoLongShapes(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := NewTracer(TracerOptions{Provider: tp}).(*tracer)
	long := strings.Repeat("q", 1<<20)
	_, end := tr.Start(context.Background(), kanban.Operation{Type: kanban.OpProcess, System: "kanban", Queue: long, Consumer: "c"})
	end(nil)
	assert.Nil(t, tr.shapes.Load(), "no long key kept")
	assert.Equal(t, "process "+long, tr.shape(kanban.Operation{Type: kanban.OpProcess, System: "kanban", Queue: long}).name)
	_, end = tr.Start(context.Background(), kanban.Operation{Type: kanban.OpProcess, System: "kanban", Queue: "q", Consumer: "c"})
	end(nil)
	require.NotNil(t, tr.shapes.Load())
	assert.Len(t, *tr.shapes.Load(), 1, "a short one is kept")
}
