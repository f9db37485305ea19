package unpack

import (
	"path"
	"strings"
)

// Whiteout spellings of the OCI image spec (inherited from AUFS).
const (
	whiteoutPrefix = ".wh."         // ".wh.NAME" deletes NAME from lower layers
	whiteoutMeta   = ".wh..wh."     // AUFS bookkeeping; only opaqueMarker means something
	opaqueMarker   = ".wh..wh..opq" // hides everything lower layers have in its directory
	opaqueXattr    = "trusted.overlay.opaque"
	paxXattrPrefix = "SCHILY.xattr." // how PAX tars carry extended attributes
)

// cleanName turns a tar entry name into a clean path relative to the layer
// root ("." for the root itself). Leading slashes are dropped, as docker and
// containerd do, so "/etc/x" means "etc/x". ok is false for a name that
// climbs out of the layer with "..": those are refused, never clamped.
func cleanName(name string) (p string, ok bool) {
	name = strings.TrimLeft(name, "/")
	// Tars made with `tar -C dir .` prefix every name with "./"; dropping it
	// here lets path.Clean return a substring instead of allocating.
	for strings.HasPrefix(name, "./") {
		name = strings.TrimLeft(name[2:], "/")
	}
	p = path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}

// splitName splits a clean relative path into its parent ("." at the top)
// and its last component.
func splitName(p string) (parent, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

// joinName joins a clean parent from splitName and a single component.
func joinName(parent, base string) string {
	if parent == "." {
		return base
	}
	return parent + "/" + base
}

// isOverlayXattr reports whether an xattr is overlayfs's own metadata, which
// a layer must not set through its tar: it could forge opaque directories,
// redirects or metacopy origins. Whiteouts and opaque markers are the only
// way a layer gets them. user.overlay.* is what overlayfs reads instead when
// mounted with userxattr, so it is refused too.
func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}
