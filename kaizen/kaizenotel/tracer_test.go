package kaizenotel_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/taipattern/taikit/kaizen/internal/pipelinetest"
	"github.com/taipattern/taikit/kaizen/kaizenotel"
	"github.com/taipattern/taikit/tai"
)

func newRecorder(t *testing.T) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return sr, tp
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// tree maps each span's name to the names of its children, in the pipelinetest.Order
// they ended, and returns the root.
func tree(spans []sdktrace.ReadOnlySpan) (root sdktrace.ReadOnlySpan, children map[string][]string) {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	children = map[string][]string{}
	for _, s := range spans {
		parent, ok := byID[s.Parent().SpanID()]
		if !ok {
			root = s
			continue
		}
		children[parent.Name()] = append(children[parent.Name()], s.Name())
	}
	return root, children
}

func byName(spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func TestTracerSpansThroughPipeline(t *testing.T) {
	cases := []struct {
		name       string
		sig        tai.Signal[pipelinetest.Order]
		outcome    tai.Outcome
		children   map[string][]string
		rootStatus codes.Code
		errType    string
		verdict    string
		rejection  string
	}{
		{
			name: "succeeded", sig: pipelinetest.Signals()[0], outcome: tai.Succeeded,
			children: map[string][]string{
				"payment":    {"gate limit", "policy all", "action"},
				"policy all": {"policy allowlist", "policy fraud"},
				// The scored policy opens a span per rule.
				"policy fraud": {"policy fraud/amount", "policy fraud/velocity"},
			},
			rootStatus: codes.Unset,
		},
		{
			name: "denied by score", sig: pipelinetest.Signals()[1], outcome: tai.Denied,
			children: map[string][]string{
				"payment":      {"gate limit", "policy all"},
				"policy all":   {"policy allowlist", "policy fraud"},
				"policy fraud": {"policy fraud/amount", "policy fraud/velocity"},
			},
			rootStatus: codes.Unset, verdict: "deny",
		},
		{
			name: "rejected by gate", sig: pipelinetest.Signals()[3], outcome: tai.Rejected,
			children:   map[string][]string{"payment": {"gate limit"}},
			rootStatus: codes.Unset, rejection: "pipelinetest.ErrLimited",
		},
		{
			name: "action failed", sig: pipelinetest.Signals()[4], outcome: tai.Failed,
			children: map[string][]string{
				"payment":      {"gate limit", "policy all", "action"},
				"policy all":   {"policy allowlist", "policy fraud"},
				"policy fraud": {"policy fraud/amount", "policy fraud/velocity"},
			},
			rootStatus: codes.Error, errType: "_OTHER",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sr, tp := newRecorder(t)
			tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
			var observed tai.Record
			p, err := pipelinetest.New(tai.WithTracer(tr), tai.WithObservers(tai.ObserverFunc(func(_ context.Context, r tai.Record) { observed = r })))
			require.NoError(t, err)
			res, err := p.Process(context.Background(), c.sig)
			require.Equal(t, c.outcome, tai.OutcomeOf(err))

			spans := sr.Ended()
			root, children := tree(spans)
			require.NotNil(t, root)
			assert.Equal(t, "payment", root.Name())
			assert.Equal(t, c.children, children)
			for _, s := range spans {
				assert.Equal(t, root.SpanContext().TraceID(), s.SpanContext().TraceID(), "one trace")
				assert.Equal(t, kaizenotel.ScopeName, s.InstrumentationScope().Name)
				assert.NotEmpty(t, s.InstrumentationScope().Version)
				a := attrs(s)
				assert.Equal(t, "payment", a["taikit.kind"])
				assert.NotContains(t, a, attribute.Key("taikit.signal.id"), "no IDs by default")
				for _, v := range a {
					assert.NotContains(t, v, c.sig.Key, "no key in any attribute")
				}
			}

			ra := attrs(root)
			assert.Equal(t, c.outcome.String(), ra["taikit.outcome"])
			assert.Equal(t, "signal", ra["taikit.stage"])
			assert.Equal(t, c.rootStatus, root.Status().Code)
			assert.Equal(t, c.errType, ra["error.type"])
			assert.Equal(t, c.verdict, ra["taikit.verdict"])
			if c.verdict != "" {
				assert.Equal(t, "fraud", ra["taikit.policy"])
				pol := byName(spans, "policy all")
				assert.Equal(t, codes.Unset, pol.Status().Code, "a denial is not an error")
				assert.Equal(t, "deny", attrs(pol)["taikit.verdict"])
			}
			assert.Equal(t, c.rejection, ra["taikit.rejection.type"])
			if c.rootStatus == codes.Error {
				// The type, never the message: an error can carry a key or
				// payload.
				assert.Equal(t, c.errType, root.Status().Description)
				assert.NotContains(t, root.Status().Description, c.sig.Key)
			}
			if c.outcome == tai.Rejected {
				gate := byName(spans, "gate limit")
				assert.Equal(t, codes.Unset, gate.Status().Code, "shed load is not an error of the span")
				ga := attrs(gate)
				assert.Equal(t, "limit", ga["taikit.hook"])
				assert.Equal(t, "rejected", ga["taikit.outcome"])
				assert.Equal(t, c.rejection, ga["taikit.rejection.type"])
				assert.NotContains(t, ga, attribute.Key("error.type"))
			}
			if c.outcome == tai.Failed {
				action := byName(spans, "action")
				assert.Equal(t, codes.Error, action.Status().Code)
				assert.Equal(t, c.errType, action.Status().Description)
				assert.NotContains(t, action.Status().Description, pipelinetest.ErrGateway.Error())
				assert.Equal(t, codes.Unset, byName(spans, "gate limit").Status().Code)
			}

			// The result and the record carry the root span's IDs.
			sc := root.SpanContext()
			assert.Equal(t, tai.TraceID(sc.TraceID()), res.Span.TraceID)
			assert.Equal(t, tai.SpanID(sc.SpanID()), res.Span.SpanID)
			assert.True(t, res.Span.Sampled)
			assert.Equal(t, res.Span, observed.Span)
		})
	}
}

func TestTracerSignalIDOptIn(t *testing.T) {
	sr, tp := newRecorder(t)
	p, err := pipelinetest.New(tai.WithTracer(kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp, SignalID: true})))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), pipelinetest.Signals()[0])
	require.NoError(t, err)
	for _, s := range sr.Ended() {
		assert.Equal(t, "s1", attrs(s)["taikit.signal.id"], s.Name())
	}
}

func TestTracerJoinsParentTrace(t *testing.T) {
	sr, tp := newRecorder(t)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "http POST /payment")
	p, err := pipelinetest.New(tai.WithTracer(kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})))
	require.NoError(t, err)
	_, err = p.Process(ctx, pipelinetest.Signals()[0])
	require.NoError(t, err)
	parent.End()
	root := byName(sr.Ended(), "payment")
	require.NotNil(t, root)
	assert.Equal(t, parent.SpanContext().SpanID(), root.Parent().SpanID())
}

func TestTracerErrorTypes(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	cases := []struct {
		err  error
		want string
	}{
		{&tai.StageError{Stage: tai.StageAction, Err: context.DeadlineExceeded}, "context.DeadlineExceeded"},
		{context.Canceled, "context.Canceled"},
		{&tai.PolicyError{Policy: "p", Err: errors.New("store down")}, "*tai.PolicyError"},
		{errors.Join(pipelinetest.ErrGateway), "_OTHER"},
	}
	for _, c := range cases {
		sr.Reset()
		_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageAction, Name: "action", Kind: "k"})
		sp.End(c.err)
		ended := sr.Ended()
		require.Len(t, ended, 1)
		assert.Equal(t, c.want, attrs(ended[0])["error.type"], "%v", c.err)
		assert.Equal(t, codes.Error, ended[0].Status().Code)
		assert.Equal(t, c.want, ended[0].Status().Description)
	}
}

// TestTracerErrorTypeLooksIntoJoinedErrors: error.type names the most
// specific error of the error's tree, as errors.As finds it, also behind
// errors.Join or a fmt.Errorf with several %w; it stopped at the join and
// recorded "_OTHER" (or the tai wrapper around it), as for a plain message.
func TestTracerErrorTypeLooksIntoJoinedErrors(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	cases := []struct {
		err  error
		want string
	}{
		{errors.Join(errors.New("cleanup failed"), pipelinetest.ErrLimited{}), "pipelinetest.ErrLimited"},
		{fmt.Errorf("charge: %w; refund: %w", pipelinetest.ErrGateway, pipelinetest.ErrLimited{}), "pipelinetest.ErrLimited"},
		{&tai.PolicyError{Policy: "p", Err: errors.Join(pipelinetest.ErrGateway, pipelinetest.ErrLimited{})}, "pipelinetest.ErrLimited"},
		{errors.Join(&tai.PolicyError{Policy: "p", Err: pipelinetest.ErrGateway}, errors.New("x")), "*tai.PolicyError"},
		{errors.Join(pipelinetest.ErrGateway, errors.New("x")), "_OTHER"},
	}
	for _, c := range cases {
		sr.Reset()
		_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageAction, Name: "action", Kind: "k"})
		sp.End(c.err)
		ended := sr.Ended()
		require.Len(t, ended, 1)
		assert.Equal(t, c.want, attrs(ended[0])["error.type"], "%v", c.err)
		assert.Equal(t, c.want, ended[0].Status().Description, "%v", c.err)
	}
}

func TestTracerRejectionIsNotAnError(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	cases := []struct {
		err  error
		want string
	}{
		{&tai.RejectedError{Stage: tai.StageGate, Err: pipelinetest.ErrLimited{}}, "pipelinetest.ErrLimited"},
		{&tai.RejectedError{Stage: tai.StageAction, Err: errors.New("open")}, "*tai.RejectedError"},
	}
	for _, c := range cases {
		sr.Reset()
		_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageAction, Name: "action", Kind: "k"})
		sp.End(c.err)
		ended := sr.Ended()
		require.Len(t, ended, 1)
		a := attrs(ended[0])
		assert.Equal(t, codes.Unset, ended[0].Status().Code, "%v", c.err)
		assert.Empty(t, ended[0].Status().Description)
		assert.Equal(t, "rejected", a["taikit.outcome"])
		assert.Equal(t, c.want, a["taikit.rejection.type"], "%v", c.err)
		assert.NotContains(t, a, attribute.Key("error.type"))
	}
}

func TestTracerSkipsStagesOfUnsampledSignals(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	ctx, root := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Name: "payment", Kind: "payment"})
	sctx, stage := tr.Start(ctx, tai.SpanInfo{Stage: tai.StagePolicy, Name: "fraud", Kind: "payment"})
	assert.Equal(t, ctx, sctx, "no new span, no new context")
	assert.Equal(t, root.SpanContext(), stage.SpanContext(), "the stage reports the signal's span")
	assert.True(t, root.SpanContext().TraceID.IsValid(), "an unsampled signal still has a trace ID for logs and audit")
	assert.False(t, root.SpanContext().Sampled)
	stage.End(errors.New("x"))
	root.End(nil)
	assert.Empty(t, rec.Ended())
}

// Every string a span holds is UTF-8, whatever bytes the signal's Kind and
// ID or the names of its hooks held: an OTLP exporter refuses a batch with
// one that is not, and with it the spans of other signals.
func TestTracerRecordsUTF8Only(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp, SignalID: true})
	deny := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Deny, Policy: "black\xfflist"}, nil
	})
	act := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 0, nil })
	p, err := tai.New(deny, act, tai.WithTracer(tr))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.Signal[int]{ID: "idem-\xfe\xff1", Kind: "pay\xc3ment", Key: "c-1"})
	require.Equal(t, tai.Denied, tai.OutcomeOf(err))

	spans := sr.Ended()
	require.NotEmpty(t, spans)
	for _, s := range spans {
		assert.True(t, utf8.ValidString(s.Name()), "%q", s.Name())
		for _, kv := range s.Attributes() {
			assert.True(t, utf8.ValidString(kv.Value.String()), "%s: %q", kv.Key, kv.Value.String())
		}
		a := attrs(s)
		assert.Equal(t, "pay\uFFFDment", a["taikit.kind"], "the valid bytes kept")
		assert.Equal(t, "idem-\uFFFD1", a["taikit.signal.id"])
	}
	root := byName(spans, "pay\uFFFDment")
	require.NotNil(t, root)
	assert.Equal(t, "black\uFFFDlist", attrs(root)["taikit.policy"])
}

// A Provider holding a nil pointer, a provider the program left unset, is
// no provider: the global one makes the spans.
func TestTracerNilPointerProviderIsTheGlobalOne(t *testing.T) {
	sr, tp := newRecorder(t)
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	var unset *sdktrace.TracerProvider
	var tr *kaizenotel.Tracer
	require.NotPanics(t, func() { tr = kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: unset}) })
	_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: "payment"})
	sp.End(nil)
	require.Len(t, sr.Ended(), 1)
	assert.Equal(t, "payment", sr.Ended()[0].Name())
}

// chainErr is an error whose Unwrap reads its receiver: a nil *chainErr
// returned as an error (a typed nil) panics when its chain is walked.
type chainErr struct{ err error }

func (e *chainErr) Error() string { return "chain" }
func (e *chainErr) Unwrap() error { return e.err }

// TestTracerEndsTheSpanWhenTheErrorPanics: a stage that ends with an error
// whose chain cannot be walked (a typed nil) makes End panic, which the
// pipeline recovers; the span is ended all the same, not left open and
// lost from the trace.
func TestTracerEndsTheSpanWhenTheErrorPanics(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	for _, stage := range []tai.Stage{tai.StageSignal, tai.StageAction} {
		sr.Reset()
		_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: stage, Name: "payment", Kind: "payment"})
		var typedNil *chainErr
		require.Panics(t, func() { sp.End(typedNil) }, "the error's chain cannot be walked")
		assert.Len(t, sr.Ended(), 1, "the %v span is ended", stage)
	}
}

// TestZeroTracerUsesTheGlobalProvider: a Tracer declared, not made with
// NewTracer, traces with the global provider instead of failing every
// signal with a nil pointer panic.
func TestZeroTracerUsesTheGlobalProvider(t *testing.T) {
	sr, tp := newRecorder(t)
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	var tr kaizenotel.Tracer
	p, err := tai.New(
		tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}),
		tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }),
		tai.WithTracer(&tr))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.Signal[int]{ID: "s-1", Kind: "payment"})
	require.NoError(t, err)
	assert.Equal(t, tai.Succeeded, res.Outcome)
	spans := sr.Ended()
	require.Len(t, spans, 3, "signal, policy and action")
	root := byName(spans, "payment")
	require.NotNil(t, root)
	assert.Equal(t, kaizenotel.ScopeName, root.InstrumentationScope().Name)
	assert.NotContains(t, attrs(root), attribute.Key("taikit.signal.id"), "no IDs by default")
	assert.Equal(t, tai.TraceID(root.SpanContext().TraceID()), res.Span.TraceID)
}

// TestTracerFailsTheSpanWhenTheErrorPanics: an action that returns a
// typed nil whose chain cannot be walked fails its signal (the pipeline
// recovers the panic of reading it); its span ends failed too, with
// error.type the Go type of the error, not with status Unset as a stage
// that succeeded.
func TestTracerFailsTheSpanWhenTheErrorPanics(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	p, err := tai.New(
		tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}),
		tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
			var typedNil *chainErr
			return 0, typedNil
		}),
		tai.WithTracer(tr))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.Signal[int]{ID: "s-1", Kind: "payment"})
	require.Equal(t, tai.Failed, tai.OutcomeOf(err))

	action := byName(sr.Ended(), "action")
	require.NotNil(t, action, "the action's span is ended")
	assert.Equal(t, codes.Error, action.Status().Code, "the action failed")
	assert.Equal(t, "*kaizenotel_test.chainErr", action.Status().Description)
	assert.Equal(t, "*kaizenotel_test.chainErr", attrs(action)["error.type"])
	assert.Equal(t, codes.Error, byName(sr.Ended(), "payment").Status().Code)

	sr.Reset()
	_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Name: "payment", Kind: "payment"})
	var typedNil *chainErr
	require.Panics(t, func() { sp.End(typedNil) })
	require.Len(t, sr.Ended(), 1)
	root := sr.Ended()[0]
	assert.Equal(t, codes.Error, root.Status().Code)
	assert.Equal(t, "failed", attrs(root)["taikit.outcome"])
}

// A denial by a policy without a name records no taikit.policy: an empty
// value would read as a policy's name.
func TestTracerOmitsAnEmptyPolicyName(t *testing.T) {
	sr, tp := newRecorder(t)
	deny := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Deny}, nil
	})
	act := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 0, nil })
	for _, pol := range []tai.Policy[int]{deny, tai.Any[int](deny, deny)} {
		p, err := tai.New[int, int](pol, act, tai.WithTracer(kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})))
		require.NoError(t, err)
		_, err = p.Process(context.Background(), tai.Signal[int]{ID: "s1", Kind: "payment", Key: "k"})
		require.Equal(t, tai.Denied, tai.OutcomeOf(err))
	}
	spans := sr.Ended()
	roots := 0
	for _, s := range spans {
		if s.Name() == "payment" {
			roots++
		}
	}
	require.Equal(t, 2, roots)
	require.Greater(t, len(spans), roots, "and the policies' spans")
	for _, s := range spans {
		a := attrs(s)
		assert.Equal(t, "deny", a["taikit.verdict"], s.Name())
		assert.NotContains(t, a, attribute.Key("taikit.policy"), s.Name())
	}
}

// A stage whose ctx holds a span that is sampled but not recorded — one a
// library made with a no-op provider inside a sampled signal, or the
// signal's span once ended — opens its span: only the stages of a signal
// that is not sampled open none. It opened none, and the stage was lost
// from a sampled trace.
func TestTracerRecordsStagesUnderASampledSpanNotRecorded(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	ctx, root := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Name: "payment", Kind: "payment"})
	lctx, lib := noop.NewTracerProvider().Tracer("lib").Start(ctx, "lib")
	require.False(t, lib.IsRecording())
	require.True(t, lib.SpanContext().IsSampled())
	_, stage := tr.Start(lctx, tai.SpanInfo{Stage: tai.StagePolicy, Name: "fraud", Kind: "payment"})
	assert.NotEqual(t, root.SpanContext(), stage.SpanContext(), "a span of its own")
	stage.End(nil)
	lib.End()
	root.End(nil)
	policy := byName(sr.Ended(), "policy fraud")
	require.NotNil(t, policy, "the stage is in the trace")
	assert.Equal(t, root.SpanContext().SpanID, tai.SpanID(policy.Parent().SpanID()))
}

// The spans' instrumentation scope names the schema of the semantic
// conventions whose attribute (error.type) and values (_OTHER) they
// carry, so a backend can translate them to a later version, as
// kanbanotel's spans do; the zero Tracer's spans too.
func TestTracerScopeNamesTheConventionsSchema(t *testing.T) {
	sr, tp := newRecorder(t)
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	for _, tr := range []*kaizenotel.Tracer{kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp}), new(kaizenotel.Tracer)} {
		_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: "payment"})
		sp.End(errors.New("boom"))
	}
	ended := sr.Ended()
	require.Len(t, ended, 2)
	for _, s := range ended {
		assert.Equal(t, kaizenotel.ScopeName, s.InstrumentationScope().Name)
		assert.Equal(t, "https://opentelemetry.io/schemas/1.43.0", s.InstrumentationScope().SchemaURL)
	}
}

// gaveUpError is the error of a guard that gave up on the action it
// started.
type gaveUpError struct{}

func (*gaveUpError) Error() string { return "gave up" }

// TestTracerNamesAnAbandonedSignalsErrorType: a signal whose guard returned
// while the action it started still ran (tai.ErrAbandoned) fails with the
// guard's error inside tai's own; error.type names the guard's error, the
// most specific one, as it does behind tai's other wrappers, or
// tai.ErrAbandoned when the guard's error says nothing more. It named
// tai's unexported wrapper, *tai.abandonedError, in every case but a
// deadline.
func TestTracerNamesAnAbandonedSignalsErrorType(t *testing.T) {
	for _, c := range []struct {
		name     string
		guardErr error
		want     string
	}{
		{"typed", &gaveUpError{}, "*kaizenotel_test.gaveUpError"},
		{"plain", errors.New("gave up"), "tai.ErrAbandoned"},
		{"none", nil, "tai.ErrAbandoned"},
		{"deadline", context.DeadlineExceeded, "context.DeadlineExceeded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sr, tp := newRecorder(t)
			started, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
			// The guard starts the action on a goroutine of its own and
			// returns once it runs, without waiting for it.
			guard := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
				go func() {
					defer close(done)
					_ = fn(ctx)
				}()
				<-started
				return c.guardErr
			})
			p, err := tai.New(
				tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
					return tai.Decision{Verdict: tai.Allow}, nil
				}),
				tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
					close(started)
					<-release
					return 0, nil
				}),
				tai.WithGuards(guard), tai.WithTracer(kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})))
			require.NoError(t, err)
			_, err = p.Process(context.Background(), tai.Signal[int]{ID: "s-1", Kind: "payment"})
			close(release)
			<-done
			require.ErrorIs(t, err, tai.ErrAbandoned)
			require.Equal(t, tai.Failed, tai.OutcomeOf(err))
			for _, name := range []string{"action", "payment"} {
				s := byName(sr.Ended(), name)
				require.NotNil(t, s, name)
				assert.Equal(t, codes.Error, s.Status().Code, name)
				assert.Equal(t, c.want, attrs(s)["error.type"], name)
				assert.Equal(t, c.want, s.Status().Description, name)
			}
		})
	}
}

// A signal's ID is cut, at a character boundary, to MaxSignalIDLen bytes:
// an SDK without an AttributeValueLengthLimit would export it whole,
// however long a client made it.
func TestTracerCutsALongSignalID(t *testing.T) {
	sr, tp := newRecorder(t)
	p, err := pipelinetest.New(tai.WithTracer(kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp, SignalID: true})))
	require.NoError(t, err)
	id := "idem-" + strings.Repeat("ü", kaizenotel.MaxSignalIDLen) // a 2-byte character across the cut
	sig := pipelinetest.Signals()[0]
	sig.ID = id
	_, err = p.Process(context.Background(), sig)
	require.NoError(t, err)
	spans := sr.Ended()
	require.NotEmpty(t, spans)
	for _, s := range spans {
		got := attrs(s)["taikit.signal.id"]
		assert.LessOrEqual(t, len(got), kaizenotel.MaxSignalIDLen, "%s", s.Name())
		assert.Greater(t, len(got), kaizenotel.MaxSignalIDLen-utf8.UTFMax, "%s: cut no shorter than a character", s.Name())
		assert.True(t, strings.HasPrefix(id, got) && utf8.ValidString(got), "%s: %q", s.Name(), got)
	}
}
