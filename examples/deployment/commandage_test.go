package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommandFromASlowClockActedOn: a promote and an abort answered by a
// replica whose clock is hours behind carry a time (Command.At) hours in
// the past, and are acted on all the same: they were stored a moment ago
// on the NATS server's clock. They were dropped as over an hour old, the
// person told they were sent.
func TestCommandFromASlowClockActedOn(t *testing.T) {
	ts := startService(t, slowArgs...)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })

	behind := time.Now().Add(-3 * time.Hour)
	require.NoError(t, ts.store.SendCommand(t.Context(), id, Command{Action: "promote", Region: "us-west-2", Stage: "canary", At: behind}))
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "staging" })
	require.NoError(t, ts.store.SendCommand(t.Context(), id, Command{Action: "abort", Reason: "slow clock", Region: "us-west-2", At: behind}))
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, "Aborted: slow clock", d.Results[0].ErrorMessage)
}

// TestCommandAgeOnTheServersClock: a command is judged stale by its age
// on the clock of the NATS server that stored it, whatever time the
// replica that answered it gave it (Command.At) and whatever this
// process's clock says: one stored a moment ago is taken, however far
// its time is from now, and one stored over commandMaxAge ago (the
// server's clock read that much later than the command's entry) is
// dropped, though its time says it was sent just now. Commands stored
// before the watcher starts (a replica starting) are judged alike.
func TestCommandAgeOnTheServersClock(t *testing.T) {
	ts := startService(t, fastArgs...)
	cases := []struct {
		name  string
		at    time.Duration // the command's time, from now, as its replica's clock gave it
		ahead time.Duration // how much later the server's clock reads than when it stored the command
		taken bool
	}{
		{"from a slow clock, stored just now", -3 * time.Hour, 0, true},
		{"from a fast clock, stored just now", 3 * time.Hour, 0, true},
		{"stored within the bound", 0, commandMaxAge - time.Minute, true},
		{"stored past the bound, stamped just now", 0, commandMaxAge + time.Hour, false},
		{"stored past the bound, from a fast clock", 3 * time.Hour, commandMaxAge + time.Hour, false},
	}
	n := 0
	for _, tc := range cases {
		for _, before := range []bool{false, true} {
			n++
			id := fmt.Sprintf("dpl_%032d", 100+n)
			name := tc.name
			if before {
				name += ", before the watcher"
			}
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				st := &Store{control: ts.store.control, controlStream: aheadStream{ts.store.controlStream, tc.ahead}}
				sent := Command{Action: "promote", Region: "us-west-2", Stage: "canary", At: time.Now().Add(tc.at)}
				if before {
					require.NoError(t, ts.store.SendCommand(ctx, id, sent))
				}
				read := make(chan Command, 1)
				require.NoError(t, st.WatchCommands(ctx, func(got string, c Command) {
					if got == id {
						read <- c
					}
				}, func(string) {}))
				if !before {
					require.NoError(t, ts.store.SendCommand(ctx, id, sent))
				}
				var c Command
				select {
				case c = <-read:
				case <-time.After(30 * time.Second):
					t.Fatal("the command was not read")
				}
				r := &rollout{region: "us-west-2", cmdReady: make(chan struct{}, 1)}
				r.deliver(c)
				if tc.taken {
					require.Len(t, r.inbox, 1, "a command stored %v before the server's time was dropped", tc.ahead)
					assert.Equal(t, "promote", r.inbox[0].Action)
				} else {
					assert.Empty(t, r.inbox, "a command stored %v before the server's time was taken", tc.ahead)
				}
			})
		}
	}
}

// aheadStream is the control bucket's stream of a NATS server whose
// clock reads ahead later than when it stored the bucket's entries: the
// time it reports with the stream's info is that much later.
type aheadStream struct {
	jetstream.Stream
	ahead time.Duration
}

func (s aheadStream) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	info, err := s.Stream.Info(ctx, opts...)
	if err != nil {
		return nil, err
	}
	shifted := *info
	shifted.TimeStamp = info.TimeStamp.Add(s.ahead)
	return &shifted, nil
}
