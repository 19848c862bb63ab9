// Command kubectl-ironlb is the ironlb kubectl plugin: put it on the PATH and run
// `kubectl ironlb status`, `kubectl ironlb why SERVICE`, `kubectl ironlb pools` or
// `kubectl ironlb migrate-from-metallb`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/ironlb/ironlb/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := plugin.NewCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kubectl-ironlb:", err)
		stop()
		os.Exit(1)
	}
}
