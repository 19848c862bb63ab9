package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// PodSpec describes a lab pod: a Pod of the demo image (cmd/ironlb-demo) pinned to a node.
// Every TCP port answers HTTP and every UDP port answers each datagram with the same line
// (demo.Answer): "pod=<name> client=<address the pod saw>".
type PodSpec struct {
	Namespace string // default "default"
	Name      string
	Node      *Node
	Labels    map[string]string
	TCPPorts  []int // default {8080}
	UDPPorts  []int
	// NotReady leaves the pod's readiness gate closed: Running but not Ready.
	NotReady bool
}

// Pod is a running lab pod. NetNS pins its network namespace, for tests that dial from it.
type Pod struct {
	Namespace, Name string
	Node            *Node
	NetNS           string
	IP4, IP6        netip.Addr
}

// Addr is the pod's address of family 4 or 6.
func (p *Pod) Addr(family int) netip.Addr {
	if family == 6 {
		return p.IP6
	}
	return p.IP4
}

// AddPod creates spec's Pod and waits until the kubelet runs it and (unless spec.NotReady) it
// is Ready; kube-controller-manager then lists it in the EndpointSlices of matching Services.
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
	p, err := l.addRealPod(ctx, spec, j)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.pods[spec.Namespace+"/"+spec.Name] = p
	l.mu.Unlock()
	return p, nil
}

// SetPodReady opens or closes the pod's readiness gate (ReadyGate) and returns once the
// kubelet's Ready condition says the same, as when a readiness probe changes.
func (l *Lab) SetPodReady(ctx context.Context, p *Pod, ready bool) error {
	return l.setGate(ctx, p, ready)
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

// ReadyGate is the readiness gate of the lab's real pods: a pod is Ready when its container is
// and the lab has set this condition (SetPodReady), as a load balancer controller would.
const ReadyGate = "lab.ironlb.io/ready"

// DemoPod is the Pod the lab runs for spec on a real node: the demo image pinned to the node,
// answering on spec's ports, with the lab's readiness gate.
func DemoPod(spec PodSpec) *corev1.Pod {
	var ports []corev1.ContainerPort
	for _, port := range spec.TCPPorts {
		ports = append(ports, corev1.ContainerPort{Name: "tcp-" + strconv.Itoa(port), ContainerPort: int32(port), Protocol: corev1.ProtocolTCP})
	}
	for _, port := range spec.UDPPorts {
		ports = append(ports, corev1.ContainerPort{Name: "udp-" + strconv.Itoa(port), ContainerPort: int32(port), Protocol: corev1.ProtocolUDP})
	}
	grace := int64(1)
	no := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name, Labels: spec.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      spec.Node.Name,
			TerminationGracePeriodSeconds: &grace,
			EnableServiceLinks:            &no,
			AutomountServiceAccountToken:  &no,
			ReadinessGates:                []corev1.PodReadinessGate{{ConditionType: ReadyGate}},
			Containers: []corev1.Container{{
				Name:            "server",
				Image:           DemoImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            demoArgs(spec),
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
				}}},
				Ports: ports,
			}},
		},
	}
}

// demoArgs are the demo server's (cmd/ironlb-demo) flags for spec's ports.
func demoArgs(spec PodSpec) []string {
	join := func(ports []int) string {
		s := make([]string, len(ports))
		for i, p := range ports {
			s[i] = strconv.Itoa(p)
		}
		return strings.Join(s, ",")
	}
	return []string{"-tcp=" + join(spec.TCPPorts), "-udp=" + join(spec.UDPPorts)}
}

// addRealPod creates spec's Pod, waits for the kubelet to run it, pins its network namespace
// as <Prefix>pod<node>-<j> (for tests that dial from inside the pod) and opens its readiness
// gate unless spec.NotReady.
func (l *Lab) addRealPod(ctx context.Context, spec PodSpec, j int) (*Pod, error) {
	n := spec.Node
	if err := l.EnsureNamespace(ctx, spec.Namespace); err != nil {
		return nil, err
	}
	pods := l.Client.CoreV1().Pods(spec.Namespace)
	created, err := pods.Create(ctx, DemoPod(spec), metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("lab: creating pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	p := &Pod{Namespace: spec.Namespace, Name: spec.Name, Node: n, NetNS: fmt.Sprintf("%spod%d-%d", Prefix, n.Index, j)}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := pods.Get(ctx, spec.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("phase %s, IPs %v, containers %v", got.Status.Phase, got.Status.PodIPs, got.Status.ContainerStatuses)
		if got.Status.Phase != corev1.PodRunning || len(got.Status.ContainerStatuses) == 0 || got.Status.ContainerStatuses[0].State.Running == nil {
			return false, nil
		}
		for _, ip := range got.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
				p.IP4 = a
			} else if err == nil {
				p.IP6 = a
			}
		}
		return p.IP4.IsValid() && p.IP6.IsValid(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("lab: pod %s/%s did not run on %s (%s): %w", spec.Namespace, spec.Name, n.Name, last, err)
	}
	pid, err := podSandboxPID(ctx, n, string(created.UID))
	if err != nil {
		return nil, fmt.Errorf("lab: pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	if _, err := Exec(ctx, "", "ip", "netns", "attach", p.NetNS, strconv.Itoa(pid)); err != nil {
		return nil, fmt.Errorf("lab: pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	if !spec.NotReady {
		if err := l.SetPodReady(ctx, p, true); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// setGate sets the lab's readiness gate condition of a real pod; the kubelet then derives the
// pod's Ready condition from it and the container's readiness.
func (l *Lab) setGate(ctx context.Context, p *Pod, ready bool) error {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":%q,"lastTransitionTime":%q}]}}`,
		ReadyGate, status, time.Now().UTC().Format(time.RFC3339))
	if _, err := l.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("lab: setting pod %s/%s ready=%v: %w", p.Namespace, p.Name, ready, err)
	}
	// The kubelet derives Ready from the gate on its own schedule, and a status it computed
	// from the gate's previous value may still land after this patch: return once Ready says
	// what was asked.
	var last corev1.ConditionStatus
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := l.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range got.Status.Conditions {
			if c.Type == corev1.PodReady {
				last = c.Status
				return c.Status == status, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("lab: pod %s/%s Ready is %q, want %q: %w", p.Namespace, p.Name, last, status, err)
	}
	return nil
}

// PodReady reports whether p's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
