package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-dev/devbox/hypervisor"
)

func TestCheckShared(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "home")
	data := filepath.Join(root, "data")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{filepath.Join(home, "src"), data, outside} {
		os.MkdirAll(d, 0o755)
	}
	// A link in the home share pointing out of it, and one outside
	// pointing in.
	os.Symlink(outside, filepath.Join(home, "escape"))
	os.Symlink(filepath.Join(home, "src"), filepath.Join(outside, "in"))
	m := &Machine{Name: "default", Config: Config{Shares: []Share{{Path: home}, {Path: data, ReadOnly: true}}}}

	for _, p := range []string{home, filepath.Join(home, "src"), filepath.Join(home, "src", "not", "yet"), data + "/x",
		filepath.Join(outside, "in"), filepath.Join(home, "src", "..", "src")} {
		if err := m.CheckShared(p); err != nil {
			t.Errorf("CheckShared(%s): %v", p, err)
		}
	}
	for _, p := range []string{outside, filepath.Join(home, "escape"), filepath.Join(home, "escape", "x"), root, home + "x", "/"} {
		err := m.CheckShared(p)
		if err == nil {
			t.Errorf("CheckShared(%s) passed", p)
			continue
		}
		msg := err.Error()
		for _, want := range []string{p, home, data + " (read-only)", "devbox up --share DIR"} {
			if !strings.Contains(msg, want) {
				t.Errorf("CheckShared(%s): %q lacks %q", p, msg, want)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("CheckShared(%s): more than one line: %q", p, msg)
		}
	}
	if err := m.CheckShared("rel/path"); err == nil {
		t.Error("a relative path passed")
	}
	if err := (&Machine{Name: "x"}).CheckShared(home); err == nil || !strings.Contains(err.Error(), "shared: none") {
		t.Errorf("no shares: %v", err)
	}
}

func TestParseShare(t *testing.T) {
	dir, _ := filepath.EvalSymlinks(t.TempDir())
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	for in, want := range map[string]Share{
		dir: {Path: dir}, dir + ":ro": {Path: dir, ReadOnly: true}, dir + ":rw": {Path: dir}, link + ":ro": {Path: dir, ReadOnly: true},
	} {
		if got, err := ParseShare(in); err != nil || got != want {
			t.Errorf("ParseShare(%s) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	for _, in := range []string{"", ":ro", filepath.Join(dir, "nope"), filepath.Join(dir, "f"), "/"} {
		if _, err := ParseShare(in); err == nil {
			t.Errorf("ParseShare(%q) passed", in)
		}
	}
}

func TestMergeShares(t *testing.T) {
	have := []Share{{Path: "/h"}}
	got, changed, err := mergeShares(have, []Share{{Path: "/h", ReadOnly: true}, {Path: "/d"}}, nil)
	if err != nil || !changed || len(got) != 2 || !got[0].ReadOnly || got[1].Path != "/d" {
		t.Errorf("merge: %+v %v %v", got, changed, err)
	}
	if _, changed, _ := mergeShares(have, []Share{{Path: "/h"}}, nil); changed {
		t.Error("the same share again counts as a change")
	}
	if got, changed, err := mergeShares(have, nil, []string{"/h"}); err != nil || !changed || len(got) != 0 {
		t.Errorf("unshare: %+v %v %v", got, changed, err)
	}
	if _, _, err := mergeShares(have, nil, []string{"/nope"}); err == nil || !strings.Contains(err.Error(), "shared: /h") {
		t.Errorf("unshare of an unshared dir: %v", err)
	}
}

func TestBootShares(t *testing.T) {
	dir := t.TempDir()
	m := &Machine{Name: "default", Config: Config{Driver: DriverQEMU, Shares: []Share{{Path: dir}, {Path: dir + "/ro", ReadOnly: true}}}}
	os.Mkdir(dir+"/ro", 0o755)
	hs, bs, err := m.bootShares(hypervisor.Capabilities{ShareTypes: []string{"virtiofs", "9p"}})
	if err != nil {
		t.Fatal(err)
	}
	// A read-only share goes by 9p, whose server refuses writes.
	if hs[0].Type != "virtiofs" || hs[1].Type != "9p" || !hs[1].ReadOnly || bs[1].Type != "9p" || bs[0].Path != dir || bs[0].Tag != hs[0].Tag || bs[0].Tag == bs[1].Tag {
		t.Errorf("boot shares: %+v %+v", hs, bs)
	}
	os.Remove(dir + "/ro")
	if _, _, err := m.bootShares(hypervisor.Capabilities{ShareTypes: []string{"9p"}}); err == nil || !strings.Contains(err.Error(), "--unshare "+dir+"/ro") {
		t.Errorf("vanished share: %v", err)
	}
}
