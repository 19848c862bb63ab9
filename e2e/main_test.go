// Package e2e holds ironlb's end-to-end tests: ironlb installed with its Helm chart on the lab's
// real cluster (nodes as network namespaces with their own kubelet and containerd, BIRD, FRR),
// driven from outside as an operator or a client would. They need root; CI runs them as root.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
)

// env is the lab shared by the tests of this package, with ironlb running.
var env struct {
	lab *lab.Lab
	ilb *lab.IronLB
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests need root (network namespaces); CI runs them as root")
		return 1
	}
	// Other packages' labs may hold the lab lock first (one lab per machine).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Config{FRR: true, FRRASN: lab.NodeASN})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: lab:", err)
		return 1
	}
	defer l.Down(context.Background())
	env.lab = l
	if env.ilb, err = l.StartIronLB(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting ironlb:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "e2e: logs of the failed run are in", l.Config.Dir+"/logs")
	}
	return code
}
