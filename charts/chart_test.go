// Package charts tests the Helm chart in ironlb/: lint, rendering with default and with all
// values, the values schema, the flags it passes to the binaries, and (cluster_test.go) a
// server-side dry run, install, upgrade, uninstall and the RBAC rules against a real
// kube-apiserver. helm comes from $(go env GOPATH)/bin (hack/install-deps.sh installs it).
package charts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/e2e/apiserver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "ironlb"
	allValues   = "ironlb/ci/all-values.yaml"
	release     = "ironlb"
	releaseNS   = "ironlb-system"
	kubeVersion = "1.37.1" // what e2e/apiserver runs; passed so rendering does not depend on helm's build
)

// helmBin returns the helm binary hack/install-deps.sh installs, failing the test without it.
func helmBin(t *testing.T) string {
	t.Helper()
	bin, err := findHelm()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

var findHelm = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOPATH: %w", err)
	}
	gopath, _, _ := strings.Cut(strings.TrimSpace(string(out)), string(os.PathListSeparator))
	bin := filepath.Join(gopath, "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("helm is missing (%w): run hack/install-deps.sh", err)
	}
	return bin, nil
})

// helm runs helm with its caches and configuration in a temporary directory and returns its
// combined output; a non-zero exit is returned as an error carrying that output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	home := helmHome(t)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

var helmHomeDir string

func helmHome(t *testing.T) string {
	if helmHomeDir == "" {
		dir, err := os.MkdirTemp("", "ironlb-helm-")
		if err != nil {
			t.Fatal(err)
		}
		helmHomeDir = dir
	}
	return helmHomeDir
}

// render runs helm template for the release in namespace ns with extra arguments (values) and
// returns the objects.
func render(t *testing.T, ns string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := renderErr(t, ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func renderErr(t *testing.T, ns string, args ...string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, chartDir, "--namespace", ns, "--kube-version", kubeVersion}, args...)...)
	if err != nil {
		return nil, err
	}
	return apiserver.DecodeObjects(t, out), nil
}

// find returns the one object of a kind and name, failing the test if it is not there.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s among %v", kind, name, inventory(objs))
}

// inventory lists the objects as "Kind/name", sorted.
func inventory(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

func TestLint(t *testing.T) {
	for _, tc := range []struct{ name, values string }{
		{"default values", ""},
		{"all values", allValues},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, strict := range []bool{false, true} {
				args := []string{"lint", chartDir, "--namespace", releaseNS}
				if strict {
					args = append(args, "--strict")
				}
				if tc.values != "" {
					args = append(args, "--values", tc.values)
				}
				out, err := helm(t, args...)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
					t.Errorf("helm %s:\n%s", strings.Join(args, " "), out)
				}
			}
		})
	}
}

// names of the objects a release called "ironlb" creates.
var (
	controllerName = release + "-controller"
	speakerName    = release + "-speaker"
	secretName     = release + "-memberlist"
)

func TestRenderDefaults(t *testing.T) {
	objs := render(t, releaseNS)
	want := []string{
		"ClusterRole/" + controllerName, "ClusterRole/" + speakerName,
		"ClusterRoleBinding/" + controllerName, "ClusterRoleBinding/" + speakerName,
		"DaemonSet/" + speakerName, "Deployment/" + controllerName,
		"FlowSchema/" + release, "FlowSchema/" + release + "-leader-election",
		"PriorityLevelConfiguration/" + release,
		"Role/" + controllerName, "Role/" + controllerName + "-apiserver-endpoints", "Role/" + speakerName,
		"RoleBinding/" + controllerName, "RoleBinding/" + controllerName + "-apiserver-endpoints", "RoleBinding/" + speakerName,
		"Secret/" + secretName,
		"Service/" + controllerName + "-metrics", "Service/" + speakerName + "-metrics",
		"ServiceAccount/" + controllerName, "ServiceAccount/" + speakerName,
		"ValidatingAdmissionPolicy/" + speakerName + "-leases", "ValidatingAdmissionPolicyBinding/" + speakerName + "-leases",
	}
	if diff := cmp.Diff(want, inventory(objs)); diff != "" {
		t.Fatalf("objects (-want +got):\n%s", diff)
	}
	checkLabels(t, objs)

	t.Run("speaker DaemonSet", func(t *testing.T) {
		var ds appsv1.DaemonSet
		find(t, objs, "DaemonSet", speakerName, &ds)
		pod := ds.Spec.Template.Spec
		if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("hostNetwork %v, dnsPolicy %q; want the host network with cluster DNS", pod.HostNetwork, pod.DNSPolicy)
		}
		if pod.Tolerations != nil {
			t.Errorf("tolerations %v by default; want none (tolerateControlPlane is false)", pod.Tolerations)
		}
		c := onlyContainer(t, pod)
		wantSC := &corev1.SecurityContext{
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			RunAsUser:                ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			Capabilities: &corev1.Capabilities{
				Drop: []corev1.Capability{"ALL"},
				Add:  []corev1.Capability{"NET_RAW", "NET_ADMIN"},
			},
		}
		if diff := cmp.Diff(wantSC, c.SecurityContext); diff != "" {
			t.Errorf("speaker securityContext (-want +got):\n%s", diff)
		}
		if got := fieldRefEnv(c, "NODE_NAME"); got != "spec.nodeName" {
			t.Errorf("NODE_NAME comes from %q; want spec.nodeName", got)
		}
		checkAPIServerEnv(t, c, "", "")
		wantArgs := []string{"--metrics-addr=:7473", "--log-level=info", "--memberlist-port=7946",
			"--memberlist-key-file=/etc/ironlb/memberlist/key", "--forwarding=auto", "--daemonset=" + releaseNS + "/" + speakerName}
		if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
			t.Errorf("speaker args (-want +got):\n%s", diff)
		}
		checkKeyMount(t, pod, c, secretName, "key")
		checkProbes(t, c, 7473)
		// A restarted speaker withdraws its routes: a busy one must not be killed for being
		// slow (the lab's EndpointSlices-at-scale test lost every speaker at once to 1 s timeouts).
		if lp := c.LivenessProbe; lp == nil || lp.TimeoutSeconds < 5 || lp.PeriodSeconds*lp.FailureThreshold < 60 {
			t.Errorf("speaker liveness probe %+v; want a timeout of at least 5 s and a minute of failures before a restart", lp)
		}
	})

	t.Run("controller Deployment", func(t *testing.T) {
		var d appsv1.Deployment
		find(t, objs, "Deployment", controllerName, &d)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("replicas %v; want 1", d.Spec.Replicas)
		}
		pod := d.Spec.Template.Spec
		if pod.HostNetwork {
			t.Error("the controller uses the host network; want the Pod network")
		}
		if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("pod securityContext %v; want runAsNonRoot", sc)
		}
		c := onlyContainer(t, pod)
		if got := fieldRefEnv(c, "POD_NAMESPACE"); got != "metadata.namespace" {
			t.Errorf("POD_NAMESPACE comes from %q; want metadata.namespace", got)
		}
		if got := fieldRefEnv(c, "POD_NAME"); got != "metadata.name" {
			t.Errorf("POD_NAME comes from %q; want metadata.name", got)
		}
		checkAPIServerEnv(t, c, "", "")
		wantArgs := []string{"--metrics-addr=:7472", "--log-level=info", "--lease-name=ironlb-controller"}
		if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
			t.Errorf("controller args (-want +got):\n%s", diff)
		}
		wantSC := &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
		if diff := cmp.Diff(wantSC, c.SecurityContext); diff != "" {
			t.Errorf("controller securityContext (-want +got):\n%s", diff)
		}
		checkProbes(t, c, 7472)
	})

	t.Run("memberlist Secret", func(t *testing.T) {
		var s corev1.Secret
		find(t, objs, "Secret", secretName, &s)
		if key := s.Data["key"]; len(key) != 32 {
			t.Errorf("generated key %q has %d bytes; want 32 (an AES-256 key as memberlist takes it)", key, len(key))
		}
	})

	t.Run("metrics Services", func(t *testing.T) {
		for name, port := range map[string]int32{controllerName + "-metrics": 7472, speakerName + "-metrics": 7473} {
			var svc corev1.Service
			find(t, objs, "Service", name, &svc)
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != port || svc.Spec.Ports[0].TargetPort.StrVal != "metrics" {
				t.Errorf("Service %s ports %+v; want %d -> the container port named metrics", name, svc.Spec.Ports, port)
			}
		}
	})

	t.Run("RBAC", func(t *testing.T) {
		// The rules themselves are checked against a real API server in cluster_test.go; here,
		// that every binding names the chart's ServiceAccount and its own role.
		for _, name := range []string{controllerName, speakerName} {
			var crb rbacv1.ClusterRoleBinding
			find(t, objs, "ClusterRoleBinding", name, &crb)
			var rb rbacv1.RoleBinding
			find(t, objs, "RoleBinding", name, &rb)
			wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: releaseNS}}
			for _, got := range []struct {
				ref      rbacv1.RoleRef
				subjects []rbacv1.Subject
			}{{crb.RoleRef, crb.Subjects}, {rb.RoleRef, rb.Subjects}} {
				if diff := cmp.Diff(wantSubjects, got.subjects); diff != "" {
					t.Errorf("%s subjects (-want +got):\n%s", name, diff)
				}
				if got.ref.Name != name {
					t.Errorf("binding %s refers to role %s", name, got.ref.Name)
				}
			}
		}
	})
}

func TestRenderAllValues(t *testing.T) {
	objs := render(t, "edge", "--values", allValues)
	checkLabels(t, objs)
	for _, want := range []string{"ServiceMonitor/edge-lb-controller", "ServiceMonitor/edge-lb-speaker", "PrometheusRule/edge-lb",
		"ServiceAccount/edge-lb-allocator", "ServiceAccount/edge-lb-announcer", "Secret/edge-lb-memberlist"} {
		if !slices.Contains(inventory(objs), want) {
			t.Errorf("no %s among %v", want, inventory(objs))
		}
	}

	var d appsv1.Deployment
	find(t, objs, "Deployment", "edge-lb-controller", &d)
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d; want 2", *d.Spec.Replicas)
	}
	wantArgs := []string{"--metrics-addr=:9472", "--log-level=debug", "--lease-name=edge-lb-controller",
		"--lease-duration=20s", "--renew-deadline=15s", "--retry-period=3s",
		"--workers=4", "--kube-api-qps=300", "--kube-api-burst=600", "--events-qps=50", "--events-burst=100",
		"--load-balancer-class=example.com/edge", "--only-load-balancer-class", "--log-level=debug"}
	if diff := cmp.Diff(wantArgs, onlyContainer(t, d.Spec.Template.Spec).Args); diff != "" {
		t.Errorf("controller args (-want +got):\n%s", diff)
	}
	checkAPIServerEnv(t, onlyContainer(t, d.Spec.Template.Spec), "192.0.2.10", "8443")

	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", "edge-lb-speaker", &ds)
	c := onlyContainer(t, ds.Spec.Template.Spec)
	wantArgs = []string{"--metrics-addr=:9473", "--log-level=warn", "--memberlist-port=7947",
		"--memberlist-key-file=/etc/ironlb/memberlist/key",
		"--memberlist-probe-interval=500ms", "--memberlist-probe-timeout=200ms", "--memberlist-suspicion-mult=3",
		"--memberlist-gossip-interval=100ms", "--lease-renew-interval=4s", "--lease-duration=12s", "--gratuitous-count=5", "--gratuitous-interval=250ms",
		"--forwarding=on", "--daemonset=edge/edge-lb-speaker", "--forward-cluster-ips=false", "--masquerade-all=true",
		"--kube-api-qps=50", "--kube-api-burst=100", "--events-qps=10", "--events-burst=20",
		"--load-balancer-class=example.com/edge", "--only-load-balancer-class", "--log-level=debug"}
	if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
		t.Errorf("speaker args (-want +got):\n%s", diff)
	}
	checkAPIServerEnv(t, c, "192.0.2.10", "8443")
	wantTolerations := []corev1.Toleration{
		{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Operator: corev1.TolerationOpExists},
	}
	if diff := cmp.Diff(wantTolerations, ds.Spec.Template.Spec.Tolerations); diff != "" {
		t.Errorf("speaker tolerations (-want +got):\n%s", diff)
	}
	// The speakers apply a key change live; a restart would move their L2 addresses.
	for k := range ds.Spec.Template.Annotations {
		if strings.Contains(k, "memberlist") {
			t.Errorf("speaker pod annotation %s: a key change must not restart the speakers", k)
		}
	}
	var s corev1.Secret
	find(t, objs, "Secret", "edge-lb-memberlist", &s)
	// The key that encrypts, then the extra keys accepted (a rotation), one per line.
	if got := string(s.Data["key"]); got != "0123456789abcdef0123456789abcdef\nfedcba9876543210fedcba9876543210" {
		t.Errorf("memberlist keys %q; want the key, then the extra key, from the values", got)
	}

	var rule unstructured.Unstructured
	find(t, objs, "PrometheusRule", "edge-lb", &rule.Object)
	var alerts []string
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			alerts = append(alerts, r.(map[string]any)["alert"].(string))
		}
	}
	if diff := cmp.Diff([]string{"IronLBPoolNearlyExhausted", "IronLBBGPSessionDown", "IronLBL2AddressUnowned", "IronLBL2AddressConflict"}, alerts); diff != "" {
		t.Errorf("alerts (-want +got):\n%s", diff)
	}
}

// TestRenderVariants covers the values whose non-default setting ci/all-values.yaml cannot
// show at the same time as the others.
func TestRenderVariants(t *testing.T) {
	t.Run("API priority and fairness: both ServiceAccounts in ironlb's level, the Lease in leader-election", func(t *testing.T) {
		objs := render(t, releaseNS, "--set", "apiPriorityAndFairness.nominalConcurrencyShares=20,"+
			"apiPriorityAndFairness.lendablePercent=25,apiPriorityAndFairness.matchingPrecedence=1200")
		var pl flowcontrolv1.PriorityLevelConfiguration
		find(t, objs, "PriorityLevelConfiguration", release, &pl)
		if l := pl.Spec.Limited; l == nil || *l.NominalConcurrencyShares != 20 || *l.LendablePercent != 25 {
			t.Errorf("priority level %+v; want shares 20, lendable 25", l)
		}
		var fs, le flowcontrolv1.FlowSchema
		find(t, objs, "FlowSchema", release, &fs)
		find(t, objs, "FlowSchema", release+"-leader-election", &le)
		if fs.Spec.MatchingPrecedence != 1200 || fs.Spec.PriorityLevelConfiguration.Name != release {
			t.Errorf("FlowSchema precedence %d level %s; want 1200 and %s", fs.Spec.MatchingPrecedence, fs.Spec.PriorityLevelConfiguration.Name, release)
		}
		var subjects []string
		for _, s := range fs.Spec.Rules[0].Subjects {
			subjects = append(subjects, s.ServiceAccount.Namespace+"/"+s.ServiceAccount.Name)
		}
		if want := []string{releaseNS + "/" + controllerName, releaseNS + "/" + speakerName}; !slices.Equal(subjects, want) {
			t.Errorf("FlowSchema subjects %v; want %v", subjects, want)
		}
		if le.Spec.MatchingPrecedence >= fs.Spec.MatchingPrecedence || le.Spec.PriorityLevelConfiguration.Name != "leader-election" {
			t.Errorf("leader-election FlowSchema precedence %d level %s; want below %d and leader-election",
				le.Spec.MatchingPrecedence, le.Spec.PriorityLevelConfiguration.Name, fs.Spec.MatchingPrecedence)
		}
		for _, o := range render(t, releaseNS, "--set", "apiPriorityAndFairness.enabled=false") {
			if strings.Contains(o.GetAPIVersion(), "flowcontrol") {
				t.Errorf("%s/%s rendered with apiPriorityAndFairness.enabled=false", o.GetKind(), o.GetName())
			}
		}
	})

	t.Run("existing memberlist Secret: none created, that one mounted", func(t *testing.T) {
		objs := render(t, releaseNS, "--set", "speaker.memberlist.existingSecret=gossip-key,speaker.memberlist.existingSecretKey=aes")
		for _, o := range objs {
			if o.GetKind() == "Secret" {
				t.Errorf("Secret %s rendered; want none with existingSecret", o.GetName())
			}
		}
		var ds appsv1.DaemonSet
		find(t, objs, "DaemonSet", speakerName, &ds)
		checkKeyMount(t, ds.Spec.Template.Spec, onlyContainer(t, ds.Spec.Template.Spec), "gossip-key", "aes")
	})

	t.Run("existing ServiceAccounts: none created, those bound", func(t *testing.T) {
		objs := render(t, releaseNS, "--set", "controller.serviceAccount.create=false,controller.serviceAccount.name=alloc,"+
			"speaker.serviceAccount.create=false,speaker.serviceAccount.name=announce")
		for _, o := range objs {
			if o.GetKind() == "ServiceAccount" {
				t.Errorf("ServiceAccount %s rendered; want none", o.GetName())
			}
		}
		for name, sa := range map[string]string{controllerName: "alloc", speakerName: "announce"} {
			var crb rbacv1.ClusterRoleBinding
			find(t, objs, "ClusterRoleBinding", name, &crb)
			if len(crb.Subjects) != 1 || crb.Subjects[0].Name != sa {
				t.Errorf("ClusterRoleBinding %s subjects %v; want ServiceAccount %s", name, crb.Subjects, sa)
			}
		}
		if _, err := renderErr(t, releaseNS, "--set", "controller.serviceAccount.create=false"); err == nil ||
			!strings.Contains(err.Error(), "controller.serviceAccount.name is required") {
			t.Errorf("no ServiceAccount name with create=false: err %v; want the name required", err)
		}
	})

	for _, alert := range []string{"poolNearlyExhausted", "bgpSessionDown", "noSpeakerOwnsIP", "addressConflict"} {
		t.Run("alert "+alert+" disabled", func(t *testing.T) {
			objs := render(t, releaseNS, "--set", "metrics.prometheusRule.enabled=true,metrics.prometheusRule."+alert+".enabled=false")
			var rule unstructured.Unstructured
			find(t, objs, "PrometheusRule", release, &rule.Object)
			groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
			rules, _, _ := unstructured.NestedSlice(groups[0].(map[string]any), "rules")
			if len(rules) != 3 {
				t.Errorf("%d rules; want the other 3", len(rules))
			}
		})
	}
	t.Run("every alert disabled: no PrometheusRule", func(t *testing.T) {
		objs := render(t, releaseNS, "--set", "metrics.prometheusRule.enabled=true,metrics.prometheusRule.poolNearlyExhausted.enabled=false,"+
			"metrics.prometheusRule.bgpSessionDown.enabled=false,metrics.prometheusRule.noSpeakerOwnsIP.enabled=false,"+
			"metrics.prometheusRule.addressConflict.enabled=false")
		if slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "PrometheusRule" }) {
			t.Error("PrometheusRule rendered without rules")
		}
	})

	t.Run("API server by IPv6 address, default port", func(t *testing.T) {
		objs := render(t, releaseNS, "--set", "apiServer.host=2001:db8::10")
		var ds appsv1.DaemonSet
		find(t, objs, "DaemonSet", speakerName, &ds)
		checkAPIServerEnv(t, onlyContainer(t, ds.Spec.Template.Spec), "2001:db8::10", "6443")
		var d appsv1.Deployment
		find(t, objs, "Deployment", controllerName, &d)
		checkAPIServerEnv(t, onlyContainer(t, d.Spec.Template.Spec), "2001:db8::10", "6443")
	})

	t.Run("zero gratuitous packets is a value, not the default", func(t *testing.T) {
		objs := render(t, releaseNS, "--set", "speaker.gratuitous.count=0")
		var ds appsv1.DaemonSet
		find(t, objs, "DaemonSet", speakerName, &ds)
		if args := onlyContainer(t, ds.Spec.Template.Spec).Args; !slices.Contains(args, "--gratuitous-count=0") {
			t.Errorf("args %v; want --gratuitous-count=0", args)
		}
	})

	t.Run("forwarding mode off as YAML's boolean", func(t *testing.T) {
		values := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(values, []byte("speaker:\n  forwarding:\n    mode: off\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		objs := render(t, releaseNS, "--values", values)
		var ds appsv1.DaemonSet
		find(t, objs, "DaemonSet", speakerName, &ds)
		if args := onlyContainer(t, ds.Spec.Template.Spec).Args; !slices.Contains(args, "--forwarding=off") {
			t.Errorf("args %v; want --forwarding=off", args)
		}
	})

	for _, tc := range []struct{ name, set, want string }{
		{"misspelt value", "controller.replicas=2", "additional properties 'replicas' not allowed"},
		{"duration without unit", "speaker.memberlist.probeInterval=500", "probeInterval"},
		{"unknown log level", "speaker.logLevel=verbose", "logLevel"},
		{"short memberlist key", "speaker.memberlist.key=tooshort", "key"},
		{"unknown forwarding mode", "speaker.forwarding.mode=maybe", "forwarding/mode"},
		{"API server by name", "apiServer.host=api.example.com", "apiServer/host"},
		{"API server in brackets", "apiServer.host=[2001:db8::10]", "apiServer/host"},
		{"API server not an address", "apiServer.host=10.0.1", `apiServer.host "10.0.1": want an IPv4 or IPv6 address`},
		{"API server port out of range", "apiServer.port=65536", "apiServer/port"},
		// The leader-election FlowSchema takes one less; 0 is no valid precedence.
		{"FlowSchema precedence 1", "apiPriorityAndFairness.matchingPrecedence=1", "matchingPrecedence"},
	} {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			_, err := renderErr(t, releaseNS, "--set", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("--set %s: err %v; want an error mentioning %q", tc.set, err, tc.want)
			}
		})
	}
}

// checkLabels checks the standard labels on every object and, for objects of one component,
// app.kubernetes.io/component.
func checkLabels(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		l := o.GetLabels()
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
			"app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart"} {
			if l[k] == "" {
				t.Errorf("%s/%s has no label %s", o.GetKind(), o.GetName(), k)
			}
		}
		if o.GetKind() != "PrometheusRule" && l["app.kubernetes.io/component"] == "" {
			t.Errorf("%s/%s has no app.kubernetes.io/component label", o.GetKind(), o.GetName())
		}
	}
}

func onlyContainer(t *testing.T, pod corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(pod.Containers))
	}
	return pod.Containers[0]
}

// checkAPIServerEnv checks the KUBERNETES_SERVICE_HOST and _PORT a container sets (values:
// apiServer): host and port, or neither when host is "", so the kubelet's own apply.
func checkAPIServerEnv(t *testing.T, c corev1.Container, host, port string) {
	t.Helper()
	got := map[string]string{}
	for _, e := range c.Env {
		if e.Name == "KUBERNETES_SERVICE_HOST" || e.Name == "KUBERNETES_SERVICE_PORT" {
			got[e.Name] = e.Value
		}
	}
	want := map[string]string{}
	if host != "" {
		want = map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: API server env (-want +got):\n%s", c.Name, diff)
	}
}

func fieldRefEnv(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
	}
	return ""
}

// checkKeyMount checks that --memberlist-key-file names a file the Secret's key is mounted as.
func checkKeyMount(t *testing.T, pod corev1.PodSpec, c corev1.Container, secret, key string) {
	t.Helper()
	var file string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--memberlist-key-file="); ok {
			file = v
		}
	}
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil || v.Secret.SecretName != secret {
				continue
			}
			for _, it := range v.Secret.Items {
				if it.Key == key && filepath.Join(m.MountPath, it.Path) == file && m.ReadOnly {
					return
				}
			}
		}
	}
	t.Errorf("--memberlist-key-file=%s is not key %q of Secret %s mounted read-only (mounts %+v, volumes %+v)",
		file, key, secret, c.VolumeMounts, pod.Volumes)
}

func checkProbes(t *testing.T, c corev1.Container, port int32) {
	t.Helper()
	if len(c.Ports) == 0 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != port {
		t.Errorf("ports %+v; want metrics %d first", c.Ports, port)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.StrVal != "metrics" {
			t.Errorf("probe %+v; want GET %s on the metrics port", probe, path)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestValuesCovered checks values.yaml, values.schema.json and ci/all-values.yaml against each
// other: every value is described in the schema, every object in the schema is closed (so a
// misspelt value is an error), and ci/all-values.yaml sets every value to something other than
// its default, or the value is in sharedDefault with the test that renders it.
func TestValuesCovered(t *testing.T) {
	sharedDefault := map[string]string{
		"controller.serviceAccount.create":                   "TestRenderVariants: existing ServiceAccounts",
		"speaker.serviceAccount.create":                      "TestRenderVariants: existing ServiceAccounts",
		"speaker.memberlist.existingSecret":                  "TestRenderVariants: existing memberlist Secret (excludes a key in the values)",
		"metrics.prometheusRule.poolNearlyExhausted.enabled": "TestRenderVariants: alert disabled",
		"metrics.prometheusRule.bgpSessionDown.enabled":      "TestRenderVariants: alert disabled",
		"metrics.prometheusRule.noSpeakerOwnsIP.enabled":     "TestRenderVariants: alert disabled",
		"metrics.prometheusRule.addressConflict.enabled":     "TestRenderVariants: alert disabled",
	}
	var schema schemaNode
	readJSON(t, filepath.Join(chartDir, "values.schema.json"), &schema)
	defaults := readYAML(t, filepath.Join(chartDir, "values.yaml"))
	all := readYAML(t, allValues)

	var leaves []string
	var walk func(path string, n *schemaNode)
	walk = func(path string, n *schemaNode) {
		if n.Description == "" && path != "" {
			t.Errorf("schema: %s has no description", path)
		}
		if len(n.Properties) == 0 {
			leaves = append(leaves, path)
			return
		}
		if n.AdditionalProperties == nil || *n.AdditionalProperties {
			t.Errorf("schema: %s accepts unknown properties; want additionalProperties: false", or(path, "the root"))
		}
		for k, c := range n.Properties {
			walk(strings.TrimPrefix(path+"."+k, "."), c)
		}
	}
	walk("", &schema)
	slices.Sort(leaves)

	for _, path := range leaves {
		def, ok := lookupPath(defaults, path)
		if !ok {
			t.Errorf("%s is in the schema but not in values.yaml", path)
			continue
		}
		got, ok := lookupPath(all, path)
		if !ok {
			t.Errorf("ci/all-values.yaml does not set %s", path)
			continue
		}
		if _, shared := sharedDefault[path]; !shared && cmp.Equal(def, got) {
			t.Errorf("ci/all-values.yaml sets %s to its default %v", path, def)
		}
	}
	for path := range sharedDefault {
		if !slices.Contains(leaves, path) {
			t.Errorf("sharedDefault names %s, which is no value", path)
		}
	}
	for _, path := range flatten("", defaults) {
		if !slices.ContainsFunc(leaves, func(l string) bool { return path == l || strings.HasPrefix(path, l+".") }) {
			t.Errorf("values.yaml has %s, which the schema does not describe", path)
		}
	}
}

type schemaNode struct {
	Description          string                 `json:"description"`
	Properties           map[string]*schemaNode `json:"properties"`
	AdditionalProperties *bool                  `json:"-"`
	RawAdditional        json.RawMessage        `json:"additionalProperties"`
}

func (n *schemaNode) UnmarshalJSON(b []byte) error {
	type plain schemaNode
	if err := json.Unmarshal(b, (*plain)(n)); err != nil {
		return err
	}
	if v := bytes.TrimSpace(n.RawAdditional); len(v) > 0 && (string(v) == "true" || string(v) == "false") {
		n.AdditionalProperties = ptr(string(v) == "true")
	}
	return nil
}

func readJSON(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func lookupPath(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// flatten lists the paths of a values tree down to its non-map values and empty maps.
func flatten(prefix string, m map[string]any) []string {
	var out []string
	for k, v := range m {
		p := strings.TrimPrefix(prefix+"."+k, ".")
		if mm, ok := v.(map[string]any); ok && len(mm) > 0 {
			out = append(out, flatten(p, mm)...)
		} else {
			out = append(out, p)
		}
	}
	return out
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// notExposed lists each binary's flags the chart deliberately does not set, with the reason.
// TestFlagsMatchBinaries fails on a flag that is neither set by the chart nor listed here, so a
// new flag in cmd/ is either exposed as a value or explained.
var notExposed = map[string]map[string]string{
	"ironlb-controller": {
		"kubeconfig": "in-cluster configuration from the ServiceAccount (apiServer sets the address)",
		"namespace":  "from $POD_NAMESPACE (downward API)",
		"identity":   "from $POD_NAME (downward API)",
	},
	"ironlb-speaker": {
		"kubeconfig":               "in-cluster configuration from the ServiceAccount (apiServer sets the address)",
		"node-name":                "from $NODE_NAME (spec.nodeName, downward API)",
		"memberlist-bind":          "per node; the default, the node's first InternalIP, is what a DaemonSet can give",
		"namespace":                "from $POD_NAMESPACE (downward API)",
		"memberlist-key-file-poll": "the default (2s) is small next to the kubelet's delay in updating the mounted Secret; extraArgs can set it",
	},
}

// TestFlagsMatchBinaries checks the arguments the chart renders (with every value set) against
// the flags cmd/<binary>/main.go defines: each rendered flag exists, and each flag is rendered
// or listed in notExposed.
func TestFlagsMatchBinaries(t *testing.T) {
	objs := render(t, "edge", "--values", allValues)
	var d appsv1.Deployment
	find(t, objs, "Deployment", "edge-lb-controller", &d)
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", "edge-lb-speaker", &ds)
	rendered := map[string][]string{
		"ironlb-controller": onlyContainer(t, d.Spec.Template.Spec).Args,
		"ironlb-speaker":    onlyContainer(t, ds.Spec.Template.Spec).Args,
	}
	for bin, args := range rendered {
		t.Run(bin, func(t *testing.T) {
			flags := binaryFlags(t, filepath.Join("..", "cmd", bin, "main.go"))
			set := map[string]bool{}
			for _, a := range args {
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				set[name] = true
				if !slices.Contains(flags, name) {
					t.Errorf("the chart passes %s, but %s has no flag -%s (flags: %v)", a, bin, name, flags)
				}
			}
			for _, f := range flags {
				_, skipped := notExposed[bin][f]
				if !set[f] && !skipped {
					t.Errorf("%s has flag -%s, which the chart never sets: expose it in values.yaml (and ci/all-values.yaml), or list it in notExposed with the reason", bin, f)
				}
			}
			for f := range notExposed[bin] {
				if !slices.Contains(flags, f) {
					t.Errorf("notExposed lists -%s, which %s no longer has", f, bin)
				}
			}
		})
	}
}

// binaryFlags returns the names of the flags a main.go defines with the flag package:
// flag.X(name, ...) and flag.XVar(p, name, ...).
func binaryFlags(t *testing.T, path string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "flag" {
			return true
		}
		i := 0
		if strings.HasSuffix(sel.Sel.Name, "Var") {
			i = 1
		}
		switch sel.Sel.Name {
		case "Parse", "Parsed", "Args", "Arg", "NArg", "NFlag", "Set", "Lookup", "Visit", "VisitAll", "PrintDefaults", "CommandLine", "Usage":
			return true
		}
		if len(call.Args) <= i {
			return true
		}
		lit, ok := call.Args[i].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("%s: flag.%s with a name that is not a string literal; extend binaryFlags", fset.Position(call.Pos()), sel.Sel.Name)
			return true
		}
		name, _ := strconv.Unquote(lit.Value)
		names = append(names, name)
		return true
	})
	if len(names) == 0 {
		t.Fatalf("%s defines no flags with the flag package; extend binaryFlags", path)
	}
	return names
}
