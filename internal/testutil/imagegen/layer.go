package imagegen

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// Epoch is the modification time of entries that do not set one, so that
// the same entries always give the same layer digest.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Entry is one member of a hand-made layer tar. Fields are written to the
// tar header as given: names are not cleaned, so "../x", "/etc/x" and
// "a/../../b" reach the archive unchanged, which is what tests of a safe
// unpacker need.
type Entry struct {
	// Name is the member's path in the archive.
	Name string
	// Type is a tar type flag: tar.TypeReg, TypeDir, TypeSymlink, TypeLink,
	// TypeFifo, TypeChar or TypeBlock. Zero means tar.TypeReg.
	Type byte
	// Mode holds permission bits plus setuid, setgid and sticky
	// (0o4000, 0o2000, 0o1000), written as is; zero really is mode 0.
	Mode int64
	// UID and GID are the numeric owner; Uname and Gname are optional.
	UID, GID     int
	Uname, Gname string
	// ModTime is the modification time; zero means Epoch.
	ModTime time.Time
	// Linkname is the target of a symlink or hard link.
	Linkname string
	// Content is the body of a regular file.
	Content []byte
	// Devmajor and Devminor number a character or block device.
	Devmajor, Devminor int64
	// Xattrs are extended attributes, written as SCHILY.xattr.NAME PAX
	// records the way Docker and containerd write them.
	Xattrs map[string]string
	// PAXRecords are extra raw PAX records (for example "path" to make a
	// header whose PAX name differs from its USTAR name).
	PAXRecords map[string]string
}

// File returns a regular file entry owned by root.
func File(name, content string, mode int64) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Mode: mode, Content: []byte(content)}
}

// Dir returns a directory entry owned by root.
func Dir(name string, mode int64) Entry {
	return Entry{Name: name, Type: tar.TypeDir, Mode: mode}
}

// Symlink returns a symbolic link from name to target.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
}

// Hardlink returns a hard link named name to the earlier member target.
func Hardlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeLink, Mode: 0o644, Linkname: target}
}

// Fifo returns a named pipe entry.
func Fifo(name string, mode int64) Entry {
	return Entry{Name: name, Type: tar.TypeFifo, Mode: mode}
}

// CharDev returns a character device entry.
func CharDev(name string, major, minor int64) Entry {
	return Entry{Name: name, Type: tar.TypeChar, Mode: 0o666, Devmajor: major, Devminor: minor}
}

// BlockDev returns a block device entry.
func BlockDev(name string, major, minor int64) Entry {
	return Entry{Name: name, Type: tar.TypeBlock, Mode: 0o660, Devmajor: major, Devminor: minor}
}

// Whiteout returns the OCI whiteout that deletes path from lower layers:
// an empty file named .wh.BASENAME next to it.
func Whiteout(path string) Entry {
	dir, base := splitPath(path)
	return File(dir+".wh."+base, "", 0o644)
}

// OpaqueWhiteout returns the OCI marker that hides everything lower layers
// put in dir: an empty file dir/.wh..wh..opq.
func OpaqueWhiteout(dir string) Entry {
	if dir != "" && dir[len(dir)-1] != '/' {
		dir += "/"
	}
	return File(dir+".wh..wh..opq", "", 0o644)
}

// splitPath splits p into its directory (with trailing slash, or empty)
// and its last element.
func splitPath(p string) (dir, base string) {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i+1], p[i+1:]
		}
	}
	return "", p
}

// header converts e to a tar header.
func (e Entry) header() *tar.Header {
	typ := e.Type
	if typ == 0 {
		typ = tar.TypeReg
	}
	mtime := e.ModTime
	if mtime.IsZero() {
		mtime = Epoch
	}
	h := &tar.Header{
		Typeflag: typ,
		Name:     e.Name,
		Linkname: e.Linkname,
		Mode:     e.Mode,
		Uid:      e.UID,
		Gid:      e.GID,
		Uname:    e.Uname,
		Gname:    e.Gname,
		ModTime:  mtime,
		Devmajor: e.Devmajor,
		Devminor: e.Devminor,
	}
	if typ == tar.TypeReg {
		h.Size = int64(len(e.Content))
	}
	if len(e.Xattrs)+len(e.PAXRecords) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs)+len(e.PAXRecords))
		for k, v := range e.Xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		maps.Copy(h.PAXRecords, e.PAXRecords)
		h.Format = tar.FormatPAX
	}
	return h
}

// Tar returns the uncompressed tar archive of entries, in order.
func Tar(entries ...Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(e.header()); err != nil {
			return nil, fmt.Errorf("tar header %q: %w", e.Name, err)
		}
		if len(e.Content) > 0 && (e.Type == 0 || e.Type == tar.TypeReg) {
			if _, err := tw.Write(e.Content); err != nil {
				return nil, fmt.Errorf("tar content %q: %w", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

// Compression is how a layer blob is compressed.
type Compression int

const (
	// Gzip gives application/vnd.oci.image.layer.v1.tar+gzip.
	Gzip Compression = iota
	// Zstd gives application/vnd.oci.image.layer.v1.tar+zstd.
	Zstd
	// None gives application/vnd.oci.image.layer.v1.tar.
	None
)

// String returns the compression's name.
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case None:
		return "none"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// MediaType returns the OCI layer media type for c.
func (c Compression) MediaType() types.MediaType {
	switch c {
	case Zstd:
		return types.OCILayerZStd
	case None:
		return types.OCIUncompressedLayer
	}
	return types.OCILayer
}

// Layer returns a gzip-compressed layer holding entries.
func Layer(entries ...Entry) (v1.Layer, error) {
	return CompressedLayer(Gzip, entries...)
}

// CompressedLayer returns a layer holding entries, compressed with c.
func CompressedLayer(c Compression, entries ...Entry) (v1.Layer, error) {
	tarball, err := Tar(entries...)
	if err != nil {
		return nil, err
	}
	return LayerFromTar(tarball, c)
}

// LayerFromTar returns a layer whose uncompressed content is exactly
// tarball, compressed with c. Use it for archives Tar cannot express, such
// as truncated or corrupt ones.
func LayerFromTar(tarball []byte, c Compression) (v1.Layer, error) {
	if c == None {
		// An uncompressed blob's digest is its diff ID, which is
		// exactly what a static layer reports.
		return static.NewLayer(tarball, types.OCIUncompressedLayer), nil
	}
	blob, err := compress(tarball, c)
	if err != nil {
		return nil, err
	}
	return layerFromBlob(blob, c)
}

// layerFromBlob wraps an already compressed blob. Compressing once up front,
// rather than letting tarball compress on every read, pins the blob bytes
// and so the digest.
func layerFromBlob(blob []byte, c Compression) (v1.Layer, error) {
	open := func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}
	opts := []tarball.LayerOption{tarball.WithMediaType(c.MediaType())}
	if c == Zstd {
		// Only silences tarball's media type mismatch warning: the
		// blob is detected as zstd by its magic number either way.
		opts = append(opts, tarball.WithCompression(compression.ZStd))
	}
	l, err := tarball.LayerFromOpener(open, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s layer: %w", c, err)
	}
	return l, nil
}

// compress compresses b with c at the default level.
func compress(b []byte, c Compression) ([]byte, error) {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch c {
	case Gzip:
		// The gzip header carries no name or time, so output depends
		// only on b.
		w = gzip.NewWriter(&buf)
	case Zstd:
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd writer: %w", err)
		}
		w = zw
	default:
		return nil, fmt.Errorf("compress: unknown compression %v", c)
	}
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("%s compress: %w", c, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("%s compress: %w", c, err)
	}
	return buf.Bytes(), nil
}

// sortedKeys returns m's keys in order, for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
