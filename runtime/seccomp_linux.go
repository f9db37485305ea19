package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/devbox-dev/devbox/runtime/seccomp"
)

// Run compiles a spec's seccomp section before anything starts, so a bad
// profile fails early and the init stage only loads the program.
func init() {
	seccompCompile = func(s *specs.LinuxSeccomp) ([]unix.SockFilter, uint, error) {
		prog, err := seccomp.Compile(s)
		if err != nil {
			return nil, 0, err
		}
		flags, err := seccomp.Flags(s)
		return prog, flags, err
	}
	seccompLoad = seccomp.LoadFlags
}
