package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// Payloads of the "session" channel requests (RFC 4254 section 6).
type (
	ptyRequest struct {
		Term                         string
		Columns, Rows, Width, Height uint32
		Modes                        string
	}
	windowChange  struct{ Columns, Rows, Width, Height uint32 }
	envRequest    struct{ Name, Value string }
	execRequest   struct{ Command string }
	signalRequest struct{ Signal string }
	exitStatusMsg struct{ Status uint32 }
	exitSignalMsg struct {
		Signal     string
		CoreDumped bool
		Error      string
		Lang       string
	}
)

// sshSignals maps RFC 4254's signal names to the guest's signals.
var sshSignals = map[string]syscall.Signal{
	"ABRT": unix.SIGABRT, "ALRM": unix.SIGALRM, "FPE": unix.SIGFPE, "HUP": unix.SIGHUP,
	"ILL": unix.SIGILL, "INT": unix.SIGINT, "KILL": unix.SIGKILL, "PIPE": unix.SIGPIPE,
	"QUIT": unix.SIGQUIT, "SEGV": unix.SIGSEGV, "TERM": unix.SIGTERM, "USR1": unix.SIGUSR1,
	"USR2": unix.SIGUSR2,
}

// signalFromSSH returns the signal an SSH signal name stands for; beyond
// the RFC's list it takes the kernel's names without "SIG" (WINCH, CONT...).
func signalFromSSH(name string) (syscall.Signal, bool) {
	if s, ok := sshSignals[name]; ok {
		return s, true
	}
	s := unix.SignalNum("SIG" + name)
	return s, s != 0
}

// signalToSSH names sig the way exit-signal wants it.
func signalToSSH(sig syscall.Signal) string {
	n := unix.SignalName(sig)
	if len(n) > 3 {
		return n[3:]
	}
	return fmt.Sprintf("%d", int(sig))
}

// session is one "session" channel: at most one program, with a pty or
// with pipes.
type session struct {
	srv *Server
	ch  ssh.Channel
	env []string
	pty *ptyRequest

	mu      sync.Mutex
	ptmx    *os.File
	pid     int
	started bool
	exited  bool
}

func (s *Server) handleSession(ctx context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	ss := &session{srv: s, ch: ch}
	for req := range reqs {
		ok := ss.handle(req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
	}
	// The client closed the channel or the connection died: hang up on
	// the program, as a terminal would.
	ss.signal(unix.SIGHUP)
	ss.mu.Lock()
	if ss.ptmx != nil && !ss.exited {
		ss.ptmx.Close()
	}
	ss.mu.Unlock()
}

// handle serves one channel request and says whether it succeeded.
func (ss *session) handle(req *ssh.Request) bool {
	switch req.Type {
	case "env":
		var e envRequest
		if ssh.Unmarshal(req.Payload, &e) != nil || e.Name == "" {
			return false
		}
		ss.env = append(ss.env, e.Name+"="+e.Value)
		return true
	case "pty-req":
		var p ptyRequest
		if ssh.Unmarshal(req.Payload, &p) != nil || ss.isStarted() {
			return false
		}
		ss.pty = &p
		return true
	case "window-change":
		var w windowChange
		if ssh.Unmarshal(req.Payload, &w) != nil {
			return false
		}
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if ss.pty == nil {
			return false
		}
		ss.pty.Columns, ss.pty.Rows, ss.pty.Width, ss.pty.Height = w.Columns, w.Rows, w.Width, w.Height
		if ss.ptmx != nil && !ss.exited {
			pty.Setsize(ss.ptmx, winsize(ss.pty))
		}
		return true
	case "shell":
		return ss.start(nil) == nil
	case "exec":
		var e execRequest
		if ssh.Unmarshal(req.Payload, &e) != nil {
			return false
		}
		return ss.start(&e.Command) == nil
	case "signal":
		var sr signalRequest
		if ssh.Unmarshal(req.Payload, &sr) != nil {
			return false
		}
		sig, ok := signalFromSSH(sr.Signal)
		if !ok {
			return false
		}
		return ss.signal(sig)
	}
	return false
}

func winsize(p *ptyRequest) *pty.Winsize {
	return &pty.Winsize{Rows: uint16(p.Rows), Cols: uint16(p.Columns), X: uint16(p.Width), Y: uint16(p.Height)}
}

func (ss *session) isStarted() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.started
}

// signal sends sig to the program's process group (it leads its own
// session), so a pipeline under sh -c gets it whole.
func (ss *session) signal(sig syscall.Signal) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.started || ss.exited {
		return false
	}
	return unix.Kill(-ss.pid, sig) == nil
}

// start runs the shell, with command (sh -c) or as a login shell, and a
// goroutine that reports its end on the channel.
func (ss *session) start(command *string) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.started {
		return fmt.Errorf("session already runs a program")
	}
	cfg := ss.srv.Session
	args := []string{cfg.Shell, "-l"}
	if command != nil {
		args = []string{cfg.Shell, "-c", *command}
	}
	cmd := &exec.Cmd{Path: cfg.Shell, Args: args, Dir: cfg.Dir}
	cmd.Env = append(append([]string{}, cfg.Env...), ss.env...)
	var (
		closeAfterStart []*os.File
		closeAtEnd      []*os.File
		outputs         []*os.File // read to EOF into the channel
		stdin           *os.File   // written from the channel
	)
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	if ss.pty != nil {
		ptmx, tty, err := pty.Open()
		if err != nil {
			return fmt.Errorf("open pty: %w", err)
		}
		if err := pty.Setsize(ptmx, winsize(ss.pty)); err != nil {
			ptmx.Close()
			tty.Close()
			return fmt.Errorf("pty size: %w", err)
		}
		if ss.pty.Term != "" {
			cmd.Env = append(cmd.Env, "TERM="+ss.pty.Term)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		closeAfterStart = []*os.File{tty}
		closeAtEnd = []*os.File{ptmx}
		outputs = []*os.File{ptmx}
		stdin = ptmx
		ss.ptmx = ptmx
	} else {
		var p [6]*os.File
		for i := 0; i < 6; i += 2 {
			r, w, err := os.Pipe()
			if err != nil {
				closeAll(p[:i])
				return fmt.Errorf("pipe: %w", err)
			}
			p[i], p[i+1] = r, w
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = p[0], p[3], p[5]
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		closeAfterStart = []*os.File{p[0], p[3], p[5]}
		closeAtEnd = []*os.File{p[1], p[2], p[4]}
		outputs = []*os.File{p[2], p[4]}
		stdin = p[1]
	}
	err := cmd.Start()
	closeAll(closeAfterStart)
	if err != nil {
		closeAll(closeAtEnd)
		ss.ptmx = nil
		return fmt.Errorf("start %s: %w", cfg.Shell, err)
	}
	ss.started, ss.pid = true, cmd.Process.Pid

	go func() {
		io.Copy(stdin, ss.ch)
		if ss.pty == nil {
			// The client's end of input is the program's.
			stdin.Close()
		}
	}()
	var copying sync.WaitGroup
	for i, r := range outputs {
		w := io.Writer(ss.ch)
		if i == 1 {
			w = ss.ch.Stderr()
		}
		copying.Add(1)
		go func() {
			defer copying.Done()
			io.Copy(w, r)
		}()
	}
	go func() {
		cmd.Wait()
		ss.mu.Lock()
		ss.exited = true
		ss.mu.Unlock()
		// Output written before the exit is still in the pipes: read it
		// to EOF, unless something the program left behind keeps the
		// pipes open past the grace.
		t := time.AfterFunc(cfg.OutputGrace, func() {
			for _, r := range outputs {
				r.SetReadDeadline(time.Now())
			}
		})
		copying.Wait()
		t.Stop()
		ss.ch.CloseWrite()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			ss.ch.SendRequest("exit-signal", false, ssh.Marshal(exitSignalMsg{
				Signal: signalToSSH(ws.Signal()), CoreDumped: ws.CoreDump(),
			}))
		} else {
			ss.ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{Status: uint32(ws.ExitStatus())}))
		}
		ss.ch.Close()
		closeAll(closeAtEnd)
	}()
	return nil
}
