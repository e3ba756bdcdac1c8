package localfleet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// process is one running demoapp.
type process struct {
	cmd     *exec.Cmd
	pid     int
	addr    string // host:port it listens on
	started time.Time
	proxy   *httputil.ReverseProxy // to addr
	done    chan struct{}          // closed once it exited and was reaped
	stderr  *tailWriter
	cpu     cpuHistory

	// sig orders signals to the process group, and reads of /proc/<pid>,
	// before the reaping of its leader: while the leader is not reaped its
	// pid, and so its group's id, cannot be another process's.
	sig      sync.Mutex
	unreaped bool // from its start until its waiter reaps it
}

// startProcess runs the demoapp for version of service in region with
// profile p, and returns once it answers /healthz. On any failure the
// process is stopped again.
func (f *Fleet) startProcess(ctx context.Context, service, region, version string, p AppProfile) (*process, error) {
	args := []string{
		"-addr", "127.0.0.1:0",
		"-service", service, "-version", version, "-region", region,
		"-error-rate", strconv.FormatFloat(p.ErrorRate, 'g', -1, 64),
		"-latency", p.Latency.String(),
		"-slow-rate", strconv.FormatFloat(p.SlowRate, 'g', -1, 64),
		"-slow-latency", p.SlowLatency.String(),
	}
	log := f.log.With("service", service, "region", region, "version", version)
	cmd := exec.Command(f.o.Binary, args...)
	// Its own process group, so a Ctrl-C at the terminal reaches the
	// fleet, which drains and stops its processes, and not the processes
	// directly; and SIGKILL should the fleet's process die without a
	// Shutdown.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A process the instance started that left its group (setsid) is out
	// of the fleet's reach and may hold the output pipes open long after
	// the instance has exited: Wait gives up on them after outputDelay.
	cmd.WaitDelay = outputDelay
	pr := &process{cmd: cmd, done: make(chan struct{}), stderr: &tailWriter{log: log}}
	cmd.Stderr = pr.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	started := make(chan error, 1)
	first := make(chan string, 1)
	f.waiters.Add(1)
	go func() {
		defer f.waiters.Done()
		// Linux sends Pdeathsig when the thread that started the process
		// ends, not when the fleet's process does: started on the
		// caller's thread, a healthy instance would be killed once a
		// goroutine that locked that thread ended without unlocking it.
		// This goroutine keeps the thread that starts the process until
		// the process has been reaped.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		pid := cmd.Process.Pid
		pr.unreaped = true
		started <- nil
		read := make(chan struct{})
		go func() {
			defer close(read)
			lines := bufio.NewScanner(stdout)
			if lines.Scan() {
				first <- lines.Text()
			}
			close(first)
			_, _ = io.Copy(io.Discard, stdout)
		}()
		exited := waitExit(pid)
		pr.sig.Lock()
		if exited == nil {
			// The leader has exited and is not reaped, so its group's id
			// is still its own: end whatever it left in the group, which
			// would otherwise outlive it out of the fleet's reach.
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		pr.unreaped = false
		pr.sig.Unlock()
		// Wait closes stdout, so it runs once stdout is read to the end,
		// or after outputDelay, when what holds stdout open is not the
		// instance: Wait's closing it then ends read.
		drained := time.NewTimer(outputDelay)
		select {
		case <-read:
		case <-drained.C:
		}
		drained.Stop()
		_ = cmd.Wait()
		<-read
		close(pr.done)
		if f.o.OnExit != nil {
			f.o.OnExit(service, region, version)
		}
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", f.o.Binary, err)
	}
	pr.pid, pr.started = cmd.Process.Pid, time.Now()
	pr.cpu.readings = make([]cpuReading, 0, int(f.o.Window/time.Second)+2)

	ctx, cancel := context.WithTimeoutCause(ctx, f.o.StartTimeout, errStartTimeout)
	defer cancel()
	fail := func(err error) (*process, error) {
		f.stop(pr, log)
		<-pr.done // for its exit status
		return nil, fmt.Errorf("%s of %s in %s (pid %d): %w (%s)", version, service, region, pr.pid, err, pr.exit())
	}
	select {
	case line, ok := <-first:
		if !ok {
			return fail(errors.New("no address printed"))
		}
		addr, found := strings.CutPrefix(line, "listening on ")
		if !found {
			return fail(fmt.Errorf("first line of output is %q, want %q", line, "listening on <address>"))
		}
		pr.addr = addr
	case <-ctx.Done():
		return fail(fmt.Errorf("no address %s: %w", f.waitEnded(ctx), waitErr(ctx)))
	}
	pr.proxy = f.instanceProxy(pr.addr, log)
	if err := f.waitHealthy(ctx, pr); err != nil {
		return fail(err)
	}
	log.Info("instance ready", "instance", pr.addr, "pid", pr.pid)
	return pr, nil
}

// outputDelay is how long the fleet reads an exited instance's output
// before it closes the pipes: what still holds them open then is a
// process the instance left outside its group, not the instance.
const outputDelay = 2 * time.Second

// instanceProxy returns the reverse proxy to the instance at addr. Its
// errors, those of its requests and those it meets copying an answer (an
// instance that breaks one off), go to log.
func (f *Fleet) instanceProxy(addr string, log *slog.Logger) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: addr}
	log = log.With("instance", addr)
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		Transport:    f.transport,
		ErrorHandler: proxyError(log),
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// waitHealthy polls the process's /healthz until it answers 200.
func (f *Fleet) waitHealthy(ctx context.Context, pr *process) error {
	healthz := "http://" + pr.addr + "/healthz"
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = f.checkHealth(ctx, healthz)
		if last == nil {
			return nil
		}
		select {
		case <-pr.done:
			return errors.New("exited before it was healthy")
		case <-ctx.Done():
			return fmt.Errorf("not healthy %s (%v): %w", f.waitEnded(ctx), last, waitErr(ctx))
		case <-tick.C:
		}
	}
}

// errStartTimeout is the cause of a starting process's context when
// Options.StartTimeout ran out, rather than the deploy's own context.
var errStartTimeout = errors.New("localfleet: start timeout")

// waitEnded says why waiting for a starting process ended, ctx being the
// start's context: its timeout, or the end of the deploy's context.
func (f *Fleet) waitEnded(ctx context.Context) string {
	if context.Cause(ctx) == errStartTimeout {
		return fmt.Sprintf("within %v", f.o.StartTimeout)
	}
	return "before the deploy's context ended"
}

// waitErr is the error of a start's ended context: deadline exceeded for
// the start timeout, else the deploy's context's cause.
func waitErr(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != errStartTimeout {
		return cause
	}
	return ctx.Err()
}

func (f *Fleet) checkHealth(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := f.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz answered %s", resp.Status)
	}
	return nil
}

// exit describes how an exited process ended, with the end of its stderr.
func (pr *process) exit() string {
	s := pr.cmd.ProcessState.String()
	if tail := pr.stderr.String(); tail != "" {
		s += ": " + tail
	}
	return s
}

// exited reports whether the process has ended.
func (pr *process) exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// stop ends the process: SIGTERM, which lets it finish its requests, and
// SIGKILL if it has not exited after the fleet's StopGrace. The signals go
// to its process group, so whatever it started ends with it. A process
// already reaped is not signalled (its pid may be another's by now): what
// it left in its group was killed when it exited.
func (f *Fleet) stop(pr *process, log *slog.Logger) {
	if !pr.signal(syscall.SIGTERM) {
		return
	}
	t := time.NewTimer(f.o.StopGrace)
	defer t.Stop()
	select {
	case <-pr.done:
		log.Info("instance stopped", "instance", pr.addr, "pid", pr.pid)
		return
	case <-t.C:
	}
	pr.signal(syscall.SIGKILL)
	<-pr.done
	log.Warn("instance killed: it did not stop after SIGTERM", "instance", pr.addr, "pid", pr.pid, "grace", f.o.StopGrace)
}

// signal sends sig to the process's group, and reports false, sending
// nothing, if the process has been reaped.
func (pr *process) signal(sig syscall.Signal) bool {
	pr.sig.Lock()
	defer pr.sig.Unlock()
	if !pr.unreaped {
		return false
	}
	_ = syscall.Kill(-pr.pid, sig)
	return true
}

// whileUnreaped runs read with the process's pid, which stays the
// process's while read runs, or does nothing once the process has been
// reaped, when the pid may be another process's.
func (pr *process) whileUnreaped(read func(pid int)) {
	pr.sig.Lock()
	defer pr.sig.Unlock()
	if pr.unreaped {
		read(pr.pid)
	}
}

// waitExit returns once the child pid has exited, leaving it to be reaped
// (waitid with WNOWAIT): until then its pid is not given to another
// process.
func waitExit(pid int) error {
	const pPID = 1     // idtype_t P_PID
	var info [128]byte // siginfo_t, which the kernel fills in
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		switch errno {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		default:
			return fmt.Errorf("waitid %d: %w", pid, errno)
		}
	}
}

// stopAll stops the processes at once and returns when all have ended.
func (f *Fleet) stopAll(procs []*process, log *slog.Logger) {
	var wg sync.WaitGroup
	for _, pr := range procs {
		wg.Go(func() { f.stop(pr, log) })
	}
	wg.Wait()
}

// tailWriter logs a process's stderr and keeps its last bytes for errors.
type tailWriter struct {
	log  *slog.Logger
	mu   sync.Mutex
	tail []byte
}

const tailSize = 1024

func (w *tailWriter) Write(p []byte) (int, error) {
	w.log.Debug("demoapp output", "line", string(bytes.TrimRight(p, "\n")))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tail = append(w.tail, p...)
	if len(w.tail) > tailSize {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-tailSize:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.tail))
}

// userHZ is the unit of CPU times in /proc/<pid>/stat: USER_HZ, 100 on
// every Linux platform Go runs on (prometheus/procfs assumes the same).
const userHZ = 100

// cpuSeconds reads the CPU time (user and system) pid has used so far,
// from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may hold spaces; fields count from
	// the last ')'. utime and stime are fields 14 and 15 of the line, 12
	// and 13 after the name.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name in %q", pid, b)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(fields))
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(utime+stime) / userHZ, nil
}

// residentBytes reads pid's resident set size (VmRSS) from
// /proc/<pid>/status.
func residentBytes(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		kb, found := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		if !found {
			return 0, fmt.Errorf("/proc/%d/status: VmRSS %q is not in kB", pid, strings.TrimSpace(rest))
		}
		n, err := strconv.ParseUint(strings.TrimSpace(kb), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: VmRSS: %w", pid, err)
		}
		return float64(n) * 1024, nil
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS line", pid)
}

// cpuReading is a process's CPU time used by a moment.
type cpuReading struct {
	at      time.Time
	seconds float64
}

// cpuHistory is a process's CPU readings, one a second, oldest first,
// kept as far back as the fleet's Window.
type cpuHistory struct {
	mu       sync.Mutex
	readings []cpuReading // capacity: how many to keep
}

func (h *cpuHistory) add(r cpuReading) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.readings) == cap(h.readings) {
		h.readings = append(h.readings[:0], h.readings[1:]...)
	}
	h.readings = append(h.readings, r)
}

// since returns the newest reading at or before t, or false if none is.
func (h *cpuHistory) since(t time.Time) (cpuReading, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.readings) - 1; i >= 0; i-- {
		if !h.readings[i].at.After(t) {
			return h.readings[i], true
		}
	}
	return cpuReading{}, false
}

// cpuShare returns the share of one core the process used from now-span
// to now; the caller makes sure the pid is still the process's. Without a reading that old it measures from the process's start,
// when it had used none.
func (pr *process) cpuShare(now time.Time, span time.Duration) (float64, error) {
	used, err := cpuSeconds(pr.pid)
	if err != nil {
		return 0, err
	}
	base, ok := pr.cpu.since(now.Add(-span))
	if !ok {
		base = cpuReading{at: pr.started}
	}
	elapsed := now.Sub(base.at).Seconds()
	if elapsed <= 0 {
		return 0, nil
	}
	return (used - base.seconds) / elapsed, nil
}
