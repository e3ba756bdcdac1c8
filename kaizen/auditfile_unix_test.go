//go:build unix

package kaizen_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/kaizen"
)

// The environment variables that make the test binary, run again by a
// test, play the child's part.
const (
	killChildEnv = "KAIZEN_TEST_KILL_CHILD" // the trail file to write to
	permChildEnv = "KAIZEN_TEST_PERM_CHILD" // the trail file to fail on
)

// TestAuditSurvivesKill runs a service-like writer in a child process,
// kills it with SIGKILL while it writes, and reopens the trail: every
// time, OpenAuditFile succeeds (cutting a torn line if the kill left
// one), the chain verifies, and the hash the child published after its
// last Flush is in it.
func TestAuditSurvivesKill(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		writeUntilKilled(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	opts := kaizen.AuditOptions{Key: testKey, Logger: slog.New(slog.DiscardHandler)}
	var published string
	var flushed uint64
	for round := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAuditSurvivesKill$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		// The child reports the line count and hash Last gave after a
		// Flush, then that it is in the middle of writing more.
		br := bufio.NewReader(out)
		line, err := br.ReadString('\n')
		require.NoError(t, err, "the child reports (or the deadline kills it)")
		writing, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "writing\n", writing)
		require.NoError(t, cmd.Process.Kill())
		werr := cmd.Wait()
		cancel()
		var exit *exec.ExitError
		require.ErrorAs(t, werr, &exit)
		require.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal(), "killed, not ended: %s", line)
		_, err = fmt.Sscanf(line, "flushed %d %s\n", &flushed, &published)
		require.NoError(t, err, line)

		a, state, err := kaizen.OpenAuditFile(path, opts)
		require.NoError(t, err, "round %d: reopens after kill -9", round)
		t.Logf("round %d: %d lines published, %d in the file, %d bytes of a torn line cut", round, flushed, state.Lines, state.Cut)
		assert.Greater(t, state.Lines, flushed, "every line flushed before the kill is there, and some written after")
		require.NoError(t, a.Shutdown(context.Background()))
		sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: testKey, Expect: published}, path)
		require.NoError(t, err)
		assert.Equal(t, state.AuditSummary, sum)
	}
}

// writeUntilKilled is the child of TestAuditSurvivesKill: it appends to
// the trail, flushes, publishes Last on stdout and keeps appending until
// it is killed (or, should the parent be gone, for a bounded while).
func writeUntilKilled(t *testing.T, path string) {
	a, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Key: testKey, Buffer: 256, BatchBytes: 16 << 10})
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 200 {
		a.Observe(ctx, record(fmt.Sprintf("before-%d", i)))
	}
	require.NoError(t, a.Flush(ctx))
	last, n := a.Last()
	fmt.Printf("flushed %d %s\n", n, last)
	for i := range 5_000_000 {
		if i == 2000 { // the writer has taken 1744 or more and writes on
			fmt.Println("writing")
		}
		a.Observe(ctx, record(fmt.Sprintf("after-%d", i)))
	}
	t.Error("not killed")
	_ = a.Shutdown(ctx)
}

// TestAuditFilePermissionDenied: a trail file the process may not open
// fails with an *fs.PathError matching fs.ErrPermission, for writing and
// for verifying; so does a file in a directory the process may write in
// but not read, which OpenAuditFile cannot sync. Root may open anything,
// so as root the test runs itself again as the user nobody.
func TestAuditFilePermissionDenied(t *testing.T) {
	if dir := os.Getenv(permChildEnv); dir != "" {
		checkPermissionDenied(t, dir)
		fmt.Println("checked", dir)
		return
	}
	dir, err := os.MkdirTemp("", "kaizen-perm")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	path := filepath.Join(dir, "audit.jsonl")
	appendTrail(t, path, kaizen.AuditOptions{}, "1")
	writeOnly := filepath.Join(dir, "write-only")
	require.NoError(t, os.Mkdir(writeOnly, 0o755))
	if os.Geteuid() != 0 {
		require.NoError(t, os.Chmod(path, 0))
		require.NoError(t, os.Chmod(writeOnly, 0o300))
		t.Cleanup(func() { os.Chmod(writeOnly, 0o700) })
		checkPermissionDenied(t, dir)
		return
	}
	require.NoError(t, os.Chmod(writeOnly, 0o733)) // others may add files, not list them
	out := runAsNobody(t, dir, "^TestAuditFilePermissionDenied$", permChildEnv+"="+dir)
	assert.Contains(t, out, "checked "+dir)
}

func checkPermissionDenied(t *testing.T, dir string) {
	path := filepath.Join(dir, "audit.jsonl")
	_, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{})
	require.ErrorIs(t, err, fs.ErrPermission)
	var pe *fs.PathError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, path, pe.Path)
	assert.Equal(t, "kaizen: OpenAuditFile: open "+path+": permission denied", err.Error())
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorAs(t, err, &pe)

	inWriteOnly := filepath.Join(dir, "write-only", "audit.jsonl")
	_, _, err = kaizen.OpenAuditFile(inWriteOnly, kaizen.AuditOptions{})
	require.ErrorIs(t, err, fs.ErrPermission)
	assert.Equal(t, "kaizen: OpenAuditFile: syncing the directory: open "+filepath.Dir(inWriteOnly)+": permission denied", err.Error())
}

// TestOpenAuditFileNeedsARegularFile: a named pipe (or a device) is no
// place for a trail: it could not be read back or cut.
func TestOpenAuditFileNeedsARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "audit.fifo")
	require.NoError(t, mkfifo(fifo))
	_, _, err := kaizen.OpenAuditFile(fifo, kaizen.AuditOptions{})
	require.EqualError(t, err, "kaizen: OpenAuditFile: "+fifo+" is not a regular file (p---------)")
}

// runAsNobody runs a test of this binary, copied into dir so that nobody
// may run it, as the user nobody, with env added, and returns its output.
// It skips the test if the system does not let root switch users.
func runAsNobody(t *testing.T, dir, run string, env ...string) string {
	t.Helper()
	bin := filepath.Join(dir, "kaizen.test")
	src, err := os.Open(os.Args[0])
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, errors.Join(err, dst.Close()))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run="+run, "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("cannot run a process as nobody: %v", err)
	}
	require.NoError(t, err, "%s", out)
	require.True(t, strings.Contains(string(out), "--- PASS"), "%s", out)
	return string(out)
}

func TestOpenAuditFileRotatedRefusesASeriesFileThatIsNotRegular(t *testing.T) {
	// A FIFO named as a file of the series, where OpenAuditFile reads a
	// line to know where the trail goes on from: refused, naming it,
	// rather than waiting for good for a writer to open it.
	const fifo = ".000001"
	for name, after := range map[string]bool{"the last file": false, "the file before the last": true} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.jsonl")
			require.NoError(t, mkfifo(path+fifo))
			if after {
				require.NoError(t, os.WriteFile(path+".000002", nil, 0o600))
			}
			done := make(chan error, 1)
			go func() {
				_, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 1 << 20})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				// Let the open that waits for a writer go on, and fail.
				w, werr := os.OpenFile(path+fifo, os.O_WRONLY, 0)
				require.NoError(t, werr)
				w.Close()
				<-done
				t.Fatal("OpenAuditFile waited for a writer of the FIFO")
			}
			require.Error(t, err)
			assert.ErrorContains(t, err, path+fifo+" is not a regular file")
		})
	}
}

// TestVerifyAuditFilesRefusesAFileThatIsNotRegular: a device reads
// without end (/dev/zero, NUL bytes for ever, which would be taken for a
// line cut short as long as they last): it is refused at once with an
// *fs.PathError naming it, as OpenAuditFile refuses it.
func TestVerifyAuditFilesRefusesAFileThatIsNotRegular(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	appendTrail(t, good, kaizen.AuditOptions{}, "a")
	for _, c := range []struct{ path, kind string }{
		{"/dev/zero", "a character device"},
		{"/dev/null", "a character device"},
	} {
		t.Run(c.path, func(t *testing.T) {
			if _, err := os.Stat(c.path); err != nil {
				t.Skipf("no %s: %v", c.path, err)
			}
			for _, paths := range [][]string{{c.path}, {good, c.path}} {
				done := make(chan error, 1)
				go func() {
					_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, paths...)
					done <- err
				}()
				var err error
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("VerifyAuditFiles(%v) reads on", paths)
				}
				var pe *fs.PathError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, c.path, pe.Path)
				assert.EqualError(t, err, "open "+c.path+": not a regular file but "+c.kind+": an audit trail is a regular file")
				assert.NotErrorIs(t, err, kaizen.ErrAuditTampered)
			}
		})
	}
}

// TestOpenAuditFileRotatedRefusesADanglingSymlink: a symbolic link named
// as a file of the series whose target does not exist is not followed:
// as the last file, opening it would create its target, wherever it
// points, and append the trail there; as the file before the last, the
// error would say only that a file listed is missing. Either is refused,
// naming the link and its target, and nothing is created. VerifyAuditFiles
// names it too.
func TestOpenAuditFileRotatedRefusesADanglingSymlink(t *testing.T) {
	for name, last := range map[string]bool{"the last file": true, "the file before the last": false} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.jsonl")
			files := rotatedTrail(t, path, 5)
			n := len(files) // the number of the link
			if !last {
				n = len(files) - 1
				require.NoError(t, os.Rename(files[n], fmt.Sprintf("%s.%06d", path, n+1)))
			}
			link := fmt.Sprintf("%s.%06d", path, n)
			target := filepath.Join(dir, "elsewhere", "audit.jsonl")
			require.NoError(t, os.Mkdir(filepath.Dir(target), 0o700))
			require.NoError(t, os.Symlink(target, link))

			_, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 600})
			require.ErrorIs(t, err, fs.ErrNotExist)
			assert.EqualError(t, err, "kaizen: OpenAuditFile: open "+link+": no such file or directory: it is a symbolic link to "+target+", which does not exist")
			assert.NoFileExists(t, target, "the link's target is not created")

			_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, series(t, path)...)
			var pe *fs.PathError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, link, pe.Path)
			require.ErrorIs(t, err, fs.ErrNotExist)
			assert.EqualError(t, err, "open "+link+": no such file or directory: it is a symbolic link to "+target+", which does not exist")
		})
	}
}

// TestVerifyAuditFilesReadsAPipe: a FIFO (or a shell's <(zcat FILE.gz),
// a pipe too) is read as its reader waits for its writer: the trail
// written into it verifies, and one that runs on in NUL bytes for ever is
// refused, naming the line, once it has read more than a line holds.
func TestVerifyAuditFilesReadsAPipe(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	_, want := appendTrail(t, good, kaizen.AuditOptions{}, "a", "b")
	trail, err := os.ReadFile(good)
	require.NoError(t, err)
	for name, c := range map[string]struct {
		nuls bool
	}{"a trail": {}, "NUL bytes without end": {nuls: true}} {
		t.Run(name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "audit.fifo")
			require.NoError(t, mkfifo(fifo))
			stop := make(chan struct{})
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
				if err != nil {
					return
				}
				defer w.Close()
				if _, err := w.Write(trail); err != nil || !c.nuls {
					return
				}
				zeros := make([]byte, 1<<20)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := w.Write(zeros); err != nil {
						return // the reader has gone
					}
				}
			}()
			defer func() { close(stop); <-wrote }()
			done := make(chan error, 1)
			var got kaizen.AuditSummary
			go func() {
				var err error
				got, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, fifo)
				done <- err
			}()
			// One that read on for ever would be stopped by the test's
			// timeout, which shows where: 64 MiB of NUL bytes through a
			// pipe take tens of seconds under the race detector on a
			// busy machine, more than any bound a test could set here.
			err = <-done
			if !c.nuls {
				require.NoError(t, err)
				assert.Equal(t, want, got)
				return
			}
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, fifo, ae.File)
			assert.Equal(t, 3, ae.Line, "the line after the trail's two")
		})
	}
}

// TestVerifyAuditFilesRefusesAnEmptyPipe: a pipe that gives nothing (the
// shell's <(zcat FILE.gz) of an archive zcat could not read) is refused,
// naming it, wherever it is in the list: a file rotated out holds a line
// at least. Last in the list, or alone, it verified as a file of no
// line, and the trail as whole.
func TestVerifyAuditFilesRefusesAnEmptyPipe(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	appendTrail(t, good, kaizen.AuditOptions{}, "a", "b")
	for name, before := range map[string][]string{"alone": nil, "last": {good}} {
		t.Run(name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "audit.fifo")
			require.NoError(t, mkfifo(fifo))
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
					w.Close() // nothing written
				}
			}()
			defer func() { <-wrote }()
			_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, append(before, fifo)...)
			var pe *fs.PathError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, fifo, pe.Path)
			assert.ErrorContains(t, err, "the pipe gave no line")
		})
	}
}
