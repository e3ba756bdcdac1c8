package natsjs_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

type nilCodec struct{ kanban.JSON }

func (c *nilCodec) Marshal(v any) ([]byte, error)      { return c.JSON.Marshal(v) }
func (c *nilCodec) Unmarshal(data []byte, v any) error { return c.JSON.Unmarshal(data, v) }

type nilPropagator struct{ fields []string }

func (p *nilPropagator) Inject(context.Context, kanban.Header) { _ = p.fields }
func (p *nilPropagator) Extract(ctx context.Context, _ kanban.Header) context.Context {
	_ = p.fields
	return ctx
}

type nilTracerFunc func(context.Context, kanban.Operation) (context.Context, func(error))

func (f nilTracerFunc) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	return f(ctx, op)
}

// A nil pointer or function in one of the interface fields is not a nil
// interface: it would panic in every Publish and handler attempt. It is
// refused, naming the field, as a Memory queue refuses it.
func TestOptionsValidateTypedNil(t *testing.T) {
	for _, tc := range []struct {
		opts natsjs.Options
		want string
	}{
		{natsjs.Options{Codec: (*nilCodec)(nil)}, "natsjs: invalid Codec: a nil *natsjs_test.nilCodec"},
		{natsjs.Options{Propagator: (*nilPropagator)(nil)}, "natsjs: invalid Propagator: a nil *natsjs_test.nilPropagator"},
		{natsjs.Options{Tracer: nilTracerFunc(nil)}, "natsjs: invalid Tracer: a nil natsjs_test.nilTracerFunc"},
	} {
		err := tc.opts.Validate()
		require.Error(t, err, "%+v", tc.opts)
		assert.EqualError(t, err, tc.want)
		_, err = natsjs.New[int](context.Background(), nil, tc.opts)
		assert.EqualError(t, err, tc.want, "New validates")
	}
}
