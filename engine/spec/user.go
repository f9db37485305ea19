package spec

import (
	"bytes"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// maxID is the largest uid or gid Docker (moby/sys/user) accepts.
const maxID = 1<<31 - 1

var errRange = fmt.Errorf("uids and gids must be in range 0-%d", maxID)

// execUser is a resolved -u: what the process runs as.
type execUser struct {
	uid, gid       uint32
	additionalGids []uint32 // the primary group first, as dockerd sets them
	home           string   // "" unless asked for
}

// passwdEntry is the part of an /etc/passwd line that matters here; name
// and home point into the file's bytes.
type passwdEntry struct {
	name     []byte
	uid, gid int
	home     []byte
}

// lookupUser resolves spec ("", user, uid, user:group, uid:gid, ...) against
// the image's /etc/passwd and /etc/group as Docker does (moby/sys/user
// GetExecUser with dockerd's defaults):
//
//   - the user part, numeric or not, is looked up in passwd, first match
//     wins; an empty one means uid 0. A name not found is an error; a number
//     not found is used as is, with gid 0.
//   - the group part, when given, is looked up in group; a name not found
//     is an error, a number not found is used as is. Without a group part,
//     the user's supplementary groups are the groups listing its name.
//   - AdditionalGids are the primary gid, then the supplementary ones.
//
// A missing or unreadable passwd or group file is treated as empty, as
// Docker does. Comment lines, and lines whose ids are not numbers, are
// skipped (moby/sys/user would read such an id as 0). With wantHome, home is the home directory of the first
// passwd entry with the resolved uid, or "/" (what runc sets HOME to).
// A file is read only when the answer depends on it.
func lookupUser(image fs.FS, spec string, wantHome bool) (execUser, error) {
	userArg, groupArg, _ := strings.Cut(spec, ":")
	groupArg, _, _ = strings.Cut(groupArg, ":") // "u:g:x" is u:g, as in moby/sys/user
	uidArg, uidErr := strconv.Atoi(userArg)
	gidArg, gidErr := strconv.Atoi(groupArg)

	var u execUser
	uid, gid := 0, 0
	var matched *passwdEntry
	// passwd says nothing new when both parts are numbers and neither HOME
	// nor supplementary groups (only for an implicit group) are wanted.
	var entries []passwdEntry
	if !(userArg != "" && uidErr == nil && groupArg != "" && !wantHome) {
		entries = readPasswd(image)
	}
	switch {
	case userArg == "":
		matched = findEntry(entries, func(e *passwdEntry) bool { return e.uid == 0 })
	case uidErr == nil:
		matched = findEntry(entries, func(e *passwdEntry) bool { return e.uid == uidArg })
	default:
		matched = findEntry(entries, func(e *passwdEntry) bool { return string(e.name) == userArg })
		if matched == nil {
			return u, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userArg)
		}
	}
	if matched != nil {
		uid, gid = matched.uid, matched.gid
	} else if userArg != "" {
		uid = uidArg
		if uid < 0 || uid > maxID {
			return u, errRange
		}
	}

	var sgids []uint32
	switch {
	case groupArg != "" && gidErr == nil:
		// A number is the gid whether or not group names it.
		gid = gidArg
		if gid < 0 || gid > maxID {
			return u, errRange
		}
	case groupArg != "":
		g, ok := findGroup(image, groupArg)
		if !ok {
			return u, fmt.Errorf("unable to find group %s: no matching entries in group file", groupArg)
		}
		gid = g
	case matched != nil:
		sgids = memberOf(image, matched.name)
	}

	u.uid, u.gid = uint32(uid), uint32(gid)
	u.additionalGids = append(make([]uint32, 0, 1+len(sgids)), u.gid)
	u.additionalGids = append(u.additionalGids, sgids...)
	if wantHome {
		u.home = "/"
		if e := findEntry(entries, func(e *passwdEntry) bool { return e.uid == uid }); e != nil && len(e.home) > 0 {
			u.home = string(e.home)
		}
	}
	return u, nil
}

func findEntry(entries []passwdEntry, match func(*passwdEntry) bool) *passwdEntry {
	for i := range entries {
		if match(&entries[i]) {
			return &entries[i]
		}
	}
	return nil
}

// readFile reads name from image; a missing or unreadable file is empty.
func readFile(image fs.FS, name string) []byte {
	if image == nil {
		return nil
	}
	b, err := fs.ReadFile(image, name)
	if err != nil {
		return nil
	}
	return b
}

// lines calls fn with each non-empty, non-comment line of data, split on
// ':'.
func lines(data []byte, fn func(fields [][]byte) (stop bool)) {
	var fields [8][]byte
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		n := 0
		for n < len(fields) {
			f, rest, found := bytes.Cut(line, []byte{':'})
			fields[n], n = f, n+1
			if !found {
				break
			}
			line = rest
		}
		if fn(fields[:n]) {
			return
		}
	}
}

// readPasswd parses /etc/passwd (name:password:uid:gid:gecos:home:shell),
// skipping lines whose ids are not numbers.
func readPasswd(image fs.FS) []passwdEntry {
	data := readFile(image, "etc/passwd")
	out := make([]passwdEntry, 0, bytes.Count(data, []byte{'\n'})+1)
	lines(data, func(f [][]byte) bool {
		if len(f) < 4 {
			return false
		}
		uid, err1 := strconv.Atoi(string(f[2]))
		gid, err2 := strconv.Atoi(string(f[3]))
		if err1 != nil || err2 != nil {
			return false
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
		return false
	})
	return out
}

// findGroup returns the gid of the first /etc/group line
// (name:password:gid:members) named name.
func findGroup(image fs.FS, name string) (gid int, ok bool) {
	lines(readFile(image, "etc/group"), func(f [][]byte) bool {
		if len(f) < 3 || string(f[0]) != name {
			return false
		}
		g, err := strconv.Atoi(string(f[2]))
		if err != nil {
			return false
		}
		gid, ok = g, true
		return true
	})
	return gid, ok
}

// memberOf returns the gids of the /etc/group lines listing user as a
// member, in file order.
func memberOf(image fs.FS, user []byte) []uint32 {
	var out []uint32
	lines(readFile(image, "etc/group"), func(f [][]byte) bool {
		if len(f) < 4 {
			return false
		}
		for m := range bytes.SplitSeq(f[3], []byte{','}) {
			if !bytes.Equal(m, user) {
				continue
			}
			if g, err := strconv.Atoi(string(f[2])); err == nil && g >= 0 && g <= maxID {
				out = append(out, uint32(g))
			}
			break
		}
		return false
	})
	return out
}
