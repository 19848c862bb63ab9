package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNodeReboot: on the cluster without kube-proxy, one node reboots (its kubelet, containerd
// and pods killed, its mounts, runtime state and nftables rules gone; then containerd and the
// kubelet start again). Its speaker must come back without the kubernetes Service's ClusterIP
// (which only its own table makes reachable) and the node must serve again: speaker pod Ready,
// ironlb's table back, BIRD routing to it, and the Service IP answering through it.
func TestNodeReboot(t *testing.T) {
	s := newScenario(t)
	pool := s.bgpSetup([]string{"203.0.113.96/28"}, nil)
	s.pods("reboot", env.lab.Nodes...)
	s.service("reboot", "reboot", pool, nil)
	ip := s.ingress("reboot")[0]
	n := env.lab.Nodes[len(env.lab.Nodes)-1]
	s.eventually("ECMP over all nodes at BIRD for "+ip, 30*time.Second, func() (bool, string) {
		return slices.Equal(birdNextHops(t, ip+"/32"), nodeLAN(4)), birdRoute(t, ip+"/32")
	})
	// The LAN client sends to the Service IP through n only.
	mustRun(t, lab.NSLANClient, "ip", "route", "add", ip+"/32", "via", n.LAN4.String())
	t.Cleanup(func() { _, _ = lab.Exec(context.Background(), lab.NSLANClient, "ip", "route", "del", ip+"/32") })
	s.eventually("an answer through "+n.Name, 15*time.Second, func() (bool, string) {
		_, _, err := get(s.ctx, lab.NSLANClient, ip)
		return err == nil, fmt.Sprint(err)
	})

	if err := env.lab.StopNode(s.ctx, n); err != nil {
		t.Fatal(err)
	}
	if out, err := lab.Exec(s.ctx, n.NetNS, "nft", "list", "tables"); err != nil || len(out) != 0 {
		t.Fatalf("%s's nftables tables after the power loss: %q %v", n.Name, out, err)
	}
	s.eventually("BIRD drops "+n.Name, 30*time.Second, func() (bool, string) {
		return !slices.Contains(birdNextHops(t, ip+"/32"), n.LAN4.String()), birdRoute(t, ip+"/32")
	})
	boot := time.Now()
	if err := env.lab.StartNode(s.ctx, n); err != nil {
		t.Fatal(err)
	}
	// Every step below has its own deadline; the whole boot must fit in 2 minutes.
	if err := env.ilb.WaitSpeaker(s.ctx, n, boot); err != nil {
		t.Fatal(err)
	}
	speaker := time.Since(boot)
	s.eventually("ironlb's table on "+n.Name, 30*time.Second, func() (bool, string) {
		_, err := lab.Exec(s.ctx, n.NetNS, "nft", "list", "table", "inet", "ironlb")
		return err == nil, fmt.Sprint(err)
	})
	s.eventually("BIRD routes to "+n.Name+" again", 60*time.Second, func() (bool, string) {
		return slices.Equal(birdNextHops(t, ip+"/32"), nodeLAN(4)), birdRoute(t, ip+"/32")
	})
	s.eventually("an answer through "+n.Name+" again", 30*time.Second, func() (bool, string) {
		_, _, err := get(s.ctx, lab.NSLANClient, ip)
		return err == nil, fmt.Sprint(err)
	})
	serving := time.Since(boot)
	node, err := env.lab.Client.CoreV1().Nodes().Get(s.ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready := false
	for _, c := range node.Status.Conditions {
		ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	}
	if !ready {
		t.Errorf("%s serves but is not Ready: %v", n.Name, node.Status.Conditions)
	}
	t.Logf("%s rebooted: speaker Ready %.1f s, serving through it %.1f s after containerd started", n.Name, speaker.Seconds(), serving.Seconds())
	if serving > 2*time.Minute {
		t.Errorf("%s took %v to serve again, want at most 2m", n.Name, serving)
	}
}
