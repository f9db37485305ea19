// Package spec turns an image config and the user's docker-run flags into
// the OCI runtime spec the runtime runs, matching what Docker (dockerd with
// runc) gives a container: the same argv, environment, user and groups,
// capabilities, mounts, masked paths and namespaces.
//
// Where devbox differs from Docker, on purpose:
//
//   - NoNewPrivileges is set (Docker leaves it off unless --security-opt
//     no-new-privileges), so setuid programs such as sudo and su do not
//     raise privileges, and file capabilities go no further than the
//     default set;
//   - --memory also caps swap at nothing (Docker allows as much swap as
//     memory unless --memory-swap says otherwise);
//   - the cgroup namespace is always new (Docker shares the host's on
//     cgroup v1 hosts);
//   - with --network none, /etc/hosts maps the hostname to 127.0.1.1 and
//     /etc/resolv.conf lists no name server;
//   - Docker's default seccomp profile is not part of the spec
//     (Linux.Seccomp is nil): the caller sets it, from
//     runtime/seccomp.Default(Process.Capabilities.Bounding), keeping this
//     package free of the runtime.
//
// Every error Generate returns means the container cannot be created as
// asked; Docker reports those with exit status 125.
package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/devbox-dev/devbox/runtime"
)

// Options are the docker-run flags that shape the spec.
type Options struct {
	// Entrypoint is --entrypoint, set when EntrypointSet. Docker takes it as
	// one string; an empty one ("" or []string{""}) resets the image's
	// entrypoint to none. Setting it also drops the image's Cmd.
	Entrypoint    []string
	EntrypointSet bool
	// Cmd is the arguments after IMAGE; non-empty, it replaces the image's Cmd.
	Cmd []string
	// Env is -e and --env-file, already resolved by the CLI (K=V). An entry
	// without "=" unsets that variable from the defaults, as in Docker.
	Env []string
	// Workdir is -w; User is -u (name, uid, name:group, uid:gid, ...);
	// Hostname is -h.
	Workdir, User, Hostname string
	// Binds are -v HOST:CTR[:ro|rw].
	Binds []Bind
	// Tmpfs is --tmpfs /path[:opts].
	Tmpfs []string
	// ReadOnly is --read-only.
	ReadOnly bool
	// Network is --network: "host" (also when empty) or "none".
	Network string
	// Terminal is -t; ConsoleSize is the initial size of its window.
	Terminal    bool
	ConsoleSize *specs.Box
	// Memory is --memory in bytes, 0 for no limit.
	Memory int64
	// CPUQuota and CPUPeriod are --cpu-quota and --cpu-period in
	// microseconds, 0 for the default; a negative quota means no limit.
	CPUQuota, CPUPeriod int64
	// PidsLimit is --pids-limit; 0 or negative means no limit.
	PidsLimit int64
}

// Bind is one -v HOST:CTR[:ro]. Source must be an absolute host path that
// exists (the CLI checks it exists).
type Bind struct {
	Source, Destination string
	ReadOnly            bool
}

// ErrNoCommand is returned when neither the image nor the flags give a
// command to run. Docker says "no command specified" and exits 125.
var ErrNoCommand = errors.New("no command specified")

// Generate returns the OCI runtime spec for a container id of the image
// whose config is img, run with the options o.
//
// image is the image's merged filesystem (see images/layerfs), from which
// /etc/passwd and /etc/group resolve the user, its groups and its HOME;
// either file may be missing, as in Docker. files are the container's own
// /etc/hostname, /etc/hosts and /etc/resolv.conf (see WriteFiles); an empty
// field mounts nothing there. rootPath is the Root.Path the runtime mounts
// the image at.
//
// The hostname is the one Hostname returns for id and o; pass that same one
// to WriteFiles.
func Generate(id string, img *v1.ConfigFile, o Options, image fs.FS, files Files, rootPath string) (*specs.Spec, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var cfg v1.Config
	if img != nil {
		cfg = img.Config
	}
	args, err := command(cfg, o)
	if err != nil {
		return nil, err
	}
	network, err := checkNetwork(o.Network)
	if err != nil {
		return nil, err
	}
	hostname, err := Hostname(id, o)
	if err != nil {
		return nil, err
	}
	cwd, err := workdir(o.Workdir, cfg.WorkingDir)
	if err != nil {
		return nil, err
	}
	env, hasHome, err := environment(cfg.Env, o.Env, hostname, o.Terminal)
	if err != nil {
		return nil, err
	}
	mounts, err := buildMounts(o, files)
	if err != nil {
		return nil, err
	}
	resources, err := buildResources(o)
	if err != nil {
		return nil, err
	}
	userSpec := o.User
	if userSpec == "" {
		userSpec = cfg.User
	}
	u, err := lookupUser(image, userSpec, !hasHome)
	if err != nil {
		return nil, err
	}
	if !hasHome {
		env = setHome(env, u.home)
	}

	oomScoreAdj := 0
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: o.Terminal,
			User: specs.User{
				UID:            u.uid,
				GID:            u.gid,
				AdditionalGids: u.additionalGids,
			},
			Args: args,
			Env:  env,
			Cwd:  cwd,
			// Docker gives every user the same sets: for a user other than
			// root, execve then clears permitted and effective (no ambient
			// set), which leaves them none, as in Docker, while binaries with
			// file capabilities keep working.
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  runtime.DefaultCapabilities(),
				Effective: runtime.DefaultCapabilities(),
				Permitted: runtime.DefaultCapabilities(),
			},
			Rlimits: defaultRlimits(),
			// Not Docker's default: see the package documentation.
			NoNewPrivileges: true,
			// dockerd runs at -500 and resets its containers to 0; so must a
			// daemon or guest agent running at a lower score.
			OOMScoreAdj: &oomScoreAdj,
		},
		Root:     &specs.Root{Path: rootPath, Readonly: o.ReadOnly},
		Hostname: hostname,
		Mounts:   mounts,
		Linux: &specs.Linux{
			Resources:     resources,
			CgroupsPath:   CgroupsPath(id),
			Namespaces:    namespaces(network),
			MaskedPaths:   maskedPaths(),
			ReadonlyPaths: runtime.DefaultSpec().Linux.ReadonlyPaths,
		},
	}
	if o.Terminal && o.ConsoleSize != nil {
		box := *o.ConsoleSize
		s.Process.ConsoleSize = &box
	}
	if network == NetworkNone {
		s.Linux.Sysctl = networkSysctls()
	}
	return s, nil
}

// checkID makes sure id is safe in a cgroup path and as a hostname.
func checkID(id string) error {
	if id == "" {
		return errors.New("container id is empty")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '_' || c == '.' || c == '-'))) {
			return fmt.Errorf("container id %q: use only letters, digits, '_', '.' and '-', starting with a letter or digit", id)
		}
	}
	return nil
}

// command is Docker's argv: the entrypoint then the command. A non-empty
// Cmd replaces the image's Cmd; --entrypoint replaces the image's
// Entrypoint and drops the image's Cmd; an empty --entrypoint resets it.
func command(cfg v1.Config, o Options) ([]string, error) {
	entrypoint, cmd := cfg.Entrypoint, cfg.Cmd
	if len(o.Cmd) > 0 {
		cmd = o.Cmd
	}
	if o.EntrypointSet {
		entrypoint = o.Entrypoint
		if len(o.Cmd) == 0 {
			cmd = nil
		}
	}
	// Docker resets [""] after merging, the image's as well as the flag's.
	if len(entrypoint) == 1 && entrypoint[0] == "" {
		entrypoint = nil
	}
	if len(entrypoint) == 0 && len(cmd) == 0 {
		return nil, ErrNoCommand
	}
	args := make([]string, 0, len(entrypoint)+len(cmd))
	return append(append(args, entrypoint...), cmd...), nil
}

// workdir is -w, else the image's WORKDIR, else "/", cleaned as Docker does.
func workdir(flag, image string) (string, error) {
	switch {
	case flag != "":
		if !path.IsAbs(flag) {
			return "", fmt.Errorf("--workdir %q: the working directory must be an absolute path, like /%s", flag, strings.TrimLeft(flag, "./"))
		}
		return path.Clean(flag), nil
	case image != "":
		if !path.IsAbs(image) {
			return "", fmt.Errorf("image WORKDIR %q: the working directory must be an absolute path; pass one with --workdir", image)
		}
		return path.Clean(image), nil
	}
	return "/", nil
}
