package speaker

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/ironlb/ironlb/internal/kubeclient"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// The tests of the speaker's API writers and readers run against a real kube-apiserver and
// etcd on loopback (e2e/apiserver), started on first use and stopped when the package's tests
// end; the planner's tests need none.
var server struct {
	once sync.Once
	dir  string
	srv  *apiserver.Server
	err  error
}

var nsSeq atomic.Int64

func TestMain(m *testing.M) {
	code := m.Run()
	if server.srv != nil {
		server.srv.Stop()
	}
	if server.dir != "" {
		os.RemoveAll(server.dir)
	}
	os.Exit(code)
}

// cluster returns an admin client configuration for the shared API server, starting it on the
// first call. A server that cannot start fails the test; it is never skipped.
func cluster(t *testing.T) *rest.Config {
	t.Helper()
	server.once.Do(func() {
		server.dir, server.err = os.MkdirTemp("", "ironlb-speaker-test-")
		if server.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server.srv, server.err = apiserver.Start(ctx, apiserver.Options{Dir: server.dir, CRDDir: "../charts/ironlb/crds"})
	})
	if server.err != nil {
		t.Fatalf("starting kube-apiserver: %v", server.err)
	}
	return server.srv.Config
}

// clients returns the speaker's clients (built as New builds them) and a fresh namespace.
func clients(t *testing.T) (*kubeclient.Clients, string) {
	t.Helper()
	def := DefaultConfig()
	c, err := kubeclient.New(cluster(t), def.API, def.Events)
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("t%d", nsSeq.Add(1))
	ctx := context.Background()
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	return c, ns
}
