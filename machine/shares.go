package machine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"github.com/devbox-dev/devbox/hypervisor"
)

// Share is a host directory shared into the machine's VM at the same
// path, so host paths (a bind mount's source, a working directory) mean
// the same files in the guest.
type Share struct {
	// Path is the host directory: absolute, symlinks resolved.
	Path string `json:"path"`
	// ReadOnly shares refuse writes from the guest.
	ReadOnly bool `json:"readOnly,omitempty"`
	// Type is how a running VM shares it (9p, virtiofs); set in Status
	// only.
	Type string `json:"type,omitempty"`
}

// String is the share as `devbox up --share` takes it.
func (s Share) String() string {
	if s.ReadOnly {
		return s.Path + ":ro"
	}
	return s.Path
}

// ParseShare parses a --share value, DIR or DIR:ro (DIR:rw is DIR). DIR
// must be an existing directory; it is made absolute and its symlinks are
// resolved, as the guest mounts it at the path the host resolves to.
func ParseShare(v string) (Share, error) {
	var s Share
	dir := v
	switch {
	case strings.HasSuffix(v, ":ro"):
		dir, s.ReadOnly = strings.TrimSuffix(v, ":ro"), true
	case strings.HasSuffix(v, ":rw"):
		dir = strings.TrimSuffix(v, ":rw")
	}
	if dir == "" {
		return s, fmt.Errorf("share %q: no directory (DIR or DIR:ro)", v)
	}
	p, err := resolveDir(dir)
	if err != nil {
		return s, fmt.Errorf("share %s: %w", dir, err)
	}
	s.Path = p
	return s, nil
}

// resolveDir makes dir absolute with its symlinks resolved, and checks it
// is a directory.
func resolveDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	p, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", errors.New("no such directory")
	}
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", errors.New("not a directory")
	}
	if p == "/" || p == filepath.VolumeName(p)+string(filepath.Separator) {
		return "", errors.New("the root directory cannot be shared: the guest needs its own")
	}
	return p, nil
}

// defaultShares are a new machine's shares: the user's home directory,
// writable, so `devbox run -v $PWD:/src` works from anywhere under it.
func defaultShares() []Share {
	home, err := os.UserHomeDir()
	if err != nil {
		return []Share{}
	}
	p, err := resolveDir(home)
	if err != nil {
		return []Share{}
	}
	return []Share{{Path: p}}
}

// Shares returns the machine's shared host directories (absolute, symlinks
// resolved), as recorded in machine.json.
func (m *Machine) Shares() []Share {
	return append([]Share(nil), m.Config.Shares...)
}

// CheckShared returns nil when the host path p (absolute; symlinks are
// resolved here) lies inside one of the machine's shares, and otherwise a
// one-line error naming p, the shared directories, and how to share more
// (devbox up --share DIR). A path that does not exist yet is judged by its
// nearest existing parent.
func (m *Machine) CheckShared(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s is not an absolute path", p)
	}
	rp := resolveExisting(filepath.Clean(p))
	for _, s := range m.Config.Shares {
		if within(rp, s.Path) {
			return nil
		}
	}
	shared := "none"
	if len(m.Config.Shares) > 0 {
		var names []string
		for _, s := range m.Config.Shares {
			n := s.Path
			if s.ReadOnly {
				n += " (read-only)"
			}
			names = append(names, n)
		}
		shared = strings.Join(names, ", ")
	}
	shown := p
	if rp != p {
		shown = p + " (" + rp + ")"
	}
	return fmt.Errorf("%s is not shared with machine %s's VM (shared: %s): share it with devbox down, then devbox up --share DIR", shown, m.Name, shared)
}

// resolveExisting resolves the symlinks of p's longest existing prefix and
// appends the rest as is.
func resolveExisting(p string) string {
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// within says whether p is dir or lies beneath it.
func within(p, dir string) bool {
	if p == dir {
		return true
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// mergeShares adds or updates shares (a path given again takes its new
// read-only flag) and removes unshare (paths, resolved as given to
// --share); it says whether anything changed.
func mergeShares(have []Share, add []Share, unshare []string) ([]Share, bool, error) {
	out := append([]Share{}, have...)
	changed := false
	for _, a := range add {
		found := false
		for i := range out {
			if out[i].Path == a.Path {
				found = true
				if out[i].ReadOnly != a.ReadOnly {
					out[i].ReadOnly, changed = a.ReadOnly, true
				}
			}
		}
		if !found {
			out, changed = append(out, Share{Path: a.Path, ReadOnly: a.ReadOnly}), true
		}
	}
	for _, u := range unshare {
		p := u
		if abs, err := filepath.Abs(u); err == nil {
			p = resolveExisting(abs)
		}
		n := len(out)
		for i := 0; i < len(out); i++ {
			if out[i].Path == p || out[i].Path == filepath.Clean(u) {
				out = append(out[:i], out[i+1:]...)
				i--
			}
		}
		if len(out) == n {
			return nil, false, fmt.Errorf("--unshare %s: not shared (shared: %s)", u, sharesList(have))
		}
		changed = true
	}
	return out, changed, nil
}

func sharesList(ss []Share) string {
	if len(ss) == 0 {
		return "none"
	}
	var names []string
	for _, s := range ss {
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}

// bootShares checks that every share's directory still exists and says
// how each is shared: the driver's best type, except that a read-only
// share goes by 9p where offered, since QEMU's C virtiofsd cannot refuse
// writes on the host and 9p's server can.
func (m *Machine) bootShares(caps hypervisor.Capabilities) ([]hypervisor.Share, []bootconfig.Share, error) {
	if len(m.Config.Shares) > 0 && len(caps.ShareTypes) == 0 {
		return nil, nil, fmt.Errorf("machine %s: the %s driver cannot share directories", m.Name, m.Config.Driver)
	}
	var hs []hypervisor.Share
	var bs []bootconfig.Share
	for i, s := range m.Config.Shares {
		fi, err := os.Stat(s.Path)
		if err != nil || !fi.IsDir() {
			return nil, nil, fmt.Errorf("machine %s: shared directory %s no longer exists: create it, or stop sharing it with devbox up --unshare %s", m.Name, s.Path, s.Path)
		}
		typ := caps.ShareTypes[0]
		if s.ReadOnly && typ == bootconfig.ShareTypeVirtiofs {
			for _, t := range caps.ShareTypes {
				if t == bootconfig.ShareType9P {
					typ = t
				}
			}
		}
		tag := fmt.Sprintf("devbox%d", i)
		hs = append(hs, hypervisor.Share{Tag: tag, HostPath: s.Path, ReadOnly: s.ReadOnly, Type: typ})
		bs = append(bs, bootconfig.Share{Tag: tag, Path: filepath.ToSlash(s.Path), Type: typ, ReadOnly: s.ReadOnly})
	}
	return hs, bs, nil
}
