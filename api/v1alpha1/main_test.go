package v1alpha1_test

import (
	"os"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/ironlb/ironlb/e2e/apiserver"
)

// The admission tests run against a real kube-apiserver (e2e/apiserver), started on first use
// and stopped when the package's tests end, with the committed CRDs applied: what they accept
// and refuse is what a cluster accepts and refuses.
var server = apiserver.Shared{Options: apiserver.Options{CRDDir: crdDir}}

func TestMain(m *testing.M) { os.Exit(server.Run(m)) }

// cluster returns an admin client configuration for the shared API server.
func cluster(t *testing.T) *rest.Config { return server.Server(t).Config }
