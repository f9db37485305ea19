package unpack

import (
	"hash/maphash"
	"sync"

	"github.com/devbox-dev/devbox/internal/fdio"

	"golang.org/x/sys/unix"
)

// Small regular files are written by a few goroutines, the writers, while
// Apply's own goroutine reads on through the tar. Creating a file costs up to
// a millisecond on some disks (ext4 on a virtual disk, most of it in the
// kernel finding a free inode), and a layer is thousands of small files, so
// the creates are what a pull waits on; a second file created meanwhile, or
// a directory made by Apply's goroutine, overlaps with them.
//
// Only the work that cannot change what any other entry sees goes to a
// writer: creating a file that is certainly not there yet (O_EXCL, in a
// parent descriptor the walk verified), writing its content, and setting its
// owner, mode, xattrs and times. Everything else (directories, links,
// nodes, whiteouts, removals, files too big to buffer, files at a path
// something was already created at) stays on Apply's goroutine in tar order,
// and waits first for whatever queued file it could disturb or depend on:
//
//   - anything created at a path waits for a queued file at that path
//     (applier.replace), and a hardlink for a queued file it links to;
//   - removing a directory, or changing the metadata of one that already
//     existed (a default ACL or setgid bit there would change files created
//     in it later), waits for every queued file under it;
//   - the walk, finding a parent missing, waits for a queued file there, so
//     it refuses a file as a parent as it did before, instead of making a
//     directory;
//   - directory times are set after every file is written, and Apply does
//     not return while a writer is still at work.
//
// A writer's error fails Apply like the inline one would: the error of the
// earliest entry in the tar wins, as if entries were applied one by one.
// Cancelling ctx stops Apply between entries as before; files already
// queued (maxQueued, arenaSize bytes at most) are still written first.
const (
	// numWriters is how many goroutines write small files. Pulling a 150 MiB
	// layer of 4300 files on a 2-vCPU VM (bench/pull, runs alternating),
	// 2 writers cut the pull's time by about a sixth, 3 by about a quarter,
	// and 4 did no better than 3: the kernel serializes creating files in
	// one directory, and tars list a directory's files together.
	numWriters = 3
	// maxQueuedFile is the largest file handed to a writer: its content is
	// read into memory first. Larger files are streamed inline.
	maxQueuedFile = 1 << 20
	// arenaSize is the memory queued files' content is read into, which
	// bounds it; a few files per writer keep them busy.
	arenaSize = 4 << 20
	// maxQueued bounds queued files, each holding a directory descriptor,
	// whatever their size: a layer of empty files needs no arena space.
	maxQueued = 64
)

// tuning is how Apply spreads its work. Tests change it: the fuzzer starts
// the writers inside its chroot jail, and compares against no writers.
type tuning struct {
	writers int              // goroutines writing small files; 0 writes all inline
	spawn   func(run func()) // starts a writer goroutine
}

var defaultTuning = tuning{writers: numWriters, spawn: func(run func()) { go run() }}

// fileJob is one regular file for a writer, with everything it needs copied
// out of the tar header.
type fileJob struct {
	seq   int64  // the entry's position in the tar: the earliest error wins
	image string // Options.Name, for errors
	entry string // raw name of the entry, for errors
	path  string // its clean path, for waitFor and waitUnder
	pfd   int    // the parent directory, duplicated from the walk; closed by the writer
	base  string // the file's name in pfd
	meta  fileMeta
	data  []byte // the content, in the arena
	off   int    // where data starts in the arena
	done  bool   // written or given up: its arena bytes may be reused
}

// write creates the file anew and writes it; the same steps as
// applier.regularInline, without its replace: the file is known not to be
// there, and O_EXCL would make a mistake an error, never an overwrite.
func (j *fileJob) write() (int64, error) {
	fd, err := createFile(j.pfd, j.base)
	if err != nil {
		return 0, entryIOError(j.image, j.entry, "create file", err)
	}
	defer unix.Close(fd)
	if err := fdio.WriteAll(fd, j.data); err != nil {
		return 0, entryIOError(j.image, j.entry, "write file", err)
	}
	return int64(len(j.data)), j.meta.set(fd, j.pfd, j.base, j.image, j.entry)
}

// writers is the pool of writer goroutines of one Apply. A nil *writers
// (none started yet) has nothing queued: its waits return at once.
type writers struct {
	jobs chan *fileJob
	wg   sync.WaitGroup // the writer goroutines

	mu      sync.Mutex
	changed sync.Cond           // broadcast whenever a job is done
	queued  map[string]struct{} // paths of queued jobs not done yet
	pending int                 // jobs queued and not done
	arena   arena
	size    int64 // content bytes written
	err     error // the error of the earliest failed job
	errSeq  int64
}

// arenas keeps arena memory between Applies (a pull applies several layers;
// the fuzzer, thousands): zeroing it anew costs more than a small layer.
// Stale content never shows: a job's bytes are all read from its entry.
var arenas = sync.Pool{New: func() any { return new([arenaSize]byte) }}

func startWriters(t tuning) *writers {
	w := &writers{
		jobs:   make(chan *fileJob, maxQueued),
		queued: make(map[string]struct{}),
		arena:  arena{buf: arenas.Get().(*[arenaSize]byte)[:]},
	}
	w.changed.L = &w.mu
	w.wg.Add(t.writers)
	for range t.writers {
		t.spawn(w.run)
	}
	return w
}

// run is a writer goroutine.
func (w *writers) run() {
	defer w.wg.Done()
	for j := range w.jobs {
		var n int64
		var err error
		// Once a job failed, the queue holds only entries after it, which
		// Apply would not have reached.
		if !w.failed() {
			n, err = j.write()
		}
		unix.Close(j.pfd)
		w.finish(j, n, err)
	}
}

func (w *writers) finish(j *fileJob, n int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.size += n
	if err != nil && (w.err == nil || j.seq < w.errSeq) {
		w.err, w.errSeq = err, j.seq
	}
	delete(w.queued, j.path)
	w.pending--
	j.done, j.data = true, nil
	w.arena.release()
	w.changed.Broadcast()
}

// buffer returns n bytes of the arena for j's content, waiting for writers
// to free them. Every job holding arena bytes but j is queued, so they do.
func (w *writers) buffer(j *fileJob, n int) []byte {
	if n == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if b := w.arena.alloc(j, n); b != nil {
			return b
		}
		w.changed.Wait()
	}
}

// abandon gives back the arena bytes of a job that is not queued after all.
func (w *writers) abandon(j *fileJob) {
	w.mu.Lock()
	defer w.mu.Unlock()
	j.done, j.data = true, nil
	w.arena.release()
}

// queue hands j to a writer; it waits if maxQueued jobs are waiting already.
func (w *writers) queue(j *fileJob) {
	w.mu.Lock()
	w.queued[j.path] = struct{}{}
	w.pending++
	w.mu.Unlock()
	w.jobs <- j
}

// failed reports whether a job failed.
func (w *writers) failed() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

// waitFor waits until no queued file is at p.
func (w *writers) waitFor(p string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if _, ok := w.queued[p]; !ok {
			return
		}
		w.changed.Wait()
	}
}

// waitUnder waits until no queued file is under the directory p ("." is the
// whole layer).
func (w *writers) waitUnder(p string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.anyUnder(p) {
		w.changed.Wait()
	}
}

func (w *writers) anyUnder(p string) bool {
	if p == "." {
		return w.pending > 0
	}
	for q := range w.queued { // maxQueued paths at most
		if len(q) > len(p) && q[len(p)] == '/' && q[:len(p)] == p {
			return true
		}
	}
	return false
}

// wait waits until every queued file is done and returns the error of the
// earliest one that failed.
func (w *writers) wait() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.pending > 0 {
		w.changed.Wait()
	}
	return w.err
}

// written returns the content bytes the writers wrote.
func (w *writers) written() int64 {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// stop ends the writer goroutines once they have written what is queued.
func (w *writers) stop() {
	if w == nil {
		return
	}
	close(w.jobs)
	w.wg.Wait()
	arenas.Put((*[arenaSize]byte)(w.arena.buf))
	w.arena = arena{}
}

// arena is one block of memory that queued files' content is read into,
// handed out in order like a ring buffer: a job's bytes are reused once it
// and every job that got bytes before it are done. Writers finish jobs in
// about the order they were queued, so little is held up, and a layer's
// small files all pass through one fixed block instead of the garbage
// collector. Guarded by writers.mu.
type arena struct {
	buf  []byte
	head int        // where the next job's content goes
	live []*fileJob // jobs with content in buf, oldest first
}

// alloc returns n bytes (0 < n <= len(buf)) for j, or nil if they are not
// free yet. Live bytes run from the oldest live job's offset (tail) up to
// head, wrapping around the end of buf when head <= tail.
func (r *arena) alloc(j *fileJob, n int) []byte {
	off := 0
	if len(r.live) > 0 {
		tail := r.live[0].off
		switch {
		case r.head > tail && len(r.buf)-r.head >= n: // room before the end
			off = r.head
		case r.head > tail && tail >= n: // room at the start: wrap around
			off = 0
		case r.head <= tail && tail-r.head >= n: // room before the oldest
			off = r.head
		default:
			return nil
		}
	}
	r.head = off + n
	j.off = off
	r.live = append(r.live, j)
	return r.buf[off : off+n : off+n]
}

// release drops the done jobs at the front of live, freeing their bytes.
func (r *arena) release() {
	for len(r.live) > 0 && r.live[0].done {
		r.live[0] = nil
		r.live = r.live[1:]
	}
}

// pathHashes remembers every path Apply created something at, as 64-bit
// hashes. A file at a path never seen needs no replacing (the layer
// directory started empty), so a writer can create it without looking
// first; a hash collision only sends a file down the inline path.
type pathHashes struct {
	seed maphash.Seed
	set  map[uint64]struct{}
}

func newPathHashes() pathHashes {
	return pathHashes{seed: maphash.MakeSeed(), set: make(map[uint64]struct{})}
}

// add records p and reports whether it is new.
func (s pathHashes) add(p string) bool {
	h := maphash.String(s.seed, p)
	if _, ok := s.set[h]; ok {
		return false
	}
	s.set[h] = struct{}{}
	return true
}

func (s pathHashes) has(p string) bool {
	_, ok := s.set[maphash.String(s.seed, p)]
	return ok
}
