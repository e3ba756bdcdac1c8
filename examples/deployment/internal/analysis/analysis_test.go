package analysis

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// healthy is well within Default on every check.
func healthy() fleet.Sample {
	return fleet.Sample{Requests: 600, ErrorRate: 0.01, P99: 200 * time.Millisecond, CPU: 0.40, Memory: 0.50}
}

func TestDefault(t *testing.T) {
	d := Default()
	assert.Equal(t, 0.05, d.MaxErrorRate)
	assert.Equal(t, 1000*time.Millisecond, d.MaxP99)
	assert.Equal(t, 0.80, d.MaxCPU)
	assert.Equal(t, 0.85, d.MaxMemory)
	assert.NoError(t, d.Validate())
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Thresholds)
		want   []string // substrings of the error; none means valid
	}{
		{"default", func(*Thresholds) {}, nil},
		{"shares at one", func(th *Thresholds) { th.MaxErrorRate, th.MaxCPU, th.MaxMemory = 1, 1, 1 }, nil},
		{"tiny but positive", func(th *Thresholds) { th.MaxErrorRate, th.MaxP99 = 1e-9, time.Nanosecond }, nil},
		{"zero error rate", func(th *Thresholds) { th.MaxErrorRate = 0 }, []string{"MaxErrorRate must be a share in (0, 1], got 0"}},
		{"error rate above one", func(th *Thresholds) { th.MaxErrorRate = 5 }, []string{"MaxErrorRate must be a share in (0, 1], got 5"}},
		{"negative cpu", func(th *Thresholds) { th.MaxCPU = -0.1 }, []string{"MaxCPU must be a share in (0, 1], got -0.1"}},
		{"NaN memory", func(th *Thresholds) { th.MaxMemory = math.NaN() }, []string{"MaxMemory must be a share in (0, 1], got NaN"}},
		{"zero p99", func(th *Thresholds) { th.MaxP99 = 0 }, []string{"MaxP99 must be positive, got 0s"}},
		{"negative p99", func(th *Thresholds) { th.MaxP99 = -time.Second }, []string{"MaxP99 must be positive, got -1s"}},
		{"zero value names all", func(th *Thresholds) { *th = Thresholds{} }, []string{"MaxErrorRate", "MaxP99", "MaxCPU", "MaxMemory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := Default()
			tt.change(&th)
			err := th.Validate()
			if tt.want == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// TestEvaluateMessages pins the wording of each check, passing and failing,
// at the threshold, just under and just over it.
func TestEvaluateMessages(t *testing.T) {
	tests := []struct {
		name   string
		change func(*fleet.Sample)
		check  string // the check looked at
		passed bool
		msg    string
	}{
		{"error rate over", func(s *fleet.Sample) { s.ErrorRate = 0.072 }, "error_rate", false, "Error rate 7.20% exceeds threshold 5.00%"},
		{"error rate within", func(s *fleet.Sample) { s.ErrorRate = 0.01 }, "error_rate", true, "Error rate 1.00% within threshold 5.00%"},
		{"error rate at", func(s *fleet.Sample) { s.ErrorRate = 0.05 }, "error_rate", true, "Error rate 5.00% within threshold 5.00%"},
		{"error rate one ulp under", func(s *fleet.Sample) { s.ErrorRate = math.Nextafter(0.05, 0) }, "error_rate", true, "Error rate 5.00% within threshold 5.00%"},
		{"error rate just over", func(s *fleet.Sample) { s.ErrorRate = 0.0501 }, "error_rate", false, "Error rate 5.01% exceeds threshold 5.00%"},
		{"error rate a hair over", func(s *fleet.Sample) { s.ErrorRate = 0.050001 }, "error_rate", false, "Error rate 5.0001% exceeds threshold 5.0000%"},
		{"error rate a millionth over", func(s *fleet.Sample) { s.ErrorRate = 0.0500001 }, "error_rate", false, "Error rate 5.00001% exceeds threshold 5.00000%"},
		{"error rate a millionth under", func(s *fleet.Sample) { s.ErrorRate = 0.0499999 }, "error_rate", true, "Error rate 4.99999% within threshold 5.00000%"},
		{"error rate zero", func(s *fleet.Sample) { s.ErrorRate = 0 }, "error_rate", true, "Error rate 0.00% within threshold 5.00%"},
		{"error rate all", func(s *fleet.Sample) { s.ErrorRate = 1 }, "error_rate", false, "Error rate 100.00% exceeds threshold 5.00%"},
		{"error rate NaN", func(s *fleet.Sample) { s.ErrorRate = math.NaN() }, "error_rate", false, "Error rate NaN is not a valid reading, threshold 5.00%"},
		{"error rate +Inf", func(s *fleet.Sample) { s.ErrorRate = math.Inf(1) }, "error_rate", false, "Error rate +Inf is not a valid reading, threshold 5.00%"},
		{"error rate negative", func(s *fleet.Sample) { s.ErrorRate = -0.01 }, "error_rate", false, "Error rate -1.00% is not a valid reading, threshold 5.00%"},

		{"p99 over", func(s *fleet.Sample) { s.P99 = 1500 * time.Millisecond }, "p99_latency", false, "P99 latency 1500ms exceeds threshold 1000ms"},
		{"p99 within", func(s *fleet.Sample) { s.P99 = 200 * time.Millisecond }, "p99_latency", true, "P99 latency 200ms within threshold 1000ms"},
		{"p99 at", func(s *fleet.Sample) { s.P99 = time.Second }, "p99_latency", true, "P99 latency 1000ms within threshold 1000ms"},
		{"p99 a nanosecond under", func(s *fleet.Sample) { s.P99 = time.Second - 1 }, "p99_latency", true, "P99 latency 999.999999ms within threshold 1000ms"},
		{"p99 a nanosecond over", func(s *fleet.Sample) { s.P99 = time.Second + 1 }, "p99_latency", false, "P99 latency 1000.000001ms exceeds threshold 1000ms"},
		{"p99 half a millisecond over", func(s *fleet.Sample) { s.P99 = 1000500 * time.Microsecond }, "p99_latency", false, "P99 latency 1000.5ms exceeds threshold 1000ms"},
		{"p99 zero", func(s *fleet.Sample) { s.P99 = 0 }, "p99_latency", true, "P99 latency 0ms within threshold 1000ms"},
		{"p99 negative", func(s *fleet.Sample) { s.P99 = -time.Millisecond }, "p99_latency", false, "P99 latency -1ms is not a valid reading, threshold 1000ms"},

		{"cpu over", func(s *fleet.Sample) { s.CPU = 0.85 }, "cpu", false, "CPU usage 85.00% exceeds threshold 80.00%"},
		{"cpu within", func(s *fleet.Sample) { s.CPU = 0.4 }, "cpu", true, "CPU usage 40.00% within threshold 80.00%"},
		{"cpu at", func(s *fleet.Sample) { s.CPU = 0.80 }, "cpu", true, "CPU usage 80.00% within threshold 80.00%"},
		{"cpu just under", func(s *fleet.Sample) { s.CPU = 0.7999 }, "cpu", true, "CPU usage 79.99% within threshold 80.00%"},
		{"cpu one ulp over still fails", func(s *fleet.Sample) { s.CPU = math.Nextafter(0.80, 1) }, "cpu", false, "CPU usage 80.00% exceeds threshold 80.00%"},
		{"cpu NaN", func(s *fleet.Sample) { s.CPU = math.NaN() }, "cpu", false, "CPU usage NaN is not a valid reading, threshold 80.00%"},
		{"cpu -Inf", func(s *fleet.Sample) { s.CPU = math.Inf(-1) }, "cpu", false, "CPU usage -Inf is not a valid reading, threshold 80.00%"},

		{"memory over", func(s *fleet.Sample) { s.Memory = 0.90 }, "memory", false, "Memory usage 90.00% exceeds threshold 85.00%"},
		{"memory within", func(s *fleet.Sample) { s.Memory = 0.5 }, "memory", true, "Memory usage 50.00% within threshold 85.00%"},
		{"memory at", func(s *fleet.Sample) { s.Memory = 0.85 }, "memory", true, "Memory usage 85.00% within threshold 85.00%"},
		{"memory just over", func(s *fleet.Sample) { s.Memory = 0.8501 }, "memory", false, "Memory usage 85.01% exceeds threshold 85.00%"},
		{"memory NaN", func(s *fleet.Sample) { s.Memory = math.NaN() }, "memory", false, "Memory usage NaN is not a valid reading, threshold 85.00%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			tt.change(&s)
			v := Evaluate(s, Default())
			require.Len(t, v.Checks, 4)
			var c Check
			for _, x := range v.Checks {
				if x.Name == tt.check {
					c = x
				}
			}
			require.Equal(t, tt.check, c.Name)
			assert.Equal(t, tt.passed, c.Passed)
			assert.Equal(t, tt.msg, c.Message)
			// The other three checks stay healthy, so the verdict and its
			// reason follow this one check.
			assert.Equal(t, tt.passed, v.Passed)
			if tt.passed {
				assert.Empty(t, v.Failed)
				assert.Equal(t, "", v.Reason())
			} else {
				require.Len(t, v.Failed, 1)
				assert.Equal(t, c.Name, v.Failed[0].Name)
				assert.Equal(t, tt.msg, v.Reason())
			}
		})
	}
}

func TestEvaluateValues(t *testing.T) {
	s := fleet.Sample{ErrorRate: 0.072, P99: 1500 * time.Millisecond, CPU: 0.85, Memory: 0.90}
	v := Evaluate(s, Default())
	want := []Check{
		{Name: "error_rate", Value: 0.072, Threshold: 0.05, Message: "Error rate 7.20% exceeds threshold 5.00%"},
		{Name: "p99_latency", Value: 1500, Threshold: 1000, Message: "P99 latency 1500ms exceeds threshold 1000ms"},
		{Name: "cpu", Value: 0.85, Threshold: 0.80, Message: "CPU usage 85.00% exceeds threshold 80.00%"},
		{Name: "memory", Value: 0.90, Threshold: 0.85, Message: "Memory usage 90.00% exceeds threshold 85.00%"},
	}
	assert.False(t, v.Passed)
	assert.Equal(t, want, v.Checks)
	assert.Equal(t, want, v.Failed)
	assert.Equal(t, "Error rate 7.20% exceeds threshold 5.00%; P99 latency 1500ms exceeds threshold 1000ms; "+
		"CPU usage 85.00% exceeds threshold 80.00%; Memory usage 90.00% exceeds threshold 85.00%", v.Reason())
}

// TestEvaluateFailedOrder: failures keep the fixed check order, whatever
// fails.
func TestEvaluateFailedOrder(t *testing.T) {
	s := healthy()
	s.Memory = 0.9
	s.ErrorRate = 0.2
	v := Evaluate(s, Default())
	require.Len(t, v.Failed, 2)
	assert.Equal(t, "error_rate", v.Failed[0].Name)
	assert.Equal(t, "memory", v.Failed[1].Name)
	assert.Equal(t, "Error rate 20.00% exceeds threshold 5.00%; Memory usage 90.00% exceeds threshold 85.00%", v.Reason())
	names := make([]string, len(v.Checks))
	for i, c := range v.Checks {
		names[i] = c.Name
	}
	assert.Equal(t, []string{"error_rate", "p99_latency", "cpu", "memory"}, names)
}

func TestEvaluateHealthy(t *testing.T) {
	v := Evaluate(healthy(), Default())
	assert.True(t, v.Passed)
	assert.Len(t, v.Checks, 4)
	assert.Empty(t, v.Failed)
	assert.Equal(t, "", v.Reason())
	for _, c := range v.Checks {
		assert.True(t, c.Passed, c.Name)
		assert.Contains(t, c.Message, "within threshold", c.Name)
	}
}

// TestEvaluateZeroRequests: a Sample without traffic is still judged on
// what it says; telling "no data" apart is the Health source's job.
func TestEvaluateZeroRequests(t *testing.T) {
	s := healthy()
	s.Requests = 0
	assert.True(t, Evaluate(s, Default()).Passed)

	s.CPU = 0.95
	v := Evaluate(s, Default())
	assert.False(t, v.Passed)
	assert.Equal(t, "CPU usage 95.00% exceeds threshold 80.00%", v.Reason())

	// The zero Sample reads as idle and healthy: nothing in it exceeds.
	assert.True(t, Evaluate(fleet.Sample{}, Default()).Passed)
}

// TestEvaluateAllNaN: a Sample of nothing but NaN never passes.
func TestEvaluateAllNaN(t *testing.T) {
	nan := math.NaN()
	v := Evaluate(fleet.Sample{Requests: nan, ErrorRate: nan, CPU: nan, Memory: nan}, Default())
	assert.False(t, v.Passed)
	require.Len(t, v.Failed, 3)
	assert.Equal(t, "Error rate NaN is not a valid reading, threshold 5.00%; "+
		"CPU usage NaN is not a valid reading, threshold 80.00%; "+
		"Memory usage NaN is not a valid reading, threshold 85.00%", v.Reason())
}

// TestEvaluateNaNThreshold: thresholds that skipped Validate fail closed.
func TestEvaluateNaNThreshold(t *testing.T) {
	th := Default()
	th.MaxCPU = math.NaN()
	v := Evaluate(healthy(), th)
	assert.False(t, v.Passed)
	require.Len(t, v.Failed, 1)
	assert.Equal(t, "cpu", v.Failed[0].Name)
}

func TestCustomThresholds(t *testing.T) {
	th := Thresholds{MaxErrorRate: 0.001, MaxP99: 250 * time.Millisecond, MaxCPU: 0.5, MaxMemory: 0.6}
	require.NoError(t, th.Validate())
	v := Evaluate(healthy(), th)
	assert.Equal(t, "Error rate 1.00% exceeds threshold 0.10%", v.Reason())
	s := healthy()
	s.P99 = 250 * time.Millisecond
	s.ErrorRate = 0.001
	assert.True(t, Evaluate(s, th).Passed, Evaluate(s, th).Reason())
}
