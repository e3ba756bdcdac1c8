package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Instruction is one instruction of a Dockerfile, its continuation lines
// joined.
type Instruction struct {
	Line  int      // the line it starts on, from 1
	Cmd   string   // the instruction in upper case: FROM, COPY, RUN, ...
	Flags []string // its flags as written: "--from=build", "--interval=10s"
	// Args are the arguments after the flags. In exec form (a JSON array)
	// they are the array's elements; in shell form, for RUN, CMD,
	// ENTRYPOINT and HEALTHCHECK, the command line as one element; for
	// the other instructions, the words. A HEALTHCHECK's are those after
	// its CMD; HEALTHCHECK NONE has none.
	Args []string
	Exec bool // Args came from a JSON array
}

// Flag returns the value of the flag --name=value, and whether it is set.
func (in Instruction) Flag(name string) (string, bool) {
	for _, f := range in.Flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Stage is a FROM and the instructions up to the next one.
type Stage struct {
	Base         string // the image (or earlier stage) it starts from
	Name         string // its AS name; "" when unnamed
	From         Instruction
	Instructions []Instruction
}

// Dockerfile is a parsed Dockerfile: its stages, in order.
type Dockerfile struct {
	Name   string // the file's name, for messages
	Stages []Stage
}

// shellForm are the instructions whose shell form is one command line.
var shellForm = map[string]bool{"RUN": true, "CMD": true, "ENTRYPOINT": true}

// known are the instructions Docker's builder accepts.
var known = map[string]bool{
	"FROM": true, "RUN": true, "CMD": true, "LABEL": true, "EXPOSE": true, "ENV": true,
	"ADD": true, "COPY": true, "ENTRYPOINT": true, "VOLUME": true, "USER": true,
	"WORKDIR": true, "ARG": true, "ONBUILD": true, "STOPSIGNAL": true,
	"HEALTHCHECK": true, "SHELL": true, "MAINTAINER": true,
}

// ParseDockerfile reads a Dockerfile with the default escape character
// (backslash): comments and blank lines are skipped, continuation lines
// joined. It refuses an unknown instruction, an exec form that is not a
// JSON array of strings, a FROM without an image, an instruction other
// than ARG before the first FROM, and heredocs, which it does not read.
func ParseDockerfile(name string, r io.Reader) (*Dockerfile, error) {
	d := &Dockerfile{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var logical strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" && logical.Len() == 0 || strings.HasPrefix(trimmed, "#") {
			continue // comments, inside a continuation too, as Docker's parser drops them
		}
		if logical.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			logical.WriteString(body)
			logical.WriteByte(' ')
			continue
		}
		logical.WriteString(line)
		if err := d.add(start, logical.String()); err != nil {
			return nil, err
		}
		logical.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if logical.Len() > 0 {
		return nil, fmt.Errorf("%s:%d: the instruction's last line ends in a backslash", name, start)
	}
	if len(d.Stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", name)
	}
	return d, nil
}

// add parses one logical line and appends it to the current stage.
func (d *Dockerfile) add(line int, text string) error {
	where := fmt.Sprintf("%s:%d", d.Name, line)
	word, rest, _ := strings.Cut(strings.TrimSpace(text), " ")
	in := Instruction{Line: line, Cmd: strings.ToUpper(word)}
	if !known[in.Cmd] {
		return fmt.Errorf("%s: unknown instruction %q", where, word)
	}
	rest = strings.TrimSpace(rest)
	for strings.HasPrefix(rest, "--") {
		flag, more, _ := strings.Cut(rest, " ")
		in.Flags = append(in.Flags, flag)
		rest = strings.TrimSpace(more)
	}
	if strings.Contains(rest, "<<") && (in.Cmd == "RUN" || in.Cmd == "COPY" || in.Cmd == "ADD") {
		return fmt.Errorf("%s: heredocs are not read by this check", where)
	}
	if in.Cmd == "HEALTHCHECK" {
		kind, more, _ := strings.Cut(rest, " ")
		switch strings.ToUpper(kind) {
		case "NONE":
			rest = ""
		case "CMD":
			rest = strings.TrimSpace(more)
			if rest == "" {
				return fmt.Errorf("%s: HEALTHCHECK CMD without a command", where)
			}
		default:
			return fmt.Errorf("%s: HEALTHCHECK takes CMD or NONE, not %q", where, kind)
		}
	}
	var err error
	if in.Args, in.Exec, err = args(in.Cmd, rest); err != nil {
		return fmt.Errorf("%s: %s: %w", where, in.Cmd, err)
	}
	if in.Cmd == "FROM" {
		st := Stage{From: in}
		switch {
		case len(in.Args) == 1:
		case len(in.Args) == 3 && strings.EqualFold(in.Args[1], "AS"):
			st.Name = in.Args[2]
		default:
			return fmt.Errorf("%s: FROM takes an image and an optional AS name, not %q", where, rest)
		}
		st.Base = in.Args[0]
		d.Stages = append(d.Stages, st)
		return nil
	}
	if len(d.Stages) == 0 {
		if in.Cmd != "ARG" {
			return fmt.Errorf("%s: %s before the first FROM", where, in.Cmd)
		}
		return nil
	}
	st := &d.Stages[len(d.Stages)-1]
	st.Instructions = append(st.Instructions, in)
	return nil
}

// args splits an instruction's arguments.
func args(cmd, rest string) ([]string, bool, error) {
	if rest == "" {
		if cmd == "HEALTHCHECK" {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("no arguments")
	}
	if strings.HasPrefix(rest, "[") && (shellForm[cmd] || cmd == "HEALTHCHECK" || cmd == "COPY" || cmd == "ADD" || cmd == "VOLUME" || cmd == "SHELL") {
		var a []string
		if err := json.Unmarshal([]byte(rest), &a); err != nil {
			return nil, false, fmt.Errorf("%s is not a JSON array of strings", rest)
		}
		if len(a) == 0 {
			return nil, false, fmt.Errorf("an empty exec form")
		}
		return a, true, nil
	}
	if shellForm[cmd] || cmd == "HEALTHCHECK" {
		return []string{rest}, false, nil
	}
	return strings.Fields(rest), false, nil
}

// stageState is what the check knows of a stage's filesystem.
type stageState struct {
	workdir  string
	env      map[string]string
	repo     map[string]string // a directory in the image → the repository directory COPY . filled it from
	produced map[string]bool   // paths a RUN made: go build outputs, mkdir directories
	binaries map[string]bool   // the go build outputs among them
	copied   map[string]bool   // paths COPY --from put here, true when the source was a binary
	files    map[string]string // a file in the image → the repository file a COPY put there
}

// Check checks the Dockerfile against the repository at root, the build
// context:
//
//   - every COPY or ADD source from the context exists (a glob matches);
//   - every RUN go build builds ./ package paths that exist, hold a main
//     package and, with GOWORK=off, lie in the module go build runs in;
//     its directory was filled by a COPY . from the context;
//   - every RUN go mod download or go build finds, where it runs, its
//     module's go.mod and the go.mod of every directory the module's
//     replace directives point at, put there by a COPY;
//   - every COPY --from source was made in that stage (go build -o,
//     mkdir);
//   - the last stage sets a USER other than root, has no RUN (its image
//     has no shell), and its ENTRYPOINT (or CMD) and HEALTHCHECK are in
//     exec form and start a binary built in an earlier stage.
//
// The error lists every problem found, each with its line.
func (d *Dockerfile) Check(root string) error {
	var p problems
	states := map[string]*stageState{}
	for i, st := range d.Stages {
		s := &stageState{workdir: "/", env: map[string]string{}, repo: map[string]string{},
			produced: map[string]bool{}, binaries: map[string]bool{}, copied: map[string]bool{}, files: map[string]string{}}
		states[st.Name] = s
		states[fmt.Sprint(i)] = s
		for _, in := range st.Instructions {
			d.checkInstruction(&p, root, states, s, in)
		}
	}
	d.checkFinal(&p, states[fmt.Sprint(len(d.Stages)-1)], d.Stages[len(d.Stages)-1])
	return p.err()
}

func (d *Dockerfile) checkInstruction(p *problems, root string, states map[string]*stageState, s *stageState, in Instruction) {
	where := fmt.Sprintf("%s:%d", d.Name, in.Line)
	switch in.Cmd {
	case "WORKDIR":
		s.workdir = resolve(s.workdir, in.Args[0])
	case "ENV":
		for k, v := range envPairs(in.Args) {
			s.env[k] = v
		}
	case "COPY", "ADD":
		if len(in.Args) < 2 {
			p.add("%s: %s needs a source and a destination", where, in.Cmd)
			return
		}
		srcs, dest := in.Args[:len(in.Args)-1], in.Args[len(in.Args)-1]
		destAbs := resolve(s.workdir, dest)
		if from, ok := in.Flag("from"); ok {
			d.checkCopyFrom(p, where, states, s, from, srcs, dest, destAbs)
			return
		}
		for _, src := range srcs {
			if in.Cmd == "ADD" && (strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") || strings.HasPrefix(src, "git@")) {
				continue
			}
			full := filepath.Join(root, filepath.FromSlash(src))
			if !inside(root, full) {
				p.add("%s: %s source %s lies outside the build context", where, in.Cmd, src)
				continue
			}
			matches, err := filepath.Glob(full)
			if err != nil || len(matches) == 0 {
				p.add("%s: %s source %s does not exist in the repository", where, in.Cmd, src)
				continue
			}
			if path.Clean(src) == "." {
				s.repo[destAbs] = root
			}
			for _, m := range matches {
				if fi, err := os.Stat(m); err != nil || fi.IsDir() {
					continue
				}
				target := destAbs
				if strings.HasSuffix(dest, "/") || len(srcs) > 1 || len(matches) > 1 {
					target = path.Join(destAbs, filepath.Base(m))
				}
				s.files[target] = m
			}
		}
	case "RUN":
		d.checkRun(p, where, root, s, in)
	}
}

func (d *Dockerfile) checkCopyFrom(p *problems, where string, states map[string]*stageState, s *stageState, from string, srcs []string, dest, destAbs string) {
	src, ok := states[from]
	if !ok {
		if !strings.ContainsAny(from, ":/") {
			p.add("%s: COPY --from=%s names no earlier stage", where, from)
		}
		return // an image of its own: nothing to check here
	}
	for _, f := range srcs {
		abs := resolve("/", f)
		if !madeIn(src, abs) {
			p.add("%s: COPY --from=%s source %s is not made in that stage (no go build -o or mkdir makes it)", where, from, f)
			continue
		}
		target := destAbs
		if strings.HasSuffix(dest, "/") || len(srcs) > 1 {
			target = path.Join(destAbs, path.Base(abs))
		}
		s.copied[target] = src.binaries[abs]
	}
}

// madeIn reports whether a RUN of s made abs, or a directory holding it.
func madeIn(s *stageState, abs string) bool {
	for p := abs; ; p = path.Dir(p) {
		if s.produced[p] {
			return true
		}
		if p == "/" {
			return false
		}
	}
}

// goBuildValueFlags are the go build flags that take a value.
var goBuildValueFlags = map[string]bool{
	"-o": true, "-ldflags": true, "-gcflags": true, "-asmflags": true, "-gccgoflags": true,
	"-tags": true, "-p": true, "-mod": true, "-modfile": true, "-overlay": true, "-pkgdir": true,
	"-installsuffix": true, "-buildmode": true, "-compiler": true, "-toolexec": true, "-pgo": true,
	"-covermode": true, "-coverpkg": true, "-buildvcs": true,
}

func (d *Dockerfile) checkRun(p *problems, where, root string, s *stageState, in Instruction) {
	var cmds [][]string
	if in.Exec {
		cmds = [][]string{in.Args}
	} else {
		var err error
		if cmds, err = shellWords(in.Args[0]); err != nil {
			p.add("%s: RUN: %v", where, err)
			return
		}
	}
	cwd := s.workdir
	for _, c := range cmds {
		switch {
		case len(c) >= 2 && c[0] == "cd":
			cwd = resolve(cwd, c[1])
		case len(c) >= 1 && c[0] == "mkdir":
			for _, a := range c[1:] {
				if !strings.HasPrefix(a, "-") {
					s.produced[resolve(cwd, a)] = true
				}
			}
		case len(c) >= 2 && c[0] == "go" && c[1] == "build":
			d.checkGoBuild(p, where, root, s, cwd, c[2:])
			checkReplaces(p, where, s, cwd, "go build")
		case len(c) >= 3 && c[0] == "go" && c[1] == "mod" && c[2] == "download":
			checkReplaces(p, where, s, cwd, "go mod download")
		}
	}
}

func (d *Dockerfile) checkGoBuild(p *problems, where, root string, s *stageState, cwd string, words []string) {
	var out string
	var pkgs []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") {
			pkgs = append(pkgs, w)
			continue
		}
		name, value, hasValue := strings.Cut(w, "=")
		name = "-" + strings.TrimLeft(name, "-")
		if goBuildValueFlags[name] && !hasValue {
			if i+1 >= len(words) {
				p.add("%s: go build %s without its value", where, name)
				return
			}
			i++
			value = words[i]
		}
		if name == "-o" {
			out = value
		}
	}
	if len(pkgs) == 0 {
		pkgs = []string{"."}
	}
	repoCwd, ok := inRepo(s, cwd)
	if !ok {
		p.add("%s: go build runs in %s, which no COPY . from the build context fills", where, cwd)
		return
	}
	cwdMod := moduleDir(root, repoCwd)
	for _, pkg := range pkgs {
		if !strings.HasPrefix(pkg, ".") || strings.Contains(pkg, "...") {
			p.add("%s: go build package %s: only ./ directory paths are checked; name the package's directory", where, pkg)
			continue
		}
		dir := filepath.Join(repoCwd, filepath.FromSlash(pkg))
		rel, _ := filepath.Rel(root, dir)
		if !inside(root, dir) {
			p.add("%s: go build package %s lies outside the repository", where, pkg)
			continue
		}
		if !hasMain(dir) {
			p.add("%s: go build package %s: %s holds no package main", where, pkg, filepath.ToSlash(rel))
			continue
		}
		if s.env["GOWORK"] == "off" {
			if m := moduleDir(root, dir); m != cwdMod {
				mrel, _ := filepath.Rel(root, m)
				crel, _ := filepath.Rel(root, cwdMod)
				p.add("%s: go build package %s is in the module at %s, but with GOWORK=off go build in %s builds the module at %s", where, pkg, filepath.ToSlash(mrel), cwd, filepath.ToSlash(crel))
				continue
			}
		}
		target := out
		if target == "" {
			target = path.Base(filepath.ToSlash(dir))
		}
		abs := resolve(cwd, target)
		s.produced[abs], s.binaries[abs] = true, true
	}
}

// imageFile returns the repository file that a COPY put at file in the
// image, one by one or with a COPY . of a directory holding it.
func imageFile(s *stageState, file string) (string, bool) {
	if f, ok := s.files[file]; ok {
		return f, true
	}
	dir, ok := inRepo(s, path.Dir(file))
	if !ok {
		return "", false
	}
	f := filepath.Join(dir, path.Base(file))
	if _, err := os.Stat(f); err != nil {
		return "", false
	}
	return f, true
}

// checkReplaces checks that a go command run in cwd finds what its module
// needs in the image: the go.mod governing cwd, and the go.mod of every
// directory its replace directives point at (go mod download reads them
// before anything is built).
func checkReplaces(p *problems, where string, s *stageState, cwd, command string) {
	modDir := ""
	var gomod string
	for d := cwd; ; d = path.Dir(d) {
		if f, ok := imageFile(s, path.Join(d, "go.mod")); ok {
			modDir, gomod = d, f
			break
		}
		if d == "/" {
			break
		}
	}
	if modDir == "" {
		p.add("%s: %s runs in %s, where no COPY has put a go.mod", where, command, cwd)
		return
	}
	b, err := os.ReadFile(gomod)
	if err != nil {
		p.add("%s: %s: %v", where, command, err)
		return
	}
	for _, target := range localReplaces(b) {
		dir := resolve(modDir, target)
		if _, ok := imageFile(s, path.Join(dir, "go.mod")); !ok {
			p.add("%s: %s in %s: the module's replace points at %s, where no COPY has put its go.mod", where, command, cwd, dir)
		}
	}
}

// localReplaces returns the directories a go.mod's replace directives
// point at (those replaced by a path, not by another module's version).
func localReplaces(gomod []byte) []string {
	var out []string
	block := false
	for line := range bytes.Lines(gomod) {
		l, _, _ := strings.Cut(string(line), "//")
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
			continue
		case block && f[0] == ")":
			block = false
			continue
		case !block && f[0] == "replace" && len(f) == 2 && f[1] == "(":
			block = true
			continue
		case !block && f[0] == "replace":
			f = f[1:]
		case !block:
			continue
		}
		i := slices.Index(f, "=>")
		if i < 0 || i+1 >= len(f) {
			continue
		}
		if t := f[i+1]; strings.HasPrefix(t, "./") || strings.HasPrefix(t, "../") || path.IsAbs(t) || t == "." || t == ".." {
			out = append(out, t)
		}
	}
	return out
}

func (d *Dockerfile) checkFinal(p *problems, s *stageState, st Stage) {
	where := func(in Instruction) string { return fmt.Sprintf("%s:%d", d.Name, in.Line) }
	var user, entry, cmd, health *Instruction
	for i := range st.Instructions {
		in := &st.Instructions[i]
		switch in.Cmd {
		case "USER":
			user = in
		case "ENTRYPOINT":
			entry = in
		case "CMD":
			cmd = in
		case "HEALTHCHECK":
			health = in
		case "RUN":
			p.add("%s: RUN in the final stage, whose image has no shell to run it; do it in the build stage", where(*in))
		}
	}
	if user == nil {
		p.add("%s: the final stage sets no USER: the container would run as the base image's user", d.Name)
	} else if u, _, _ := strings.Cut(user.Args[0], ":"); u == "root" || strings.Trim(u, "0") == "" && u != "" {
		// A user ID of zeros (0, 00) is root's.
		p.add("%s: the final stage runs as root (USER %s)", where(*user), user.Args[0])
	}
	start := entry
	if start == nil {
		start = cmd
	}
	if start == nil {
		p.add("%s: the final stage has no ENTRYPOINT or CMD", d.Name)
	} else {
		d.checkStarts(p, where(*start), s, *start)
	}
	switch {
	case health == nil:
		p.add("%s: no HEALTHCHECK in the final stage", d.Name)
	case len(health.Args) > 0:
		d.checkStarts(p, where(*health), s, *health)
	}
}

// checkStarts checks that in (ENTRYPOINT, CMD, HEALTHCHECK) runs, in exec
// form, a binary built in an earlier stage and copied here.
func (d *Dockerfile) checkStarts(p *problems, where string, s *stageState, in Instruction) {
	if !in.Exec {
		p.add("%s: %s in shell form needs /bin/sh, which the final image lacks; use the exec form [\"/binary\", ...]", where, in.Cmd)
		return
	}
	bin := in.Args[0]
	isBinary, ok := s.copied[bin]
	switch {
	case !ok:
		p.add("%s: %s runs %s, which no COPY --from puts in the final image", where, in.Cmd, bin)
	case !isBinary:
		p.add("%s: %s runs %s, which is not a binary go build made", where, in.Cmd, bin)
	}
}

// inRepo maps a directory of the image to the repository directory that a
// COPY . filled it from.
func inRepo(s *stageState, dir string) (string, bool) {
	best := ""
	for img := range s.repo {
		if (dir == img || strings.HasPrefix(dir, strings.TrimSuffix(img, "/")+"/")) && len(img) > len(best) {
			best = img
		}
	}
	if best == "" {
		return "", false
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(dir, best), "/")
	return filepath.Join(s.repo[best], filepath.FromSlash(rel)), true
}

// moduleDir returns the directory of the go.mod that governs dir (at or
// above it, not above root).
func moduleDir(root, dir string) string {
	for d := dir; inside(root, d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return ""
}

// hasMain reports whether dir holds a non-test Go file of package main.
func hasMain(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if fs := strings.Fields(line); len(fs) >= 2 && fs[0] == "package" {
				if fs[1] == "main" {
					return true
				}
				break
			}
		}
	}
	return false
}

// resolve returns p as an absolute, clean image path, relative ones taken
// from dir.
func resolve(dir, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(dir, p)
}

// envPairs reads ENV's arguments: key=value words, or one key and a value.
func envPairs(a []string) map[string]string {
	out := map[string]string{}
	if len(a) >= 2 && !strings.Contains(a[0], "=") {
		out[a[0]] = strings.Join(a[1:], " ")
		return out
	}
	for _, w := range a {
		if k, v, ok := strings.Cut(w, "="); ok {
			out[k] = strings.Trim(v, `"'`)
		}
	}
	return out
}

// shellWords splits a shell command line into simple commands (at &&, ||,
// ; and |) of words, honouring single and double quotes and backslashes.
// It does not expand anything.
func shellWords(line string) ([][]string, error) {
	var cmds [][]string
	var cur []string
	var word strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			cur = append(cur, word.String())
			word.Reset()
			inWord = false
		}
	}
	end := func() {
		flush()
		if len(cur) > 0 {
			cmds = append(cmds, cur)
			cur = nil
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			word.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte(`"\$`+"`", line[i+1]) >= 0 {
					i++
				}
				word.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, fmt.Errorf("unterminated \" in %q", line)
			}
			inWord = true
		case c == '\\' && i+1 < len(line):
			i++
			word.WriteByte(line[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			flush()
		case c == ';' || c == '|' || c == '&':
			if c == '&' && (i+1 >= len(line) || line[i+1] != '&') {
				return nil, fmt.Errorf("a background & in %q", line)
			}
			if i+1 < len(line) && line[i+1] == c {
				i++
			}
			end()
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	end()
	return slices.Clip(cmds), nil
}
