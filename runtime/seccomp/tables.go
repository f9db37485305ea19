package seccomp

// sysEntry is one row of a generated syscall table (ztables.go).
type sysEntry struct {
	name string
	nr   uint32
}

// sysTable is a syscall table of one architecture with its hash index.
type sysTable struct {
	entries []sysEntry // sorted by name
	index   []uint16   // open addressing on hashName; len is a power of two
}

// lookupSyscall returns the number of the named syscall in t.
func lookupSyscall(t sysTable, name string) (uint32, bool) {
	mask := uint32(len(t.index) - 1)
	for slot := hashName(name) & mask; ; slot = (slot + 1) & mask {
		i := t.index[slot]
		if i == 0 {
			return 0, false
		}
		if e := &t.entries[i-1]; e.name == name {
			return e.nr, true
		}
	}
}

// hashName is FNV-1a; gen_tables.go builds the indexes with a copy of it.
func hashName(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
