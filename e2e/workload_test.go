package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// deployment creates a Deployment of the demo image labelled app=name, with the demo's
// readiness probe and graceful shutdown (unready, still serving, for its -shutdown-delay after
// SIGTERM), rolling one extra pod at a time with none unavailable. probe is the readiness
// probe's period in seconds; 0: no probe (Ready once the container runs).
func (s *scenario) deployment(name string, replicas, probe int32) {
	s.t.Helper()
	labels := map[string]string{"app": name}
	grace := int64(10)
	no := false
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &zero},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					EnableServiceLinks:            &no,
					AutomountServiceAccountToken:  &no,
					Containers: []corev1.Container{{
						Name:            "web",
						Image:           lab.DemoImage,
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{"-tcp=8080"},
						Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
						}}},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						// A 5 s timeout, not the default 1 s: on the lab's 2 shared cores a
						// busy kubelet's probes of a serving pod time out, and the pods turn
						// unready (the Service then has fewer endpoints, or none).
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:   corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8081)}},
							PeriodSeconds:  probe,
							TimeoutSeconds: 5,
						},
					}},
				},
			},
		},
	}
	if probe == 0 {
		d.Spec.Template.Spec.Containers[0].ReadinessProbe = nil
	}
	if _, err := env.lab.Client.AppsV1().Deployments(s.ns).Create(s.ctx, d, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("creating deployment %s: %v", name, err)
	}
	s.undo = append(s.undo, func() {
		_ = env.lab.Client.AppsV1().Deployments(s.ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// rolledOut waits until Deployment name has replicas pods, all of the current template and
// available, and no other pod of it is left (terminating ones included).
func (s *scenario) rolledOut(name string, replicas int32, timeout time.Duration) {
	s.t.Helper()
	s.eventually("deployment "+name+" rolled out", timeout, func() (bool, string) {
		d, err := env.lab.Client.AppsV1().Deployments(s.ns).Get(s.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods, err := env.lab.Client.CoreV1().Pods(s.ns).List(s.ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, err.Error()
		}
		st := d.Status
		return st.ObservedGeneration == d.Generation && st.UpdatedReplicas == replicas && st.AvailableReplicas == replicas &&
				st.Replicas == replicas && len(pods.Items) == int(replicas),
			fmt.Sprintf("%+v, %d pods", st, len(pods.Items))
	})
}

// sliceEndpoints counts the Service's EndpointSlices and their ready and terminating endpoints.
func (s *scenario) sliceEndpoints(svc string) (slices, ready, terminating int) {
	list, err := env.lab.Client.DiscoveryV1().EndpointSlices(s.ns).List(s.ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return 0, 0, 0
	}
	for _, sl := range list.Items {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		slices++
		for _, e := range sl.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ready++
			}
			if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
				terminating++
			}
		}
	}
	return slices, ready, terminating
}

// restart changes Deployment name's pod template, as `kubectl rollout restart` does.
func (s *scenario) restart(name string) {
	s.t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"lab.ironlb.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := env.lab.Client.AppsV1().Deployments(s.ns).Patch(s.ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// TestDeploymentRollout: a client loops through a LoadBalancer Service's external IP (BGP,
// from behind the router) while its Deployment rolls out all its pods; the old pods' endpoints
// turn terminating and their servers keep answering until the speakers' tables have moved on.
func TestDeploymentRollout(t *testing.T) {
	s := newScenario(t)
	pool := s.bgpSetup([]string{"203.0.113.128/28"}, nil)
	s.deployment("roll", 3, 1)
	s.service("roll", "roll", pool, nil)
	ip := s.ingress("roll")[0]
	s.rolledOut("roll", 3, 2*time.Minute)
	s.eventually("an answer through "+ip, 30*time.Second, func() (bool, string) {
		_, _, err := get(s.ctx, lab.NSExtClient, ip)
		return err == nil, fmt.Sprint(err)
	})
	stop := make(chan struct{})
	// 20 requests a second, for at most 3 minutes.
	p := startProbe(s.ctx, lab.NSExtClient, "http://"+ip+"/", 50*time.Millisecond, 3600, stop)
	start := time.Now()
	s.restart("roll")
	maxTerminating := 0
	seen := map[string]bool{}
	var timeline []string // when each pod turned ready, started terminating, and went
	s.eventually("the rollout, old pods gone", 2*time.Minute, func() (bool, string) {
		_, _, term := s.sliceEndpoints("roll")
		maxTerminating = max(maxTerminating, term)
		d, err := env.lab.Client.AppsV1().Deployments(s.ns).Get(s.ctx, "roll", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods, err := env.lab.Client.CoreV1().Pods(s.ns).List(s.ctx, metav1.ListOptions{LabelSelector: "app=roll"})
		if err != nil {
			return false, err.Error()
		}
		now := time.Now().Format("15:04:05.000")
		present := map[string]bool{}
		for _, pod := range pods.Items {
			present[pod.Name] = true
			for what, ok := range map[string]bool{"ready": lab.PodReady(&pod), "terminating": pod.DeletionTimestamp != nil} {
				if key := pod.Name + " " + what; ok && !seen[key] {
					seen[key] = true
					timeline = append(timeline, now+" "+key)
				}
			}
		}
		for key := range seen {
			name, _, _ := strings.Cut(key, " ")
			if !present[name] && !seen[name+" gone"] {
				seen[name+" gone"] = true
				timeline = append(timeline, now+" "+name+" gone")
			}
		}
		st := d.Status
		return st.ObservedGeneration == d.Generation && st.UpdatedReplicas == 3 && st.AvailableReplicas == 3 && len(pods.Items) == 3,
			fmt.Sprintf("%+v, %d pods", st, len(pods.Items))
	})
	rolled := time.Since(start)
	close(stop)
	sent, failed, _, _ := p.summary()
	t.Logf("rollout of 3 pods in %.1f s, through %s: %v; at most %d terminating endpoints seen; %s",
		rolled.Seconds(), ip, p, maxTerminating, p.errors())
	if maxTerminating == 0 {
		t.Error("no terminating endpoint seen in the EndpointSlices during the rollout")
	}
	if failed > 0 {
		slices.Sort(timeline)
		t.Errorf("%d of %d requests failed during the rollout, want 0; pods: %s", failed, sent, strings.Join(timeline, "; "))
	}
}
