package andon_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/tai"
)

// docs returns the doc comments of the package's exported functions, by
// name, and of the fields of its exported structs, as "Type.Field".
func docs(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		require.NoError(t, err)
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Doc != nil {
					out[d.Name.Name] = d.Doc.Text()
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					ts, ok := s.(*ast.TypeSpec)
					if !ok {
						continue
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					for _, fl := range st.Fields.List {
						for _, n := range fl.Names {
							out[ts.Name.Name+"."+n.Name] = fl.Doc.Text()
						}
					}
				}
			}
		}
	}
	return out
}

// TestOptionBoundsAreDocumented: every upper bound an option is checked
// against is in its doc comment, and is the bound: a value at it is
// taken, the one past it refused with an error naming the field.
func TestOptionBoundsAreDocumented(t *testing.T) {
	doc := docs(t)
	evaluator := func(opts andon.EvaluatorOptions) error {
		e, err := andon.NewEvaluator(opts)
		if err == nil {
			require.NoError(t, e.Shutdown(context.Background()))
		}
		return err
	}
	board := func(opts andon.BoardOptions) error {
		e := newEvaluator(t, andon.EvaluatorOptions{})
		_, err := andon.NewBoard(e, opts)
		return err
	}
	for _, c := range []struct {
		field string
		max   int
		build func(v int) error
	}{
		{"EvaluatorOptions.HistorySize", 1 << 20, func(v int) error { return evaluator(andon.EvaluatorOptions{HistorySize: v}) }},
		{"EvaluatorOptions.RecentValues", 1000, func(v int) error { return evaluator(andon.EvaluatorOptions{RecentValues: v}) }},
		{"NotifyOptions.QueueSize", 1 << 20, func(v int) error {
			return evaluator(andon.EvaluatorOptions{Notify: andon.NotifyOptions{QueueSize: v}})
		}},
		{"NotifyOptions.MaxAttempts", 100, func(v int) error {
			return evaluator(andon.EvaluatorOptions{Notify: andon.NotifyOptions{MaxAttempts: v}})
		}},
		{"BoardOptions.HistoryLength", 1000, func(v int) error { return board(andon.BoardOptions{HistoryLength: v}) }},
	} {
		t.Run(c.field, func(t *testing.T) {
			require.NoError(t, c.build(c.max), "the bound is taken")
			require.ErrorContains(t, c.build(c.max+1), c.field, "past the bound is refused")
			require.ErrorContains(t, c.build(-1), c.field, "a negative value is refused")
			d, ok := doc[c.field]
			require.True(t, ok, "no field %s", c.field)
			assert.Regexp(t, `\b`+regexp.QuoteMeta(strconv.Itoa(c.max))+`\b`, d, "the doc of %s does not give its bound", c.field)
		})
	}

	// The conditions' arguments checked when the evaluator is built.
	stats := newStats(t, 5*time.Minute)
	for _, c := range []struct {
		fn, bound string
		cond      andon.Condition
	}{
		{"OutcomeRate", "[0, 1)", andon.OutcomeRate(stats, "payment", 5*time.Minute, 1, tai.Denied)},
		{"ErrorRate", "[0, 1)", andon.ErrorRate(stats, "payment", 5*time.Minute, 1)},
		{"VerdictRate", "[0, 1)", andon.VerdictRate(stats, "payment", 5*time.Minute, 1, tai.Deny)},
		{"LatencyQuantile", "(0, 1]", andon.LatencyQuantile(stats, "payment", 5*time.Minute, 1.5, time.Second)},
	} {
		t.Run(c.fn, func(t *testing.T) {
			require.ErrorContains(t, evaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: c.cond}}}),
				"outside "+c.bound)
			assert.Contains(t, doc[c.fn], c.bound, "the doc of %s does not give the bound it is held to", c.fn)
		})
	}
}
