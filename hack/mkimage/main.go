// Command mkimage builds ironlb's images as docker-archive tarballs without Docker (`make
// images`); internal/images says what goes into each. It prints one line per image: the
// tarball, its tag, its ID and size, and whether it was rewritten.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"text/tabwriter"

	"github.com/ironlb/ironlb/internal/images"
)

func main() {
	dir := flag.String("dir", "", "output directory (default ${IRONLB_CACHE:-$HOME/.cache/ironlb}/images)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	built, err := images.Build(ctx, images.Options{Dir: *dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		stop()
		os.Exit(1)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TARBALL\tTAG\tID\tMiB\t")
	for _, b := range built {
		state := "up to date"
		if b.Written {
			state = "written"
		}
		fmt.Fprintf(w, "%s\t%s\t%.19s\t%.1f\t%s\n", b.Path, b.Ref, b.ID, float64(b.Size)/(1<<20), state)
	}
	_ = w.Flush()
}
