package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/ironlb/ironlb/e2e/lab"
	"github.com/ironlb/ironlb/plugin"
	corev1 "k8s.io/api/core/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// TestMigrateFromMetalLB is docs/migrate-from-metallb.md on the lab's cluster: MetalLB's
// published CRDs (apiserver.MetalLBVersion) and its L2 sample configuration (configsamples/
// deployment_l2.yaml, addresses moved into the lab's LAN) in the cluster, Services holding the
// addresses MetalLB gave them (status and MetalLB's annotations), and no ironlb (helm
// uninstall). Then the procedure: convert with `kubectl ironlb migrate-from-metallb`, install
// ironlb with helm, check every Service still has its addresses, apply the converted objects
// with kubectl, and check every address is announced by one node and answers HTTP from the LAN.
func TestMigrateFromMetalLB(t *testing.T) {
	s := newScenario(t)
	ctx := s.ctx
	cfg := env.lab.RESTConfig

	// MetalLB's CRDs and its L2 sample, as a MetalLB user has them.
	release, err := apiserver.MetalLBRelease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := apiserver.ApplyMetalLBCRDs(ctx, cfg, release); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteMetalLBCRDs(t, cfg) })
	if err := env.lab.EnsureNamespace(ctx, "metallb-system"); err != nil {
		t.Fatal(err)
	}
	samples, err := apiserver.MetalLBSamples(release)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	for _, obj := range apiserver.DecodeObjects(t, samples["deployment_l2.yaml"]) {
		gv, _ := schema.ParseGroupVersion(obj.GetAPIVersion())
		if gv.Group != "metallb.io" {
			continue // its nginx Deployment and Service: the Services below stand for them
		}
		res := gv.WithResource(strings.ToLower(obj.GetKind()) + "s")
		if _, err := dyn.Resource(res).Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating MetalLB's %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}

	// ironlb is not there yet: MetalLB ran the cluster (its controller and speakers are gone,
	// as step 4 of the procedure has it).
	if err := env.ilb.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	reinstalled := false
	t.Cleanup(func() {
		if !reinstalled { // leave the lab as the other tests expect it
			if _, err := env.lab.StartIronLB(context.Background()); err != nil {
				t.Errorf("reinstalling ironlb: %v", err)
			}
		}
	})

	// Services as MetalLB left them: its annotations, and the addresses it gave them in status
	// (MetalLB's pool "example" is 198.51.100.240/28 and 2001:db8:100::2f0/124 here).
	s.pods("nginx", env.lab.Nodes...)
	legacy := map[string][]string{
		"nginx":    {"198.51.100.240"},
		"asked":    {"198.51.100.245"},
		"dual":     {"198.51.100.242", "2001:db8:100::2f1"},
		"shared-a": {"198.51.100.246"},
		"shared-b": {"198.51.100.246"},
	}
	for name, ips := range legacy {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name, Annotations: map[string]string{}},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeLoadBalancer,
				Selector: map[string]string{"app": "nginx"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
			},
		}
		switch name {
		case "asked":
			svc.Annotations["metallb.universe.tf/loadBalancerIPs"] = ips[0]
		case "dual":
			policy := corev1.IPFamilyPolicyRequireDualStack
			svc.Spec.IPFamilyPolicy = &policy
		case "shared-a", "shared-b":
			svc.Annotations["metallb.io/allow-shared-ip"] = "web"
			if name == "shared-b" {
				svc.Spec.Ports[0].Port = 8443
			}
		}
		created, err := env.lab.Client.CoreV1().Services(s.ns).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
		for _, ip := range ips {
			created.Status.LoadBalancer.Ingress = append(created.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		if _, err := env.lab.Client.CoreV1().Services(s.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("status of %s: %v", name, err)
		}
	}

	// 2. Convert the configuration from the cluster.
	cmd := plugin.NewCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"--kubeconfig", env.lab.Kubeconfig, "migrate-from-metallb"})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("kubectl ironlb migrate-from-metallb: %v\n%s", err, errOut.String())
	}
	converted := filepath.Join(t.TempDir(), "ironlb-config.yaml")
	if err := os.WriteFile(converted, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("converted:\n%s%s", out.String(), errOut.String())

	// 5. Install ironlb with helm: every Service keeps its addresses.
	if _, err := env.lab.StartIronLB(ctx); err != nil {
		t.Fatal(err)
	}
	reinstalled = true
	checkKept := func(stage string) {
		for name, ips := range legacy {
			s.eventually(fmt.Sprintf("%s: %s keeps %v", stage, name, ips), 30*time.Second, func() (bool, string) {
				cur, err := env.lab.Client.CoreV1().Services(s.ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				var got []string
				for _, in := range cur.Status.LoadBalancer.Ingress {
					got = append(got, in.IP)
				}
				c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ServiceConditionIPAllocated)
				return c != nil && slices.Equal(got, ips), fmt.Sprint(got, c)
			})
		}
	}
	checkKept("after helm install")

	// 6. Apply the converted configuration.
	apply, err := lab.Exec(ctx, "", lab.Kubectl(), "--kubeconfig", env.lab.Kubeconfig, "apply", "-f", converted)
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, apply)
	}
	applied := time.Now()
	t.Cleanup(func() {
		// Without waiting: the pool's finalizer holds it until the scenario's cleanup, which
		// runs after this, deletes the Services.
		_, _ = lab.Exec(context.Background(), "", lab.Kubectl(), "--kubeconfig", env.lab.Kubeconfig, "delete", "--ignore-not-found", "--wait=false", "-f", converted)
	})

	// 7. Check: the addresses are kept, with IPAllocated True, each announced by one node, and
	// each answers HTTP from the LAN client.
	checkKept("after the converted objects")
	for name, ips := range legacy {
		s.eventually(name+" Allocated and announced by one node", 30*time.Second, func() (bool, string) {
			cur, err := env.lab.Client.CoreV1().Services(s.ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ServiceConditionIPAllocated)
			a := s.announcers(name)
			return c != nil && c.Status == metav1.ConditionTrue && len(a) == 1, fmt.Sprint(c, a)
		})
		for _, ip := range ips {
			port := "80"
			if name == "shared-b" {
				port = "8443"
			}
			url := withPort(ip, port)
			s.eventually(name+" answers at "+url, 30*time.Second, func() (bool, string) {
				_, err := lab.HTTPGet(ctx, lab.NSLANClient, url, time.Second)
				return err == nil, fmt.Sprint(err)
			})
		}
	}
	t.Logf("every Service kept its addresses; all answered HTTP %v after kubectl apply", time.Since(applied).Round(10*time.Millisecond))
}

// withPort is the URL of ip and port.
func withPort(ip, port string) string {
	if strings.Contains(ip, ":") {
		return "http://[" + ip + "]:" + port + "/"
	}
	return "http://" + ip + ":" + port + "/"
}

// deleteMetalLBCRDs removes MetalLB's CRDs, and with them its objects.
func deleteMetalLBCRDs(t *testing.T, cfg *rest.Config) {
	cs, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		t.Error(err)
		return
	}
	list, err := cs.ApiextensionsV1().CustomResourceDefinitions().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Error(err)
		return
	}
	for _, crd := range list.Items {
		if crd.Spec.Group == "metallb.io" {
			_ = cs.ApiextensionsV1().CustomResourceDefinitions().Delete(context.Background(), crd.Name, metav1.DeleteOptions{})
		}
	}
}
