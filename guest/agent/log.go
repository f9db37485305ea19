package agent

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// logPrefix starts every line the agent writes to the console.
const logPrefix = "devbox-agent: "

// logger writes the agent's lines to the console: errors and warnings
// always, the rest only in debug mode (devbox.debug=1 on the kernel command
// line), so a normal boot prints nothing but the ready line.
type logger struct {
	mu    sync.Mutex
	w     io.Writer
	debug atomic.Bool // set once early; boot goroutines read it
}

func (l *logger) printf(format string, args ...any) {
	if l == nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		io.WriteString(l.w, logPrefix+msg+"\n")
	}
}

// raw writes line as it is (the ready line carries its own prefix).
func (l *logger) raw(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		io.WriteString(l.w, line+"\n")
	}
}

// Errorf logs something that went wrong.
func (l *logger) Errorf(format string, args ...any) { l.printf("error: "+format, args...) }

// Warnf logs something the host's user may want to know.
func (l *logger) Warnf(format string, args ...any) { l.printf("warning: "+format, args...) }

// Infof logs a notable event (formatting the data disk): always shown.
func (l *logger) Infof(format string, args ...any) { l.printf(format, args...) }

// Debugf logs detail shown only in debug mode.
func (l *logger) Debugf(format string, args ...any) {
	if l != nil && l.debug.Load() {
		l.printf(format, args...)
	}
}

// setDebug turns debug mode on or off.
func (l *logger) setDebug(on bool) { l.debug.Store(on) }

// setOutput switches the destination (stderr until /dev/console opens).
func (l *logger) setOutput(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

// stepTimer records how long each boot step takes, for the debug log and
// the status file the host can read.
type stepTimer struct {
	mu    sync.Mutex
	steps []Step
}

// Step is one timed boot step.
type Step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"durationNs"`
	Err      string        `json:"error,omitempty"`
}

// time runs f as the named step and records its duration and error.
func (t *stepTimer) time(name string, f func() error) error {
	start := time.Now()
	err := f()
	s := Step{Name: name, Duration: time.Since(start)}
	if err != nil {
		s.Err = err.Error()
	}
	t.mu.Lock()
	t.steps = append(t.steps, s)
	t.mu.Unlock()
	return err
}

// list returns a copy of the recorded steps.
func (t *stepTimer) list() []Step {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Step(nil), t.steps...)
}
