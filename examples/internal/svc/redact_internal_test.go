package svc

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
)

// What Serving prints is serving: a field added to Serving and not to
// serving would be left out of it.
func TestServingPrintsEveryField(t *testing.T) {
	names := func(t reflect.Type) []string {
		var n []string
		for f := range t.Fields() {
			n = append(n, f.Name)
		}
		return n
	}
	assert.Equal(t, names(reflect.TypeFor[Serving]()), names(reflect.TypeFor[serving]()))
}
