package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// ChartRelease is the Helm release the lab installs ironlb as (Config.RealCluster).
const ChartRelease = "ironlb"

// installChart installs ironlb with `helm install` from charts/ironlb into SystemNamespace, as a
// user would: the controller Deployment and the speaker DaemonSet run as pods of the images the
// nodes imported, with in-cluster configuration and the chart's securityContext. The lab only
// changes what a cluster without a registry and without kube-proxy needs: images are never
// pulled, and the speakers reach the API server at its own address instead of the kubernetes
// Service's ClusterIP (which only their own nftables table makes reachable). set adds --set
// values.
func (l *Lab) installChart(ctx context.Context, set ...string) error {
	helm, err := helmBinary(ctx)
	if err != nil {
		return err
	}
	args := []string{
		"upgrade", "--install", ChartRelease, filepath.Join(l.Config.RepoRoot, "charts", "ironlb"),
		"--kubeconfig", l.Kubeconfig, "--namespace", SystemNamespace, "--create-namespace",
		"--set", "controller.image.pullPolicy=Never",
		"--set", "speaker.image.pullPolicy=Never",
	}
	args = append(args, chartAPIServerValues()...)
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, helm, args...)
	// helm's caches and configuration stay in the lab's directory.
	home := filepath.Join(l.Config.Dir, "helm")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: helm %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return l.waitChartReady(ctx, 2*time.Minute)
}

// chartAPIServerValues point the speakers (and the controller) at the API server's address.
func chartAPIServerValues() []string {
	return []string{"--set", "apiServer.host=" + APIServerAddr.String(), "--set", fmt.Sprintf("apiServer.port=%d", APIPort)}
}

// waitChartReady waits until the controller Deployment and every node's speaker are ready.
func (l *Lab) waitChartReady(ctx context.Context, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ds, err := l.Client.AppsV1().DaemonSets(SystemNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		deps, err := l.Client.AppsV1().Deployments(SystemNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if len(ds.Items) != 1 || len(deps.Items) != 1 {
			last = fmt.Sprintf("%d DaemonSets, %d Deployments", len(ds.Items), len(deps.Items))
			return false, nil
		}
		d, dep := ds.Items[0].Status, deps.Items[0].Status
		last = fmt.Sprintf("speakers ready %d/%d, controllers ready %d", d.NumberReady, len(l.Nodes), dep.ReadyReplicas)
		return int(d.NumberReady) == len(l.Nodes) && d.UpdatedNumberScheduled == d.DesiredNumberScheduled && dep.ReadyReplicas >= 1, nil
	})
	if err != nil {
		return fmt.Errorf("lab: waiting for ironlb's pods (%s): %w", last, err)
	}
	return nil
}

// helmBinary finds the helm that hack/install-deps.sh installs.
func helmBinary(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("lab: go env GOPATH: %w", err)
	}
	gopath, _, _ := strings.Cut(strings.TrimSpace(string(out)), string(os.PathListSeparator))
	bin := filepath.Join(gopath, "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("lab: helm is missing (run hack/install-deps.sh): %w", err)
	}
	return bin, nil
}
