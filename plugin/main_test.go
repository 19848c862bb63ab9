package plugin

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ironlb/ironlb/controller"
	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// The integration tests run the plugin's commands against a real kube-apiserver and etcd on
// loopback, with the CRDs of the chart and the real controller in this process. The server
// starts with the first test that needs it, so the pure tests run without it.
var server = apiserver.Shared{Options: apiserver.Options{CRDDir: "../charts/ironlb/crds"}}

// testEnv is what needAPIServer sets up in the server, once.
var testEnv struct {
	once       sync.Once
	err        error
	kubeconfig string
	clients    *kubeclient.Clients
}

func TestMain(m *testing.M) {
	klog.SetSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(server.Run(m))
}

// needAPIServer starts the package's API server once, with an ironlb-system namespace.
func needAPIServer(t *testing.T) {
	t.Helper()
	s := server.Server(t)
	testEnv.once.Do(func() { testEnv.err = setUp(s) })
	if testEnv.err != nil {
		t.Fatal(testEnv.err)
	}
}

func setUp(s *apiserver.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testEnv.kubeconfig = s.Kubeconfig
	// The tests' fixtures, not the plugin under test: no client-side limit.
	fixtures := kubeclient.Limits{QPS: -1}
	var err error
	if testEnv.clients, err = kubeclient.New(s.Config, fixtures, fixtures); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ironlb-system"}}
	if _, err := testEnv.clients.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating ironlb-system: %w", err)
	}
	return nil
}

// startController runs the real controller with its shipped defaults until the test ends.
// Only the metrics endpoint is off: its fixed port would clash with other test binaries.
func startController(t *testing.T) {
	t.Helper()
	cfg := controller.DefaultConfig()
	cfg.MetricsAddr = ""
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	restCfg, err := kubeconfigREST()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := controller.New(cfg, restCfg, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("controller: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("the controller did not stop within 20 s")
		}
	})
}

// run runs kubectl-ironlb with args (the kubeconfig flag added) and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append([]string{"--kubeconfig", testEnv.kubeconfig}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String() + errOut.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("kubectl ironlb %v: %v\n%s", args, err, out)
	}
	return out
}

func kubeconfigREST() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", testEnv.kubeconfig)
}
