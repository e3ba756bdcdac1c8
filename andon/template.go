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
	"unicode/utf8"
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
	"humanize1024":       acceptAny(humanize1024),
	"humanizeTimestamp":  humanizeTimestamp,
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
	var prefix string
	if math.Abs(v) >= 1 {
		v, prefix = largePrefix(v, 1000, "k", "M", "G", "T", "P", "E", "Z", "Y")
	} else {
		v, prefix = smallPrefix(v)
	}
	return fmt.Sprintf("%.4g%s", v, prefix)
}

// largePrefix divides v by base while it is at least base, up to the
// last of prefixes, and returns it with the prefix of its scale ("" if
// it was below base).
func largePrefix(v, base float64, prefixes ...string) (float64, string) {
	prefix := ""
	for _, p := range prefixes {
		if math.Abs(v) < base {
			break
		}
		prefix = p
		v /= base
	}
	return v, prefix
}

// humanize1024 writes v with a binary prefix ("ki" to "Yi") and four
// significant digits, as Prometheus's humanize1024 does.
func humanize1024(v float64) string {
	if math.Abs(v) <= 1 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	v, prefix := largePrefix(v, 1024, "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi")
	return fmt.Sprintf("%.4g%s", v, prefix)
}

// humanizeTimestamp writes i, seconds since the Unix epoch, as a UTC time
// to the millisecond, as Prometheus's humanizeTimestamp does:
// "2015-06-23 13:19:44.128 +0000 UTC".
func humanizeTimestamp(i any) (string, error) {
	v, err := convertToFloat(i)
	if err != nil {
		return "", err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v), nil
	}
	ns := v * 1e9
	if ns > math.MaxInt64 || ns < math.MinInt64 {
		return "", fmt.Errorf("%v cannot be represented as a nanoseconds timestamp since it overflows int64", v)
	}
	return time.UnixMilli(int64(ns) / 1e6).UTC().String(), nil
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

// title upper-cases the first cased letter of every word and leaves the
// rest as it is, as Prometheus's title does (it is golang.org/x/text's
// cases.Title(language.AmericanEnglish, cases.NoLower)). Words are told
// apart as that package tells them, by an approximation of Unicode's word
// breaks (UAX #29): "hello_world" is one word, and so are "don't" and
// "a.b", but not "it”s"; a digit does not begin a word, so "3rd" is
// "3Rd". A letter whose title case is more than one letter becomes them,
// as ß becomes Ss.
func title(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inWord, wasMid := false, false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		raw := s[i : i+size] // an invalid byte is copied, and breaks words
		i += size
		mid := isMidWord(r)
		if wasMid && mid {
			inWord = false // two in a row end the word
		}
		wasMid = mid
		switch {
		case !isCased(r):
			b.WriteString(raw)
			if !mid && !isWordPart(r) {
				inWord = false
			}
		case inWord:
			b.WriteString(raw)
		default:
			if t, ok := fullTitle[r]; ok {
				b.WriteString(t)
			} else {
				b.WriteRune(unicode.ToTitle(r))
			}
			inWord = true
		}
	}
	return b.String()
}

// isCased reports whether r has case: Unicode's Cased property.
func isCased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.In(r, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// isMidWord reports whether r may join two parts of a word but not be
// doubled in one: the word break classes MidLetter, MidNumLet and
// Single_Quote.
func isMidWord(r rune) bool {
	switch r {
	case '\'', '.', ':', 0x00B7, 0x0387, 0x055F, 0x05F4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return false
}

// isWordPart reports whether an uncased r continues a word: the word
// break classes ALetter, Hebrew_Letter, Numeric, Extend, ExtendNumLet,
// Format and ZWJ. Letters of scripts written without spaces (Han, kana,
// Thai and others) break words, as in cases.Title.
func isWordPart(r rune) bool {
	switch {
	case r == 0x200B: // zero width space
		return false
	case r == 0x202F: // narrow no-break space
		return true
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc, unicode.Cf, unicode.Pc, unicode.Nd, wordSymbols):
		return true
	case unicode.IsLetter(r) || unicode.Is(unicode.Nl, r):
		return !unicode.In(r, breakingLetters...)
	}
	return false
}

var (
	// wordSymbols are the symbols and punctuation that are ALetter or
	// Extend in Unicode's word breaks.
	wordSymbols = &unicode.RangeTable{
		R16: []unicode.Range16{
			{Lo: 0x02C2, Hi: 0x02C5, Stride: 1}, {Lo: 0x02D2, Hi: 0x02D7, Stride: 1},
			{Lo: 0x02DE, Hi: 0x02DF, Stride: 1}, {Lo: 0x02E5, Hi: 0x02EB, Stride: 1},
			{Lo: 0x02ED, Hi: 0x02ED, Stride: 1}, {Lo: 0x02EF, Hi: 0x02FF, Stride: 1},
			{Lo: 0x055A, Hi: 0x055C, Stride: 1}, {Lo: 0x055E, Hi: 0x055E, Stride: 1},
			{Lo: 0x058A, Hi: 0x058A, Stride: 1}, {Lo: 0x05F3, Hi: 0x05F3, Stride: 1},
			{Lo: 0x066B, Hi: 0x066B, Stride: 1}, {Lo: 0xA708, Hi: 0xA716, Stride: 1},
			{Lo: 0xA720, Hi: 0xA721, Stride: 1}, {Lo: 0xA789, Hi: 0xA78A, Stride: 1},
			{Lo: 0xAB5B, Hi: 0xAB5B, Stride: 1},
		},
		R32: []unicode.Range32{{Lo: 0x1F3FB, Hi: 0x1F3FF, Stride: 1}}, // skin tones
	}
	// breakingLetters are the letters that are not ALetter in Unicode's
	// word breaks.
	breakingLetters = []*unicode.RangeTable{
		unicode.Ideographic, unicode.Hiragana, unicode.Katakana, kanaMarks,
		unicode.Thai, unicode.Lao, unicode.Myanmar, unicode.Khmer, unicode.Tai_Tham,
		unicode.Tai_Viet, unicode.New_Tai_Lue, unicode.Tai_Le, unicode.Ahom,
	}
	kanaMarks = &unicode.RangeTable{R16: []unicode.Range16{
		{Lo: 0x3031, Hi: 0x3035, Stride: 1}, {Lo: 0x30FC, Hi: 0x30FC, Stride: 1}, {Lo: 0xFF70, Hi: 0xFF70, Stride: 1},
	}}
)

// fullTitle are the letters whose title case is more than one rune
// (Unicode's SpecialCasing: ß is Ss, ﬁ is Fi), which unicode.ToTitle
// leaves as they are.
var fullTitle = map[rune]string{
	'\u00df': "Ss", '\u0149': "\u02bcN", '\u01f0': "J\u030c", '\u0390': "\u0399\u0308\u0301",
	'\u03b0': "\u03a5\u0308\u0301", '\u0587': "\u0535\u0582", '\u1e96': "H\u0331", '\u1e97': "T\u0308",
	'\u1e98': "W\u030a", '\u1e99': "Y\u030a", '\u1e9a': "A\u02be", '\u1f50': "\u03a5\u0313",
	'\u1f52': "\u03a5\u0313\u0300", '\u1f54': "\u03a5\u0313\u0301", '\u1f56': "\u03a5\u0313\u0342", '\u1fb2': "\u1fba\u0345",
	'\u1fb4': "\u0386\u0345", '\u1fb6': "\u0391\u0342", '\u1fb7': "\u0391\u0342\u0345", '\u1fc2': "\u1fca\u0345",
	'\u1fc4': "\u0389\u0345", '\u1fc6': "\u0397\u0342", '\u1fc7': "\u0397\u0342\u0345", '\u1fd2': "\u0399\u0308\u0300",
	'\u1fd3': "\u0399\u0308\u0301", '\u1fd6': "\u0399\u0342", '\u1fd7': "\u0399\u0308\u0342", '\u1fe2': "\u03a5\u0308\u0300",
	'\u1fe3': "\u03a5\u0308\u0301", '\u1fe4': "\u03a1\u0313", '\u1fe6': "\u03a5\u0342", '\u1fe7': "\u03a5\u0308\u0342",
	'\u1ff2': "\u1ffa\u0345", '\u1ff4': "\u038f\u0345", '\u1ff6': "\u03a9\u0342", '\u1ff7': "\u03a9\u0342\u0345",
	'\ufb00': "Ff", '\ufb01': "Fi", '\ufb02': "Fl", '\ufb03': "Ffi",
	'\ufb04': "Ffl", '\ufb05': "St", '\ufb06': "St", '\ufb13': "\u0544\u0576",
	'\ufb14': "\u0544\u0565", '\ufb15': "\u0544\u056b", '\ufb16': "\u054e\u0576", '\ufb17': "\u0544\u056d",
}
