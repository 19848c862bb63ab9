package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/ironlb/ironlb/internal/demo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodSpec describes a lab pod: a network namespace behind its node's pod bridge, served by the
// lab's own process. Every TCP port answers HTTP and every UDP port answers each datagram with
// the same line (demo.Answer): "pod=<name> client=<address the pod saw>", as the
// ironlb-demo image does.
type PodSpec struct {
	Namespace string // default "default"
	Name      string
	Node      *Node
	Labels    map[string]string
	TCPPorts  []int // default {8080}
	UDPPorts  []int
	// NotReady creates the pod with its Ready condition false.
	NotReady bool
}

// Pod is a running lab pod.
type Pod struct {
	Namespace, Name string
	Node            *Node
	NetNS           string
	IP4, IP6        netip.Addr
}

// AddPod creates the pod's namespace, link and servers, and its Pod object (Running, with IPs,
// Ready unless spec.NotReady). The lab's EndpointSlice writer picks it up for matching Services.
func (l *Lab) AddPod(ctx context.Context, spec PodSpec) (*Pod, error) {
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if len(spec.TCPPorts) == 0 && len(spec.UDPPorts) == 0 {
		spec.TCPPorts = []int{8080}
	}
	if spec.Node == nil {
		return nil, errors.New("lab: PodSpec.Node is required")
	}
	n := spec.Node
	l.mu.Lock()
	j := l.podSeq[n.Index]
	l.podSeq[n.Index]++
	l.mu.Unlock()
	if j > 200 {
		return nil, fmt.Errorf("lab: node %s has no pod address left", n.Name)
	}
	if !l.Config.Simulated {
		p, err := l.addRealPod(ctx, spec, j)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.pods[spec.Namespace+"/"+spec.Name] = p
		l.mu.Unlock()
		return p, nil
	}
	ip4, ip6, gw4, gw6 := podAddrs(n.Index, j)
	p := &Pod{Namespace: spec.Namespace, Name: spec.Name, Node: n, NetNS: fmt.Sprintf("%spod%d-%d", Prefix, n.Index, j), IP4: ip4, IP6: ip6}
	if _, err := Exec(ctx, "", "ip", "netns", "add", p.NetNS); err != nil {
		return nil, fmt.Errorf("lab: pod %s: %w", spec.Name, err)
	}
	if err := setSysctls(p.NetNS, map[string]string{"net/ipv6/conf/default/accept_dad": "0"}); err != nil {
		return nil, err
	}
	veth := fmt.Sprintf("vp%d", j)
	if err := ipBatch(ctx, n.NetNS,
		fmt.Sprintf("link add %s type veth peer name eth0 netns %s", veth, p.NetNS),
		fmt.Sprintf("link set %s master cni0", veth),
		// Hairpin, as the CNI bridge plugin sets it: a pod reaching a Service that picks the
		// pod itself has its packet DNATed back to the port it came from (br_netfilter bridges
		// it there), which a bridge refuses without hairpin mode.
		fmt.Sprintf("link set %s type bridge_slave hairpin on", veth),
		fmt.Sprintf("link set %s up", veth),
	); err != nil {
		return nil, err
	}
	if err := ipBatch(ctx, p.NetNS,
		"link set lo up",
		fmt.Sprintf("addr add %s/%d dev eth0", ip4, n.Pod4.Bits()),
		fmt.Sprintf("addr add %s/%d dev eth0 nodad", ip6, n.Pod6.Bits()),
		"link set eth0 up",
		"route add default via "+gw4.String(),
		"route add default via "+gw6.String(),
	); err != nil {
		return nil, err
	}
	if err := l.servePod(p, spec); err != nil {
		return nil, err
	}

	var ports []corev1.ContainerPort
	for _, port := range spec.TCPPorts {
		ports = append(ports, corev1.ContainerPort{Name: "tcp-" + strconv.Itoa(port), ContainerPort: int32(port), Protocol: corev1.ProtocolTCP})
	}
	for _, port := range spec.UDPPorts {
		ports = append(ports, corev1.ContainerPort{Name: "udp-" + strconv.Itoa(port), ContainerPort: int32(port), Protocol: corev1.ProtocolUDP})
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name, Labels: spec.Labels},
		Spec: corev1.PodSpec{
			NodeName:   n.Name,
			Containers: []corev1.Container{{Name: "server", Image: "ironlb.io/lab-pod:served-by-the-lab", Ports: ports}},
		},
	}
	if err := l.EnsureNamespace(ctx, spec.Namespace); err != nil {
		return nil, err
	}
	created, err := l.Client.CoreV1().Pods(spec.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("lab: creating pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	created.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		HostIP: n.LAN4.String(), HostIPs: []corev1.HostIP{{IP: n.LAN4.String()}, {IP: n.LAN6.String()}},
		PodIP: ip4.String(), PodIPs: []corev1.PodIP{{IP: ip4.String()}, {IP: ip6.String()}},
		StartTime:  &created.CreationTimestamp,
		Conditions: podConditions(!spec.NotReady),
	}
	if _, err := l.Client.CoreV1().Pods(spec.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("lab: pod %s/%s status: %w", spec.Namespace, spec.Name, err)
	}
	l.mu.Lock()
	l.pods[spec.Namespace+"/"+spec.Name] = p
	l.mu.Unlock()
	return p, nil
}

// SetPodReady flips the pod's Ready condition, as a kubelet would when a readiness probe changes
// (on a real node: the lab's readiness gate, from which the kubelet derives Ready).
func (l *Lab) SetPodReady(ctx context.Context, p *Pod, ready bool) error {
	if !l.Config.Simulated {
		return l.setGate(ctx, p, ready)
	}
	pod, err := l.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("lab: getting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	pod.Status.Conditions = podConditions(ready)
	if _, err := l.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("lab: setting pod %s/%s ready=%v: %w", p.Namespace, p.Name, ready, err)
	}
	return nil
}

func podConditions(ready bool) []corev1.PodCondition {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	return []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
	}
}

// servePod opens the pod's listeners inside its namespace and serves them until the lab stops.
func (l *Lab) servePod(p *Pod, spec PodSpec) error {
	for _, port := range spec.TCPPorts {
		ln, err := ListenIn(p.NetNS, "tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("lab: pod %s listening on tcp/%d: %w", p.Name, port, err)
		}
		srv := &http.Server{Handler: demo.Handler(p.Name)}
		go func() { _ = srv.Serve(ln) }()
		l.onDown(func() { _ = srv.Close() })
	}
	for _, port := range spec.UDPPorts {
		pc, err := ListenPacketIn(p.NetNS, "udp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("lab: pod %s listening on udp/%d: %w", p.Name, port, err)
		}
		go func() { _ = demo.ServeUDP(pc, p.Name) }()
		l.onDown(func() { _ = pc.Close() })
	}
	return nil
}

// Pods returns the lab's pods.
func (l *Lab) Pods() []*Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Pod, 0, len(l.pods))
	for _, p := range l.pods {
		out = append(out, p)
	}
	return out
}
