package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// ChartRelease is the Helm release the lab installs ironlb as on a real cluster.
const ChartRelease = "ironlb"

// installChart installs ironlb with `helm install` from charts/ironlb into SystemNamespace, as a
// user would: the controller Deployment and the speaker DaemonSet run as pods of the images the
// nodes imported, with in-cluster configuration and the chart's securityContext. The lab only
// changes what a cluster without a registry and without kube-proxy needs: images are never
// pulled, and the speakers reach the API server at its own address instead of the kubernetes
// Service's ClusterIP (which only their own nftables table makes reachable). set adds --set
// values.
func (l *Lab) installChart(ctx context.Context, set ...string) error {
	args := []string{
		"upgrade", "--install", ChartRelease, filepath.Join(l.Config.RepoRoot, "charts", "ironlb"),
		"--kubeconfig", l.Kubeconfig, "--namespace", SystemNamespace, "--create-namespace",
		"--set", "controller.image.pullPolicy=Never",
		"--set", "speaker.image.pullPolicy=Never",
		"--set-string", "speaker.nodeSelector." + strings.ReplaceAll(SpeakerLabel, ".", `\.`) + "=true",
	}
	args = append(args, chartAPIServerValues()...)
	for _, s := range set {
		args = append(args, "--set", s)
	}
	if err := l.helm(ctx, args...); err != nil {
		return err
	}
	return l.waitChartReady(ctx, 2*time.Minute)
}

// helm runs helm with args.
func (l *Lab) helm(ctx context.Context, args ...string) error {
	helm, err := helmBinary(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, helm, args...)
	// helm's caches and configuration stay in the lab's directory.
	home := filepath.Join(l.Config.Dir, "helm")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: helm %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Upgrade runs `helm upgrade` of the lab's release with the lab's values and set (--set
// values) and waits until the speaker DaemonSet has rolled out and every pod is ready.
func (ilb *IronLB) Upgrade(ctx context.Context, set ...string) error {
	return ilb.lab.installChart(ctx, set...)
}

// Uninstall removes ironlb's Helm release (`helm uninstall --wait`) and waits until its pods are
// gone: the speakers stop announcing and the controller stops; the CRDs, ironlb's objects and the
// Services' statuses stay. StartIronLB installs it again.
func (ilb *IronLB) Uninstall(ctx context.Context) error {
	l := ilb.lab
	if err := l.helm(ctx, "uninstall", ChartRelease, "--kubeconfig", l.Kubeconfig, "--namespace", SystemNamespace, "--wait", "--timeout", "2m"); err != nil {
		return err
	}
	var left int
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := l.Client.CoreV1().Pods(SystemNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		left = len(pods.Items)
		return left == 0, nil
	})
	if err != nil {
		return fmt.Errorf("lab: %d of ironlb's pods left after helm uninstall: %w", left, err)
	}
	return nil
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
		last = fmt.Sprintf("speakers ready %d/%d (updated %d), controllers ready %d", d.NumberReady, len(l.Nodes), d.UpdatedNumberScheduled, dep.ReadyReplicas)
		// After an upgrade, the statuses must describe the new generation.
		observed := d.ObservedGeneration == ds.Items[0].Generation && deps.Items[0].Status.ObservedGeneration == deps.Items[0].Generation
		return observed && int(d.NumberReady) == len(l.Nodes) && int(d.NumberAvailable) == len(l.Nodes) &&
			d.UpdatedNumberScheduled == d.DesiredNumberScheduled && dep.ReadyReplicas >= 1 && dep.UpdatedReplicas == dep.Replicas, nil
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

// SpeakerLabel on a node lets the chart's speaker DaemonSet run there (the lab installs the
// chart with it as speaker.nodeSelector; kubelets register their nodes with it). Removing it is
// how the lab stops one node's speaker without the DaemonSet starting another.
const SpeakerLabel = "lab.ironlb.io/speaker"

// StopSpeaker stops the speaker of node n. SIGKILL kills it where it stands (a crash: no
// memberlist leave, no withdrawal); SIGTERM lets it shut down as on a rolling update. The
// speaker is the DaemonSet's pod: SIGKILL kills its container's process, SIGTERM deletes the
// pod gracefully; either way n loses SpeakerLabel until StartSpeaker.
func (ilb *IronLB) StopSpeaker(ctx context.Context, n *Node, sig syscall.Signal) error {
	l := ilb.lab
	if sig == syscall.SIGKILL {
		pids, err := speakerPIDs(n)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return fmt.Errorf("lab: no ironlb-speaker process in %s", n.NetNS)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// Without the label the DaemonSet controller deletes the pod (gracefully: SIGTERM) and
	// starts no other; the kubelet does not restart the killed container of a deleted pod.
	if err := l.setNodeLabel(ctx, n, SpeakerLabel, ""); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := ilb.speakerPod(ctx, n)
		if err != nil {
			return false, nil
		}
		pids, err := speakerPIDs(n)
		return pod == nil && err == nil && len(pids) == 0, nil
	})
}

// speakerPod returns the speaker pod on n, or nil.
func (ilb *IronLB) speakerPod(ctx context.Context, n *Node) (*corev1.Pod, error) {
	pods, err := ilb.lab.Client.CoreV1().Pods(SystemNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/component=speaker",
		FieldSelector: "spec.nodeName=" + n.Name,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: listing the speaker pod of %s: %w", n.Name, err)
	}
	if len(pods.Items) == 0 {
		return nil, nil
	}
	return &pods.Items[0], nil
}

// startChartSpeaker gives n SpeakerLabel back and waits for its new speaker pod to be ready.
func (ilb *IronLB) startChartSpeaker(ctx context.Context, n *Node) error {
	if err := ilb.lab.setNodeLabel(ctx, n, SpeakerLabel, "true"); err != nil {
		return err
	}
	var last string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := ilb.speakerPod(ctx, n)
		if err != nil || pod == nil {
			last = fmt.Sprint("no pod ", err)
			return false, nil
		}
		last = fmt.Sprintf("%s %s", pod.Name, pod.Status.Phase)
		return pod.DeletionTimestamp == nil && PodReady(pod), nil
	})
	if err != nil {
		return fmt.Errorf("lab: waiting for the speaker pod on %s (%s): %w", n.Name, last, err)
	}
	return nil
}

// SpeakerLog returns the log of n's speaker pod.
func (ilb *IronLB) SpeakerLog(ctx context.Context, n *Node) (string, error) {
	pod, err := ilb.speakerPod(ctx, n)
	if err != nil {
		return "", err
	}
	if pod == nil {
		return "", fmt.Errorf("lab: no speaker pod on %s", n.Name)
	}
	b, err := ilb.lab.Client.CoreV1().Pods(SystemNamespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("lab: log of %s: %w", pod.Name, err)
	}
	return string(b), nil
}

// setNodeLabel sets (value != "") or removes a label of n.
func (l *Lab) setNodeLabel(ctx context.Context, n *Node, key, value string) error {
	v := "null"
	if value != "" {
		v = strconv.Quote(value)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, key, v)
	if _, err := l.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("lab: labelling %s %s=%q: %w", n.Name, key, value, err)
	}
	return nil
}

// speakerPIDs finds the ironlb-speaker processes in n's network namespace (the speaker pod
// uses the host network).
func speakerPIDs(n *Node) ([]int, error) {
	pids, err := pidsInNetNS([]string{filepath.Join("/var/run/netns", n.NetNS)})
	if err != nil {
		return nil, err
	}
	var out []int
	for _, pid := range pids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(comm)) == "ironlb-speaker" {
			out = append(out, pid)
		}
	}
	return out, nil
}

// WaitSpeaker waits until n's speaker pod runs a container started after since and is ready
// (after StartNode: the kubelet restarts the pods of a node that booted again).
func (ilb *IronLB) WaitSpeaker(ctx context.Context, n *Node, since time.Time) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := ilb.speakerPod(ctx, n)
		if err != nil || pod == nil {
			last = fmt.Sprint("no pod ", err)
			return false, nil
		}
		last = fmt.Sprintf("%s: %v", pod.Name, pod.Status.ContainerStatuses)
		for _, c := range pod.Status.ContainerStatuses {
			// StartedAt has whole seconds: a container started in the same second as since
			// counts (its predecessor, if it was killed at since, has already stopped).
			if c.State.Running != nil && !c.State.Running.StartedAt.Time.Before(since.Truncate(time.Second)) && c.Ready && PodReady(pod) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("lab: waiting for %s's speaker to run again (%s): %w", n.Name, last, err)
	}
	return nil
}
