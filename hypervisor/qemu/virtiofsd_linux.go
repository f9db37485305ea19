package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/devbox-dev/devbox/hypervisor"
)

// virtiofsdPaths are where distributions put virtiofsd: Debian's QEMU
// package ships the C one in /usr/lib/qemu, Fedora and newer Debian the
// Rust one in /usr/libexec.
var virtiofsdPaths = []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"}

// virtiofsdCache is virtiofsd's cache mode. "none" makes the guest ask the
// host on every open and lookup, so an edit on the host is seen in the
// guest at once, as with 9p's cache=mmap; "auto" would let the guest
// trust its cache for a second.
const virtiofsdCache = "none"

// findVirtiofsd returns a virtiofsd this driver can run, or why there is
// none. Only QEMU's C virtiofsd (up to QEMU 7.2) is driven here; it runs as
// root only: it sandboxes itself in new namespaces and writes its pid file
// in /var/run/virtiofsd, both refused to other users.
func findVirtiofsd() (string, error) {
	path, err := virtiofsdPath()
	if err != nil {
		return "", err
	}
	help, _ := exec.Command(path, "--help").CombinedOutput()
	if bytes.Contains(help, []byte("--shared-dir")) {
		return "", fmt.Errorf("%s is the Rust virtiofsd, which devbox does not drive yet", path)
	}
	if !bytes.Contains(help, []byte("-o source=")) {
		return "", fmt.Errorf("%s: not a virtiofsd devbox knows", path)
	}
	return path, nil
}

// virtiofsdPath finds a virtiofsd this process could run, without running
// it: every devbox command asks the driver's capabilities.
func virtiofsdPath() (string, error) {
	path := ""
	for _, p := range virtiofsdPaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			path = p
			break
		}
	}
	if path == "" {
		p, err := exec.LookPath("virtiofsd")
		if err != nil {
			return "", errors.New("virtiofsd not found")
		}
		path = p
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s needs root", path)
	}
	return path, nil
}

// virtiofsSocket is the vhost-user socket of the i-th share's virtiofsd.
func (d *Driver) virtiofsSocket(i int) string {
	return filepath.Join(d.dir, fmt.Sprintf("fs-%d.sock", i))
}

func (d *Driver) virtiofsdPIDFile(i int) string {
	return filepath.Join(d.dir, fmt.Sprintf("virtiofsd-%d.pid", i))
}

// startVirtiofsd starts one virtiofsd per virtiofs share, before QEMU
// connects to their sockets. Each runs in a session of its own, like QEMU,
// and ends when QEMU closes its socket; stopVirtiofsd ends any left.
func (d *Driver) startVirtiofsd(ctx context.Context, shares []hypervisor.Share) error {
	d.stopVirtiofsd()
	var bin string
	for i, s := range shares {
		if s.Type != "virtiofs" {
			continue
		}
		if bin == "" {
			var err error
			if bin, err = findVirtiofsd(); err != nil {
				return fmt.Errorf("share %s: %w", s.HostPath, err)
			}
		}
		if s.ReadOnly {
			return fmt.Errorf("share %s: virtiofsd cannot share read-only: use 9p", s.HostPath)
		}
		sock := d.virtiofsSocket(i)
		logf, err := os.OpenFile(filepath.Join(d.dir, "virtiofsd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("start virtiofsd: %w", err)
		}
		cmd := exec.Command(bin, "--socket-path="+sock, "-o", "source="+s.HostPath,
			"-o", "cache="+virtiofsdCache, "-o", "log_level=warn")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = detached()
		err = cmd.Start()
		logf.Close()
		if err != nil {
			d.stopVirtiofsd()
			return fmt.Errorf("start virtiofsd for %s: %w", s.HostPath, err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if err := os.WriteFile(d.virtiofsdPIDFile(i), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			cmd.Process.Kill()
			d.stopVirtiofsd()
			return fmt.Errorf("start virtiofsd: %w", err)
		}
		// QEMU fails at once if the socket is not there yet.
		deadline := time.Now().Add(10 * time.Second)
		for !exists(sock) {
			select {
			case <-exited:
				d.stopVirtiofsd()
				return fmt.Errorf("virtiofsd for %s: %s", s.HostPath, lastLine(readFile(filepath.Join(d.dir, "virtiofsd.log"))))
			case <-ctx.Done():
				d.stopVirtiofsd()
				return fmt.Errorf("start virtiofsd: %w", ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				d.stopVirtiofsd()
				return fmt.Errorf("virtiofsd for %s: no socket after 10s", s.HostPath)
			}
		}
	}
	return nil
}

// stopVirtiofsd kills the machine's virtiofsd processes still running and
// removes their sockets and pid files, so a next Start begins clean.
func (d *Driver) stopVirtiofsd() {
	names, _ := filepath.Glob(filepath.Join(d.dir, "virtiofsd-*.pid"))
	for _, n := range names {
		b, _ := os.ReadFile(n)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isVirtiofsd(pid, d.dir) {
			syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 250 && isVirtiofsd(pid, d.dir); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
		os.Remove(n)
	}
	socks, _ := filepath.Glob(filepath.Join(d.dir, "fs-*.sock"))
	for _, s := range socks {
		os.Remove(s)
	}
}

// isVirtiofsd says whether pid is a live virtiofsd serving the machine in
// dir (its socket lives there).
func isVirtiofsd(pid int, dir string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(b, []byte("virtiofsd")) || !bytes.Contains(b, []byte(dir)) {
		return false
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	return i > 0 && i+2 < len(st) && st[i+2] != 'Z'
}
