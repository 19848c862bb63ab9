package charts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/e2e/apiserver"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/klog/v2"
)

// The tests in this file run against a real kube-apiserver and etcd on loopback (no root),
// started on first use and shared by the package. It starts without ironlb's CRDs: helm install
// puts them in, as in a cluster.
var lab apiserver.Shared

func TestMain(m *testing.M) {
	klog.SetSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	code := lab.Run(m)
	if helmHomeDir != "" {
		os.RemoveAll(helmHomeDir)
	}
	os.Exit(code)
}

func cluster(t *testing.T) *apiserver.Server { return lab.Server(t) }

// warnings collects the API server's warnings (deprecated APIs, unknown fields).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// clients of one identity on the lab server.
type clients struct {
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	warn   *warnings
}

func newClients(t *testing.T, cfg *rest.Config) clients {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	w := &warnings{}
	cfg.WarningHandler = w
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return clients{kube: kube, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco)), warn: w}
}

// resource returns the client for an object's kind, namespaced or not.
func (c clients) resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset() // a CRD installed since the last discovery
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dyn.Resource(m.Resource).Namespace(o.GetNamespace()), nil
	}
	return c.dyn.Resource(m.Resource), nil
}

func createNamespace(t *testing.T, kube kubernetes.Interface, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// TestServerSideDryRun applies what `helm template` renders, with default and with all values,
// as a server-side dry run: the API server validates every object (schemas, unknown fields,
// admission, RBAC escalation checks) without storing it.
func TestServerSideDryRun(t *testing.T) {
	srv := cluster(t)
	admin := newClients(t, srv.Config)
	installMonitoringCRDs(t, srv)
	for _, tc := range []struct {
		name, ns string
		args     []string
	}{
		{"default values", "dryrun-default", nil},
		{"all values", "dryrun-all", []string{"--values", allValues}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.ns, tc.args...)
			createNamespace(t, admin.kube, tc.ns)
			for _, o := range objs {
				if ns := o.GetNamespace(); ns != "" && ns != tc.ns {
					createNamespace(t, admin.kube, ns) // grafanaDashboard.namespace
				}
			}
			for _, o := range objs {
				ri, err := admin.resource(o)
				if err != nil {
					t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
					continue
				}
				_, err = ri.Apply(t.Context(), o.GetName(), o, metav1.ApplyOptions{
					FieldManager: "chart-test", Force: true, DryRun: []string{metav1.DryRunAll},
				})
				if err != nil {
					t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
				}
				if w := admin.warn.take(); len(w) > 0 {
					t.Errorf("%s %s: warnings %q", o.GetKind(), o.GetName(), w)
				}
			}
		})
	}
}

// TestInstallUpgradeUninstall installs the chart with helm into the lab server, checks the
// objects and their RBAC rules, upgrades it (the memberlist key must survive byte for byte) and
// uninstalls it (only the CRDs may remain).
func TestInstallUpgradeUninstall(t *testing.T) {
	srv := cluster(t)
	admin := newClients(t, srv.Config)
	ctx := t.Context()
	target := []string{"--kubeconfig", srv.Kubeconfig, "--namespace", releaseNS}
	helmOK := func(args ...string) string {
		t.Helper()
		out, err := helm(t, append(args, target...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// Install.
	notes := helmOK("install", release, chartDir, "--create-namespace")
	checkNotesExample(t, admin, notes)
	if !strings.Contains(notes, "Without kube-proxy, set apiServer.host and apiServer.port") {
		t.Errorf("the install notes do not tell clusters without kube-proxy to set apiServer:\n%s", notes)
	}
	manifest := apiserver.DecodeObjects(t, helmOK("get", "manifest", release))
	if diff := cmp.Diff(inventory(render(t, releaseNS)), inventory(manifest)); diff != "" {
		t.Errorf("installed objects differ from the default rendering (-rendered +installed):\n%s", diff)
	}
	for _, o := range manifest {
		ri, err := admin.resource(o)
		if err == nil {
			_, err = ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		}
		if err != nil {
			t.Errorf("after install, %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	crds := ironlbCRDs(t, admin)
	if len(crds) != 6 {
		t.Errorf("after install, CRDs %v; want the chart's 6", crds)
	}
	secret, err := admin.kube.CoreV1().Secrets(releaseNS).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(secret.Data["key"]) != 32 {
		t.Errorf("memberlist key of %d bytes; want 32", len(secret.Data["key"]))
	}

	checkRBAC(t, srv, admin)

	// Upgrade: a changed value is applied, the generated key is kept.
	helmOK("upgrade", release, chartDir, "--set", "controller.replicaCount=2")
	d, err := admin.kube.AppsV1().Deployments(releaseNS).Get(ctx, controllerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("after upgrade, replicas %d; want 2 (the upgrade did not apply)", *d.Spec.Replicas)
	}
	after, err := admin.kube.CoreV1().Secrets(releaseNS).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(secret.Data["key"], after.Data["key"]) || len(after.Data) != len(secret.Data) {
		t.Errorf("upgrade changed the memberlist key: %q -> %q", secret.Data["key"], after.Data["key"])
	}

	// Uninstall: everything goes but the CRDs.
	helmOK("uninstall", release, "--wait")
	for _, o := range manifest {
		ri, err := admin.resource(o)
		if err == nil {
			_, err = ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		}
		if !apierrors.IsNotFound(err) {
			t.Errorf("after uninstall, %s %s: err %v; want it gone", o.GetKind(), o.GetName(), err)
		}
	}
	if left := namespaceContents(t, admin, releaseNS); len(left) > 0 {
		t.Errorf("after uninstall, namespace %s still holds %v", releaseNS, left)
	}
	if got := ironlbCRDs(t, admin); !slices.Equal(got, crds) {
		t.Errorf("after uninstall, CRDs %v; want %v kept (Helm never deletes CRDs)", got, crds)
	}
}

// checkNotesExample creates the first pool and advertisement NOTES.txt shows (the YAML between
// "cat <<'YAML'" and "YAML"), so the example stays valid for the CRDs' validation, then deletes
// them again.
func checkNotesExample(t *testing.T, admin clients, notes string) {
	t.Helper()
	_, rest, ok := strings.Cut(notes, "cat <<'YAML' | kubectl apply -f -\n")
	example, _, ok2 := strings.Cut(rest, "\nYAML\n")
	if !ok || !ok2 {
		t.Errorf("the install notes show no example to apply:\n%s", notes)
		return
	}
	objs := apiserver.DecodeObjects(t, example)
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		ri, err := admin.resource(o)
		if err == nil {
			_, err = ri.Create(t.Context(), o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Errorf("the notes' example %s %s: %v", o.GetKind(), o.GetName(), err)
			continue
		}
		if err := ri.Delete(t.Context(), o.GetName(), metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	}
	if diff := cmp.Diff([]string{"IPPool", "L2Advertisement"}, kinds); diff != "" {
		t.Errorf("the notes' example (-want +got):\n%s", diff)
	}
}

func ironlbCRDs(t *testing.T, c clients) []string {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	list, err := c.dyn.Resource(gvr).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, crd := range list.Items {
		if strings.HasSuffix(crd.GetName(), ".ironlb.io") {
			out = append(out, crd.GetName())
		}
	}
	slices.Sort(out)
	return out
}

// namespaceContents lists every object in a namespace, of every listable namespaced resource.
func namespaceContents(t *testing.T, c clients, ns string) []string {
	t.Helper()
	lists, err := c.kube.Discovery().ServerPreferredNamespacedResources()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if !slices.Contains(r.Verbs, "list") || r.Name == "events" || strings.Contains(r.Name, "/") {
				continue
			}
			items, err := c.dyn.Resource(gv.WithResource(r.Name)).Namespace(ns).List(t.Context(), metav1.ListOptions{})
			if err != nil {
				t.Errorf("listing %s: %v", r.Name, err)
				continue
			}
			for _, it := range items.Items {
				out = append(out, r.Kind+"/"+it.GetName())
			}
		}
	}
	return out
}

// The identities the chart's ServiceAccounts have, as the API server sees their tokens.
func serviceAccountUser(name string) (string, []string) {
	return "system:serviceaccount:" + releaseNS + ":" + name,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNS, "system:authenticated"}
}

// checkRBAC checks the installed rules: real requests as each ServiceAccount (impersonation),
// then a table of SubjectAccessReviews for the rest of the least-privilege promise.
func checkRBAC(t *testing.T, srv *apiserver.Server, admin clients) {
	t.Helper()
	ctx := t.Context()
	const tenant = "tenant" // an arbitrary namespace of the cluster's users
	createNamespace(t, admin.kube, tenant)
	svc, err := admin.kube.CoreV1().Services(tenant).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}},
			Selector: map[string]string{"app": "web"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]*corev1.Secret{
		tenant:    {ObjectMeta: metav1.ObjectMeta{Name: "db-password", Namespace: tenant}},
		releaseNS: {ObjectMeta: metav1.ObjectMeta{Name: "bgp-password", Namespace: releaseNS}, StringData: map[string]string{"password": "s3cret"}},
	}
	for ns, s := range secrets {
		if _, err := admin.kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	otherLease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "someone-else", Namespace: releaseNS}}
	if _, err := admin.kube.CoordinationV1().Leases(releaseNS).Create(ctx, otherLease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ironlb.io/v1alpha1", "kind": "IPPool",
		"metadata": map[string]any{"name": "rbac-test"},
		"spec":     map[string]any{"addresses": []any{"192.0.2.0/28"}},
	}}
	pools := admin.dyn.Resource(schema.GroupVersionResource{Group: "ironlb.io", Version: "v1alpha1", Resource: "ippools"})
	if _, err := pools.Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() { // leave the release namespace as helm left it, for the uninstall check
		ctx := context.WithoutCancel(ctx)
		_ = admin.kube.CoreV1().Secrets(releaseNS).Delete(ctx, "bgp-password", metav1.DeleteOptions{})
		for _, name := range []string{"someone-else", controllerName} {
			_ = admin.kube.CoordinationV1().Leases(releaseNS).Delete(ctx, name, metav1.DeleteOptions{})
		}
		if p, err := pools.Get(ctx, "rbac-test", metav1.GetOptions{}); err == nil {
			p.SetFinalizers(nil)
			_, _ = pools.Update(ctx, p, metav1.UpdateOptions{})
			_ = pools.Delete(ctx, "rbac-test", metav1.DeleteOptions{})
		}
	}()

	as := map[string]clients{}
	for _, sa := range []string{controllerName, speakerName} {
		cfg := rest.CopyConfig(srv.Config)
		user, _ := serviceAccountUser(sa)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		as[sa] = newClients(t, cfg)
	}
	// fresh reads the Service as admin, so that each case's write is judged by RBAC alone.
	fresh := func() *corev1.Service {
		cur, err := admin.kube.CoreV1().Services(tenant).Get(ctx, svc.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	withLabel := func() *corev1.Service {
		cp := fresh()
		cp.Labels = map[string]string{"touched": "yes"}
		return cp
	}
	withIngress := func() *corev1.Service {
		cp := fresh()
		vip := corev1.LoadBalancerIPModeVIP
		cp.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.10", IPMode: &vip}}
		return cp
	}
	announcement := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ironlb.io/v1alpha1", "kind": "ServiceAnnouncement",
		"metadata":    map[string]any{"name": "web-node-1-l2", "namespace": tenant},
		"serviceName": "web", "nodeName": "node-1", "mode": "L2", "ips": []any{"198.51.100.10"}, "interfaces": []any{"eth0"},
	}}
	session := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ironlb.io/v1alpha1", "kind": "BGPSessionState",
		"metadata": map[string]any{"name": "node-1-router"},
		"nodeName": "node-1", "peerName": "router", "peerAddress": "192.0.2.1", "state": "Idle",
	}}
	createAndDelete := func(c clients, o *unstructured.Unstructured) error {
		ri, err := c.resource(o)
		if err != nil {
			return err
		}
		if _, err := ri.Create(ctx, o, metav1.CreateOptions{}); err != nil {
			return err
		}
		return ri.Delete(ctx, o.GetName(), metav1.DeleteOptions{})
	}

	for _, tc := range []struct {
		name    string
		as      string
		allowed bool
		do      func(c clients) error
	}{
		{"speaker cannot update a Service", speakerName, false, func(c clients) error {
			_, err := c.kube.CoreV1().Services(tenant).Update(ctx, withLabel(), metav1.UpdateOptions{})
			return err
		}},
		{"speaker cannot update a Service's status", speakerName, false, func(c clients) error {
			_, err := c.kube.CoreV1().Services(tenant).UpdateStatus(ctx, withIngress(), metav1.UpdateOptions{})
			return err
		}},
		{"speaker lists Services, EndpointSlices and Nodes", speakerName, true, func(c clients) error {
			_, err1 := c.kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			_, err2 := c.kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			_, err3 := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return errors.Join(err1, err2, err3)
		}},
		{"speaker creates and deletes a ServiceAnnouncement in any namespace", speakerName, true, func(c clients) error {
			return createAndDelete(c, announcement)
		}},
		{"speaker creates and deletes a BGPSessionState", speakerName, true, func(c clients) error {
			return createAndDelete(c, session)
		}},
		{"speaker reads a Secret in the release namespace", speakerName, true, func(c clients) error {
			_, err := c.kube.CoreV1().Secrets(releaseNS).Get(ctx, "bgp-password", metav1.GetOptions{})
			return err
		}},
		{"speaker cannot read a Secret in another namespace", speakerName, false, func(c clients) error {
			_, err := c.kube.CoreV1().Secrets(tenant).Get(ctx, "db-password", metav1.GetOptions{})
			return err
		}},
		{"speaker creates, renews and deletes its Lease", speakerName, true, func(c clients) error {
			leases := c.kube.CoordinationV1().Leases(releaseNS)
			l, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "speaker.node-1"}}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			now := metav1.NowMicro()
			l.Spec.RenewTime = &now
			if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
				return err
			}
			return leases.Delete(ctx, l.Name, metav1.DeleteOptions{})
		}},
		{"speaker cannot take another Lease (admission policy)", speakerName, false, func(c clients) error {
			l, err := admin.kube.CoordinationV1().Leases(releaseNS).Get(ctx, "someone-else", metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("as admin: %w", err)
			}
			_, err = c.kube.CoordinationV1().Leases(releaseNS).Update(ctx, l, metav1.UpdateOptions{})
			return err
		}},
		{"speaker cannot create a Lease not named as its own", speakerName, false, func(c clients) error {
			_, err := c.kube.CoordinationV1().Leases(releaseNS).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "ironlb-controller-x"}}, metav1.CreateOptions{})
			return err
		}},
		{"speaker cannot list Secrets cluster-wide", speakerName, false, func(c clients) error {
			_, err := c.kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"controller updates a Service's status", controllerName, true, func(c clients) error {
			_, err := c.kube.CoreV1().Services(tenant).UpdateStatus(ctx, withIngress(), metav1.UpdateOptions{})
			return err
		}},
		{"controller cannot update a Service", controllerName, false, func(c clients) error {
			_, err := c.kube.CoreV1().Services(tenant).Update(ctx, withLabel(), metav1.UpdateOptions{})
			return err
		}},
		{"controller cannot delete a Service", controllerName, false, func(c clients) error {
			return c.kube.CoreV1().Services(tenant).Delete(ctx, "web", metav1.DeleteOptions{})
		}},
		{"controller adds its finalizer to an IPPool", controllerName, true, func(c clients) error {
			p, err := pools.Get(ctx, "rbac-test", metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("as admin: %w", err)
			}
			p.SetFinalizers([]string{"ironlb.io/pool-protection"})
			_, err = c.dyn.Resource(schema.GroupVersionResource{Group: "ironlb.io", Version: "v1alpha1", Resource: "ippools"}).Update(ctx, p, metav1.UpdateOptions{})
			return err
		}},
		{"controller creates and renews its Lease", controllerName, true, func(c clients) error {
			leases := c.kube.CoordinationV1().Leases(releaseNS)
			if _, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: controllerName}}, metav1.CreateOptions{}); err != nil {
				return err
			}
			l, err := leases.Get(ctx, controllerName, metav1.GetOptions{}) // client-go's LeaseLock reads, then updates
			if err != nil {
				return err
			}
			now := metav1.NowMicro()
			l.Spec.RenewTime = &now
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			return err
		}},
		{"controller cannot take another Lease", controllerName, false, func(c clients) error {
			l, err := admin.kube.CoordinationV1().Leases(releaseNS).Get(ctx, "someone-else", metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("as admin: %w", err)
			}
			_, err = c.kube.CoordinationV1().Leases(releaseNS).Update(ctx, l, metav1.UpdateOptions{})
			return err
		}},
		{"controller cannot read Secrets", controllerName, false, func(c clients) error {
			_, err := c.kube.CoreV1().Secrets(releaseNS).Get(ctx, "bgp-password", metav1.GetOptions{})
			return err
		}},
	} {
		t.Run("RBAC/"+tc.name, func(t *testing.T) {
			err := tc.do(as[tc.as])
			switch {
			case tc.allowed && err != nil:
				t.Errorf("err %v; want allowed", err)
			case !tc.allowed && !apierrors.IsForbidden(err):
				t.Errorf("err %v; want Forbidden", err)
			}
		})
	}

	type attr = authorizationv1.ResourceAttributes
	for _, tc := range []struct {
		as      string
		a       attr
		allowed bool
	}{
		{speakerName, attr{Verb: "patch", Resource: "services", Subresource: "status", Namespace: tenant}, false},
		{speakerName, attr{Verb: "patch", Resource: "services", Namespace: tenant}, false},
		{speakerName, attr{Verb: "delete", Resource: "services", Namespace: tenant}, false},
		{speakerName, attr{Verb: "watch", Resource: "nodes"}, true},
		{speakerName, attr{Verb: "update", Resource: "nodes"}, false},
		{speakerName, attr{Verb: "watch", Group: "discovery.k8s.io", Resource: "endpointslices"}, true},
		{speakerName, attr{Verb: "watch", Group: "ironlb.io", Resource: "ippools"}, true},
		{speakerName, attr{Verb: "watch", Group: "ironlb.io", Resource: "l2advertisements"}, true},
		{speakerName, attr{Verb: "watch", Group: "ironlb.io", Resource: "bgpadvertisements"}, true},
		{speakerName, attr{Verb: "watch", Group: "ironlb.io", Resource: "bgppeers"}, true},
		{speakerName, attr{Verb: "update", Group: "ironlb.io", Resource: "ippools"}, false},
		{speakerName, attr{Verb: "update", Group: "ironlb.io", Resource: "ippools", Subresource: "status"}, false},
		{speakerName, attr{Verb: "update", Group: "ironlb.io", Resource: "bgppeers"}, false},
		{speakerName, attr{Verb: "update", Group: "ironlb.io", Resource: "serviceannouncements", Namespace: "kube-system"}, true},
		{speakerName, attr{Verb: "update", Group: "ironlb.io", Resource: "bgpsessionstates"}, true},
		{speakerName, attr{Verb: "create", Resource: "events", Namespace: tenant}, true},
		{speakerName, attr{Verb: "get", Resource: "secrets", Namespace: releaseNS, Name: "any-password"}, true},
		{speakerName, attr{Verb: "list", Resource: "secrets", Namespace: releaseNS}, false},
		{speakerName, attr{Verb: "watch", Resource: "secrets", Namespace: releaseNS}, false},
		{speakerName, attr{Verb: "get", Resource: "secrets", Namespace: "kube-system"}, false},
		{speakerName, attr{Verb: "update", Resource: "secrets", Namespace: releaseNS}, false},
		// Its own DaemonSet, to see it deleted (helm uninstall), and no other.
		{speakerName, attr{Verb: "watch", Group: "apps", Resource: "daemonsets", Namespace: releaseNS, Name: speakerName}, true},
		{speakerName, attr{Verb: "get", Group: "apps", Resource: "daemonsets", Namespace: releaseNS, Name: speakerName}, true},
		{speakerName, attr{Verb: "watch", Group: "apps", Resource: "daemonsets", Namespace: releaseNS}, false},
		{speakerName, attr{Verb: "get", Group: "apps", Resource: "daemonsets", Namespace: releaseNS, Name: controllerName}, false},
		{speakerName, attr{Verb: "update", Group: "apps", Resource: "daemonsets", Namespace: releaseNS, Name: speakerName}, false},
		{speakerName, attr{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: releaseNS, Name: "speaker.node-1"}, true},
		{speakerName, attr{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", Name: "speaker.node-1"}, false},
		{controllerName, attr{Verb: "patch", Resource: "services", Subresource: "status", Namespace: tenant}, true},
		{controllerName, attr{Verb: "patch", Resource: "services", Namespace: tenant}, false},
		{controllerName, attr{Verb: "create", Resource: "services", Namespace: tenant}, false},
		{controllerName, attr{Verb: "watch", Resource: "services"}, true},
		{controllerName, attr{Verb: "watch", Resource: "namespaces"}, true},
		{controllerName, attr{Verb: "create", Resource: "events", Namespace: "default"}, true},
		{controllerName, attr{Verb: "watch", Group: "ironlb.io", Resource: "ippools"}, true},
		{controllerName, attr{Verb: "update", Group: "ironlb.io", Resource: "ippools", Subresource: "status"}, true},
		{controllerName, attr{Verb: "create", Group: "ironlb.io", Resource: "ippools"}, false},
		{controllerName, attr{Verb: "delete", Group: "ironlb.io", Resource: "ippools"}, false},
		{controllerName, attr{Verb: "update", Group: "ironlb.io", Resource: "l2advertisements"}, false},
		{controllerName, attr{Verb: "create", Group: "ironlb.io", Resource: "serviceannouncements", Namespace: tenant}, false},
		{controllerName, attr{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"}, false},
		{controllerName, attr{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices", Namespace: tenant}, false},
		{controllerName, attr{Verb: "watch", Group: "discovery.k8s.io", Resource: "endpointslices", Namespace: "default"}, true},
		{controllerName, attr{Verb: "watch", Resource: "nodes"}, true},
		{controllerName, attr{Verb: "update", Resource: "nodes"}, false},
		{controllerName, attr{Verb: "list", Resource: "secrets", Namespace: releaseNS}, false},
		{controllerName, attr{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", Name: controllerName}, false},
	} {
		verb := tc.a.Verb + " " + strings.TrimPrefix(tc.a.Group+"/", "/") + tc.a.Resource
		if tc.a.Subresource != "" {
			verb += "/" + tc.a.Subresource
		}
		if tc.a.Namespace != "" {
			verb += " in " + tc.a.Namespace
		}
		if tc.a.Name != "" {
			verb += " named " + tc.a.Name
		}
		t.Run(fmt.Sprintf("RBAC/%s may %s: %v", tc.as, verb, tc.allowed), func(t *testing.T) {
			user, groups := serviceAccountUser(tc.as)
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: groups, ResourceAttributes: &tc.a,
			}}
			got, err := admin.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Allowed != tc.allowed {
				t.Errorf("allowed %v (%s); want %v", got.Status.Allowed, got.Status.Reason, tc.allowed)
			}
		})
	}
}

// installMonitoringCRDs installs stand-ins for the Prometheus Operator's ServiceMonitor and
// PrometheusRule CRDs, so the rendering with every value passes a dry run. Their schemas are the
// subset of monitoring.coreos.com/v1 this chart uses, with the same types and duration pattern,
// and reject unknown fields like the real ones.
func installMonitoringCRDs(t *testing.T, srv *apiserver.Server) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"servicemonitors.yaml": monitoringCRD("ServiceMonitor", serviceMonitorSpec),
		"prometheusrules.yaml": monitoringCRD("PrometheusRule", prometheusRuleSpec),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := apiserver.ApplyCRDs(t.Context(), srv.Config, dir); err != nil {
		t.Fatal(err)
	}
}

// monitoringCRD is a namespaced monitoring.coreos.com/v1 CRD of kind whose spec has the schema
// spec (YAML indented to sit under spec:).
func monitoringCRD(kind, spec string) string {
	singular := strings.ToLower(kind)
	return `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ` + singular + `s.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ` + kind + `, listKind: ` + kind + `List, plural: ` + singular + `s, singular: ` + singular + `}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
` + spec
}

const monitoringDuration = `{type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}`

// serviceMonitorSpec is the schema of a ServiceMonitor's spec.
var serviceMonitorSpec = `              type: object
              required: [selector]
              properties:
                jobLabel: {type: string}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      interval: ` + monitoringDuration + `
                      scrapeTimeout: ` + monitoringDuration + `
                      relabelings:
                        type: array
                        items:
                          type: object
                          properties:
                            sourceLabels: {type: array, items: {type: string, pattern: '^[a-zA-Z_][a-zA-Z0-9_]*$'}}
                            targetLabel: {type: string}
                            action: {type: string}
                            regex: {type: string}
                            replacement: {type: string}
`

// prometheusRuleSpec is the schema of a PrometheusRule's spec.
var prometheusRuleSpec = `              type: object
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string, minLength: 1}
                      interval: ` + monitoringDuration + `
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}, {type: string}]}
                            for: ` + monitoringDuration + `
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
`
