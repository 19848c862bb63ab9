// Package docs tests the user's guide: its shell blocks marked "sh test" run, in order, against
// a real kube-apiserver and etcd on loopback with the real controller, the kubectl built by
// hack/install-deps.sh and the kubectl-ironlb plugin built from cmd/.
package docs

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/controller"
	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// block is a shell block of a Markdown file, with the line it starts on and the output the
// guide shows for it (a "```text output" block right after it), if any.
type block struct {
	line   int
	text   string
	output string
}

// testedBlocks returns the blocks opened by "```sh test", each with the "```text output"
// block that follows it.
func testedBlocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []block
	var cur *block
	inOutput, lastClosed := false, -1 // lastClosed: the line a tested block ended on
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case cur == nil && !inOutput && strings.TrimSpace(l) == "```sh test":
			cur = &block{line: n}
		case cur == nil && !inOutput && strings.TrimSpace(l) == "```text output":
			if lastClosed < 0 {
				t.Fatalf("%s:%d: an output block must follow a tested block, separated by one blank line", path, n)
			}
			inOutput = true
		case inOutput && strings.TrimSpace(l) == "```":
			inOutput, lastClosed = false, -1
		case inOutput:
			out[len(out)-1].output += l + "\n"
		case cur != nil && strings.TrimSpace(l) == "```":
			out = append(out, *cur)
			cur, lastClosed = nil, n
		case cur != nil:
			cur.text += l + "\n"
		case strings.TrimSpace(l) != "" || n > lastClosed+1:
			lastClosed = -1
		}
	}
	if cur != nil {
		t.Fatalf("%s: the block of line %d is not closed", path, cur.line)
	}
	return out
}

func TestGuideCommands(t *testing.T) {
	klog.SetSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	blocks := testedBlocks(t, "guide.md")
	if len(blocks) < 6 {
		t.Fatalf("guide.md has %d tested blocks; the test would check little", len(blocks))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := apiserver.Start(ctx, apiserver.Options{Dir: t.TempDir(), CRDDir: "../charts/ironlb/crds"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	kube := kubernetes.NewForConfigOrDie(srv.Config)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ironlb-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The controller with its shipped defaults; only the metrics port is off, as it would clash
	// with other test binaries.
	cfg := controller.DefaultConfig()
	cfg.MetricsAddr = ""
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	c, err := controller.New(cfg, srv.Config, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}()

	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "kubectl-ironlb"), "../cmd/kubectl-ironlb")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	kubectlDir := apiserver.BinDir(apiserver.DefaultKubeVersion)
	if _, err := os.Stat(filepath.Join(kubectlDir, "kubectl")); err != nil {
		t.Fatalf("kubectl is missing (run hack/install-deps.sh): %v", err)
	}
	env := append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+kubectlDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KUBECONFIG="+srv.Kubeconfig, "HOME="+t.TempDir())

	for _, b := range blocks {
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", b.text)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		t.Logf("guide.md:%d\n%s%s", b.line, b.text, out)
		if err != nil {
			t.Fatalf("the block of guide.md line %d failed: %v\n%s", b.line, err, out)
		}
		// The output shown must appear as shown, up to the width of the columns.
		if want := squeeze(b.output); want != "" && !strings.Contains(squeeze(string(out)), want) {
			t.Errorf("the block of guide.md line %d does not print what the guide shows:\n%s\nit printed:\n%s", b.line, b.output, out)
		}
	}
}

// squeeze collapses every run of white space into one space.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }
