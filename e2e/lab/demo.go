package lab

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

//go:embed demo.yaml
var demoYAML []byte

//go:embed demo-web.yaml
var demoWebYAML []byte

// Demo Services: one from the L2 pool, one from the BGP pool.
const (
	DemoNamespace  = "demo"
	DemoL2Service  = "web-l2"
	DemoBGPService = "web-bgp"
	// SystemNamespace is where ironlb runs.
	SystemNamespace = "ironlb-system"
)

// RunDemo brings the lab up with ironlb's components, applies the sample configuration, creates
// a demo Deployment's pods and a LoadBalancer Service per pool, shows what ironlb did and curls
// the external IPs from the clients. It returns the running lab; the caller tears it down.
func RunDemo(ctx context.Context, cfg Config, out io.Writer) (*Lab, error) {
	l, err := Up(ctx, cfg)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Lab, error) { l.Down(context.WithoutCancel(ctx)); return nil, err }
	if _, err := l.StartIronLB(ctx); err != nil {
		return fail(err)
	}
	if err := l.Apply(ctx, demoYAML); err != nil {
		return fail(err)
	}
	if err := l.EnsureNamespace(ctx, DemoNamespace); err != nil {
		return fail(err)
	}
	if err := l.Apply(ctx, demoWebYAML); err != nil {
		return fail(err)
	}
	for name, pool := range map[string]string{DemoL2Service: "lab-l2", DemoBGPService: "lab-bgp"} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DemoNamespace, Annotations: map[string]string{"ironlb.io/pool": pool}},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeLoadBalancer,
				Selector: map[string]string{"app": "web"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
			},
		}
		if _, err := l.Client.CoreV1().Services(DemoNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fail(fmt.Errorf("lab: creating demo Service %s: %w", name, err))
		}
	}

	ips := map[string]string{}
	deadline := time.Now().Add(20 * time.Second)
	for len(ips) < 2 && time.Now().Before(deadline) {
		for _, name := range []string{DemoL2Service, DemoBGPService} {
			if svc, err := l.Client.CoreV1().Services(DemoNamespace).Get(ctx, name, metav1.GetOptions{}); err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
				ips[name] = svc.Status.LoadBalancer.Ingress[0].IP
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Give announcements a moment to reach the network: BGP sessions come up within seconds
	// of the first BGPPeer; an L2 owner answers at once.
	waitFor := func(timeout time.Duration, ok func() bool) {
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline) && !ok(); {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if ip := ips[DemoBGPService]; ip != "" {
		waitFor(30*time.Second, func() bool {
			r, err := l.Routers[0].Show(ctx, "show route for "+ip)
			return err == nil && strings.Contains(r, "via")
		})
	}
	for name, ns := range map[string]string{DemoL2Service: NSLANClient, DemoBGPService: NSExtClient} {
		if ip := ips[name]; ip != "" {
			waitFor(30*time.Second, func() bool { _, err := HTTPGet(ctx, ns, "http://"+ip+"/", time.Second); return err == nil })
		}
	}
	section := func(title string) { fmt.Fprintf(out, "\n== %s\n", title) }
	section("kubectl get svc -n " + DemoNamespace + " -o wide")
	fmt.Fprint(out, l.kubectl(ctx, "get", "svc", "-n", DemoNamespace, "-o", "wide"))
	section("who announces the IPs (kubectl get serviceannouncements -A)")
	fmt.Fprint(out, l.kubectl(ctx, "get", "serviceannouncements", "-A"))
	if ip := ips[DemoBGPService]; ip != "" {
		section("the router's route for " + ip + " (birdc show route for " + ip + ")")
		r, err := l.Routers[0].Show(ctx, "show route for "+ip+" all")
		fmt.Fprint(out, r, errString(err))
	}
	for _, c := range []struct{ svc, ns string }{{DemoL2Service, NSLANClient}, {DemoBGPService, NSExtClient}} {
		ip := ips[c.svc]
		if ip == "" {
			continue
		}
		section(fmt.Sprintf("curl http://%s/ from %s", ip, c.ns))
		body, err := HTTPGet(ctx, c.ns, "http://"+ip+"/", 3*time.Second)
		fmt.Fprintln(out, body+errString(err))
	}
	section("the lab is up")
	fmt.Fprintf(out, "export KUBECONFIG=%s\n%s get svc -A\nip netns exec %s curl http://<EXTERNAL-IP>/   # a client on the LAN\nip netns exec %s curl http://<EXTERNAL-IP>/      # a client behind the BGP router\nlogs: %s\n",
		l.Kubeconfig, Kubectl(), NSLANClient, NSExtClient, filepath.Join(l.Config.Dir, "logs"))
	return l, nil
}

// Apply creates or updates every object in a multi-document YAML with server-side apply.
func (l *Lab) Apply(ctx context.Context, manifest []byte) error {
	dyn, err := dynamic.NewForConfig(l.RESTConfig)
	if err != nil {
		return fmt.Errorf("lab: dynamic client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(l.Client.Discovery()))
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("lab: decoding manifest: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("lab: no resource for %s: %w", gvk, err)
		}
		data, err := obj.MarshalJSON()
		if err != nil {
			return fmt.Errorf("lab: encoding %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if ns := obj.GetNamespace(); ns != "" {
			ri = dyn.Resource(mapping.Resource).Namespace(ns)
		}
		force := true
		if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "ironlb-lab", Force: &force}); err != nil {
			return fmt.Errorf("lab: applying %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
}

func (l *Lab) kubectl(ctx context.Context, args ...string) string {
	out, err := Exec(ctx, "", append([]string{Kubectl(), "--kubeconfig", l.Kubeconfig}, args...)...)
	if err != nil {
		return err.Error() + "\n"
	}
	return string(out)
}

func errString(err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}
