package guest

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/devbox-dev/devbox/images/initramfs"
)

// BuildOptions are the inputs of Build.
type BuildOptions struct {
	// Arch is the guest architecture: amd64 or arm64.
	Arch string
	// KernelDir is what scripts/guest-kernel.sh made: kernel,
	// kernel.release and, for KernelDebian, modules/ (holding
	// lib/modules/<release>/ and modules.load, the modules to load at boot,
	// in order).
	KernelDir string
	// KernelSource is KernelDevbox or KernelDebian.
	KernelSource string
	// Agent is the devbox binary built for linux/Arch, static; it becomes
	// /init.
	Agent string
	// Busybox is a static busybox for Arch, installed as /bin/busybox with
	// its applets linked in /bin and /sbin, for people in the guest.
	Busybox string
	// DebRoot is the tree the target's Debian packages were unpacked in
	// (scripts/guest-debs.sh): the image takes e2fsprogs' mke2fs,
	// mke2fs.conf and resize2fs from it, with exactly the libraries they
	// need, since the agent formats the data disk ext4 (busybox's mke2fs
	// only makes ext2) and grows it online when the disk was made larger
	// (busybox has no resize2fs).
	DebRoot string
	// Cmdline is kernel arguments the image needs, recorded in guest.json.
	Cmdline string
	// Out is the image directory to write; files there are replaced.
	Out string
	// ModTime stamps every initramfs entry (SOURCE_DATE_EPOCH); the zero
	// Time means the Unix epoch.
	ModTime time.Time
	// Log receives progress notes; nil discards them.
	Log io.Writer
}

// applets is `busybox --list-full` of Debian 12's busybox-static, for
// when the target's busybox cannot run on the build machine.
//
//go:embed applets.txt
var applets string

// Build writes a guest image to opts.Out: the kernel, an initramfs holding
// the agent as /init and the guest's userland, and guest.json. The same
// inputs give the same bytes. Each file goes to a temporary name first and
// guest.json is renamed into place last, so an interrupted build leaves an
// image that Load rejects rather than a mix that boots wrongly.
func Build(ctx context.Context, opts BuildOptions) (*Image, error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	if _, ok := arches[opts.Arch]; !ok {
		return nil, fmt.Errorf("build guest image: unknown arch %q (want amd64 or arm64)", opts.Arch)
	}
	if opts.KernelSource != KernelDevbox && opts.KernelSource != KernelDebian {
		return nil, fmt.Errorf("build guest image: unknown kernel source %q (want %s or %s)", opts.KernelSource, KernelDevbox, KernelDebian)
	}
	for _, in := range [][2]string{{"kernel dir", opts.KernelDir}, {"agent", opts.Agent}, {"busybox", opts.Busybox}, {"deb root", opts.DebRoot}, {"output dir", opts.Out}} {
		if in[1] == "" {
			return nil, fmt.Errorf("build guest image: no %s given", in[0])
		}
	}
	kernel := filepath.Join(opts.KernelDir, KernelName)
	if err := checkKernel(kernel, opts.Arch); err != nil {
		return nil, fmt.Errorf("build guest image: %w", err)
	}
	rel, err := os.ReadFile(filepath.Join(opts.KernelDir, "kernel.release"))
	if err != nil {
		return nil, fmt.Errorf("build guest image: kernel release: %w", err)
	}
	release := strings.TrimSpace(string(rel))
	if release == "" || strings.ContainsAny(release, "/\n") {
		return nil, fmt.Errorf("build guest image: bad kernel release %q in %s", release, opts.KernelDir)
	}
	if err := checkExecutable("agent", opts.Agent, opts.Arch, true); err != nil {
		return nil, fmt.Errorf("build guest image: %w", err)
	}
	if err := checkExecutable("busybox", opts.Busybox, opts.Arch, true); err != nil {
		return nil, fmt.Errorf("build guest image: %w", err)
	}

	c := &contents{}
	if err := c.base(ctx, opts, logw); err != nil {
		return nil, fmt.Errorf("build guest image: %w", err)
	}
	if opts.KernelSource == KernelDebian {
		if err := c.modules(opts.KernelDir, release); err != nil {
			return nil, fmt.Errorf("build guest image: %w", err)
		}
	}

	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("build guest image: %w", err)
	}
	// Temporary files of a build that was killed.
	if stale, err := filepath.Glob(filepath.Join(opts.Out, ".*.tmp-*")); err == nil {
		for _, p := range stale {
			os.Remove(p)
		}
	}
	var temps []string
	defer func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	initrdTmp, initrdFile, err := writeTemp(opts.Out, InitramfsName, func(w io.Writer) error {
		return c.write(w, opts.ModTime)
	})
	temps = append(temps, initrdTmp)
	if err != nil {
		return nil, fmt.Errorf("build guest image: initramfs: %w", err)
	}
	kernelTmp, kernelFile, err := writeTemp(opts.Out, KernelName, func(w io.Writer) error {
		f, err := os.Open(kernel)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	})
	temps = append(temps, kernelTmp)
	if err != nil {
		return nil, fmt.Errorf("build guest image: kernel: %w", err)
	}
	m := Manifest{
		Arch:          opts.Arch,
		KernelRelease: release,
		KernelSource:  opts.KernelSource,
		Kernel:        kernelFile,
		Initramfs:     initrdFile,
		Cmdline:       opts.Cmdline,
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	manifestTmp, _, err := writeTemp(opts.Out, ManifestName, func(w io.Writer) error {
		_, err := w.Write(append(mb, '\n'))
		return err
	})
	temps = append(temps, manifestTmp)
	if err != nil {
		return nil, fmt.Errorf("build guest image: %w", err)
	}
	for _, r := range [][2]string{{kernelTmp, KernelName}, {initrdTmp, InitramfsName}, {manifestTmp, ManifestName}} {
		if err := os.Rename(r[0], filepath.Join(opts.Out, r[1])); err != nil {
			return nil, fmt.Errorf("build guest image: %w", err)
		}
	}
	temps = nil
	return &Image{Dir: opts.Out, Manifest: m}, nil
}

// writeTemp writes a temporary file in dir with fill, syncs it and returns
// its path and its description as the image file name will hold it.
func writeTemp(dir, name string, fill func(io.Writer) error) (string, File, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", File{}, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return f.Name(), File{Path: name, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: cw.n}, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// entry is one initramfs member.
type entry struct {
	mode fs.FileMode
	// One of: src (a file to copy), data, target (a symlink), or none of
	// them for a directory (mode has ModeDir) or device (ModeCharDevice).
	src    string
	data   []byte
	target string
	isData bool
	major  uint32
	minor  uint32
}

// contents is the initramfs being assembled, by path inside the guest.
type contents struct {
	entries map[string]entry
}

func (c *contents) add(p string, e entry) error {
	if c.entries == nil {
		c.entries = map[string]entry{}
	}
	if _, ok := c.entries[p]; ok {
		return fmt.Errorf("initramfs: %s added twice", p)
	}
	c.entries[p] = e
	return nil
}

func (c *contents) dir(p string, mode fs.FileMode) error {
	return c.add(p, entry{mode: fs.ModeDir | mode})
}

func (c *contents) file(p string, mode fs.FileMode, data []byte) error {
	return c.add(p, entry{mode: mode, data: data, isData: true})
}

func (c *contents) copy(p string, mode fs.FileMode, src string) error {
	return c.add(p, entry{mode: mode, src: src})
}

// copyNormalized copies src, executable or not as src is (0755 or 0644),
// so the image does not depend on the build machine's umask.
func (c *contents) copyNormalized(p, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	mode := fs.FileMode(0o644)
	if fi.Mode()&0o111 != 0 {
		mode = 0o755
	}
	return c.copy(p, mode, src)
}

func (c *contents) base(ctx context.Context, opts BuildOptions, logw io.Writer) error {
	for _, d := range []struct {
		p    string
		mode fs.FileMode
	}{
		{"/bin", 0o755}, {"/sbin", 0o755}, {"/etc", 0o755}, {"/etc/devbox", 0o755},
		{"/lib", 0o755}, {"/dev", 0o755}, {"/proc", 0o555}, {"/sys", 0o555},
		{"/run", 0o755}, {"/tmp", 0o777 | fs.ModeSticky}, {"/root", 0o700},
		{"/var", 0o755}, {"/var/lib", 0o755}, {"/var/lib/devbox", 0o755},
	} {
		if err := c.dir(d.p, d.mode); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's standard streams before
	// anything can mount devtmpfs.
	if err := c.add("/dev/console", entry{mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, major: 5, minor: 1}); err != nil {
		return err
	}
	if err := c.copy("/init", 0o755, opts.Agent); err != nil {
		return err
	}
	// Scripts that name /usr/bin/env and the like find busybox's applets.
	if err := c.dir("/usr", 0o755); err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin"} {
		if err := c.add("/usr/"+d, entry{target: "../" + d}); err != nil {
			return err
		}
	}
	if err := c.file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")); err != nil {
		return err
	}
	if err := c.file("/etc/group", 0o644, []byte("root:x:0:\n")); err != nil {
		return err
	}

	// e2fsprogs' mke2fs and resize2fs, mke2fs's configuration, and the
	// libraries they need.
	libs := map[string]string{} // guest path -> host file
	for _, prog := range []string{"/sbin/mke2fs", "/sbin/resize2fs"} {
		name := path.Base(prog)
		host, err := resolveIn(opts.DebRoot, prog)
		if err != nil {
			return fmt.Errorf("%s: %w (did scripts/guest-debs.sh unpack e2fsprogs there?)", name, err)
		}
		if err := checkExecutable(name, host, opts.Arch, false); err != nil {
			return err
		}
		if err := c.copy(prog, 0o755, host); err != nil {
			return err
		}
		need, err := sharedLibraries(opts.DebRoot, prog, opts.Arch)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		maps.Copy(libs, need)
	}
	conf, err := resolveIn(opts.DebRoot, "/etc/mke2fs.conf")
	if err != nil {
		return fmt.Errorf("mke2fs.conf: %w", err)
	}
	if err := c.copy("/etc/mke2fs.conf", 0o644, conf); err != nil {
		return err
	}
	// A file found under two names (the loader is both the ELF
	// interpreter and libc's DT_NEEDED) is stored once; the other names
	// link to it, as in Debian.
	first := map[string]string{} // host file -> guest path holding it
	for _, p := range sortedKeys(libs) {
		if q, ok := first[libs[p]]; ok {
			if err := c.add(p, entry{target: q}); err != nil {
				return err
			}
			continue
		}
		first[libs[p]] = p
		if err := c.copyNormalized(p, libs[p]); err != nil {
			return err
		}
	}

	if err := c.copy("/bin/busybox", 0o755, opts.Busybox); err != nil {
		return err
	}
	list, how := busyboxApplets(ctx, opts.Busybox, opts.Arch)
	fmt.Fprintf(logw, "busybox applets: %s\n", how)
	for _, a := range list {
		if _, taken := c.entries[a]; taken {
			continue // a real program (mke2fs, resize2fs) beats the applet
		}
		if err := c.add(a, entry{target: "/bin/busybox"}); err != nil {
			return err
		}
	}
	return nil
}

// busyboxApplets lists the paths in the guest to link to busybox: its
// applets, in /bin and /sbin. It asks the busybox when it can run here and
// otherwise uses the list of Debian 12's busybox-static.
func busyboxApplets(ctx context.Context, busybox, arch string) ([]string, string) {
	text, how := applets, "the built-in list of Debian 12's busybox-static"
	if arch == runtime.GOARCH && runtime.GOOS == "linux" {
		out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
		if err == nil {
			text, how = string(out), busybox+" --list-full"
		}
	}
	seen := map[string]bool{}
	var list []string
	for _, l := range strings.Fields(text) {
		l = strings.TrimPrefix(l, "usr/")
		dir, name, ok := strings.Cut(l, "/")
		if !ok || (dir != "bin" && dir != "sbin") || strings.Contains(name, "/") || name == "busybox" || name == "" {
			continue // linuxrc, and busybox itself
		}
		if p := "/" + dir + "/" + name; !seen[p] {
			seen[p] = true
			list = append(list, p)
		}
	}
	slices.Sort(list)
	return list, how
}

// modules adds a Debian kernel's modules: the kernel dir's
// modules/lib/modules/<release>/ tree as /lib/modules/<release>/, and
// modules.load (the modules to load at boot, in order) as
// /etc/devbox/modules.
func (c *contents) modules(kernelDir, release string) error {
	root := filepath.Join(kernelDir, "modules")
	tree := filepath.Join(root, "lib", "modules", release)
	if fi, err := os.Stat(tree); err != nil || !fi.IsDir() {
		return fmt.Errorf("kernel %s: no modules for release %s at %s (a %s kernel needs them)", kernelDir, release, tree, KernelDebian)
	}
	load := filepath.Join(root, "modules.load")
	if _, err := os.Stat(load); err != nil {
		return fmt.Errorf("kernel %s: %w", kernelDir, err)
	}
	if err := c.copy("/etc/devbox/modules", 0o644, load); err != nil {
		return err
	}
	for _, d := range []string{"/lib/modules", "/lib/modules/" + release} {
		if err := c.dir(d, 0o755); err != nil {
			return err
		}
	}
	return filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == tree {
			return nil
		}
		rel, err := filepath.Rel(tree, p)
		if err != nil {
			return err
		}
		guestPath := path.Join("/lib/modules", release, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			return c.dir(guestPath, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			if rel == "build" || rel == "source" {
				return nil // links to the build machine's kernel tree
			}
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return c.add(guestPath, entry{target: target})
		case d.Type().IsRegular():
			return c.copy(guestPath, 0o644, p)
		default:
			return fmt.Errorf("kernel modules: %s is neither file, directory nor symlink", p)
		}
	})
}

// write writes the archive, entries sorted by path: a parent sorts before
// its children, and the order depends on nothing but the contents.
func (c *contents) write(w io.Writer, mtime time.Time) error {
	aw := initramfs.NewWriter(w)
	if !mtime.IsZero() {
		if err := aw.SetModTime(mtime); err != nil {
			return err
		}
	}
	for _, p := range sortedKeys(c.entries) {
		e := c.entries[p]
		var err error
		switch {
		case e.mode.IsDir():
			err = aw.Dir(p, e.mode)
		case e.mode&fs.ModeCharDevice != 0:
			err = aw.CharDevice(p, e.mode.Perm(), e.major, e.minor)
		case e.target != "":
			err = aw.Symlink(p, e.target)
		case e.isData:
			err = aw.File(p, e.mode, e.data)
		default:
			err = copyInto(aw, p, e.mode, e.src)
		}
		if err != nil {
			return err
		}
	}
	return aw.Close()
}

func copyInto(aw *initramfs.Writer, p string, mode fs.FileMode, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	return aw.FileFrom(p, mode, fi.Size(), f)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
