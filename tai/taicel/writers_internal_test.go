package taicel

import (
	"fmt"
	"testing"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteCountAgreesWithTheExtension formats values of every kind a
// clause takes with the strings extension's format and checks that
// writeCount counts what it wrote: exactly for %s, %d, %b, %o and %x,
// and for %f and %e at most what it wrote and at least all but the
// digit a rounding may add.
func TestWriteCountAgreesWithTheExtension(t *testing.T) {
	env, err := cel.NewEnv(ext.Strings())
	require.NoError(t, err)
	eval := func(t *testing.T, expr string) any {
		t.Helper()
		ast, iss := env.Compile(expr)
		require.NoError(t, iss.Err(), expr)
		prg, err := env.Program(ast)
		require.NoError(t, err, expr)
		out, _, err := prg.Eval(cel.NoVars())
		require.NoError(t, err, expr)
		return out
	}
	numbers := []string{
		"0", "-1", "7", "9223372036854775807", "-9223372036854775808", "0u", "18446744073709551615u",
		"0.0", "-0.0", "1.5", "-2.25", "0.1", "1e-7", "123456.789", "1e308", "-1.7976931348623157e308",
		"5e-324", "-5e-324", "9.5", "0.5", "99.99999999", "-0.0000001",
		`double("NaN")`, `double("Infinity")`, `-double("Infinity")`,
	}
	integers := []string{"0", "-1", "255", "9223372036854775807", "-9223372036854775808", "0u", "18446744073709551615u"}
	others := []string{
		"true", "false", "null", "int", "type(1.0)", `"ü😀"`, `b"\xff\x00"`, `""`,
		`duration("1.5s")`, `duration("-300ms")`, `duration("0s")`, `duration("2562047h47m16.854775807s")`, `duration("-0.000000001s")`,
		`timestamp("2024-01-02T03:04:05.123456789Z")`, `timestamp("0001-01-01T00:00:00Z")`,
		`timestamp("2024-01-02T03:04:05+05:00")`, `timestamp("9999-12-31T23:59:59.999999999Z")`,
		`[1, 2u, 3.5, "x", [true, null]]`, `{"b": 2.5, 1: [duration("2s")], true: {"x": b"y"}}`, `[]`, `{}`,
	}
	type clause struct {
		verb   string
		values []string
		exact  bool
	}
	clauses := []clause{
		{"%s", append(append([]string{}, numbers...), others...), true},
		{"%d", numbers, true},
		{"%b", append([]string{"true", "false"}, integers...), true},
		{"%o", integers, true},
		{"%x", append([]string{`"ü😀"`, `b"\xff\x00"`}, integers...), true},
		{"%X", integers, true},
	}
	for _, verb := range []string{"%f", "%.0f", "%.2f", "%.30f", "%.100f", "%e", "%.0e", "%.3e", "%.100e"} {
		clauses = append(clauses, clause{verb, numbers, false})
	}
	for _, c := range clauses {
		for _, v := range c.values {
			format := "<" + c.verb + "|%%|" + c.verb + ">"
			args := fmt.Sprintf("[%s, %s]", v, v)
			t.Run(c.verb+" "+v, func(t *testing.T) {
				out, ok := eval(t, fmt.Sprintf("%q.format(%s)", format, args)).(types.String)
				require.True(t, ok)
				list, ok := eval(t, args).(traits.Lister)
				require.True(t, ok)
				n := writeCount{over: func(uint64) bool { return false }}
				n.format(format, list)
				if c.exact {
					assert.Equal(t, uint64(len(out)), n.n, "%q", out)
					return
				}
				assert.LessOrEqual(t, n.n, uint64(len(out)), "%q", out)
				assert.GreaterOrEqual(t, n.n+2, uint64(len(out)), "%q", out) // a rounding's digit in each clause
			})
		}
	}
}

// TestFormatPrecision checks the precisions counted against the ones
// the extension takes.
func TestFormatPrecision(t *testing.T) {
	env, err := cel.NewEnv(ext.Strings())
	require.NoError(t, err)
	for _, digits := range []string{"", "0", "000", "7", "0012", "99", "100", "0100", "101", "1000", "999999", "123456789012345678901234567890"} {
		p, ok := formatPrecision(digits)
		ast, iss := env.Compile(`"` + "%." + digits + `f".format([1.0])`)
		if iss.Err() != nil {
			assert.False(t, ok, "%q: the extension refuses it: %v", digits, iss.Err())
			continue
		}
		prg, err := env.Program(ast)
		require.NoError(t, err)
		out, _, err := prg.Eval(cel.NoVars())
		require.NoError(t, err)
		require.True(t, ok, digits)
		want := 0
		if s := string(out.(types.String)); len(s) > 1 {
			want = len(s) - 2 // "1." and the digits
		}
		assert.Equal(t, uint64(want), p, digits)
	}
}
