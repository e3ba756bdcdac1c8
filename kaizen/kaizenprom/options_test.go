package kaizenprom_test

import (
	"context"
	"math"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/kanban"
)

// TestNewMetricsNativeHistogramBucketFactorRange: the factor is taken
// above 1 and up to 2, as MetricsOptions says; any other value but zero
// is an error naming the field and the value.
func TestNewMetricsNativeHistogramBucketFactorRange(t *testing.T) {
	for _, f := range []float64{0, 1.0001, 1.1, 2} {
		_, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{NativeHistogramBucketFactor: f})
		assert.NoError(t, err, "factor %v", f)
	}
	for _, f := range []float64{1, 2.5, 4, -1.1, math.NaN(), math.Inf(1)} {
		_, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{NativeHistogramBucketFactor: f})
		require.Error(t, err, "factor %v", f)
		assert.Contains(t, err.Error(), "MetricsOptions.NativeHistogramBucketFactor "+strconv.FormatFloat(f, 'g', -1, 64))
	}
}

// TestKanbanCollectorQueueValueNotComparableReadPerName: a queue whose
// value cannot be compared is told apart by each name it is added under,
// as Collect says: its Backlog is read once for each name, not shared.
func TestKanbanCollectorQueueValueNotComparableReadPerName(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	q := countingSliceQueue{calls: new(atomic.Int32), depths: []int64{3}}
	require.NoError(t, c.AddQueue("a", q))
	require.NoError(t, c.AddQueue("b", q))
	families, err := reg.Gather()
	require.NoError(t, err)
	scraped := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
	for _, name := range []string{"a", "b"} {
		assert.Equal(t, 3.0, gaugeValue(t, scraped, "taikit_queue_depth", map[string]string{"queue": name}), name)
	}
	assert.Equal(t, int32(2), q.calls.Load(), "one read for each name")
}

// countingSliceQueue is a queue whose value cannot be compared, and that
// counts its Backlog reads.
type countingSliceQueue struct {
	fakeQueue
	calls  *atomic.Int32
	depths []int64
}

func (q countingSliceQueue) Backlog(context.Context) (kanban.Backlog, error) {
	q.calls.Add(1)
	return kanban.Backlog{Depth: q.depths[0]}, nil
}
