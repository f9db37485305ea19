package unpack

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestApplyMalicious feeds layers that try to write outside the layer
// directory. Each must fail with an *EntryError naming the bad entry, and
// leave the directory outside (a sibling of the layer's parent, like /etc
// would be) exactly as it was.
func TestApplyMalicious(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries func(outside string) []entry
		bad     string // the entry the error must name
		reason  string // a piece of the reason
	}{{
		name:    "dotdot climbs out",
		entries: func(string) []entry { return []entry{file("../../etc/x", "pwned")} },
		bad:     "../../etc/x", reason: "escapes",
	}, {
		name:    "dotdot after a component climbs out",
		entries: func(string) []entry { return []entry{file("a/../../x", "pwned")} },
		bad:     "a/../../x", reason: "escapes",
	}, {
		name:    "absolute name with dotdot",
		entries: func(string) []entry { return []entry{file("/../x", "pwned")} },
		bad:     "/../x", reason: "escapes",
	}, {
		name:    "directory dotdot",
		entries: func(string) []entry { return []entry{dir("../")} },
		bad:     "../", reason: "escapes",
	}, {
		name: "write through an absolute symlink",
		entries: func(outside string) []entry {
			return []entry{symlink("evil", outside), file("evil/pwned", "pwned")}
		},
		bad: "evil/pwned", reason: `parent "evil" is a symlink`,
	}, {
		name: "write through a symlink deeper down",
		entries: func(outside string) []entry {
			return []entry{dir("a/"), symlink("a/evil", outside), file("a/evil/sub/pwned", "pwned")}
		},
		bad: "a/evil/sub/pwned", reason: `parent "a/evil" is a symlink`,
	}, {
		name: "symlink to dotdot",
		entries: func(string) []entry {
			return []entry{symlink("up", ".."), file("up/pwned", "pwned")}
		},
		bad: "up/pwned", reason: "symlink",
	}, {
		name: "symlink to dotdot dotdot",
		entries: func(string) []entry {
			return []entry{symlink("up", "../.."), dir("up/pwned/")}
		},
		bad: "up/pwned/", reason: "symlink",
	}, {
		name: "relative symlink chain",
		entries: func(string) []entry {
			return []entry{dir("a/"), symlink("a/b", ".."), symlink("c", "a/b/.."), file("c/pwned", "")}
		},
		bad: "c/pwned", reason: "symlink",
	}, {
		name: "symlink to a directory inside the layer is refused too",
		entries: func(string) []entry {
			return []entry{dir("usr/lib/"), symlink("lib", "usr/lib"), file("lib/x", "")}
		},
		bad: "lib/x", reason: "symlink",
	}, {
		name: "whiteout through a symlink",
		entries: func(outside string) []entry {
			return []entry{symlink("evil", outside), file("evil/.wh.victim", "")}
		},
		bad: "evil/.wh.victim", reason: "symlink",
	}, {
		name: "opaque marker through a symlink",
		entries: func(outside string) []entry {
			return []entry{symlink("evil", outside), file("evil/.wh..wh..opq", "")}
		},
		bad: "evil/.wh..wh..opq", reason: "symlink",
	}, {
		name:    "hardlink target climbs out",
		entries: func(string) []entry { return []entry{hardlink("passwd", "../../etc/passwd")} },
		bad:     "passwd", reason: "escapes",
	}, {
		name: "hardlink through a symlinked directory",
		entries: func(outside string) []entry {
			return []entry{symlink("d", outside), hardlink("stolen", "d/victim")}
		},
		bad: "stolen", reason: `hardlink target "d/victim": parent "d" is a symlink`,
	}, {
		name: "hardlink into a symlinked directory",
		entries: func(outside string) []entry {
			return []entry{file("f", "x"), symlink("d", outside), hardlink("d/planted", "f")}
		},
		bad: "d/planted", reason: "symlink",
	}, {
		name: "hardlink with an absolute target outside",
		entries: func(outside string) []entry {
			// Read as layer-relative, the target does not exist in the layer.
			return []entry{hardlink("stolen", filepath.Join(outside, "victim"))}
		},
		bad: "stolen", reason: "not in the layer",
	}, {
		name:    "hardlink to a missing entry",
		entries: func(string) []entry { return []entry{hardlink("a", "nothing")} },
		bad:     "a", reason: "not in the layer",
	}, {
		name:    "hardlink to a directory",
		entries: func(string) []entry { return []entry{dir("d/"), hardlink("a", "d")} },
		bad:     "a", reason: "is a directory",
	}, {
		name:    "file as a parent",
		entries: func(string) []entry { return []entry{file("f", ""), file("f/x", "")} },
		bad:     "f/x", reason: `parent "f" is not a directory`,
	}, {
		name:    "layer root replaced by a file",
		entries: func(string) []entry { return []entry{file(".", "x")} },
		bad:     ".", reason: "layer root",
	}, {
		name:    "layer root replaced by a symlink",
		entries: func(outside string) []entry { return []entry{symlink("/", outside)} },
		bad:     "/", reason: "layer root",
	}, {
		name:    "empty whiteout",
		entries: func(string) []entry { return []entry{file("a/.wh.", "")} },
		bad:     "a/.wh.", reason: "whiteout",
	}, {
		name: "unsupported type",
		entries: func(string) []entry {
			return []entry{{hdr: tar.Header{Typeflag: 'Z', Name: "z", ModTime: epoch}}}
		},
		bad: "z", reason: "unsupported entry type",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := t.TempDir()
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("victim"), 0o600); err != nil {
				t.Fatal(err)
			}
			layer, _, err := applyEntries(t, tt.entries(outside)...)
			var ee *EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("Apply: %v, want an *EntryError", err)
			}
			if ee.Image != testImage || ee.Entry != tt.bad || !strings.Contains(ee.Reason, tt.reason) {
				t.Errorf("error %q, want entry %q and a reason with %q", err, tt.bad, tt.reason)
			}
			if got := listTree(t, outside); !slices.Equal(got, []string{"victim"}) {
				t.Errorf("outside dir now holds %q", got)
			}
			assertContent(t, victim, "victim")
			assertPerm(t, victim, 0o600)
			assertOwner(t, victim, 0, 0)
			if st := lstat(t, victim); st.Nlink != 1 {
				t.Errorf("victim has %d links", st.Nlink)
			}
			if got := listTree(t, filepath.Dir(layer)); !slices.Equal(got[:1], []string{"layer"}) || slices.ContainsFunc(got, func(p string) bool {
				return !strings.HasPrefix(p, "layer")
			}) {
				t.Errorf("layer's parent now holds %q", got)
			}
			assertNoXattr(t, outside, "trusted.overlay.opaque")
			assertMissing(t, filepath.Join(outside, "pwned"))
		})
	}
}

// TestApplySymlinkReplacedByDir checks the legitimate sequence that looks
// like an attack: a symlink later replaced by a real directory.
func TestApplySymlinkReplacedByDir(t *testing.T) {
	requireRoot(t)
	outside := t.TempDir()
	layer, _ := mustApply(t, symlink("d", outside), dir("d/"), file("d/f", "inside"), symlink("d/l", outside))
	assertContent(t, filepath.Join(layer, "d/f"), "inside")
	assertLink(t, filepath.Join(layer, "d/l"), outside)
	if got := listTree(t, outside); len(got) != 0 {
		t.Errorf("outside dir now holds %q", got)
	}
}
