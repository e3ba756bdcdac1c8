package taicel_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

type Hop struct {
	Code string
	Next *Hop
	Gate *int
}

type Route struct {
	Hops   []*Hop
	First  *Hop
	ByCode map[string]*Hop
	Gates  []*int
}

// A reason that wrote a value holding pointers ({{payload.Hops}}, a
// []*Hop) wrote their addresses, as fmt does of a pointer within a
// value: "[0xc000010018 <nil>]" told nothing, and differed when the
// decision was replayed; a list or a map a rule builds wrote CEL's own
// structure for each value in it. A reason follows the pointers, writing
// a nil one <nil>, writes the values a rule's list holds, and writes the
// same when the decision is replayed.
func TestReasonWritesWhatPointersPointTo(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Route]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true",
			Reason: "{{payload.Hops}} {{payload.First}} {{payload.ByCode}} {{payload.Gates}} {{[payload.First]}} {{ {'a': payload.Hops[0]} }}"},
	}})
	require.NoError(t, err)
	gate := 3
	route := Route{
		Hops:   []*Hop{{Code: "LHR", Gate: &gate}, nil},
		First:  &Hop{Code: "A", Next: &Hop{Code: "B"}},
		ByCode: map[string]*Hop{"y": {Code: "Y"}, "x": {Code: "X", Gate: &gate}},
		Gates:  []*int{&gate, nil},
	}
	d, err := set.Evaluate(t.Context(), tai.Signal[Route]{Payload: route})
	require.NoError(t, err)
	const want = "[&{LHR <nil> 3} <nil>] &{A &{B <nil> <nil>} <nil>} map[x:&{X <nil> 3} y:&{Y <nil> <nil>}] [3 <nil>]" +
		" [&{A &{B <nil> <nil>} <nil>}] map[a:&{LHR <nil> 3}]"
	assert.Equal(t, want, d.Reason)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	again, err := set.Replay(tai.Signal[Route]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, want, again.Reason)
}

// A value that holds itself is written once: where it comes again the
// reason writes <cycle>. A map that held itself overflowed the stack,
// which no recover stops.
func TestReasonWritesACycleOnce(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Route]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true", Reason: "{{payload.First}} {{payload.Hops}}"},
	}})
	require.NoError(t, err)
	loop := &Hop{Code: "A"}
	loop.Next = &Hop{Code: "B", Next: loop}
	d, err := set.Evaluate(t.Context(), tai.Signal[Route]{Payload: Route{First: loop, Hops: []*Hop{loop, loop}}})
	require.NoError(t, err)
	assert.Equal(t, "&{A &{B <cycle> <nil>} <nil>} [&{A &{B <cycle> <nil>} <nil>} &{A &{B <cycle> <nil>} <nil>}]", d.Reason,
		"a value met twice but not within itself is written twice")

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true", Reason: "{{payload}} {{payload.list}}"},
	}})
	require.NoError(t, err)
	m := map[string]any{"a": 1}
	m["self"] = m
	list := []any{"x", nil}
	list[1] = list
	m["list"] = list
	d, err = dset.Evaluate(t.Context(), tai.Signal[map[string]any]{Payload: m})
	require.NoError(t, err)
	assert.Equal(t, "map[a:1 list:[x <cycle>] self:<cycle>] [x <cycle>]", d.Reason)
}

// A value whose pointers share what they point to is written whole at
// each, as its record is, but no more than taicel.MaxReasonValue bytes of
// it: forty levels of two pointers to one node would write 2^40 nodes.
func TestReasonOfSharedPointersIsBounded(t *testing.T) {
	type Node struct{ L, R *Node }
	env, err := taicel.NewEnv(taicel.Options[Node]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true", Reason: "[{{payload}}]"},
	}})
	require.NoError(t, err)
	n := &Node{}
	for range 40 {
		n = &Node{L: n, R: n}
	}
	d, err := set.Evaluate(t.Context(), tai.Signal[Node]{Payload: Node{L: n}})
	require.NoError(t, err)
	// The brackets still open are closed: a byte each.
	assert.LessOrEqual(t, len(d.Reason), taicel.MaxReasonValue+64)
	assert.True(t, strings.HasPrefix(d.Reason, "[{&{&{&{"), d.Reason[:20])
	assert.Regexp(t, `…}+]$`, d.Reason[len(d.Reason)-100:])
	assert.Equal(t, 1, strings.Count(d.Reason, "…"))
}

type Account struct {
	Name  string
	owner *Holder
	note  string
	Owner *Holder
}

type Holder struct{ Password string }

// A struct is written with the fields CEL reads and its record holds,
// the exported ones: an unexported field is zero when the decision is
// replayed, and an unexported pointer may lead to what must not reach a
// reason (a client's credentials).
func TestReasonWritesTheExportedFieldsOfAStruct(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Account]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true", Reason: "{{payload}}"},
	}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Account]{Payload: Account{Name: "a", owner: &Holder{Password: "hunter2"}, note: "n", Owner: &Holder{Password: "p"}}})
	require.NoError(t, err)
	assert.Equal(t, "{a &{p}}", d.Reason)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	again, err := set.Replay(tai.Signal[Account]{Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d.Reason, again.Reason)
}

type Request struct {
	ID     string
	Reply  chan string
	Cancel func()
	Phase  complex128
	Hooks  []func()
	Amount float64
}

// A struct is written without the fields CEL cannot read, which its
// record leaves out too: a channel, a func, a complex number, and what
// holds them. A reason wrote a channel's and a func's addresses, which
// tell nothing, and wrote them <nil> when the decision was replayed.
func TestReasonLeavesOutTheFieldsCELCannotRead(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Request]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true", Reason: "{{payload}}"},
	}})
	require.NoError(t, err)
	req := Request{ID: "a", Reply: make(chan string), Cancel: func() {}, Phase: 1i, Hooks: []func(){func() {}}, Amount: 5}
	d, err := set.Evaluate(t.Context(), tai.Signal[Request]{Payload: req})
	require.NoError(t, err)
	assert.Equal(t, "{a 5}", d.Reason)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	again, err := set.Replay(tai.Signal[Request]{Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d.Reason, again.Reason)
}

// A chain of pointers deeper than a record holds is written down to that
// depth, and ends there with "…".
func TestReasonOfADeepChainIsBounded(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Route]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "t", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true", Reason: "{{payload.First}}"},
	}})
	require.NoError(t, err)
	var chain *Hop
	for range 30000 {
		chain = &Hop{Code: "h", Next: chain}
	}
	d, err := set.Evaluate(t.Context(), tai.Signal[Route]{Payload: Route{First: chain}})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(d.Reason, "&{h &{h &{h "), d.Reason[:20])
	assert.Equal(t, 1, strings.Count(d.Reason, "…"))
	assert.Less(t, strings.Count(d.Reason, "&{h"), 10001)
}
