// Package progress renders per-layer transfer progress the way `docker pull`
// does: one line per layer redrawn in place on a terminal, and plain status
// lines (no byte counts) when the output is a file or a pipe.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Event reports the state of one item (a layer) of a transfer.
type Event struct {
	// ID names the item, usually the first 12 hex digits of a layer digest.
	ID string `json:"id"`
	// Status is a short word or phrase: "Waiting", "Downloading",
	// "Already exists", "Pull complete", ...
	Status string `json:"status"`
	// Current and Total are byte counts; Total is 0 when unknown.
	Current int64 `json:"current,omitempty"`
	Total   int64 `json:"total,omitempty"`
}

// Func receives progress events. It must be safe for concurrent use.
type Func func(Event)

// Renderer draws events on w. It is safe for concurrent use.
type Renderer struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	order    []string
	lines    map[string]Event
	drawn    int // lines drawn at the last redraw
	lastDraw time.Time
}

// NewRenderer returns a renderer that writes to w; tty selects in-place
// redrawing with byte counts over plain status-change lines.
func NewRenderer(w io.Writer, tty bool) *Renderer {
	return &Renderer{w: w, tty: tty, lines: map[string]Event{}}
}

// Update records e and draws it. On a terminal, byte-count updates are
// throttled so a fast transfer does not spend its time drawing.
func (r *Renderer) Update(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, seen := r.lines[e.ID]
	if !seen {
		r.order = append(r.order, e.ID)
	}
	r.lines[e.ID] = e
	if !r.tty {
		if !seen || prev.Status != e.Status {
			fmt.Fprintf(r.w, "%s: %s\n", e.ID, e.Status)
		}
		return
	}
	if seen && prev.Status == e.Status && time.Since(r.lastDraw) < 100*time.Millisecond {
		return
	}
	r.redraw()
}

// Flush draws the final state; call it when the transfer ends.
func (r *Renderer) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tty {
		r.redraw()
	}
}

func (r *Renderer) redraw() {
	if r.drawn > 0 {
		fmt.Fprintf(r.w, "\x1b[%dA", r.drawn) // cursor up to the first layer line
	}
	for _, id := range r.order {
		fmt.Fprintf(r.w, "\x1b[2K%s\n", line(r.lines[id]))
	}
	r.drawn = len(r.order)
	r.lastDraw = time.Now()
}

func line(e Event) string {
	s := fmt.Sprintf("%s: %s", e.ID, e.Status)
	if e.Status == "Downloading" && e.Total > 0 {
		s += fmt.Sprintf(" %s %s/%s", bar(e.Current, e.Total, 40), HumanSize(e.Current), HumanSize(e.Total))
	} else if e.Status == "Downloading" && e.Current > 0 {
		s += " " + HumanSize(e.Current)
	}
	return s
}

func bar(cur, total int64, width int) string {
	n := int(int64(width) * cur / total)
	n = max(0, min(n, width))
	b := make([]byte, width+2)
	b[0], b[width+1] = '[', ']'
	for i := 1; i <= width; i++ {
		switch {
		case i < n:
			b[i] = '='
		case i == n:
			b[i] = '>'
		default:
			b[i] = ' '
		}
	}
	return string(b)
}

// HumanSize formats a byte count as docker does: decimal units, three
// significant digits ("4.26MB").
func HumanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}
