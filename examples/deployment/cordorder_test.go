package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestStaleCordIsNotApplied: the cord's watcher may read a stored state
// after a later one was applied here (the pull it reads late, once the
// release written through this replica's API is in force). That older
// state changes nothing. It stopped the line again, so that a rollout
// resumed on the started line paused once more, and stayed paused once
// the watcher caught up and started the line, with no resume to end its
// pause.
func TestStaleCordIsNotApplied(t *testing.T) {
	ts := startService(t, fastArgs...)
	base := ts.cordState().Rev + 1000 // past what the store holds
	pull := Cord{Stopped: true, Reason: "incident 1", At: time.Now().UTC(), Rev: base}
	release := Cord{At: time.Now().UTC(), Rev: base + 1}

	ts.applyCord(pull)
	ts.applyCord(release)
	changed := ts.cordChanged()
	ts.applyCord(pull) // read late

	stopped, _ := ts.line.Stopped()
	assert.False(t, stopped, "the line stopped again by a pull older than the release in force")
	assert.Equal(t, release.Rev, ts.cordState().Rev, "the cord in force")
	select {
	case <-changed:
		t.Error("an older state was taken as a change of the cord")
	default:
	}

	// A later state still applies.
	again := Cord{Stopped: true, Reason: "incident 2", At: time.Now().UTC(), Rev: base + 2}
	ts.applyCord(again)
	stopped, reason := ts.line.Stopped()
	assert.True(t, stopped)
	assert.Equal(t, "incident 2", reason)
	ts.applyCord(Cord{At: time.Now().UTC(), Rev: base + 3})
}
