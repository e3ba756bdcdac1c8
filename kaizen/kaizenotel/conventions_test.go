package kaizenotel_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/kaizen/internal/pipelinetest"
	"github.com/taipattern/taikit/kaizen/kaizenotel"
	"github.com/taipattern/taikit/tai"
)

// attributeName is the OpenTelemetry attribute naming rule: lower-case
// components of letters, digits and underscores, separated by dots.
var attributeName = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)

// taikitAttributes are the attributes the Tracer records, and their
// values where they are an enumeration.
var taikitAttributes = map[attribute.Key][]string{
	"taikit.kind":           nil,
	"taikit.stage":          {"signal", "gate", "policy", "action"},
	"taikit.hook":           nil,
	"taikit.signal.id":      nil,
	"taikit.outcome":        {"succeeded", "denied", "rejected", "failed"},
	"taikit.verdict":        {"allow", "review", "deny"},
	"taikit.policy":         nil,
	"taikit.rejection.type": nil,
	"error.type":            nil,
}

// TestSpansFollowTheSemanticConventions runs signals of every outcome,
// and of awkward kinds, through a traced pipeline and checks each span
// against the OpenTelemetry conventions for an instrumentation library:
// kind Internal (the pipeline runs in process); status Unset unless the
// operation failed, never Ok; a failure with status Error, a description,
// and error.type, which a span that did not fail does not carry; attribute
// names in the library's own namespace (error.type aside), lower case and
// dotted, and their values UTF-8.
func TestSpansFollowTheSemanticConventions(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp, SignalID: true})
	p, err := pipelinetest.New(tai.WithTracer(tr))
	require.NoError(t, err)
	signals := pipelinetest.Signals()
	for _, kind := range []string{"ünïcödé 支払い", `quo"te\back`, "new\nline", "bad\xffutf8", strings.Repeat("k", 2000)} {
		s := signals[0]
		s.Kind, s.ID = kind, kind
		signals = append(signals, s)
	}
	want := map[tai.Outcome]int{}
	for _, s := range signals {
		_, err := p.Process(context.Background(), s)
		want[tai.OutcomeOf(err)]++
	}
	// A failed policy, an action that panics and one past its deadline.
	for _, fail := range []func(context.Context, tai.Signal[pipelinetest.Order]) (string, error){
		func(context.Context, tai.Signal[pipelinetest.Order]) (string, error) { panic("bug") },
		func(ctx context.Context, _ tai.Signal[pipelinetest.Order]) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		},
	} {
		p, err := tai.New(tai.PolicyFunc[pipelinetest.Order](func(context.Context, tai.Signal[pipelinetest.Order]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}), tai.ActionFunc[pipelinetest.Order, string](fail), tai.WithTracer(tr))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, err = p.Process(ctx, signals[0])
		cancel()
		require.Equal(t, tai.Failed, tai.OutcomeOf(err))
		want[tai.Failed]++
	}
	bad, err := tai.New(tai.PolicyFunc[pipelinetest.Order](func(context.Context, tai.Signal[pipelinetest.Order]) (tai.Decision, error) {
		return tai.Decision{}, errors.New("rules store down")
	}), tai.ActionFunc[pipelinetest.Order, string](func(context.Context, tai.Signal[pipelinetest.Order]) (string, error) {
		return "ok", nil
	}), tai.WithTracer(tr))
	require.NoError(t, err)
	_, err = bad.Process(context.Background(), signals[0])
	require.Equal(t, tai.Failed, tai.OutcomeOf(err))
	want[tai.Failed]++

	spans := sr.Ended()
	got := map[tai.Outcome]int{}
	for _, s := range spans {
		checkSpanConventions(t, s)
		a := attrs(s)
		if a["taikit.stage"] == "signal" {
			for _, o := range tai.Outcomes() {
				if a["taikit.outcome"] == o.String() {
					got[o]++
				}
			}
		}
	}
	assert.Equal(t, want, got, "a root span for each signal, with its outcome")
}

// checkSpanConventions checks one span; see
// TestSpansFollowTheSemanticConventions.
func checkSpanConventions(t *testing.T, s sdktrace.ReadOnlySpan) {
	t.Helper()
	name := s.Name()
	assert.NotEmpty(t, name)
	assert.True(t, utf8.ValidString(name), "span name %q", name)
	assert.Equal(t, trace.SpanKindInternal, s.SpanKind(), name)
	assert.Equal(t, kaizenotel.ScopeName, s.InstrumentationScope().Name)
	assert.True(t, strings.HasPrefix(s.InstrumentationScope().SchemaURL, "https://opentelemetry.io/schemas/"), name)
	assert.Empty(t, s.Events(), "%s: no events; error.type and the status say what failed", name)

	a := attrs(s)
	for _, kv := range s.Attributes() {
		assert.Regexp(t, attributeName, string(kv.Key), name)
		values, known := taikitAttributes[kv.Key]
		assert.True(t, known, "%s: attribute %s", name, kv.Key)
		assert.Equal(t, attribute.STRING, kv.Value.Type(), "%s: %s", name, kv.Key)
		assert.True(t, utf8.ValidString(kv.Value.AsString()), "%s: %s=%q", name, kv.Key, kv.Value.AsString())
		if values != nil {
			assert.Contains(t, values, kv.Value.AsString(), "%s: %s", name, kv.Key)
		}
	}
	switch stage := a["taikit.stage"]; stage {
	case "signal":
		assert.Equal(t, a["taikit.kind"], name, "a signal's span is named after its kind")
		assert.NotEmpty(t, a["taikit.outcome"], name)
	case "action":
		assert.Equal(t, "action", name)
	case "gate", "policy":
		if h := a["taikit.hook"]; h != "" {
			assert.Equal(t, stage+" "+h, name)
		} else {
			assert.Equal(t, stage, name)
		}
	default:
		t.Errorf("%s: stage %q", name, stage)
	}

	st := s.Status()
	assert.NotEqual(t, codes.Ok, st.Code, "%s: an instrumentation library leaves success Unset", name)
	errType, hasErrType := a["error.type"]
	if st.Code == codes.Error {
		assert.True(t, hasErrType, "%s: a failure sets error.type", name)
		assert.NotEmpty(t, errType, name)
		assert.Equal(t, errType, st.Description, "%s: the description names the error's type, never its message", name)
		if a["taikit.stage"] == "signal" {
			assert.Equal(t, "failed", a["taikit.outcome"], name)
		}
	} else {
		assert.Equal(t, codes.Unset, st.Code, name)
		assert.Empty(t, st.Description, "%s: a description only with Error", name)
		assert.False(t, hasErrType, "%s: error.type only on a failure", name)
		if a["taikit.stage"] == "signal" {
			assert.NotEqual(t, "failed", a["taikit.outcome"], name)
		}
	}
}

// gatewayTimeout names its own error.type, as semconv.ErrorType reads it.
type gatewayTimeout struct{ err error }

func (e *gatewayTimeout) Error() string     { return "gateway timed out: " + e.err.Error() }
func (e *gatewayTimeout) Unwrap() error     { return e.err }
func (e *gatewayTimeout) ErrorType() string { return "gateway_timeout" }

// unnamedType declares no type: its ErrorType returns "".
type unnamedType struct{}

func (unnamedType) Error() string     { return "unnamed" }
func (unnamedType) ErrorType() string { return "" }

// brokenType panics when asked its type, as a nil receiver might.
type brokenType struct{ name *string }

func (e *brokenType) Error() string     { return "broken" }
func (e *brokenType) ErrorType() string { return *e.name }

// TestTracerErrorTypeDeclaredByTheError: an error that names its own type
// with an ErrorType() string method, the convention semconv.ErrorType
// follows, gives error.type (and taikit.rejection.type) that name, also
// behind wrappers and ahead of the context's sentinels it wraps; an empty
// name, or a method that panics, leaves the type as the Tracer names it.
// The method was ignored: the Go type was recorded.
func TestTracerErrorTypeDeclaredByTheError(t *testing.T) {
	sr, tp := newRecorder(t)
	tr := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	gw := &gatewayTimeout{err: context.DeadlineExceeded}
	cases := []struct {
		err  error
		want string
	}{
		{gw, "gateway_timeout"},
		{&tai.StageError{Stage: tai.StageAction, Err: fmt.Errorf("charge: %w", gw)}, "gateway_timeout"},
		{errors.Join(errors.New("first"), gw), "gateway_timeout"},
		{&tai.PolicyError{Policy: "p", Err: unnamedType{}}, "kaizenotel_test.unnamedType"},
		{&brokenType{}, "*kaizenotel_test.brokenType"},
	}
	for _, c := range cases {
		sr.Reset()
		_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageAction, Name: "action", Kind: "k"})
		require.NotPanics(t, func() { sp.End(c.err) })
		ended := sr.Ended()
		require.Len(t, ended, 1)
		assert.Equal(t, c.want, attrs(ended[0])["error.type"], "%v", c.err)
		assert.Equal(t, codes.Error, ended[0].Status().Code)
		assert.Equal(t, c.want, ended[0].Status().Description)
	}

	sr.Reset()
	_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageGate, Name: "limit", Kind: "k"})
	sp.End(&tai.RejectedError{Err: &gatewayTimeout{err: errors.New("busy")}})
	ended := sr.Ended()
	require.Len(t, ended, 1)
	assert.Equal(t, "gateway_timeout", attrs(ended[0])["taikit.rejection.type"])
	assert.Equal(t, codes.Unset, ended[0].Status().Code)
}
