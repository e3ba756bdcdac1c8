package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban/natsembed"
)

// listStore opens a Store on an embedded server of its own, holding n
// deployments, started a second apart.
func listStore(t testing.TB, n int) *Store {
	t.Helper()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := openStore(context.Background(), js, nil, StoreOptions{MaxBytes: 1 << 30, MaxAge: time.Hour})
	require.NoError(t, err)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range n {
		d := &Deployment{ID: fmt.Sprintf("dep-%05d", i), Service: []string{"checkout", "search"}[i%2], Version: "v1.0.0",
			TargetRegion: "us-east-1", Regions: []string{"us-east-1"}, Strategy: "canary", Status: StatusSuccess,
			StartedAt: start.Add(time.Duration(i) * time.Second)}
		_, err := s.Create(context.Background(), d)
		require.NoError(t, err)
	}
	return s
}

// TestStoreListReadsEveryRecordOnce: the list holds each deployment as
// stored, once, newest first, filtered; a record changed or deleted
// before the list is read as it is then.
func TestStoreListReadsEveryRecordOnce(t *testing.T) {
	ctx := context.Background()
	s := listStore(t, 30)
	d, rev, err := s.Get(ctx, "dep-00007")
	require.NoError(t, err)
	d.Status = StatusFailed
	_, err = s.Update(ctx, d, rev)
	require.NoError(t, err)
	require.NoError(t, s.deployments.Delete(ctx, "dep-00003"))

	all, err := s.List(ctx, func(*Deployment) bool { return true })
	require.NoError(t, err)
	require.Len(t, all, 29)
	for i, d := range all {
		want := 29 - i
		if want <= 3 {
			want-- // dep-00003 deleted
		}
		require.Equal(t, fmt.Sprintf("dep-%05d", want), d.ID)
		if d.ID == "dep-00007" {
			require.Equal(t, StatusFailed, d.Status)
		} else {
			require.Equal(t, StatusSuccess, d.Status)
		}
	}
	search, err := s.List(ctx, func(d *Deployment) bool { return d.Service == "search" })
	require.NoError(t, err)
	require.Len(t, search, 14) // dep-00003, deleted, was one
	for _, d := range search {
		require.Equal(t, "search", d.Service)
	}

	empty := listStore(t, 0)
	none, err := empty.List(ctx, func(*Deployment) bool { return true })
	require.NoError(t, err)
	require.Empty(t, none)
}

// TestStoreListEndsWithItsContext: a list whose context ends returns its
// error rather than a part of the deployments.
func TestStoreListEndsWithItsContext(t *testing.T) {
	s := listStore(t, 5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.List(ctx, func(*Deployment) bool { return true })
	require.ErrorIs(t, err, context.Canceled)
}

// BenchmarkStoreList lists 1,000 deployments, as GET /deployments does.
func BenchmarkStoreList(b *testing.B) {
	s := listStore(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		all, err := s.List(context.Background(), func(*Deployment) bool { return true })
		if err != nil || len(all) != 1000 {
			b.Fatalf("%d deployments, %v", len(all), err)
		}
	}
}
