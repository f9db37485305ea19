package unpack

import (
	"archive/tar"
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzEntrySequences complements FuzzApply. Random bytes rarely make a tar
// header with a valid checksum, so FuzzApply mostly exercises archive/tar;
// here the input is decoded into a short sequence of well-formed entries
// over a handful of names ("..", whiteouts, symlinks to "/" and to the
// sentinel next to the layer), so the fuzzer spends its time on Apply's own
// logic: replacement, symlinks, hardlinks and whiteouts in every order. The
// invariant and the jail are FuzzApply's. Each input is also applied without
// writers, which must do exactly the same: the writers only overlap work,
// whatever order the entries come in.
func FuzzEntrySequences(f *testing.F) {
	requireRoot(f)
	f.Add([]byte{2, 0, 0, 7, 0, 0, 0, 0, 0, 0}) // symlink a -> /, then a file under it
	f.Add([]byte{3, 0, 1, 4, 0, 0, 0, 3, 4, 0})
	f.Add([]byte{1, 1, 0, 0, 0, 2, 3, 1, 0, 6, 0, 3, 2, 1, 0, 5, 5, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		layer, ok := decodeEntries(data)
		if !ok {
			t.Skip("does not encode a tar")
		}
		sandbox := newSandbox(t)
		before := sandbox.snapshot(t)
		res, err := applyJailed(sandbox.root, layer)
		if err != nil && !strings.HasPrefix(err.Error(), "layer of fuzz") {
			t.Errorf("error %q does not say which layer failed", err)
		}
		if after := sandbox.snapshot(t); !slicesEqual(after, before) {
			t.Fatalf("Apply changed the sandbox outside the layer dir (err %v):\nbefore %q\nafter  %q", err, before, after)
		}
		inline := newSandbox(t)
		ires, ierr := applyJailedWith(inline.root, layer, jailedTuning(inline.root, 0))
		got, want := applied{res: res, err: errString(err)}, applied{res: ires, err: errString(ierr)}
		if err == nil && ierr == nil {
			got.tree = describeTree(t, filepath.Join(sandbox.root, "layer"))
			want.tree = describeTree(t, filepath.Join(inline.root, "layer"))
		}
		compareApplied(t, "with writers", got, want)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// nameParts are the components fuzzed names are made of: ordinary names,
// the names next to the layer in the jail, dot-dots and whiteouts.
var nameParts = []string{"a", "b", "..", ".", ".wh.a", ".wh..wh..opq", "sentinel", "layer", ".wh.b", ".wh..wh.plnk", "victim", ""}

// linkTargets are symlink targets, and hardlink targets besides names.
var linkTargets = []string{"/", "/sentinel", "/sentinel/victim", "..", "../..", "a", "a/b", "/layer/a", "../sentinel", ""}

// decodeEntries turns fuzz bytes into a tar of up to 16 entries.
func decodeEntries(data []byte) ([]byte, bool) {
	d := byteReader{data: data}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n := 0; n < 16 && d.more(); n++ {
		hdr := tar.Header{Format: tar.FormatPAX, Mode: modes[d.next()%byte(len(modes))]}
		kind := d.next() % 7
		hdr.Name = d.name()
		switch kind {
		case 0:
			hdr.Typeflag = tar.TypeReg
		case 1:
			hdr.Typeflag = tar.TypeDir
		case 2:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = linkTargets[d.next()%byte(len(linkTargets))]
		case 3:
			hdr.Typeflag = tar.TypeLink
			if b := d.next(); b&1 == 0 {
				hdr.Linkname = linkTargets[b/2%byte(len(linkTargets))]
			} else {
				hdr.Linkname = d.name()
			}
		case 4:
			hdr.Typeflag = tar.TypeFifo
		case 5:
			hdr.Typeflag = tar.TypeChar
		case 6:
			hdr.Typeflag = tar.TypeReg
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.x": "1"}
		}
		body := ""
		if hdr.Typeflag == tar.TypeReg {
			body = strings.Repeat("x", int(d.next()%4))
			hdr.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return nil, false
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			return nil, false
		}
	}
	if err := tw.Close(); err != nil {
		return nil, false
	}
	return buf.Bytes(), true
}

var modes = []int64{0o644, 0o755, 0o4755, 0o1777, 0o000, 0o2750}

// byteReader hands out fuzz bytes, then zeros.
type byteReader struct {
	data []byte
	off  int
}

func (r *byteReader) more() bool { return r.off < len(r.data) }

func (r *byteReader) next() byte {
	if r.off >= len(r.data) {
		return 0
	}
	r.off++
	return r.data[r.off-1]
}

// name decodes a path of one to four components, maybe absolute.
func (r *byteReader) name() string {
	b := r.next()
	parts := make([]string, int(b%4)+1)
	for i := range parts {
		parts[i] = nameParts[r.next()%byte(len(nameParts))]
	}
	name := strings.Join(parts, "/")
	if b&4 != 0 {
		name = "/" + name
	}
	if b&8 != 0 {
		name += "/"
	}
	return name
}
