package taicel_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// RTLeaf is a struct held by RTPayload in every way a field can hold one.
type RTLeaf struct {
	N   int
	At  time.Time
	P   *float64
	Raw []byte
}

// RTEmb is embedded by value.
type RTEmb struct {
	E1 string
	E2 *int
}

// RTEmbPtr is embedded by pointer.
type RTEmbPtr struct {
	Q uint16
	W []time.Duration
}

// RTPayload holds a value of each kind the codec writes.
type RTPayload struct {
	RTEmb
	*RTEmbPtr
	I    int
	I8   int8
	I64  int64
	U    uint
	U8   uint8
	U64  uint64
	F32  float32
	F64  float64
	B    bool
	S    string
	T    time.Time
	TP   *time.Time
	D    time.Duration
	DP   *time.Duration
	IP   *int
	SP   *string
	BP   *bool
	FP   *float64
	UP   *uint64
	Bs   []byte
	Arr  [3]byte
	IA   [2]int32
	SL   []string
	SLP  []*int
	SS   [][]string
	MI   map[int]string
	MU   map[uint32]bool
	MB   map[bool]float64
	MS   map[string][]time.Time
	MI8  map[int8]*RTLeaf
	MP   map[string]*RTLeaf
	L    *RTLeaf
	LS   []RTLeaf
	LA   [2]RTLeaf
	Any  any
	Next *RTPayload
}

// valueGen makes random values of any type RTPayload holds.
type valueGen struct {
	r     *rand.Rand
	depth int
}

func (g *valueGen) oneIn(n int) bool { return g.r.IntN(n) == 0 }

func (g *valueGen) float() float64 {
	switch g.r.IntN(12) {
	case 0:
		return math.NaN()
	case 1:
		return math.Inf(1)
	case 2:
		return math.Inf(-1)
	case 3:
		return math.Copysign(0, -1)
	case 4:
		return math.MaxFloat64
	case 5:
		return math.SmallestNonzeroFloat64
	case 6:
		return float64(g.r.Int64N(1e6))
	}
	return g.r.NormFloat64() * math.Pow(10, float64(g.r.IntN(40)-20))
}

func (g *valueGen) str() string {
	alphabet := []string{"a", "b", "x", " ", "\"", "\\", "\n", "\x00", "ü", "€", "😀", "\u2028", "{", "}", ":", "0", "1"}
	var b strings.Builder
	for range g.r.IntN(8) {
		b.WriteString(alphabet[g.r.IntN(len(alphabet))])
	}
	return b.String()
}

func (g *valueGen) time() time.Time {
	switch g.r.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(10000+g.r.IntN(5), 1, 1, 0, 0, 0, 0, time.UTC)
	case 2:
		return time.Date(-g.r.IntN(500), 3, 4, 5, 6, 7, 8, time.UTC)
	}
	t := time.Unix(g.r.Int64N(1<<36)-1<<35, g.r.Int64N(1e9))
	if g.oneIn(2) {
		return t.In(time.FixedZone("", (g.r.IntN(48)-24)*1800))
	}
	return t.UTC()
}

// any returns a value of a type an interface reads back as: what JSON
// holds, and the types the record marks.
func (g *valueGen) any() any {
	g.depth++
	defer func() { g.depth-- }()
	n := 10
	if g.depth > 3 {
		n = 8
	}
	switch g.r.IntN(n) {
	case 0:
		return nil
	case 1:
		return g.r.Int64() - 1<<62
	case 2:
		return g.r.Uint64()
	case 3:
		return g.float()
	case 4:
		return g.str()
	case 5:
		return g.oneIn(2)
	case 6:
		return g.time().UTC()
	case 7:
		return time.Duration(g.r.Int64())
	case 8:
		l := make([]any, g.r.IntN(3))
		for i := range l {
			l[i] = g.any()
		}
		return l
	}
	m := make(map[string]any)
	for range g.r.IntN(3) {
		m[g.str()] = g.any()
	}
	return m
}

// fill sets v, settable, to a random value of its type.
func (g *valueGen) fill(v reflect.Value) {
	t := v.Type()
	switch t {
	case reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(g.time()))
		return
	case reflect.TypeFor[time.Duration]():
		v.SetInt(g.r.Int64() >> g.r.IntN(64))
		return
	case reflect.TypeFor[any]():
		if x := g.any(); x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return
	}
	g.depth++
	defer func() { g.depth-- }()
	deep := g.depth > 4
	switch t.Kind() {
	case reflect.Bool:
		v.SetBool(g.oneIn(2))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x := int64(g.r.Uint64() >> g.r.IntN(64))
		if g.oneIn(2) {
			x = -x
		}
		shift := 64 - t.Bits()
		v.SetInt(x << shift >> shift)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(g.r.Uint64() >> g.r.IntN(64) & (math.MaxUint64 >> (64 - t.Bits())))
	case reflect.Float32:
		v.SetFloat(float64(float32(g.float())))
	case reflect.Float64:
		v.SetFloat(g.float())
	case reflect.String:
		v.SetString(g.str())
	case reflect.Pointer:
		if deep || g.oneIn(3) {
			return
		}
		p := reflect.New(t.Elem())
		g.fill(p.Elem())
		v.Set(p)
	case reflect.Slice:
		if deep || g.oneIn(4) {
			return
		}
		s := reflect.MakeSlice(t, g.r.IntN(3), 3)
		for i := range s.Len() {
			g.fill(s.Index(i))
		}
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			g.fill(v.Index(i))
		}
	case reflect.Map:
		if deep || g.oneIn(4) {
			return
		}
		m := reflect.MakeMap(t)
		for range g.r.IntN(3) {
			k := reflect.New(t.Key()).Elem()
			g.fill(k)
			e := reflect.New(t.Elem()).Elem()
			g.fill(e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if t.Field(i).IsExported() {
				g.fill(v.Field(i))
			}
		}
	default:
		panic(fmt.Sprintf("valueGen: %v", t))
	}
}

// sameValue reports where a and b differ, "" when they do not: times
// are compared with Equal, and a NaN equals a NaN.
func sameValue(a, b reflect.Value, path string) string {
	if a.IsValid() != b.IsValid() {
		return path + ": one is invalid"
	}
	if !a.IsValid() {
		return ""
	}
	if a.Type() != b.Type() {
		return fmt.Sprintf("%s: %v, read back as %v", path, a.Type(), b.Type())
	}
	if a.Type() == reflect.TypeFor[time.Time]() {
		if !a.Interface().(time.Time).Equal(b.Interface().(time.Time)) {
			return fmt.Sprintf("%s: %v, read back as %v", path, a.Interface(), b.Interface())
		}
		return ""
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		if x != y && !(math.IsNaN(x) && math.IsNaN(y)) {
			return fmt.Sprintf("%s: %v, read back as %v", path, x, y)
		}
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() != b.IsNil() {
			return fmt.Sprintf("%s: nil %v, read back nil %v", path, a.IsNil(), b.IsNil())
		}
		if !a.IsNil() {
			return sameValue(a.Elem(), b.Elem(), path)
		}
	case reflect.Slice:
		if a.IsNil() != b.IsNil() {
			return fmt.Sprintf("%s: nil %v, read back nil %v", path, a.IsNil(), b.IsNil())
		}
		fallthrough
	case reflect.Array:
		if a.Len() != b.Len() {
			return fmt.Sprintf("%s: %d elements, read back %d", path, a.Len(), b.Len())
		}
		for i := range a.Len() {
			if d := sameValue(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
	case reflect.Map:
		if a.IsNil() != b.IsNil() {
			return fmt.Sprintf("%s: nil %v, read back nil %v", path, a.IsNil(), b.IsNil())
		}
		if a.Len() != b.Len() {
			return fmt.Sprintf("%s: %d entries, read back %d", path, a.Len(), b.Len())
		}
		for _, k := range a.MapKeys() {
			if d := sameValue(a.MapIndex(k), b.MapIndex(k), fmt.Sprintf("%s[%v]", path, k)); d != "" {
				return d
			}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if a.Type().Field(i).IsExported() {
				if d := sameValue(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); d != "" {
					return d
				}
			}
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			return fmt.Sprintf("%s: %#v, read back as %#v", path, a.Interface(), b.Interface())
		}
	}
	return ""
}

// rtRules read fields of every kind, so that a decision depends on them.
var rtRules = []taicel.Rule{
	{Name: "i", Weight: 0.05, Expr: `payload.I % 2 == 0`},
	{Name: "u8", Weight: 0.05, Expr: `payload.U8 > 100u`},
	{Name: "f64", Weight: 0.05, Expr: `payload.F64 > 0.5 || payload.F64 != payload.F64`},
	{Name: "t", Weight: 0.05, Expr: `payload.T > timestamp("2000-01-01T00:00:00Z")`},
	{Name: "d", Weight: 0.05, Expr: `payload.D > duration("1s")`},
	{Name: "bs", Weight: 0.05, Expr: `size(payload.Bs) > 2`},
	{Name: "mi", Weight: 0.05, Expr: `7 in payload.MI || payload.MI.exists(k, k < 0)`},
	{Name: "mb", Weight: 0.05, Expr: `true in payload.MB`},
	{Name: "s", Weight: 0.05, Expr: `payload.S.startsWith("a")`},
	{Name: "sl", Weight: 0.05, Expr: `size(payload.SL) > 1`},
	{Name: "e1", Weight: 0.05, Expr: `payload.E1.contains("x")`},
	{Name: "q", Weight: 0.05, Expr: `payload.Q > 3u`},
	{Name: "ip", Weight: 0.05, Expr: `payload.IP > 0`},
	{Name: "mp", Weight: 0.05, Expr: `size(payload.MP) > 1`},
	{Name: "f32", Weight: 0.05, Expr: `payload.F32 < 0.0`},
	{Name: "u64", Weight: 0.05, Expr: `payload.U64 > 9223372036854775807u`},
	{Name: "tp", Weight: 0.05, Expr: `payload.TP > timestamp(0)`},
	{Name: "arr", Weight: 0.05, Expr: `payload.Arr == b"\x00\x00\x00" || payload.Bs == payload.Arr`},
	{Name: "mu", Weight: 0.05, Expr: `payload.MU.exists(k, k > 1000u)`},
	{Name: "ms", Weight: 0.05, Expr: `payload.MS.exists(k, payload.MS[k].exists(t, t < signal.time))`},
	{Name: "up", Weight: 0.05, Expr: `payload.UP > 5u && payload.DP > duration("0s")`},
}

// TestRecordedPayloadReadsBack records random payloads of every kind of
// field — nested maps with int, uint and bool keys, slices, arrays,
// pointers nil and not, times of every year, durations, NaN and infinite
// floats, large uints, embedded structs by value and by pointer, values
// in an interface — and checks what the documentation promises: the
// record reads back as the payload, the same set judges it again to the
// same decision, byte for byte, and a dynamic Env, without the Go type,
// reads it back to the same verdict and score.
func TestRecordedPayloadReadsBack(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[RTPayload]{RecordInputs: true})
	require.NoError(t, err)
	spec := &taicel.Spec{Version: "rt", Rules: rtRules, Thresholds: taicel.Thresholds{Deny: 0.3, Review: 0.15}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(spec)
	require.NoError(t, err)
	for seed := range uint64(300) {
		checkRoundTrip(t, env, set, denv, dset, seed)
	}
}

// FuzzRecordedPayloadReadsBack is TestRecordedPayloadReadsBack with
// seeds from the fuzzer.
func FuzzRecordedPayloadReadsBack(f *testing.F) {
	env, err := taicel.NewEnv(taicel.Options[RTPayload]{RecordInputs: true})
	require.NoError(f, err)
	spec := &taicel.Spec{Version: "rt", Rules: rtRules, Thresholds: taicel.Thresholds{Deny: 0.3, Review: 0.15}}
	set, err := env.Compile(spec)
	require.NoError(f, err)
	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(f, err)
	dset, err := denv.Compile(spec)
	require.NoError(f, err)
	f.Add(uint64(1))
	f.Fuzz(func(t *testing.T, seed uint64) {
		checkRoundTrip(t, env, set, denv, dset, seed)
	})
}

func checkRoundTrip(t *testing.T, env *taicel.Env[RTPayload], set *taicel.Set[RTPayload],
	denv *taicel.Env[map[string]any], dset *taicel.Set[map[string]any], seed uint64) {
	t.Helper()
	g := &valueGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	var p RTPayload
	g.fill(reflect.ValueOf(&p).Elem())
	sig := tai.Signal[RTPayload]{ID: "1", Kind: "k", Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Payload: p}
	d, err := set.Evaluate(t.Context(), sig)
	require.NoError(t, err, "seed %d", seed)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err, "seed %d: %s", seed, d.Inputs)
	if diff := sameValue(reflect.ValueOf(p), reflect.ValueOf(in.Payload), "payload"); diff != "" {
		t.Fatalf("seed %d: %s\nrecord: %s", seed, diff, d.Inputs)
	}
	again, err := set.Replay(tai.Signal[RTPayload]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err, "seed %d", seed)
	require.Equal(t, string(d.Inputs), string(again.Inputs), "seed %d: recorded again", seed)
	require.Equal(t, d.Verdict, again.Verdict, "seed %d", seed)

	din, err := denv.DecodeInputs(d.Inputs)
	require.NoError(t, err, "seed %d: %s", seed, d.Inputs)
	dd, err := dset.Replay(tai.Signal[map[string]any]{Time: din.Time, Payload: din.Payload}, din.Vars)
	require.NoError(t, err, "seed %d: %s", seed, d.Inputs)
	require.Equal(t, d.Verdict, dd.Verdict, "seed %d: %s", seed, d.Inputs)
	require.Equal(t, d.Score, dd.Score, "seed %d: %s", seed, d.Inputs)
	require.Equal(t, d.Contributions, dd.Contributions, "seed %d: %s", seed, d.Inputs)
}
