// Package qemu drives QEMU (Linux, Windows, macOS fallback) through QMP with github.com/digitalocean/go-qemu. Not built yet: issue 4 brings it.
package qemu
