package qemu

import (
	"strings"
	"testing"

	"github.com/devbox-dev/devbox/hypervisor"
)

func TestArgsShares(t *testing.T) {
	d := New(t.TempDir(), "amd64", "tcg")
	args, err := d.Args(hypervisor.Config{CPUs: 1, MemoryMiB: 512, Shares: []hypervisor.Share{
		{Tag: "devbox0", HostPath: "/home/me", Type: "9p"},
		{Tag: "devbox1", HostPath: "/data", ReadOnly: true},
		{Tag: "devbox2", HostPath: "/src", Type: "virtiofs"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-fsdev local,id=share0,path=/home/me,security_model=none,multidevs=remap -device virtio-9p-device,fsdev=share0,mount_tag=devbox0",
		"path=/data,security_model=none,multidevs=remap,readonly=on",
		"-object memory-backend-memfd,id=mem,share=on,size=512M -machine memory-backend=mem -global virtio-mmio.force-legacy=false",
		"-chardev socket,id=share2,path=" + d.virtiofsSocket(2) + " -device vhost-user-fs-device,chardev=share2,tag=devbox2",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("qemu args lack %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "readonly=on -device virtio-9p-device,fsdev=share0") {
		t.Error("writable share made read-only")
	}
	if _, err := d.Args(hypervisor.Config{Shares: []hypervisor.Share{{Tag: "x", HostPath: "/x", Type: "smb"}}}); err == nil {
		t.Error("unknown share type accepted")
	}
}

func TestShareTypes(t *testing.T) {
	types := New(t.TempDir(), "amd64", "tcg").Capabilities().ShareTypes
	if len(types) == 0 || types[0] != "9p" {
		t.Errorf("share types %v: 9p first", types)
	}
	_, err := findVirtiofsd()
	if (err == nil) != (len(types) == 2 && types[1] == "virtiofs") {
		t.Errorf("share types %v, but virtiofsd: %v", types, err)
	}
}
