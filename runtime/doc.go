// Package runtime runs one OCI runtime spec as a Linux container: the
// user's program becomes PID 1 of new namespaces, on an overlayfs rootfs
// stacked from image layer directories, with Docker's /dev, /proc and /sys,
// masked and read-only paths, capabilities, rlimits, user and optional
// seccomp filter.
//
// It is a library: the engine turns an image config and docker-run flags
// into a [specs.Spec] and calls [Run]; the devbox guest agent does the same
// inside a VM. [Run] re-executes /proc/self/exe as the container's init
// stage, so every binary that calls [Run] must call [Init] first thing in
// main (and a test binary in TestMain).
//
// How a start works, in one pass and with one process:
//
//  1. Run checks the spec and works it out into what the init stage has to
//     do (mount flags, capability masks, a compiled seccomp program), so
//     that mistakes fail before anything starts. It clones /proc/self/exe
//     with the new namespaces as clone flags, an optional
//     CLONE_INTO_CGROUP and a SIGKILL parent-death signal, and sends that
//     plan over a socket (fd 3) in a compact binary form. A caller may
//     have the process cloned earlier, with [Container.Prestart], so that
//     it starts up while the caller still prepares the container.
//  2. The init stage (Init, in Go, in the new namespaces) makes every mount
//     private, mounts the overlay and the spec's mounts inside the
//     container's own mount namespace (nothing is ever mounted in the
//     caller's), fills /dev, pivots root, masks paths, drops to the spec's
//     user and capabilities, installs seccomp and execs the program, which
//     keeps its PID 1.
//  3. The socket is close-on-exec: Run reads EOF when the exec succeeded,
//     or a report naming the failed step ([SetupError]), or an
//     [ExecError] (exit code 127 or 126) when the program could not be
//     started. Then it waits for the program and returns its
//     [ExitStatus].
//
// Device access is the device cgroup's job, as with runc: the rootfs, /dev
// and bind mounts are not nodev, and containers keep CAP_MKNOD, so the
// caller must put the container in a cgroup that enforces the spec's
// Linux.Resources.Devices (package runtime/cgroups does) before it starts.
//
// Seccomp comes from package runtime/seccomp through package variables
// that a file of this package sets (seccompCompile and seccompLoad, or
// seccompHook); without them, a spec's seccomp section is ignored.
//
// Only Linux runs containers; on other systems [Run] returns an error and
// [Init] does nothing.
package runtime
