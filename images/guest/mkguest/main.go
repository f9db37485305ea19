// Command mkguest builds a devbox guest VM image (kernel, initramfs and
// guest.json) into a directory; `make image` runs it. See package
// github.com/devbox-dev/devbox/images/guest for what the image holds.
//
//	go run ./images/guest/mkguest -arch amd64 -kernel-dir DIR -agent bin/devbox-linux-amd64 \
//	    -debroot DIR -out bin/guest/amd64
//
// SOURCE_DATE_EPOCH, when set, stamps the initramfs entries instead of the
// Unix epoch.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/devbox-dev/devbox/images/guest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkguest:", err)
		os.Exit(1)
	}
}

func run() error {
	var o guest.BuildOptions
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "guest architecture: amd64 or arm64")
	flag.StringVar(&o.KernelDir, "kernel-dir", "", "kernel output of scripts/guest-kernel.sh (kernel, kernel.release[, modules/])")
	flag.StringVar(&o.KernelSource, "kernel-source", guest.KernelDevbox, "where the kernel comes from: devbox or debian")
	flag.StringVar(&o.Agent, "agent", "", "the devbox binary built for linux/ARCH (static); becomes /init")
	flag.StringVar(&o.DebRoot, "debroot", "", "Debian packages unpacked by scripts/guest-debs.sh")
	flag.StringVar(&o.Busybox, "busybox", "", "static busybox for ARCH (default: DEBROOT/bin/busybox)")
	flag.StringVar(&o.Cmdline, "cmdline", "", "kernel arguments the image needs")
	flag.StringVar(&o.Out, "out", "", "image directory to write (default: bin/guest/ARCH)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if o.Busybox == "" && o.DebRoot != "" {
		o.Busybox = filepath.Join(o.DebRoot, "bin", "busybox")
	}
	if o.Out == "" {
		o.Out = filepath.Join("bin", "guest", o.Arch)
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since the epoch", s)
		}
		o.ModTime = time.Unix(sec, 0)
	}
	o.Log = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	img, err := guest.Build(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("guest image %s: %s, %s kernel %s\n", img.Dir, img.Arch, img.KernelSource, img.KernelRelease)
	fmt.Printf("  kernel     %10d bytes  %s\n", img.Kernel.Size, img.Kernel.Digest)
	fmt.Printf("  initramfs  %10d bytes  %s\n", img.Initramfs.Size, img.Initramfs.Digest)
	return nil
}
