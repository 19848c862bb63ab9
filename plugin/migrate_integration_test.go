package plugin

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/e2e/apiserver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// TestMigrateFromMetalLB is the migration round trip: MetalLB's objects in the cluster (under
// MetalLB's published CRDs, apiserver.MetalLBVersion) and Services whose status holds the addresses MetalLB gave them, created
// before ironlb starts; the command converts the objects, the API server admits the result
// (CEL rules included), and the real controller, started afterwards, keeps every address.
func TestMigrateFromMetalLB(t *testing.T) {
	needAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, _ := withMetalLBCRDs(ctx, t)
	dyn := dynamic.NewForConfigOrDie(cfg)
	kube := testEnv.clients.Kube
	for _, ns := range []string{"metallb-system", "legacy", "team-a"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// MetalLB's objects, in the cluster.
	samples, err := os.ReadFile("testdata/metallb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range apiserver.DecodeObjects(t, string(samples)) {
		if _, err := dyn.Resource(metalLBResource(obj)).Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating MetalLB's %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}

	// Services as MetalLB left them: annotations, and addresses in status (not the ones
	// ironlb would pick first: production's lowest is 198.51.100.32).
	dual := func(s *corev1.Service) {
		preferDualStack(s)
	}
	legacy := map[string]corev1.Service{
		"requested": svc("legacy", "requested", 0, withAnnotation("metallb.universe.tf/loadBalancerIPs", "198.51.100.40"), withIPs("198.51.100.40")),
		"by-pool":   svc("legacy", "by-pool", 0, withAnnotation("metallb.io/address-pool", "expensive"), withIPs("203.0.113.9")),
		"auto":      svc("legacy", "auto", 0, withIPs("198.51.100.33")),
		"dual":      svc("legacy", "dual", 0, dual, withIPs("198.51.100.34", "2001:db8:5::3")),
		"shared-a":  svc("legacy", "shared-a", 0, withAnnotation("metallb.universe.tf/allow-shared-ip", "k"), withIPs("198.51.100.61")),
		"shared-b":  svc("legacy", "shared-b", 0, withAnnotation("metallb.universe.tf/allow-shared-ip", "k"), withPort(443), withIPs("198.51.100.61")),
		"team":      svc("team-a", "team", 0, func(s *corev1.Service) { s.Labels = map[string]string{"exposed": "true"} }, withIPs("203.0.113.70")),
	}
	for _, s := range legacy {
		st := s.Status
		st.Conditions = nil // MetalLB writes no condition
		s.Status = corev1.ServiceStatus{}
		created, err := kube.CoreV1().Services(s.Namespace).Create(ctx, &s, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating %s: %v", s.Name, err)
		}
		created.Status = st
		if _, err := kube.CoreV1().Services(s.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("status of %s: %v", s.Name, err)
		}
	}

	// The command, from the cluster and from the file, says the same.
	fromCluster := mustRun(t, "migrate-from-metallb")
	out, err := run(t, "migrate-from-metallb", "-f", "testdata/metallb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromFile, warnings, _ := strings.Cut(out, "warning:") // stderr comes after stdout in run
	if strings.TrimSpace(stripWarnings(fromCluster)) != strings.TrimSpace(fromFile) {
		t.Errorf("from the cluster:\n%s\nfrom the file:\n%s", fromCluster, fromFile)
	}
	if !strings.Contains(warnings, "BFDProfile metallb-system/fast: no ironlb equivalent") {
		t.Errorf("warnings: %s", warnings)
	}

	// The API server admits every converted object.
	for _, obj := range apiserver.DecodeObjects(t, fromFile) {
		if _, err := dyn.Resource(convertedResource(obj)).Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Errorf("the API server refuses the converted %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}

	// ironlb starts: every Service keeps exactly its addresses, and says so.
	startController(t)
	for name, s := range legacy {
		var cur *corev1.Service
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			cur, err = kube.CoreV1().Services(s.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ServiceConditionIPAllocated) != nil, nil
		})
		if err != nil {
			t.Fatalf("%s: the controller wrote no condition: %v", name, err)
		}
		cond := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ServiceConditionIPAllocated)
		if cond.Status != metav1.ConditionTrue || !slices.Equal(config.IngressIPs(cur), config.IngressIPs(&s)) {
			t.Errorf("%s: status %v (%s: %s), want %v kept", name, config.IngressIPs(cur), cond.Reason, cond.Message, config.IngressIPs(&s))
		}
	}
	// And it allocates: a new Service gets the lowest free address of production.
	fresh := svc("legacy", "fresh", 0)
	if _, err := kube.CoreV1().Services("legacy").Create(ctx, &fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := kube.CoreV1().Services("legacy").Get(ctx, "fresh", metav1.GetOptions{})
		return err == nil && len(cur.Status.LoadBalancer.Ingress) == 1 && cur.Status.LoadBalancer.Ingress[0].IP == "198.51.100.32", err
	})
	if err != nil {
		t.Errorf("a new Service did not get 198.51.100.32: %v", err)
	}
	out = mustRun(t, "pools")
	t.Log("\n" + out)
	if !strings.Contains(squeeze(out), squeeze("production 198.51.100.61 legacy/shared-a, legacy/shared-b")) {
		t.Errorf("pools does not show the shared address")
	}
}

func stripWarnings(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "warning:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestMigrateMetalLBSamples runs every sample configuration MetalLB publishes (configsamples,
// addresses moved into the documentation ranges) through the API server under MetalLB's CRDs,
// which must admit it, then through the command, whose output ironlb's CRDs must admit. Both
// are server-side dry runs: the samples reuse names.
func TestMigrateMetalLBSamples(t *testing.T) {
	needAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, release := withMetalLBCRDs(ctx, t)
	samples, err := apiserver.MetalLBSamples(release)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < 15 {
		t.Fatalf("%d samples in MetalLB %s, want its configsamples", len(samples), apiserver.MetalLBVersion)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	for _, ns := range []string{"metallb-system", "ironlb-system"} {
		_, err := testEnv.clients.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	// What the command must say about the samples that use what ironlb lacks.
	wantWarning := map[string]string{
		"bgppeer_with_bfdprofile.yaml": "bfdProfile testbfdprofile (BFD) has no ironlb equivalent",
		"bgppeer_with_vrf.yaml":        "vrf",
		"bgppeer_withsecret.yaml":      "passwordSecret",
	}
	converted := 0
	for name, text := range samples {
		t.Run(name, func(t *testing.T) {
			for _, obj := range apiserver.DecodeObjects(t, text) {
				res := metalLBResource(obj)
				if res.Group != "metallb.io" {
					continue // the samples' Deployments and Services
				}
				if _, err := dyn.Resource(res).Namespace(obj.GetNamespace()).Create(ctx, obj, dryRun); err != nil {
					t.Errorf("MetalLB's CRDs refuse its own sample %s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
			}
			file := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := run(t, "migrate-from-metallb", "-f", file)
			if err != nil {
				t.Fatalf("converting: %v\n%s", err, out)
			}
			yamlOut, warnings, _ := strings.Cut(out, "warning:")
			if w := wantWarning[name]; w != "" && !strings.Contains(warnings, w) {
				t.Errorf("warnings %q, want one about %q", warnings, w)
			}
			for _, obj := range apiserver.DecodeObjects(t, yamlOut) {
				if _, err := dyn.Resource(convertedResource(obj)).Namespace(obj.GetNamespace()).Create(ctx, obj, dryRun); err != nil {
					t.Errorf("the API server refuses the converted %s %s: %v\n%s", obj.GetKind(), obj.GetName(), err, yamlOut)
				}
				converted++
			}
		})
	}
	if converted < 20 {
		t.Errorf("%d objects converted from the samples, want every pool, advertisement and peer", converted)
	}
}

// withMetalLBCRDs installs MetalLB's CRDs (apiserver.MetalLBVersion) in the package's API
// server; it returns an admin configuration and MetalLB's release directory.
func withMetalLBCRDs(ctx context.Context, t *testing.T) (*rest.Config, string) {
	t.Helper()
	cfg, err := kubeconfigREST()
	if err != nil {
		t.Fatal(err)
	}
	release, err := apiserver.MetalLBRelease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := apiserver.ApplyMetalLBCRDs(ctx, cfg, release); err != nil {
		t.Fatal(err)
	}
	return cfg, release
}

// metalLBResource is the resource of one of MetalLB's objects (or of another object in its
// samples).
func metalLBResource(obj *unstructured.Unstructured) schema.GroupVersionResource {
	gv, _ := schema.ParseGroupVersion(obj.GetAPIVersion())
	if obj.GetKind() == "Community" {
		return gv.WithResource("communities")
	}
	return gv.WithResource(strings.ToLower(obj.GetKind()) + "s")
}

// convertedResource is the resource of an object the command writes: one of ironlb's, or a
// Secret.
func convertedResource(obj *unstructured.Unstructured) schema.GroupVersionResource {
	if obj.GetKind() == "Secret" {
		return schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	}
	return schema.GroupVersionResource{Group: v1alpha1.GroupName, Version: "v1alpha1", Resource: strings.ToLower(obj.GetKind()) + "s"}
}
