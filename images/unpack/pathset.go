package unpack

import "strings"

// pathSet maps layer paths to values and remembers the order they were
// added in. Walking it follows the tar's order, which keeps the directory
// walk cheap and makes every run over the same input do the same thing (map
// order would not; the fuzzer relies on that to measure coverage).
type pathSet[V any] struct {
	index map[string]int // path to position in items
	items []pathItem[V]
}

type pathItem[V any] struct {
	path string
	val  V
	live bool // false once deleted
}

func newPathSet[V any]() *pathSet[V] {
	return &pathSet[V]{index: make(map[string]int)}
}

// set adds p or replaces its value.
func (s *pathSet[V]) set(p string, v V) {
	if i, ok := s.index[p]; ok {
		s.items[i] = pathItem[V]{path: p, val: v, live: true}
		return
	}
	s.index[p] = len(s.items)
	s.items = append(s.items, pathItem[V]{path: p, val: v, live: true})
}

// delete removes p.
func (s *pathSet[V]) delete(p string) {
	if i, ok := s.index[p]; ok {
		s.items[i].live = false
	}
}

// deleteTree removes p and every path under it.
func (s *pathSet[V]) deleteTree(p string) {
	prefix := p + "/"
	for i := range s.items {
		if q := s.items[i].path; q == p || strings.HasPrefix(q, prefix) {
			s.items[i].live = false
		}
	}
}

// each calls fn for every path in the order they were first added, and
// stops at the first error.
func (s *pathSet[V]) each(fn func(p string, v V) error) error {
	for _, it := range s.items {
		if it.live {
			if err := fn(it.path, it.val); err != nil {
				return err
			}
		}
	}
	return nil
}

// paths returns the paths in the order they were first added.
func (s *pathSet[V]) paths() []string {
	var out []string
	for _, it := range s.items {
		if it.live {
			out = append(out, it.path)
		}
	}
	return out
}
