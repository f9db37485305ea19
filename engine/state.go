package engine

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Container is the record of one container, kept in
// DATAROOT/containers/ID/state.json.
type Container struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Image    string    `json:"image"`
	ImageID  string    `json:"imageID"`
	Command  []string  `json:"command"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// State is "created", "running" or "exited".
	State     string `json:"state"`
	ExitCode  int    `json:"exitCode"`
	OOMKilled bool   `json:"oomKilled,omitempty"`
	// Reason says why a container ended other than by itself.
	Reason string `json:"reason,omitempty"`
	// AutoRemove is --rm.
	AutoRemove bool `json:"autoRemove,omitempty"`
	// Owner and OwnerStart identify the devbox process that runs the
	// container, so a later command can tell it died (pid reuse aside).
	Owner      int    `json:"owner,omitempty"`
	OwnerStart uint64 `json:"ownerStart,omitempty"`
	// Cgroup is the container's cgroup path, for clean-up after a crash.
	Cgroup string `json:"cgroup,omitempty"`
}

// The container states.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
)

// ErrNoContainer means no container matches a name or ID.
var ErrNoContainer = errors.New("no such container")

// containers keeps container records under dir.
type containers struct {
	dir string
}

func (cs containers) path(id string) string { return filepath.Join(cs.dir, id) }

// lock serialises creating and naming containers between processes.
func (cs containers) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(cs.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// validName is docker's rule for container names: letters, digits, '_',
// '.' and '-', starting with a letter or digit. (Not a regexp: every
// process of this binary, container init stages included, would compile
// it at start.)
func validName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return name != ""
}

// newID returns a new container ID: 64 random hex digits.
func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// create makes the directory and first record of a new container with a
// unique name (docker's rule: given, or generated), and its ID unless it
// has one.
func (cs containers) create(c *Container) error {
	if c.Name != "" && !validName(c.Name) {
		return fmt.Errorf("invalid container name %q: use letters, digits, '_', '.', '-', starting with a letter or digit", c.Name)
	}
	unlock, err := cs.lock()
	if err != nil {
		return fmt.Errorf("lock containers: %w", err)
	}
	defer unlock()
	all, err := cs.list()
	if err != nil {
		return err
	}
	if c.ID == "" {
		c.ID = newID()
	}
	if c.Name == "" {
		c.Name = generatedName(c.ID)
	}
	for _, o := range all {
		if o.Name == c.Name {
			return fmt.Errorf("container name %q is already in use by container %s: remove it (devbox rm %s) or choose another --name", c.Name, o.ID[:12], c.Name)
		}
	}
	if err := os.Mkdir(cs.path(c.ID), 0o700); err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	return cs.save(c)
}

// generatedName is a readable name derived from the ID.
func generatedName(id string) string {
	adj := []string{"brave", "calm", "eager", "fond", "keen", "lucid", "merry", "nimble", "proud", "quick", "sunny", "witty"}
	noun := []string{"babbage", "curie", "darwin", "euler", "gauss", "hopper", "knuth", "lovelace", "noether", "ritchie", "turing", "wozniak"}
	n, _ := strconv.ParseUint(id[:8], 16, 32)
	return adj[n%uint64(len(adj))] + "_" + noun[(n/16)%uint64(len(noun))] + "_" + id[8:12]
}

func (cs containers) save(c *Container) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(cs.path(c.ID), ".state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save container %s: %w", c.ID[:12], err)
	}
	return os.Rename(tmp, filepath.Join(cs.path(c.ID), "state.json"))
}

func (cs containers) load(id string) (*Container, error) {
	b, err := os.ReadFile(filepath.Join(cs.path(id), "state.json"))
	if err != nil {
		return nil, err
	}
	var c Container
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("read container %s: %w", id, err)
	}
	return &c, nil
}

// list returns every container, newest first. A directory without a
// readable record (a crash between mkdir and the first save) is skipped.
func (cs containers) list() ([]*Container, error) {
	ents, err := os.ReadDir(cs.dir)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []*Container
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		c, err := cs.load(e.Name())
		if err != nil {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// find resolves a name, a full ID or a unique ID prefix.
func (cs containers) find(ref string) (*Container, error) {
	all, err := cs.list()
	if err != nil {
		return nil, err
	}
	var byPrefix []*Container
	for _, c := range all {
		if c.Name == ref || c.ID == ref {
			return c, nil
		}
		if strings.HasPrefix(c.ID, ref) {
			byPrefix = append(byPrefix, c)
		}
	}
	switch len(byPrefix) {
	case 1:
		return byPrefix[0], nil
	case 0:
		return nil, fmt.Errorf("%w: %s (see `devbox ps -a`)", ErrNoContainer, ref)
	}
	return nil, fmt.Errorf("container ID prefix %q is ambiguous: give more digits", ref)
}

func (cs containers) remove(id string) error {
	// Rename first so a half-removed container never looks like a whole one.
	trash := filepath.Join(cs.dir, ".trash-"+id)
	if err := os.Rename(cs.path(id), trash); err != nil {
		return fmt.Errorf("remove container %s: %w", id[:12], err)
	}
	return os.RemoveAll(trash)
}

// processStart returns the start time of pid (field 22 of
// /proc/PID/stat), which tells a live process from a reused pid.
func processStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses: skip past the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// ownerAlive says whether the devbox process that ran c still does.
func ownerAlive(c *Container) bool {
	if c.Owner == 0 {
		return false
	}
	if err := syscall.Kill(c.Owner, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return processStart(c.Owner) == c.OwnerStart
}
