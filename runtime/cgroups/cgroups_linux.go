package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	pathpkg "path"
	"slices"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// How long Kill waits for the processes to leave, and Delete for the
// kernel to let go of the directories.
const (
	killTimeout   = 5 * time.Second
	deleteTimeout = 3 * time.Second
	freezeTimeout = 100 * time.Millisecond
)

// Cgroup is one container's cgroup: a directory of the same relative path
// in each hierarchy it uses. Its methods may be called from several
// goroutines.
type Cgroup struct {
	path string

	// unified is the cgroup2 directory, or "" when the host has no
	// cgroup2 hierarchy.
	unified string
	// v2 holds the controllers in force in unified.
	v2 ctrlMask
	// v1 is the cgroup v1 directory used for each controller, or "".
	v1 [numCtrl]string
	// v1Dirs lists the distinct v1 directories (co-mounted controllers
	// share one).
	v1Dirs []string

	mu      sync.Mutex
	fd      int  // O_PATH descriptor of unified, or -1
	fdTaken bool // FD handed the descriptor out

	// noKillFile makes Kill act as on a kernel without cgroup.kill
	// (before 5.14), for tests.
	noKillFile bool
}

// New creates the cgroup named by path, a clean relative path such as
// "devbox/<container-id>" that is taken from the root of every hierarchy
// used (missing parents are created and, on cgroup2, given the
// controllers the container needs in their cgroup.subtree_control), and
// applies the limits in res, which may be nil.
//
// Applied from res: Memory.Limit and Memory.Swap (memory+swap; left
// unset, swap is limited to the memory limit where the host accounts swap,
// so that a memory hog is OOM-killed rather than swapping), CPU.Quota,
// CPU.Period and CPU.Shares, Pids.Limit, and Devices; any other setting
// is rejected with an error wrapping [errors.ErrUnsupported] rather than
// silently dropped.
//
// Devices is applied in order to a deny-all start, as runc does: with the
// v1 devices controller where the host mounts one (hybrid hosts too), and
// otherwise by a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the
// cgroup2 directory, which decides the same way. A host with neither
// cannot enforce device rules: New fails rather than leave devices open.
// Without device rules, device access is not restricted.
//
// On v1 hierarchies New creates only what it needs: memory and pids
// always, cpu when res sets CPU limits, devices when res has device rules,
// and cpuacct and freezer when there is no cgroup2 to give CPU usage and
// freezing. An existing cgroup of the same path is reused. If New fails it
// removes what it created.
func New(path string, res *specs.LinuxResources) (*Cgroup, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if err := checkResources(res); err != nil {
		return nil, err
	}
	m, err := hostMounts()
	if err != nil {
		return nil, err
	}
	return create(m, path, res)
}

func create(m *mounts, path string, res *specs.LinuxResources) (_ *Cgroup, err error) {
	v1w, err := v1Writes(res)
	if err != nil {
		return nil, err
	}
	v2w, err := v2Writes(res)
	if err != nil {
		return nil, err
	}
	var devices *deviceState
	if res != nil && len(res.Devices) > 0 {
		rules, err := parseDeviceRules(res.Devices)
		if err != nil {
			return nil, err
		}
		if m.v1[ctrlDevices] == "" && m.unified == "" {
			return nil, errNoDeviceControl
		}
		s := foldDeviceRules(rules)
		devices = &s
	}
	c := &Cgroup{path: path, fd: -1}
	use := maskOf(ctrlMemory, ctrlPids)
	if wantsCPU(res) {
		use |= maskOf(ctrlCPU)
	}
	if devices != nil {
		use |= maskOf(ctrlDevices)
	}
	if m.unified == "" {
		use |= maskOf(ctrlCPUAcct, ctrlFreezer)
	}
	for ct := ctrl(0); ct < numCtrl; ct++ {
		if use.has(ct) && m.v1[ct] != "" {
			c.v1[ct] = m.v1[ct] + "/" + path
			if !slices.Contains(c.v1Dirs, c.v1[ct]) {
				c.v1Dirs = append(c.v1Dirs, c.v1[ct])
			}
		}
	}
	defer func() {
		if err != nil {
			c.Delete()
		}
	}()
	for _, d := range c.v1Dirs {
		if err := mkdirCgroup(d); err != nil {
			return nil, err
		}
	}
	var enableErr error
	if m.unified != "" {
		c.unified = m.unified + "/" + path
		if err := mkdirCgroup(c.unified); err != nil {
			return nil, err
		}
		if want := m.v2Want(); want != 0 {
			st := ensureSubtree(m.unified, path, want)
			c.v2, enableErr = st.have, st.err
		}
		if cloneIntoCgroup() {
			fd, err := openat(unix.AT_FDCWD, c.unified, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
			if err != nil {
				return nil, fmt.Errorf("cgroups: %w", &fs.PathError{Op: "open", Path: c.unified, Err: err})
			}
			c.fd = fd
		}
	}
	if devices != nil {
		// Before the container's process exists: it is created inside
		// the cgroup2 directory, and added to the v1 ones before it does
		// anything.
		if dir := c.v1[ctrlDevices]; dir != "" {
			err = applyDevicesV1(dir, *devices)
		} else {
			err = attachDeviceProgram(c.unified, *devices)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, w := range v1w {
		if dir := c.v1[w.ctrl]; dir != "" {
			if err := apply(-1, dir, w); err != nil {
				return nil, err
			}
		}
	}
	retried := false
	for _, w := range v2w {
		if c.v1[w.ctrl] != "" {
			continue
		}
		if !c.v2.has(w.ctrl) {
			return nil, unavailable(m, w.ctrl, enableErr)
		}
		err := apply(c.fd, c.unified, w)
		if errors.Is(err, unix.ENOENT) && !retried {
			// The parent may have been removed and made again since
			// this process enabled its controllers: check them afresh.
			retried = true
			forgetSubtree(m.unified, path)
			st := ensureSubtree(m.unified, path, m.v2Want())
			c.v2, enableErr = st.have, st.err
			if !c.v2.has(w.ctrl) {
				return nil, unavailable(m, w.ctrl, enableErr)
			}
			err = apply(c.fd, c.unified, w)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func apply(dirfd int, dir string, w write) error {
	err := writeFile(dirfd, dir, w.file, w.value)
	if err != nil && !(w.optional && errors.Is(err, unix.ENOENT)) {
		return fmt.Errorf("cgroups: %w", err)
	}
	return nil
}

func unavailable(m *mounts, ct ctrl, why error) error {
	l, _ := m.layout()
	msg := fmt.Sprintf("cgroups: a %s limit was asked for, but this host (cgroup layout %s) has no %s controller to enforce it", ct, l, ct)
	if why != nil {
		return fmt.Errorf("%s: %w", msg, why)
	}
	return errors.New(msg)
}

// ensureSubtree makes sure that the controllers in want reach the leaf
// path below the cgroup2 mount root: each ancestor from the root down
// must list them in cgroup.subtree_control. It returns the controllers
// the leaf gets. The answer is remembered per parent directory for the
// life of the process.
func ensureSubtree(root, leaf string, want ctrlMask) subtreeState {
	parent := pathpkg.Dir(leaf)
	key := root + "/" + parent
	host.Lock()
	st, ok := host.subtree[key]
	host.Unlock()
	if ok && st.have&want == want {
		return st
	}
	dirs := []string{root}
	if parent != "." {
		d := root
		for _, el := range strings.Split(parent, "/") {
			d += "/" + el
			dirs = append(dirs, d)
		}
	}
	st = subtreeState{have: want}
	permanent := true
	for _, d := range dirs {
		have, err := enableControllers(d, st.have)
		st.have = have
		if err != nil {
			st.err = err
			permanent = permanent && errors.Is(err, unix.ENOENT)
		}
	}
	if permanent {
		host.Lock()
		if host.subtree == nil {
			host.subtree = map[string]subtreeState{}
		}
		host.subtree[key] = st
		host.Unlock()
	}
	return st
}

func forgetSubtree(root, leaf string) {
	host.Lock()
	delete(host.subtree, root+"/"+pathpkg.Dir(leaf))
	host.Unlock()
}

// enableControllers enables want in dir's cgroup.subtree_control and
// returns those of want that are enabled there afterwards.
func enableControllers(dir string, want ctrlMask) (ctrlMask, error) {
	b, err := readFile(dir + "/cgroup.subtree_control")
	if err != nil {
		return 0, err
	}
	var have ctrlMask
	for _, f := range strings.Fields(string(b)) {
		for ct := ctrl(0); ct < numCtrl; ct++ {
			if f == ctrlNames[ct] {
				have |= 1 << ct
			}
		}
	}
	missing := want &^ have
	if missing == 0 {
		return want, nil
	}
	var all []string
	for ct := ctrl(0); ct < numCtrl; ct++ {
		if missing.has(ct) {
			all = append(all, "+"+ctrlNames[ct])
		}
	}
	if writeFile(-1, dir, "cgroup.subtree_control", strings.Join(all, " ")) == nil {
		return want, nil
	}
	// One of them failed: find out which. ENOENT means the controller is
	// not available here; EBUSY that processes live in dir.
	var firstErr error
	for ct := ctrl(0); ct < numCtrl; ct++ {
		if !missing.has(ct) {
			continue
		}
		if err := writeFile(-1, dir, "cgroup.subtree_control", "+"+ctrlNames[ct]); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		have |= 1 << ct
	}
	return have & want, firstErr
}

// Load reopens the cgroup of an existing container by the path it was
// created with, for example to clean up after a crashed devbox or to
// put a process run by `devbox exec` into it. It finds the directories
// that exist; if there are none, the error wraps [fs.ErrNotExist].
func Load(path string) (*Cgroup, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	m, err := hostMounts()
	if err != nil {
		return nil, err
	}
	return load(m, path)
}

func load(m *mounts, path string) (*Cgroup, error) {
	c := &Cgroup{path: path, fd: -1}
	for ct := ctrl(0); ct < numCtrl; ct++ {
		if m.v1[ct] == "" {
			continue
		}
		dir := m.v1[ct] + "/" + path
		if _, err := os.Stat(dir); err == nil {
			c.v1[ct] = dir
			if !slices.Contains(c.v1Dirs, dir) {
				c.v1Dirs = append(c.v1Dirs, dir)
			}
		}
	}
	if m.unified != "" {
		dir := m.unified + "/" + path
		if _, err := os.Stat(dir); err == nil {
			c.unified = dir
			c.v2 = m.v2Want()
			if cloneIntoCgroup() {
				if fd, err := openat(unix.AT_FDCWD, dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC); err == nil {
					c.fd = fd
				}
			}
		}
	}
	if c.unified == "" && len(c.v1Dirs) == 0 {
		return nil, fmt.Errorf("cgroups: no cgroup %q in any hierarchy: %w", path, fs.ErrNotExist)
	}
	return c, nil
}

func checkPath(p string) error {
	if p == "" || p[0] == '/' || pathpkg.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("cgroups: invalid cgroup path %q: want a clean relative path such as devbox/<id>", p)
	}
	return nil
}

// Path returns the cgroup's path relative to the hierarchies' roots, as
// given to [New] or [Load].
func (c *Cgroup) Path() string { return c.path }

// FD returns an O_PATH directory descriptor of the cgroup's cgroup2
// directory, for syscall.SysProcAttr's UseCgroupFD and CgroupFD: the
// child is then created inside the cgroup by clone3(CLONE_INTO_CGROUP)
// and is never outside it. On a hybrid host that directory has no
// controllers, but it tracks the container's processes (and lets Kill
// use cgroup.kill). FD returns -1 when there is no cgroup2 hierarchy, when
// the kernel predates CLONE_INTO_CGROUP (Linux 5.7), or after Close.
//
// Once FD has returned a descriptor, [Cgroup.Add] assumes it was used and
// leaves the cgroup2 hierarchy alone.
func (c *Cgroup) FD() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd >= 0 {
		c.fdTaken = true
	}
	return c.fd
}

// Close releases the descriptor FD returned. Call it once the child has
// been started. The cgroup itself stays.
func (c *Cgroup) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// Add moves process pid (all its threads) into every hierarchy that FD's
// clone-into cannot cover: all the v1 hierarchies in use, and cgroup2 too
// if FD never handed out a descriptor. The runtime calls it after the
// child is created and before the child execs the user's program, so that
// no user code runs outside the limits.
func (c *Cgroup) Add(pid int) error {
	s := itoa(int64(pid))
	for _, d := range c.v1Dirs {
		if err := writeFile(-1, d, "cgroup.procs", s); err != nil {
			return fmt.Errorf("cgroups: adding process %d: %w", pid, err)
		}
	}
	c.mu.Lock()
	taken := c.fdTaken
	c.mu.Unlock()
	if c.unified != "" && !taken {
		if err := writeFile(-1, c.unified, "cgroup.procs", s); err != nil {
			return fmt.Errorf("cgroups: adding process %d: %w", pid, err)
		}
	}
	return nil
}

// OOMKilled reports whether the kernel's OOM killer has killed a process
// in this cgroup: the oom_kill count of memory.events on cgroup2, or of
// memory.oom_control on v1 (Linux 4.13 or later). Without a memory
// controller, or on older kernels, the error wraps [errors.ErrUnsupported].
func (c *Cgroup) OOMKilled() (bool, error) {
	var file string
	switch {
	case c.v1[ctrlMemory] != "":
		file = c.v1[ctrlMemory] + "/memory.oom_control"
	case c.unified != "" && c.v2.has(ctrlMemory):
		file = c.unified + "/memory.events"
	default:
		return false, fmt.Errorf("cgroups: %s has no memory controller: %w", c.path, errors.ErrUnsupported)
	}
	b, err := readFile(file)
	if errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("cgroups: %w: %w", err, errors.ErrUnsupported)
	}
	if err != nil {
		return false, fmt.Errorf("cgroups: %w", err)
	}
	n, ok := keyValue(b, "oom_kill")
	if !ok {
		return false, fmt.Errorf("cgroups: %s has no oom_kill count (kernel older than 4.13?): %w", file, errors.ErrUnsupported)
	}
	return n > 0, nil
}

// Stats is a snapshot of a cgroup's resource use. A figure the host
// cannot give is zero.
type Stats struct {
	// MemoryCurrent is the memory charged to the cgroup now, in bytes
	// (page cache included, as docker stats' raw figure).
	MemoryCurrent uint64
	// MemoryPeak is the most memory ever charged to it, in bytes (needs
	// Linux 5.19 on cgroup2).
	MemoryPeak uint64
	// PidsCurrent is the number of tasks (threads) in it; killed
	// processes count until their parent reaps them.
	PidsCurrent uint64
	// CPUUsage is the CPU time its tasks have used, user and system.
	CPUUsage time.Duration
}

// Stats reads the cgroup's current resource use.
func (c *Cgroup) Stats() (*Stats, error) {
	var s Stats
	var errs []error
	get := func(dst *uint64, path string) {
		n, err := readUint(path)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
		*dst = n
	}
	switch {
	case c.v1[ctrlMemory] != "":
		get(&s.MemoryCurrent, c.v1[ctrlMemory]+"/memory.usage_in_bytes")
		get(&s.MemoryPeak, c.v1[ctrlMemory]+"/memory.max_usage_in_bytes")
	case c.unified != "":
		get(&s.MemoryCurrent, c.unified+"/memory.current")
		get(&s.MemoryPeak, c.unified+"/memory.peak")
	}
	switch {
	case c.v1[ctrlPids] != "":
		get(&s.PidsCurrent, c.v1[ctrlPids]+"/pids.current")
	case c.unified != "":
		get(&s.PidsCurrent, c.unified+"/pids.current")
	}
	switch {
	case c.v1[ctrlCPUAcct] != "":
		var ns uint64
		get(&ns, c.v1[ctrlCPUAcct]+"/cpuacct.usage")
		s.CPUUsage = time.Duration(ns)
	case c.unified != "":
		b, err := readFile(c.unified + "/cpu.stat")
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
		us, _ := keyValue(b, "usage_usec")
		s.CPUUsage = time.Duration(us) * time.Microsecond
	}
	if len(errs) > 0 {
		return &s, fmt.Errorf("cgroups: %w", errors.Join(errs...))
	}
	return &s, nil
}

// Kill sends SIGKILL to every process in the cgroup and waits (up to 5s)
// for them to leave it. On cgroup2 it writes cgroup.kill (Linux 5.14),
// which the kernel applies atomically, forks included; otherwise it
// freezes the cgroup (v1 freezer, or cgroup.freeze on cgroup2), signals
// each pid in cgroup.procs and thaws it, until no process is left.
func (c *Cgroup) Kill() error {
	cgKill := false
	if c.unified != "" && !c.noKillFile {
		err := writeFile(-1, c.unified, "cgroup.kill", "1")
		switch {
		case err == nil:
			cgKill = true
		case errors.Is(err, unix.ENOENT):
		default:
			return fmt.Errorf("cgroups: %w", err)
		}
	}
	deadline := time.Now().Add(killTimeout)
	wait := 200 * time.Microsecond
	for {
		pids, err := c.procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: processes %v are still in %s %s after SIGKILL", pids, c.path, killTimeout)
		}
		frozen := !cgKill && c.freeze(true) == nil
		if frozen {
			// The list taken before freezing may lack a child forked
			// since; now nothing moves.
			if pids, err = c.procs(); err != nil {
				c.freeze(false)
				return err
			}
		}
		for _, p := range pids {
			unix.Kill(p, unix.SIGKILL)
		}
		if frozen {
			if err := c.freeze(false); err != nil {
				return err
			}
		}
		time.Sleep(wait)
		wait = min(wait*2, 10*time.Millisecond)
	}
}

// procs lists the processes in all of the cgroup's directories.
func (c *Cgroup) procs() ([]int, error) {
	var pids []int
	var err error
	for _, d := range c.v1Dirs {
		if pids, err = readPids(pids, d+"/cgroup.procs"); err != nil {
			return nil, fmt.Errorf("cgroups: %w", err)
		}
	}
	if c.unified != "" {
		if pids, err = readPids(pids, c.unified+"/cgroup.procs"); err != nil {
			return nil, fmt.Errorf("cgroups: %w", err)
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// freeze freezes or thaws the cgroup, and when freezing waits briefly
// for the kernel to report it frozen.
func (c *Cgroup) freeze(on bool) error {
	var dir, file, value, doneFile, doneKey string
	switch {
	case c.v1[ctrlFreezer] != "":
		dir, file, value = c.v1[ctrlFreezer], "freezer.state", "THAWED"
		if on {
			value, doneFile = "FROZEN", dir+"/freezer.state"
		}
	case c.unified != "":
		dir, file, value = c.unified, "cgroup.freeze", "0"
		if on {
			value, doneFile, doneKey = "1", dir+"/cgroup.events", "frozen"
		}
	default:
		return errors.ErrUnsupported
	}
	if err := writeFile(-1, dir, file, value); err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	if doneFile == "" {
		return nil
	}
	deadline := time.Now().Add(freezeTimeout)
	for {
		b, err := readFile(doneFile)
		if err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
		if doneKey == "" && strings.TrimSpace(string(b)) == "FROZEN" {
			return nil
		}
		if n, ok := keyValue(b, doneKey); doneKey != "" && ok && n == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			// Kill goes on regardless: a racing fork is caught on the
			// next round.
			return nil
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// Delete removes the cgroup's directories from every hierarchy, retrying
// for a few seconds while the kernel reports them busy because killed
// processes are still exiting, and closes the descriptor FD returned. The
// parent directories (such as "devbox") stay, shared with other
// containers. Directories already gone are not an error.
func (c *Cgroup) Delete() error {
	c.Close()
	deadline := time.Now().Add(deleteTimeout)
	var errs []error
	for _, d := range c.v1Dirs {
		if err := rmdirCgroup(d, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	if c.unified != "" {
		if err := rmdirCgroup(c.unified, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
