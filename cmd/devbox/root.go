package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/spf13/cobra"
)

// globals are the flags every command shares.
type globals struct {
	debug bool
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "devbox",
		Short: "Linux containers on your laptop: natively on Linux, in a small fast VM elsewhere",
		Long: `devbox runs Linux containers from any OCI/Docker image.

State lives in $DEVBOX_HOME (default ~/.devbox); the native image store in
$DEVBOX_ROOT (default /var/lib/devbox).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			setupLogging(g.debug, cmd.ErrOrStderr())
		},
	}
	root.PersistentFlags().BoolVar(&g.debug, "debug", false, "log debug information to stderr")
	root.AddCommand(
		newVersionCmd(),
		newPullCmd(g),
		newImagesCmd(g),
		newRmiCmd(g),
		newImageCmd(g),
		newRunCmd(g),
		newPsCmd(g),
		newRmCmd(g),
		newUpCmd(g),
		newDownCmd(g),
		newStatusCmd(g),
		newDestroyCmd(g),
		newSSHCmd(g),
		newSSHConfigCmd(g),
		newSSHProxyCmd(g),
		newLogsCmd(g),
	)
	return root
}

func setupLogging(debug bool, stderr io.Writer) {
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
		logs.Debug.SetOutput(stderr)
		logs.Progress.SetOutput(stderr)
	}
	logs.Warn.SetOutput(stderr)
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the devbox version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "devbox %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTTY(f.Fd())
}
