package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/devbox-dev/devbox/config"
	"github.com/devbox-dev/devbox/machine"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

func openMachine() (*machine.Machine, error) { return machine.Open(machine.DefaultName) }

func newUpCmd(g *globals) *cobra.Command {
	var o machine.UpOptions
	var memory, disk string
	var shares []string
	c := &cobra.Command{
		Use:   "up",
		Short: "Ready the machine: boot the devbox VM, or nothing to do natively on Linux",
		Long: `up readies the machine containers run on. On Linux the default driver is
native: containers run on this host, with no VM. --driver qemu boots a small
Linux VM instead (the default on Windows; macOS uses Virtualization.framework).
Settings given here are kept for the next up. Running up again is harmless.

The VM mounts your home directory at the same path, so -v $PWD:/src works
from anywhere under it. --share DIR (or DIR:ro, read-only) shares another
directory, --unshare DIR stops sharing one; changing the shares, like
--cpus or --memory, needs the VM restarted: devbox down first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if memory != "" {
				b, err := machine.ParseSize(memory)
				if err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
				o.MemoryMiB = int(b >> 20)
			}
			if disk != "" {
				if o.DiskBytes, err = machine.ParseSize(disk); err != nil {
					return fmt.Errorf("--disk: %w", err)
				}
			}
			switch o.Driver {
			case "", machine.DriverNative, machine.DriverQEMU, machine.DriverVZ:
			default:
				return fmt.Errorf("--driver %q: use native, qemu or vz", o.Driver)
			}
			if fi, err := os.Stat(o.GuestImage); o.GuestImage != "" && (err == nil && fi.IsDir() || !machine.IsGuestImageRef(o.GuestImage)) {
				if o.GuestImage, err = config.ExpandPath(o.GuestImage); err != nil {
					return err
				}
			}
			for _, s := range shares {
				sh, err := machine.ParseShare(s)
				if err != nil {
					return fmt.Errorf("--share: %w", err)
				}
				o.Shares = append(o.Shares, sh)
			}
			o.Debug = g.debug
			m, err := openMachine()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			res, err := m.Up(cmd.Context(), o)
			if err != nil {
				return err
			}
			switch {
			case res.Native:
				fmt.Fprintln(out, "Driver native: containers run on this host; there is no VM to boot.")
			case res.AlreadyRunning:
				fmt.Fprintf(out, "Machine %s is already running (%s).\n", m.Name, describe(m, res))
			default:
				fmt.Fprintf(out, "Machine %s is up in %.1fs (%s).\n", m.Name, res.Ready.Seconds(), describe(m, res))
			}
			if !res.Native && !res.AlreadyRunning {
				fmt.Fprintf(out, "Shared with the VM at the same paths: %s.\n", sharesText(m.Shares()))
			}
			if !res.AlreadyRunning && res.Caps.AcceleratorNote != "" && res.Caps.Accelerator == "tcg" {
				fmt.Fprintf(cmd.ErrOrStderr(), "devbox: using tcg, software emulation (slow): %s\n", res.Caps.AcceleratorNote)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.Driver, "driver", "", "native, qemu or vz (default: native on Linux, vz on macOS, qemu on Windows)")
	f.IntVar(&o.CPUs, "cpus", 0, "virtual CPUs (default 2)")
	f.StringVar(&memory, "memory", "", "memory, e.g. 2GiB (default 2GiB)")
	f.StringVar(&disk, "disk", "", "size of the data disk, e.g. 64GiB; it takes host space only as used (default 64GiB)")
	f.StringVar(&o.GuestImage, "guest-image", "", "guest image: a directory (default: the one make image puts next to devbox) or a registry reference, pulled and verified by digest")
	f.StringVar(&o.Accel, "accel", "", "force a QEMU accelerator, e.g. tcg (default: the fastest that works)")
	f.DurationVar(&o.Timeout, "timeout", 0, "how long to wait for the VM to answer (default 2m)")
	f.StringArrayVar(&shares, "share", nil, "share a host directory with the VM at the same path, DIR or DIR:ro (repeatable; kept; a running VM needs devbox down first)")
	f.StringArrayVar(&o.Unshare, "unshare", nil, "stop sharing a directory (repeatable)")
	return c
}

// sharesText lists shares for people: "/home/me, /data (read-only, 9p)".
func sharesText(ss []machine.Share) string {
	if len(ss) == 0 {
		return "none"
	}
	var parts []string
	for _, s := range ss {
		var notes []string
		if s.ReadOnly {
			notes = append(notes, "read-only")
		}
		if s.Type != "" {
			notes = append(notes, s.Type)
		}
		if len(notes) > 0 {
			parts = append(parts, s.Path+" ("+strings.Join(notes, ", ")+")")
		} else {
			parts = append(parts, s.Path)
		}
	}
	return strings.Join(parts, ", ")
}

func describe(m *machine.Machine, res *machine.UpResult) string {
	return fmt.Sprintf("%s, %s; %d CPUs, %d MiB", m.Config.Driver, res.Caps.Accelerator, m.Config.CPUs, m.Config.MemoryMiB)
}

func newDownCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the machine's VM, keeping its disk",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openMachine()
			if err != nil {
				return err
			}
			stopped, err := m.Down(cmd.Context())
			if err != nil {
				return err
			}
			if stopped {
				fmt.Fprintf(cmd.OutOrStdout(), "Machine %s stopped.\n", m.Name)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "Machine %s is not running.\n", m.Name)
			}
			return nil
		},
	}
}

func newDestroyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "destroy",
		Short: "Stop the machine and delete it: its disk, images, containers and keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openMachine()
			if err != nil {
				return err
			}
			if err := m.Destroy(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Machine %s destroyed.\n", m.Name)
			return nil
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the machine: driver, state, accelerator, resources, uptime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openMachine()
			if err != nil {
				return err
			}
			s, err := m.Status(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				return printJSON(out, s)
			case "", "table":
			default:
				return fmt.Errorf("--format %q: use json", format)
			}
			fmt.Fprintf(out, "Machine:     %s\nDriver:      %s\nState:       %s\n", s.Name, s.Driver, s.State)
			if s.Driver == machine.DriverNative {
				return nil
			}
			accel := s.Accelerator
			if s.AcceleratorNote != "" {
				accel += " (" + s.AcceleratorNote + ")"
			}
			fmt.Fprintf(out, "Accelerator: %s\nCPUs:        %d\nMemory:      %d MiB\nDisk:        %s of %s used\n",
				accel, s.CPUs, s.MemoryMiB, humanBytes(s.DiskUsedBytes), humanBytes(s.DiskBytes))
			fmt.Fprintf(out, "Shares:      %s\n", sharesText(s.Shares))
			if !s.Booted.IsZero() {
				fmt.Fprintf(out, "Uptime:      %s\n", time.Since(s.Booted).Round(time.Second))
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "", "output format: json")
	return c
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newSSHCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh [-- COMMAND...]",
		Short: "A shell, or one command, in the machine's VM",
		Long: `ssh opens a shell in the devbox VM (with a terminal when run from one), or
runs COMMAND there and exits with its status. For stock OpenSSH and editors,
see devbox ssh-config.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openMachine()
			if err != nil {
				return err
			}
			client, err := m.Client(cmd.Context())
			if err != nil {
				return err
			}
			defer client.Close()
			code, err := sshSession(cmd.Context(), client, strings.Join(args, " "))
			if err != nil {
				return err
			}
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
}

// sshSession runs command (a login shell when empty) with the process's
// stdio, with a pty when stdin is a terminal, and returns its exit status.
func sshSession(ctx context.Context, client *ssh.Client, command string) (int, error) {
	sess, err := client.NewSession()
	if err != nil {
		return 0, fmt.Errorf("ssh session: %w", err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = os.Stdin, os.Stdout, os.Stderr
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		w, h, err := term.GetSize(int(os.Stdout.Fd()))
		if err != nil {
			w, h = 80, 24
		}
		t := os.Getenv("TERM")
		if t == "" {
			t = "xterm-256color"
		}
		if err := sess.RequestPty(t, h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
			return 0, fmt.Errorf("ssh pty: %w", err)
		}
		state, err := term.MakeRaw(fd)
		if err != nil {
			return 0, err
		}
		defer term.Restore(fd, state)
		stop := followSSHWindow(sess)
		defer stop()
	}
	if command == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(command)
	}
	if err != nil {
		return 0, fmt.Errorf("ssh: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Ctrl-C without a pty: pass it on, and give the command a
		// moment to end on its own.
		_ = sess.Signal(ssh.SIGINT)
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			return 130, nil
		}
	}
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ee.Signal() != "" {
			return 128 + signalNumber(ssh.Signal(ee.Signal())), nil
		}
		return ee.ExitStatus(), nil
	case errors.Is(err, io.EOF):
		return 0, nil
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return 255, fmt.Errorf("ssh: the session ended without an exit status")
	}
	return 0, fmt.Errorf("ssh: %w", err)
}

func newSSHConfigCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh-config",
		Short: "Print an OpenSSH Host entry for the machine (ssh -F, or append to ~/.ssh/config)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openMachine()
			if err != nil {
				return err
			}
			if !m.Exists() || m.Config.Driver == machine.DriverNative {
				return fmt.Errorf("machine %s has no VM: devbox up --driver qemu first", m.Name)
			}
			s, err := m.SSHConfig()
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), s)
			return nil
		},
	}
}

func newSSHProxyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "ssh-proxy [MACHINE]",
		Short:  "Connect stdin and stdout to the machine's SSH server (OpenSSH ProxyCommand)",
		Hidden: true,
		Args:   cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := machine.DefaultName
			if len(args) == 1 {
				name = args[0]
			}
			m, err := machine.Open(name)
			if err != nil {
				return err
			}
			conn, err := m.ProxyConn(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(conn, os.Stdin); done <- struct{}{} }()
			go func() { io.Copy(os.Stdout, conn); done <- struct{}{} }()
			<-done
			return nil
		},
	}
}

func newLogsCmd(g *globals) *cobra.Command {
	var machineLog bool
	c := &cobra.Command{
		Use:   "logs --machine",
		Short: "Show the machine's console log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !machineLog {
				return fmt.Errorf("container logs are not supported yet: devbox logs --machine shows the VM's console")
			}
			m, err := openMachine()
			if err != nil {
				return err
			}
			if !m.Exists() || m.Config.Driver == machine.DriverNative {
				return fmt.Errorf("machine %s has no VM, so no console log", m.Name)
			}
			p, err := m.ConsoleLog()
			if err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("console log: %w", err)
			}
			defer f.Close()
			_, err = io.Copy(cmd.OutOrStdout(), f)
			return err
		},
	}
	c.Flags().BoolVar(&machineLog, "machine", false, "the VM's console log")
	return c
}

// signalNumber is the Linux number of an SSH signal name: the exit status
// follows the guest's numbering, as a shell in the guest would report it.
func signalNumber(sig ssh.Signal) int {
	n := map[ssh.Signal]int{ssh.SIGHUP: 1, ssh.SIGINT: 2, ssh.SIGQUIT: 3, ssh.SIGILL: 4, ssh.SIGABRT: 6,
		ssh.SIGFPE: 8, ssh.SIGKILL: 9, ssh.SIGUSR1: 10, ssh.SIGSEGV: 11, ssh.SIGUSR2: 12, ssh.SIGPIPE: 13,
		ssh.SIGALRM: 14, ssh.SIGTERM: 15}[sig]
	if n == 0 {
		n = 1
	}
	return n
}
