package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The tests here drive the pure cgroup2 code paths (controllers on
// cgroup2, cgroup.subtree_control) against a directory tree that mimics
// cgroupfs, since this development host can't give cgroup2 any
// controller: they are all bound to its v1 hierarchies.

// fakeV2 makes a cgroup2-like tree at a temp dir with the leaf
// devbox-test/c1 already there (New reuses an existing leaf, which is
// what lets a plain directory stand in for one that cgroupfs would have
// populated).
func fakeV2(t *testing.T, leafFiles ...string) (root string, m *mounts) {
	t.Helper()
	root = t.TempDir()
	leaf := filepath.Join(root, "devbox-test", "c1")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	files := []string{"cgroup.subtree_control", "devbox-test/cgroup.subtree_control"}
	for _, f := range leafFiles {
		files = append(files, "devbox-test/c1/"+f)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, &mounts{unified: root}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFakeV2Limits(t *testing.T) {
	root, m := fakeV2(t, "memory.max", "memory.swap.max", "cpu.max", "pids.max", "cpu.weight")
	res := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(512 << 20)},
		CPU:    &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000), Shares: u64(512)},
		Pids:   &specs.LinuxPids{Limit: i64(100)},
	}
	c, err := create(m, "devbox-test/c1", res)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leaf := root + "/devbox-test/c1/"
	for file, want := range map[string]string{
		root + "/cgroup.subtree_control":             "+memory +pids +cpu",
		root + "/devbox-test/cgroup.subtree_control": "+memory +pids +cpu",
		leaf + "memory.max":                          "536870912",
		leaf + "memory.swap.max":                     "0",
		leaf + "cpu.max":                             "150000 100000",
		leaf + "cpu.weight":                          "20",
		leaf + "pids.max":                            "100",
	} {
		if got := readString(t, file); got != want {
			t.Errorf("%s = %q; want %q", file, got, want)
		}
	}
	if c.unified != root+"/devbox-test/c1" || c.v1Dirs != nil {
		t.Errorf("dirs: unified %q, v1 %q", c.unified, c.v1Dirs)
	}
	if c.v2 != v2Capable {
		t.Errorf("v2 controllers %b; want %b", c.v2, v2Capable)
	}
	if fd := c.FD(); fd < 0 {
		t.Error("FD() = -1 on cgroup2")
	}

	// The subtree is remembered: a second container costs no read.
	os.Remove(root + "/cgroup.subtree_control")
	if st := ensureSubtree(root, "devbox-test/c2", v2Capable); st.have != v2Capable || st.err != nil {
		t.Errorf("cached ensureSubtree = %+v", st)
	}
}

// TestFakeV2Enabled: controllers already in cgroup.subtree_control are
// not written again.
func TestFakeV2Enabled(t *testing.T) {
	root, m := fakeV2(t, "memory.max", "memory.swap.max")
	for _, f := range []string{"/cgroup.subtree_control", "/devbox-test/cgroup.subtree_control"} {
		if err := os.WriteFile(root+f, []byte("cpu io memory pids\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := create(m, "devbox-test/c1", mem(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := readString(t, root+"/cgroup.subtree_control"); got != "cpu io memory pids\n" {
		t.Errorf("subtree_control rewritten: %q", got)
	}
}

// TestFakeV2NoSwapAccounting: a kernel without swap accounting has no
// memory.swap.max; the memory limit still applies.
func TestFakeV2NoSwapAccounting(t *testing.T) {
	root, m := fakeV2(t, "memory.max")
	c, err := create(m, "devbox-test/c1", mem(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := readString(t, root+"/devbox-test/c1/memory.max"); got != "67108864" {
		t.Errorf("memory.max = %q", got)
	}
	if _, err := os.Stat(root + "/devbox-test/c1/memory.swap.max"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("memory.swap.max was created: %v", err)
	}
}

// TestFakeV2NoController: when the controllers can't be enabled (here
// cgroup.subtree_control can't be written), a limit that needs one is a
// clear error, and no limit at all is fine.
func TestFakeV2NoController(t *testing.T) {
	root, m := fakeV2(t)
	os.Remove(root + "/cgroup.subtree_control")
	if err := os.Mkdir(root+"/cgroup.subtree_control", 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := create(m, "devbox-test/c1", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(10)}})
	if err == nil || !strings.Contains(err.Error(), "a pids limit was asked for, but this host (cgroup layout v2) has no pids controller") {
		t.Errorf("create with pids limit: %v", err)
	}
	c, err := create(m, "devbox-test/c1", nil)
	if err != nil {
		t.Fatalf("create without limits: %v", err)
	}
	c.Close()
}

func TestFakeV2StatsAndOOM(t *testing.T) {
	root, m := fakeV2(t)
	leaf := root + "/devbox-test/c1/"
	for f, data := range map[string]string{
		"memory.current": "1048576\n",
		"memory.peak":    "2097152\n",
		"pids.current":   "3\n",
		"cpu.stat":       "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
		"memory.events":  "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
	} {
		if err := os.WriteFile(leaf+f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := load(m, "devbox-test/c1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{MemoryCurrent: 1 << 20, MemoryPeak: 2 << 20, PidsCurrent: 3, CPUUsage: 1500 * time.Millisecond}
	if *s != want {
		t.Errorf("Stats() = %+v; want %+v", *s, want)
	}
	if oom, err := c.OOMKilled(); !oom || err != nil {
		t.Errorf("OOMKilled() = %v, %v; want true", oom, err)
	}
	os.WriteFile(leaf+"memory.events", []byte("oom 0\noom_kill 0\n"), 0o644)
	if oom, err := c.OOMKilled(); oom || err != nil {
		t.Errorf("OOMKilled() = %v, %v; want false", oom, err)
	}
	os.Remove(leaf + "memory.events")
	if _, err := c.OOMKilled(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("OOMKilled() without memory.events: %v; want ErrUnsupported", err)
	}
	if _, err := load(m, "devbox-test/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load of a missing cgroup: %v; want ErrNotExist", err)
	}
}
