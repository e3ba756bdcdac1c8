package natsembed_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban/natsembed"
)

// TestJetStreamLimits: MaxMemory and MaxStore reach the server, which
// refuses a write to a stream of either storage once its bound is
// reached, with an "insufficient resources" error the publisher sees.
func TestJetStreamLimits(t *testing.T) {
	const maxMemory, maxStore = 32 << 10, 64 << 10
	ctx := context.Background()
	srv, err := natsembed.Start(ctx, natsembed.Options{InProcess: true, MaxMemory: maxMemory, MaxStore: maxStore})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Shutdown(ctx)) }()
	cfg := srv.NATS().JetStreamConfig()
	require.NotNil(t, cfg)
	assert.EqualValues(t, maxMemory, cfg.MaxMemory)
	assert.EqualValues(t, maxStore, cfg.MaxStore)
	vz, err := srv.NATS().Varz(nil)
	require.NoError(t, err)
	assert.EqualValues(t, maxMemory, vz.JetStream.Config.MaxMemory, "the monitoring endpoint reports it too")
	assert.EqualValues(t, maxStore, vz.JetStream.Config.MaxStore)

	nc, err := srv.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	insufficient := jetstream.ErrorCode(server.ApiErrors[server.JSInsufficientResourcesErr].ErrCode)
	payload := make([]byte, 1<<10)
	for _, tc := range []struct {
		storage jetstream.StorageType
		limit   int
	}{
		{jetstream.FileStorage, maxStore},
		{jetstream.MemoryStorage, maxMemory},
	} {
		t.Run(tc.storage.String(), func(t *testing.T) {
			name := "LIMITED_" + tc.storage.String()
			s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name}, Storage: tc.storage})
			require.NoError(t, err)
			var refused error
			for i := 0; i < 4*tc.limit/len(payload) && refused == nil; i++ {
				_, refused = js.Publish(ctx, name, payload)
			}
			require.Error(t, refused, "writes past the bound are refused")
			var apiErr *jetstream.APIError
			require.True(t, errors.As(refused, &apiErr), "%v", refused)
			assert.Equal(t, insufficient, apiErr.ErrorCode, "%v", refused)
			assert.ErrorContains(t, refused, "insufficient resources")
			info, err := s.Info(ctx)
			require.NoError(t, err)
			assert.LessOrEqual(t, info.State.Bytes, uint64(tc.limit)+2*uint64(len(payload)), "no more than one write past the bound")
			assert.Greater(t, info.State.Bytes, uint64(tc.limit)/2, "the stream held all it could")
		})
	}
}

// TestJetStreamLimitsDefault: without MaxMemory and MaxStore the server
// sets its own bounds from the machine.
func TestJetStreamLimitsDefault(t *testing.T) {
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Shutdown(context.Background())) }()
	cfg := srv.NATS().JetStreamConfig()
	require.NotNil(t, cfg)
	assert.Positive(t, cfg.MaxMemory)
	assert.Positive(t, cfg.MaxStore)
}
