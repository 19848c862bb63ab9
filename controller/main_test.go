package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/apiserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// The integration tests in this package run against a real kube-apiserver and etcd on loopback
// (no root needed), started once for the package.
var testEnv struct {
	// cfg is the admin configuration of the tests' own clients (fixtures and observers); the
	// controllers under test apply their own Config.API limits to it (kubeclient.New).
	cfg        *rest.Config
	kube       kubernetes.Interface
	kubeconfig string // the same admin identity, for the controller binary
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	klog.SetSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "ironlb-controller-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := apiserver.Start(ctx, apiserver.Options{Dir: dir, CRDDir: "../charts/ironlb/crds",
		// 5,000 LoadBalancer Services (BenchmarkBurst) need 5,000 NodePorts; the default range
		// holds 2,768.
		ExtraArgs: []string{"--service-node-port-range=30000-39999"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the API server:", err)
		return 1
	}
	defer s.Stop()
	testEnv.cfg = s.Config
	testEnv.kubeconfig = s.Kubeconfig
	testEnv.kube = kubernetes.NewForConfigOrDie(s.Config)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ironlb-system"}}
	if _, err := testEnv.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
