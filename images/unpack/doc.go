// Package unpack applies one OCI/Docker image layer (an uncompressed tar
// stream) to a directory of its own, in the form overlayfs stacks directly:
// whiteouts become 0/0 character devices and opaque directories carry the
// trusted.overlay.opaque xattr. Nothing is ever written outside the layer
// directory.
package unpack
