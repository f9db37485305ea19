package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Files are the host paths of a container's own /etc/hostname, /etc/hosts
// and /etc/resolv.conf, bind-mounted over the image's.
type Files struct {
	Hostname, Hosts, ResolvConf string
}

// The host files WriteFiles copies with host networking; variables for
// tests.
var (
	hostHosts      = "/etc/hosts"
	hostResolvConf = "/etc/resolv.conf"
	osHostname     = os.Hostname
)

// maxHostname is the kernel's HOST_NAME_MAX.
const maxHostname = 64

// Hostname returns the container's hostname, as Docker picks it: -h, else
// with host networking the host's hostname, else the first 12 characters
// of id. Generate uses the same; pass it to WriteFiles.
func Hostname(id string, o Options) (string, error) {
	network, err := checkNetwork(o.Network)
	if err != nil {
		return "", err
	}
	if o.Hostname != "" {
		if err := checkHostname(o.Hostname); err != nil {
			return "", err
		}
		return o.Hostname, nil
	}
	if network == NetworkHost {
		h, err := osHostname()
		if err != nil {
			return "", fmt.Errorf("--network host: read the host's hostname: %w; set one with --hostname", err)
		}
		return h, nil
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return id, nil
}

// checkHostname accepts what sethostname(2) and an /etc/hosts line take.
func checkHostname(h string) error {
	if len(h) > maxHostname {
		return fmt.Errorf("--hostname %q: longer than %d characters; use a shorter name", h, maxHostname)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("--hostname %q: use only letters, digits, '-', '.' and '_'", h)
		}
	}
	return nil
}

// defaultHosts is Docker's /etc/hosts for a container with no network of
// the host's, with the hostname on 127.0.1.1 so that it resolves.
func defaultHosts(hostname string) []byte {
	return []byte("127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n" +
		"127.0.1.1\t" + hostname + "\n")
}

// noneResolvConf is /etc/resolv.conf with --network none: no name server
// is reachable.
const noneResolvConf = "# devbox: --network none: this container has no network and no name servers.\n"

// FilesIn names the files WriteFiles writes into dir; a spec can be
// generated with them before they are written.
func FilesIn(dir string) Files {
	return Files{
		Hostname:   filepath.Join(dir, "hostname"),
		Hosts:      filepath.Join(dir, "hosts"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
	}
}

// WriteFiles writes the container's /etc/hostname, /etc/hosts and
// /etc/resolv.conf into dir (which must exist) and returns their paths.
//
// With host networking, /etc/hosts and /etc/resolv.conf are the host's, as
// Docker copies them (a missing /etc/hosts gets the one below, a missing
// /etc/resolv.conf an empty one). With --network none, /etc/hosts maps
// localhost and the hostname to the loopback addresses and /etc/resolv.conf
// lists no name server.
//
// Each file is written to a temporary name and renamed into place.
func WriteFiles(dir, hostname, network string) (Files, error) {
	network, err := checkNetwork(network)
	if err != nil {
		return Files{}, err
	}
	if hostname == "" {
		return Files{}, errors.New("container hostname is empty; get it from spec.Hostname")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return Files{}, err
	}
	var hosts, resolv []byte
	switch network {
	case NetworkHost:
		if hosts, err = readHostFile(hostHosts); err != nil {
			return Files{}, err
		}
		if hosts == nil {
			hosts = defaultHosts(hostname)
		}
		if resolv, err = readHostFile(hostResolvConf); err != nil {
			return Files{}, err
		}
	case NetworkNone:
		hosts = defaultHosts(hostname)
		resolv = []byte(noneResolvConf)
	}
	f := FilesIn(dir)
	for _, w := range []struct {
		path string
		data []byte
	}{
		{f.Hostname, []byte(hostname + "\n")},
		{f.Hosts, hosts},
		{f.ResolvConf, resolv},
	} {
		if err := writeFile(w.path, w.data); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

// readHostFile reads a host file; a missing one is nil.
func readHostFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("copy the host's %s into the container: %w", name, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// writeFile writes data to name (mode 0644) through a temporary file
// renamed into place.
func writeFile(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
