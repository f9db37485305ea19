//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/devbox-dev/devbox/bench/internal/proc"
	"github.com/devbox-dev/devbox/bench/internal/stats"
)

// printHeader describes the setup before the runs start.
func printHeader(cfg config, st *setup, cs []*contender) {
	var uts unix.Utsname
	unix.Uname(&uts)
	fmt.Printf("\nhost:    Linux %s, %d CPUs, load average %s\n", unix.ByteSliceToString(uts.Release[:]), runtime.NumCPU(), loadAvg())
	fmt.Printf("image:   %s: %s as /bin/busybox, applet symlinks, /etc/passwd, /etc/group (%d entries, one layer)\n",
		imageRef, st.busyboxVersion, st.entries)
	for _, c := range cs {
		fmt.Printf("%-8s %s\n", c.name+":", c.commandLine())
		fmt.Printf("         %s\n", c.version)
	}
	for _, name := range allContenders {
		if why, ok := st.skipped[name]; ok {
			fmt.Printf("%-8s SKIPPED: %s\n", name+":", why)
		}
	}
	fmt.Println("setup:   devbox: image imported into a fresh DEVBOX_ROOT; podman: `devbox image export` loaded into a private store")
	fmt.Println("         (root on disk, run root on tmpfs, as podman's defaults); crun/runc: one OCI bundle, a directory copy of the same files")
	if b := st.bundle; b != nil {
		var ns []string
		for _, t := range b.namespaces {
			ns = append(ns, string(t))
		}
		sc := "no seccomp filter (-seccomp=false)"
		if b.seccomp {
			sc = "devbox's seccomp filter (Docker's default profile)"
		}
		fmt.Printf("bundle:  `%s spec`'s config.json with devbox's process, capabilities, masked/read-only paths and sysctls,\n", b.specTool)
		fmt.Printf("         namespaces %s, %s\n", strings.Join(ns, ","), sc)
	}
	fmt.Printf("network: %s\n", networkNote(cfg.network))
	fmt.Printf("runs:    %d warm-up per contender, then %d rounds of one run each, order rotated every round and reversed every %d;\n",
		max(cfg.warmup, 1), cfg.iterations, len(cs))
	fmt.Println("         time is the wall time of the whole command; leftover processes are waited for and the disk synced, untimed, after each run")
	fmt.Printf("note:    %s\n\n", cgroupNote(st.hiddenControllers))
}

// networkNote says how the network namespaces were paired.
func networkNote(network string) string {
	if network == "host" {
		return "host for all: devbox's default (host networking), podman --network=host, no network namespace in the bundle"
	}
	return "a new network namespace with only lo for all: devbox --network none, podman --network=none, and a network namespace in the bundle"
}

// cgroupNote is the note about the cgroup.controllers bind mount.
func cgroupNote(hidden string) string {
	const ns = "all contenders run in one private mount namespace"
	if hidden == "" {
		return ns + "; " + unifiedControllers + " is absent or empty here, so nothing is hidden from the runtimes"
	}
	return fmt.Sprintf("%s in which an empty file is bind-mounted over %s (which lists %q): Debian's crun refuses this hybrid cgroup host otherwise; devbox, runc and podman see the same empty list",
		ns, unifiedControllers, hidden)
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// firstOf returns the first line of s.
func firstOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// summary is one contender's numbers.
type summary struct {
	median, p90, min, max, linger time.Duration
	rss                           int64 // median peak RSS, KiB
}

func summarize(ss []proc.Sample, linger []time.Duration) summary {
	walls := make([]time.Duration, len(ss))
	rss := make([]float64, len(ss))
	for i, s := range ss {
		walls[i] = s.Wall
		rss[i] = float64(s.MaxRSS)
	}
	w := stats.Durations(walls)
	return summary{
		median: time.Duration(stats.Median(w)),
		p90:    time.Duration(stats.Percentile(w, 90)),
		min:    slices.Min(walls),
		max:    slices.Max(walls),
		linger: slices.Max(linger),
		rss:    int64(stats.Median(rss)),
	}
}

// ratio is one target line of the report.
type ratio struct {
	peer   string
	target float64 // 0: no target
}

var ratios = []ratio{{"crun", targetCrun}, {"runc", 0}, {"podman", targetPodman}}

// report prints the table and verdicts; it returns whether devbox met all
// its targets, a skipped contender's counting as missed.
func report(w io.Writer, cfg config, st *setup, res *results) bool {
	sums := map[string]summary{}
	for _, n := range res.names {
		sums[n] = summarize(res.samples[n], res.linger[n])
	}
	ms := stats.Millis
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\ncontender\tmedian\tp90\tmin\tmax\tpeak RSS (median)\tleftovers ran on (max)\t")
	atFloor := false
	for _, n := range res.names {
		s := sums[n]
		rss := stats.KiB(s.rss)
		// Within 10% of the floor, the figure may be the spawner's rather
		// than the command's.
		if s.rss*10 <= st.rssFloor*11 {
			rss += " *"
			atFloor = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", n, ms(s.median), ms(s.p90), ms(s.min), ms(s.max), rss, ms(s.linger))
	}
	tw.Flush()
	fmt.Fprintf(w, "(%d rounds; peak RSS is ru_maxrss of the command's process and the children it waited for, taken by a small\n", len(res.orders))
	fmt.Fprintf(w, " spawner process, so that the bench's own RSS does not leak into it; its floor, true(1)'s figure, is %s;\n", stats.KiB(st.rssFloor))
	if atFloor {
		fmt.Fprintln(w, " * at the floor: the true peak is this or lower;")
	}
	fmt.Fprintln(w, " leftovers ran on = how long processes the command left behind ran after it exited, untimed)")

	dev, ok := sums["devbox"]
	if !ok {
		return false
	}
	fmt.Fprintln(w)
	met := true
	for _, r := range ratios {
		label := fmt.Sprintf("devbox/%s (medians):", r.peer)
		peer, ok := sums[r.peer]
		if !ok {
			why := "not run"
			if s, skipped := st.skipped[r.peer]; skipped {
				why = "skipped: " + firstOf(s)
			}
			fmt.Fprintf(w, "%-26s -      %s\n", label, why)
			if r.target > 0 {
				met = false
			}
			continue
		}
		x := dev.median.Seconds() / peer.median.Seconds()
		if r.target == 0 {
			fmt.Fprintf(w, "%-26s %.2f   (no target)\n", label, x)
			continue
		}
		fmt.Fprintf(w, "%-26s %.2f   target <= %.2f   %s\n", label, x, r.target, stats.Verdict(x <= r.target))
		met = met && x <= r.target
	}
	rss := float64(dev.rss) / 1024
	fmt.Fprintf(w, "%-26s %.1f MiB   target <= %d MiB   %s\n", "devbox peak RSS (median):", rss, targetRSSMiB, stats.Verdict(rss <= targetRSSMiB))
	fmt.Fprintf(w, "load average at the end: %s (other work on the machine slows every contender alike, in the long run)\n", loadAvg())
	fmt.Fprintf(w, "\nnote: %s\n", cgroupNote(st.hiddenControllers))
	fmt.Fprintf(w, "network: %s\n", networkNote(cfg.network))
	return met && rss <= targetRSSMiB
}
