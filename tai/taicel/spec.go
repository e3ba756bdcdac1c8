package taicel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/taipattern/taikit/tai"
)

// Spec describes a rule set: what a rule file holds, and what
// [Env.Compile] compiles.
type Spec struct {
	// Version names this revision of the set, for reload reports and audit
	// trails ("2026-12-02.1", "42"). Required.
	Version string `yaml:"version" json:"version"`
	// Name is the policy's name in decisions and spans. Empty means "cel".
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Thresholds turn the score of the scored rules into a verdict.
	Thresholds Thresholds `yaml:"thresholds,omitempty" json:"thresholds,omitzero"`
	// Sets are named lists of strings; an expression reads the set NAME as
	// sets.NAME, a map whose keys are the list's items, so that
	// `x in sets.NAME` is a constant-time test. A set name is a CEL
	// identifier: a letter or underscore, then letters, digits or
	// underscores, other than in, true, false and null. In a rule file an
	// item with no value (a lone "-", ~ or null) is an error naming the
	// set, the item and its line: a value was forgotten. Write "" for the
	// empty string.
	Sets map[string][]string `yaml:"sets,omitempty" json:"sets,omitempty"`
	// Rules run in order: the verdict rules first, the first true one
	// deciding; then every scored rule. At least one rule. In a rule file
	// an item with no value (a lone "-" left above a rule's commented-out
	// lines, ~ or null) is no rule, and is left out.
	Rules []Rule `yaml:"rules" json:"rules"`
}

// Thresholds are the scores from which a scored set reviews and denies,
// within tai.ScoreTolerance as tai.ScoredOptions. The zero value denies at
// 0.5 and has no review band, as tai.ScoredOptions.
type Thresholds struct {
	// Review is the score at or above which the verdict is Review, in
	// (0, Deny]. Zero means no review band.
	Review float64 `yaml:"review,omitempty" json:"review,omitempty"`
	// Deny is the score at or above which the verdict is Deny, in (0, 1].
	// Zero means 0.5.
	Deny float64 `yaml:"deny,omitempty" json:"deny,omitempty"`
}

// Rule is one CEL rule. It has either a Weight (a scored rule) or a
// Verdict (a verdict rule), not both.
type Rule struct {
	// Name identifies the rule in contributions and errors; unique within
	// a set. It may not be empty, only white space, or begin or end with
	// white space.
	Name string `yaml:"name" json:"name"`
	// Expr is the CEL expression. A scored rule's returns a bool or a
	// double; a verdict rule's a bool.
	Expr string `yaml:"expr" json:"expr"`
	// Weight is the most a scored rule adds to the score: a finite number
	// greater than zero.
	Weight float64 `yaml:"weight,omitempty" json:"weight,omitempty"`
	// Verdict is what a verdict rule decides when its expression is true:
	// allow, review or deny.
	Verdict tai.Verdict `yaml:"verdict,omitempty" json:"verdict,omitzero"`
	// Reason is the reason given when the rule fires; each {{expr}} in it
	// is replaced by the value of the CEL expression expr. Empty means the
	// rule's name.
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`

	// line and column of Expr in the file it was parsed from, and the
	// line where the rule begins; zero when the rule was not parsed from
	// a file.
	line, column, start int
	// reasonLine is the line where Reason begins in the file, zero when
	// unknown; reasonLiteral reports a literal block (|), whose lines
	// are the file's.
	reasonLine    int
	reasonLiteral bool
}

// reasonFileLine returns the line in the file of the byte at offset i of
// r.Reason: exact in a literal block, whose lines are the file's, and
// the line where the reason begins otherwise (a folded or quoted reason
// joins its lines). Zero when the rule was not parsed from a file.
func (r *Rule) reasonFileLine(i int) int {
	if r.reasonLine == 0 {
		return 0
	}
	if r.reasonLiteral {
		return r.reasonLine + strings.Count(r.Reason[:i], "\n")
	}
	return r.reasonLine
}

// fileLine returns " (file line N)" with the line where r begins in the
// file it was parsed from, or "".
func (r *Rule) fileLine() string {
	if r.start == 0 {
		return ""
	}
	return fmt.Sprintf(" (file line %d)", r.start)
}

// Parse reads a Spec from YAML or JSON. Parsing is strict: a field the
// Spec does not have, a key given twice, a value of the wrong type, an
// item of a set with no value (a lone "-", ~ or null), or a second
// document is an error naming the line; an item of the rules with no
// value is no rule, and is left out. The strings of a JSON
// document read as encoding/json reads them, escaped slashes and UTF-16
// surrogate pairs included, which YAML alone refuses, whether or not a
// byte order mark begins the file. A document that is
// not a mapping (a string, a number, a list), or a mapping with none of a
// rule file's keys (version, name, thresholds, sets, rules): another file
// given for a rule file, such as a key, is refused as not a rule file,
// with an error that quotes none of it. Parse checks the shape of the file only;
// Env.Compile checks the rules.
func Parse(data []byte) (*Spec, error) {
	data = yamlOfJSON(data)
	// The tree, read first, tells a rule file from another file given by
	// mistake, whose contents the decoder's error would quote: the first
	// bytes of a key file read as one string.
	var root yaml.Node
	treeErr := yaml.Unmarshal(data, &root)
	switch {
	case treeErr == nil:
		if err := notRuleFile(&root); err != nil {
			return nil, err
		}
	case bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("*")):
		// An alias as the whole document, to an anchor it cannot
		// define: the error would quote the rest of the line as the
		// anchor's name.
		return nil, errors.New("taicel: not a rule file: it begins with '*', an alias, where a rule file holds a mapping (version, rules, ...)")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var spec Spec
	if err := dec.Decode(&spec); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("taicel: rule file is empty")
		}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			// The decoder names the line of a value of the wrong type, but
			// not that of a verdict Verdict.UnmarshalText refused.
			if line := badVerdictLine(data); line > 0 {
				return nil, fmt.Errorf("taicel: line %d: %w", line, err)
			}
		}
		return nil, fmt.Errorf("taicel: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("taicel: %w", err)
		}
		return nil, fmt.Errorf("taicel: line %d: a rule file holds one document", extra.Line)
	}
	// The node tree tells where each rule's expression is, so that
	// compile errors can name the line of the file.
	if treeErr == nil {
		locateExprs(&root, spec.Rules)
		if err := emptySetItem(&root); err != nil {
			return nil, err
		}
	}
	if spec.Version == "" {
		return nil, errors.New("taicel: rule file has no version")
	}
	return &spec, nil
}

// ruleFileKeys are the keys of a rule file's mapping: Spec's fields, in
// order.
var ruleFileKeys = func() []string {
	t := reflect.TypeFor[Spec]()
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i], _, _ = strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
	}
	return keys
}()

// notRuleFile returns an error when root, a document, holds something
// other than a mapping (or nothing), or a mapping with none of
// ruleFileKeys: a string, a number, a list or such a mapping is no rule
// file, but another file given for one, such as a key. The error names
// the kind of value and its line, never the value.
func notRuleFile(root *yaml.Node) error {
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return nil
	}
	n := resolveAlias(root.Content[0])
	var what string
	switch {
	case n.Kind == yaml.MappingNode:
		// A mapping with none of a rule file's keys is another file: the
		// decoder's error would name each of its keys, which may be key
		// material themselves ("sk_live_...: x").
		for i := 0; i < len(n.Content); i += 2 {
			if slices.Contains(ruleFileKeys, n.Content[i].Value) {
				return nil
			}
		}
		if len(n.Content) == 0 {
			return nil
		}
		return fmt.Errorf("taicel: not a rule file: the mapping at line %d has none of a rule file's keys (%s)", n.Line, strings.Join(ruleFileKeys, ", "))
	case isNull(n):
		return nil
	case n.Kind == yaml.SequenceNode:
		what = "a list"
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		what = "a string"
	default:
		what = "a single value"
	}
	return fmt.Errorf("taicel: not a rule file: line %d holds %s where a rule file holds a mapping (version, rules, ...)", n.Line, what)
}

// yamlOfJSON returns data, a JSON document, with the strings YAML reads
// otherwise than JSON written as YAML reads them as JSON does: an escaped
// slash unescaped; a UTF-16 surrogate pair as the one \U escape of its
// character and a lone surrogate as U+FFFD, as encoding/json reads it;
// and the characters YAML takes for line breaks (U+0085, U+2028,
// U+2029) or refuses (DEL, C1 controls, U+FEFF, U+FFFE, U+FFFF)
// escaped. A byte order mark before the document, which YAML allows
// and readers of JSON skip, is kept. No line changes, so errors name the
// lines of the file. Data that is not JSON, or needs none of this, is
// returned as it is.
func yamlOfJSON(data []byte) []byte {
	doc := bytes.TrimPrefix(data, []byte(byteOrderMark))
	if !json.Valid(doc) || !needsYAMLEscapes(doc) {
		return data
	}
	out := make([]byte, 0, len(data)+len(data)/8)
	out = append(out, data[:len(data)-len(doc)]...)
	data = doc
	in := false // inside a string
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case !in:
			in = c == '"'
		case c == '"':
			in = false
		case c == '\\':
			switch data[i+1] {
			case '/':
				out = append(out, '/')
				i += 2
				continue
			case 'u':
				r := hex4(data[i+2 : i+6])
				if !utf16.IsSurrogate(r) {
					break
				}
				n := 6
				if i+12 <= len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
					if pair := utf16.DecodeRune(r, hex4(data[i+8:i+12])); pair != utf8.RuneError {
						r, n = pair, 12
					}
				}
				if n == 6 {
					r = utf8.RuneError
				}
				out = fmt.Appendf(out, "\\U%08X", r)
				i += n
				continue
			}
			out = append(out, data[i:i+2]...)
			i += 2
			continue
		case c >= 0x7f:
			r, n := utf8.DecodeRune(data[i:])
			if yamlBreakOrRefused(r) {
				out = fmt.Appendf(out, "\\u%04X", r)
			} else {
				out = append(out, data[i:i+n]...)
			}
			i += n
			continue
		}
		out = append(out, c)
		i++
	}
	return out
}

// byteOrderMark is U+FEFF in UTF-8, which a file may begin with.
const byteOrderMark = "\uFEFF"

// needsYAMLEscapes reports whether JSON data holds what yamlOfJSON
// rewrites, or may: an escaped slash or surrogate, or a byte outside
// ASCII.
func needsYAMLEscapes(data []byte) bool {
	for i, c := range data {
		if c >= 0x7f || c == '\\' && i+1 < len(data) && (data[i+1] == '/' || data[i+1] == 'u') {
			return true
		}
	}
	return false
}

// yamlBreakOrRefused reports whether YAML reads r, written as it is in a
// double-quoted scalar, as a line break or refuses it as not printable.
func yamlBreakOrRefused(r rune) bool {
	switch {
	case r == 0x85, r == 0x2028, r == 0x2029, r == 0xfeff:
		return true
	case r >= 0x7f && r <= 0x9f, r == 0xfffe, r == 0xffff:
		return true
	}
	return false
}

// hex4 returns the value of four hex digits, which json.Valid checked.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		default:
			r = r<<4 | rune(c-'A'+10)
		}
	}
	return r
}

// MaxRuleFileBytes is the largest rule file ParseFile and a Loader read:
// a file larger is refused without being read whole (a path given by
// mistake, a log or a device, is not read into memory every Interval).
// A rule file of a thousand rules is far smaller.
const MaxRuleFileBytes = 4 << 20

// readRuleFile reads the rule file at path, at most MaxRuleFileBytes.
func readRuleFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRuleFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxRuleFileBytes {
		return nil, fmt.Errorf("%s holds more than %d bytes (MaxRuleFileBytes)", path, MaxRuleFileBytes)
	}
	return data, nil
}

// ParseFile reads and parses the rule file at path; a file larger than
// MaxRuleFileBytes is an error.
func ParseFile(path string) (*Spec, error) {
	data, err := readRuleFile(path)
	if err != nil {
		return nil, fmt.Errorf("taicel: %w", err)
	}
	spec, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

// locateExprs records where each rule and its expr are in the document.
func locateExprs(root *yaml.Node, rules []Rule) {
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return
	}
	seq := mappingValue(root.Content[0], "rules")
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return
	}
	i := 0
	for _, item := range seq.Content {
		if isNull(item) {
			continue // the decoder leaves an empty item out of Rules
		}
		if i >= len(rules) {
			return
		}
		rules[i].start = item.Line
		if v := ruleValue(item, "expr"); v != nil {
			rules[i].line, rules[i].column = v.Line, v.Column
			// A block scalar (| or >) starts on the line after its
			// indicator.
			if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
				rules[i].line, rules[i].column = v.Line+1, 0
			}
		}
		if v := ruleValue(item, "reason"); v != nil {
			rules[i].reasonLine = v.Line
			if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
				rules[i].reasonLine = v.Line + 1
				rules[i].reasonLiteral = v.Style&yaml.LiteralStyle != 0
			}
		}
		i++
	}
}

// ruleValue returns the value of key in the rule item, a mapping, as
// the decoder reads it: a key of the mapping itself or else, through its
// merge key (<<: *base, <<: [*a, *b]), the value the first of the
// merged mappings has, followed through their own merge keys. So a rule
// that takes its expr or its reason from another mapping is located
// where that mapping has it: the text in error is there, and the
// line:column of an error within it counts from there. Parse locates
// rules once the decoder has read them, which refuses an alias within
// its own anchor: a merge cannot lead back to where it began.
func ruleValue(item *yaml.Node, key string) *yaml.Node {
	item = resolveAlias(item)
	if item.Kind != yaml.MappingNode {
		return nil
	}
	var merged *yaml.Node
	for i := 0; i+1 < len(item.Content); i += 2 {
		switch k := item.Content[i]; {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			merged = resolveAlias(item.Content[i+1])
		case k.Value == key:
			return item.Content[i+1]
		}
	}
	switch {
	case merged == nil:
		return nil
	case merged.Kind == yaml.SequenceNode:
		for _, m := range merged.Content {
			if v := ruleValue(m, key); v != nil {
				return v
			}
		}
		return nil
	}
	return ruleValue(merged, key)
}

// emptySetItem returns an error naming the first item of a set, in the
// document root, that is a null (a lone "-", "~", "null"), which the
// decoder would leave out of the set without a word. A set's items are
// one a line, so a null one is no item commented out (that comments out
// its "-" too) but a value forgotten; an empty rule item, a "-" left
// above a rule's commented-out lines, is no rule.
func emptySetItem(root *yaml.Node) error {
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return nil
	}
	sets := resolveAlias(mappingValue(resolveAlias(root.Content[0]), "sets"))
	if sets == nil || sets.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(sets.Content); i += 2 {
		items := resolveAlias(sets.Content[i+1])
		if items.Kind != yaml.SequenceNode {
			continue
		}
		for j, item := range items.Content {
			if isNull(item) {
				return fmt.Errorf(`taicel: line %d: item %d of set %q is empty; a set holds strings (write "" for an empty one)`, item.Line, j, sets.Content[i].Value)
			}
		}
	}
	return nil
}

// resolveAlias returns the node n is an alias of, or n.
func resolveAlias(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// isNull reports whether n is a null ("", "~", "null"), or an alias of
// one: an item of a sequence that the decoder does not decode into a
// struct.
func isNull(n *yaml.Node) bool {
	n = resolveAlias(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// badVerdictLine returns the line of the first rule's verdict that is not
// one, or 0.
func badVerdictLine(data []byte) int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return 0
	}
	seq := mappingValue(root.Content[0], "rules")
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return 0
	}
	for _, item := range seq.Content {
		var v tai.Verdict
		if n := mappingValue(item, "verdict"); n != nil && n.Kind == yaml.ScalarNode && n.Tag != "!!null" && v.UnmarshalText([]byte(n.Value)) != nil {
			return n.Line
		}
	}
	return 0
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
