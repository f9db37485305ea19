// Package guest is the devbox guest VM image: a Linux kernel and an
// initramfs whose /init is the devbox guest agent, described by guest.json.
// It builds images (Build, for `make image`), checks and finds them on disk
// (Load, Find) for the hypervisor drivers, and moves them through OCI
// registries (Push, Pull).
//
// An image is a directory, one per architecture (bin/guest/amd64/ after
// `make image`):
//
//	kernel      amd64: an uncompressed ELF vmlinux booted through PVH;
//	            arm64: an uncompressed Image
//	initramfs   a newc cpio archive, uncompressed
//	guest.json  the Manifest: architecture, kernel release and both files'
//	            sizes and sha256 digests
package guest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/devbox-dev/devbox/config"
)

// File names inside an image directory.
const (
	ManifestName  = "guest.json"
	KernelName    = "kernel"
	InitramfsName = "initramfs"
)

// Kernel sources an image may be built from.
const (
	// KernelDevbox is devbox's own kernel: everything built in, no modules.
	KernelDevbox = "devbox"
	// KernelDebian is Debian's kernel with the modules the guest needs in
	// the initramfs.
	KernelDebian = "debian"
)

// EnvImage names the environment variable that points at a guest image
// directory (or a directory of per-architecture image directories).
const EnvImage = "DEVBOX_GUEST_IMAGE"

// rebuildHint ends every error about a missing or broken image.
const rebuildHint = "build one with `make image` or pass --guest-image DIR"

// Manifest is guest.json: what an image holds.
type Manifest struct {
	// Arch is the Go name of the guest's architecture: amd64 or arm64.
	Arch string `json:"arch"`
	// KernelRelease is the kernel's `uname -r`.
	KernelRelease string `json:"kernelRelease"`
	// KernelSource is KernelDevbox or KernelDebian.
	KernelSource string `json:"kernelSource"`
	Kernel       File   `json:"kernel"`
	Initramfs    File   `json:"initramfs"`
	// Cmdline holds kernel arguments this image needs, added to the
	// driver's own; often empty.
	Cmdline string `json:"cmdline"`
}

// File is one file of an image.
type File struct {
	// Path is relative to the image directory.
	Path string `json:"path"`
	// Digest is "sha256:" and the hex SHA-256 of the file.
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Image is a guest image on disk whose files match its manifest.
type Image struct {
	// Dir is the image directory.
	Dir string
	Manifest
}

// KernelPath is the kernel's path.
func (i *Image) KernelPath() string { return filepath.Join(i.Dir, i.Kernel.Path) }

// InitramfsPath is the initramfs's path.
func (i *Image) InitramfsPath() string { return filepath.Join(i.Dir, i.Initramfs.Path) }

// Load reads the image in dir and checks that its kernel and initramfs
// are the files guest.json describes, byte for byte.
func Load(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("guest image %s: no %s there: %s", dir, ManifestName, rebuildHint)
		}
		return nil, fmt.Errorf("guest image %s: %w", dir, err)
	}
	img := &Image{Dir: dir}
	if err := json.Unmarshal(b, &img.Manifest); err != nil {
		return nil, fmt.Errorf("guest image %s: %s: %w: %s", dir, ManifestName, err, rebuildHint)
	}
	if err := img.Manifest.validate(); err != nil {
		return nil, fmt.Errorf("guest image %s: %s: %w: %s", dir, ManifestName, err, rebuildHint)
	}
	cache := openVerifyCache()
	var g errgroup.Group
	for _, f := range []File{img.Kernel, img.Initramfs} {
		g.Go(func() error { return verify(dir, f, cache) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	cache.save()
	return img, nil
}

func (m *Manifest) validate() error {
	if !knownArch(m.Arch) {
		return fmt.Errorf("unknown arch %q", m.Arch)
	}
	if m.KernelSource != KernelDevbox && m.KernelSource != KernelDebian {
		return fmt.Errorf("unknown kernelSource %q", m.KernelSource)
	}
	if m.Kernel.Path == m.Initramfs.Path {
		return fmt.Errorf("kernel and initramfs are both %q", m.Kernel.Path)
	}
	for _, f := range []File{m.Kernel, m.Initramfs} {
		// The manifest may come from a registry: its paths must be plain
		// names in the image directory.
		if !filepath.IsLocal(f.Path) || filepath.Base(f.Path) != f.Path || f.Path == ManifestName {
			return fmt.Errorf("bad file path %q: want a file name in the image directory", f.Path)
		}
		if _, err := parseDigest(f.Digest); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return nil
}

func knownArch(a string) bool { return a == "amd64" || a == "arm64" }

func parseDigest(d string) ([]byte, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != sha256.Size || strings.ToLower(h) != h {
		return nil, fmt.Errorf("bad digest %q: want sha256:<64 lowercase hex digits>", d)
	}
	return b, nil
}

// verify checks the file f of the image in dir against its size and
// digest. A file the cache says was checked against that digest, and that
// has not changed since (same inode, size, mtime and ctime), is not read
// again: hashing 40 MB on every `devbox up` costs ~35 ms.
func verify(dir string, f File, cache *verifyCache) error {
	p := filepath.Join(dir, f.Path)
	r, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("guest image %s: %w: %s", dir, err, rebuildHint)
	}
	defer r.Close()
	fi, err := r.Stat()
	if err != nil {
		return fmt.Errorf("guest image %s: %w", dir, err)
	}
	if fi.Size() != f.Size {
		return fmt.Errorf("guest image %s: %s is %d bytes, %s says %d: the image is damaged or half-written; %s",
			dir, p, fi.Size(), ManifestName, f.Size, rebuildHint)
	}
	key := cacheKey(p, fi)
	if cache.verified(key, f.Digest) {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("guest image %s: read %s: %w", dir, p, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != f.Digest {
		return fmt.Errorf("guest image %s: %s has digest %s, %s says %s: the image is damaged or half-written; %s",
			dir, p, got, ManifestName, f.Digest, rebuildHint)
	}
	// The file may have changed while it was read: remember the state
	// it had before only if it still has it.
	if fi2, err := os.Stat(p); err == nil && cacheKey(p, fi2) == key {
		cache.add(key, lastChange(fi2), f.Digest)
	}
	return nil
}

// SearchPath lists where Find looks for an image for arch after any
// explicit directory and $DEVBOX_GUEST_IMAGE, in order: beside the devbox
// executable (<dir>/guest/<arch>, as `make` lays out bin/), in an
// installed prefix (<dir>/../share/devbox/guest/<arch>), and in devbox's
// home ($DEVBOX_HOME/guest/<arch>).
func SearchPath(arch string) []string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		// A symlinked devbox (a package manager's bin/) finds the image
		// beside the real binary.
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		d := filepath.Dir(exe)
		dirs = append(dirs,
			filepath.Join(d, "guest", arch),
			filepath.Join(d, "..", "share", "devbox", "guest", arch))
	}
	if home, err := config.Home(); err == nil {
		dirs = append(dirs, filepath.Join(home, "guest", arch))
	}
	return dirs
}

// Find finds and loads the guest image for arch. The first non-empty
// explicit directory (the --guest-image flag) wins, then
// $DEVBOX_GUEST_IMAGE; either may name an image directory or a directory
// holding one per architecture (<dir>/<arch>), and an image there that
// fails to load is an error rather than skipped. Otherwise the first
// directory of SearchPath(arch) holding a guest.json is loaded.
func Find(arch string, explicit ...string) (*Image, error) {
	if !knownArch(arch) {
		return nil, fmt.Errorf("guest image: unknown arch %q (want amd64 or arm64)", arch)
	}
	for _, d := range explicit {
		if d != "" {
			return loadFor(arch, chooseArchDir(d, arch))
		}
	}
	if d := os.Getenv(EnvImage); d != "" {
		img, err := loadFor(arch, chooseArchDir(d, arch))
		if err != nil {
			return nil, fmt.Errorf("%w (from $%s)", err, EnvImage)
		}
		return img, nil
	}
	dirs := SearchPath(arch)
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, ManifestName)); err == nil {
			return loadFor(arch, d)
		}
	}
	return nil, fmt.Errorf("no guest image for %s (looked in %s): %s", arch, strings.Join(dirs, ", "), rebuildHint)
}

// chooseArchDir picks d/arch when d is a directory of per-architecture
// images rather than an image.
func chooseArchDir(d, arch string) string {
	if _, err := os.Stat(filepath.Join(d, ManifestName)); err != nil {
		if _, err := os.Stat(filepath.Join(d, arch, ManifestName)); err == nil {
			return filepath.Join(d, arch)
		}
	}
	return d
}

func loadFor(arch, dir string) (*Image, error) {
	img, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if img.Arch != arch {
		return nil, fmt.Errorf("guest image %s is for %s, this machine needs %s: %s", dir, img.Arch, arch, rebuildHint)
	}
	return img, nil
}
