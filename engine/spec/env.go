package spec

import (
	"fmt"
	"strings"

	"github.com/devbox-dev/devbox/runtime"
)

// DefaultPath is the PATH a container gets when its image sets none.
const DefaultPath = runtime.DefaultPath

// environment is the container's environment as Docker and runc build it:
//
//  1. the container's Env is the user's entries, then the image's whose
//     names the user did not set (dockerd's merge);
//  2. onto the defaults PATH, HOSTNAME and (with -t) TERM=xterm, each of
//     those replaces a default of its name in place or is appended; an
//     entry without "=" removes a default of that name and is otherwise
//     dropped (dockerd's ReplaceOrAppendEnvValues);
//  3. a name set twice keeps its first place and its last value (runc sets
//     the variables one by one).
//
// HOME is left to setHome once the user is known; hasHome reports whether
// the result already sets it to something non-empty.
func environment(image, user []string, hostname string, tty bool) (env []string, hasHome bool, err error) {
	for _, e := range user {
		if err := checkEnv(e); err != nil {
			return nil, false, fmt.Errorf("-e %q: %w", e, err)
		}
	}
	for _, e := range image {
		if err := checkEnv(e); err != nil {
			return nil, false, fmt.Errorf("image ENV %q: %w", e, err)
		}
	}

	env = make([]string, 0, 4+len(image)+len(user))
	env = append(env, "PATH="+DefaultPath, "HOSTNAME="+hostname)
	if tty {
		env = append(env, "TERM=xterm")
	}
	defaults := len(env)
	apply := func(e string) {
		name, _, ok := strings.Cut(e, "=")
		if i := indexEnv(env, name); i >= 0 {
			if ok {
				env[i] = e // replace in place, keep the first place
			} else if i < defaults {
				env = append(env[:i], env[i+1:]...)
				defaults--
			}
			return
		}
		if ok {
			env = append(env, e)
		}
	}
	for _, e := range user {
		apply(e)
	}
	for _, e := range image {
		name, _, _ := strings.Cut(e, "=")
		if !setsName(user, name) {
			apply(e)
		}
	}
	if i := indexEnv(env, "HOME"); i >= 0 && len(env[i]) > len("HOME=") {
		hasHome = true
	}
	return env, hasHome, nil
}

// checkEnv rejects what runc would refuse to start with.
func checkEnv(e string) error {
	name, _, _ := strings.Cut(e, "=")
	switch {
	case name == "":
		return fmt.Errorf("the variable name is empty; use NAME=value")
	case strings.IndexByte(e, 0) >= 0:
		return fmt.Errorf("contains a NUL byte; remove it")
	}
	return nil
}

// indexEnv returns the index of the entry setting name, or -1.
func indexEnv(env []string, name string) int {
	for i, e := range env {
		if len(e) > len(name) && e[len(name)] == '=' && e[:len(name)] == name {
			return i
		}
	}
	return -1
}

// setsName reports whether any entry of env names name, with or without "=".
func setsName(env []string, name string) bool {
	for _, e := range env {
		if n, _, _ := strings.Cut(e, "="); n == name {
			return true
		}
	}
	return false
}

// setHome sets HOME to home, in place when HOME is set but empty (runc
// treats an empty HOME as unset).
func setHome(env []string, home string) []string {
	if i := indexEnv(env, "HOME"); i >= 0 {
		env[i] = "HOME=" + home
		return env
	}
	return append(env, "HOME="+home)
}
