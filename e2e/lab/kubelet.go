package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RuntimeRoot holds the real nodes' containerd and kubelet state. Its path is fixed, unlike Config.Dir, so that Cleanup finds the mounts and pod namespaces a
// crashed run left there: containerd and the kubelets share the host's mount namespace (the
// kubelet mounts Secret volumes that containerd must see), so their mounts are the host's.
const RuntimeRoot = "/run/ironlb-lab"

// Tags of the lab's own images (internal/images); the pause image is containerd's sandbox image.
const (
	PauseImage = "ironlb.local/pause:dev"
	DemoImage  = "ironlb.local/demo:dev"
)

// nodeRuntime is the state of a real node: its containerd and kubelet.
type nodeRuntime struct {
	dir        string // RuntimeRoot/<node>
	socket     string // containerd's gRPC socket
	containerd *Process
	kubelet    *Process
}

var containerdConf = template.Must(template.New("containerd").Parse(`# Written by the ironlb lab (DESIGN.md section 8).
version = 2
root = "{{.Dir}}/containerd"
state = "{{.Dir}}/containerd-state"
[grpc]
  address = "{{.Socket}}"
[plugins."io.containerd.grpc.v1.cri"]
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  sandbox_image = "{{.Pause}}"
  # Pod network namespaces are pinned under the state directory, where Cleanup finds them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{{.Dir}}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    Root = "{{.Dir}}/runc"
`))

// cniConf puts pods on the node's cni0 bridge (which buildNetwork created with the gateway
// addresses) with an address from each of the node's pod subnets.
var cniConf = template.Must(template.New("cni").Parse(`{
  "cniVersion": "1.0.0",
  "name": "ironlb-lab",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "{{.Dir}}/ipam",
        "ranges": [
          [{"subnet": "{{.Pod4}}", "rangeStart": "{{.Start4}}", "gateway": "{{.Gateway4}}"}],
          [{"subnet": "{{.Pod6}}", "rangeStart": "{{.Start6}}", "gateway": "{{.Gateway6}}"}]
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`))

// kubeletConf is the KubeletConfiguration of DESIGN.md section 8. Every kubelet has its own
// network namespace, so the default ports do not collide.
var kubeletConf = template.Must(template.New("kubelet").Parse(`# Written by the ironlb lab (DESIGN.md section 8).
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: unix://{{.Socket}}
podLogsDir: {{.Dir}}/pod-logs
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
healthzBindAddress: 127.0.0.1
healthzPort: 10248
port: 10250
readOnlyPort: 0
serializeImagePulls: false
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
resolvConf: /etc/resolv.conf
`))

// kubeProxyConf runs kube-proxy in nftables mode. It leaves conntrack's table size alone (a
// sysctl of the whole machine).
var kubeProxyConf = template.Must(template.New("kube-proxy").Parse(`# Written by the ironlb lab.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {{.Kubeconfig}}
hostnameOverride: {{.Node}}
mode: nftables
clusterCIDR: 198.19.0.0/16,2001:db8:19::/48
conntrack:
  maxPerCore: 0
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`))

// startRealNode runs containerd for n inside n's network namespace (but in the host's mount
// namespace) and imports the images once built, and a kubelet once the API server is up; it
// returns once both are done.
func (l *Lab) startRealNode(ctx context.Context, n *Node, images, api *step) error {
	rt := &nodeRuntime{dir: filepath.Join(RuntimeRoot, n.Name)}
	rt.socket = filepath.Join(rt.dir, "containerd.sock")
	n.runtime = rt
	for _, d := range []string{"cni", "kubelet", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(rt.dir, d), 0o755); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	start4, start6, gw4, gw6 := podAddrs(n.Index, 0)
	vars := map[string]any{
		"Dir": rt.dir, "Socket": rt.socket, "Pause": PauseImage,
		"Pod4": n.Pod4, "Pod6": n.Pod6, "Start4": start4, "Start6": start6, "Gateway4": gw4, "Gateway6": gw6,
	}
	files := map[string]*template.Template{
		"containerd.toml":            containerdConf,
		"cni/10-ironlb-lab.conflist": cniConf,
		"kubelet.yaml":               kubeletConf,
	}
	for name, tmpl := range files {
		if err := writeTemplate(filepath.Join(rt.dir, name), tmpl, vars); err != nil {
			return err
		}
	}
	return l.startNodeDaemons(ctx, n, images, api)
}

// startNodeDaemons starts n's containerd, then imports the images once images is done (never
// when images is nil: a node booting again has them), and meanwhile starts its kubelet (and
// kube-proxy) once api is done (at once when nil). The kubelet registers the node while the
// images load; no pod comes before the lab is up.
func (l *Lab) startNodeDaemons(ctx context.Context, n *Node, images, api *step) error {
	rt := n.runtime
	var err error
	rt.containerd, err = l.StartHostMounts(ctx, "containerd-"+n.Name, n.NetNS, "containerd", "--config", filepath.Join(rt.dir, "containerd.toml"))
	if err != nil {
		return err
	}
	if err := l.waitContainerd(ctx, n); err != nil {
		return err
	}
	imported := make(chan error, 1)
	go func() {
		if images == nil {
			imported <- nil
			return
		}
		if err := images.after(ctx); err != nil {
			imported <- err
			return
		}
		imported <- l.importImages(ctx, n)
	}()
	if err := l.startKubelet(ctx, n, api); err != nil {
		<-imported
		return err
	}
	return <-imported
}

// startKubelet starts n's kubelet (and kube-proxy) once api is done and containerd's CRI
// answers.
func (l *Lab) startKubelet(ctx context.Context, n *Node, api *step) error {
	rt := n.runtime
	// containerd answers before its CRI plugin has recovered its state (longer on a second
	// boot); a kubelet started then fails its CRI check and exits.
	if err := waitCRI(ctx, n, time.Minute); err != nil {
		return fmt.Errorf("lab: %w (log: %s)", err, l.logPath("containerd-"+n.Name))
	}
	if err := api.after(ctx); err != nil {
		return err
	}
	var err error
	kubelet := filepath.Join(l.binDir(), "kubelet")
	args := []string{
		"--config=" + filepath.Join(rt.dir, "kubelet.yaml"),
		"--kubeconfig=" + l.NodeKubeconfig,
		"--root-dir=" + filepath.Join(rt.dir, "kubelet"),
		"--cert-dir=" + filepath.Join(rt.dir, "kubelet", "pki"),
		"--hostname-override=" + n.Name,
		"--node-ip=" + n.LAN4.String() + "," + n.LAN6.String(),
		"--node-labels=ironlb.io/lab=true," + SpeakerLabel + "=true",
		"--v=1",
	}
	if rt.kubelet, err = l.StartHostMounts(ctx, "kubelet-"+n.Name, n.NetNS, kubelet, args...); err != nil {
		return err
	}
	if l.Config.KubeProxy {
		if _, err := l.StartKubeProxy(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// StartKubeProxy runs kube-proxy (nftables mode, kubeProxyConf) on n. Config.KubeProxy starts
// it on every node with the lab; a test that compares ironlb's forwarding with kube-proxy's
// starts it on a running lab. Stopping the process leaves its rules, as kube-proxy does:
// DeleteKubeProxyRules removes them.
func (l *Lab) StartKubeProxy(ctx context.Context, n *Node) (*Process, error) {
	if n.runtime == nil {
		return nil, fmt.Errorf("lab: %s was never started", n.Name)
	}
	conf := filepath.Join(n.runtime.dir, "kube-proxy.yaml")
	if err := writeTemplate(conf, kubeProxyConf, map[string]any{"Kubeconfig": l.NodeKubeconfig, "Node": n.Name}); err != nil {
		return nil, err
	}
	return l.Start(ctx, "kube-proxy-"+n.Name, n.NetNS, filepath.Join(l.binDir(), "kube-proxy"), "--config="+conf, "--v=1")
}

// DeleteKubeProxyRules deletes kube-proxy's nftables tables (ip and ip6 "kube-proxy") on n, if
// present.
func DeleteKubeProxyRules(ctx context.Context, n *Node) error {
	for _, family := range []string{"ip", "ip6"} {
		if out, err := Exec(ctx, n.NetNS, "nft", "list", "tables", family); err != nil {
			return err
		} else if !strings.Contains(string(out), "table "+family+" kube-proxy") {
			continue
		}
		if _, err := Exec(ctx, n.NetNS, "nft", "delete", "table", family, "kube-proxy"); err != nil {
			return err
		}
	}
	return nil
}

// StopNode takes real node n down as a power loss would, keeping its links: it kills
// everything running in n's network namespace (kubelet, containerd, the speaker) and in its
// pods', and clears what a reboot clears: the mounts and the runtime state under n's directory
// and n's nftables rules. StartNode boots it again.
func (l *Lab) StopNode(ctx context.Context, n *Node) error {
	rt := n.runtime
	if rt == nil {
		return fmt.Errorf("lab: %s was never started", n.Name)
	}
	mounts, err := mountsUnder(rt.dir)
	if err != nil {
		return err
	}
	pins := []string{filepath.Join("/var/run/netns", n.NetNS)}
	for _, m := range mounts {
		if m.fstype == "nsfs" {
			pins = append(pins, m.path)
		}
	}
	pids, err := pidsInNetNS(pins)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		waitGone(pid, 5*time.Second)
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i].path, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("lab: unmounting %s: %w", mounts[i].path, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(rt.dir, "containerd-state")); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if _, err := Exec(ctx, n.NetNS, "nft", "flush", "ruleset"); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// StartNode boots real node n again after StopNode: containerd, the kubelet (which restarts the
// node's pods) and kube-proxy if the lab runs it.
func (l *Lab) StartNode(ctx context.Context, n *Node) error {
	if n.runtime == nil {
		return fmt.Errorf("lab: %s was never started", n.Name)
	}
	return l.startNodeDaemons(ctx, n, nil, nil)
}

// waitContainerd waits for n's containerd to answer.
func (l *Lab) waitContainerd(ctx context.Context, n *Node) error {
	rt := n.runtime
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := exec.CommandContext(ctx, "ctr", "-a", rt.socket, "version").CombinedOutput()
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("lab: containerd of %s did not answer on %s (log: %s): %w", n.Name, rt.socket, l.logPath("containerd-"+n.Name), err)
	}
	return nil
}

// importImages loads the images (docker-archives) into n's containerd.
func (l *Lab) importImages(ctx context.Context, n *Node) error {
	rt := n.runtime
	for _, tar := range l.images {
		if out, err := exec.CommandContext(ctx, "ctr", "-a", rt.socket, "-n", "k8s.io", "images", "import", tar).CombinedOutput(); err != nil {
			return fmt.Errorf("lab: importing %s into %s: %w: %s", tar, n.Name, err, out)
		}
	}
	return nil
}

// waitCRI waits until n's containerd answers the CRI Version call as the kubelet's start-up
// check makes it ("server is not initialized yet" until the CRI plugin has recovered).
func waitCRI(ctx context.Context, n *Node, timeout time.Duration) error {
	conn, err := grpc.NewClient("unix://"+n.runtime.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connecting to the CRI of %s: %w", n.Name, err)
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	var last error
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, last = client.Version(ctx, &runtimeapi.VersionRequest{})
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the CRI of %s did not answer (%v): %w", n.Name, last, err)
	}
	return nil
}

// waitNodesReady waits until every node's kubelet has registered it and reports it Ready.
func (l *Lab) waitNodesReady(ctx context.Context, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		nodes, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		ready := map[string]bool{}
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready[n.Name] = true
				}
			}
		}
		var missing []string
		for _, n := range l.Nodes {
			if !ready[n.Name] {
				missing = append(missing, n.Name)
			}
		}
		last = "not Ready: " + strings.Join(missing, ", ")
		return len(missing) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("lab: waiting for the kubelets to register their nodes (%s; logs: %s): %w", last, filepath.Join(l.Config.Dir, "logs"), err)
	}
	return nil
}

// podSandboxPID returns the PID of the sandbox (pause) process of a pod on node n, found through
// the labels containerd's CRI plugin gives its containers.
func podSandboxPID(ctx context.Context, n *Node, uid string) (int, error) {
	sock := n.runtime.socket
	out, err := exec.CommandContext(ctx, "ctr", "-a", sock, "-n", "k8s.io", "containers", "ls", "-q",
		`labels."io.kubernetes.pod.uid"==`+uid+`,labels."io.cri-containerd.kind"==sandbox`).Output()
	if err != nil {
		return 0, fmt.Errorf("listing the sandbox of pod %s: %w", uid, err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return 0, fmt.Errorf("no sandbox for pod %s yet", uid)
	}
	for _, id := range ids {
		out, err := exec.CommandContext(ctx, "ctr", "-a", sock, "-n", "k8s.io", "tasks", "ps", id).Output()
		if err != nil {
			continue
		}
		// "PID    INFO" then one line per process; the first is the sandbox's.
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) < 2 {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(strings.Fields(lines[1])[0], &pid); err == nil && pid > 0 {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no running sandbox task for pod %s", uid)
}

func writeTemplate(path string, t *template.Template, vars any) error {
	var b strings.Builder
	if err := t.Execute(&b, vars); err != nil {
		return fmt.Errorf("lab: rendering %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}
