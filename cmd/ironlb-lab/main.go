// Command ironlb-lab runs ironlb's local lab (root): a real API server, Kubernetes nodes as
// network namespaces, a BIRD router, clients, ironlb itself and a demo Service; it stays up until
// interrupted. With -down it removes what an earlier lab left behind.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironlb/ironlb/e2e/lab"
)

func main() {
	var cfg lab.Config
	down := flag.Bool("down", false, "tear down what a previous lab left behind, then exit")
	flag.IntVar(&cfg.Nodes, "nodes", 3, "number of Kubernetes nodes")
	flag.BoolVar(&cfg.FRR, "frr", false, "also run an FRR router on the LAN")
	flag.StringVar(&cfg.Dir, "dir", "", "directory for the lab's files (default: a new temporary directory)")
	flag.BoolVar(&cfg.KubeProxy, "kube-proxy", false, "also run kube-proxy (nftables mode) on every node")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *down {
		if err := lab.Cleanup(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "ironlb-lab:", err)
			os.Exit(1)
		}
		return
	}
	l, err := lab.RunDemo(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ironlb-lab:", err)
		os.Exit(1)
	}
	fmt.Println("\nThe lab stays up until you press Ctrl-C.")
	<-ctx.Done()
	fmt.Println("tearing the lab down")
	l.Down(context.Background())
}
