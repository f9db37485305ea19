package proc

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as Timed's spawner.
func TestMain(m *testing.M) {
	Init()
	os.Exit(m.Run())
}

// ballast is resident memory that a directly forked child would report
// as its own peak RSS.
var ballast []byte

func TestTimedRSSIsTheCommands(t *testing.T) {
	ballast = make([]byte, 128<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	defer func() { ballast = nil }()
	s, err := Timed(exec.Command("true"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Wall <= 0 || s.MaxRSS <= 0 {
		t.Errorf("sample %+v: want positive wall time and RSS", s)
	}
	// The spawner is a fresh copy of this test binary: a few MiB at most.
	if s.MaxRSS > 64<<10 {
		t.Errorf("true(1) peaked at %d KiB: the caller's 128 MiB leaked into the figure", s.MaxRSS)
	}
	floor, err := Floor()
	if err != nil || floor <= 0 || floor > 64<<10 {
		t.Errorf("Floor() = %d KiB, %v", floor, err)
	}
}

func TestTimedFailure(t *testing.T) {
	_, err := Timed(exec.Command("sh", "-c", "echo out; echo oops >&2; exit 3"))
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("err = %v, want exit status 3", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "oops") || !strings.Contains(msg, "sh -c") {
		t.Errorf("err = %v, want the command line and its stderr", err)
	}
	_, err = Timed(exec.Command("/nonexistent/program"))
	if err == nil {
		t.Error("a program that does not exist ran")
	}
}

func TestTimedDirect(t *testing.T) {
	viaSpawner = false
	defer func() { viaSpawner = true }()
	s, err := Timed(exec.Command("true"))
	if err != nil || s.Wall <= 0 || s.MaxRSS <= 0 {
		t.Errorf("direct: %+v, %v", s, err)
	}
}

func TestTail(t *testing.T) {
	if got := Tail("abcdef", 10); got != "abcdef" {
		t.Errorf("Tail short = %q", got)
	}
	if got := Tail("abcdef", 2); got != "...ef" {
		t.Errorf("Tail cut = %q", got)
	}
}
