// Package provision reads a project's devbox.yaml and runs its provisioning steps. Not built yet: issue 8 brings it.
package provision
