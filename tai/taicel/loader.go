package taicel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/tai"
)

// ReloadKind is the Kind of the records a Loader hands to its Observer.
const ReloadKind = "taicel.reload"

// MinLoaderInterval is the shortest LoaderOptions.Interval a Loader
// accepts: a shorter one would read and hash the file almost without
// pause, and a rule file is not changed that often.
const MinLoaderInterval = 10 * time.Millisecond

// LoaderOptions configures a Loader. The zero value is useful: the file is
// checked every 5 seconds, reloads are not reported, and problems are
// logged on slog.Default().
type LoaderOptions struct {
	// Interval is how often the file is read and hashed, at least
	// MinLoaderInterval. Zero means 5s; a negative value means never: the
	// file is read again only when Reload is called.
	Interval time.Duration
	// OnReload, if set, receives every load: the first one, each new set
	// swapped in, and each file refused. Reports are delivered one at a
	// time, in the order the loads happened, with no lock held. Each runs
	// on the goroutine that loaded (the Loader's own, or Reload's caller)
	// unless loads overlap: then the goroutine already delivering a report
	// delivers the later ones after it, so a Reload may return before its
	// own report has been delivered. A panic in OnReload is recovered and
	// logged on Logger as a *PanicError; the Observer still receives the
	// load.
	OnReload func(Reload)
	// Observer, if set, receives each load as a tai.Record, after
	// OnReload and in the same order, so a
	// kaizen.Audit writes it into the audit trail: Kind ReloadKind, Key
	// the file's path, Outcome Succeeded (Decision.Verdict Allow) for a
	// set swapped in and Failed (with Err) for a file refused, and
	// Decision.Reason "version V sha256 H" with the set's version and the
	// file's SHA-256. A panic in Observe is recovered and logged on
	// Logger as a *PanicError, as a tai pipeline does with its observers.
	Observer tai.Observer
	// Logger receives what the Loader cannot return to a caller: a panic
	// of OnReload or the Observer, as a *PanicError with its stack. Nil
	// means slog.Default().
	Logger *slog.Logger
}

// Reload reports one load of a rule file.
type Reload struct {
	Path    string    // the file
	Time    time.Time // when it was loaded
	Version string    // the set's version; empty when the file did not parse
	Hash    string    // the file's SHA-256 in hex; empty when it could not be read
	// Err is nil when the set was swapped in; otherwise why the file was
	// refused (it could not be read, parsed or compiled), and the set
	// that was running keeps running.
	Err error
}

// Loader is a tai.Policy that judges signals with the rule set in a file
// and follows the file as it changes. Every Interval it reads the file;
// when the file's SHA-256 differs from the last one it loaded or refused,
// it parses and compiles the file and, only if that succeeds, swaps the
// new set in atomically. A signal is judged with whichever set is current
// when its evaluation begins, from start to end. A file larger than
// MaxRuleFileBytes is refused without being read whole.
//
// Write a rule file by renaming a complete file over it. A file written in
// place may be read half written, and the part written may be a valid
// set: cut at the end of a rule, with the later rules missing; cut within
// a number or an unquoted text, with a rule's weight, threshold or
// reason shortened (weight: 0.25 read as 0.2). Most other cuts are
// refused. The Loader runs such a set until the next check reads the
// whole file.
//
// Shutdown stops the polling goroutine; the Loader still evaluates
// afterwards, with the last set.
type Loader[T any] struct {
	env      *Env[T]
	path     string
	opts     LoaderOptions
	cur      atomic.Pointer[Set[T]]
	mu       sync.Mutex // serialises loads
	lastHash string     // of the last file loaded or refused
	lastErr  error      // why that file was refused; nil if it was loaded

	// Reports wait in pending, in load order, for the one goroutine
	// delivering them (reporting), so that a later load's report never
	// overtakes an earlier one's.
	repMu     sync.Mutex
	pending   []pendingReload
	reporting bool

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// NewLoader loads the rule file at path with env and, unless
// opts.Interval is negative, starts watching it. It returns an error when
// env is nil, opts.Interval is above zero and below MinLoaderInterval, or
// the file cannot be read, parsed or compiled: a Loader always has a set.
func NewLoader[T any](env *Env[T], path string, opts LoaderOptions) (*Loader[T], error) {
	if env == nil {
		return nil, errors.New("taicel: NewLoader: nil Env")
	}
	if opts.Interval > 0 && opts.Interval < MinLoaderInterval {
		return nil, fmt.Errorf("taicel: LoaderOptions.Interval %v is shorter than %v (MinLoaderInterval)", opts.Interval, MinLoaderInterval)
	}
	if opts.Interval == 0 {
		opts.Interval = 5 * time.Second
	}
	l := &Loader[T]{env: env, path: path, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := l.Reload(); err != nil {
		return nil, err
	}
	if opts.Interval > 0 {
		go l.run()
	} else {
		close(l.done)
	}
	return l, nil
}

func (l *Loader[T]) run() {
	defer close(l.done)
	t := time.NewTicker(l.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			select {
			case <-l.stop: // a tick that came with the stop loads nothing
				return
			default:
			}
			_, _ = l.Reload() // reported through OnReload and Observer
		}
	}
}

// Reload reads the file now. It reports whether a new set was swapped in,
// and the error when the file was refused. A file whose SHA-256 is that of
// the last one loaded or refused is left alone, and not reported again:
// Reload answers (false, nil) when that file was loaded and (false, the
// error it was refused with) when it was refused, by this Reload's caller
// or by the Loader's own check. A file that still cannot be read, with the
// same error, is refused again the same way. So a non-nil error always
// means the file as it is now is not the set in force.
func (l *Loader[T]) Reload() (bool, error) {
	rep, changed := l.load()
	if !changed {
		return false, rep.Err
	}
	l.report()
	return rep.Err == nil, rep.Err
}

// pendingReload is a load waiting to be reported, with the name of the
// set in force right after it.
type pendingReload struct {
	rep    Reload
	policy string
}

// report delivers the pending reports in order, unless another goroutine
// is already doing so: that one delivers them after its own.
func (l *Loader[T]) report() {
	l.repMu.Lock()
	if l.reporting {
		l.repMu.Unlock()
		return
	}
	l.reporting = true
	drained := false
	defer func() {
		if !drained { // a callback ended the goroutine (runtime.Goexit): let the next load report
			l.repMu.Lock()
			l.reporting = false
			l.repMu.Unlock()
		}
	}()
	for {
		if len(l.pending) == 0 {
			l.pending = nil
			l.reporting = false
			drained = true
			l.repMu.Unlock()
			return
		}
		p := l.pending[0]
		l.pending = l.pending[1:]
		l.repMu.Unlock()
		if l.opts.OnReload != nil {
			callSafely(l.opts.Logger, "OnReload", func() { l.opts.OnReload(p.rep) }, "path", p.rep.Path, "version", p.rep.Version)
		}
		if l.opts.Observer != nil {
			callSafely(l.opts.Logger, "Observer", func() { l.opts.Observer.Observe(context.Background(), l.record(p)) },
				"path", p.rep.Path, "version", p.rep.Version)
		}
		l.repMu.Lock()
	}
}

func (l *Loader[T]) load() (rep Reload, changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer func() {
		if !changed {
			rep.Err = l.lastErr
			return
		}
		l.lastErr = rep.Err
		p := pendingReload{rep: rep}
		if set := l.cur.Load(); set != nil {
			p.policy = set.Name()
		}
		l.repMu.Lock()
		l.pending = append(l.pending, p)
		l.repMu.Unlock()
	}()
	rep = Reload{Path: l.path, Time: time.Now()}
	data, err := readRuleFile(l.path)
	if err != nil {
		rep.Err = fmt.Errorf("taicel: %w", err)
		key := "error: " + err.Error()
		if key == l.lastHash {
			return rep, false
		}
		l.lastHash = key
		return rep, true
	}
	sum := sha256.Sum256(data)
	rep.Hash = hex.EncodeToString(sum[:])
	if rep.Hash == l.lastHash {
		return rep, false
	}
	l.lastHash = rep.Hash
	spec, err := Parse(data)
	if err != nil {
		rep.Err = fmt.Errorf("%s: %w", l.path, err)
		return rep, true
	}
	rep.Version = spec.Version
	set, err := l.env.Compile(spec)
	if err != nil {
		rep.Err = fmt.Errorf("%s: %w", l.path, err)
		return rep, true
	}
	l.cur.Store(set)
	return rep, true
}

func (l *Loader[T]) record(p pendingReload) tai.Record {
	rep := p.rep
	r := tai.Record{
		ID:      tai.NewID(),
		Kind:    ReloadKind,
		Key:     l.path,
		Outcome: tai.Succeeded,
		Start:   rep.Time,
		Err:     rep.Err,
	}
	r.Decision.Reason = "version " + rep.Version + " sha256 " + rep.Hash
	r.Decision.Policy = p.policy
	if rep.Err != nil {
		r.Outcome = tai.Failed
	} else {
		r.Decision.Verdict = tai.Allow
	}
	return r
}

// Current returns the set in force: a Loader is a Source.
func (l *Loader[T]) Current() *Set[T] { return l.cur.Load() }

var _ Source[struct{}] = (*Loader[struct{}])(nil)

// Name returns the name of the set in force. A tai pipeline asks it at
// each signal, so the spans of the signals judged after a reload that
// renamed the set carry the new name.
func (l *Loader[T]) Name() string { return l.cur.Load().Name() }

// Evaluate judges the signal with the set in force when it is called.
func (l *Loader[T]) Evaluate(ctx context.Context, s tai.Signal[T]) (tai.Decision, error) {
	return l.cur.Load().Evaluate(ctx, s)
}

// Shutdown stops watching the file and waits for a load in progress to
// finish, or for ctx to end. It returns nil once the Loader has stopped
// watching, or when it never watched (a negative Interval), whatever ctx.
//
// Called from OnReload or the Observer, on the Loader's own goroutine,
// Shutdown stops the watching at once but cannot see that goroutine end,
// as it runs the caller: it returns ctx's error when ctx ends, and never
// under a ctx that does not. Pass it a ctx already cancelled there (the
// Loader still stops, after the callback returns), or call it on a
// goroutine of its own, as http.Server's Shutdown from a handler.
func (l *Loader[T]) Shutdown(ctx context.Context) error {
	l.stopOnce.Do(func() { close(l.stop) })
	select {
	case <-l.done:
		return nil
	default:
	}
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
