package runtime

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// initConfig is everything the init stage needs, worked out by Run from
// the Container and its spec: names looked up, options turned into flags
// and mistakes found before anything starts, so that the init stage only
// carries it out. It crosses to the init stage in a compact binary form
// (encode, decodeConfig): a fresh process takes over a millisecond to
// decode the spec as JSON, and microseconds for this.
type initConfig struct {
	// Root is where the rootfs is mounted, inside the container's mount
	// namespace.
	Root              string
	Layers            []string
	UpperDir, WorkDir string
	// RootPropagation is how "/" is remounted first (MS_REC|MS_PRIVATE).
	RootPropagation uintptr
	RootReadonly    bool
	Mounts          []mountPlan
	// PopulateDev is set unless /dev is a bind mount.
	PopulateDev bool
	Devices     []devicePlan
	// Terminal makes the init stage open a pty in the container's devpts,
	// send Run its master and make the slave its stdio (setupConsole),
	// ConsoleRows by ConsoleCols when they are set.
	Terminal                 bool
	ConsoleRows, ConsoleCols uint16
	MaskedPaths              []string
	ReadonlyPaths            []string
	// Sysctl holds key, value, key, value, ...: checked to be namespaced.
	Sysctl               []string
	Hostname, Domainname string
	SetOOMScoreAdj       bool
	OOMScoreAdj          int

	Args, Env      []string
	Cwd            string
	UID, GID       uint32
	AdditionalGids []uint32
	Umask          uint32
	Rlimits        []rlimitPlan
	Caps           capSets
	// LastCap is the highest capability the kernel knows.
	LastCap         uint
	NoNewPrivileges bool

	// SeccompProg is the filter Run compiled (seccompCompile), for
	// seccompLoad; SeccompSpec is the spec's section as JSON, for
	// seccompHook. At most one is set.
	SeccompProg  []unix.SockFilter
	SeccompFlags uint
	SeccompSpec  []byte

	// Wait tells the init stage to wait for goByte before the set-up that
	// depends on cgroups (see started).
	Wait bool
	// UnshareCgroup tells the init stage to create its cgroup namespace
	// itself, after goByte, so that it is rooted at the cgroups Started
	// put it in rather than the caller's.
	UnshareCgroup bool
	// CgroupNS is set when the container has a cgroup namespace of its
	// own: /sys/fs/cgroup gets fresh cgroup mounts rather than binds.
	CgroupNS bool
	// CgroupV2 tells that the host's /sys/fs/cgroup is cgroup2; otherwise
	// CgroupHierarchies lists what it has (see cgroupLayout).
	CgroupV2          bool
	CgroupHierarchies []string
}

// mountKind says how the init stage makes a mount.
type mountKind uint8

const (
	mountFS     mountKind = iota // mount(2) of a filesystem
	mountBind                    // bind of a host path, then a remount for flags
	mountCgroup                  // the cgroup filesystems
)

// mountPlan is one of the spec's mounts, its options parsed.
type mountPlan struct {
	Kind                     mountKind
	Source, Dest, Type, Data string
	Flags                    uintptr
	Propagation              []uintptr
	RecursiveRO              bool
}

// devicePlan is a device node to make in the container.
type devicePlan struct {
	Path         string
	Mode         uint32 // S_IFCHR etc. | permissions
	Major, Minor uint32
	UID, GID     uint32
}

// rlimitPlan is a resource limit to set.
type rlimitPlan struct {
	Resource   int
	Soft, Hard uint64
}

// capSets are the capability masks of a process.
type capSets struct {
	Bounding, Effective, Permitted, Inheritable, Ambient uint64
}

// nsJoin is a namespace joined by path.
type nsJoin struct {
	typ  specs.LinuxNamespaceType
	flag int
	path string
}

// nsFlags maps namespace types to clone flags.
var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// Seccomp hooks; see Run's documentation of seccomp. The lead points them
// at runtime/seccomp; all nil (or a spec without Linux.Seccomp) means no
// seccomp filter.
var (
	// seccompCompile and seccompLoad, when both set, split the work: Run
	// compiles the spec's section into a BPF program and its seccomp(2)
	// flags before the container starts (so a bad profile fails early and
	// the compiler never runs in the init stage), and the init stage
	// loads the program on the thread that execs.
	seccompCompile func(*specs.LinuxSeccomp) (prog []unix.SockFilter, flags uint, err error)
	seccompLoad    func(prog []unix.SockFilter, flags uint) error
	// seccompHook, when the pair above is not set, compiles and installs
	// the filter in the init stage, on the thread that execs.
	seccompHook func(*specs.LinuxSeccomp) error
)

var (
	lastCapOnce  sync.Once
	lastCapValue uint
)

// lastCap returns the highest capability the kernel knows:
// PR_CAPBSET_READ fails with EINVAL past it, whatever the bounding set.
func lastCap() uint {
	lastCapOnce.Do(func() {
		last := uint(63)
		for last > 0 {
			if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(last), 0, 0, 0); err == nil {
				break
			}
			last--
		}
		lastCapValue = last
	})
	return lastCapValue
}

// prepare checks c and works out the init stage's config, the clone flags
// and the namespaces to join.
func (c *Container) prepare() (*initConfig, uintptr, []nsJoin, error) {
	s := c.Spec
	switch {
	case s == nil:
		return nil, 0, nil, c.errorf("no spec")
	case s.Process == nil || len(s.Process.Args) == 0:
		return nil, 0, nil, c.errorf("spec has no process args")
	case s.Root == nil || s.Root.Path == "":
		return nil, 0, nil, c.errorf("spec has no root path")
	}
	if len(c.Layers) > 0 && c.UpperDir != "" && c.WorkDir == "" {
		return nil, 0, nil, c.errorf("UpperDir needs a WorkDir")
	}
	linux := s.Linux
	if linux == nil {
		linux = &specs.Linux{}
	}
	p := s.Process
	cfg := &initConfig{
		RootReadonly:    s.Root.Readonly,
		MaskedPaths:     linux.MaskedPaths,
		ReadonlyPaths:   linux.ReadonlyPaths,
		Hostname:        s.Hostname,
		Domainname:      s.Domainname,
		Args:            p.Args,
		Env:             p.Env,
		Cwd:             p.Cwd,
		UID:             p.User.UID,
		GID:             p.User.GID,
		AdditionalGids:  p.User.AdditionalGids,
		Umask:           0o022,
		LastCap:         lastCap(),
		NoNewPrivileges: p.NoNewPrivileges,
		Wait:            c.Started != nil,
		PopulateDev:     true,
		Terminal:        p.Terminal,
	}
	if p.Terminal && p.ConsoleSize != nil {
		if p.ConsoleSize.Height > 0xffff || p.ConsoleSize.Width > 0xffff {
			return nil, 0, nil, c.errorf("console size %dx%d is too large", p.ConsoleSize.Width, p.ConsoleSize.Height)
		}
		cfg.ConsoleRows, cfg.ConsoleCols = uint16(p.ConsoleSize.Height), uint16(p.ConsoleSize.Width)
	}
	var err error
	abs := func(what, p string) string {
		if err != nil || p == "" {
			return p
		}
		var a string
		if a, err = filepath.Abs(p); err != nil {
			err = c.errorf("%s: %w", what, err)
		}
		return a
	}
	cfg.Root = abs("root path", s.Root.Path)
	cfg.UpperDir = abs("upper dir", c.UpperDir)
	cfg.WorkDir = abs("work dir", c.WorkDir)
	for _, l := range c.Layers {
		cfg.Layers = append(cfg.Layers, abs("layer", l))
	}
	if err != nil {
		return nil, 0, nil, err
	}
	if cfg.Cwd == "" {
		cfg.Cwd = "/"
	}
	if !path.IsAbs(cfg.Cwd) {
		return nil, 0, nil, c.errorf("working directory %q is not an absolute path", cfg.Cwd)
	}
	if p.User.Umask != nil {
		cfg.Umask = *p.User.Umask
	}
	if p.OOMScoreAdj != nil {
		cfg.SetOOMScoreAdj, cfg.OOMScoreAdj = true, *p.OOMScoreAdj
	}

	switch linux.RootfsPropagation {
	case "", "private", "rprivate":
		cfg.RootPropagation = unix.MS_REC | unix.MS_PRIVATE
	case "slave", "rslave":
		cfg.RootPropagation = unix.MS_REC | unix.MS_SLAVE
	default:
		return nil, 0, nil, c.errorf("rootfs propagation %q is not supported", linux.RootfsPropagation)
	}

	flags, own, joins, err := c.cloneFlags(linux.Namespaces, c.Started != nil || c.pre != nil)
	if err != nil {
		return nil, 0, nil, err
	}
	cfg.CgroupNS = own[specs.CgroupNamespace]
	// The cgroup namespace is left to the init stage when it is to be
	// moved into cgroups after it starts (see cloneFlags).
	cfg.UnshareCgroup = cfg.CgroupNS && flags&unix.CLONE_NEWCGROUP == 0 && !slices.ContainsFunc(joins, func(j nsJoin) bool { return j.typ == specs.CgroupNamespace })
	if (cfg.Hostname != "" || cfg.Domainname != "") && !own[specs.UTSNamespace] {
		return nil, 0, nil, c.errorf("cannot set the hostname without a UTS namespace of the container's own")
	}
	for key, value := range linux.Sysctl {
		if err := checkSysctl(key, own); err != nil {
			return nil, 0, nil, c.errorf("sysctl %s: %w", key, err)
		}
		cfg.Sysctl = append(cfg.Sysctl, key, value)
	}

	for _, m := range s.Mounts {
		mp, err := planMount(m)
		if err != nil {
			return nil, 0, nil, c.errorf("mount %s: %w", m.Destination, err)
		}
		if path.Clean(m.Destination) == "/dev" && mp.Kind == mountBind {
			cfg.PopulateDev = false
		}
		if mp.Kind == mountCgroup && !cfg.CgroupV2 && cfg.CgroupHierarchies == nil {
			if cfg.CgroupV2, cfg.CgroupHierarchies, err = cgroupLayout(); err != nil {
				return nil, 0, nil, c.errorf("mount %s: %w", m.Destination, err)
			}
		}
		cfg.Mounts = append(cfg.Mounts, mp)
	}
	for _, d := range linux.Devices {
		dp, err := planDevice(d)
		if err != nil {
			return nil, 0, nil, c.errorf("device %s: %w", d.Path, err)
		}
		cfg.Devices = append(cfg.Devices, dp)
	}
	for _, rl := range p.Rlimits {
		res, ok := rlimitTypes[rl.Type]
		if !ok {
			return nil, 0, nil, c.errorf("unknown rlimit %q", rl.Type)
		}
		cfg.Rlimits = append(cfg.Rlimits, rlimitPlan{res, rl.Soft, rl.Hard})
	}
	if cfg.Caps, err = parseCaps(p.Capabilities); err != nil {
		return nil, 0, nil, c.errorf("capabilities: %w", err)
	}
	// Capabilities the kernel does not know are left out, as runc does.
	known := uint64(1)<<(cfg.LastCap+1) - 1
	for _, m := range []*uint64{&cfg.Caps.Bounding, &cfg.Caps.Effective, &cfg.Caps.Permitted, &cfg.Caps.Inheritable, &cfg.Caps.Ambient} {
		*m &= known
	}

	if linux.Seccomp != nil {
		switch {
		case seccompCompile != nil && seccompLoad != nil:
			if cfg.SeccompProg, cfg.SeccompFlags, err = seccompCompile(linux.Seccomp); err != nil {
				return nil, 0, nil, c.errorf("seccomp: %w", err)
			}
			if len(cfg.SeccompProg) == 0 {
				return nil, 0, nil, c.errorf("seccomp: empty program")
			}
		case seccompHook != nil:
			if cfg.SeccompSpec, err = json.Marshal(linux.Seccomp); err != nil {
				return nil, 0, nil, c.errorf("seccomp: %w", err)
			}
		}
	}
	return cfg, flags, joins, nil
}

// cloneFlags works out the clone flags for namespaces, which are new but
// for those given by path (joins), and which namespaces the container has
// of its own. The mount namespace is always new: everything is mounted in
// it. When moved is set, the process will be moved into its cgroups after
// it starts (by Started): then a new cgroup namespace is not a clone flag,
// the init stage creates it after the move, so that it is rooted there.
func (c *Container) cloneFlags(namespaces []specs.LinuxNamespace, moved bool) (uintptr, map[specs.LinuxNamespaceType]bool, []nsJoin, error) {
	flags := uintptr(unix.CLONE_NEWNS)
	own := map[specs.LinuxNamespaceType]bool{specs.MountNamespace: true}
	var joins []nsJoin
	for _, ns := range namespaces {
		flag, ok := nsFlags[ns.Type]
		switch {
		case !ok:
			return 0, nil, nil, c.errorf("unknown namespace type %q", ns.Type)
		case own[ns.Type] && ns.Type != specs.MountNamespace:
			return 0, nil, nil, c.errorf("namespace %q listed twice", ns.Type)
		case ns.Type == specs.UserNamespace || ns.Type == specs.TimeNamespace:
			return 0, nil, nil, c.errorf("%s namespaces are not supported", ns.Type)
		case ns.Path == "":
			flags |= uintptr(flag)
		case ns.Type == specs.MountNamespace:
			return 0, nil, nil, c.errorf("joining a mount namespace is not supported: each container gets its own")
		default:
			joins = append(joins, nsJoin{ns.Type, flag, ns.Path})
		}
		own[ns.Type] = true
	}
	if moved {
		flags &^= unix.CLONE_NEWCGROUP
	}
	return flags, own, joins, nil
}

// checkSysctl refuses a sysctl that is not namespaced, or whose namespace
// the container shares with the host: setting it would change the host.
func checkSysctl(key string, own map[specs.LinuxNamespaceType]bool) error {
	if strings.Contains(key, "/") || strings.Contains(key, "..") || key == "" {
		return errors.New("bad sysctl name")
	}
	var need specs.LinuxNamespaceType
	switch {
	case strings.HasPrefix(key, "net."):
		need = specs.NetworkNamespace
	case strings.HasPrefix(key, "fs.mqueue."), strings.HasPrefix(key, "kernel.msg"),
		strings.HasPrefix(key, "kernel.sem"), strings.HasPrefix(key, "kernel.shm"):
		need = specs.IPCNamespace
	case key == "kernel.hostname", key == "kernel.domainname":
		need = specs.UTSNamespace
	default:
		return errors.New("not a namespaced sysctl")
	}
	if !own[need] {
		return fmt.Errorf("needs a %s namespace of the container's own", need)
	}
	return nil
}

// planMount parses one of the spec's mounts.
func planMount(m specs.Mount) (mountPlan, error) {
	if !path.IsAbs(m.Destination) {
		return mountPlan{}, errors.New("destination is not an absolute path")
	}
	o := parseMountOptions(m.Options)
	mp := mountPlan{
		Kind:        mountFS,
		Source:      m.Source,
		Dest:        m.Destination,
		Type:        m.Type,
		Data:        strings.Join(o.data, ","),
		Flags:       o.flags,
		Propagation: o.propagation,
		RecursiveRO: o.recursiveRO,
	}
	switch {
	case m.Type == "bind" || o.flags&unix.MS_BIND != 0:
		mp.Kind = mountBind
		mp.Flags |= unix.MS_BIND
		if m.Source == "" {
			return mp, errors.New("bind mount without a source")
		}
	case m.Type == "cgroup":
		mp.Kind = mountCgroup
	case m.Type == "":
		return mp, errors.New("no filesystem type")
	}
	return mp, nil
}

// planDevice parses one of the spec's devices.
func planDevice(d specs.LinuxDevice) (devicePlan, error) {
	if !path.IsAbs(d.Path) {
		return devicePlan{}, errors.New("not an absolute path")
	}
	dp := devicePlan{Path: d.Path, Major: uint32(d.Major), Minor: uint32(d.Minor)}
	switch d.Type {
	case "c", "u":
		dp.Mode = unix.S_IFCHR
	case "b":
		dp.Mode = unix.S_IFBLK
	case "p":
		dp.Mode = unix.S_IFIFO
	default:
		return dp, fmt.Errorf("unknown device type %q", d.Type)
	}
	if d.FileMode != nil {
		dp.Mode |= uint32(d.FileMode.Perm())
	} else {
		dp.Mode |= 0o666
	}
	if d.UID != nil {
		dp.UID = *d.UID
	}
	if d.GID != nil {
		dp.GID = *d.GID
	}
	return dp, nil
}

// encoder writes the binary form of initConfig and initReport: unsigned
// varints, and strings and lists as a varint length then their items.
type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bool(v bool) {
	if v {
		e.uint(1)
	} else {
		e.uint(0)
	}
}
func (e *encoder) bytes(b []byte) { e.uint(uint64(len(b))); e.b = append(e.b, b...) }
func (e *encoder) str(s string)   { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) strs(ss []string) {
	e.uint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

// decoder reads what encoder wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

var errShortConfig = errors.New("truncated or corrupt config")

func (d *decoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errShortConfig
	}
	d.b = nil
}

func (d *decoder) bool() bool { return d.uint() != 0 }

// count reads a list length, each item taking at least one byte.
func (d *decoder) count() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if n == 0 {
		return nil
	}
	b := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return b
}

func (d *decoder) str() string {
	n := d.count()
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

// encode returns c's binary form behind a 4-byte little-endian length.
func (c *initConfig) encode() []byte {
	e := &encoder{b: make([]byte, 4, 2048)}
	e.str(c.Root)
	e.strs(c.Layers)
	e.str(c.UpperDir)
	e.str(c.WorkDir)
	e.uint(uint64(c.RootPropagation))
	e.bool(c.RootReadonly)
	e.uint(uint64(len(c.Mounts)))
	for _, m := range c.Mounts {
		e.uint(uint64(m.Kind))
		e.str(m.Source)
		e.str(m.Dest)
		e.str(m.Type)
		e.str(m.Data)
		e.uint(uint64(m.Flags))
		e.uint(uint64(len(m.Propagation)))
		for _, p := range m.Propagation {
			e.uint(uint64(p))
		}
		e.bool(m.RecursiveRO)
	}
	e.bool(c.PopulateDev)
	e.uint(uint64(len(c.Devices)))
	for _, d := range c.Devices {
		e.str(d.Path)
		e.uint(uint64(d.Mode))
		e.uint(uint64(d.Major))
		e.uint(uint64(d.Minor))
		e.uint(uint64(d.UID))
		e.uint(uint64(d.GID))
	}
	e.bool(c.Terminal)
	e.uint(uint64(c.ConsoleRows))
	e.uint(uint64(c.ConsoleCols))
	e.strs(c.MaskedPaths)
	e.strs(c.ReadonlyPaths)
	e.strs(c.Sysctl)
	e.str(c.Hostname)
	e.str(c.Domainname)
	e.bool(c.SetOOMScoreAdj)
	e.int(int64(c.OOMScoreAdj))
	e.strs(c.Args)
	e.strs(c.Env)
	e.str(c.Cwd)
	e.uint(uint64(c.UID))
	e.uint(uint64(c.GID))
	e.uint(uint64(len(c.AdditionalGids)))
	for _, g := range c.AdditionalGids {
		e.uint(uint64(g))
	}
	e.uint(uint64(c.Umask))
	e.uint(uint64(len(c.Rlimits)))
	for _, r := range c.Rlimits {
		e.uint(uint64(r.Resource))
		e.uint(r.Soft)
		e.uint(r.Hard)
	}
	e.uint(c.Caps.Bounding)
	e.uint(c.Caps.Effective)
	e.uint(c.Caps.Permitted)
	e.uint(c.Caps.Inheritable)
	e.uint(c.Caps.Ambient)
	e.uint(uint64(c.LastCap))
	e.bool(c.NoNewPrivileges)
	e.uint(uint64(len(c.SeccompProg)))
	for _, f := range c.SeccompProg {
		e.uint(uint64(f.Code))
		e.uint(uint64(f.Jt))
		e.uint(uint64(f.Jf))
		e.uint(uint64(f.K))
	}
	e.uint(uint64(c.SeccompFlags))
	e.bytes(c.SeccompSpec)
	e.bool(c.Wait)
	e.bool(c.UnshareCgroup)
	e.bool(c.CgroupNS)
	e.bool(c.CgroupV2)
	e.strs(c.CgroupHierarchies)
	binary.LittleEndian.PutUint32(e.b, uint32(len(e.b)-4))
	return e.b
}

// decodeConfig reads what encode wrote, without its length.
func decodeConfig(b []byte) (*initConfig, error) {
	d := &decoder{b: b}
	c := &initConfig{}
	c.Root = d.str()
	c.Layers = d.strs()
	c.UpperDir = d.str()
	c.WorkDir = d.str()
	c.RootPropagation = uintptr(d.uint())
	c.RootReadonly = d.bool()
	if n := d.count(); n > 0 {
		c.Mounts = make([]mountPlan, n)
		for i := range c.Mounts {
			m := &c.Mounts[i]
			m.Kind = mountKind(d.uint())
			m.Source = d.str()
			m.Dest = d.str()
			m.Type = d.str()
			m.Data = d.str()
			m.Flags = uintptr(d.uint())
			if n := d.count(); n > 0 {
				m.Propagation = make([]uintptr, n)
				for j := range m.Propagation {
					m.Propagation[j] = uintptr(d.uint())
				}
			}
			m.RecursiveRO = d.bool()
		}
	}
	c.PopulateDev = d.bool()
	if n := d.count(); n > 0 {
		c.Devices = make([]devicePlan, n)
		for i := range c.Devices {
			dv := &c.Devices[i]
			dv.Path = d.str()
			dv.Mode = uint32(d.uint())
			dv.Major = uint32(d.uint())
			dv.Minor = uint32(d.uint())
			dv.UID = uint32(d.uint())
			dv.GID = uint32(d.uint())
		}
	}
	c.Terminal = d.bool()
	c.ConsoleRows = uint16(d.uint())
	c.ConsoleCols = uint16(d.uint())
	c.MaskedPaths = d.strs()
	c.ReadonlyPaths = d.strs()
	c.Sysctl = d.strs()
	c.Hostname = d.str()
	c.Domainname = d.str()
	c.SetOOMScoreAdj = d.bool()
	c.OOMScoreAdj = int(d.int())
	c.Args = d.strs()
	c.Env = d.strs()
	c.Cwd = d.str()
	c.UID = uint32(d.uint())
	c.GID = uint32(d.uint())
	if n := d.count(); n > 0 {
		c.AdditionalGids = make([]uint32, n)
		for i := range c.AdditionalGids {
			c.AdditionalGids[i] = uint32(d.uint())
		}
	}
	c.Umask = uint32(d.uint())
	if n := d.count(); n > 0 {
		c.Rlimits = make([]rlimitPlan, n)
		for i := range c.Rlimits {
			c.Rlimits[i] = rlimitPlan{int(d.uint()), d.uint(), d.uint()}
		}
	}
	c.Caps.Bounding = d.uint()
	c.Caps.Effective = d.uint()
	c.Caps.Permitted = d.uint()
	c.Caps.Inheritable = d.uint()
	c.Caps.Ambient = d.uint()
	c.LastCap = uint(d.uint())
	c.NoNewPrivileges = d.bool()
	if n := d.count(); n > 0 {
		c.SeccompProg = make([]unix.SockFilter, n)
		for i := range c.SeccompProg {
			c.SeccompProg[i] = unix.SockFilter{Code: uint16(d.uint()), Jt: uint8(d.uint()), Jf: uint8(d.uint()), K: uint32(d.uint())}
		}
	}
	c.SeccompFlags = uint(d.uint())
	c.SeccompSpec = d.bytes()
	c.Wait = d.bool()
	c.UnshareCgroup = d.bool()
	c.CgroupNS = d.bool()
	c.CgroupV2 = d.bool()
	c.CgroupHierarchies = d.strs()
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes after config")
	}
	if d.err == nil && (c.Root == "" || len(c.Args) == 0) {
		d.err = errors.New("config has no root or args")
	}
	return c, d.err
}

// initReport is what the init stage sends back when it fails.
type initReport struct {
	// Step names what failed, such as "mount /proc".
	Step string
	Msg  string
	// Errno is the system error, so that errors.Is works on Run's error.
	Errno unix.Errno
	// Exec is set when the program could not be started: 127 or 126.
	Exec int
}

func (r *initReport) encode() []byte {
	e := &encoder{}
	e.str(r.Step)
	e.str(r.Msg)
	e.uint(uint64(r.Errno))
	e.uint(uint64(r.Exec))
	return e.b
}

func decodeReport(b []byte) (*initReport, error) {
	d := &decoder{b: b}
	r := &initReport{Step: d.str(), Msg: d.str(), Errno: unix.Errno(d.uint()), Exec: int(d.uint())}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes after report")
	}
	return r, d.err
}
