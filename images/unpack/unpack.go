package unpack

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Options tune Apply.
type Options struct {
	// Name is what errors call the layer's image, e.g. "docker.io/library/busybox:latest".
	Name string
}

// Result describes what Apply wrote.
type Result struct {
	// Size is the number of bytes of regular-file content written (what
	// `devbox images` shows as SIZE).
	Size int64
	// ImplicitDirs lists, sorted, the clean relative paths (no leading "/")
	// of directories Apply created only because an entry needed a parent and
	// the tar had no explicit directory entry for them. Give them to
	// CheckLower before stacking the layer.
	ImplicitDirs []string
}

// copyBufferSize is the chunk file content is copied in. Large chunks keep
// the syscall count low for big files. One buffer serves a whole layer; it
// is not pooled, as a layer takes far longer to write than to allocate it.
const copyBufferSize = 1 << 20

// Apply reads an uncompressed tar stream from r and writes it into dir (which
// must exist and be empty), in overlayfs layer form: ".wh.NAME" entries
// become 0/0 character devices named NAME and ".wh..wh..opq" marks its
// directory opaque with the trusted.overlay.opaque xattr.
//
// Nothing is written outside dir: names that climb out with ".." and entries
// whose parent is a symlink or a file are refused with an *EntryError, and no
// symlink is ever followed. Leading slashes are dropped ("/etc/x" is
// "etc/x"). A later entry for a path replaces the earlier one, except that a
// directory entry over a directory only updates its metadata.
//
// Apply reads r to its end, past the tar's end marker, so that a reader
// verifying a digest sees every byte. ctx is checked between entries and
// between chunks of large files. On error, dir holds part of the layer and
// should be removed.
//
// Small files are written by goroutines of Apply's own (see writers.go),
// which are done when it returns.
func Apply(ctx context.Context, dir string, r io.Reader, opts Options) (Result, error) {
	return apply(ctx, dir, r, opts, defaultTuning)
}

func apply(ctx context.Context, dir string, r io.Reader, opts Options, t tuning) (Result, error) {
	if err := checkEmpty(dir); err != nil {
		return Result{}, fmt.Errorf("%s: %w", layerOf(opts.Name), err)
	}
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, fmt.Errorf("%s: open %s: %w", layerOf(opts.Name), dir, err)
	}
	a := newApplier(ctx, opts.Name, dir, root, t)
	defer a.close()

	br := bufio.NewReaderSize(r, 64<<10)
	if err := a.applyAll(tar.NewReader(br)); err != nil {
		return a.result(), err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return a.result(), fmt.Errorf("%s: read past tar end: %w", layerOf(opts.Name), err)
	}
	return a.result(), nil
}

// layerOf is how every error of Apply begins.
func layerOf(image string) string {
	if image == "" {
		return "layer"
	}
	return "layer of " + image
}

// checkEmpty makes sure dir is an empty directory: applying over leftovers
// would silently merge two layers.
func checkEmpty(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}

// applier holds the state of one Apply.
type applier struct {
	ctx   context.Context
	image string // Options.Name, for errors
	dir   string // the layer directory as given, for path-based xattr calls
	root  int    // descriptor of dir
	walk  walker
	buf   []byte

	tuning  tuning
	writers *writers   // started by the first small file; nil until then
	seen    pathHashes // every path created at, see replace

	entry    string                     // raw name of the entry being applied, for errors
	seq      int64                      // its position in the tar
	size     int64                      // Result.Size so far, but what writers wrote
	implicit *pathSet[struct{}]         // Result.ImplicitDirs so far
	dirTimes *pathSet[[2]unix.Timespec] // set last: adding children changes them
}

func newApplier(ctx context.Context, image, dir string, root int, t tuning) *applier {
	a := &applier{
		ctx:      ctx,
		image:    image,
		dir:      dir,
		root:     root,
		buf:      make([]byte, copyBufferSize),
		tuning:   t,
		seen:     newPathHashes(),
		implicit: newPathSet[struct{}](),
		dirTimes: newPathSet[[2]unix.Timespec](),
	}
	a.walk = walker{root: root, created: a.addImplicit, queued: a.waitQueued}
	return a
}

func (a *applier) close() {
	a.writers.stop()
	a.walk.close()
	unix.Close(a.root)
}

func (a *applier) addImplicit(path string) {
	a.seen.add(path)
	a.implicit.set(path, struct{}{})
}

// waitQueued reports whether a file was queued for the writers at path, and
// if so, waits until it is written. Asking the writers whether it is queued
// now would not do: it may have been written the moment after the caller
// found path missing.
func (a *applier) waitQueued(path string) bool {
	if !a.seen.has(path) {
		return false
	}
	a.writers.waitFor(path)
	return true
}

func (a *applier) result() Result {
	dirs := a.implicit.paths()
	slices.Sort(dirs)
	return Result{Size: a.size + a.writers.written(), ImplicitDirs: dirs}
}

// applyAll applies every entry of tr, then the directories' times.
func (a *applier) applyAll(tr *tar.Reader) error {
	err := a.applyEntries(tr)
	// Files queued before a failing entry come before it in the tar, and
	// so do their errors.
	if werr := a.writers.wait(); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	return a.setDirTimes()
}

// applyEntries applies every entry of tr, stopping early, without an error
// of its own, when a writer failed.
func (a *applier) applyEntries(tr *tar.Reader) error {
	for a.seq = 0; !a.writers.failed(); a.seq++ {
		if err := a.ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", layerOf(a.image), err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: read tar: %w", layerOf(a.image), err)
		}
		a.entry = hdr.Name
		if err := a.apply(hdr, tr); err != nil {
			return err
		}
	}
	return nil
}

// apply writes one entry.
func (a *applier) apply(hdr *tar.Header, content io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide PAX records (git archive writes one); nothing to create
	}
	p, ok := cleanName(hdr.Name)
	if !ok {
		return a.refuse("name escapes the layer directory")
	}
	parent, base := splitName(p)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr, parent, base)
	}
	if p == "." {
		if hdr.Typeflag != tar.TypeDir {
			return a.refuse("only a directory can stand for the layer root")
		}
		return a.rootDir(hdr)
	}
	if hdr.Typeflag == tar.TypeLink {
		return a.hardlink(hdr, p, parent, base)
	}
	pfd, err := a.walk.resolve(parent, true)
	if err != nil {
		return a.walkErr(err)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		// archive/tar expands sparse files and already turned TypeRegA into
		// TypeReg; a contiguous file is a regular file everywhere but on tape.
		return a.regular(hdr, content, pfd, p, base)
	case tar.TypeDir:
		return a.directory(hdr, pfd, p, base)
	case tar.TypeSymlink:
		return a.symlink(hdr, pfd, p, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.node(hdr, pfd, p, base)
	default:
		return a.refuse(fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
	}
}

// refuse returns an *EntryError for the current entry.
func (a *applier) refuse(reason string) error {
	return &EntryError{Image: a.image, Entry: a.entry, Reason: reason}
}

// fail wraps an I/O error of the current entry; op says what was being done.
func (a *applier) fail(op string, err error) error {
	return entryIOError(a.image, a.entry, op, err)
}

// entryIOError wraps an I/O error of an entry; op says what was being done.
func entryIOError(image, entry, op string, err error) error {
	return fmt.Errorf("%s: entry %q: %s: %w", layerOf(image), entry, op, err)
}

// walkErr turns an error of walk.resolve into a refusal or an I/O error of
// the current entry.
func (a *applier) walkErr(err error) error {
	var we *walkError
	if errors.As(err, &we) && we.refused {
		return a.refuse(we.reason)
	}
	return a.fail("resolve parent", err)
}

// setDirTimes gives directories their times from the tar, last, since every
// entry created inside a directory changed its mtime.
func (a *applier) setDirTimes() error {
	return a.dirTimes.each(func(p string, ts [2]unix.Timespec) error {
		a.entry = p
		parent, base := splitName(p) // "." splits into "." and "."
		pfd, err := a.walk.resolve(parent, false)
		if err != nil {
			return a.walkErr(err)
		}
		if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return a.fail("set directory times", err)
		}
		return nil
	})
}

// forget drops what the applier remembers of the tree at p, which was just
// removed, so that a later file there neither counts as an implicit
// directory nor gets a removed directory's times.
func (a *applier) forget(p string) {
	a.implicit.deleteTree(p)
	a.dirTimes.deleteTree(p)
}
