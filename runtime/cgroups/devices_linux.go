package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strconv"

	"github.com/devbox-dev/devbox/internal/fdio"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Device access bits, numbered as the kernel's BPF device hook numbers
// them (BPF_DEVCG_ACC_MKNOD, _READ, _WRITE): a v1 rule's m, r and w.
const (
	accMknod uint8 = 1 << iota
	accRead
	accWrite
	accAll = accMknod | accRead | accWrite
)

// anyDevice stands for "*" in a rule's major or minor.
const anyDevice = -1

// deviceRule is one entry of an OCI device list, checked.
type deviceRule struct {
	allow bool
	// typ is 'c' or 'b', or 'a' for both.
	typ          byte
	major, minor int64 // or anyDevice
	access       uint8
}

// parseDeviceRules checks the spec's device list. An empty type means
// every type and an empty access all of r, w and m, as runc reads them.
func parseDeviceRules(list []specs.LinuxDeviceCgroup) ([]deviceRule, error) {
	rules := make([]deviceRule, 0, len(list))
	for i, d := range list {
		r := deviceRule{allow: d.Allow, major: anyDevice, minor: anyDevice}
		switch d.Type {
		case "", "a":
			r.typ = 'a'
		case "c", "b":
			r.typ = d.Type[0]
		default:
			return nil, fmt.Errorf("cgroups: device rule %d: type %q is not a, b or c", i, d.Type)
		}
		for _, n := range []struct {
			v   *int64
			dst *int64
		}{{d.Major, &r.major}, {d.Minor, &r.minor}} {
			if n.v == nil {
				continue
			}
			// Majors and minors are 32-bit at most (12 and 20 bits today);
			// the BPF program compares them as immediates.
			if *n.v < 0 || *n.v > math.MaxInt32 {
				return nil, fmt.Errorf("cgroups: device rule %d: device number %d is out of range", i, *n.v)
			}
			*n.dst = *n.v
		}
		for _, c := range d.Access {
			switch c {
			case 'm':
				r.access |= accMknod
			case 'r':
				r.access |= accRead
			case 'w':
				r.access |= accWrite
			default:
				return nil, fmt.Errorf("cgroups: device rule %d: access %q is not made of r, w and m", i, d.Access)
			}
		}
		if r.access == 0 {
			r.access = accAll
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// expand returns r as rules the v1 controller can take whole: "a" names
// every device only with any major, any minor and all access; any other
// rule of type a stands for its b and c rules.
func (r deviceRule) expand() []deviceRule {
	if r.typ != 'a' || r.major == anyDevice && r.minor == anyDevice && r.access == accAll {
		return []deviceRule{r}
	}
	b, c := r, r
	b.typ, c.typ = 'b', 'c'
	return []deviceRule{c, b}
}

// String is the rule as devices.allow and devices.deny take it, such as
// "c 1:3 rwm" or "a".
func (r deviceRule) String() string {
	if r.typ == 'a' {
		return "a"
	}
	num := func(n int64) string {
		if n == anyDevice {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	acc := make([]byte, 0, 3)
	for _, a := range []struct {
		bit uint8
		c   byte
	}{{accRead, 'r'}, {accWrite, 'w'}, {accMknod, 'm'}} {
		if r.access&a.bit != 0 {
			acc = append(acc, a.c)
		}
	}
	return string(r.typ) + " " + num(r.major) + ":" + num(r.minor) + " " + string(acc)
}

// deviceState is what a device list leaves, as the v1 controller keeps
// it: a default, and exceptions of the other polarity, at most one per
// type, major and minor.
type deviceState struct {
	defaultAllow bool
	exceptions   []deviceRule
}

// foldDeviceRules applies rules in order to a deny-all start, the way the
// kernel applies writes to devices.allow and devices.deny: "a" resets the
// default and drops every exception; a rule against the default adds (or
// widens) an exception; a rule along it narrows the exception of exactly
// that type, major and minor, and no other. So a list means the same on
// cgroup2, where the state becomes a BPF program, as on cgroup v1.
func foldDeviceRules(rules []deviceRule) deviceState {
	var s deviceState
	for _, rule := range rules {
		for _, r := range rule.expand() {
			if r.typ == 'a' {
				s = deviceState{defaultAllow: r.allow}
				continue
			}
			i := slices.IndexFunc(s.exceptions, func(e deviceRule) bool {
				return e.typ == r.typ && e.major == r.major && e.minor == r.minor
			})
			switch {
			case r.allow != s.defaultAllow && i >= 0:
				s.exceptions[i].access |= r.access
			case r.allow != s.defaultAllow:
				s.exceptions = append(s.exceptions, r)
			case i >= 0:
				s.exceptions[i].access &^= r.access
				if s.exceptions[i].access == 0 {
					s.exceptions = slices.Delete(s.exceptions, i, i+1)
				}
			}
		}
	}
	return s
}

// v1Lines are the writes that set a fresh or reused v1 devices cgroup to
// s: the default to one file ("a" to devices.deny for deny-all, which also
// drops any exception left from before), then each exception to the other.
func (s deviceState) v1Lines() (defaultFile string, exceptionFile string, lines []string) {
	defaultFile, exceptionFile = "devices.deny", "devices.allow"
	if s.defaultAllow {
		defaultFile, exceptionFile = exceptionFile, defaultFile
	}
	for _, e := range s.exceptions {
		lines = append(lines, e.String())
	}
	return defaultFile, exceptionFile, lines
}

// applyDevicesV1 sets the v1 devices cgroup dir to s. Each rule is one
// write(2), as the kernel parses one per write; the file stays open
// between them.
func applyDevicesV1(dir string, s deviceState) error {
	defFile, exFile, lines := s.v1Lines()
	if err := writeFile(-1, dir, defFile, "a"); err != nil {
		return fmt.Errorf("cgroups: devices: %w", err)
	}
	if len(lines) == 0 {
		return nil
	}
	path := dir + "/" + exFile
	fd, err := openat(unix.AT_FDCWD, path, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("cgroups: devices: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	for _, l := range lines {
		if err := fdio.WriteAll(fd, []byte(l)); err != nil {
			return fmt.Errorf("cgroups: devices: %w", &fs.PathError{Op: "write " + strconv.Quote(l) + " to", Path: path, Err: err})
		}
	}
	return nil
}

// errNoDeviceControl is returned when device rules are given but the host
// has neither a v1 devices controller nor cgroup2.
var errNoDeviceControl = fmt.Errorf("cgroups: device rules were given, but this host has neither a cgroup v1 devices controller nor a cgroup2 hierarchy to enforce them: %w", errors.ErrUnsupported)
