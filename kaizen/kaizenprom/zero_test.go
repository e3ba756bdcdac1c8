package kaizenprom_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/kanban"
)

// TestZeroCollectorsExportNothing: a collector used without its
// constructor (its zero value) has no families. Its Add methods and
// HandlerObserver return an error saying so, its Remove methods report
// nothing removed, its Gate returns the gate as it is, and registered on
// a registry it exports nothing: no call panics, on the caller's
// goroutine or on the registry's, where nothing would recover it.
func TestZeroCollectorsExportNothing(t *testing.T) {
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway"})
	require.NoError(t, err)
	lim, err := heijunka.NewLimiter(heijunka.PerSecond(100).WithBurst(20), heijunka.LimiterOptions{Name: "global"})
	require.NoError(t, err)
	keyed, err := heijunka.NewKeyed(heijunka.PerSecond(100), heijunka.KeyedOptions{Name: "per-key"})
	require.NoError(t, err)
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{})
	require.NoError(t, err)

	var j kaizenprom.JidokaCollector
	require.ErrorContains(t, j.AddBreaker(b), "not made by NewJidokaCollector")
	require.ErrorContains(t, j.AddLine(new(jidoka.Line)), "not made by NewJidokaCollector")
	require.ErrorContains(t, j.AddWatchdog(new(jidoka.Watchdog)), "not made by NewJidokaCollector")
	assert.False(t, j.RemoveBreaker("gateway"))

	var h kaizenprom.HeijunkaCollector
	require.ErrorContains(t, h.AddLimiter(lim), "not made by NewHeijunkaCollector")
	require.ErrorContains(t, h.AddKeyed(keyed), "not made by NewHeijunkaCollector")
	assert.Same(t, lim, h.Gate(lim), "returned as it is: nothing would export its counts")
	require.NoError(t, lim.Admit(context.Background(), "k"))

	var k kaizenprom.KanbanCollector
	require.ErrorContains(t, k.AddQueue("orders", q), "not made by NewKanbanCollector")
	_, err = k.HandlerObserver("orders")
	require.ErrorContains(t, err, "not made by NewKanbanCollector")
	assert.False(t, k.RemoveQueue("orders"))

	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{&j, &h, &k} {
		require.NotPanics(t, func() { _ = reg.Register(c) })
	}
	var got []string
	require.NotPanics(t, func() {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			got = append(got, mf.GetName())
		}
	})
	assert.Empty(t, got)
}
