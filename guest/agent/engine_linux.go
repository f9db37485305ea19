package agent

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/devbox-dev/devbox/engine"
	"github.com/devbox-dev/devbox/engine/remote"
)

// engineService serves the engine API to the host: the same local engine
// devbox runs natively on Linux, over the data disk.
type engineService struct {
	root string
	// hostLoopback reaches the host's loopback from the guest network.
	hostLoopback string
	once         sync.Once
	srv          *remote.Server
	err          error
}

// open makes the engine at the first call, which comes after the boot
// gate: the data disk is mounted by then.
func (e *engineService) open() (*remote.Server, error) {
	e.once.Do(func() {
		l, err := engine.NewLocal(e.root)
		if err != nil {
			e.err = err
			return
		}
		l.Recover("the machine stopped while it ran")
		// The guest has no certificate store: registries' TLS is checked
		// against Mozilla's roots, built in. Set here, not in an init, so
		// the boot does not pay for parsing them.
		x509.SetFallbackRoots(fallbackRoots())
		e.srv = &remote.Server{Engine: l, TempDir: filepath.Join(e.root, "tmp-import"), HostLoopback: e.hostLoopback}
	})
	return e.srv, e.err
}

func (e *engineService) handle(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel) {
	srv, err := e.open()
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "engine: "+err.Error())
		return
	}
	srv.Serve(ctx, conn, nc)
}

// fallbackRoots is Mozilla's root certificates, as x/crypto bundles them.
func fallbackRoots() *x509.CertPool {
	p := x509.NewCertPool()
	for c := range bundle.Roots() {
		cert, err := x509.ParseCertificate(c.Certificate)
		if err != nil {
			continue
		}
		if c.Constraint == nil {
			p.AddCert(cert)
		} else {
			p.AddCertWithConstraint(cert, c.Constraint)
		}
	}
	return p
}
