package main

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// TestFinishNamesTheRegionOfItsStatus: a wave that goes on past a
// failure (continue_on_failure) ends with the status of its worst
// region, and its error_message is that region's: a rollback's reason,
// not the refusal of a region before it.
func TestFinishNamesTheRegionOfItsStatus(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		results []RegionResult
		status  string
		message string
	}{
		{"failed, then rolled back", []RegionResult{
			{Region: "us-west-2", Status: StatusFailed, ErrorMessage: "api-service v2.0.0 already serves in us-west-2"},
			{Region: "us-east-1", Status: StatusRolledBack, ErrorMessage: "Error rate 7.20% exceeds threshold 5.00%"},
			{Region: "eu-west-1", Status: StatusSuccess},
		}, StatusRolledBack, "us-east-1: Error rate 7.20% exceeds threshold 5.00%"},
		{"rolled back, then failed", []RegionResult{
			{Region: "us-west-2", Status: StatusRolledBack, ErrorMessage: "Aborted: no"},
			{Region: "us-east-1", Status: StatusFailed, ErrorMessage: "Unknown region: us-east-1"},
		}, StatusRolledBack, "us-west-2: Aborted: no"},
		{"two failed", []RegionResult{
			{Region: "us-west-2", Status: StatusSuccess},
			{Region: "us-east-1", Status: StatusFailed, ErrorMessage: "Image not found: a/b"},
			{Region: "eu-west-1", Status: StatusFailed, ErrorMessage: "Unknown region: eu-west-1"},
		}, StatusFailed, "us-east-1: Image not found: a/b"},
		{"one region", []RegionResult{
			{Region: "us-west-2", Status: StatusRolledBack, ErrorMessage: "Error rate 7.20% exceeds threshold 5.00%"},
		}, StatusRolledBack, "Error rate 7.20% exceeds threshold 5.00%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Deployment{StartedAt: start, Results: tc.results}
			for _, rr := range tc.results {
				d.Regions = append(d.Regions, rr.Region)
			}
			d.finish(start.Add(time.Second))
			assert.Equal(t, tc.status, d.Status)
			require.NotNil(t, d.ErrorMessage)
			assert.Equal(t, tc.message, *d.ErrorMessage)
		})
	}
}

// TestFinishBeforeTheStart: a replica whose clock is behind the one that
// started a deployment finishes it no earlier than its start, with a
// duration of 0, not a negative one.
func TestFinishBeforeTheStart(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := &Deployment{StartedAt: start, Regions: []string{"us-west-2"}, Results: []RegionResult{{Region: "us-west-2", Status: StatusSuccess}}}
	d.finish(start.Add(-3 * time.Second))
	require.NotNil(t, d.CompletedAt)
	assert.Equal(t, start, *d.CompletedAt)
	assert.Zero(t, d.DurationSecs)

	d = &Deployment{StartedAt: start, Regions: []string{"us-west-2"}, Results: []RegionResult{{Region: "us-west-2", Status: StatusSuccess}}}
	d.finish(start.Add(1500 * time.Millisecond).In(time.FixedZone("east", 3600)))
	assert.Equal(t, start.Add(1500*time.Millisecond), *d.CompletedAt)
	assert.Equal(t, time.UTC, d.CompletedAt.Location())
	assert.InDelta(t, 1.5, d.DurationSecs, 1e-9)
}

// TestMetadataRefusalIsStable: a request with several metadata entries
// out of bounds is refused naming the same one each time it is sent (the
// first by key), not whichever a map's order gives first.
func TestMetadataRefusalIsStable(t *testing.T) {
	req := DeployRequest{Service: "api-service", Version: "v2.0.0", TargetRegion: "us-west-2", Metadata: map[string]string{
		"b key": "x", "a key": "x", "c key": "x", "d key": "x", "e key": "x",
	}}
	for range 50 {
		_, _, err := req.validate()
		require.Error(t, err)
		require.Contains(t, err.Error(), `"a key"`)
	}
}

// TestStoredHugeP99ThresholdReadsBack: a deployment stored with a p99
// threshold past the largest duration (written with a -max-p99 near the
// largest duration, whose milliseconds in a float64 round past it) reads
// back as the largest duration, which no reading exceeds. It read back as
// a negative threshold that every sample failed, rolling back a healthy
// version.
func TestStoredHugeP99ThresholdReadsBack(t *testing.T) {
	for _, ms := range []float64{
		float64(time.Duration(math.MaxInt64)) / float64(time.Millisecond), // thresholdsOf(the largest duration)
		1e300,
		math.MaxFloat64,
	} {
		var th Thresholds
		require.NoError(t, json.Unmarshal(fmt.Appendf(nil, `{"max_error_rate": 0.05, "max_p99_ms": %v, "max_cpu": 0.8, "max_memory": 0.85}`, ms), &th))
		a := th.analysis()
		assert.Equal(t, time.Duration(math.MaxInt64), a.MaxP99, "max_p99_ms %v", ms)
		v := analysis.Evaluate(fleet.Sample{Requests: 100, ErrorRate: 0.01, P99: time.Hour, CPU: 0.3, Memory: 0.3}, a)
		assert.True(t, v.Passed, "max_p99_ms %v: %s", ms, v.Reason())
	}
	assert.Equal(t, time.Hour, Thresholds{MaxP99Ms: 3_600_000}.analysis().MaxP99, "a threshold within range is as stored")
}
