package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/scanner"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// leaveOutUncompilable takes out of the schema (host = hostNone) the
// mutants that do not compile on their own although their branch of the
// schema does: one that drops the only use of a variable or an import
// ("declared and not used") compiles in the schema, where the original
// beside it still uses it. Built one by one, they then count as not
// compiling. Only mutants that drop a name are type-checked; a package
// that does not type-check here as it is (cgo, say) is left as it is.
func leaveOutUncompilable(ctx context.Context, cfg config, pkg pkgInfo, sources map[string][]byte, ms []*mutant) {
	var suspects []*mutant
	for _, m := range ms {
		if m.status == pending && m.host != hostNone && dropsName(sources[m.file][m.start:m.end], m.repl) {
			suspects = append(suspects, m)
		}
	}
	if len(suspects) == 0 {
		return
	}
	exports, err := exportData(ctx, cfg, pkg)
	if err != nil {
		return
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok {
			return nil, errors.New("no export data for " + path)
		}
		return os.Open(f)
	})
	files := make([]*ast.File, len(pkg.GoFiles))
	index := map[string]int{}
	for i, name := range pkg.GoFiles {
		src, ok := sources[name]
		if !ok {
			if src, err = os.ReadFile(filepath.Join(pkg.Dir, name)); err != nil {
				return
			}
		}
		if files[i], err = parser.ParseFile(fset, name, src, parser.SkipObjectResolution); err != nil {
			return
		}
		index[name] = i
	}
	check := func(files []*ast.File) error {
		conf := types.Config{Importer: imp}
		_, err := conf.Check(pkg.ImportPath, fset, files, nil)
		return err
	}
	if check(files) != nil {
		return
	}
	for _, m := range suspects {
		src := sources[m.file]
		mutated := make([]byte, 0, len(src)+len(m.repl))
		mutated = append(mutated, src[:m.start]...)
		mutated = append(mutated, m.repl...)
		mutated = append(mutated, src[m.end:]...)
		f, err := parser.ParseFile(fset, m.file, mutated, parser.SkipObjectResolution)
		if err == nil {
			withMutant := append([]*ast.File(nil), files...)
			withMutant[index[m.file]] = f
			err = check(withMutant)
		}
		if err != nil {
			m.host = hostNone
		}
	}
}

// dropsName reports whether replacing orig by repl takes away a name
// (other than a predeclared nil, true or false): the only use, it may be,
// of a variable or an import.
func dropsName(orig []byte, repl string) bool {
	kept := map[string]bool{"_": true, "nil": true, "true": true, "false": true}
	for _, name := range identifiers([]byte(repl)) {
		kept[name] = true
	}
	for _, name := range identifiers(orig) {
		if !kept[name] {
			return true
		}
	}
	return false
}

// identifiers returns the identifiers in the Go source src.
func identifiers(src []byte) []string {
	var s scanner.Scanner
	fset := token.NewFileSet()
	s.Init(fset.AddFile("", -1, len(src)), src, nil, 0)
	var out []string
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			return out
		}
		if tok == token.IDENT {
			out = append(out, lit)
		}
	}
}

// exportData returns the files of compiled export data of the packages
// that pkg imports, by import path.
func exportData(ctx context.Context, cfg config, pkg pkgInfo) (map[string]string, error) {
	args := []string{"list", "-export", "-deps", "-json=ImportPath,Export"}
	if cfg.tags != "" {
		args = append(args, "-tags", cfg.tags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Dir = pkg.Dir
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	exports := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct{ ImportPath, Export string }
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return exports, nil
		} else if err != nil {
			return nil, err
		}
		if p.Export != "" {
			exports[p.ImportPath] = p.Export
		}
	}
}
