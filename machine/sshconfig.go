package machine

import (
	"fmt"
	"os"
	"strings"

	"github.com/devbox-dev/devbox/guest/bootconfig"
)

// SSHHost is the machine's name for ssh: "devbox" for the default machine,
// "devbox-NAME" for others.
func (m *Machine) SSHHost() string {
	if m.Name == DefaultName {
		return "devbox"
	}
	return "devbox-" + m.Name
}

// SSHConfig is an OpenSSH Host entry that reaches the machine through
// `devbox ssh-proxy`, with the guest's host key pinned.
func (m *Machine) SSHConfig() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("ssh-config: %w", err)
	}
	q := func(s string) string {
		if strings.ContainsAny(s, " \t\"") {
			return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
		}
		return s
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n", m.SSHHost())
	fmt.Fprintf(&b, "  User %s\n", bootconfig.User)
	fmt.Fprintf(&b, "  HostKeyAlias %s\n", m.SSHHost())
	fmt.Fprintf(&b, "  ProxyCommand %s ssh-proxy %s\n", q(exe), m.Name)
	fmt.Fprintf(&b, "  IdentityFile %s\n", q(m.path(clientKey)))
	fmt.Fprintf(&b, "  IdentitiesOnly yes\n")
	fmt.Fprintf(&b, "  UserKnownHostsFile %s\n", q(m.path(knownHosts)))
	fmt.Fprintf(&b, "  StrictHostKeyChecking yes\n")
	fmt.Fprintf(&b, "  LogLevel ERROR\n")
	return b.String(), nil
}
