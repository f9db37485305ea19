// Package vz drives Apple's Virtualization.framework through github.com/Code-Hex/vz/v3 (darwin and cgo only). Not built yet: issue 7 brings it.
package vz
