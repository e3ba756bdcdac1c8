package typednil_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/taipattern/taikit/internal/typednil"
)

type hook interface{ Run() }

type ptrHook struct{}

func (*ptrHook) Run() {}

type funcHook func()

func (f funcHook) Run() { f() }

type mapHook map[string]int

func (mapHook) Run() {}

func TestHolds(t *testing.T) {
	var nilPtr *ptrHook
	var nilFunc funcHook
	var nilMap mapHook
	cases := []struct {
		name string
		v    hook
		want bool
	}{
		{"nil interface", nil, false},
		{"nil pointer", nilPtr, true},
		{"nil function", nilFunc, true},
		{"nil map", nilMap, false},
		{"pointer", &ptrHook{}, false},
		{"function", funcHook(func() {}), false},
	}
	for _, c := range cases {
		if got := typednil.Holds(c.v); got != c.want {
			t.Errorf("%s: Holds = %v, want %v", c.name, got, c.want)
		}
	}
	if typednil.Holds(0) {
		t.Error("Holds(0) = true")
	}
}

// A hook built from a constructor whose error was ignored is a nil pointer
// in a non-nil interface: Holds catches it where a comparison with nil does
// not.
func ExampleHolds() {
	h, _ := newHook(false) // the error ignored
	fmt.Println(h == nil, typednil.Holds(h))
	// Output: false true
}

// newHook is a constructor returning a concrete pointer type, nil when it
// fails.
func newHook(ok bool) (hook, error) {
	var p *ptrHook
	if ok {
		p = &ptrHook{}
	}
	if p == nil {
		return p, errors.New("no hook")
	}
	return p, nil
}
