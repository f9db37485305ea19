package machine

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/crypto/ssh"
)

// keys are a machine's SSH identities: the client key devbox logs in with,
// and the guest's host key, both made on the host at the first `up` so the
// host can pin the guest's public half before the guest ever runs.
type keys struct {
	client     ssh.Signer
	host       ssh.Signer
	hostKeyPEM []byte // handed to the guest in its boot archive
}

// authorizedKey is the client key in authorized_keys form, for the guest.
func (k *keys) authorizedKey() []byte { return ssh.MarshalAuthorizedKey(k.client.PublicKey()) }

// ensureKeys loads the machine's keys, making any that are missing.
func (m *Machine) ensureKeys() (*keys, error) {
	client, _, err := loadOrMakeKey(m.path(clientKey), "devbox@"+m.Name)
	if err != nil {
		return nil, err
	}
	host, hostPEM, err := loadOrMakeKey(m.path(hostKey), "devbox-guest@"+m.Name)
	if err != nil {
		return nil, err
	}
	// known_hosts for stock OpenSSH, under the alias ssh-config uses.
	line := m.SSHHost() + " " + string(ssh.MarshalAuthorizedKey(host.PublicKey()))
	if err := writeFileAtomic(m.path(knownHosts), []byte(line), 0o600); err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	return &keys{client: client, host: host, hostKeyPEM: hostPEM}, nil
}

// loadKeys loads the keys of a machine that was brought up before.
func (m *Machine) loadKeys() (*keys, error) {
	client, err := loadKey(m.path(clientKey))
	if err != nil {
		return nil, err
	}
	host, err := loadKey(m.path(hostKey))
	if err != nil {
		return nil, err
	}
	return &keys{client: client, host: host}, nil
}

func loadKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("key %s is missing: run devbox up", path)
		}
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w (devbox destroy makes new keys)", path, err)
	}
	return s, nil
}

func loadOrMakeKey(path, comment string) (ssh.Signer, []byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, nil, fmt.Errorf("key %s: %w (devbox destroy makes new keys)", path, err)
		}
		return s, b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	pemBytes := pem.EncodeToMemory(blk)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(path+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(path, pemBytes, 0o600); err != nil {
		return nil, nil, err
	}
	return s, pemBytes, nil
}
