package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Backlog and the dead-letter calls read and change the streams through
// jetstream, whose requests wait out a refused publish (see apiRequest)
// as one not answered: 5 s, or the whole deadline of the caller's ctx,
// and then fail with a bare timeout. So a call sends its first request to
// each subject as apiRequest does, and fails at once with the refusal,
// naming the subject. A read — a stream's info, a message — is sent that
// way as a probe, its reply dropped, and then by jetstream; a delete or a
// publish, once, its reply read. The call's later requests to a subject
// the server took go as plain requests: the probe costs a call a ping
// and a request more for each of the few subjects it uses, not one for
// each dead letter.

// probedStream is a stream as one call uses it: the subjects its
// requests go to probed, each the first time (see above). A call uses it
// from one goroutine.
type probedStream struct {
	jetstream.Stream
	js   jetstream.JetStream
	name string
	took map[string]bool // the subjects the server took a probe to
}

// probe sends data to the subject subj, the first time the call asks,
// as apiRequest does, and returns its refusal, or that it had no answer
// in time (a request sent again would wait as long); any other outcome
// is for the request sent after it to meet.
func (s *probedStream) probe(ctx context.Context, subj string, data []byte) error {
	if s.took[subj] {
		return nil
	}
	_, err := apiRequest(ctx, s.js.Conn(), subj, data)
	switch {
	case err == nil:
		s.took[subj] = true
	case isDenied(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return err
	}
	return nil
}

// stream returns the stream named name, with its info, for one call:
// its info request probed.
func (q *Queue[T]) stream(ctx context.Context, name string) (*probedStream, *jetstream.StreamInfo, error) {
	ps := &probedStream{js: q.js, name: name, took: make(map[string]bool, 3)}
	if err := ps.probe(ctx, apiPrefix+"STREAM.INFO."+name, nil); err != nil {
		return nil, nil, fmt.Errorf("natsjs: stream %s: %w", name, err)
	}
	s, err := q.js.Stream(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("natsjs: stream %s: %w", name, err)
	}
	ps.Stream = s
	return ps, s.CachedInfo(), nil
}

// getMsg returns the message seq, or with a subject the first message on
// it from seq on, as GetMsg does: probed the first time. jetstream asks a
// stream that allows direct gets on the direct-get subject, whose answer
// carries the server's headers (Nats-Stream, Nats-Sequence, ...) among
// the message's own, and keeps them in its Header: they are taken out,
// so that a dead letter read so lists, and its redrive publishes, the
// headers the message was stored with, as a stream without direct gets
// answers.
func (s *probedStream) getMsg(ctx context.Context, seq uint64, subject string) (*jetstream.RawStreamMsg, error) {
	subj := apiPrefix + "STREAM.MSG.GET." + s.name
	direct := false
	if info := s.CachedInfo(); info != nil && info.Config.AllowDirect {
		subj = apiPrefix + "DIRECT.GET." + s.name
		direct = true
	}
	var opts []jetstream.GetMsgOpt
	if subject != "" {
		opts = append(opts, jetstream.WithGetMsgSubject(subject))
	}
	if !s.took[subj] {
		data, err := json.Marshal(struct {
			Seq     uint64 `json:"seq"`
			NextFor string `json:"next_by_subj,omitempty"`
		}{seq, subject})
		if err != nil {
			return nil, err
		}
		if err := s.probe(ctx, subj, data); err != nil {
			return nil, err
		}
	}
	m, err := s.GetMsg(ctx, seq, opts...)
	if err == nil && direct {
		for _, k := range directGetHeaders {
			delete(m.Header, k)
		}
	}
	return m, err
}

// directGetHeaders are the headers the server adds to its answer to a
// direct get, which are not the message's.
var directGetHeaders = []string{
	jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer, jetstream.SubjectHeader,
	"Nats-Last-Sequence", "Nats-Num-Pending", "Nats-UpTo-Sequence",
}

// deleteMsg deletes the message seq, as DeleteMsg does, with its errors:
// the first time sent as the probe, whose reply is read.
func (s *probedStream) deleteMsg(ctx context.Context, seq uint64) error {
	subj := apiPrefix + "STREAM.MSG.DELETE." + s.name
	if s.took[subj] {
		return s.DeleteMsg(ctx, seq)
	}
	data, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NoErase bool   `json:"no_erase"`
	}{seq, true})
	if err != nil {
		return err
	}
	reply, err := apiRequest(ctx, s.js.Conn(), subj, data)
	if err != nil {
		return err
	}
	s.took[subj] = true
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Success bool                `json:"success"`
	}
	switch err := json.Unmarshal(reply.Data, &r); {
	case err != nil:
		return fmt.Errorf("%w: %w", jetstream.ErrInvalidJetStreamResponse, err)
	case r.Success:
		return nil
	case r.Error == nil:
		return jetstream.ErrMsgDeleteUnsuccessful
	}
	return fmt.Errorf("%w: %s", jetstream.ErrMsgDeleteUnsuccessful, r.Error.Error())
}

// publish publishes m, as jetstream's PublishMsg does, with its errors:
// the first time to m's subject sent as the probe, whose reply is read.
// No stream answering it, it goes again by PublishMsg, which tries again
// for a stream coming back (a server restarting, a leader elected).
func (s *probedStream) publish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	if s.took[m.Subject] {
		return s.js.PublishMsg(ctx, m)
	}
	reply, err := probeRequest(ctx, s.js.Conn(), m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		ack, err := s.js.PublishMsg(ctx, m)
		if streamAnswered(err) {
			s.took[m.Subject] = true
		}
		return ack, err
	case err != nil:
		return nil, err
	}
	s.took[m.Subject] = true
	return pubAckOf(reply)
}
