package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/devbox-dev/devbox/config"
)

// verifyCacheMax bounds the files the cache remembers; the oldest go
// first.
const verifyCacheMax = 16

// racyWindow: a file changed this recently is hashed but not remembered.
// File times are coarse (a jiffy on Linux), so a file rewritten in place
// at the same size within one tick would keep its key; one changed after
// it was remembered always gets a later time (git's "racy" index entries).
var racyWindow = 2 * time.Second

// verifyCache remembers image files whose digest was checked, by a key
// that changes whenever the file does (path, inode, size, mtime, ctime),
// in $DEVBOX_HOME/cache/guest-verified.json. It guards against damaged
// or half-written images, not against someone who can write the image
// (who could rewrite guest.json as well). A cache that cannot be read or
// written only costs the hashing.
type verifyCache struct {
	path string // "" when devbox's home does not exist: no cache

	mu      sync.Mutex
	entries map[string]verifyEntry
	dirty   bool
}

type verifyEntry struct {
	Digest string    `json:"digest"`
	Time   time.Time `json:"time"`
}

func openVerifyCache() *verifyCache {
	c := &verifyCache{entries: map[string]verifyEntry{}}
	home, err := config.Home()
	if err != nil {
		return c
	}
	// Only beside a devbox home that exists (a machine was made): a
	// program that merely loads an image leaves nothing behind.
	if fi, err := os.Stat(home); err != nil || !fi.IsDir() {
		return c
	}
	c.path = filepath.Join(home, "cache", "guest-verified.json")
	if b, err := os.ReadFile(c.path); err == nil {
		_ = json.Unmarshal(b, &c.entries)
	}
	return c
}

// verified says whether the file with key was checked against digest.
func (c *verifyCache) verified(key, digest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return ok && e.Digest == digest
}

// add records that the file with key, last changed at changed, has
// digest.
func (c *verifyCache) add(key string, changed time.Time, digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.path == "" || time.Since(changed) < racyWindow {
		return
	}
	c.entries[key] = verifyEntry{Digest: digest, Time: time.Now().UTC()}
	for len(c.entries) > verifyCacheMax {
		var oldest string
		for k, e := range c.entries {
			if oldest == "" || e.Time.Before(c.entries[oldest].Time) {
				oldest = k
			}
		}
		delete(c.entries, oldest)
	}
	c.dirty = true
}

// save writes the cache if it changed: to a temp file renamed into
// place, so a concurrent reader sees the old or the new one whole.
func (c *verifyCache) save() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty || c.path == "" {
		return
	}
	b, err := json.Marshal(c.entries)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return
	}
	tmp := fmt.Sprintf("%s.%d.tmp", c.path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, c.path); err != nil {
		os.Remove(tmp)
	}
}

// cacheKey identifies a file's content as far as its metadata can: any
// write changes its ctime (which no one can set back), and a replaced
// file has another inode.
func cacheKey(path string, fi os.FileInfo) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	id, _ := statID(fi)
	return fmt.Sprintf("%s|%d|%d|%s", abs, fi.Size(), fi.ModTime().UnixNano(), id)
}

// lastChange is the later of the file's mtime and ctime.
func lastChange(fi os.FileInfo) time.Time {
	t := fi.ModTime()
	if _, ctime := statID(fi); ctime.After(t) {
		t = ctime
	}
	return t
}
