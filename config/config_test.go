package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHomeAndDataRoot(t *testing.T) {
	home, _ := os.UserHomeDir()
	t.Setenv("HOME", home)

	t.Setenv("DEVBOX_HOME", "")
	if h, err := Home(); err != nil || h != filepath.Join(home, ".devbox") {
		t.Errorf("Home() = %q, %v; want ~/.devbox", h, err)
	}
	t.Setenv("DEVBOX_HOME", "~/elsewhere")
	if h, err := Home(); err != nil || h != filepath.Join(home, "elsewhere") {
		t.Errorf("Home() = %q, %v; want ~ expanded", h, err)
	}
	t.Setenv("DEVBOX_ROOT", "")
	if r, _ := DataRoot(); r != DefaultDataRoot {
		t.Errorf("DataRoot() = %q, want %s", r, DefaultDataRoot)
	}
	t.Setenv("DEVBOX_ROOT", "/srv/devbox")
	if r, _ := DataRoot(); r != "/srv/devbox" {
		t.Errorf("DataRoot() = %q", r)
	}
	wd, _ := os.Getwd()
	if p, _ := ExpandPath("rel/x"); p != filepath.Join(wd, "rel/x") {
		t.Errorf("ExpandPath(rel/x) = %q, want it absolute", p)
	}
}
