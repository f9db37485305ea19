package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devbox-dev/devbox/engine"
)

func newPsCmd(g *globals) *cobra.Command {
	var all, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := newEngine(cmd.Context())
			if err != nil {
				return err
			}
			defer e.Close()
			cs, err := e.Containers(cmd.Context(), all)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case format == "json":
				if cs == nil {
					cs = []*engine.Container{}
				}
				return printJSON(out, cs)
			case format != "" && format != "table":
				return fmt.Errorf("unknown --format %q: use table or json", format)
			case quiet:
				for _, c := range cs {
					fmt.Fprintln(out, c.ID[:12])
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tNAMES")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID[:12], c.Image, quoteCommand(c.Command), since(c.Created), status(c), c.Name)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all containers, not only running ones")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only container IDs")
	cmd.Flags().StringVar(&format, "format", "", "output format: table or json")
	return cmd
}

// quoteCommand shows a command as docker ps does: quoted, cut at 20.
func quoteCommand(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 20 {
		s = s[:19] + "…"
	}
	return `"` + s + `"`
}

// status is docker's STATUS column: "Up 3 minutes", "Exited (0) 2 hours ago".
func status(c *engine.Container) string {
	switch c.State {
	case engine.StateRunning:
		return "Up " + humanDuration(time.Since(c.Started))
	case engine.StateExited:
		return fmt.Sprintf("Exited (%d) %s", c.ExitCode, since(c.Finished))
	}
	return "Created"
}

func newRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [flags] CONTAINER...",
		Short: "Remove containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := newEngine(cmd.Context())
			if err != nil {
				return err
			}
			defer e.Close()
			var failed error
			for _, ref := range args {
				if _, err := e.RemoveContainer(cmd.Context(), ref, force); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "devbox: %v\n", err)
					failed = exitCode(1)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
			}
			return failed
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill and remove a running container")
	return cmd
}
