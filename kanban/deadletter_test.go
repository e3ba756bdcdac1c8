package kanban_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/taipattern/taikit/kanban"
)

func TestDeadLetterFilter(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := kanban.DeadLetter{Seq: 7, ID: "order-1", Key: "customer-7", Reason: "gateway refused: 502", Time: at}
	for _, tc := range []struct {
		name  string
		f     kanban.DeadLetterFilter
		match bool
		err   string
	}{
		{"zero", kanban.DeadLetterFilter{}, true, "filter is empty"},
		{"all", kanban.DeadLetterFilter{All: true}, true, ""},
		{"seq", kanban.DeadLetterFilter{Seq: 7}, true, ""},
		{"other seq", kanban.DeadLetterFilter{Seq: 8}, false, ""},
		{"id", kanban.DeadLetterFilter{ID: "order-1"}, true, ""},
		{"id is not a prefix", kanban.DeadLetterFilter{ID: "order"}, false, ""},
		{"key", kanban.DeadLetterFilter{Key: "customer-7"}, true, ""},
		{"reason substring", kanban.DeadLetterFilter{Reason: "refused"}, true, ""},
		{"reason is case-sensitive", kanban.DeadLetterFilter{Reason: "Refused"}, false, ""},
		{"before, after it", kanban.DeadLetterFilter{Before: at.Add(time.Nanosecond)}, true, ""},
		{"before, at it", kanban.DeadLetterFilter{Before: at}, false, ""},
		{"every field", kanban.DeadLetterFilter{Seq: 7, ID: "order-1", Key: "customer-7", Reason: "502", Before: at.Add(time.Hour)}, true, ""},
		{"one field off", kanban.DeadLetterFilter{Seq: 7, ID: "order-1", Key: "customer-8"}, false, ""},
		{"all with a field", kanban.DeadLetterFilter{All: true, Key: "customer-7"}, true, "takes no other field"},
		{"long reason", kanban.DeadLetterFilter{Reason: strings.Repeat("r", kanban.MaxFilterText+1)}, false, "DeadLetterFilter.Reason: 1025 bytes"},
	} {
		assert.Equal(t, tc.match, tc.f.Match(&d), tc.name)
		err := tc.f.Validate()
		if tc.err == "" {
			assert.NoError(t, err, tc.name)
		} else {
			assert.ErrorContains(t, err, tc.err, tc.name)
		}
	}
	assert.ErrorIs(t, kanban.DeadLetterFilter{}.Validate(), kanban.ErrEmptyFilter)
}

func TestDeadLetterQuery(t *testing.T) {
	assert.NoError(t, kanban.DeadLetterQuery{}.Validate(), "the zero query lists the first page")
	assert.Equal(t, 100, kanban.DeadLetterQuery{}.WithDefaults().Limit)
	assert.ErrorContains(t, kanban.DeadLetterQuery{Limit: -1}.Validate(), "DeadLetterQuery.Limit -1")
	assert.ErrorContains(t, kanban.DeadLetterQuery{Limit: 1001}.Validate(), "DeadLetterQuery.Limit 1001")
	assert.Error(t, kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{All: true, ID: "x"}}.Validate())

	oldest := kanban.DeadLetterQuery{Cursor: 5}
	assert.False(t, oldest.After(5))
	assert.True(t, oldest.After(6))
	newest := kanban.DeadLetterQuery{Cursor: 5, Newest: true}
	assert.False(t, newest.After(5))
	assert.True(t, newest.After(4))
	assert.True(t, kanban.DeadLetterQuery{}.After(1), "no cursor: from the start")
}

func TestOperationType(t *testing.T) {
	assert.Equal(t, "send", kanban.OpSend.String())
	assert.Equal(t, "process", kanban.OpProcess.String())
	assert.Equal(t, "unknown", kanban.OperationType(0).String())
}

func TestDeadLetterMismatchError(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	d := kanban.DeadLetter{Seq: 7, ID: "order-1", Key: "customer-7", Reason: strings.Repeat("é", 150), Time: at}
	err := error(&kanban.DeadLetterMismatchError{Op: "deleting", Letter: d, Filter: kanban.DeadLetterFilter{Seq: 7, Reason: "refused", Before: at}})
	assert.ErrorIs(t, err, kanban.ErrDeadLetterNotFound, "the filter selects none")
	assert.NotErrorIs(t, err, kanban.ErrEmptyFilter)
	assert.EqualError(t, err, `kanban: deleting dead letter 7: it does not match the filter: its reason "`+
		strings.Repeat("é", 100)+`…" does not contain "refused"; it was dead-lettered at 2026-01-02T02:04:05Z, not before 2026-01-02T02:04:05Z`,
		"a long reason cut at a rune's start; times in UTC")
}
