package spec

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"testing/fstest"

	"github.com/devbox-dev/devbox/images/layerfs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestUser(t *testing.T) {
	tests := []struct {
		user      string
		imageUser string
		uid, gid  uint32
		gids      []uint32 // primary first, then the groups listing the user
		err       string
	}{
		{user: "", uid: 0, gid: 0, gids: []uint32{0, 0, 1}},
		{user: "root", uid: 0, gid: 0, gids: []uint32{0, 0, 1}},
		{user: "0", uid: 0, gid: 0, gids: []uint32{0, 0, 1}},
		{user: "bob", uid: 1000, gid: 1000, gids: []uint32{1000, 1, 999}},
		{user: "1000", uid: 1000, gid: 1000, gids: []uint32{1000, 1, 999}}, // first entry with the uid
		{user: "twin", uid: 1000, gid: 1000, gids: []uint32{1000}},
		{user: "alice", uid: 1001, gid: 1001, gids: []uint32{1001, 50, 999}},
		{user: "bob:staff", uid: 1000, gid: 50, gids: []uint32{50}},
		{user: "bob:50", uid: 1000, gid: 50, gids: []uint32{50}},
		{user: "bob:4242", uid: 1000, gid: 4242, gids: []uint32{4242}},
		{user: "bob:staff:extra", uid: 1000, gid: 50, gids: []uint32{50}},
		{user: "4242", uid: 4242, gid: 0, gids: []uint32{0}},
		{user: "4242:4243", uid: 4242, gid: 4243, gids: []uint32{4243}},
		{user: ":staff", uid: 0, gid: 50, gids: []uint32{50}},
		{imageUser: "alice", uid: 1001, gid: 1001, gids: []uint32{1001, 50, 999}},
		{user: "bob", imageUser: "alice", uid: 1000, gid: 1000, gids: []uint32{1000, 1, 999}},
		{user: "nobody2", err: "unable to find user nobody2: no matching entries in passwd file"},
		{imageUser: "ghost", err: "unable to find user ghost: no matching entries in passwd file"},
		{user: "bob:nogroup", err: "unable to find group nogroup: no matching entries in group file"},
		{user: "-1", err: "uids and gids must be in range 0-2147483647"},
		{user: "2147483648", err: "uids and gids must be in range 0-2147483647"},
		{user: "bob:-1", err: "uids and gids must be in range 0-2147483647"},
	}
	for _, tt := range tests {
		img := config(nil, []string{"sh"})
		img.Config.User = tt.imageUser
		s, err := Generate(testID, img, Options{User: tt.user}, etc, Files{}, "/r")
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("-u %q (image %q): err = %v, want %q", tt.user, tt.imageUser, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("-u %q (image %q): %v", tt.user, tt.imageUser, err)
			continue
		}
		want := specs.User{UID: tt.uid, GID: tt.gid, AdditionalGids: tt.gids}
		if !reflect.DeepEqual(s.Process.User, want) {
			t.Errorf("-u %q (image %q): User = %+v, want %+v", tt.user, tt.imageUser, s.Process.User, want)
		}
	}
}

func TestUserWithoutAccountFiles(t *testing.T) {
	for _, image := range []fs.FS{fstest.MapFS{}, nil} {
		for _, tt := range []struct {
			user     string
			uid, gid uint32
			home     string
		}{
			{"", 0, 0, "/"},
			{"1000", 1000, 0, "/"},
			{"1000:1000", 1000, 1000, "/"},
		} {
			s, err := Generate(testID, sh, Options{User: tt.user}, image, Files{}, "/r")
			if err != nil {
				t.Fatalf("-u %q: %v", tt.user, err)
			}
			want := specs.User{UID: tt.uid, GID: tt.gid, AdditionalGids: []uint32{tt.gid}}
			if !reflect.DeepEqual(s.Process.User, want) {
				t.Errorf("-u %q: %+v, want %+v", tt.user, s.Process.User, want)
			}
			if !slices.Contains(s.Process.Env, "HOME="+tt.home) {
				t.Errorf("-u %q: env %q", tt.user, s.Process.Env)
			}
		}
		_, err := Generate(testID, sh, Options{User: "bob"}, image, Files{}, "/r")
		if err == nil || err.Error() != "unable to find user bob: no matching entries in passwd file" {
			t.Errorf("-u bob without passwd: %v", err)
		}
		_, err = Generate(testID, sh, Options{User: "0:wheel"}, image, Files{}, "/r")
		if err == nil || err.Error() != "unable to find group wheel: no matching entries in group file" {
			t.Errorf("-u 0:wheel without group: %v", err)
		}
	}
}

func TestUserAccountFileQuirks(t *testing.T) {
	image := fstest.MapFS{
		"etc/passwd": {Data: []byte("# a comment\n\n  svc:x:500:500::/srv:/bin/false  \nbad:x:notanumber:1::/:/bin/sh\nshort:x\n")},
		"etc/group":  {Data: []byte("svc:x:500:\nops:x:600:dev,svc\nweird:x:NaN:svc\n")},
	}
	s, err := Generate(testID, sh, Options{User: "svc"}, image, Files{}, "/r")
	if err != nil {
		t.Fatal(err)
	}
	if want := (specs.User{UID: 500, GID: 500, AdditionalGids: []uint32{500, 600}}); !reflect.DeepEqual(s.Process.User, want) {
		t.Errorf("User = %+v, want %+v", s.Process.User, want)
	}
	if !slices.Contains(s.Process.Env, "HOME=/srv") {
		t.Errorf("env %q", s.Process.Env)
	}
	for _, u := range []string{"bad", "short"} {
		if _, err := Generate(testID, sh, Options{User: u}, image, Files{}, "/r"); err == nil {
			t.Errorf("-u %s: a malformed line matched", u)
		}
	}
}

// TestUserThroughLayers resolves users in an image made of hand-made layer
// directories, read through layerfs.
func TestUserThroughLayers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: whiteout device nodes")
	}
	base := t.TempDir()
	layer := func(i int, files map[string]string, whiteouts ...string) string {
		dir := filepath.Join(base, strconv.Itoa(i))
		for name, data := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range whiteouts {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	layers := []string{
		layer(0, map[string]string{
			"etc/passwd":                "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
			"etc/group":                 "root:x:0:\nwheel:x:10:root,bob\n",
			"usr/share/accounts/passwd": "root:x:0:0:root:/root:/bin/sh\ncarol:x:2000:2000::/home/carol:/bin/sh\n",
		}),
		layer(1, map[string]string{"app/run": "#!/bin/sh\n"}, "etc/group"),
		layer(2, nil, "etc/passwd"),
	}
	// The top layer deletes etc/passwd; a link in a fourth layer brings one
	// back from elsewhere in the image.
	top := filepath.Join(base, "3")
	if err := os.MkdirAll(filepath.Join(top, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../usr/share/accounts/passwd", filepath.Join(top, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	image := layerfs.New(append(layers, top))

	s, err := Generate(testID, sh, Options{User: "carol"}, image, Files{}, "/r")
	if err != nil {
		t.Fatal(err)
	}
	if want := (specs.User{UID: 2000, GID: 2000, AdditionalGids: []uint32{2000}}); !reflect.DeepEqual(s.Process.User, want) {
		t.Errorf("carol: %+v, want %+v (etc/group is deleted)", s.Process.User, want)
	}
	if !slices.Contains(s.Process.Env, "HOME=/home/carol") {
		t.Errorf("carol: env %q", s.Process.Env)
	}
	if _, err := Generate(testID, sh, Options{User: "bob"}, image, Files{}, "/r"); err == nil || err.Error() != "unable to find user bob: no matching entries in passwd file" {
		t.Errorf("bob, deleted with the lower passwd: %v", err)
	}
	if _, err := Generate(testID, sh, Options{User: "root:wheel"}, image, Files{}, "/r"); err == nil {
		t.Error("root:wheel: the deleted group file was read")
	}
}

// BenchmarkGenerateLayerFS is Generate as `devbox run` calls it: a fresh
// layerfs over a five-layer image for each container.
func BenchmarkGenerateLayerFS(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	base := b.TempDir()
	var layers []string
	for i := range 5 {
		dir := filepath.Join(base, strconv.Itoa(i))
		files := map[string]string{"etc/layer" + strconv.Itoa(i): "x"}
		if i == 0 {
			files["etc/passwd"] = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n"
			files["etc/group"] = "root:x:0:\ndaemon:x:1:\nbob:x:1000:\n"
		}
		for name, data := range files {
			p := filepath.Join(dir, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(data), 0o644)
		}
		layers = append(layers, dir)
	}
	img := &v1.ConfigFile{Config: v1.Config{
		Entrypoint: []string{"/docker-entrypoint.sh"},
		Cmd:        []string{"nginx", "-g", "daemon off;"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.27.0"},
	}}
	o := Options{Binds: []Bind{{Source: "/home/me/src", Destination: "/src"}}, Terminal: true}
	for b.Loop() {
		if _, err := Generate(testID, img, o, layerfs.New(layers), testFiles, "/rootfs"); err != nil {
			b.Fatal(err)
		}
	}
}
