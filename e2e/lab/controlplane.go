package lab

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ironlb/ironlb/e2e/apiserver"
)

// MaxEndpointsPerSlice is the lab's kube-controller-manager --max-endpoints-per-slice: a Service
// with more ready or terminating pods than this has several EndpointSlices.
const MaxEndpointsPerSlice = 10

// startControlPlane runs the real kube-controller-manager and kube-scheduler in NSCtl next to
// the API server. The controller manager signs nothing with the cluster CA but publishes the API server's CA (kube-root-ca.crt), creates default ServiceAccounts, writes
// EndpointSlices and runs the Deployment, ReplicaSet and DaemonSet controllers.
func (l *Lab) startControlPlane(ctx context.Context) error {
	bin := l.binDir()
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kubelet"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return fmt.Errorf("lab: %s is missing (run hack/install-deps.sh): %w", filepath.Join(bin, name), err)
		}
	}
	apiDir := l.API.Dir
	rootCA := filepath.Join(apiDir, "ca.crt")
	if err := writeCAOnly(filepath.Join(apiDir, "certs", "apiserver.crt"), rootCA); err != nil {
		return err
	}
	if _, err := l.Start(ctx, "kube-controller-manager", NSCtl, filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+l.NodeKubeconfig,
		"--authentication-kubeconfig="+l.NodeKubeconfig,
		"--authorization-kubeconfig="+l.NodeKubeconfig,
		// The API server has no client CA (tokens only): nothing to look up.
		"--authentication-skip-lookup=true",
		"--service-account-private-key-file="+filepath.Join(apiDir, "sa.key"),
		"--root-ca-file="+rootCA,
		"--service-cluster-ip-range="+ServiceCIDR,
		// Fewer endpoints per slice than the default 100, so that a test Service of a few
		// dozen pods has several EndpointSlices, as one of hundreds of pods has on a cluster,
		// without starting hundreds of pods on the lab's few cores.
		fmt.Sprintf("--max-endpoints-per-slice=%d", MaxEndpointsPerSlice),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--v=1",
	); err != nil {
		return err
	}
	if _, err := l.Start(ctx, "kube-scheduler", NSCtl, filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+l.NodeKubeconfig,
		"--authentication-kubeconfig="+l.NodeKubeconfig,
		"--authorization-kubeconfig="+l.NodeKubeconfig,
		// The API server has no client CA (tokens only): nothing to look up.
		"--authentication-skip-lookup=true",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--v=1",
	); err != nil {
		return err
	}
	return nil
}

// binDir is where hack/build-kube.sh caches the Kubernetes binaries.
func (l *Lab) binDir() string { return apiserver.BinDir(apiserver.DefaultKubeVersion) }

func (l *Lab) logPath(name string) string { return filepath.Join(l.Config.Dir, "logs", name+".log") }

// writeCAOnly copies the CA certificates of a bundle (kube-apiserver's self-signed serving
// certificate followed by the CA that signed it) to dst: what pods get as kube-root-ca.crt, and
// what the ClusterTrustBundle publisher accepts.
func writeCAOnly(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	var out []byte
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if c, err := x509.ParseCertificate(block.Bytes); err == nil && c.IsCA {
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("lab: no CA certificate in %s", src)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}
