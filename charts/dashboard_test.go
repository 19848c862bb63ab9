package charts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ironlb/ironlb/controller"
	"github.com/ironlb/ironlb/e2e/apiserver"
	"github.com/ironlb/ironlb/internal/cmdutil"
	"github.com/ironlb/ironlb/speaker"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const dashboardFile = "ironlb/dashboards/ironlb.json"

// describing is a Registerer that records the names of the metrics each collector describes
// before registering it: vectors without series yet do not show in Gather.
type describing struct {
	prometheus.Registerer
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return d.Registerer.Register(c)
}

func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

// exportedMetrics builds the controller and the speaker as their main functions do (the
// registry from cmdutil.Setup, New with the default configuration; nothing is started) and
// returns the name of every metric they register, with the histograms' series suffixes.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	// New only builds clients; no server is contacted.
	if err := apiserver.WriteKubeconfig(kubeconfig, "https://127.0.0.1:1", "", nil, "unused"); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, binary := range []string{"controller", "speaker"} {
		_, restCfg, reg, err := cmdutil.Setup("error", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		d := &describing{Registerer: reg, names: names}
		switch binary {
		case "controller":
			_, err = controller.New(controller.DefaultConfig(), restCfg, d, reg)
		case "speaker":
			cfg := speaker.DefaultConfig()
			cfg.NodeName = "node"
			_, err = speaker.New(cfg, restCfg, d, reg)
		}
		if err != nil {
			t.Fatalf("building the %s: %v", binary, err)
		}
		families, err := reg.Gather() // the Go and process collectors cmdutil registers
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			names[f.GetName()] = true
		}
	}
	for n := range names {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			names[n+suffix] = true
		}
	}
	return names
}

// promqlWords are PromQL's functions, aggregations and keywords: every other identifier left
// in an expression, once label matchers, grouping labels, ranges and strings are removed, is a
// metric name.
var promqlWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile count_values group
		rate irate increase delta idelta deriv changes resets histogram_quantile abs ceil floor round clamp clamp_min clamp_max
		vector scalar time timestamp absent absent_over_time label_replace label_join sort sort_desc
		avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time predict_linear
		and or unless by without on ignoring group_left group_right bool offset`) {
		promqlWords[w] = true
	}
}

var (
	braces     = regexp.MustCompile(`\{[^{}]*\}`)
	ranges     = regexp.MustCompile(`\[[^\]]*\]`)
	strs       = regexp.MustCompile(`"[^"]*"`)
	grouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identifier = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// metricNames returns the metric names an expression reads.
func metricNames(expr string) []string {
	e := strs.ReplaceAllString(expr, `""`)
	e = braces.ReplaceAllString(e, "")
	e = ranges.ReplaceAllString(e, "")
	e = grouping.ReplaceAllString(e, "$1")
	e = regexp.MustCompile(`\$\w+`).ReplaceAllString(e, "")
	var out []string
	for _, w := range identifier.FindAllString(e, -1) {
		if !promqlWords[w] {
			out = append(out, w)
		}
	}
	return out
}

func TestMetricNamesParser(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (reason) (increase(ironlb_allocation_failures_total[$__rate_interval]))`:                            {"ironlb_allocation_failures_total"},
		`max by (pool) (a{state="x"} and on (instance) (b == 1)) / max without (le) (c{p=~"lan-.*"})`:               {"a", "b", "c"},
		`histogram_quantile(0.99, sum by (le, node) (rate(x_bucket[5m]))) or vector(0)`:                             {"x_bucket"},
		`count(ironlb_speaker_bgp_session_up == 0) or vector(0)`:                                                    {"ironlb_speaker_bgp_session_up"},
		`sum by (node) (changes(ironlb_speaker_l2_owned_ips[$__rate_interval])) > bool 0 unless ignoring (a) up_up`: {"ironlb_speaker_l2_owned_ips", "up_up"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %v, want %v", expr, got, want)
		}
	}
}

// TestDashboard parses the chart's Grafana dashboard and checks every query reads only metrics
// the binaries register, and every panel has a query.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			GridPos struct {
				X, Y, W, H int
			} `json:"gridPos"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard without title, uid or panels")
	}
	exported := exportedMetrics(t)
	for _, want := range []string{"ironlb_pool_addresses", "ironlb_speaker_bgp_session_up", "ironlb_speaker_l2_requests_total", "go_goroutines"} {
		if !exported[want] {
			t.Fatalf("the registries lack %s: the collection of names is broken", want)
		}
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		// Grafana's layout: unique ids, panels within the 24 columns.
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside Grafana's 24 columns", p.Title, g)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q reads no metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				used[n] = true
				if !exported[n] {
					t.Errorf("panel %q: query %q reads %s, which neither binary exports", p.Title, tg.Expr, n)
				}
			}
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{"ironlb_pool_addresses", "ironlb_allocation_failures_total", "ironlb_speaker_bgp_session_up",
		"ironlb_speaker_l2_owned_ips", "ironlb_speaker_l2_gratuitous_total", "ironlb_speaker_forwarding_sync_duration_seconds_bucket"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// TestDashboardConfigMap renders the chart with the dashboard on: the ConfigMap holds the file
// as is, with the sidecar's label.
func TestDashboardConfigMap(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	objs := render(t, "edge", "--values", allValues)
	var cm corev1.ConfigMap
	find(t, objs, "ConfigMap", "edge-lb-dashboard", &cm)
	if cm.Namespace != "monitoring" || cm.Labels["grafana_dashboard_ironlb"] != "yes" || cm.Annotations["grafana_folder"] != "Networking" {
		t.Errorf("ConfigMap metadata %+v; want namespace monitoring, label grafana_dashboard_ironlb=yes, annotation grafana_folder", cm.ObjectMeta)
	}
	if strings.TrimSpace(cm.Data["ironlb.json"]) != strings.TrimSpace(string(raw)) {
		t.Errorf("the ConfigMap's ironlb.json differs from %s", dashboardFile)
	}
	for _, o := range render(t, releaseNS) {
		if o.GetKind() == "ConfigMap" {
			t.Errorf("ConfigMap %s rendered by default; the dashboard is off by default", o.GetName())
		}
	}
}

// TestAlertRulesReadExportedMetrics renders the PrometheusRule with every alert on and checks
// that each expression reads only metrics the binaries register.
func TestAlertRulesReadExportedMetrics(t *testing.T) {
	objs := render(t, "edge", "--values", allValues)
	var rule unstructured.Unstructured
	find(t, objs, "PrometheusRule", "edge-lb", &rule.Object)
	exported := exportedMetrics(t)
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	n := 0
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			alert, expr := r.(map[string]any)["alert"], r.(map[string]any)["expr"].(string)
			names := metricNames(expr)
			if len(names) == 0 {
				t.Errorf("alert %v: %q reads no metric", alert, expr)
			}
			for _, name := range names {
				if !exported[name] {
					t.Errorf("alert %v: %q reads %s, which neither binary exports", alert, expr, name)
				}
			}
			n++
		}
	}
	if n < 4 {
		t.Errorf("%d alerts rendered, want every alert of the chart", n)
	}
}
