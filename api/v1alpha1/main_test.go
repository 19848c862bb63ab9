package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/ironlb/ironlb/e2e/apiserver"
)

// The admission tests run against a real kube-apiserver (e2e/apiserver), started on first use
// and stopped when the package's tests end, with the committed CRDs applied: what they accept
// and refuse is what a cluster accepts and refuses.
var server struct {
	once sync.Once
	dir  string
	srv  *apiserver.Server
	err  error
}

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
// first call. A server that cannot start fails the test (with the reason, e.g. "run
// hack/install-deps.sh"); it is never skipped.
func cluster(t *testing.T) *rest.Config {
	t.Helper()
	server.once.Do(func() {
		server.dir, server.err = os.MkdirTemp("", "ironlb-api-test-")
		if server.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server.srv, server.err = apiserver.Start(ctx, apiserver.Options{Dir: server.dir, CRDDir: crdDir})
		if server.err != nil {
			server.err = fmt.Errorf("starting kube-apiserver with the CRDs in %s: %w", crdDir, server.err)
		}
	})
	if server.err != nil {
		t.Fatal(server.err)
	}
	return server.srv.Config
}
