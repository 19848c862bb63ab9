package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	v1alpha1 "github.com/ironlb/ironlb/api/v1alpha1"
)

// TestDefaults checks the values the API server fills in, as the Go types see them.
func TestDefaults(t *testing.T) {
	client := dynamicClient(t)
	ptr := func(b bool) *bool { return &b }
	duration := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

	t.Run("IPPool autoAssign defaults to true", func(t *testing.T) {
		obj := newObject(t, "IPPool", "defaults", `spec: {addresses: [198.51.100.0/24]}`)
		created, err := create(t, client, obj, true)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeStrict(t, created).(*v1alpha1.IPPool).Spec
		want := v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/24"}, AutoAssign: ptr(true)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("spec (-want +got):\n%s", diff)
		}
	})

	t.Run("BGPPeer port, hold time, password key and restart time", func(t *testing.T) {
		obj := newObject(t, "BGPPeer", "defaults", `spec: {peerAddress: 198.51.100.1, peerASN: 64512, myASN: 64513,
			passwordSecretRef: {namespace: ironlb-system, name: bgp-auth}, gracefulRestart: {enabled: true}}`)
		created, err := create(t, client, obj, true)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeStrict(t, created).(*v1alpha1.BGPPeer).Spec
		want := v1alpha1.BGPPeerSpec{
			PeerAddress:       "198.51.100.1",
			PeerASN:           64512,
			MyASN:             64513,
			PeerPort:          179,
			HoldTime:          duration(90 * time.Second),
			PasswordSecretRef: &v1alpha1.SecretKeyReference{Namespace: "ironlb-system", Name: "bgp-auth", Key: "password"},
			GracefulRestart:   &v1alpha1.BGPGracefulRestart{Enabled: true, RestartTime: duration(120 * time.Second)},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("spec (-want +got):\n%s", diff)
		}
	})
}

// TestIPPoolStatus writes an IPPool's status through the status subresource: counts beyond
// int64 are accepted as decimal strings, malformed counts and duplicate condition types are
// refused with the field named.
func TestIPPoolStatus(t *testing.T) {
	client := dynamicClient(t)
	ctx := context.Background()
	pool, err := create(t, client, newObject(t, "IPPool", "status", `spec: {addresses: [198.51.100.0/24, "2001:db8::/64"]}`), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resourceClient(client, pool).Delete(ctx, pool.GetName(), metav1.DeleteOptions{}) })

	const ready = `{type: Ready, status: "True", reason: Valid, message: "", lastTransitionTime: "2026-01-02T03:04:05Z", observedGeneration: 1}`
	cases := []struct {
		name   string
		status string
		want   []cause
	}{
		{name: "counts of both families, a /64 beyond int64",
			status: `{observedGeneration: 1, ipv4: {total: "256", assigned: "1", available: "255"},
				ipv6: {total: "18446744073709551616", assigned: "0", available: "18446744073709551616"}, conditions: [` + ready + `]}`},
		{name: "negative count", status: `{ipv4: {total: "-1", assigned: "0", available: "0"}}`,
			want: []cause{{"status.ipv4.total", "should match"}}},
		{name: "count missing", status: `{ipv6: {total: "1", assigned: "0"}}`,
			want: []cause{{"status.ipv6.available", "Required value"}}},
		{name: "two Ready conditions", status: `{conditions: [` + ready + `, ` + ready + `]}`,
			want: []cause{{"status.conditions[1]", "Duplicate value"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := pool.DeepCopy()
			status := newObject(t, "IPPool", "status", "status: "+tc.status)
			obj.Object["status"] = status.Object["status"]
			updated, err := resourceClient(client, obj).UpdateStatus(ctx, obj, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused, want accepted: %v", err)
				}
				got := decodeStrict(t, updated).(*v1alpha1.IPPool).Status
				if got.IPv6 == nil || got.IPv6.Available != "18446744073709551616" {
					t.Errorf("status.ipv6 = %+v, want 18446744073709551616 available", got.IPv6)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want refused with %v", tc.want)
			}
			checkCauses(t, err, tc.want)
		})
	}
}

// TestReportColumns reads ServiceAnnouncements and BGPSessionStates as kubectl get does (the
// server-side Table) and filters them with field selectors: kubectl get
// serviceannouncements -A answers "who announces this IP?" and kubectl get bgpsessionstates
// shows each session's node, peer, state and error.
func TestReportColumns(t *testing.T) {
	client := dynamicClient(t)
	ctx := context.Background()
	objects := []*unstructured.Unstructured{
		newObject(t, "ServiceAnnouncement", "web.node-1.l2",
			`{serviceName: web, nodeName: node-1, mode: L2, ips: [198.51.100.200, "2001:db8::200"], interfaces: [eth0], conflictedIPs: [198.51.100.200]}`),
		newObject(t, "ServiceAnnouncement", "web.bgp",
			`{serviceName: web, nodes: [node-1, node-2], mode: BGP, ips: [203.0.113.10], peers: [router-a]}`),
		newObject(t, "BGPSessionState", "node-1.router-a-93f4124b9f",
			`{nodeName: node-1, peerName: router-a, peerAddress: 198.51.100.1, state: Established, establishedSince: "2026-01-02T03:04:05Z", prefixesSent: 2}`),
		newObject(t, "BGPSessionState", "node-2.router-a-a4b665ebda",
			`{nodeName: node-2, peerName: router-a, peerAddress: 198.51.100.1, state: Active, lastError: "received NOTIFICATION: OPEN Message Error, Bad Peer AS"}`),
	}
	for _, obj := range objects {
		if _, err := create(t, client, obj, false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resourceClient(client, obj).Delete(ctx, obj.GetName(), metav1.DeleteOptions{}) })
	}
	cfg := cluster(t)

	t.Run("all ServiceAnnouncements", func(t *testing.T) {
		got := table(t, cfg, "/apis/ironlb.io/v1alpha1/serviceannouncements", "")
		want := []map[string]string{
			{"Name": "web.bgp", "Service": "web", "IPs": `["203.0.113.10"]`, "Mode": "BGP", "Node": "", "Nodes": `["node-1","node-2"]`, "Interfaces": "", "Peers": `["router-a"]`, "Conflicted": ""},
			{"Name": "web.node-1.l2", "Service": "web", "IPs": `["198.51.100.200","2001:db8::200"]`, "Mode": "L2", "Node": "node-1", "Nodes": "", "Interfaces": `["eth0"]`, "Peers": "", "Conflicted": `["198.51.100.200"]`},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("table (-want +got):\n%s", diff)
		}
	})
	t.Run("ServiceAnnouncements of one node in L2", func(t *testing.T) {
		got := table(t, cfg, "/apis/ironlb.io/v1alpha1/serviceannouncements", "nodeName=node-1")
		if len(got) != 1 || got[0]["Name"] != "web.node-1.l2" {
			t.Errorf("nodeName=node-1 selects %v, want web.node-1.l2 only", got)
		}
	})
	t.Run("ServiceAnnouncements of one mode", func(t *testing.T) {
		got := table(t, cfg, "/apis/ironlb.io/v1alpha1/serviceannouncements", "mode=BGP")
		if len(got) != 1 || got[0]["Name"] != "web.bgp" {
			t.Errorf("mode=BGP selects %v, want web.bgp only", got)
		}
	})
	t.Run("all BGPSessionStates", func(t *testing.T) {
		got := table(t, cfg, "/apis/ironlb.io/v1alpha1/bgpsessionstates", "")
		want := []map[string]string{
			{"Name": "node-1.router-a-93f4124b9f", "Node": "node-1", "Peer": "router-a", "Peer Address": "198.51.100.1", "State": "Established", "Sent": "2", "Received": "", "Error": ""},
			{"Name": "node-2.router-a-a4b665ebda", "Node": "node-2", "Peer": "router-a", "Peer Address": "198.51.100.1", "State": "Active", "Sent": "", "Received": "",
				"Error": "received NOTIFICATION: OPEN Message Error, Bad Peer AS"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("table (-want +got):\n%s", diff)
		}
	})
	t.Run("established BGPSessionStates", func(t *testing.T) {
		got := table(t, cfg, "/apis/ironlb.io/v1alpha1/bgpsessionstates", "state=Established")
		if len(got) != 1 || got[0]["Name"] != "node-1.router-a-93f4124b9f" {
			t.Errorf("state=Established selects %v, want node-1.router-a-93f4124b9f only", got)
		}
	})
}

// table lists path as a server-side Table, the way kubectl get does, and returns each row as
// column name -> cell. Time columns (Age, Since) are left out: they change with the clock.
func table(t *testing.T, cfg *rest.Config, path, fieldSelector string) []map[string]string {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Host + path
	if fieldSelector != "" {
		u += "?fieldSelector=" + url.QueryEscape(fieldSelector)
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, body)
	}
	var tbl metav1.Table
	if err := json.Unmarshal(body, &tbl); err != nil {
		t.Fatalf("GET %s: not a Table: %v", u, err)
	}
	var rows []map[string]string
	for _, r := range tbl.Rows {
		row := map[string]string{}
		for i, col := range tbl.ColumnDefinitions {
			if col.Type == "date" || i >= len(r.Cells) {
				continue
			}
			if r.Cells[i] != nil {
				row[col.Name] = fmt.Sprint(r.Cells[i])
			} else {
				row[col.Name] = ""
			}
		}
		rows = append(rows, row)
	}
	return rows
}
