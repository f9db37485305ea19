package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// modulesListPath lists the modules a guest image built on Debian's
// kernel needs loaded at boot.
const modulesListPath = "/etc/devbox/modules"

// loadModules loads the modules listed at list, with what they depend on,
// from /lib/modules/$(uname -r). It returns how many it inserted; no list
// is no work.
func loadModules(log *logger, list string) (int, error) {
	lf, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	names, err := parseModuleList(lf)
	lf.Close()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", list, err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, fmt.Errorf("uname: %w", err)
	}
	dir := "/lib/modules/" + unix.ByteSliceToString(u.Release[:])
	df, err := os.Open(dir + "/modules.dep")
	if err != nil {
		return 0, fmt.Errorf("modules list %s: %w", list, err)
	}
	deps, err := parseModulesDep(df)
	df.Close()
	if err != nil {
		return 0, err
	}
	order, missing := deps.loadOrder(names)
	if len(missing) > 0 {
		builtin := builtinModules(dir + "/modules.builtin")
		for _, n := range missing {
			if !builtin[n] {
				log.Warnf("module %s: not in %s/modules.dep nor built in", n, dir)
			}
		}
	}
	l := &moduleLoader{kernelDecompress: true}
	n := 0
	for _, e := range order {
		p := e.path
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		start := time.Now()
		inserted, err := l.insert(p)
		if err != nil {
			return n, fmt.Errorf("load module %s: %w", moduleName(p), err)
		}
		if inserted {
			n++
			log.Debugf("module %s loaded in %v", moduleName(p), time.Since(start).Round(10*time.Microsecond))
		}
	}
	return n, nil
}

// builtinModules reads modules.builtin: the modules compiled into the kernel.
func builtinModules(path string) map[string]bool {
	m := map[string]bool{}
	b, err := os.ReadFile(path)
	if err != nil {
		return m
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			m[moduleName(l)] = true
		}
	}
	return m
}

// moduleLoader inserts module files into the kernel.
type moduleLoader struct {
	// kernelDecompress: the kernel may take compressed files itself
	// (CONFIG_MODULE_DECOMPRESS, 5.17+), far faster than decompressing
	// here under emulation; false once it has said it cannot.
	kernelDecompress bool
}

// insert loads the module file at path; false when it was loaded already.
func (l *moduleLoader) insert(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	compressed := !strings.HasSuffix(path, ".ko")
	if !compressed {
		err = unix.FinitModule(int(f.Fd()), "", 0)
	} else {
		err = unix.EINVAL
		if l.kernelDecompress {
			err = unix.FinitModule(int(f.Fd()), "", unix.MODULE_INIT_COMPRESSED_FILE)
		}
		if err == unix.EINVAL || err == unix.EOPNOTSUPP || err == unix.ENOSYS {
			l.kernelDecompress = false
			var image []byte
			if image, err = readModule(f, path); err != nil {
				return false, err
			}
			err = unix.InitModule(image, "")
		}
	}
	if err == unix.EEXIST {
		return false, nil
	}
	return err == nil, err
}
