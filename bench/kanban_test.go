package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// Kanban benchmarks: publish → consume → ack throughput, reported as
// msgs/s. Each side does the same work: b.N messages with an ID, handed
// to the same number of workers.

const kanbanWorkers = 8

type kanbanItem struct {
	ID      string
	Payload int
}

// kanbanIDs returns n message IDs, made before the timer starts. It then
// runs a collection: the IDs are a large heap of their own (tens of
// millions of strings at the larger b.N), and a collection that the setup
// started would otherwise mark them during the timed part, slowing
// whichever benchmark it fell in.
func kanbanIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "m-" + strconv.Itoa(i)
	}
	runtime.GC()
	return ids
}

func BenchmarkKanbanMemory(b *testing.B) { benchMemory(b, 0, nil) }

// BenchmarkKanbanMemoryNoDedup turns deduplication off: the channel does
// none, and remembering every ID is most of the memory queue's cost.
func BenchmarkKanbanMemoryNoDedup(b *testing.B) { benchMemory(b, -1, nil) }

// BenchmarkKanbanMemoryObserved is NoDedup with a HandlerObserver (one
// that does nothing): the price of timing every handler, two clock reads.
func BenchmarkKanbanMemoryObserved(b *testing.B) {
	benchMemory(b, -1, kanban.HandlerObserverFunc(func(time.Duration, error) {}))
}

func benchMemory(b *testing.B, dedup time.Duration, observer kanban.HandlerObserver) {
	ids := kanbanIDs(b.N)
	q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: 1024, DedupWindow: dedup})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int64
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	published := make(chan error, 1)
	go func() {
		for i, id := range ids {
			if err := q.Publish(ctx, kanban.Message[int]{ID: id, Payload: i}); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
			if handled.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		}, kanban.ConsumeOptions{WIP: kanbanWorkers, Observer: observer})
	}()
	kanbanWait(b, &handled, done, published, consumed)
	b.StopTimer()
	cancel()
	if err := <-consumed; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// kanbanWait waits until every message is handled (done is closed) and
// fails b as soon as the publisher reports an error or the consumer ends
// first, so that a benchmark whose messages are lost fails instead of
// waiting for ever.
func kanbanWait(b *testing.B, handled *atomic.Int64, done <-chan struct{}, published, consumed <-chan error) {
	b.Helper()
	for {
		select {
		case <-done:
			return
		case err := <-published:
			if err != nil {
				b.Fatalf("publish: %v", err)
			}
			published = nil
		case err := <-consumed:
			b.Fatalf("consumer ended after %d of %d messages: %v", handled.Load(), b.N, err)
		}
	}
}

func BenchmarkKanbanChannel(b *testing.B) {
	ids := kanbanIDs(b.N)
	ch := make(chan kanbanItem, 1024)
	var handled atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i, id := range ids {
			ch <- kanbanItem{ID: id, Payload: i}
		}
		close(ch)
	}()
	for range kanbanWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				_ = it
				handled.Add(1)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if handled.Load() != int64(b.N) {
		b.Fatalf("handled %d of %d", handled.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkKanbanChannelDedup is the bare channel doing the work
// BenchmarkKanbanMemory does and BenchmarkKanbanChannel does not:
// remembering every published ID to drop duplicates. With the default
// 2-minute window every ID of the run is remembered, so both sides write
// b.N IDs into a map; this is the like-for-like baseline for the queue
// with deduplication on.
func BenchmarkKanbanChannelDedup(b *testing.B) {
	ids := kanbanIDs(b.N)
	ch := make(chan kanbanItem, 1024)
	var handled atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		seen := make(map[string]struct{})
		for i, id := range ids {
			if _, dup := seen[id]; dup {
				continue
			}
			seen[id] = struct{}{}
			ch <- kanbanItem{ID: id, Payload: i}
		}
		close(ch)
	}()
	for range kanbanWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				_ = it
				handled.Add(1)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if handled.Load() != int64(b.N) {
		b.Fatalf("handled %d of %d", handled.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// rawCodec passes []byte payloads through, so both sides send 128 bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if p, ok := v.([]byte); ok {
		return p, nil
	}
	return nil, fmt.Errorf("rawCodec: %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*p = data
	return nil
}

const natsWIP = 256

var natsStreams atomic.Int64

func natsServer(b *testing.B) (*natsembed.Server, *nats.Conn, string) {
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		_ = srv.Shutdown(context.Background())
		b.Fatal(err)
	}
	return srv, nc, "B" + strconv.FormatInt(natsStreams.Add(1), 10)
}

func BenchmarkKanbanNATS(b *testing.B) {
	srv, nc, stream := natsServer(b)
	defer func() { _ = srv.Shutdown(context.Background()) }()
	defer nc.Close()
	ctx := context.Background()
	q, err := natsjs.New[[]byte](ctx, nc, natsjs.Options{Stream: stream, Codec: rawCodec{}, MaxPublishPending: natsWIP, Capacity: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	ids := kanbanIDs(b.N)
	payload := make([]byte, 128)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var handled atomic.Int64
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	published := make(chan error, 1)
	go func() {
		for _, id := range ids {
			if err := q.PublishAsync(ctx, kanban.Message[[]byte]{ID: id, Payload: payload}); err != nil {
				published <- err
				return
			}
		}
		published <- q.Flush(ctx)
	}()
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(cctx, func(context.Context, kanban.Delivery[[]byte]) error {
			if handled.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		}, kanban.ConsumeOptions{WIP: natsWIP})
	}()
	kanbanWait(b, &handled, done, published, consumed)
	b.StopTimer()
	cancel()
	if err := <-consumed; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkKanbanNATSJetStream is the same work written by hand with the
// nats.go jetstream API: a work-queue stream, a durable pull consumer with
// MaxAckPending 256, async publishes with 256 pending, Msg-Id set, ack
// per message.
func BenchmarkKanbanNATSJetStream(b *testing.B) {
	srv, nc, stream := natsServer(b)
	defer func() { _ = srv.Shutdown(context.Background()) }()
	defer nc.Close()
	ctx := context.Background()
	// A publish the server refuses is reported to the error handler, not
	// by PublishAsyncComplete; the first one fails the benchmark.
	pubErr := make(chan error, 1)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(natsWIP),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			select {
			case pubErr <- fmt.Errorf("message %s: %w", m.Header.Get("Nats-Msg-Id"), err):
			default:
			}
		}))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{stream}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: stream + "_W", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: natsWIP,
	})
	if err != nil {
		b.Fatal(err)
	}
	ids := kanbanIDs(b.N)
	payload := make([]byte, 128)
	var handled atomic.Int64
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	published := make(chan error, 1)
	go func() {
		for _, id := range ids {
			if _, err := js.PublishMsgAsync(&nats.Msg{Subject: stream, Data: payload, Header: nats.Header{"Nats-Msg-Id": {id}}}); err != nil {
				published <- err
				return
			}
		}
		<-js.PublishAsyncComplete()
		select {
		case err := <-pubErr:
			published <- err
		default:
			published <- nil
		}
	}()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if handled.Add(1) == int64(b.N) {
			close(done)
		}
	}, jetstream.PullMaxMessages(natsWIP))
	if err != nil {
		b.Fatal(err)
	}
	kanbanWait(b, &handled, done, published, nil)
	b.StopTimer()
	cc.Stop()
	<-cc.Closed()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
