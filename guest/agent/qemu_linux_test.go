package agent

import (
	"github.com/devbox-dev/devbox/images/guest/guesttest"

	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"github.com/ulikunitz/xz"
	"golang.org/x/crypto/ssh"
)

// The tests below boot the devbox binary as /init of a real kernel under
// QEMU and talk to it as the host will: Hello, then SSH pinned to the host
// key, over virtio-serial ports.

const dataRoot = "/var/lib/devbox"

// testKernel returns the guest kernel to boot, or skips.
func testKernel(t *testing.T) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the QEMU tests boot an amd64 guest")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
	k := guesttest.Kernel(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox (busybox-static) to pack as the guest's shell")
	}
	return k
}

var (
	devboxOnce sync.Once
	devboxPath string
	devboxErr  error
)

// devboxBinary returns a static devbox binary built from this tree (or
// $DEVBOX_BIN).
func devboxBinary(t *testing.T) string {
	t.Helper()
	devboxOnce.Do(func() {
		if p := os.Getenv("DEVBOX_BIN"); p != "" {
			devboxPath = p
			return
		}
		dir, err := os.MkdirTemp("", "devbox-agent-test")
		if err != nil {
			devboxErr = err
			return
		}
		devboxPath = filepath.Join(dir, "devbox")
		cmd := exec.Command("go", "build", "-o", devboxPath, "github.com/devbox-dev/devbox/cmd/devbox")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			devboxErr = fmt.Errorf("build devbox: %v\n%s", err, out)
		}
	})
	if devboxErr != nil {
		t.Fatal(devboxErr)
	}
	return devboxPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if devboxPath != "" && os.Getenv("DEVBOX_BIN") == "" {
		os.RemoveAll(filepath.Dir(devboxPath))
	}
	os.Exit(code)
}

// baseImage is the guest's initramfs without the boot config: devbox as
// /init, busybox, and (withMke2fs) the host's mke2fs with its libraries.
func baseImage(t *testing.T, withMke2fs bool) []byte {
	t.Helper()
	var w cpioWriter
	for _, d := range []string{"bin", "sbin", "etc", "etc/devbox", "dev", "proc", "sys", "lib", "lib64",
		"lib/x86_64-linux-gnu", "usr", "usr/bin", "usr/sbin", "root", "tmp", "run", "var", "var/lib"} {
		w.dir(d)
	}
	w.charDev("dev/console", 5, 1)
	w.charDev("dev/null", 1, 3)
	add := func(dst, src string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		w.file(dst, 0o755, b)
	}
	add("init", devboxBinary(t))
	add("bin/busybox", "/bin/busybox")
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && applet != "init" && applet != "linuxrc" && applet != "mke2fs" {
			w.symlink("bin/"+applet, "busybox")
		}
	}
	if dir := os.Getenv("DEVBOX_TEST_MODULES"); dir != "" {
		addModules(t, &w, dir)
	}
	if withMke2fs {
		add("sbin/mke2fs", "/usr/sbin/mke2fs")
		out, err := exec.Command("ldd", "/usr/sbin/mke2fs").Output()
		if err != nil {
			t.Fatalf("ldd mke2fs: %v", err)
		}
		for _, lib := range regexp.MustCompile(`(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
			add(strings.TrimPrefix(lib[1], "/"), lib[1])
		}
	}
	return w.bytes()
}

// guestModules are what a kernel with virtio as modules (Debian's) needs.
var guestModules = []string{"virtio_mmio", "virtio_console", "virtio_blk", "virtio_net", "virtio_rng"}

// addModules packs, from dir (/lib/modules/VERSION of a kernel with its
// modules.dep), the modules guestModules need, every other one compressed
// with xz as newer Debian kernels ship them (as the kernel's
// "make modules_install" does: 1 MiB dictionary, CRC32), and /etc/devbox/modules.
func addModules(t *testing.T, w *cpioWriter, dir string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	deps, err := parseModulesDep(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	order, missing := deps.loadOrder(guestModules)
	if len(missing) > 0 {
		t.Logf("modules not in modules.dep (built in?): %v", missing)
	}
	root := "lib/modules/" + filepath.Base(dir)
	var dep strings.Builder
	dirs := map[string]bool{"lib/modules": true, root: true}
	files := map[string][]byte{}
	packed := map[string]string{} // module name to its path in the image
	for i, e := range order {
		b, err := os.ReadFile(filepath.Join(dir, e.path))
		if err != nil {
			t.Fatal(err)
		}
		name := e.path
		if i%2 == 1 {
			var z bytes.Buffer
			// As the kernel's build compresses them.
			zw, err := xz.WriterConfig{DictCap: 1 << 20, CheckSum: xz.CRC32}.NewWriter(&z)
			if err != nil {
				t.Fatal(err)
			}
			zw.Write(b)
			zw.Close()
			b, name = z.Bytes(), e.path+".xz"
		}
		packed[moduleName(e.path)] = name
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			dirs[root+"/"+d] = true
		}
		files[root+"/"+name] = b
		fmt.Fprintf(&dep, "%s:", name)
		for _, d := range e.deps {
			fmt.Fprintf(&dep, " %s", packed[d])
		}
		dep.WriteString("\n")
	}
	files[root+"/modules.dep"] = []byte(dep.String())
	files["etc/devbox/modules"] = []byte(strings.Join(guestModules, "\n") + "\n")
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		w.dir(d)
	}
	for _, f := range slices.Sorted(maps.Keys(files)) {
		w.file(f, 0o644, files[f])
	}
}

// vmOptions say how to boot a test VM.
type vmOptions struct {
	disk       string // data disk image (qcow2 or raw by extension); "" for none
	withMke2fs bool
	ports      int
	debug      bool
	spare      int               // more ports on QEMU's side than the agent serves
	files      map[string][]byte // more files in the boot archive
}

// testVM is a booted guest.
type testVM struct {
	t       *testing.T
	dir     string
	cmd     *exec.Cmd
	exited  chan error
	hostKey ssh.PublicKey
	client  ssh.Signer
	started time.Time
	serial  string
}

var (
	imagesMu sync.Mutex
	images   = map[bool][]byte{}
)

// bootVM starts QEMU on a fresh initramfs + boot config.
func bootVM(t *testing.T, o vmOptions) *testVM {
	t.Helper()
	kernel := testKernel(t)
	imagesMu.Lock()
	base, ok := images[o.withMke2fs]
	if !ok {
		base = baseImage(t, o.withMke2fs)
		images[o.withMke2fs] = base
	}
	imagesMu.Unlock()
	if o.ports == 0 {
		o.ports = 2
	}
	// Short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "vm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostPEM, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	_, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientSigner, _ := ssh.NewSignerFromKey(clientPriv)
	cfg := &bootconfig.Config{
		Hostname:       "devbox-test",
		AuthorizedKeys: []string{string(ssh.MarshalAuthorizedKey(clientSigner.PublicKey()))},
		Time:           time.Now().UnixNano(),
		Network:        bootconfig.QEMUUserNetwork(),
		DataRoot:       dataRoot,
		Transport:      bootconfig.TransportVirtioSerial,
		Ports:          o.ports,
	}
	if o.disk != "" {
		cfg.DataDisk = "/dev/vda"
	}
	js, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, 64)
	rand.Read(seed)
	var ov cpioWriter
	ov.dir("etc")
	ov.dir("etc/devbox")
	ov.file(strings.TrimPrefix(bootconfig.Path, "/"), 0o600, js)
	ov.file(strings.TrimPrefix(bootconfig.HostKeyPath, "/"), 0o600, pem.EncodeToMemory(hostPEM))
	ov.file(strings.TrimPrefix(bootconfig.SeedPath, "/"), 0o600, seed)
	for name, b := range o.files {
		ov.file(name, 0o755, b)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initrd, append(slices.Clip(base), ov.bytes()...), 0o600); err != nil {
		t.Fatal(err)
	}

	appendLine := "console=ttyS0 quiet cryptomgr.notests tsc_early_khz=2000000 tsc=reliable no_timer_check random.trust_cpu=on reboot=t panic=-1"
	if o.debug {
		appendLine += " devbox.debug=1"
	}
	vm := &testVM{t: t, dir: dir, exited: make(chan error, 1), hostKey: hostSigner.PublicKey(), client: clientSigner,
		serial: filepath.Join(dir, "serial.log")}
	args := []string{"-accel", "tcg", "-M", "microvm,rtc=on", "-cpu", "qemu64,+rdrand", "-m", "512", "-smp", "2",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", appendLine,
		"-serial", "file:" + vm.serial,
		"-device", "virtio-serial-device"}
	for i := 0; i < o.ports+o.spare; i++ {
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=a%d,path=%s,server=on,wait=off", i, vm.sock(i)),
			"-device", fmt.Sprintf("virtserialport,chardev=a%d,name=%s", i, bootconfig.PortName(i)))
	}
	if o.disk != "" {
		format := "raw"
		if strings.HasSuffix(o.disk, ".qcow2") {
			format = "qcow2"
		}
		args = append(args, "-drive", fmt.Sprintf("id=data,file=%s,format=%s,if=none,discard=unmap", o.disk, format),
			"-device", "virtio-blk-device,drive=data")
	}
	args = append(args, "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
		"-device", "virtio-rng-device")
	vm.cmd = exec.Command("qemu-system-x86_64", args...)
	var qemuOut bytes.Buffer
	vm.cmd.Stdout, vm.cmd.Stderr = &qemuOut, &qemuOut
	vm.started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() { vm.exited <- vm.cmd.Wait() }()
	t.Cleanup(func() {
		vm.cmd.Process.Kill()
		<-vm.exited
		if t.Failed() {
			b, _ := os.ReadFile(vm.serial)
			t.Logf("qemu output:\n%s\nserial console:\n%s", qemuOut.String(), b)
		}
	})
	return vm
}

func (vm *testVM) sock(i int) string { return filepath.Join(vm.dir, fmt.Sprintf("agent-%d.sock", i)) }

// connect opens port i's socket and reads Hello.
func (vm *testVM) connect(i int) net.Conn {
	vm.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var c net.Conn
	for {
		var err error
		c, err = net.Dial("unix", vm.sock(i))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			vm.t.Fatalf("connect to port %d: %v", i, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.SetDeadline(time.Now().Add(120 * time.Second))
	// As the host does: its hello, then skip what an earlier session may
	// have left in flight, up to the answer with our nonce, reading byte by
	// byte so as not to read into SSH.
	nonce := fmt.Sprintf("%x", time.Now().UnixNano())
	if _, err := c.Write([]byte(bootconfig.HostHelloLine(nonce))); err != nil {
		vm.t.Fatalf("port %d: write hello: %v", i, err)
	}
	want := []byte(bootconfig.HelloLine(nonce))
	var got []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(got, want) {
		if _, err := c.Read(b); err != nil {
			vm.t.Fatalf("port %d: read hello: %q, %v", i, got, err)
		}
		got = append(got, b[0])
	}
	if len(got) > len(want) {
		vm.t.Logf("port %d: skipped %q before the hello", i, got[:len(got)-len(want)])
	}
	c.SetDeadline(time.Time{})
	return c
}

// dial connects to port i and logs in.
func (vm *testVM) dial(i int) (*ssh.Client, net.Conn) {
	vm.t.Helper()
	c := vm.connect(i)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	sc, chans, reqs, err := ssh.NewClientConn(c, "devbox", &ssh.ClientConfig{
		User:            bootconfig.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(vm.client)},
		HostKeyCallback: ssh.FixedHostKey(vm.hostKey),
	})
	if err != nil {
		vm.t.Fatalf("ssh to port %d: %v", i, err)
	}
	c.SetDeadline(time.Time{})
	cl := ssh.NewClient(sc, chans, reqs)
	vm.t.Cleanup(func() { cl.Close() })
	return cl, c
}

// run runs cmd in the guest and returns its output; a failure fails the test.
func run(t *testing.T, cl *ssh.Client, cmd string) string {
	t.Helper()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if err := s.Run(cmd); err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", cmd, err, out.String(), errb.String())
	}
	return out.String()
}

// shutdown asks the agent to power off and waits for QEMU to exit.
func (vm *testVM) shutdown(cl *ssh.Client) {
	vm.t.Helper()
	ok, _, err := cl.SendRequest(bootconfig.RequestShutdown, true, nil)
	if err != nil || !ok {
		vm.t.Fatalf("shutdown request: ok=%v err=%v", ok, err)
	}
	cl.Close()
	select {
	case err := <-vm.exited:
		vm.exited <- err // for the cleanup
		if err != nil {
			vm.t.Fatalf("qemu: %v", err)
		}
		if b, _ := os.ReadFile(vm.serial); !bytes.Contains(b, []byte("Power down")) {
			vm.t.Logf("the kernel did not say it powered down (restarted instead?)")
		}
	case <-time.After(60 * time.Second):
		vm.t.Fatal("qemu still runs a minute after the shutdown request")
	}
}

// agentStatus reads the agent's status file.
func agentStatus(t *testing.T, cl *ssh.Client) Status {
	t.Helper()
	var st Status
	if err := json.Unmarshal([]byte(run(t, cl, "cat "+statusPath)), &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func newDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", p, "20G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	return p
}

// TestVM boots the agent, uses it as the host will, shuts it down, and
// boots it again on the same data disk.
func TestVM(t *testing.T) {
	testKernel(t)
	disk := newDisk(t)

	vm := bootVM(t, vmOptions{disk: disk, withMke2fs: true, debug: true})
	cl, raw := vm.dial(0)
	t.Logf("QEMU start to Hello and login: %v", time.Since(vm.started).Round(time.Millisecond))

	if out := run(t, cl, "uname -r"); strings.TrimSpace(out) == "" {
		t.Error("uname -r printed nothing")
	}
	if out := run(t, cl, "cat /proc/1/cmdline"); out != "/init\x00" {
		t.Errorf("PID 1 is %q, want /init", out)
	}
	st := agentStatus(t, cl)
	if st.DataDisk == nil || !st.DataDisk.Mounted || !st.DataDisk.Formatted {
		t.Errorf("first boot data disk: %+v, want formatted and mounted", st.DataDisk)
	}
	if out := run(t, cl, "grep ' "+dataRoot+" ' /proc/mounts"); !strings.Contains(out, "/dev/vda "+dataRoot+" ext4 ") {
		t.Errorf("data disk mount: %q", out)
	}
	run(t, cl, "echo persisted > "+dataRoot+"/marker && sync")
	if out := run(t, cl, "ip -4 addr show eth0; ip route; cat /etc/resolv.conf; hostname"); !strings.Contains(out, "10.0.2.15/24") ||
		!strings.Contains(out, "default via 10.0.2.2") || !strings.Contains(out, "nameserver 10.0.2.3") ||
		!strings.Contains(out, "devbox-test") {
		t.Errorf("network: %s", out)
	}
	if out := run(t, cl, "cat /sys/fs/cgroup/cgroup.subtree_control"); !strings.Contains(out, "memory") || !strings.Contains(out, "pids") {
		t.Errorf("cgroup controllers enabled: %q", out)
	}
	// What the container runtime does: pivot_root in a new mount namespace.
	if out := run(t, cl, "unshare -m sh -c 'mkdir -p /tmp/nr && mount -t tmpfs t /tmp/nr && mkdir /tmp/nr/old && cd /tmp/nr && pivot_root . old && echo pivoted'"); !strings.Contains(out, "pivoted") {
		t.Errorf("pivot_root: %q", out)
	}
	// Ptys for interactive sessions.
	s, _ := cl.NewSession()
	s.RequestPty("xterm", 24, 80, ssh.TerminalModes{})
	if out, err := s.Output("tty; stty size"); err != nil || !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "24 80") {
		t.Errorf("pty: %q, %v", out, err)
	}
	// Orphans get reaped.
	run(t, cl, "sh -c 'sleep 0.2 &'")
	time.Sleep(time.Second)
	if out := run(t, cl, "grep -l 'State:.*Z' /proc/[0-9]*/status || true"); strings.TrimSpace(out) != "" {
		t.Errorf("zombies left: %s", out)
	}
	// The clock follows set-time.
	want := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	if ok, _, err := cl.SendRequest(bootconfig.RequestSetTime, true, ssh.Marshal(bootconfig.SetTime{UnixNano: uint64(want.UnixNano())})); !ok || err != nil {
		t.Errorf("set-time: %v %v", ok, err)
	}
	if out := run(t, cl, "date -u +%Y-%m-%d"); strings.TrimSpace(out) != "2031-05-06" {
		t.Errorf("date after set-time: %q", out)
	}
	cl.SendRequest(bootconfig.RequestSetTime, true, ssh.Marshal(bootconfig.SetTime{UnixNano: uint64(time.Now().UnixNano())}))

	// Two ports at once: a command on port 1 finishes while one on port 0
	// still runs.
	cl1, _ := vm.dial(1)
	slow, _ := cl.NewSession()
	var slowOut bytes.Buffer
	slow.Stdout = &slowOut
	if err := slow.Start("sleep 3; echo slow"); err != nil {
		t.Fatal(err)
	}
	if out := run(t, cl1, "echo fast"); out != "fast\n" {
		t.Errorf("port 1: %q", out)
	}
	if err := slow.Wait(); err != nil || slowOut.String() != "slow\n" {
		t.Errorf("port 0 slow command: %q, %v", slowOut.String(), err)
	}

	// The host goes away mid-session; a new host connects on the same port.
	busy, _ := cl.NewSession()
	if err := busy.Start("sleep 100"); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	time.Sleep(100 * time.Millisecond)
	cl, raw = vm.dial(0)
	if out := run(t, cl, "echo again"); out != "again\n" {
		t.Errorf("after reconnect: %q", out)
	}
	// Hosts that hang up and come back at once, faster than the guest
	// can see the hang-up: the new hello ends the old session.
	for i := 0; i < 5; i++ {
		raw.Close()
		cl, raw = vm.dial(0)
		if out := run(t, cl, "echo quick"); out != "quick\n" {
			t.Errorf("quick reconnect %d: %q", i, out)
		}
	}
	raw.Close()
	for i := 0; i < 20; i++ { // hello, hang up, again: always hidden before
		vm.connect(0).Close()
	}
	cl, raw = vm.dial(0)
	if out := run(t, cl, "echo still"); out != "still\n" {
		t.Errorf("after rapid reconnects: %q", out)
	}
	time.Sleep(500 * time.Millisecond)
	if out := run(t, cl, "ps -o pid,comm | grep -w sleep || true"); strings.TrimSpace(out) != "" {
		t.Errorf("the hung-up session's program still runs: %s", out)
	}
	vm.shutdown(cl1)
	t.Logf("first boot, the agent on the console:\n%s", strings.Join(serialLines(vm.serial), "\n"))

	// Again, without mke2fs: the disk is mounted as it is, not formatted.
	vm = bootVM(t, vmOptions{disk: disk, debug: true})
	cl, _ = vm.dial(0)
	if out := run(t, cl, "cat "+dataRoot+"/marker"); out != "persisted\n" {
		t.Errorf("marker after reboot: %q", out)
	}
	st = agentStatus(t, cl)
	if st.DataDisk == nil || !st.DataDisk.Mounted || st.DataDisk.Formatted {
		t.Errorf("second boot data disk: %+v, want mounted as it was", st.DataDisk)
	}
	if out := run(t, cl, "df -T "+dataRoot+" 2>/dev/null || df "+dataRoot); !strings.Contains(out, "/dev/vda") {
		t.Errorf("df: %s", out)
	}
	vm.shutdown(cl)
	t.Logf("second boot, the agent on the console:\n%s", strings.Join(serialLines(vm.serial), "\n"))
}

// TestVMForeignDisk: a disk holding something else is not formatted, and
// the guest still comes up.
func TestVMForeignDisk(t *testing.T) {
	testKernel(t)
	disk := filepath.Join(t.TempDir(), "foreign.raw")
	junk := bytes.Repeat([]byte("not a file system "), 4096)
	if err := os.WriteFile(disk, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	vm := bootVM(t, vmOptions{disk: disk, withMke2fs: true})
	cl, _ := vm.dial(0)
	st := agentStatus(t, cl)
	if st.DataDisk == nil || st.DataDisk.Mounted || st.DataDisk.Formatted || st.DataDisk.Error == "" {
		t.Errorf("foreign disk: %+v, want left alone with an error", st.DataDisk)
	}
	// SIGTERM to PID 1 shuts down too.
	s, _ := cl.NewSession()
	s.Run("kill -TERM 1; sleep 30")
	select {
	case err := <-vm.exited:
		vm.exited <- err
		if err != nil {
			t.Fatalf("qemu: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("qemu still runs a minute after SIGTERM to the agent")
	}
	b, _ := os.ReadFile(disk)
	if !bytes.HasPrefix(b, junk) {
		t.Error("the foreign disk was written to")
	}
	serial, _ := os.ReadFile(vm.serial)
	if !bytes.Contains(serial, []byte("not formatting")) {
		t.Errorf("the console does not say why the disk is unused:\n%s", serial)
	}
}

// TestVMBootTiming boots five times and reports QEMU start to Hello, and
// where the agent's time went (DEVBOX_BOOT_TIMING=1; timings never fail).
func TestVMBootTiming(t *testing.T) {
	if os.Getenv("DEVBOX_BOOT_TIMING") == "" {
		t.Skip("set DEVBOX_BOOT_TIMING=1 to measure boot time")
	}
	testKernel(t)
	disk := newDisk(t)
	vm := bootVM(t, vmOptions{disk: disk, withMke2fs: true})
	cl, _ := vm.dial(0)
	vm.shutdown(cl)

	var hellos []time.Duration
	steps := map[string][]time.Duration{}
	for i := 0; i < 5; i++ {
		vm := bootVM(t, vmOptions{disk: disk, debug: i == 0})
		c := vm.connect(0)
		hellos = append(hellos, time.Since(vm.started))
		c.Close()
		cl, _ := vm.dial(0)
		st := agentStatus(t, cl)
		// The kernel's word on when it started /init, against the
		// agent's first clock reading: Go's start-up in between.
		var sec float64
		if _, err := fmt.Sscanf(run(t, cl, "dmesg | grep -m1 'Run /init' | tr -d '[]'"), "%f", &sec); err == nil {
			runInit := time.Duration(sec * float64(time.Second))
			steps["kernel to /init"] = append(steps["kernel to /init"], runInit)
			steps["go start-up"] = append(steps["go start-up"], st.KernelBoot-runInit)
		}
		steps["kernel"] = append(steps["kernel"], st.KernelBoot)
		steps["agent"] = append(steps["agent"], st.Ready)
		for _, s := range st.Steps {
			steps[s.Name] = append(steps[s.Name], s.Duration)
		}
		vm.shutdown(cl)
		if i == 0 {
			t.Logf("the agent on the console:\n%s", strings.Join(serialLines(vm.serial), "\n"))
		}
	}
	median := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2]
	}
	t.Logf("QEMU start to Hello: median %v of %v", median(hellos).Round(time.Millisecond), hellos)
	names := make([]string, 0, len(steps))
	for n := range steps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Logf("  %-12s median %v", n, median(steps[n]).Round(10*time.Microsecond))
	}
}

// serialLines returns the agent's lines on the console.
func serialLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), logPrefix) {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}
