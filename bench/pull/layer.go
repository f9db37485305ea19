package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
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
	"syscall"
)

// corpusVersion changes the cache key whenever the layer format changes.
const corpusVersion = "2"

// corpusRoots are walked in order, each contributing an equal share of the
// size budget, so the layer mixes executables, shared libraries and the
// many small data files of /usr/share, like a real distribution image.
var corpusRoots = []string{"/usr/bin", "/usr/lib", "/usr/share"}

// layerStats describes a built layer; it is cached next to the blob.
type layerStats struct {
	Files, Dirs, Symlinks, Hardlinks int
	// Bytes is the sum of regular file sizes; TarBytes the tar stream.
	Bytes, TarBytes, GzipBytes int64
}

// cachedLayer returns the path and stats of a gzip layer of about limit
// bytes of host files, building it in workDir unless an earlier run did.
func cachedLayer(workDir string, roots []string, limit int64) (string, layerStats, error) {
	key := sha256.Sum256(fmt.Appendf(nil, "%s|%s|%d", corpusVersion, strings.Join(roots, ","), limit))
	path := filepath.Join(workDir, "hostfiles-"+hex.EncodeToString(key[:6])+".tar.gz")
	statsPath := path + ".json"

	var st layerStats
	if b, err := os.ReadFile(statsPath); err == nil && json.Unmarshal(b, &st) == nil {
		if _, err := os.Stat(path); err == nil {
			return path, st, nil
		}
	}
	removeStale(workDir, path)
	st, err := writeLayer(path, roots, limit)
	if err != nil {
		return "", st, err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return "", st, err
	}
	// Stats are written last: their presence marks the blob complete.
	if err := writeFileAtomic(statsPath, b); err != nil {
		return "", st, err
	}
	return path, st, nil
}

// removeStale deletes layers cached for other settings: each is tens of
// megabytes.
func removeStale(workDir, keep string) {
	old, _ := filepath.Glob(filepath.Join(workDir, "hostfiles-*"))
	for _, p := range old {
		if !strings.HasPrefix(p, keep) {
			os.Remove(p)
		}
	}
}

// writeLayer writes the tar.gz to a temp file and renames it into place,
// so an interrupted build never looks like a cached one.
func writeLayer(path string, roots []string, limit int64) (layerStats, error) {
	var st layerStats
	f, err := os.CreateTemp(filepath.Dir(path), ".layer-*")
	if err != nil {
		return st, fmt.Errorf("create layer file: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return st, err
	}

	bw := bufio.NewWriterSize(f, 1<<20)
	counted := &countWriter{w: bw}
	// Level 6 is what docker push and gzip(1) use by default.
	zw, err := gzip.NewWriterLevel(counted, gzip.DefaultCompression)
	if err != nil {
		return st, err
	}
	tarCount := &countWriter{w: zw}
	tw := tar.NewWriter(tarCount)

	b := &builder{tw: tw, stats: &st, emitted: map[string]bool{}, inodes: map[inode]string{}}
	for i, root := range roots {
		// What one root leaves unused goes to the ones after it.
		budget := (limit - st.Bytes) / int64(len(roots)-i)
		if err := b.addRoot(root, budget); err != nil {
			f.Close()
			return st, err
		}
	}
	for _, c := range []io.Closer{tw, zw} {
		if err := c.Close(); err != nil {
			f.Close()
			return st, fmt.Errorf("finish layer: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return st, fmt.Errorf("write layer: %w", err)
	}
	if err := f.Close(); err != nil {
		return st, fmt.Errorf("write layer: %w", err)
	}
	st.TarBytes, st.GzipBytes = tarCount.n, counted.n
	if err := os.Rename(f.Name(), path); err != nil {
		return st, fmt.Errorf("install layer: %w", err)
	}
	return st, nil
}

// inode identifies a file for hard link detection.
type inode struct{ dev, ino uint64 }

// builder writes host files into a tar stream.
type builder struct {
	tw      *tar.Writer
	stats   *layerStats
	emitted map[string]bool  // directory names already written
	inodes  map[inode]string // first tar name of each multiply linked file
}

// addRoot writes root's ancestors, then root's tree in lexical order,
// skipping files that would overflow budget bytes of regular files and
// stopping once the budget is all but used.
func (b *builder) addRoot(root string, budget int64) error {
	if err := b.addAncestors(root); err != nil {
		return err
	}
	var used int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if budget-used < budget/200 {
			return filepath.SkipAll
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			if used+info.Size() > budget {
				return nil
			}
			used += info.Size()
		}
		return b.add(path, info)
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", root, err)
	}
	return nil
}

// addAncestors writes the directories above path, such as usr/ for
// /usr/lib, so the layer unpacks with their real modes.
func (b *builder) addAncestors(path string) error {
	parent := filepath.Dir(path)
	if parent == "/" || parent == "." {
		return nil
	}
	if err := b.addAncestors(parent); err != nil {
		return err
	}
	info, err := os.Lstat(parent)
	if err != nil {
		return err
	}
	return b.add(parent, info)
}

// add writes one file, directory, symlink or hard link; other types
// (sockets, devices, fifos) are skipped since images rarely carry them.
func (b *builder) add(path string, info fs.FileInfo) error {
	name := strings.TrimPrefix(path, "/")
	var link string
	switch {
	case info.IsDir():
		name += "/"
		if b.emitted[name] {
			return nil
		}
		b.emitted[name] = true
		b.stats.Dirs++
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		link = target
		b.stats.Symlinks++
	case info.Mode().IsRegular():
	default:
		return nil
	}

	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	hdr.Name = name
	if info.Mode().IsRegular() {
		if first, ok := b.firstLink(info, name); ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			b.stats.Hardlinks++
			return b.tw.WriteHeader(hdr)
		}
	}
	if err := b.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if hdr.Typeflag == tar.TypeReg {
		b.stats.Files++
		b.stats.Bytes += hdr.Size
		return copyFile(b.tw, path, hdr.Size)
	}
	return nil
}

// firstLink reports the earlier tar name of a file with several links, and
// records name as the first one otherwise.
func (b *builder) firstLink(info fs.FileInfo, name string) (string, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink < 2 {
		return "", false
	}
	key := inode{dev: uint64(st.Dev), ino: st.Ino}
	if first, seen := b.inodes[key]; seen {
		return first, true
	}
	b.inodes[key] = name
	return "", false
}

// copyFile copies exactly size bytes of path; a file that changed size
// since it was stat'ed is an error rather than a corrupt archive.
func copyFile(w io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("file shrank while archiving")
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeFileAtomic writes b to path through a temp file and rename.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// countWriter counts bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
