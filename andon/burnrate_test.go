package andon_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/taipattern/taikit/andon"
)

// A burn rate names its objective as it is: a 99.999% objective, five
// nines, is not "100%", which no objective can be.
func TestBurnRateNamesItsObjective(t *testing.T) {
	stats := newStats(t, andon.BurnWindowsOf(andon.PageBurnWindows())...)
	for _, c := range []struct {
		objective float64
		want      string
	}{
		{0.999, "99.9%"},
		{0.9995, "99.95%"},
		{0.95, "95%"},
		{0.99999, "99.999%"},
		{0.99995, "99.995%"},
		{0.999999, "99.9999%"},
		{0.9999999999, "99.99999999%"},
	} {
		cond := andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: c.objective}, andon.PageBurnWindows()...)
		assert.Equal(t, "error budget burn rate of payment ("+c.want+")", cond.(fmt.Stringer).String(), c.objective)
	}
}
