package natsjs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/kanban"
)

// fetched is one message of a pull request, or the end of one.
type fetched struct {
	msg jetstream.Msg
	end bool
	err error
}

// source pulls from the durable with pull requests that never ask for
// more messages than the runtime's free WIP.
type source[T any] struct {
	q    *Queue[T]
	cons jetstream.Consumer
	in   chan fetched

	open int // pull requests not yet ended (0 or 1)
	wg   sync.WaitGroup
}

func (s *source[T]) HeartbeatInterval() time.Duration { return s.q.cfg.AckWait / 3 }

func (s *source[T]) fetch(n int) error {
	b, err := s.cons.Fetch(n, jetstream.FetchMaxWait(s.q.cfg.FetchWait))
	if err != nil {
		return err
	}
	s.open++
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for m := range b.Messages() {
			s.in <- fetched{msg: m}
		}
		s.in <- fetched{end: true, err: b.Error()}
	}()
	return nil
}

// Pull is called by one goroutine (the runtime's pull loop).
func (s *source[T]) Pull(ctx context.Context, max int) ([]kanban.Lease[T], error) {
	var out []kanban.Lease[T]
	var ferr error
	take := func(f fetched) {
		if f.end {
			s.open--
			if f.err != nil {
				ferr = f.err
			}
			return
		}
		out = append(out, s.lease(f.msg))
	}
	for {
		// One request at a time: two open requests would interleave their
		// messages and break the stream's order.
		if want := max - len(out); want > 0 && s.open == 0 {
			if err := s.fetch(want); err != nil && s.open == 0 {
				return out, fmt.Errorf("natsjs: fetch: %w", err)
			}
		}
		select {
		case f := <-s.in:
			take(f)
		case <-ctx.Done():
			// Requests still open deliver until they expire; collect
			// everything so the runtime can release it.
			for s.open > 0 {
				take(<-s.in)
			}
			return out, ctx.Err()
		}
		for more := true; more; {
			select {
			case f := <-s.in:
				take(f)
			default:
				more = false
			}
		}
		if len(out) > 0 || ferr != nil {
			return out, ferr
		}
	}
}

// wait returns when every request goroutine has ended. Serve has returned
// by then, so nothing reads s.in: drain it.
func (s *source[T]) wait() {
	for s.open > 0 {
		f := <-s.in
		if f.end {
			s.open--
		} else {
			_ = f.msg.Nak()
		}
	}
	s.wg.Wait()
}

func (s *source[T]) lease(m jetstream.Msg) *lease[T] {
	l := &lease[T]{q: s.q, m: m, attempt: 1}
	if md, err := m.Metadata(); err == nil {
		l.attempt = int(md.NumDelivered)
	}
	return l
}

type lease[T any] struct {
	q       *Queue[T]
	m       jetstream.Msg
	attempt int
}

func (l *lease[T]) ID() string   { return first(l.m.Headers(), HeaderID) }
func (l *lease[T]) Key() string  { return first(l.m.Headers(), HeaderKey) }
func (l *lease[T]) Attempt() int { return l.attempt }

func first(h nats.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (l *lease[T]) Message() (kanban.Message[T], error) {
	nh := l.m.Headers()
	msg := kanban.Message[T]{ID: first(nh, HeaderID), Key: first(nh, HeaderKey)}
	for k, v := range nh {
		if k != HeaderID && k != HeaderKey && len(v) > 0 {
			if msg.Headers == nil {
				msg.Headers = make(kanban.Header, len(nh))
			}
			msg.Headers[k] = v[0]
		}
	}
	err := l.q.cfg.Codec.Unmarshal(l.m.Data(), &msg.Payload)
	return msg, err
}

func (l *lease[T]) Ack(context.Context) error { return l.m.Ack() }

func (l *lease[T]) Retry(_ context.Context, delay time.Duration) error {
	return l.m.NakWithDelay(delay)
}

func (l *lease[T]) Release(context.Context) error { return l.m.Nak() }

func (l *lease[T]) Extend(context.Context) error { return l.m.InProgress() }

// DeadLetter publishes the message to the dead-letter stream, then
// terminates it. When the publish fails the message is released instead,
// to be dead-lettered on its next delivery.
func (l *lease[T]) DeadLetter(ctx context.Context, reason string, attempts int) error {
	q := l.q
	nh := make(nats.Header, len(l.m.Headers())+3)
	for k, v := range l.m.Headers() {
		nh[k] = v
	}
	nh[HeaderReason] = []string{reason}
	nh[HeaderAttempts] = []string{fmt.Sprint(attempts)}
	nh[HeaderTime] = []string{time.Now().UTC().Format(time.RFC3339Nano)}
	pctx, cancel := context.WithTimeout(ctx, q.cfg.PublishTimeout)
	defer cancel()
	if _, err := q.js.PublishMsg(pctx, &nats.Msg{Subject: q.cfg.DeadLetterStream, Data: l.m.Data(), Header: nh}); err != nil {
		_ = l.m.Nak()
		return fmt.Errorf("natsjs: dead-lettering message %s: %w", l.ID(), err)
	}
	return l.m.Term() // not TermWithReason: servers before 2.10 ignore it
}
