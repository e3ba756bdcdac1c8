package kaizen_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// TestZeroAuditErrSaysItWritesNothing: the zero Audit writes nothing (see
// TestAuditZeroValueDoesNotHang), and its Err returned nil, so a health
// check asking Err found the trail sound while every record was lost. Its
// counts and hash are those of an empty trail.
func TestZeroAuditErrSaysItWritesNothing(t *testing.T) {
	var a kaizen.Audit
	assert.ErrorContains(t, a.Err(), "not made by NewAudit or OpenAuditFile")
	assert.Zero(t, a.Written())
	assert.Zero(t, a.Unwritten())
	hash, lines := a.Last()
	assert.Len(t, hash, 64)
	assert.Zero(t, lines)
}

// TestZeroValuesOfTheReadOnlyTypes: the zero Period, WindowStats,
// KindStats and StatsSnapshot, as a caller decoding or building one has
// them, read as empty: no panic, no NaN, and JSON that encodes.
func TestZeroValuesOfTheReadOnlyTypes(t *testing.T) {
	var p kaizen.Period
	assert.Zero(t, p.Quantile(0.99))
	assert.Zero(t, p.Ratio(tai.Failed))
	assert.Zero(t, p.Ratio())
	_, err := json.Marshal(p)
	require.NoError(t, err)
	_, err = json.Marshal(kaizen.WindowStats{})
	require.NoError(t, err)
	_, ok := kaizen.KindStats{}.Window(time.Minute)
	assert.False(t, ok)
	_, ok = kaizen.StatsSnapshot{}.Window("payment", time.Minute)
	assert.False(t, ok)
	assert.Zero(t, kaizen.OutcomeCounts{}.Of(tai.Outcome(200)), "an outcome out of range counts nothing")
	assert.Zero(t, kaizen.VerdictCounts{}.Of(tai.Verdict(200)), "a verdict out of range counts nothing")
	assert.NotEmpty(t, (&kaizen.AuditError{}).Error())
}
