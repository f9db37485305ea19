package cgroups

import (
	"fmt"
	"os/exec"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// benchRes is what `devbox run --memory 512m --cpus 1.5 --pids-limit
// 1024` asks for.
func benchRes() *specs.LinuxResources {
	return &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(512 << 20)},
		CPU:    &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)},
		Pids:   &specs.LinuxPids{Limit: i64(1024)},
	}
}

// BenchmarkNewDelete is the cgroup cost of a container's life, without
// the process: New with limits, then Delete.
func BenchmarkNewDelete(b *testing.B) {
	for _, v := range views(b) {
		for _, rc := range []struct {
			name string
			res  *specs.LinuxResources
		}{{"limits", benchRes()}, {"nil", nil}} {
			b.Run(v.name+"/"+rc.name, func(b *testing.B) {
				base := randomPath(b)
				b.Cleanup(func() { removeTestParent(v.m) })
				for i := 0; b.Loop(); i++ {
					c, err := create(v.m, fmt.Sprintf("%s-%d", base, i), rc.res)
					if err != nil {
						b.Fatal(err)
					}
					if err := c.Delete(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRun is a container-like start to finish: /bin/true started in
// a new cgroup (New, clone3 into it, Add), waited for, Kill, Delete;
// against the same start with no cgroup.
func BenchmarkRun(b *testing.B) {
	b.Run("no-cgroup", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, v := range views(b) {
		b.Run(v.name, func(b *testing.B) {
			base := randomPath(b)
			b.Cleanup(func() { removeTestParent(v.m) })
			for i := 0; b.Loop(); i++ {
				c, err := create(v.m, fmt.Sprintf("%s-%d", base, i), benchRes())
				if err != nil {
					b.Fatal(err)
				}
				cmd := exec.Command("/bin/true")
				if fd := c.FD(); fd >= 0 {
					cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				// (The runtime does this before its child execs; /bin/true
				// may be gone already, which is fine for timing.)
				c.Add(cmd.Process.Pid)
				c.Close()
				cmd.Wait()
				if err := c.Kill(); err != nil {
					b.Fatal(err)
				}
				if err := c.Delete(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAdd is the cost of moving a process into the v1 hierarchies.
func BenchmarkAdd(b *testing.B) {
	for _, v := range views(b) {
		b.Run(v.name, func(b *testing.B) {
			var cs [2]*Cgroup
			for i := range cs {
				c, err := create(v.m, randomPath(b), nil)
				if err != nil {
					b.Fatal(err)
				}
				c.FD() // as the runtime would: Add leaves cgroup2 alone
				cs[i] = c
			}
			cmd := exec.Command("/bin/sleep", "1000")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
				for _, c := range cs {
					c.Kill()
					c.Delete()
				}
				removeTestParent(v.m)
			})
			for i := 0; b.Loop(); i++ {
				if err := cs[i%2].Add(cmd.Process.Pid); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDetect(b *testing.B) {
	for b.Loop() {
		if _, err := Detect(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMountinfo(b *testing.B) {
	for b.Loop() {
		if _, err := readMountinfo(); err != nil {
			b.Fatal(err)
		}
	}
}
