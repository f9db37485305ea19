package runtime

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// rootfs is the container's root before pivot_root. Every path inside it
// is resolved with openat2(RESOLVE_IN_ROOT), so a symlink in the image
// (say /dev -> /etc) can never lead a mount, mkdir or mknod out onto the
// host.
type rootfs struct {
	path string
	fd   int // O_PATH
}

// fdPath names an open file for mount(2).
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// open opens rel, a path inside the rootfs, with O_CLOEXEC added.
func (r *rootfs) open(rel string, flags int) (int, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, how)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue // a concurrent rename or mount; try again
		}
		return fd, err
	}
}

// splitPath splits p (inside the rootfs) into its components, dropping
// empty ones and ".". It keeps "..": openat2 resolves it after any
// symlink before it, and RESOLVE_IN_ROOT stops it at the root.
func splitPath(p string) []string {
	var parts []string
	for _, part := range strings.Split(p, "/") {
		if part != "" && part != "." {
			parts = append(parts, part)
		}
	}
	return parts
}

// maxSymlinks bounds how many dangling symlinks mkdirAll follows.
const maxSymlinks = 40

// mkdirAll makes directory rel and its missing parents (mode 0755) and
// returns it open with O_PATH. A dangling symlink on the way gets its
// target made, inside the rootfs.
func (r *rootfs) mkdirAll(rel string) (int, error) {
	return r.mkdirAllDepth(rel, 0)
}

func (r *rootfs) mkdirAllDepth(rel string, depth int) (int, error) {
	fd, err := r.open(rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != unix.ENOENT {
		return fd, err
	}
	parts := splitPath(rel)
	parent, err := unix.Dup(r.fd)
	if err != nil {
		return -1, err
	}
	for i, name := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		fd, err := r.open(prefix, unix.O_PATH|unix.O_DIRECTORY)
		if err == unix.ENOENT {
			err = unix.Mkdirat(parent, name, 0o755)
			if err == unix.EEXIST {
				err = r.mkdirSymlinkTarget(parent, name, strings.Join(parts[:i], "/"), depth)
			}
			if err != nil {
				unix.Close(parent)
				return -1, fmt.Errorf("mkdir /%s: %w", prefix, err)
			}
			fd, err = r.open(prefix, unix.O_PATH|unix.O_DIRECTORY)
		}
		unix.Close(parent)
		if err != nil {
			return -1, fmt.Errorf("open /%s: %w", prefix, err)
		}
		parent = fd
	}
	return parent, nil
}

// mkdirSymlinkTarget makes the target of name in dir (at dirPath in the
// rootfs), which exists but cannot be opened: a dangling symlink.
func (r *rootfs) mkdirSymlinkTarget(dir int, name, dirPath string, depth int) error {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return unix.EEXIST // not a symlink after all
	}
	if depth >= maxSymlinks {
		return unix.ELOOP
	}
	target := string(buf[:n])
	if !strings.HasPrefix(target, "/") {
		target = dirPath + "/" + target
	}
	fd, err := r.mkdirAllDepth(target, depth+1)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// mkfile makes an empty file rel (for a file bind mount) and its missing
// parents, and returns it open with O_PATH.
func (r *rootfs) mkfile(rel string) (int, error) {
	fd, err := r.open(rel, unix.O_PATH)
	if err != unix.ENOENT {
		return fd, err
	}
	dir, base := path.Split(path.Clean("/" + rel))
	dfd, err := r.mkdirAll(dir)
	if err != nil {
		return -1, err
	}
	f, err := unix.Openat(dfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	unix.Close(dfd)
	if err != nil {
		return -1, fmt.Errorf("create %s: %w", rel, err)
	}
	unix.Close(f)
	return r.open(rel, unix.O_PATH)
}

// mountOptions is a parsed list of mount options.
type mountOptions struct {
	flags       uintptr   // MS_* flags to set
	propagation []uintptr // MS_PRIVATE etc., applied after mounting
	recursiveRO bool      // make every submount read-only too
	data        []string  // filesystem-specific options
}

var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"acl":           {false, unix.MS_POSIXACL},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"iversion":      {false, unix.MS_I_VERSION},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"mand":          {false, unix.MS_MANDLOCK},
	"noacl":         {true, unix.MS_POSIXACL},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"noiversion":    {true, unix.MS_I_VERSION},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

func parseMountOptions(options []string) mountOptions {
	var o mountOptions
	for _, opt := range options {
		if f, ok := mountFlags[opt]; ok {
			if f.clear {
				o.flags &^= f.flag
			} else {
				o.flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[opt]; ok {
			o.propagation = append(o.propagation, p)
			continue
		}
		if opt == "rro" {
			o.flags |= unix.MS_RDONLY
			o.recursiveRO = true
			continue
		}
		o.data = append(o.data, opt)
	}
	return o
}

// setupRootfs builds the container's root in its mount namespace and
// pivots into it. It calls started once everything that does not depend
// on the container's cgroups is mounted: the cgroup mounts, and any mount
// whose destination is above or below one, wait for it, in their order.
func setupRootfs(cfg *initConfig, started func() error) error {
	if err := unix.Mount("", "/", "", cfg.RootPropagation, ""); err != nil {
		return step("make mounts private", err)
	}
	if err := mountOverlay(cfg.Root, cfg.Layers, cfg.UpperDir, cfg.WorkDir); err != nil {
		return step("mount rootfs at "+cfg.Root, err)
	}
	fd, err := unix.Open(cfg.Root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return step("open rootfs", err)
	}
	r := &rootfs{path: cfg.Root, fd: fd}
	defer unix.Close(fd)

	var later []mountPlan
	for _, m := range cfg.Mounts {
		if m.Kind == mountCgroup || overlapsAny(m.Dest, later) {
			later = append(later, m)
			continue
		}
		if err := r.mount(m, cfg); err != nil {
			return step("mount "+m.Dest, err)
		}
	}
	devLater := overlapsAny("/dev", later)
	if cfg.PopulateDev && !devLater {
		if err := r.populateDev(); err != nil {
			return step("populate /dev", err)
		}
	}
	if err := started(); err != nil {
		return err
	}
	for _, m := range later {
		if err := r.mount(m, cfg); err != nil {
			return step("mount "+m.Dest, err)
		}
	}
	if cfg.PopulateDev && devLater {
		if err := r.populateDev(); err != nil {
			return step("populate /dev", err)
		}
	}
	for _, d := range cfg.Devices {
		if err := r.device(d); err != nil {
			return step("create device "+d.Path, err)
		}
	}
	if err := pivotRoot(cfg.Root); err != nil {
		return err
	}
	if cfg.Terminal {
		return setupConsole(cfg)
	}
	return nil
}

// overlapsAny tells whether dest is, contains or lies inside the
// destination of one of ms.
func overlapsAny(dest string, ms []mountPlan) bool {
	dest = path.Clean(dest)
	for _, m := range ms {
		d := path.Clean(m.Dest)
		if d == dest || d == "/" || dest == "/" || strings.HasPrefix(dest, d+"/") || strings.HasPrefix(d, dest+"/") {
			return true
		}
	}
	return false
}

// mountOverlay mounts the layers' overlay at root. Overlayfs wants the
// top-most lower layer first.
//
// Neither the rootfs nor /dev is nodev, as in Docker: a device node made
// in the container opens if the device cgroup (the caller's, from the
// spec's Linux.Resources.Devices) allows it, and only then. Containers
// keep CAP_MKNOD, so running one without that cgroup exposes the host's
// devices.
func mountOverlay(root string, layers []string, upper, work string) error {
	if len(layers) == 0 {
		// pivot_root needs a mount point.
		return unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, "")
	}
	if upper == "" {
		// Writes go to a tmpfs that dies with the mount namespace. It is
		// mounted at root itself, where the overlay then hides it.
		if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=755"); err != nil {
			return fmt.Errorf("tmpfs for the upper layer: %w", err)
		}
		upper, work = root+"/upper", root+"/work"
		for _, d := range []string{upper, work} {
			if err := unix.Mkdir(d, 0o755); err != nil {
				return fmt.Errorf("tmpfs for the upper layer: %w", err)
			}
		}
	}
	lowers := make([]string, len(layers))
	escape := false
	for i, l := range layers {
		lowers[len(layers)-1-i] = l
		escape = escape || strings.ContainsAny(l, ",:\\")
	}
	data := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	escape = escape || strings.ContainsAny(upper+work, ",:\\")
	if !escape && len(data) < os.Getpagesize()-1 {
		return unix.Mount("overlay", root, "overlay", 0, data)
	}
	// Too long for mount(2)'s one page of options, or in need of
	// escaping: give the layers one by one (Linux 6.8+).
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fs)
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fs, key, value); err != nil {
			return fmt.Errorf("overlay option %s=%s: %w", key, value, err)
		}
		return nil
	}
	if err := set("source", "overlay"); err != nil {
		return err
	}
	for _, l := range lowers {
		if err := set("lowerdir+", l); err != nil {
			return err
		}
	}
	if err := set("upperdir", upper); err != nil {
		return err
	}
	if err := set("workdir", work); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mnt)
	return unix.MoveMount(mnt, "", unix.AT_FDCWD, root, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// mount makes one of the spec's mounts.
func (r *rootfs) mount(m mountPlan, cfg *initConfig) error {
	switch m.Kind {
	case mountBind:
		return r.bind(m.Source, m.Dest, m)
	case mountCgroup:
		return r.mountCgroup(m, cfg)
	}
	fd, err := r.mkdirAll(m.Dest)
	if err != nil {
		return err
	}
	err = unix.Mount(m.Source, fdPath(fd), m.Type, m.Flags, m.Data)
	unix.Close(fd)
	if err == unix.EPERM && (m.Type == "sysfs" || m.Type == "mqueue") {
		// Without a network (ipc) namespace of the container's own, the
		// kernel may refuse a new sysfs (mqueue): show the host's, as
		// runc does.
		host := map[string]string{"sysfs": "/sys", "mqueue": "/dev/mqueue"}[m.Type]
		m.Flags |= unix.MS_BIND | unix.MS_REC
		return r.bind(host, m.Dest, m)
	}
	if err != nil {
		return err
	}
	return r.propagate(m.Dest, m.Propagation)
}

// propagate applies propagation flags to the mount at rel.
func (r *rootfs) propagate(rel string, propagation []uintptr) error {
	if len(propagation) == 0 {
		return nil
	}
	fd, err := r.open(rel, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, p := range propagation {
		if err := unix.Mount("", fdPath(fd), "", p, ""); err != nil {
			return fmt.Errorf("set propagation: %w", err)
		}
	}
	return nil
}

// bind bind-mounts the host's src at rel, then applies the other flags
// (read-only, nosuid, ...) with a remount, as the kernel ignores them on
// the bind itself.
func (r *rootfs) bind(src, rel string, o mountPlan) error {
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return fmt.Errorf("source %s: %w", src, err)
	}
	var fd int
	var err error
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		fd, err = r.mkdirAll(rel)
	} else {
		fd, err = r.mkfile(rel)
	}
	if err != nil {
		return err
	}
	err = unix.Mount(src, fdPath(fd), "", unix.MS_BIND|o.Flags&unix.MS_REC, "")
	unix.Close(fd)
	if err != nil {
		return err
	}
	if rest := o.Flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
		// Reopen: the old fd is the directory under the new mount.
		fd, err := r.open(rel, unix.O_PATH)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Mount("", fdPath(fd), "", unix.MS_BIND|unix.MS_REMOUNT|rest, ""); err != nil {
			return fmt.Errorf("remount: %w", err)
		}
		if rest&unix.MS_RDONLY != 0 && (o.RecursiveRO || o.Flags&unix.MS_REC != 0) {
			// Submounts too (Linux 5.12+); older kernels only get the top
			// mount read-only unless "rro" asked for more.
			attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
			err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr)
			if err != nil && (o.RecursiveRO || err != unix.ENOSYS) {
				return fmt.Errorf("make submounts read-only: %w", err)
			}
		}
	}
	return r.propagate(rel, o.Propagation)
}

// cgroupHierarchy is a cgroup filesystem the host has at /sys/fs/cgroup/NAME.
type cgroupHierarchy struct {
	name, fstype, options string
}

// mountCgroup mounts the cgroup filesystems at m.Dest. With a cgroup
// namespace, the container gets fresh mounts rooted at its own cgroups;
// without one, binds of its own cgroup directories. On a cgroup v1 or
// hybrid host, that is a tmpfs with one mount per hierarchy the host has
// at /sys/fs/cgroup.
func (r *rootfs) mountCgroup(m mountPlan, cfg *initConfig) error {
	sub := m
	sub.Flags |= unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	var own map[string]string
	if !cfg.CgroupNS {
		var err error
		if own, err = ownCgroups(); err != nil {
			return err
		}
	}
	if cfg.CgroupV2 {
		if !cfg.CgroupNS {
			sub.Flags |= unix.MS_BIND | unix.MS_REC
			return r.bind(path.Join("/sys/fs/cgroup", own[""]), m.Dest, sub)
		}
		fd, err := r.mkdirAll(m.Dest)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Mount("cgroup2", fdPath(fd), "cgroup2", sub.Flags, "")
	}

	fd, err := r.mkdirAll(m.Dest)
	if err != nil {
		return err
	}
	err = unix.Mount("tmpfs", fdPath(fd), "tmpfs", sub.Flags&^unix.MS_RDONLY, "mode=755")
	unix.Close(fd)
	if err != nil {
		return err
	}
	// The fresh tmpfs has no symlinks: plain names below it are safe.
	tmpfs, err := r.open(m.Dest, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(tmpfs)
	for i := 0; i+2 < len(cfg.CgroupHierarchies); i += 3 {
		h := cgroupHierarchy{cfg.CgroupHierarchies[i], cfg.CgroupHierarchies[i+1], cfg.CgroupHierarchies[i+2]}
		if !cfg.CgroupNS {
			b := sub
			b.Flags |= unix.MS_BIND | unix.MS_REC
			if err := r.bind(path.Join("/sys/fs/cgroup", h.name, own[h.key()]), path.Join(m.Dest, h.name), b); err != nil {
				return fmt.Errorf("%s: %w", h.name, err)
			}
			continue
		}
		if err := unix.Mkdirat(tmpfs, h.name, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", h.name, err)
		}
		if err := unix.Mount("cgroup", fdPath(tmpfs)+"/"+h.name, h.fstype, sub.Flags, h.options); err != nil {
			return fmt.Errorf("%s: %w", h.name, err)
		}
	}
	if sub.Flags&unix.MS_RDONLY != 0 {
		return unix.Mount("", fdPath(tmpfs), "", unix.MS_BIND|unix.MS_REMOUNT|sub.Flags, "")
	}
	return nil
}

// key is how /proc/self/cgroup names the hierarchy: its controllers, or
// "name=..." for a named one, or "" for cgroup2.
func (h cgroupHierarchy) key() string {
	if h.fstype == "cgroup2" {
		return ""
	}
	return h.options
}

// ownCgroups reads /proc/self/cgroup: hierarchy key -> this process's
// cgroup path in it.
func ownCgroups() (map[string]string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			own[parts[1]] = parts[2]
		}
	}
	return own, nil
}

var (
	cgroupLayoutOnce sync.Once
	cgroupLayoutV2   bool
	cgroupLayoutList []string
	cgroupLayoutErr  error
)

// cgroupLayout tells, once per process (the host's cgroup mounts are set
// at boot), whether /sys/fs/cgroup is cgroup2, and otherwise lists its
// hierarchies as name, fstype, options triples, for initConfig.
func cgroupLayout() (v2 bool, hierarchies []string, err error) {
	cgroupLayoutOnce.Do(func() {
		var st unix.Statfs_t
		if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
			cgroupLayoutErr = fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
			return
		}
		if st.Type == unix.CGROUP2_SUPER_MAGIC {
			cgroupLayoutV2 = true
			return
		}
		hs, err := hostCgroupHierarchies()
		if err != nil {
			cgroupLayoutErr = fmt.Errorf("cgroup hierarchies: %w", err)
			return
		}
		for _, h := range hs {
			cgroupLayoutList = append(cgroupLayoutList, h.name, h.fstype, h.options)
		}
	})
	return cgroupLayoutV2, cgroupLayoutList, cgroupLayoutErr
}

// hostCgroupHierarchies lists the cgroup filesystems mounted at
// /sys/fs/cgroup/NAME, with the controllers of each as mount options.
func hostCgroupHierarchies() ([]cgroupHierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var hs []cgroupHierarchy
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		mp, fstype := fields[4], fields[sep+1]
		name, ok := strings.CutPrefix(mp, "/sys/fs/cgroup/")
		if !ok || strings.Contains(name, "/") || (fstype != "cgroup" && fstype != "cgroup2") {
			continue
		}
		h := cgroupHierarchy{name: name, fstype: fstype}
		if fstype == "cgroup" {
			var opts []string
			for _, opt := range strings.Split(fields[sep+3], ",") {
				if cgroupV1Controller(opt) {
					opts = append(opts, opt)
				}
			}
			h.options = strings.Join(opts, ",")
		}
		hs = append(hs, h)
	}
	return hs, sc.Err()
}

// cgroupV1Controller tells whether a cgroup v1 super option names the
// hierarchy (a controller or name=) rather than a mount flag.
func cgroupV1Controller(opt string) bool {
	if strings.HasPrefix(opt, "name=") {
		return true
	}
	switch opt {
	case "rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "none":
		return false
	}
	return !strings.HasPrefix(opt, "release_agent=")
}

// stdDevice is a device node every container gets in /dev.
type stdDevice struct {
	name         string
	major, minor uint32
}

var defaultDevices = []stdDevice{
	{"null", 1, 3},
	{"zero", 1, 5},
	{"full", 1, 7},
	{"random", 1, 8},
	{"urandom", 1, 9},
	{"tty", 5, 0},
}

var defaultDevLinks = [][2]string{
	{"ptmx", "pts/ptmx"},
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
}

// populateDev makes the default device nodes and links in /dev.
func (r *rootfs) populateDev() error {
	dfd, err := r.mkdirAll("dev")
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	nodev, err := isNodev(dfd)
	if err != nil {
		return err
	}
	for _, d := range defaultDevices {
		err := r.mknod(dfd, "dev/"+d.name, d.name, unix.S_IFCHR|0o666, d.major, d.minor, 0, 0, "/dev/"+d.name, nodev)
		if err != nil {
			return err
		}
	}
	for _, l := range defaultDevLinks {
		if err := unix.Symlinkat(l[1], dfd, l[0]); err != nil && err != unix.EEXIST {
			return fmt.Errorf("symlink /dev/%s: %w", l[0], err)
		}
	}
	return nil
}

// isNodev tells whether the mount holding the open directory dfd is nodev.
func isNodev(dfd int) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(dfd, &st); err != nil {
		return false, err
	}
	return st.Flags&unix.ST_NODEV != 0, nil
}

// bindDevice puts the host's device node hostPath at rel: on a nodev
// mount, a bind of a node is a mount of its own, without that flag.
func (r *rootfs) bindDevice(rel, hostPath string) error {
	fd, err := r.mkfile(rel)
	if err != nil {
		return fmt.Errorf("device /%s: %w", rel, err)
	}
	defer unix.Close(fd)
	if err := unix.Mount(hostPath, fdPath(fd), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("device /%s: bind %s: %w", rel, hostPath, err)
	}
	return nil
}

// mknod makes the device node rel (named name in dfd), as runc does. On a
// nodev mount (a user's /dev, say) a node would not open: there the
// host's node at the same path, if it is that very device, is bound in
// instead.
func (r *rootfs) mknod(dfd int, rel, name string, mode, major, minor uint32, uid, gid int, hostPath string, nodev bool) error {
	if nodev {
		var st unix.Stat_t
		if unix.Stat(hostPath, &st) == nil && st.Mode&unix.S_IFMT == mode&unix.S_IFMT && st.Rdev == unix.Mkdev(major, minor) {
			return r.bindDevice(rel, hostPath)
		}
	}
	err := unix.Mknodat(dfd, name, mode, int(unix.Mkdev(major, minor)))
	if err == unix.EEXIST {
		return nil // the image has one already
	}
	if err != nil {
		return fmt.Errorf("mknod /%s: %w", rel, err)
	}
	if uid != 0 || gid != 0 {
		if err := unix.Fchownat(dfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown /%s: %w", rel, err)
		}
	}
	return nil
}

// device makes one of the spec's devices.
func (r *rootfs) device(d devicePlan) error {
	dir, name := path.Split(path.Clean(d.Path))
	dfd, err := r.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	nodev, err := isNodev(dfd)
	if err != nil {
		return err
	}
	// A node the image already has at that path is replaced.
	if err := unix.Unlinkat(dfd, name, 0); err != nil && err != unix.ENOENT {
		return err
	}
	return r.mknod(dfd, strings.TrimPrefix(path.Clean(d.Path), "/"), name, d.Mode, d.Major, d.Minor, int(d.UID), int(d.GID), d.Path, nodev)
}

// pivotRoot makes root the process's root and detaches the old one, with
// pivot_root(".", "."), which needs no directory for the old root (so
// nothing is written into the rootfs and a read-only one works).
func pivotRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return step("chdir to rootfs", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return step("pivot_root", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return step("detach old root", err)
	}
	return step("chdir to /", unix.Chdir("/"))
}

// maskPath hides p: a read-only empty tmpfs over a directory, /dev/null
// over a file. A missing p needs no mask.
func maskPath(p string) error {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=755")
	}
	return unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
}

// readonlyPath makes p (and what is mounted below it) read-only. A missing
// p is skipped.
func readonlyPath(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	return remountReadonly(p)
}

// remountReadonly remounts the mount at p read-only, keeping its other
// flags.
func remountReadonly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range [...]struct{ st, ms uintptr }{
		{unix.ST_NOSUID, unix.MS_NOSUID},
		{unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_SYNCHRONOUS, unix.MS_SYNCHRONOUS},
		{unix.ST_MANDLOCK, unix.MS_MANDLOCK},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	return unix.Mount("", p, "", flags, "")
}
