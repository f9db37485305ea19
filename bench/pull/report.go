package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/devbox-dev/devbox/bench/internal/proc"
	"github.com/devbox-dev/devbox/bench/internal/stats"
)

// printHeader describes the setup before the runs start.
func printHeader(cfg config, ref, layerPath string, st layerStats, cs []contender) {
	fmt.Printf("\nimage:   %s, 1 gzip layer (level 6)\n", ref)
	fmt.Printf("layer:   %d files, %d dirs, %d symlinks, %d hardlinks; %s of files, %s tar, %s gzip\n",
		st.Files, st.Dirs, st.Symlinks, st.Hardlinks, stats.MiB(st.Bytes), stats.MiB(st.TarBytes), stats.MiB(st.GzipBytes))
	fmt.Printf("         %s\n", layerPath)
	for _, c := range cs {
		switch c := c.(type) {
		case devboxPull:
			fmt.Printf("devbox:  %s pull REF (fresh DEVBOX_ROOT)\n", c.bin)
		case cranePull:
			fmt.Printf("peer:    %s pull --format=oci REF DIR && %s -xzf DIR/blobs/sha256/<layer> -C ROOTFS\n", c.crane, c.tar)
		}
	}
	fmt.Printf("runs:    %d measured + %d warm-up per contender, ABBA order, fresh dirs; page cache not dropped (blob warm for both)\n\n",
		cfg.iterations, cfg.warmup)
}

// report prints the table and verdicts; it returns whether devbox met its
// targets (false when devbox did not run).
func report(w io.Writer, res *results) bool {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\niter\tfirst\t")
	for _, n := range res.names {
		fmt.Fprintf(tw, "%s\t%s RSS\t", n, n)
	}
	fmt.Fprintln(tw)
	for i, first := range res.first {
		fmt.Fprintf(tw, "%d\t%s\t", i+1, first)
		for _, n := range res.names {
			s := res.samples[n][i]
			fmt.Fprintf(tw, "%s\t%s\t", stats.Secs(s.Wall), stats.KiB(s.MaxRSS))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprint(tw, "median\t\t")
	for _, n := range res.names {
		fmt.Fprintf(tw, "%s\t%s\t", stats.Secs(medianWall(res.samples[n])), stats.KiB(medianRSS(res.samples[n])))
	}
	fmt.Fprintln(tw)
	fmt.Fprint(tw, "on disk\t\t")
	for _, n := range res.names {
		fmt.Fprintf(tw, "%s\t\t", stats.MiB(res.disk[n]))
	}
	fmt.Fprintln(tw)
	tw.Flush()
	fmt.Fprintln(w, "(peer RSS is the larger of crane's and tar's; on disk is the bytes of regular files a run left behind)")

	dev, ok := res.samples["devbox"]
	if !ok {
		return false
	}
	fmt.Fprintln(w)
	met := true
	if peer, ok := res.samples["peer"]; ok {
		ratio := medianWall(dev).Seconds() / medianWall(peer).Seconds()
		fmt.Fprintf(w, "ratio devbox/peer (medians): %.2f   target <= %.2f   %s\n", ratio, targetRatio, stats.Verdict(ratio <= targetRatio))
		met = ratio <= targetRatio
	}
	rss := float64(medianRSS(dev)) / 1024
	fmt.Fprintf(w, "devbox peak RSS (median):    %.1f MiB   target < %d MiB   %s\n", rss, targetRSSMiB, stats.Verdict(rss < targetRSSMiB))
	return met && rss < targetRSSMiB
}

func medianWall(ss []proc.Sample) time.Duration {
	ds := make([]float64, len(ss))
	for i, s := range ss {
		ds[i] = float64(s.Wall)
	}
	return time.Duration(stats.Median(ds))
}

func medianRSS(ss []proc.Sample) int64 {
	rs := make([]float64, len(ss))
	for i, s := range ss {
		rs[i] = float64(s.MaxRSS)
	}
	return int64(stats.Median(rs))
}
