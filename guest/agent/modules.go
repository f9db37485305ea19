package agent

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// moduleName is the kernel's name for the module file p: the base name
// without ".ko" and compression suffix, dashes as underscores.
func moduleName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// moduleDeps is modules.dep: each module's file and the modules it needs.
type moduleDeps map[string]moduleEntry

type moduleEntry struct {
	path string   // relative to /lib/modules/$(uname -r), or absolute
	deps []string // module names
}

// parseModulesDep reads modules.dep ("path: dep-path dep-path ...").
func parseModulesDep(r io.Reader) (moduleDeps, error) {
	m := moduleDeps{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, deps, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep: bad line %q", line)
		}
		e := moduleEntry{path: strings.TrimSpace(file)}
		for _, d := range strings.Fields(deps) {
			e.deps = append(e.deps, moduleName(d))
		}
		m[moduleName(e.path)] = e
	}
	return m, sc.Err()
}

// parseModuleList reads a list of module names, one a line, # comments.
func parseModuleList(r io.Reader) ([]string, error) {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		for _, f := range strings.Fields(line) {
			names = append(names, strings.ReplaceAll(f, "-", "_"))
		}
	}
	return names, sc.Err()
}

// loadOrder returns the modules to insert for names, each after all it
// depends on, each once. Names modules.dep does not know are returned in
// missing (built into the kernel, or absent).
func (m moduleDeps) loadOrder(names []string) (order []moduleEntry, missing []string) {
	seen := map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		e, ok := m[n]
		if !ok {
			missing = append(missing, n)
			return
		}
		for _, d := range e.deps {
			visit(d)
		}
		order = append(order, e)
	}
	for _, n := range names {
		visit(n)
	}
	return order, missing
}

// readModule decompresses a module file by its suffix.
func readModule(r io.Reader, path string) ([]byte, error) {
	switch {
	case strings.HasSuffix(path, ".ko.xz"):
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return io.ReadAll(xr)
	case strings.HasSuffix(path, ".ko.zst"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		return io.ReadAll(zr)
	case strings.HasSuffix(path, ".ko.gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return io.ReadAll(gr)
	case strings.HasSuffix(path, ".ko"):
		return io.ReadAll(r)
	}
	return nil, fmt.Errorf("%s: unknown module file type", path)
}
