package taicel

import (
	"errors"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/functions"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// errWritesOverLimit is the error of a replace, a join or a format that
// would write a string longer than the cost limit: one that costs more
// than the limit once written. evalError reports it as ErrCostLimit.
var errWritesOverLimit = errors.New("taicel: the string written would cost more than the limit")

// boundedWriters replaces the functions of the strings extension that
// write a string as long as the product of their inputs' lengths,
// string.replace (a match replaced by a string as long as the input)
// and list.join (a separator as long as the input between each of a
// list's items), with the same functions that first work out how long
// their result is and refuse to write one whose length alone costs
// more than maxCost. CEL counts a unit per character they write, but
// only once it is written: a field of 10,000 characters replaced into
// itself made 100 MB before the evaluation stopped, and one of 100,000
// would have made 10 GB. A result within the limit is written as the
// extension writes it. string.format, which writes a list as often as
// a list holds it, is checked the same way before the extension's
// format writes it (boundedFormat).
//
// A string's cost is its length in characters, and a character takes
// at most four bytes, so a result of more than 4 × maxCost bytes is
// refused: its cost is sure to exceed maxCost. An expression whose cost
// CEL bounds when it compiles never meets the refusal: its bound, within
// maxCost, counts the length of what it writes.
func boundedWriters(maxCost uint64) cel.EnvOption {
	over := func(hi, lo uint64) bool { return hi != 0 || lo/4 > maxCost }
	replace := func(str, old, new string, n int) ref.Val {
		if n != 0 && old != new {
			k := uint64(strings.Count(str, old))
			if n > 0 {
				k = min(k, uint64(n))
			}
			hi, lo := bits.Mul64(k, uint64(len(new)))
			lo, carry := bits.Add64(lo, uint64(len(str))-k*uint64(len(old)), 0)
			if over(hi+carry, lo) {
				return types.WrapErr(errWritesOverLimit)
			}
		}
		return types.String(strings.Replace(str, old, new, n))
	}
	join := func(list ref.Val, sep string) ref.Val {
		l := list.(traits.Lister)
		size := int64(l.Size().(types.Int))
		var hi, lo, carry uint64
		if size > 0 {
			hi, lo = bits.Mul64(uint64(size-1), uint64(len(sep)))
		}
		for i := range size {
			s, ok := l.Get(types.Int(i)).(types.String)
			if !ok {
				return types.NewErr("join: invalid input: %v", l.Get(types.Int(i)))
			}
			lo, carry = bits.Add64(lo, uint64(len(s)), 0)
			if hi += carry; over(hi, lo) {
				return types.WrapErr(errWritesOverLimit)
			}
		}
		if over(hi, lo) {
			return types.WrapErr(errWritesOverLimit)
		}
		var b strings.Builder
		b.Grow(int(lo))
		for i := range size {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(string(l.Get(types.Int(i)).(types.String)))
		}
		return types.String(b.String())
	}
	str := cel.StringType
	return cel.Lib(writersLib{opts: []cel.EnvOption{
		boundedFormat(func(n uint64) bool { return over(0, n) }),
		cel.Function("replace",
			cel.MemberOverload("string_replace_string_string", []*cel.Type{str, str, str}, str,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					return replace(string(args[0].(types.String)), string(args[1].(types.String)), string(args[2].(types.String)), -1)
				})),
			cel.MemberOverload("string_replace_string_string_int", []*cel.Type{str, str, str, cel.IntType}, str,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					return replace(string(args[0].(types.String)), string(args[1].(types.String)), string(args[2].(types.String)), int(args[3].(types.Int)))
				}))),
		cel.Function("join",
			cel.MemberOverload("list_join", []*cel.Type{cel.ListType(str)}, str,
				cel.UnaryBinding(func(list ref.Val) ref.Val { return join(list, "") })),
			cel.MemberOverload("list_join_string", []*cel.Type{cel.ListType(str), str}, str,
				cel.BinaryBinding(func(list, sep ref.Val) ref.Val { return join(list, string(sep.(types.String))) }))),
	}})
}

// writersLib adds boundedWriters' functions as a library, so that they
// are declared after the strings extension's, whose bindings they
// replace.
type writersLib struct{ opts []cel.EnvOption }

func (l writersLib) CompileOptions() []cel.EnvOption { return l.opts }

func (writersLib) ProgramOptions() []cel.ProgramOption { return nil }

// boundedFormat wraps the string.format the environment has, the
// strings extension's, in a check of how long its result is: over
// tells a length in bytes that costs more than the limit. format writes
// each argument of its list, and a list or a map within it as each of
// its items, keys and values between brackets and separators, so a
// list that holds one long string many times, or a list that holds
// such a list many times, is written as many times: a field of 300,000
// characters in a list of 300 made 90 MB (and 700 MB allocated) before
// CEL counted what was written. A writeCount counts what it writes of
// the strings and bytes, with the brackets and separators, without
// writing it; a format whose count alone is over the limit is refused,
// and another is written by the extension's format. The count goes no
// further once it is over the limit, so counting takes no longer than
// writing a string within the limit would.
//
// An environment without string.format (the strings extension before
// its version 1) is left as it is.
func boundedFormat(over func(n uint64) bool) cel.EnvOption {
	return func(e *cel.Env) (*cel.Env, error) {
		fn := e.Functions()["format"]
		if fn == nil {
			return e, nil
		}
		bindings, err := fn.Bindings()
		if err != nil {
			return nil, err
		}
		var format functions.FunctionOp
		for _, b := range bindings {
			if b.Operator == "string_format" {
				format = b.Function
			}
		}
		if format == nil {
			return e, nil
		}
		return cel.Function("format",
			cel.MemberOverload("string_format", []*cel.Type{cel.StringType, cel.ListType(cel.DynType)}, cel.StringType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					str, ok := args[0].(types.String)
					list, isList := args[1].(traits.Lister)
					if ok && isList {
						c := writeCount{over: over}
						if c.format(string(str), list); c.over(c.n) {
							return types.WrapErr(errWritesOverLimit)
						}
					}
					return format(args...)
				})))(e)
	}
}

// writeCount counts bytes that string.format writes: at most what it
// writes, and exactly what it writes of strings, bytes, numbers and the
// other values a %s clause takes. Once over(n) holds, it counts no
// further.
type writeCount struct {
	n    uint64 // bytes counted, at most math.MaxUint64
	over func(n uint64) bool
	// buf holds a number written to be counted: 327 bytes, the longest
	// a double is in the extension's shortest decimal form
	// (-5e-324 as -0.000…0005).
	buf [328]byte
}

func (c *writeCount) add(k uint64) {
	var carry uint64
	if c.n, carry = bits.Add64(c.n, k, 0); carry != 0 {
		c.n = math.MaxUint64
	}
}

// format counts what f.format(args) writes: the text of f, each %% as
// a %, and what each clause writes of its argument. It stops at the
// first clause the extension's format refuses (a clause cut short, an
// unknown verb, one argument too few), where format stops too.
func (c *writeCount) format(f string, args traits.Lister) {
	size, _ := args.Size().(types.Int)
	var arg types.Int
	for f != "" && !c.over(c.n) {
		i := strings.IndexByte(f, '%')
		if i < 0 {
			c.add(uint64(len(f)))
			return
		}
		c.add(uint64(i))
		f = f[i+1:]
		if strings.HasPrefix(f, "%") {
			c.add(1)
			f = f[1:]
			continue
		}
		j := 0 // the verb's index, after a precision (".2")
		precision, ok := uint64(6), true
		if strings.HasPrefix(f, ".") {
			for j = 1; j < len(f) && '0' <= f[j] && f[j] <= '9'; j++ {
			}
			precision, ok = formatPrecision(f[1:j])
		}
		if !ok || j >= len(f) || arg >= size {
			return
		}
		switch v := args.Get(arg); f[j] {
		case 's':
			c.value(v)
		case 'd':
			c.decimal(v)
		case 'f':
			c.fixed(v, precision)
		case 'e':
			c.scientific(v, precision)
		case 'b':
			c.integer(v, 2)
		case 'o':
			c.integer(v, 8)
		case 'x', 'X':
			// Two hex digits a byte.
			switch v := v.(type) {
			case types.String:
				c.add(2 * uint64(len(v)))
			case types.Bytes:
				c.add(2 * uint64(len(v)))
			default:
				c.integer(v, 16)
			}
		default:
			return
		}
		arg++
		f = f[j+1:]
	}
}

// maxFormatPrecision is the largest precision the strings extension's
// %f and %e take, as it has since its version 5; it refuses a larger one.
const maxFormatPrecision = 100

// formatPrecision returns the precision of a %f or %e clause whose
// digits are digits, and false when the extension refuses it: no
// digits ("%.f"), or more than maxFormatPrecision.
func formatPrecision(digits string) (uint64, bool) {
	if digits == "" {
		return 0, false
	}
	var p uint64
	for i := 0; i < len(digits); i++ {
		if p = p*10 + uint64(digits[i]-'0'); p > maxFormatPrecision {
			return 0, false
		}
	}
	return p, true
}

// value counts what a %s clause writes of v: a string or bytes as they
// are, a list as "[" its items, ", " between them, "]", a map as "{"
// its entries (key, ": ", value), ", " between them, "}", and a number,
// bool, duration, timestamp, null or type as the extension writes it;
// any other value as the one character it writes at least.
func (c *writeCount) value(v ref.Val) {
	switch v := v.(type) {
	case types.String:
		c.add(uint64(len(v)))
	case types.Bytes:
		c.add(uint64(len(v)))
	case types.Bool:
		c.add(uint64(len(strconv.AppendBool(c.buf[:0], bool(v)))))
	case types.Int, types.Uint, types.Double:
		c.decimal(v)
	case types.Duration:
		c.add(uint64(len(strconv.AppendFloat(c.buf[:0], v.Seconds(), 'f', -1, 64))) + 1) // and "s"
	case types.Timestamp:
		c.add(uint64(len(v.UTC().AppendFormat(c.buf[:0], time.RFC3339Nano))))
	case types.Null:
		c.add(4)
	case ref.Type:
		c.add(uint64(len(v.TypeName())))
	case traits.Lister:
		c.add(2) // []
		for it, first := v.Iterator(), true; it.HasNext() == types.True && !c.over(c.n); first = false {
			if !first {
				c.add(2) // ", "
			}
			c.value(it.Next())
		}
	case traits.Mapper:
		c.add(2) // {}
		for it, first := v.Iterator(), true; it.HasNext() == types.True && !c.over(c.n); first = false {
			if !first {
				c.add(2) // ", "
			}
			k := it.Next()
			c.value(k)
			c.add(2) // ": "
			if val, found := v.Find(k); found {
				c.value(val)
			}
		}
	default:
		c.add(1)
	}
}

// decimal counts what a %d clause, or a %s one, writes of a number: an
// integer's digits, a double in its shortest decimal form, without an
// exponent (1e308 is 309 digits), and NaN and the infinities by name.
func (c *writeCount) decimal(v ref.Val) {
	switch v := v.(type) {
	case types.Int, types.Uint:
		c.integer(v, 10)
	case types.Double:
		if n := nonFinite(float64(v)); n > 0 {
			c.add(n)
			return
		}
		c.add(uint64(len(strconv.AppendFloat(c.buf[:0], float64(v), 'f', -1, 64))))
	default:
		c.add(1)
	}
}

// integer counts the digits of an int or uint in base; any other value
// as one character.
func (c *writeCount) integer(v ref.Val, base int) {
	switch v := v.(type) {
	case types.Int:
		c.add(uint64(len(strconv.AppendInt(c.buf[:0], int64(v), base))))
	case types.Uint:
		c.add(uint64(len(strconv.AppendUint(c.buf[:0], uint64(v), base))))
	default:
		c.add(1)
	}
}

// fixed counts at least what a %f clause of the precision writes of a
// number: its sign, its integer part's digits, and the point and the
// precision's digits (fmt's "%.6f"); NaN and the infinities by name.
// Rounding may write one digit more.
func (c *writeCount) fixed(v ref.Val, precision uint64) {
	x, ok := c.signed(v)
	if !ok {
		return
	}
	c.add(uint64(len(strconv.AppendFloat(c.buf[:0], math.Trunc(x), 'f', 0, 64))))
	if precision > 0 {
		c.add(1 + precision)
	}
}

// scientific counts at least what a %e clause of the precision writes
// of a number: its sign, a digit, the point and the precision's digits,
// and an exponent of at least two digits (fmt's "%1.6e", 1.500000e+03);
// NaN and the infinities by name.
func (c *writeCount) scientific(v ref.Val, precision uint64) {
	if _, ok := c.signed(v); !ok {
		return
	}
	c.add(1 + 4) // a digit, "e+03"
	if precision > 0 {
		c.add(1 + precision)
	}
}

// signed counts what a %f or %e clause writes of v up to its digits: the
// whole of a value that is not a number (one character at least) or is
// NaN or an infinity (its name), else a number's sign. It returns the
// number's absolute value, and false when the clause is counted whole.
func (c *writeCount) signed(v ref.Val) (float64, bool) {
	x, ok := number(v)
	if !ok {
		c.add(1)
		return 0, false
	}
	if n := nonFinite(x); n > 0 {
		c.add(n)
		return 0, false
	}
	if x < 0 {
		c.add(1)
	}
	return math.Abs(x), true
}

// number returns the value of an int, a uint or a double as a float64,
// as the extension's %f and %e take them.
func number(v ref.Val) (float64, bool) {
	switch v := v.(type) {
	case types.Int:
		return float64(v), true
	case types.Uint:
		return float64(v), true
	case types.Double:
		return float64(v), true
	}
	return 0, false
}

// nonFinite returns the length of the name the extension writes for x
// when x is NaN or an infinity, and 0 for any other x.
func nonFinite(x float64) uint64 {
	switch {
	case math.IsNaN(x):
		return uint64(len("NaN"))
	case math.IsInf(x, 1):
		return uint64(len("Infinity"))
	case math.IsInf(x, -1):
		return uint64(len("-Infinity"))
	}
	return 0
}

// writesOverLimit reports whether err is a replace, a join or a format
// refused by boundedWriters.
func writesOverLimit(err error) bool { return errors.Is(err, errWritesOverLimit) }
