package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	"github.com/ironlb/ironlb/internal/demo"
)

// TestLabCommand runs the README's main job as a user would and checks that the EXTERNAL-IPs
// it prints answer: the L2 one from the LAN client, the BGP one from the client behind the
// router. Then Ctrl-C tears everything down. Needs root.
func TestLabCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (the lab's network namespaces); CI runs it as root")
	}
	bin := filepath.Join(t.TempDir(), "ironlb-lab")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the lab command: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // other labs may run first
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-dir", t.TempDir())
	cmd.Dir = "../.." // the repository root, as `make lab` runs it
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	var printed strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "stays up until you press Ctrl-C") {
			break
		}
	}
	out := printed.String()
	t.Log(out)
	ips := map[string]string{}
	row := regexp.MustCompile(`(?m)^(web-l2|web-bgp)\s+LoadBalancer\s+\S+\s+(\S+)\s`)
	for _, m := range row.FindAllStringSubmatch(out, -1) {
		ips[m[1]] = m[2]
	}
	for svc, ns := range map[string]string{"web-l2": lab.NSLANClient, "web-bgp": lab.NSExtClient} {
		ip := ips[svc]
		if ip == "" || ip == "<pending>" {
			t.Fatalf("the lab printed no EXTERNAL-IP for %s", svc)
		}
		body, err := lab.HTTPGet(ctx, ns, "http://"+ip+"/", 3*time.Second)
		if err != nil {
			t.Errorf("%s's EXTERNAL-IP %s does not answer from %s: %v", svc, ip, ns, err)
			continue
		}
		if _, _, err := demo.ParseAnswer(body); err != nil {
			t.Errorf("%s: %v", svc, err)
		}
	}

	// Ctrl-C: the lab tears itself down.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = bufio.NewReader(stdout).WriteTo(devNull{}) }()
	if err := cmd.Wait(); err != nil {
		t.Errorf("the lab exited with %v after Ctrl-C", err)
	}
	// Another package's lab may start as soon as this one is down: look under the lab lock.
	if err := lab.WithLock(func() {
		if left, _ := lab.Namespaces(); len(left) != 0 {
			t.Errorf("namespaces left after Ctrl-C: %v", left)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }
