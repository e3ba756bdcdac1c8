package andon

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"
)

// templateData is what annotation templates see. Labels and Value are
// what Prometheus gives its alert templates, so templates that use only
// them (and $labels, $value) work in exported rules too.
type templateData struct {
	Labels         map[string]string
	ExternalLabels map[string]string
	ExternalURL    string
	Value          float64
	Threshold      float64
	Detail         string
}

// templateDefs defines the variables Prometheus defines for its alert
// templates.
const templateDefs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"

// templateFuncs are the Prometheus template functions annotations commonly
// use, with Prometheus's formatting.
var templateFuncs = template.FuncMap{
	"humanize":           acceptAny(humanize),
	"humanizePercentage": acceptAny(func(v float64) string { return fmt.Sprintf("%.4g%%", v*100) }),
	"humanizeDuration":   acceptAny(humanizeDuration),
	"title":              title,
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
}

// compileTemplate parses text as an annotation template; "" gives nil.
func compileTemplate(name, text string) (*template.Template, error) {
	if text == "" {
		return nil, nil
	}
	t, err := template.New(name).Funcs(templateFuncs).Option("missingkey=zero").Parse(templateDefs + text)
	if err != nil {
		return nil, fmt.Errorf("%s template: %w", name, err)
	}
	return t, nil
}

// render executes t; an error is written into the text, as Prometheus
// does, so the alert still goes out.
func render(t *template.Template, d *templateData) string {
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "<error expanding template: " + err.Error() + ">"
	}
	return b.String()
}

// annotationTemplates are the compiled annotations of a rule.
type annotationTemplates struct {
	summary, description *template.Template
	runbook              string
	extra                map[string]*template.Template
}

func compileAnnotations(r *Rule) (annotationTemplates, error) {
	var a annotationTemplates
	var err error
	if a.summary, err = compileTemplate("Summary", r.Summary); err != nil {
		return a, err
	}
	if a.description, err = compileTemplate("Description", r.Description); err != nil {
		return a, err
	}
	a.runbook = r.RunbookURL
	for _, k := range slices.Sorted(maps.Keys(r.Annotations)) {
		t, err := compileTemplate("Annotations["+k+"]", r.Annotations[k])
		if err != nil {
			return a, err
		}
		if t != nil {
			if a.extra == nil {
				a.extra = map[string]*template.Template{}
			}
			a.extra[k] = t
		}
	}
	return a, nil
}

// render returns the annotations of rule r measured as m.
func (a *annotationTemplates) render(r *Rule, labels map[string]string, m Measurement) map[string]string {
	d := &templateData{Labels: labels, Value: m.Value, Threshold: m.Threshold, Detail: m.Detail}
	out := make(map[string]string, 3+len(a.extra))
	if a.summary != nil {
		out["summary"] = render(a.summary, d)
	} else {
		out["summary"] = defaultSummary(r, m)
	}
	if a.description != nil {
		out["description"] = render(a.description, d)
	}
	if a.runbook != "" {
		out["runbook_url"] = a.runbook
	}
	for k, t := range a.extra {
		out[k] = render(t, d)
	}
	return out
}

// acceptAny makes f take what Prometheus's template functions take in
// place of a float64: a number (float64, int, int64, uint, uint64), a
// time.Duration as seconds, or a string of a number ("1234", "NaN"), so
// that {{ 1234 | humanize }} and {{ $labels.limit | humanize }} give in an
// alert what they give in Prometheus, and fail with the same error on
// anything else.
func acceptAny(f func(float64) string) func(any) (string, error) {
	return func(i any) (string, error) {
		v, err := convertToFloat(i)
		if err != nil {
			return "", err
		}
		return f(v), nil
	}
}

// convertToFloat converts i as Prometheus's template functions do, with
// the same errors.
func convertToFloat(i any) (float64, error) {
	switch v := i.(type) {
	case float64:
		return v, nil
	case string:
		return strconv.ParseFloat(v, 64)
	case int:
		return float64(v), nil
	case uint:
		return float64(v), nil
	case int64:
		return float64(v), nil
	case uint64:
		return float64(v), nil
	case time.Duration:
		return v.Seconds(), nil
	}
	return 0, fmt.Errorf("can't convert %T to float", i)
}

// humanize writes v with an SI prefix and four significant digits, as
// Prometheus's humanize does.
func humanize(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	prefix := ""
	if math.Abs(v) >= 1 {
		for _, p := range []string{"k", "M", "G", "T", "P", "E", "Z", "Y"} {
			if math.Abs(v) < 1000 {
				break
			}
			prefix = p
			v /= 1000
		}
		return fmt.Sprintf("%.4g%s", v, prefix)
	}
	v, prefix = smallPrefix(v)
	return fmt.Sprintf("%.4g%s", v, prefix)
}

// smallPrefix scales a non-zero v below 1 into [1, 1000) and returns it with
// its SI prefix ("m" to "y"); a v of 1 or more comes back as it is.
func smallPrefix(v float64) (float64, string) {
	prefix := ""
	for _, p := range []string{"m", "u", "n", "p", "f", "a", "z", "y"} {
		if math.Abs(v) >= 1 {
			break
		}
		prefix = p
		v *= 1000
	}
	return v, prefix
}

// humanizeDuration writes v seconds as Prometheus's humanizeDuration
// does: "1d 2h 3m 4s", "5.2s", "250ms".
func humanizeDuration(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	if v == 0 {
		return fmt.Sprintf("%.4gs", v)
	}
	if math.Abs(v) >= 1 {
		sign := ""
		if v < 0 {
			sign, v = "-", -v
		}
		d := int64(v)
		seconds, minutes, hours, days := d%60, (d/60)%60, (d/3600)%24, d/86400
		switch {
		case days != 0:
			return fmt.Sprintf("%s%dd %dh %dm %ds", sign, days, hours, minutes, seconds)
		case hours != 0:
			return fmt.Sprintf("%s%dh %dm %ds", sign, hours, minutes, seconds)
		case minutes != 0:
			return fmt.Sprintf("%s%dm %ds", sign, minutes, seconds)
		}
		return fmt.Sprintf("%s%.4gs", sign, v)
	}
	v, prefix := smallPrefix(v)
	return fmt.Sprintf("%.4g%ss", v, prefix)
}

// title upper-cases the first letter of every word.
func title(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		defer func() { prev = r }()
		if unicode.IsSpace(prev) || unicode.IsPunct(prev) {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}
