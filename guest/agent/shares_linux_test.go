package agent

import "testing"

func TestCheckSharePath(t *testing.T) {
	for _, p := range []string{"/home/me", "/root", "/tmp/x", "/usr/local/src", "/var/tmp", "/Users/me"} {
		if err := checkSharePath(p, "/var/lib/devbox"); err != nil {
			t.Errorf("%s refused: %v", p, err)
		}
	}
	for _, p := range []string{"/", "/usr", "/etc", "/proc/x", "/dev", "/run/devbox", "/var/lib/devbox", "/var/lib/devbox/x", "relative", "/home/../etc", "/home/"} {
		if err := checkSharePath(p, "/var/lib/devbox"); err == nil {
			t.Errorf("%s accepted as a mount point", p)
		}
	}
}
