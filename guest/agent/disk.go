package agent

import (
	"encoding/binary"
	"io"
)

// Offset and value of the magic number in an ext2/3/4 superblock (the
// superblock starts 1024 bytes in; s_magic is 0x38 into it).
const (
	ext4MagicOffset = 1024 + 0x38
	ext4Magic       = 0xEF53
)

// diskKind is what the start of a disk holds.
type diskKind int

const (
	diskBlank   diskKind = iota // zeros: a new disk, safe to format
	diskExt4                    // an ext2/3/4 file system
	diskUnknown                 // something else: never formatted over
)

func (k diskKind) String() string {
	return [...]string{"blank", "ext4", "unknown data"}[k]
}

// probeLen is how much of a disk probeDisk reads: enough to see the
// signatures of the common file systems and partition tables (btrfs puts
// its superblock at 64 KiB).
const probeLen = 1 << 20

// probeDisk says what r (a block device, or an image) holds.
func probeDisk(r io.ReaderAt) (diskKind, error) {
	b := make([]byte, probeLen)
	n, err := r.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return diskUnknown, err
	}
	b = b[:n]
	if len(b) >= ext4MagicOffset+2 && binary.LittleEndian.Uint16(b[ext4MagicOffset:]) == ext4Magic {
		return diskExt4, nil
	}
	for _, c := range b {
		if c != 0 {
			return diskUnknown, nil
		}
	}
	return diskBlank, nil
}
