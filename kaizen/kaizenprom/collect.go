package kaizenprom

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taipattern/taikit/internal/typednil"
)

// CollectorOptions configures the collectors of the other TPS packages
// (JidokaCollector, HeijunkaCollector, KanbanCollector). The zero value
// uses namespace "taikit" and no constant labels.
type CollectorOptions struct {
	// Namespace prefixes every metric name. Empty means "taikit". It must
	// be a valid Prometheus name without a colon, which Prometheus keeps
	// for recording rules: letters, digits and underscores, not starting
	// with a digit.
	Namespace string
	// ConstLabels are added to every metric. Each name must be a
	// Prometheus label name, [a-zA-Z_][a-zA-Z0-9_]* ("service_name", not
	// "service-name"), not starting with "__", which Prometheus reserves;
	// each value must be valid UTF-8. A collector refuses the labels of its
	// own metrics: "breaker", "state", "line" and "watchdog" the
	// JidokaCollector, "limiter" and "result" the HeijunkaCollector,
	// "queue" the KanbanCollector; and the KanbanCollector, which has a
	// histogram, refuses "le": Prometheus keeps it for the bucket bounds.
	ConstLabels prometheus.Labels
}

// defaultNamespace prefixes the metric names when no Namespace is given.
const defaultNamespace = "taikit"

// metricName matches the part of a metric name a program may choose:
// the Prometheus name syntax without colons, which Prometheus keeps for
// the names of recording rules (promtool check metrics refuses them).
var metricName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// labelName matches a Prometheus label name in the classic syntax, which
// every version of Prometheus and of the exposition formats takes as it is.
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// checkName returns an error naming field when value is not a valid
// metric name, or holds a colon.
func checkName(field, value string) error {
	if !metricName.MatchString(value) {
		return fmt.Errorf("%s %q is not a valid metric name (letters, digits and underscores, not starting with a digit)", field, value)
	}
	return nil
}

// checkConstLabels returns an error naming field when a constant label's
// name is not a Prometheus label name or is reserved, or its value is not
// valid UTF-8. client_golang takes any UTF-8 name, but the text exposition
// escapes one such as "service-name" to "service_name", where it meets a
// label of that name; older Prometheus servers and promtool refuse it
// unescaped. Names starting with "__" are Prometheus' own (__name__).
func checkConstLabels(field string, labels prometheus.Labels) error {
	for _, name := range slices.Sorted(maps.Keys(labels)) {
		if strings.HasPrefix(name, "__") {
			return fmt.Errorf("%s: %q is not a label name a program may choose: names starting with \"__\" are reserved for Prometheus", field, name)
		}
		if !labelName.MatchString(name) {
			return fmt.Errorf("%s: %q is not a valid label name: letters, digits and underscores, not starting with a digit ([a-zA-Z_][a-zA-Z0-9_]*)", field, name)
		}
		if !utf8.ValidString(labels[name]) {
			return fmt.Errorf("%s: the value of %q, %q, is not valid UTF-8", field, name, labels[name])
		}
	}
	return nil
}

// checkNotVariable returns an error naming field when labels, constant
// labels, hold one of variable, the labels of the metrics they are added
// to: client_golang refuses the descriptor, with an error that names
// neither the field nor the label.
func checkNotVariable(field string, labels prometheus.Labels, variable []string) error {
	for _, l := range variable {
		if _, ok := labels[l]; ok {
			return fmt.Errorf("%s: %q is a label of the metrics; it cannot be a constant label", field, l)
		}
	}
	return nil
}

// checkHistogramLabels returns an error naming field when labels, the
// constant labels of a histogram, hold "le": Prometheus keeps it for the
// bucket bounds, and client_golang panics at the first observation.
func checkHistogramLabels(field string, labels prometheus.Labels) error {
	if _, ok := labels["le"]; ok {
		return fmt.Errorf("%s: %q is the bucket label of a histogram; it cannot be a constant label", field, "le")
	}
	return nil
}

// checkRegisterer rejects a nil Registerer, or one holding a nil pointer
// (a *prometheus.Registry left unset, whose Register panics): the package
// never falls back to the global registry. It also rejects one that
// panics when asked to unregister a collector it cannot hold, as a nil
// *prometheus.Registry behind prometheus.WrapRegistererWith does: its
// Register would panic too, once it had started a goroutine that then
// never ends.
func checkRegisterer(reg prometheus.Registerer, who string) error {
	if reg == nil || typednil.Holds(reg) {
		return errors.New("kaizenprom: " + who + ": nil prometheus.Registerer; pass prometheus.NewRegistry() or prometheus.DefaultRegisterer")
	}
	if p := unregisterPanic(reg); p != nil {
		return fmt.Errorf("kaizenprom: %s: the prometheus.Registerer panicked (a nil *prometheus.Registry behind a wrapper?): %v", who, p)
	}
	return nil
}

// unregisterPanic asks reg to unregister a collector of no metrics, which
// no registerer holds and whose Describe returns at once, and returns what
// that call panicked with, nil when it did not.
func unregisterPanic(reg prometheus.Registerer) (p any) {
	defer func() { p = recover() }()
	reg.Unregister(noMetrics{})
	return nil
}

// noMetrics is a collector of no metrics.
type noMetrics struct{}

func (noMetrics) Describe(chan<- *prometheus.Desc) {}
func (noMetrics) Collect(chan<- prometheus.Metric) {}

// register registers c with reg. When reg already holds a collector of
// the same type with the same descriptors (made with the same options),
// it returns that one instead, so registering twice neither panics nor
// exports a series twice.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	var zero C
	return zero, fmt.Errorf("kaizenprom: registering metrics: %w", err)
}

// registerNew is register, and appends c to added when reg took it now
// rather than returning a collector it already held.
func registerNew[C prometheus.Collector](reg prometheus.Registerer, added *[]prometheus.Collector, c C) (C, error) {
	got, err := register(reg, c)
	if err == nil && prometheus.Collector(got) == prometheus.Collector(c) {
		*added = append(*added, c)
	}
	return got, err
}

// families is the part every collector shares: it names the metric
// families under the options' namespace, keeps their descriptors and
// describes them.
type families struct {
	namespace string
	labels    prometheus.Labels
	descs     []*prometheus.Desc
}

// newFamilies checks what the constructor who was given and returns the
// families of a collector to build, whose metrics have the variable
// labels named labels.
func newFamilies(reg prometheus.Registerer, opts CollectorOptions, who string, labels ...string) (*families, error) {
	if err := checkRegisterer(reg, who); err != nil {
		return nil, err
	}
	ns := opts.Namespace
	if ns == "" {
		ns = defaultNamespace
	}
	if err := checkName("CollectorOptions.Namespace", ns); err != nil {
		return nil, fmt.Errorf("kaizenprom: %s: %w", who, err)
	}
	if err := checkConstLabels("CollectorOptions.ConstLabels", opts.ConstLabels); err != nil {
		return nil, fmt.Errorf("kaizenprom: %s: %w", who, err)
	}
	if err := checkNotVariable("CollectorOptions.ConstLabels", opts.ConstLabels, labels); err != nil {
		return nil, fmt.Errorf("kaizenprom: %s: %w", who, err)
	}
	return &families{namespace: ns, labels: opts.ConstLabels}, nil
}

// desc returns the descriptor of the family namespace_name, with the
// variable labels given, and keeps it for Describe.
func (f *families) desc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(prometheus.BuildFQName(f.namespace, "", name), help, labels, f.labels)
	f.descs = append(f.descs, d)
	return d
}

// Describe sends the descriptors of every metric of the collector: none
// for a collector its constructor did not make, whose families are nil.
func (f *families) Describe(ch chan<- *prometheus.Desc) {
	if f == nil {
		return
	}
	for _, d := range f.descs {
		ch <- d
	}
}

// send emits one sample, or an invalid metric that fails the scrape with
// the reason when a label value is not valid.
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// named is a source of a collector with the label value it is exported
// under.
type named[T any] struct {
	name string
	src  T
}

// sources are the things of one kind (breakers, lines, queues...) a
// collector reads at every scrape, each under a unique, non-empty name.
// The zero value is empty and ready; it is safe for concurrent use.
type sources[T any] struct {
	mu    sync.Mutex
	items []named[T]
}

// add adds src under name. what names the kind of thing in errors.
func (s *sources[T]) add(what, name string, src T) error {
	if err := checkLabel(what, name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.items, func(x named[T]) bool { return x.name == name }) {
		return fmt.Errorf("kaizenprom: a %s named %q is collected already", what, name)
	}
	s.items = append(s.items, named[T]{name: name, src: src})
	return nil
}

// remove removes the source named name and reports whether there was one.
func (s *sources[T]) remove(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.items)
	s.items = slices.DeleteFunc(s.items, func(x named[T]) bool { return x.name == name })
	return len(s.items) < n
}

// has reports whether a source named name is held.
func (s *sources[T]) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.items, func(x named[T]) bool { return x.name == name })
}

// list returns the sources, to read without holding the lock.
func (s *sources[T]) list() []named[T] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.items)
}

// checkLabel returns an error when name cannot label the series of the
// what it names: empty, or not valid UTF-8, which would make every scrape
// fail.
func checkLabel(what, name string) error {
	if name == "" {
		return fmt.Errorf("kaizenprom: the %s has no name; the collector labels its series with it", what)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("kaizenprom: the %s's name %q is not valid UTF-8; the collector labels its series with it", what, name)
	}
	return nil
}

// errNotMade is the error of a method of a collector, named by its type,
// that its constructor did not make (its zero value): it has no families
// to export what it is given in.
func errNotMade(method, collector string) error {
	return fmt.Errorf("kaizenprom: %s: the %s was not made by New%s; it has no metrics to export in", method, collector, collector)
}

// errNil is the error of an Add method given a nil source.
func errNil(method, what string) error {
	return fmt.Errorf("kaizenprom: %s: nil %s", method, what)
}
