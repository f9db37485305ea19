package unpack

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// lowerLayer builds a lower layer directory from a list of "path" (dir),
// "path=" (file), "path->target" (symlink), "path!" (whiteout) and
// "path/" + opaque (opaque dir, spelled "path*").
func lowerLayer(t *testing.T, specs ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, s := range specs {
		var err error
		switch {
		case strings.Contains(s, "->"):
			p, target, _ := strings.Cut(s, "->")
			err = os.Symlink(target, filepath.Join(root, p))
		case strings.HasSuffix(s, "="):
			err = os.WriteFile(filepath.Join(root, strings.TrimSuffix(s, "=")), nil, 0o644)
		case strings.HasSuffix(s, "!"):
			err = unix.Mknod(filepath.Join(root, strings.TrimSuffix(s, "!")), unix.S_IFCHR, 0)
		case strings.HasSuffix(s, "*"):
			p := filepath.Join(root, strings.TrimSuffix(s, "*"))
			if err = os.Mkdir(p, 0o755); err == nil {
				err = unix.Setxattr(p, opaqueXattr, []byte("y"), 0)
			}
		default:
			err = os.Mkdir(filepath.Join(root, s), 0o755)
		}
		if err != nil {
			t.Fatalf("lower layer %q: %v", s, err)
		}
	}
	return root
}

func TestCheckLower(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name     string
		implicit []string
		lowers   [][]string // top-most first
		wantErr  string     // the implicit dir the error names; "" for no error
	}{
		{"symlink in the only lower", []string{"lib"}, [][]string{{"lib->/etc"}}, "lib"},
		{"relative symlink", []string{"lib"}, [][]string{{"usr", "usr/lib", "lib->usr/lib"}}, "lib"},
		{"whiteout in the lower", []string{"lib"}, [][]string{{"lib!"}}, ""},
		{"whiteout above the symlink", []string{"lib"}, [][]string{{"lib!"}, {"lib->/etc"}}, ""},
		{"missing above the symlink", []string{"lib"}, [][]string{{"usr"}, {"lib->/etc"}}, "lib"},
		{"directory above the symlink", []string{"lib"}, [][]string{{"lib"}, {"lib->/etc"}}, ""},
		{"file in the lower", []string{"lib"}, [][]string{{"lib="}}, ""},
		{"absent everywhere", []string{"lib", "lib/x"}, [][]string{{"usr"}, {"etc"}}, ""},
		{"nested symlink", []string{"usr", "usr/lib"}, [][]string{{"usr", "usr/lib->/lib"}}, "usr/lib"},
		{"symlink ancestor ends the lookup", []string{"usr/lib"}, [][]string{{"usr->/x"}}, ""},
		{"opaque ancestor hides lower layers", []string{"usr/lib"}, [][]string{{"usr*"}, {"usr", "usr/lib->/x"}}, ""},
		{"plain ancestor does not", []string{"usr/lib"}, [][]string{{"usr"}, {"usr", "usr/lib->/x"}}, "usr/lib"},
		{"no lowers", []string{"lib"}, nil, ""},
		{"no implicit dirs", nil, [][]string{{"lib->/etc"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lowers []string
			for _, specs := range tt.lowers {
				lowers = append(lowers, lowerLayer(t, specs...))
			}
			err := CheckLower(testImage, tt.implicit, lowers)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckLower: %v, want nil", err)
				}
				return
			}
			var ee *EntryError
			if !errors.As(err, &ee) || ee.Entry != tt.wantErr || ee.Image != testImage {
				t.Fatalf("CheckLower: %v, want an *EntryError for %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckLowerRejectsBadPaths(t *testing.T) {
	lower := t.TempDir()
	for _, p := range []string{"../etc", "/lib", "a/../b", ".", ""} {
		if err := CheckLower(testImage, []string{p}, []string{lower}); err == nil {
			t.Errorf("CheckLower(%q) = nil, want an error", p)
		}
	}
}

// TestCheckLowerWithApply stacks two applied layers: the upper one writes
// lib/x without listing lib, which the lower one made a symlink to /etc.
func TestCheckLowerWithApply(t *testing.T) {
	requireRoot(t)
	lower, _ := mustApply(t, symlink("lib", "/etc"), dir("usr/"))
	_, upper := mustApply(t, file("lib/x", "x"), dir("usr/"), file("usr/share/y", "y"))
	err := CheckLower(testImage, upper.ImplicitDirs, []string{lower})
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Entry != "lib" {
		t.Fatalf("CheckLower: %v, want an *EntryError for lib", err)
	}
	if !strings.Contains(err.Error(), `layer of `+testImage+`: entry "lib": `) {
		t.Errorf("message %q", err)
	}

	_, fixed := mustApply(t, dir("lib/"), file("lib/x", "x"))
	if err := CheckLower(testImage, fixed.ImplicitDirs, []string{lower}); err != nil {
		t.Errorf("CheckLower with lib listed: %v", err)
	}
}
