package runtime

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// consoleByte goes to Run on the sync socket with the pty master (as
// SCM_RIGHTS) when the container has a terminal.
const consoleByte = 'C'

// setupConsole gives the container its terminal, as runc does: a pty of
// the container's own devpts instance, so that its slave is /dev/pts/0
// inside and tty(1) says so. The init stage, pivoted into the rootfs,
// opens /dev/ptmx, binds the slave at /dev/console, sends the master to
// Run over the sync socket and makes the slave its stdin, stdout, stderr
// and controlling terminal (it is a session leader: Run starts it with
// setsid).
func setupConsole(cfg *initConfig) error {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return step("open /dev/ptmx", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return step("unlock the pty", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return step("get the pty number", err)
	}
	slavePath := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	if cfg.ConsoleRows != 0 || cfg.ConsoleCols != 0 {
		ws := &unix.Winsize{Row: cfg.ConsoleRows, Col: cfg.ConsoleCols}
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws); err != nil {
			return step("set the console size", err)
		}
	}
	slave, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return step("open "+slavePath, err)
	}
	defer unix.Close(slave)
	if cfg.UID != 0 {
		// The user must own its terminal to use it fully (the devpts gid
		// option picks the group), as runc does.
		if err := unix.Fchown(slave, int(cfg.UID), -1); err != nil {
			return step("chown "+slavePath, err)
		}
	}
	if err := bindConsole(slavePath); err != nil {
		return step("bind "+slavePath+" at /dev/console", err)
	}
	if err := unix.Sendmsg(syncFD, []byte{consoleByte}, unix.UnixRights(master), nil, 0); err != nil {
		return step("send the pty master", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup2(slave, fd); err != nil {
			return step("make the pty stdio", err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return step("make the pty the controlling terminal", err)
	}
	return nil
}

// bindConsole bind-mounts the pty slave at /dev/console, making an empty
// file there first if need be (never opening what is there: a session
// leader opening a terminal could take it as its own).
func bindConsole(slavePath string) error {
	if err := unix.Mknod("/dev/console", unix.S_IFREG|0o600, 0); err != nil && err != unix.EEXIST {
		return fmt.Errorf("create /dev/console: %w", err)
	}
	return unix.Mount(slavePath, "/dev/console", "", unix.MS_BIND, "")
}
