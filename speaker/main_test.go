package speaker

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/ironlb/ironlb/internal/kubeclient"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// The tests of the speaker's API writers and readers run against a real kube-apiserver and
// etcd on loopback (e2e/apiserver), started on first use and stopped when the package's tests
// end; the planner's tests need none.
var server = apiserver.Shared{Options: apiserver.Options{CRDDir: "../charts/ironlb/crds"}}

var nsSeq atomic.Int64

func TestMain(m *testing.M) { os.Exit(server.Run(m)) }

// cluster returns an admin client configuration for the shared API server.
func cluster(t *testing.T) *rest.Config { return server.Server(t).Config }

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
