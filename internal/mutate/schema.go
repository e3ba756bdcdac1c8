package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// A mutant schema compiles every mutant of a package into one test binary,
// each behind a switch read from the environment, so that testing a mutant
// is a run of that binary instead of a build. A boolean expression with
// mutants becomes
//
//	(mutantOn(1) && (a <= b) || mutantOn(2) && (a >= b) || !mutantOn(1) && !mutantOn(2) && (a < b))
//
// and a statement becomes an if/else chain whose last branch is the
// original. Each operand is evaluated once whichever mutant is on. Mutants
// that cannot be switched this way (arithmetic, whose type a schema would
// need, and statements in an init or post position), mutants whose
// branch does not compile, and those that compile only beside the original
// (see leaveOutUncompilable) are tested one build each, as before.

type hostKind uint8

const (
	hostNone hostKind = iota // not in the schema: one build per mutant
	hostBool                 // a boolean expression
	hostStmt                 // a statement in a statement list
)

const (
	schemaEnv  = "TAIKIT_MUTANT"
	schemaFunc = "taikitMutantOn"
)

type host struct {
	start, end int
	kind       hostKind
	mutants    []*mutant
}

// span is where a host, or one mutant's branch of it, landed in a rendered
// file, so that a compiler error can be traced to what caused it.
type span struct {
	start, end int
	host       *host
	m          *mutant // nil: the whole host
}

// render writes src with every host of ms in the schema.
func render(src []byte, ms []*mutant) ([]byte, []span) {
	byRange := map[[2]int]*host{}
	var hosts []*host
	for _, m := range ms {
		if m.host == hostNone {
			continue
		}
		k := [2]int{m.hostStart, m.hostEnd}
		h := byRange[k]
		if h == nil {
			h = &host{start: m.hostStart, end: m.hostEnd, kind: m.host}
			byRange[k] = h
			hosts = append(hosts, h)
		}
		if m.host == hostStmt {
			h.kind = hostStmt
		}
		h.mutants = append(h.mutants, m)
	}
	sort.Slice(hosts, func(i, j int) bool {
		if hosts[i].start != hosts[j].start {
			return hosts[i].start < hosts[j].start
		}
		return hosts[i].end > hosts[j].end
	})
	r := &renderer{src: src, hosts: hosts}
	r.emit(0, len(src), 0)
	return r.out.Bytes(), r.spans
}

type renderer struct {
	src   []byte
	hosts []*host
	out   bytes.Buffer
	spans []span
}

// emit writes src[s:e] with the hosts inside it, starting at hosts[i], in
// the schema, and returns the index of the first host after e.
func (r *renderer) emit(s, e, i int) int {
	pos := s
	for i < len(r.hosts) && r.hosts[i].start < e {
		h := r.hosts[i]
		r.out.Write(r.src[pos:h.start])
		i = r.emitHost(h, i)
		pos = h.end
	}
	r.out.Write(r.src[pos:e])
	return i
}

func (r *renderer) emitHost(h *host, i int) int {
	start := r.out.Len()
	on := func(m *mutant) string { return schemaFunc + "(" + strconv.Itoa(m.id) + ")" }
	branch := func(m *mutant) {
		b := r.out.Len()
		r.out.Write(r.src[h.start:m.start])
		r.out.WriteString(m.repl)
		r.out.Write(r.src[m.end:h.end])
		r.spans = append(r.spans, span{start: b, end: r.out.Len(), host: h, m: m})
	}
	var next int
	switch h.kind {
	case hostBool:
		r.out.WriteString("(")
		for _, m := range h.mutants {
			r.out.WriteString(on(m) + " && (")
			branch(m)
			r.out.WriteString(") || ")
		}
		for _, m := range h.mutants {
			r.out.WriteString("!" + on(m) + " && ")
		}
		r.out.WriteString("(")
		next = r.emit(h.start, h.end, i+1)
		r.out.WriteString("))")
	case hostStmt:
		for k, m := range h.mutants {
			if k > 0 {
				r.out.WriteString(" else ")
			}
			r.out.WriteString("if " + on(m) + " {\n")
			branch(m)
			r.out.WriteString("\n}")
		}
		r.out.WriteString(" else {\n")
		next = r.emit(h.start, h.end, i+1)
		r.out.WriteString("\n}")
	}
	r.spans = append(r.spans, span{start: start, end: r.out.Len(), host: h})
	return next
}

var compileError = regexp.MustCompile(`(?m)^(?:\./)?([^\s:]+\.go):(\d+):(\d+): `)

// buildSchema builds the package's test binary with every schema mutant of
// ms switched in. Mutants whose code does not compile are taken out of the
// schema (host = hostNone) and the build is tried again. It returns the
// binary's path, or "" if no schema could be built.
func buildSchema(ctx context.Context, cfg config, pkg pkgInfo, sources map[string][]byte, ms []*mutant, work string) (string, error) {
	dir := filepath.Join(work, "schema")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	switchFile := fmt.Sprintf(`package %s

import (
	"os"
	"strconv"
)

var taikitMutantActive, _ = strconv.Atoi(os.Getenv(%q))

func %s(id int) bool { return id == taikitMutantActive }
`, pkg.Name, schemaEnv, schemaFunc)
	switchPath := filepath.Join(dir, "zz_taikit_mutant.go")
	if err := os.WriteFile(switchPath, []byte(switchFile), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "schema.test")
	for attempt := 0; attempt < 100; attempt++ {
		byFile := map[string][]*mutant{}
		any := false
		for _, m := range ms {
			if m.status == pending && m.host != hostNone {
				byFile[m.file] = append(byFile[m.file], m)
				any = true
			}
		}
		if !any {
			return "", nil
		}
		replace := map[string]string{filepath.Join(pkg.Dir, "zz_taikit_mutant.go"): switchPath}
		rendered := map[string][]byte{}
		spans := map[string][]span{}
		for file, fm := range byFile {
			out, sp := render(sources[file], fm)
			path := filepath.Join(dir, file)
			if err := os.WriteFile(path, out, 0o644); err != nil {
				return "", err
			}
			replace[filepath.Join(pkg.Dir, file)] = path
			rendered[file], spans[file] = out, sp
		}
		o, _ := json.Marshal(map[string]map[string]string{"Replace": replace})
		overlay := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(overlay, o, 0o644); err != nil {
			return "", err
		}
		args := []string{"test", "-c", "-vet=off", "-o", bin, "-overlay", overlay}
		if cfg.tags != "" {
			args = append(args, "-tags", cfg.tags)
		}
		cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
		cmd.Dir = pkg.Dir
		out, err := cmd.CombinedOutput()
		if err == nil {
			return bin, nil
		}
		// Take out what the errors point at; if they point at nothing in
		// the schema, give up on it.
		removed := 0
		for _, e := range compileError.FindAllStringSubmatch(string(out), -1) {
			file := filepath.Base(e[1])
			sp, ok := spans[file]
			if !ok {
				continue
			}
			line, _ := strconv.Atoi(e[2])
			col, _ := strconv.Atoi(e[3])
			off := offset(rendered[file], line, col)
			if s := innermost(sp, off); s != nil {
				if s.m != nil {
					if s.m.host != hostNone {
						s.m.host = hostNone
						removed++
					}
				} else {
					for _, m := range s.host.mutants {
						if m.host != hostNone {
							m.host = hostNone
							removed++
						}
					}
				}
			}
		}
		if removed == 0 {
			fmt.Fprintf(cfg.stderr, "mutate: the mutant schema does not build; testing one build per mutant:\n%s\n", firstLines(string(out), 10))
			for _, m := range ms {
				m.host = hostNone
			}
			return "", nil
		}
	}
	return "", nil
}

func offset(src []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(src[off:], '\n')
		if i < 0 {
			return len(src)
		}
		off += i + 1
	}
	return off + col - 1
}

// innermost returns the smallest span holding off, preferring a mutant's
// branch over its host.
func innermost(spans []span, off int) *span {
	var best *span
	for i := range spans {
		s := &spans[i]
		if off < s.start || off >= s.end {
			continue
		}
		if best == nil || s.end-s.start < best.end-best.start {
			best = s
		}
	}
	return best
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// testSchema runs the tests sel selects (see selection) in the schema
// binary with m on.
func testSchema(ctx context.Context, cfg config, pkg pkgInfo, bin string, sel []string, m *mutant) status {
	args := []string{"-test.count=1", "-test.failfast", "-test.timeout", cfg.timeout.String()}
	for i := 0; i < len(sel); i += 2 {
		args = append(args, "-test."+sel[i], sel[i+1])
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = pkg.Dir
	cmd.Env = append(os.Environ(), schemaEnv+"="+strconv.Itoa(m.id))
	if err := cmd.Run(); err == nil {
		return survived
	}
	return killed
}
