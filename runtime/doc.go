// Package runtime is the namespace container runtime (Linux only): it runs an OCI runtime spec over a rootfs of stacked image layers. Not built yet: issue 3 brings it.
package runtime
