package apiserver

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestStartServesAndStops needs no root: etcd and kube-apiserver on loopback.
func TestStartServesAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Dir: t.TempDir(), CRDDir: "../../charts/ironlb/crds"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	cs := kubernetes.NewForConfigOrDie(s.Config)
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != DefaultKubeVersion {
		t.Errorf("server reports %q, want %q (build-kube.sh must stamp the version)", v.GitVersion, DefaultKubeVersion)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	res, err := cs.Discovery().ServerResourcesForGroupVersion("ironlb.io/v1alpha1")
	if err != nil {
		t.Fatalf("the project's CRDs are not served: %v", err)
	}
	if len(res.APIResources) == 0 {
		t.Error("ironlb.io/v1alpha1 serves no resources")
	}

	// The kubeconfig file works on its own.
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatalf("loading kubeconfig: %v", err)
	}
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Namespaces().Get(ctx, "smoke", metav1.GetOptions{}); err != nil {
		t.Fatalf("kubeconfig client: %v", err)
	}

	s.Stop()
	if _, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the API server still answers after Stop")
	}
}
