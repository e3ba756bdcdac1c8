package taicel

import (
	"errors"
	"math/bits"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// errWritesOverLimit is the error of a replace or a join that would
// write a string longer than the cost limit: one that costs more than
// the limit once written. evalError reports it as ErrCostLimit.
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
// extension writes it.
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

// writesOverLimit reports whether err is a replace or a join refused by
// boundedWriters.
func writesOverLimit(err error) bool { return errors.Is(err, errWritesOverLimit) }
