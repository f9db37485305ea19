package agent

import (
	"bytes"
	"compress/gzip"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const sampleModulesDep = `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/char/hw_random/virtio-rng.ko.zst: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`

func TestModulesLoadOrder(t *testing.T) {
	deps, err := parseModulesDep(strings.NewReader(sampleModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	list, err := parseModuleList(strings.NewReader("# for QEMU\nvirtio_net\nvirtio-rng  # dash or underscore\nvirtio_mmio\next4\n"))
	if err != nil {
		t.Fatal(err)
	}
	order, missing := deps.loadOrder(list)
	var names []string
	for _, e := range order {
		names = append(names, moduleName(e.path))
	}
	pos := func(n string) int { return slices.Index(names, n) }
	for _, pair := range [][2]string{{"virtio_ring", "virtio"}, {"virtio", "virtio_net"}, {"failover", "net_failover"},
		{"net_failover", "virtio_net"}, {"virtio", "virtio_rng"}, {"virtio", "virtio_mmio"}} {
		if pos(pair[0]) < 0 || pos(pair[0]) > pos(pair[1]) {
			t.Errorf("%s must load before %s: %v", pair[0], pair[1], names)
		}
	}
	if len(names) != 7 {
		t.Errorf("each module once: %v", names)
	}
	if !slices.Equal(missing, []string{"ext4"}) {
		t.Errorf("missing %v, want [ext4] (built in)", missing)
	}
}

func TestReadModuleCompressed(t *testing.T) {
	image := bytes.Repeat([]byte("\x7fELF module bytes "), 1000)
	var x, z, g bytes.Buffer
	xw, _ := xz.NewWriter(&x)
	xw.Write(image)
	xw.Close()
	zw, _ := zstd.NewWriter(&z)
	zw.Write(image)
	zw.Close()
	gw := gzip.NewWriter(&g)
	gw.Write(image)
	gw.Close()
	for path, data := range map[string][]byte{"a.ko": image, "a.ko.xz": x.Bytes(), "a.ko.zst": z.Bytes(), "a.ko.gz": g.Bytes()} {
		got, err := readModule(bytes.NewReader(data), path)
		if err != nil || !bytes.Equal(got, image) {
			t.Errorf("%s: %d bytes, %v", path, len(got), err)
		}
	}
	if _, err := readModule(bytes.NewReader(nil), "a.ko.lz4"); err == nil {
		t.Error("an unknown compression was accepted")
	}
}
