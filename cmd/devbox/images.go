package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/devbox-dev/devbox/config"
	"github.com/devbox-dev/devbox/images"
	"github.com/devbox-dev/devbox/progress"
)

func newPullCmd(g *globals) *cobra.Command {
	var platform string
	var insecure []string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE[:TAG|@DIGEST]",
		Short: "Pull an image from a registry",
		Example: `  devbox pull busybox
  devbox pull --platform linux/arm64 alpine:3.20
  devbox pull 127.0.0.1:5000/myapp:dev`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := images.PullOptions{Insecure: insecure, UserAgent: "devbox/" + version}
			if platform != "" {
				p, err := v1.ParsePlatform(platform)
				if err != nil || p.OS == "" || p.Architecture == "" {
					return fmt.Errorf("invalid --platform %q: use OS/ARCH[/VARIANT], like linux/arm64", platform)
				}
				opts.Platform = p
			}
			if _, err := images.ParseReference(args[0], insecure); err != nil {
				return err
			}
			e, err := newEngine(cmd.Context())
			if err != nil {
				return err
			}
			defer e.Close()
			out := cmd.OutOrStdout()
			var r *progress.Renderer
			downloaded := false
			if !quiet {
				r = progress.NewRenderer(out, isTerminal(out))
				opts.Progress = func(e progress.Event) {
					if e.Status == "Pull complete" {
						downloaded = true
					}
					r.Update(e)
				}
				fmt.Fprintf(out, "Pulling %s\n", args[0])
			}
			img, err := e.Pull(cmd.Context(), args[0], opts)
			if r != nil {
				r.Flush()
			}
			if err != nil {
				return err
			}
			ref := args[0]
			if pr, err := images.ParseReference(args[0], insecure); err == nil {
				ref = images.Familiar(pr.Name())
			}
			if !quiet {
				if len(img.RepoDigests) > 0 {
					fmt.Fprintf(out, "Digest: %s\n", img.RepoDigests[len(img.RepoDigests)-1][strings.LastIndex(img.RepoDigests[len(img.RepoDigests)-1], "@")+1:])
				}
				if downloaded {
					fmt.Fprintf(out, "Status: Downloaded newer image for %s\n", ref)
				} else {
					fmt.Fprintf(out, "Status: Image is up to date for %s\n", ref)
				}
			}
			fmt.Fprintln(out, ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "pull for this platform, OS/ARCH[/VARIANT] (default: this machine's)")
	cmd.Flags().StringSliceVar(&insecure, "insecure-registry", nil, "registry HOST[:PORT] to reach over plain HTTP (localhost and 127.0.0.1 always are)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image reference")
	return cmd
}

func newImagesCmd(g *globals) *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "images",
		Aliases: []string{"ls"},
		Short:   "List images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := newEngine(cmd.Context())
			if err != nil {
				return err
			}
			defer e.Close()
			imgs, err := e.Images(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case format == "json":
				if imgs == nil {
					imgs = []*images.Image{}
				}
				return printJSON(out, imgs)
			case format != "" && format != "table":
				return fmt.Errorf("unknown --format %q: use table or json", format)
			case quiet:
				for _, img := range imgs {
					fmt.Fprintln(out, images.ShortID(img.ID))
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			for _, img := range imgs {
				tags := img.RepoTags
				if len(tags) == 0 {
					tags = []string{""}
				}
				for _, t := range tags {
					repo, tag := "<none>", "<none>"
					if t != "" {
						repo, tag = images.SplitTag(t)
					} else if len(img.RepoDigests) > 0 {
						repo, _, _ = strings.Cut(images.Familiar(img.RepoDigests[0]), "@")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, images.ShortID(img.ID), since(img.Created), progress.HumanSize(img.Size))
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: table or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only image IDs")
	return cmd
}

// since formats a time as docker does: "3 days ago".
func since(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return humanDuration(time.Since(t)) + " ago"
}

// humanDuration is docker's (go-units) rendering of a duration.
func humanDuration(d time.Duration) string {
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	switch m := int(d.Minutes()); {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	switch h := int(d.Hours() + 0.5); {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	default:
		return fmt.Sprintf("%d years", int(d.Hours())/24/365)
	}
}

// printJSON is --format json: v indented, as podman prints it.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newRmiCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [flags] IMAGE...",
		Short: "Remove images",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := newEngine(cmd.Context())
			if err != nil {
				return err
			}
			defer e.Close()
			var failed error
			for _, ref := range args {
				res, err := e.RemoveImage(cmd.Context(), ref, force)
				for _, u := range res.Untagged {
					fmt.Fprintf(cmd.OutOrStdout(), "Untagged: %s\n", u)
				}
				for _, d := range res.Deleted {
					fmt.Fprintf(cmd.OutOrStdout(), "Deleted: %s\n", d)
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "devbox: %v\n", err)
					failed = exitCode(1)
				}
			}
			return failed
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image by ID even if it has several tags")
	return cmd
}

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images",
	}
	ls := newImagesCmd(g)
	ls.Use, ls.Aliases = "ls", []string{"list"}
	rm := newRmiCmd(g)
	rm.Use, rm.Aliases = "rm [flags] IMAGE...", nil
	cmd.AddCommand(newPullCmd(g), ls, rm, newImportCmd(g), newExportCmd(g))
	return cmd
}

func newImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE [REPOSITORY[:TAG]]",
		Short: "Import images from a docker save tarball, an OCI layout tar, or a root filesystem tar",
		Example: `  docker save busybox | gzip > busybox.tar.gz && devbox image import busybox.tar.gz
  devbox image import rootfs.tar mybase:1`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			file, err := config.ExpandPath(args[0])
			if err != nil {
				return err
			}
			e, err := newEngine(cmd.Context())
			if err != nil {
				return err
			}
			defer e.Close()
			imgs, err := e.ImportImage(cmd.Context(), file, ref)
			if err != nil {
				return err
			}
			for _, img := range imgs {
				name := img.ID
				if len(img.RepoTags) > 0 {
					name = images.Familiar(img.RepoTags[0])
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Loaded image: %s\n", name)
			}
			return nil
		},
	}
}

func newExportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "export IMAGE FILE",
		Short: "Write an image to a tar file that docker load and OCI tools read",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, err := config.ExpandPath(args[1])
			if err != nil {
				return err
			}
			e, err := newEngine(cmd.Context())
			if err != nil {
				return err
			}
			defer e.Close()
			return e.ExportImage(cmd.Context(), args[0], file)
		},
	}
}
