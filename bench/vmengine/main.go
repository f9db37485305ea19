//go:build linux

// Command vmengine benchmarks devbox's engine through the VM (driver
// qemu), on a warm machine:
//
//   - `devbox run --rm busybox true` from the host, against the transport
//     floor (`devbox ssh -- true`: connect, log in, one command) and
//     against the same run done natively inside the guest, timed there;
//     alternating in one run. Target: run through the VM <= 1.5x the
//     transport floor.
//   - reads through a bind mount of a shared host directory (a 100 MB
//     file, 1000 small files) against the same from the guest's own disk;
//   - published-port throughput: 256 MiB from a server in a container to
//     the host through `-p`, against the same transfer from a server in
//     the guest (no container) over an SSH direct-tcpip channel.
//
// Usage (what `make bench` runs; needs `make image`, QEMU, Debian's
// docker-registry and busybox-static):
//
//	go run ./bench/vmengine -devbox bin/devbox -guest-image bin/guest/amd64
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/devbox-dev/devbox/bench/internal/stats"
	"github.com/devbox-dev/devbox/internal/testutil/imagegen"
	"github.com/devbox-dev/devbox/internal/testutil/registry"
	"github.com/devbox-dev/devbox/machine"
)

func main() {
	devbox := flag.String("devbox", "bin/devbox", "devbox binary")
	image := flag.String("guest-image", "bin/guest/"+goruntime.GOARCH, "guest image directory")
	rounds := flag.Int("rounds", 20, "runs of each kind")
	mib := flag.Int("mib", 256, "MiB transferred through the published port")
	flag.Parse()
	if err := run(*devbox, *image, *rounds, *mib); err != nil {
		fmt.Fprintln(os.Stderr, "bench/vmengine:", err)
		os.Exit(1)
	}
}

func run(devbox, image string, rounds, mib int) error {
	devbox, err := filepath.Abs(devbox)
	if err != nil {
		return err
	}
	if image, err = filepath.Abs(image); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "devbox-bench-vmengine-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	home := filepath.Join(work, "home")
	env := append(os.Environ(), "DEVBOX_HOME="+home, "HOME="+work)
	dbx := func(args ...string) (string, error) {
		cmd := exec.Command(devbox, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("devbox %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}

	reg, err := registry.StartProcess(filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	defer reg.Stop()
	ref := reg.Ref("bench/busybox:1")
	if err := pushBusybox(ref); err != nil {
		return err
	}
	if _, err := dbx("up", "--driver", "qemu", "--cpus", "2", "--memory", "1GiB", "--disk", "8GiB", "--guest-image", image); err != nil {
		return err
	}
	defer dbx("destroy")
	if _, err := dbx("pull", "-q", ref); err != nil {
		return err
	}
	// Warm both paths once.
	for _, args := range [][]string{{"run", "--rm", ref, "true"}, {"ssh", "--", "true"}} {
		if _, err := dbx(args...); err != nil {
			return err
		}
	}

	var viaVM, floor []time.Duration
	for i := 0; i < rounds; i++ {
		order := [][]string{{"run", "--rm", ref, "true"}, {"ssh", "--", "true"}}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, args := range order {
			start := time.Now()
			if _, err := dbx(args...); err != nil {
				return err
			}
			if args[0] == "run" {
				viaVM = append(viaVM, time.Since(start))
			} else {
				floor = append(floor, time.Since(start))
			}
		}
	}
	inGuest, err := guestRuns(dbx, ref, rounds)
	if err != nil {
		return err
	}
	vm, fl, ig := stats.Median(stats.Durations(viaVM)), stats.Median(stats.Durations(floor)), stats.Median(stats.Durations(inGuest))
	fmt.Printf("devbox run --rm busybox true on a warm VM, %d rounds each, TCG (this host cannot use KVM):\n", rounds)
	fmt.Printf("  through the VM from the host:      median %s\n", stats.Millis(time.Duration(vm)))
	fmt.Printf("  transport floor (devbox ssh true): median %s\n", stats.Millis(time.Duration(fl)))
	fmt.Printf("  natively inside the guest:         median %s\n", stats.Millis(time.Duration(ig)))
	fmt.Printf("  ratio through-VM/floor: %.2f (target <= 1.5) %s\n", vm/fl, stats.Verdict(vm/fl <= 1.5))

	if err := shareReads(dbx, work, ref, 3); err != nil {
		return err
	}
	return throughput(dbx, home, ref, mib)
}

func pushBusybox(ref string) error {
	l, err := imagegen.BusyboxLayer()
	if err != nil {
		return err
	}
	img, err := imagegen.Image(l)
	if err != nil {
		return err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	return remote.Write(r, img)
}

// guestRuns times the run natively in the guest, with the guest's clock,
// so no SSH is counted: the agent is the devbox binary, and
// /proc/1/exe run is devbox's CLI there. The guest's busybox date has no
// nanoseconds: /proc/uptime's centiseconds it is.
func guestRuns(dbx func(...string) (string, error), ref string, rounds int) ([]time.Duration, error) {
	script := fmt.Sprintf(`cd /tmp; export DEVBOX_ROOT=/var/lib/devbox
/proc/1/exe run --rm %[1]s true
cs() { read u _ < /proc/uptime; echo "${u%%.*}${u#*.}"; }
for i in $(seq %[2]d); do s=$(cs); /proc/1/exe run --rm %[1]s true; e=$(cs); echo $(( (e-s)*10000000 )); done`, ref, rounds)
	out, err := dbx("ssh", "--", script)
	if err != nil {
		return nil, err
	}
	var ds []time.Duration
	for _, f := range strings.Fields(out) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("guest timing %q: %w", out, err)
		}
		ds = append(ds, time.Duration(n))
	}
	if len(ds) != rounds {
		return nil, fmt.Errorf("guest timing: %q", out)
	}
	return ds, nil
}

// throughput moves mib MiB from a container's server to the host through
// a published port, and the same from a server in the guest over SSH
// direct-tcpip.
func throughput(dbx func(...string) (string, error), home, ref string, mib int) error {
	size := int64(mib) << 20
	serve := fmt.Sprintf("head -c %d /dev/zero | nc -l -p 8080", size)

	port, err := freePort()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		_, err := dbx("run", "--rm", "-p", fmt.Sprintf("%d:8080", port), ref, "sh", "-c", serve)
		done <- err
	}()
	published, err := receive(func() (net.Conn, error) {
		return net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	}, size, done)
	if err != nil {
		return fmt.Errorf("published port: %w", err)
	}

	os.Setenv("DEVBOX_HOME", home)
	m, err := machine.Open(machine.DefaultName)
	if err != nil {
		return err
	}
	c, err := m.Client(context.Background())
	if err != nil {
		return err
	}
	defer c.Close()
	done = make(chan error, 1)
	go func() {
		_, err := dbx("ssh", "--", serve)
		done <- err
	}()
	direct, err := receive(func() (net.Conn, error) { return c.Dial("tcp", "127.0.0.1:8080") }, size, done)
	if err != nil {
		return fmt.Errorf("direct-tcpip: %w", err)
	}
	fmt.Printf("%d MiB from a server in the VM to the host:\n", mib)
	fmt.Printf("  published port (-p, container):   %.1f MB/s\n", published)
	fmt.Printf("  SSH direct-tcpip (no container):  %.1f MB/s\n", direct)
	return nil
}

// receive connects (retrying while the server starts) and reads size
// bytes; it returns MB/s from the first byte to the last.
func receive(dial func() (net.Conn, error), size int64, served <-chan error) (float64, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := dial()
		if err == nil {
			buf := make([]byte, 1)
			if _, err = io.ReadFull(conn, buf); err == nil {
				start := time.Now()
				// Exactly size bytes: nc keeps its connection open after
				// its input ends, until this side closes.
				n, err := io.CopyN(io.Discard, conn, size-1)
				d := time.Since(start)
				conn.Close()
				if err != nil {
					return 0, fmt.Errorf("got %d bytes of %d: %w", n+1, size, err)
				}
				if err := <-served; err != nil {
					return 0, err
				}
				return float64(size) / 1e6 / d.Seconds(), nil
			}
			conn.Close()
		}
		select {
		case err := <-served:
			if err == nil {
				err = errors.New("the server ended before a connection")
			}
			return 0, err
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no server after 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
