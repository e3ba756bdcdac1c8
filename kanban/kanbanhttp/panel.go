package kanbanhttp

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kanban"
)

// snapshot is what Refresh read of one queue.
type snapshot struct {
	backlog    kanban.Backlog
	hasBacklog bool
	dead       int // the dead letters kept, as the listing's Total says
	err        error
	// read numbers the read among every Refresh's reads, in the order
	// they began: a read that began before the one shown is not shown.
	read uint64
}

// PanelDeadLetters is the most dead letters Refresh reads per queue for
// DeadLetterPanel: the newest.
const PanelDeadLetters = 20

// Refresh reads the backlog and the newest dead letters of every queue for
// the panels, one queue after another, and then calls Options.OnRefresh.
// It returns the errors of the queues it could not read (their panel rows
// say so too). A queue whose read panics (a store of the program's own)
// is one it could not read: the panic is logged at Error level with its
// stack, and the queues after it are read all the same. Refresh may be
// called while another runs (Watch's, say): the panels show of each queue
// the read that began last.
func (h *Handler) Refresh(ctx context.Context) error { return h.refresh(ctx, nil) }

// refresh is Refresh, for Watch when stop is not nil: once stop has ended
// (Watch is stopping) it reads no more queues, and a read that failed
// then is not shown, nor is OnRefresh called for it: the end of Watch is
// no failure of the queue, and its panels keep the last whole read.
func (h *Handler) refresh(ctx, stop context.Context) error {
	stopped := func() bool { return stop != nil && stop.Err() != nil }
	shown := 0
	h.mu.Lock()
	names := slices.Clone(h.names)
	queues := make([]kanban.DeadLetterStore, len(names))
	for i, n := range names {
		queues[i] = h.queues[n]
	}
	h.mu.Unlock()
	var errs []error
	for i, name := range names {
		if stopped() {
			break
		}
		var s snapshot
		h.mu.Lock()
		h.reads++
		s.read = h.reads
		h.mu.Unlock()
		letters, err := h.readQueue(ctx, name, queues[i], &s)
		if s.err != nil && stopped() {
			break // cut short by the end of Watch
		}
		shown++
		if s.err != nil {
			errs = append(errs, fmt.Errorf("kanbanhttp: queue %s: %w", name, s.err))
		}
		h.mu.Lock()
		// A read that began before the one shown, and was slower, would
		// bring back what that one found gone.
		if s.read > h.seen[name].read {
			h.seen[name] = s
			if err == nil {
				h.dlSeen[name] = letters
			} else {
				// Those read before may have been redriven or deleted
				// since: DeadLetterPanel says the queue is unreadable.
				delete(h.dlSeen, name)
			}
		}
		h.mu.Unlock()
	}
	if h.opts.OnRefresh != nil && (stop == nil || shown > 0) {
		h.notify()
	}
	return errors.Join(errs...)
}

// readQueue reads q, the queue name, into s: its backlog, when it has
// one, and how many dead letters it keeps; it returns the newest of them
// and the error listing them. A read that panics fails as an error
// does, and is logged.
func (h *Handler) readQueue(ctx context.Context, name string, q kanban.DeadLetterStore, s *snapshot) (letters []kanban.DeadLetter, err error) {
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("kanbanhttp: reading a queue panicked", "queue", name, "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("reading it panicked: %v", v)
			letters = nil
			if s.err == nil {
				s.err = err
			}
		}
	}()
	if br, ok := q.(kanban.BacklogReader); ok {
		s.hasBacklog = true
		s.backlog, s.err = br.Backlog(ctx)
	}
	page, err := q.ListDeadLetters(ctx, kanban.DeadLetterQuery{Newest: true, Limit: PanelDeadLetters})
	s.dead = page.Total
	if s.err == nil {
		s.err = err
	}
	return page.Letters, err
}

// notify calls Options.OnRefresh; a panic there is logged.
func (h *Handler) notify() {
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("kanbanhttp: OnRefresh panicked", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	h.opts.OnRefresh()
}

// Watch calls Refresh at once and then every interval (at least 1ms),
// until ctx ends; it runs in its caller's goroutine and returns ctx's
// error. Each Refresh
// has one interval to read every queue: a queue not read by then fails
// with the deadline, and shows as unreadable. Refresh errors are logged
// at Warn level (they show on the panels too). The end of ctx is no
// failure of a queue: a read it cuts short is not shown (the panels keep
// what the reads before found, and OnRefresh is not called for it), and
// the queues after it are not read.
func (h *Handler) Watch(ctx context.Context, interval time.Duration) error {
	if interval < time.Millisecond {
		// Each read of a shorter Refresh would end at its deadline at
		// once, and Watch would read and log without pause.
		return fmt.Errorf("kanbanhttp: Watch: interval %v must be at least 1ms", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, interval)
		if err := h.refresh(rctx, ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("kanbanhttp: reading queues for the board", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// PanelOptions configure QueuePanel. The zero value titles it "Queues"
// and colours a queue red while it has dead letters (or cannot be read),
// green otherwise.
type PanelOptions struct {
	// Title heads the panel. Empty means "Queues".
	Title string
	// OldestAmber, if positive, colours amber a queue whose oldest
	// waiting message is at least this old.
	OldestAmber time.Duration
	// DepthAmber, if positive, colours amber a queue holding at least this
	// many messages.
	DepthAmber int64
}

// unreadableCell is the dead letters cell of a queue Refresh could not
// read.
const unreadableCell = "unreadable; the service's log has the detail"

// QueuePanel returns an andon.Panel with a row per queue: its name
// (linked to its dead letters in the API), depth, the age of its oldest
// waiting message and its dead letters, as the last Refresh read them (a
// queue that is no kanban.BacklogReader has no depth or age, and the
// number of dead letters its listing counts). A queue that could not be
// read says so, without the error's text, which
// may name servers or credentials (Refresh returns it, and Watch logs it),
// as GET /queues does.
func (h *Handler) QueuePanel(opts PanelOptions) andon.Panel {
	title := opts.Title
	if title == "" {
		title = "Queues"
	}
	return andon.Panel{
		Title:   title,
		Columns: []string{"Queue", "Depth", "Oldest", "Dead letters"},
		Empty:   "no queues",
		Rows: func() []andon.PanelRow {
			h.mu.Lock()
			defer h.mu.Unlock()
			rows := make([]andon.PanelRow, 0, len(h.names))
			for _, name := range h.names {
				row := andon.PanelRow{Link: h.deadLettersPath(name) + "?order=newest"}
				s, polled := h.seen[name]
				switch {
				case !polled:
					row.Cells, row.Color = []string{name, "…", "…", "not read yet"}, "grey"
				case s.err != nil:
					// The error's text may name servers or credentials, and
					// a board is often open to read: Refresh's caller (Watch
					// logs it) has the detail.
					row.Cells, row.Color = []string{name, "?", "?", unreadableCell}, "red"
				case !s.hasBacklog:
					n := int64(s.dead)
					row.Cells, row.Color = []string{name, "", "", strconv.FormatInt(n, 10)}, color(n, false)
				default:
					b := s.backlog
					oldest := "unknown"
					if b.OldestKnown {
						oldest = age(b.Oldest)
					}
					amber := (opts.OldestAmber > 0 && b.OldestKnown && b.Oldest >= opts.OldestAmber) ||
						(opts.DepthAmber > 0 && b.Depth >= opts.DepthAmber)
					row.Cells = []string{name, strconv.FormatInt(b.Depth, 10), oldest, strconv.FormatInt(b.DeadLetters, 10)}
					row.Color = color(b.DeadLetters, amber)
				}
				rows = append(rows, row)
			}
			return rows
		},
	}
}

// DeadLetterPanel returns an andon.Panel listing the newest dead letters
// of the queue name (at most PanelDeadLetters), as the last Refresh read
// them: each with its seq (linked to it in the API), when, ID, key,
// attempts and reason. Payloads are not shown. Before the first Refresh it
// has one grey row saying so, and when the last Refresh could not read the
// dead letters one red row saying that, without the error's text, as
// QueuePanel does. Title empty means "Dead letters: " and the name. It
// returns an error for a queue not added.
func (h *Handler) DeadLetterPanel(name, title string) (andon.Panel, error) {
	h.mu.Lock()
	_, ok := h.queues[name]
	h.mu.Unlock()
	if !ok {
		return andon.Panel{}, fmt.Errorf("kanbanhttp: DeadLetterPanel: no queue named %q", name)
	}
	if title == "" {
		title = "Dead letters: " + name
	}
	return andon.Panel{
		Title:   title,
		Columns: []string{"Seq", "Time", "ID", "Key", "Attempts", "Reason"},
		Empty:   "no dead letters",
		Rows: func() []andon.PanelRow {
			h.mu.Lock()
			defer h.mu.Unlock()
			dls, read := h.dlSeen[name]
			if _, polled := h.seen[name]; !polled {
				return []andon.PanelRow{{Cells: []string{"…", "", "", "", "", "not read yet"}, Color: "grey"}}
			} else if !read {
				return []andon.PanelRow{{Cells: []string{"?", "", "", "", "", unreadableCell}, Color: "red"}}
			}
			rows := make([]andon.PanelRow, 0, len(dls))
			for _, d := range dls {
				rows = append(rows, andon.PanelRow{
					Cells: []string{strconv.FormatUint(d.Seq, 10), d.Time.UTC().Format(time.RFC3339), d.ID, d.Key,
						strconv.Itoa(d.Attempts), d.Reason},
					Color: "red",
					Link:  h.deadLettersPath(name) + "?seq=" + strconv.FormatUint(d.Seq, 10),
				})
			}
			return rows
		},
	}, nil
}

func color(dead int64, amber bool) string {
	switch {
	case dead > 0:
		return "red"
	case amber:
		return "amber"
	}
	return "green"
}

// age formats d to the second, or to the millisecond below one.
func age(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
