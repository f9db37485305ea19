package unpack

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Decompress returns a reader of the uncompressed stream, detecting gzip
// (1f 8b), zstd (28 b5 2f fd) or plain tar by magic bytes, not by media type:
// registries and old manifests get the media type wrong. Closing the reader
// releases the decompressor; it does not close r.
//
// gzip goes through github.com/klauspost/pgzip, which decompresses ahead in
// its own goroutine, so inflating overlaps with writing files (see
// BenchmarkDecompressGzip).
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	// A short stream is no error here: an empty layer is a valid plain tar,
	// and a truncated one fails in the tar reader with a better message.
	magic, _ := br.Peek(len(zstdMagic))
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := pgzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}
