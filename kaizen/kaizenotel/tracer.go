package kaizenotel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/taipattern/taikit/internal/modversion"
	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/internal/utf8text"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/tai"
)

// ScopeName is the OpenTelemetry instrumentation scope of the spans a
// Tracer opens: the import path of this package.
const ScopeName = "github.com/taipattern/taikit/kaizen/kaizenotel"

// TracerOptions configures a Tracer. The zero value uses the global
// TracerProvider and records no signal IDs.
type TracerOptions struct {
	// Provider makes the tracer. Nil, or a nil pointer (a provider left
	// unset), means otel.GetTracerProvider(), read once by NewTracer; the
	// Tracer never sets a global.
	Provider trace.TracerProvider
	// SignalID records the signal's ID on its spans as taikit.signal.id.
	// Off by default: an ID can be an idempotency key a client chose. The
	// signal's Key is never recorded. The ID is cut to MaxSignalIDLen
	// bytes.
	SignalID bool
}

// MaxSignalIDLen is the length, in bytes, a signal's ID is cut to in
// taikit.signal.id (TracerOptions.SignalID), at a character boundary: a
// client may choose IDs of any length, and an OpenTelemetry SDK cuts
// attribute values only when its AttributeValueLengthLimit is set.
const MaxSignalIDLen = 256

// Tracer is a tai.Tracer that records OpenTelemetry spans: a root span per
// signal (named after its Kind) with a child per stage — each gate
// ("gate <name>"), the policy ("policy <name>") with a child per policy or
// rule a combinator evaluates, and the action ("action"). Attributes:
// taikit.kind, taikit.stage, taikit.hook (the gate's or policy's name),
// and on the root taikit.outcome.
//
// A failed stage ends with status Error and error.type set to the name an
// error in its chain gives itself with an ErrorType() string method, as
// semconv.ErrorType reads it, or else to the Go type of the most specific
// error in its chain (or context.DeadlineExceeded, context.Canceled;
// tai.ErrAbandoned for a signal a guard abandoned whose error says
// nothing more; "_OTHER" for a plain message); the status description is
// that same name, not the error's message, which can carry a key or
// payload. A denial is an answer, not an error: its span keeps status
// Unset and records taikit.verdict and, when the decision names one,
// taikit.policy. A rejection (a gate or guard shedding load) is not a
// failure of the span either: it keeps status Unset and records
// taikit.outcome "rejected" and taikit.rejection.type, the type of the
// gate's or guard's error named as error.type would name it.
//
// A Kind, hook name, policy name or signal ID that is not UTF-8 is
// recorded with U+FFFD in place of each run of bytes that is not: OTLP
// carries UTF-8 alone, and an exporter refuses a batch holding anything
// else.
// A signal ID is cut to MaxSignalIDLen bytes, at a character boundary.
//
// A Tracer builds the name and attributes of the spans of a kind, stage
// and hook name once and keeps them, for up to 1024 of them, each with a
// Kind and hook name of at most 256 bytes together, so that kinds made
// up from input cannot make it grow without bound. Past either bound a
// span's name and attributes are built for it alone: the span is the
// same, and costs a few allocations more.
//
// The zero Tracer is ready to use: it makes its spans with the global
// TracerProvider as it is at each span (otel.GetTracerProvider) and
// records no signal IDs, as NewTracer does with zero TracerOptions.
type Tracer struct {
	tracer   trace.Tracer
	signalID bool

	// shapes holds, per kind, stage and hook name, the span name and
	// start options, built once: a span then starts without building
	// them again. Copied on write; at most maxShapes entries, each of a
	// kind and name of at most maxShapeKey bytes.
	shapes   atomic.Pointer[map[spanKey]*spanShape]
	shapesMu sync.Mutex
}

// maxShapes bounds Tracer.shapes: kinds and hook names come from code, but
// a program could make kinds up as it runs.
const maxShapes = 1024

// maxShapeKey bounds the bytes of the Kind and hook name of a shape kept
// in Tracer.shapes, so that maxShapes bounds its memory too: a longer one
// (a kind made up from input) is built for its span alone. It bounds each
// shape rather than their sum, so that a few long kinds cannot take the
// room of every kind after them.
const maxShapeKey = 256

type spanKey struct {
	stage      tai.Stage
	kind, name string
}

type spanShape struct {
	name string
	opts []trace.SpanStartOption // shared by every span of the shape: never appended to
}

// NewTracer returns a Tracer whose spans come from opts.Provider under the
// scope ScopeName, versioned with the version of the module that holds
// this package, with the schema URL of the version of the semantic
// conventions its error.type follows, https://opentelemetry.io/schemas/1.43.0.
func NewTracer(opts TracerOptions) *Tracer {
	tp := opts.Provider
	if tp == nil || typednil.Holds(tp) {
		tp = otel.GetTracerProvider()
	}
	return &Tracer{tracer: tracerOf(tp), signalID: opts.SignalID}
}

// tracerOf returns tp's tracer under the scope ScopeName, with the schema
// URL of the semantic conventions, so a backend can translate error.type
// to a later version.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	return tp.Tracer(ScopeName, trace.WithInstrumentationVersion(moduleVersion()), trace.WithSchemaURL(semconv.SchemaURL))
}

// moduleVersion is the version, in the running binary, of the module
// that holds this package, "(devel)" when it is built from its own tree.
var moduleVersion = sync.OnceValue(func() string { return modversion.Running(ScopeName) })

// Attribute keys of the spans.
const (
	attrKind     = attribute.Key("taikit.kind")
	attrStage    = attribute.Key("taikit.stage")
	attrHook     = attribute.Key("taikit.hook")
	attrSignalID = attribute.Key("taikit.signal.id")
	attrOutcome  = attribute.Key("taikit.outcome")
	attrVerdict  = attribute.Key("taikit.verdict")
	attrPolicy   = attribute.Key("taikit.policy")
	attrErrType  = semconv.ErrorTypeKey
	attrRejected = attribute.Key("taikit.rejection.type")
)

// Start opens the span of a stage. The StageSignal span's context carries
// the Tracer (tai.ContextWithTracer), so combinators trace their children.
//
// Inside a signal whose span is not recorded (not sampled), a stage opens
// no span at all: it would not be recorded either, and the SDK would still
// pay for its identifiers and context. Its SpanContext is the signal's. A
// stage under a span that is sampled, recorded or not, opens its own.
func (t *Tracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage != tai.StageSignal {
		// A span sampled but not recorded (one a no-op provider made
		// inside the signal, or an ended one) is no sign of an unsampled
		// signal: the stage then gets a span of its own.
		parent := trace.SpanFromContext(ctx)
		if psc := parent.SpanContext(); !parent.IsRecording() && psc.IsValid() && !psc.IsSampled() {
			if u, ok := ctx.Value(unrecordedKey{}).(*unrecorded); ok && u.sc.Equal(psc) {
				return ctx, u // the signal's own, made when it started
			}
			return ctx, &unrecorded{sc: psc}
		}
	}
	shape := t.shape(info)
	opts := shape.opts
	if t.signalID {
		opts = append(opts[:len(opts):len(opts)], trace.WithAttributes(attrSignalID.String(utf8text.Cut(info.SignalID, MaxSignalIDLen))))
	}
	tr := t.tracer
	if tr == nil {
		// The zero Tracer: the global provider, as it is now.
		tr = tracerOf(otel.GetTracerProvider())
	}
	ctx, sp := tr.Start(ctx, shape.name, opts...)
	if !sp.IsRecording() {
		// Not sampled: ending it records nothing, and its stages and
		// combinator children open no spans either (see above); they
		// find this value in the context rather than make their own.
		u := &unrecorded{sc: sp.SpanContext()}
		if info.Stage == tai.StageSignal {
			ctx = context.WithValue(ctx, unrecordedKey{}, u)
		}
		return ctx, u
	}
	if info.Stage == tai.StageSignal {
		ctx = tai.ContextWithTracer(ctx, t)
	}
	return ctx, &span{span: sp, root: info.Stage == tai.StageSignal}
}

type span struct {
	span trace.Span
	root bool
}

// shape returns the name and start options of info's span.
func (t *Tracer) shape(info tai.SpanInfo) *spanShape {
	k := spanKey{stage: info.Stage, kind: info.Kind, name: info.Name}
	m := t.shapes.Load()
	if m != nil {
		if s, ok := (*m)[k]; ok {
			return s
		}
	}
	kind := utf8text.Clean(info.Kind)
	name := kind
	attrs := []attribute.KeyValue{attrKind.String(kind), attrStage.String(info.Stage.String())}
	if info.Stage != tai.StageSignal {
		name = info.Stage.String()
		if info.Name != "" && info.Name != name {
			hook := utf8text.Clean(info.Name)
			name += " " + hook
			attrs = append(attrs, attrHook.String(hook))
		}
	}
	s := &spanShape{name: name, opts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...)}}
	if len(k.kind)+len(k.name) > maxShapeKey || (m != nil && len(*m) >= maxShapes) {
		return s // not kept, and no lock taken to learn it
	}
	t.shapesMu.Lock()
	defer t.shapesMu.Unlock()
	old := t.shapes.Load()
	if old != nil && len(*old) >= maxShapes {
		return s
	}
	next := make(map[spanKey]*spanShape, 1+len(ptrMap(old)))
	for k, v := range ptrMap(old) {
		next[k] = v
	}
	next[k] = s
	t.shapes.Store(&next)
	return s
}

func ptrMap(m *map[spanKey]*spanShape) map[spanKey]*spanShape {
	if m == nil {
		return nil
	}
	return *m
}

// unrecorded is the span of a signal that is not sampled, and of its
// stages.
type unrecorded struct{ sc trace.SpanContext }

// unrecordedKey holds, in the context of an unsampled signal, its
// *unrecorded, which its stages share.
type unrecordedKey struct{}

func (*unrecorded) End(error) {}

func (u *unrecorded) SpanContext() tai.SpanContext { return spanContextOf(u.sc) }

// End records the outcome and closes the span. The span is closed even
// when reading err panics (a typed nil whose Unwrap reads its receiver):
// the pipeline recovers the panic and fails the signal with it, so the
// span ends failed, its error.type the Go type of err, and is not left
// open.
func (s *span) End(err error) {
	read := false
	defer func() {
		if !read {
			t := fmt.Sprintf("%T", err)
			if s.root {
				s.span.SetAttributes(attrOutcome.String(tai.Failed.String()))
			}
			s.span.SetAttributes(attrErrType.String(t))
			s.span.SetStatus(codes.Error, t)
		}
		s.span.End()
	}()
	s.record(err)
	read = true
}

// record sets the attributes and status of the outcome err gives.
func (s *span) record(err error) {
	o := tai.OutcomeOf(err)
	if s.root {
		s.span.SetAttributes(attrOutcome.String(o.String()))
	}
	switch o {
	case tai.Succeeded:
	case tai.Denied:
		var de *tai.DeniedError
		if errors.As(err, &de) {
			s.span.SetAttributes(attrVerdict.String(de.Decision.Verdict.String()))
			if de.Decision.Policy != "" {
				// Left out when the policy has no name: an empty value
				// would read as one.
				s.span.SetAttributes(attrPolicy.String(utf8text.Clean(de.Decision.Policy)))
			}
		}
	case tai.Rejected:
		if s.root {
			s.span.SetAttributes(attrRejected.String(errorType(err)))
		} else {
			s.span.SetAttributes(attrOutcome.String(o.String()), attrRejected.String(errorType(err)))
		}
	default:
		t := errorType(err)
		s.span.SetAttributes(attrErrType.String(t))
		s.span.SetStatus(codes.Error, t)
	}
}

// SpanContext returns the span's trace and span IDs.
func (s *span) SpanContext() tai.SpanContext { return spanContextOf(s.span.SpanContext()) }

func spanContextOf(sc trace.SpanContext) tai.SpanContext {
	return tai.SpanContext{TraceID: tai.TraceID(sc.TraceID()), SpanID: tai.SpanID(sc.SpanID()), Sampled: sc.IsSampled()}
}

// errorType names an error for the error.type attribute: the name an
// error in the chain gives itself (declaredType), else the context's
// sentinel errors by name, else the Go type of the deepest error in the
// chain that is more specific than a tai wrapper or a plain message (the
// error of an abandoned signal is such a wrapper, named tai.ErrAbandoned
// when nothing in it is more specific). The errors joined by errors.Join
// (or any Unwrap() []error) are searched in order, depth first, as
// errors.As searches them.
func errorType(err error) string {
	if name := declaredType(err); name != "" {
		return name
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "context.DeadlineExceeded"
	case errors.Is(err, context.Canceled):
		return "context.Canceled"
	}
	name, _ := specificType(err, "_OTHER")
	return name
}

// declaredType returns the name that the first error in the tree of err
// with an ErrorType() string method gives itself, as semconv.ErrorType
// reads it: an error that names its class ("gateway_timeout") is the
// best judge of it. The tree is searched depth first, in the order
// errors.As searches it, by hand: errors.As allocates and costs several
// times as much (an As method is not asked). The name is cleaned to
// UTF-8, which OTLP carries alone; it is "" when no error has the method,
// the first one returns "", or reading the tree panics (a nil receiver),
// and the Tracer then names the error itself.
func declaredType(err error) (name string) {
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	name, _ = declaredIn(err)
	return name
}

// declaredIn is declaredType without the recover; found reports whether
// an error with the method was met, which ends the search.
func declaredIn(err error) (name string, found bool) {
	for err != nil {
		if d, ok := err.(interface{ ErrorType() string }); ok {
			return utf8text.Clean(d.ErrorType()), true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if name, found := declaredIn(e); found {
					return name, true
				}
			}
			return "", false
		default:
			return "", false
		}
	}
	return "", false
}

// specificType walks the tree of err for errorType. name is the answer so
// far (the type of a tai wrapper around err, or "_OTHER"); it returns the
// answer, and true once it found an error that is neither a tai wrapper
// nor a plain message, which ends the search.
func specificType(err error, name string) (string, bool) {
	for e := err; e != nil; {
		switch t := fmt.Sprintf("%T", e); t {
		case "*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError":
		default:
			if isAbandonment(e) {
				// Named by its sentinel: its type is tai's own, not
				// exported, and may change.
				name = "tai.ErrAbandoned"
				break
			}
			name = t
			if !isTaiWrapper(e) {
				return name, true // the hook's or action's own error
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			// Of joined errors, the first with a specific one in its
			// tree; else what the first branch found.
			best := ""
			for _, c := range u.Unwrap() {
				n, found := specificType(c, name)
				if found {
					return n, true
				}
				if best == "" {
					best = n
				}
			}
			return cmp.Or(best, name), false
		default:
			return name, false
		}
	}
	return name, false
}

// isAbandonment reports whether err is the error of a signal whose guard
// returned while the action it started still ran: it wraps
// tai.ErrAbandoned, beside the guards' own error, which is the more
// specific. (ErrAbandoned's type is comparable, so == cannot panic.)
func isAbandonment(err error) bool {
	u, ok := err.(interface{ Unwrap() []error })
	return ok && err != tai.ErrAbandoned && slices.Contains(u.Unwrap(), tai.ErrAbandoned)
}

func isTaiWrapper(err error) bool {
	switch err.(type) {
	case *tai.RejectedError, *tai.PolicyError, *tai.StageError, *tai.PanicError:
		return true
	}
	return false
}
