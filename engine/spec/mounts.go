package spec

import (
	"fmt"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/devbox-dev/devbox/runtime"
)

// defaultMounts are Docker's, from the runtime's default spec (a fresh
// copy each call: callers change it).
func defaultMounts() []specs.Mount {
	return runtime.DefaultSpec().Mounts
}

// keepWritable are the default mounts --read-only leaves writable, as Docker
// does.
func keepWritable(dest string) bool {
	switch dest {
	case "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue":
		return true
	}
	return false
}

// buildMounts is Docker's mount list: the defaults not replaced by the
// user's mounts (a user /dev replaces every default under /dev), then the
// user's binds and tmpfs mounts with the container's /etc files, sorted so
// that a parent is mounted before what is mounted inside it.
func buildMounts(o Options, files Files) ([]specs.Mount, error) {
	var user []specs.Mount
	seen := make(map[string]string, len(o.Binds)+len(o.Tmpfs)) // destination -> flag that mounts it
	add := func(m specs.Mount, flag string) error {
		if prev, ok := seen[m.Destination]; ok {
			return fmt.Errorf("%s and %s: duplicate mount point %s; mount one thing at each container path", prev, flag, m.Destination)
		}
		seen[m.Destination] = flag
		user = append(user, m)
		return nil
	}
	for _, b := range o.Binds {
		m, err := bindMount(b)
		if err != nil {
			return nil, err
		}
		if err := add(m, bindFlag(b)); err != nil {
			return nil, err
		}
	}
	for _, t := range o.Tmpfs {
		m, err := tmpfsMount(t)
		if err != nil {
			return nil, err
		}
		if err := add(m, fmt.Sprintf("--tmpfs %q", t)); err != nil {
			return nil, err
		}
	}
	// The container's /etc files, unless the user mounts something there.
	for _, f := range []struct{ dest, src string }{
		{"/etc/resolv.conf", files.ResolvConf},
		{"/etc/hostname", files.Hostname},
		{"/etc/hosts", files.Hosts},
	} {
		if f.src == "" {
			continue
		}
		if _, ok := seen[f.dest]; ok {
			continue
		}
		if !path.IsAbs(f.src) {
			return nil, fmt.Errorf("container file %s: host path %q is not absolute; pass WriteFiles an absolute directory", f.dest, f.src)
		}
		seen[f.dest] = ""
		user = append(user, bindOf(f.src, f.dest, o.ReadOnly))
	}

	_, userDev := seen["/dev"]
	out := make([]specs.Mount, 0, 7+len(user))
	for _, m := range defaultMounts() {
		if _, ok := seen[m.Destination]; ok {
			continue
		}
		if userDev && strings.HasPrefix(m.Destination, "/dev/") {
			continue
		}
		if o.ReadOnly && !keepWritable(m.Destination) && !slices.Contains(m.Options, "ro") {
			m.Options = append(m.Options, "ro")
		}
		out = append(out, m)
	}
	slices.SortStableFunc(user, func(a, b specs.Mount) int {
		return depth(a.Destination) - depth(b.Destination)
	})
	return append(out, user...), nil
}

// depth is the number of components of a clean absolute path.
func depth(p string) int { return strings.Count(p, "/") }

func bindFlag(b Bind) string {
	s := "-v " + b.Source + ":" + b.Destination
	if b.ReadOnly {
		s += ":ro"
	}
	return s
}

// bindMount is one -v, a recursive private bind as Docker makes it.
func bindMount(b Bind) (specs.Mount, error) {
	flag := bindFlag(b)
	switch {
	case !path.IsAbs(b.Source):
		return specs.Mount{}, fmt.Errorf("%s: the host path %q must be absolute; use $PWD/%s", flag, b.Source, b.Source)
	case !path.IsAbs(b.Destination):
		return specs.Mount{}, fmt.Errorf("%s: the container path %q must be absolute, like /%s", flag, b.Destination, strings.TrimLeft(b.Destination, "./"))
	case path.Clean(b.Destination) == "/":
		return specs.Mount{}, fmt.Errorf("%s: cannot mount over the container's root; pick a directory like /mnt", flag)
	}
	return bindOf(path.Clean(b.Source), path.Clean(b.Destination), b.ReadOnly), nil
}

// bindOf is a recursive private bind, as Docker makes it: not nodev, the
// device cgroup (see deviceRules) decides which device nodes open.
func bindOf(src, dest string, ro bool) specs.Mount {
	opts := []string{"rbind", "rprivate"}
	if ro {
		opts = []string{"rbind", "ro", "rprivate"}
	}
	return specs.Mount{Destination: dest, Type: "bind", Source: src, Options: opts}
}

// tmpfsOption maps each mount flag --tmpfs takes to the setting it changes:
// of two options for one setting, the later wins (moby/sys/mount
// MergeTmpfsOptions).
var tmpfsOption = map[string]string{
	"ro": "ro", "rw": "ro",
	"suid": "suid", "nosuid": "suid",
	"dev": "dev", "nodev": "dev",
	"exec": "exec", "noexec": "exec",
	"sync": "sync", "async": "sync",
	"dirsync": "dirsync",
	"mand":    "mand", "nomand": "mand",
	"atime": "atime", "noatime": "atime",
	"diratime": "diratime", "nodiratime": "diratime",
	"relatime": "relatime", "norelatime": "relatime",
	"strictatime": "strictatime", "nostrictatime": "strictatime",
	"private": "propagation", "rprivate": "propagation",
	"shared": "propagation", "rshared": "propagation",
	"slave": "propagation", "rslave": "propagation",
	"unbindable": "propagation", "runbindable": "propagation",
}

// tmpfsData are the key=value options --tmpfs takes.
var tmpfsData = map[string]bool{"size": true, "mode": true, "uid": true, "gid": true, "nr_inodes": true, "nr_blocks": true, "mpol": true}

// tmpfsMount is one --tmpfs /path[:opts]: Docker's noexec, nosuid, nodev
// and private propagation, then the user's options, the later of two for
// one setting winning. Docker sets no size: the kernel's default is half
// of RAM.
func tmpfsMount(flag string) (specs.Mount, error) {
	dest, data, _ := strings.Cut(flag, ":")
	switch {
	case !path.IsAbs(dest):
		return specs.Mount{}, fmt.Errorf("--tmpfs %q: the container path must be absolute, like /%s", flag, strings.TrimLeft(dest, "./"))
	case path.Clean(dest) == "/":
		return specs.Mount{}, fmt.Errorf("--tmpfs %q: cannot mount over the container's root; pick a directory like /tmp", flag)
	}
	opts := []string{"noexec", "nosuid", "nodev", "rprivate"}
	if data != "" {
		opts = append(opts, strings.Split(data, ",")...)
	}
	// Keep the last option for each setting, in the order given.
	taken := make(map[string]bool, len(opts))
	merged := make([]string, 0, len(opts))
	for i := len(opts) - 1; i >= 0; i-- {
		o := opts[i]
		if o == "defaults" {
			continue
		}
		key, ok := tmpfsOption[o]
		if !ok {
			k, _, isData := strings.Cut(o, "=")
			if !isData || !tmpfsData[k] {
				return specs.Mount{}, fmt.Errorf("--tmpfs %q: unknown option %q; use size=, mode=, uid=, gid=, nr_inodes=, or flags like ro, exec, nosuid", flag, o)
			}
			key = k + "="
		}
		if !taken[key] {
			taken[key] = true
			merged = append(merged, o)
		}
	}
	slices.Reverse(merged)
	return specs.Mount{Destination: path.Clean(dest), Type: "tmpfs", Source: "tmpfs", Options: merged}, nil
}
