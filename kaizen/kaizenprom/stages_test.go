package kaizenprom_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/tai"
)

// sampledTracer gives every span a sampled SpanContext, so Metrics
// observes the signal with an exemplar.
type sampledTracer struct{}

type sampledSpan struct{}

func (sampledSpan) End(error) {}

func (sampledSpan) SpanContext() tai.SpanContext {
	return tai.SpanContext{TraceID: tai.TraceID{1}, SpanID: tai.SpanID{2}, Sampled: true}
}

func (sampledTracer) Start(ctx context.Context, _ tai.SpanInfo) (context.Context, tai.Span) {
	return ctx, sampledSpan{}
}

// A stage the signal reached is observed even when it took no time, as
// it does under testing/synctest (or with a clock coarser than the
// stage): only a stage not reached is left out.
func TestMetricsObservesReachedStagesOfZeroTime(t *testing.T) {
	for _, sampled := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
			require.NoError(t, err)
			deny := false
			opts := []tai.Option{tai.WithObservers(m), tai.WithGates(tai.GateFunc(func(context.Context, string) error { return nil }))}
			if sampled {
				opts = append(opts, tai.WithTracer(sampledTracer{}))
			}
			p, err := tai.New(
				tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
					if deny {
						return tai.Decision{Verdict: tai.Deny}, nil
					}
					return tai.Decision{Verdict: tai.Allow}, nil
				}),
				tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }),
				opts...)
			require.NoError(t, err)
			_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
			require.NoError(t, err)
			deny = true
			_, err = p.Process(context.Background(), tai.Signal[int]{ID: "2", Kind: "k"})
			require.Error(t, err)
			for stage, want := range map[string]uint64{"gate": 2, "policy": 2, "action": 1} {
				s := series(t, reg, "taikit_stage_duration_seconds", map[string]string{"kind": "k", "stage": stage})
				require.NotNil(t, s, "sampled %v: stage %s", sampled, stage)
				assert.Equal(t, want, s.GetHistogram().GetSampleCount(), "sampled %v: stage %s", sampled, stage)
			}
		})
	}
}

// A pipeline whose observers hold Metrics behind another Observer (one
// that is not a tai.StageObserver, as a filter or a relabeling one is)
// does not time the stages: Record.Stages has only the signal's time.
// Metrics observed every stage the signal reached at zero, though each
// took its time, so the stage histograms said every stage was instant.
// It observes none of them, as before it knew which were reached.
func TestMetricsBehindAnotherObserverObservesNoUntimedStages(t *testing.T) {
	testNoUntimedStages(t, time.Millisecond, time.Second, time.Minute)
}

// A signal that took no time on the clock (under testing/synctest, or
// with a clock coarser than the signal) behind an observer that is not a
// tai.StageObserver has Stages all zero, as a timed one of no time has
// them: Metrics observed each stage it reached at zero, though none was
// timed. It observes none of them.
func TestMetricsObservesNoUntimedStagesOfZeroTime(t *testing.T) {
	testNoUntimedStages(t, 0, 0, 0)
}

// testNoUntimedStages runs a signal whose gate, policy and action take
// the times given through a pipeline whose Metrics is behind another
// Observer, sampled and not, and checks that Metrics observed the signal
// and none of its stages.
func testNoUntimedStages(t *testing.T, gate, policy, action time.Duration) {
	for _, sampled := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
			require.NoError(t, err)
			relabel := tai.ObserverFunc(func(ctx context.Context, r tai.Record) { m.Observe(ctx, r) })
			opts := []tai.Option{tai.WithObservers(relabel), tai.WithGates(tai.GateFunc(func(context.Context, string) error {
				time.Sleep(gate)
				return nil
			}))}
			if sampled {
				opts = append(opts, tai.WithTracer(sampledTracer{}))
			}
			p, err := tai.New(
				tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
					time.Sleep(policy)
					return tai.Decision{Verdict: tai.Allow}, nil
				}),
				tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
					time.Sleep(action)
					return 1, nil
				}),
				opts...)
			require.NoError(t, err)
			_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
			require.NoError(t, err)
			for _, stage := range []string{"gate", "policy", "action"} {
				s := series(t, reg, "taikit_stage_duration_seconds", map[string]string{"kind": "k", "stage": stage})
				assert.Zero(t, s.GetHistogram().GetSampleCount(), "sampled %v: stage %s observed untimed", sampled, stage)
			}
			s := series(t, reg, "taikit_signal_duration_seconds", map[string]string{"kind": "k", "outcome": "succeeded"})
			require.NotNil(t, s, "sampled %v", sampled)
			assert.Equal(t, uint64(1), s.GetHistogram().GetSampleCount(), "sampled %v", sampled)
		})
	}
}
