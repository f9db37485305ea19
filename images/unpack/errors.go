package unpack

import "fmt"

// EntryError names the entry of a layer that was refused and why. Apply
// returns it for layers that are malformed or hostile (an entry that would
// escape the layer directory, write through a symlink, and the like), as
// opposed to I/O failures, which are returned wrapped as they come.
type EntryError struct {
	Image  string // the image the layer belongs to (Options.Name)
	Entry  string // the entry's name as the tar spells it
	Reason string // why it was refused
}

// Error returns `layer of IMAGE: entry "ENTRY": REASON`.
func (e *EntryError) Error() string {
	if e.Image == "" {
		return fmt.Sprintf("layer: entry %q: %s", e.Entry, e.Reason)
	}
	return fmt.Sprintf("layer of %s: entry %q: %s", e.Image, e.Entry, e.Reason)
}
