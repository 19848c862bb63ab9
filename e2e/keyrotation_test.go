package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	"github.com/ironlb/ironlb/l2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFaultMemberlistKeyRotation: the memberlist key rotated through the chart in its three
// steps (`helm upgrade` each: accept the new key, encrypt with it, drop the old one), waiting
// before each next step until every speaker reports the step in its metrics. The speakers apply
// each change of the mounted Secret live, so nothing a client sees changes: every L2 IP keeps
// its owner (its ServiceAnnouncement, the speakers' owned IPs and the MAC that answers ARP), no
// speaker fails to decrypt a message or misses a member for longer than a check, no speaker
// restarts, and no client request fails.
//
// The kubelet rewrites a mounted Secret on its periodic pod sync; the lab's kubelets sync every
// 10 s (e2e/lab kubelet.go, syncFrequency), so each step reaches every node within about 10-20 s
// instead of a minute or more: no change to the lab was needed for this test.
func TestFaultMemberlistKeyRotation(t *testing.T) {
	s := newScenario(t)
	pool := s.l2Pool("198.51.100.100-198.51.100.105")
	s.pods("web", env.lab.Nodes...)
	var names, ips []string
	owners := map[string]*lab.Node{} // by Service name
	for i := range 6 {
		names = append(names, fmt.Sprintf("rot%d", i))
		s.service(names[i], "web", pool, nil)
	}
	clients := map[string]*clientLoop{}
	for _, name := range names {
		ip := s.ingress(name)[0]
		ips = append(ips, ip)
		owners[name] = s.stableOwner(name, ip)
	}
	// One client per owning node, through the first IP it owns.
	byNode := map[string]string{}
	for i, name := range names {
		if _, ok := byNode[owners[name].Name]; !ok {
			byNode[owners[name].Name] = ips[i]
		}
	}
	if len(byNode) < 2 {
		t.Fatalf("the 6 IPs are owned by %v: want IPs on at least 2 nodes", byNode)
	}
	pods := speakerPods(t, s.ctx)
	ownedBefore := map[string]int{}
	for _, name := range names {
		ownedBefore[owners[name].Name]++
	}

	// The key in use: the first line of the chart's Secret (generated at install).
	secret, err := env.lab.Client.CoreV1().Secrets(lab.SystemNamespace).Get(s.ctx, lab.ChartRelease+"-memberlist", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old, _, _ := strings.Cut(string(secret.Data["key"]), "\n")
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	next := hex.EncodeToString(buf) // 32 characters: the key itself (l2.KeyFromString)

	arps := startARPLog(t)
	watchCtx, stopWatch := context.WithCancel(s.ctx)
	var watched sync.WaitGroup
	// ARP requests for every IP about every second; tcpdump sees every answer (and any
	// gratuitous ARP a node taking an IP over would send).
	watched.Go(func() {
		for watchCtx.Err() == nil {
			var wg sync.WaitGroup
			for _, ip := range ips {
				wg.Go(func() { _, _ = lab.Exec(watchCtx, lab.NSLANClient, "arping", "-c", "1", "-w", "0.5", "-i", "eth0", ip) })
			}
			wg.Wait()
			select {
			case <-watchCtx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	// Every 500 ms: each speaker's memberlist members and owned IPs, and each Service's
	// announcers. A member missing or suspect in one check is counted (dips): under a heavy
	// load memberlist's tuning (75 ms probe timeout, 300 ms suspicion) can declare a stalled
	// node dead for a moment whatever the keys. A key that a node cannot read loses that node
	// for as long as the mismatch lasts, every packet failing to decrypt: the test fails on a
	// member missing in two checks in a row and on any decrypt error in a speaker's log.
	var mon struct {
		sync.Mutex
		checks, scrapeErrors int
		wrong, dips          []string
	}
	lost := map[string]int{} // consecutive checks in which each node's speaker missed a member
	watched.Go(func() {
		for watchCtx.Err() == nil {
			var dips []string
			var wrong []string
			errs := 0
			for _, n := range env.lab.Nodes {
				m, err := speakerSamples(watchCtx, n, "ironlb_speaker_memberlist_members")
				o, oerr := speakerSamples(watchCtx, n, "ironlb_speaker_l2_owned_ips")
				if err != nil || oerr != nil {
					errs++
					continue
				}
				if m[`{state="alive"}`] != 3 || m[`{state="suspect"}`] != 0 {
					dips = append(dips, fmt.Sprintf("%s holds members %v", n.Name, m))
				}
				if m[`{state="alive"}`]+m[`{state="suspect"}`] == 3 {
					lost[n.Name] = 0
				} else if lost[n.Name]++; lost[n.Name] >= 2 {
					wrong = append(wrong, fmt.Sprintf("%s missed a member in %d checks in a row (%v)", n.Name, lost[n.Name], m))
				}
				if o[""] != float64(ownedBefore[n.Name]) {
					wrong = append(wrong, fmt.Sprintf("%s owns %v IPs, %d before", n.Name, o[""], ownedBefore[n.Name]))
				}
			}
			for _, name := range names {
				if a := s.announcers(name); !slices.Equal(a, []string{owners[name].Name}) && watchCtx.Err() == nil {
					wrong = append(wrong, fmt.Sprintf("%s announced by %v, owner %s", name, a, owners[name].Name))
				}
			}
			mon.Lock()
			mon.checks++
			mon.scrapeErrors += errs
			at := time.Now().Format("15:04:05.000")
			for _, w := range wrong {
				mon.wrong = append(mon.wrong, w+" at "+at)
			}
			for _, d := range dips {
				mon.dips = append(mon.dips, d+" at "+at)
			}
			mon.Unlock()
			select {
			case <-watchCtx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	for node, ip := range byNode {
		clients[node] = startClient(s.ctx, lab.NSLANClient, hostPort(ip, 80))
	}

	start := time.Now()
	var stepTimes []string
	for i, step := range []struct {
		set     []string
		primary string
		keys    int
	}{
		{[]string{"speaker.memberlist.key=" + old, "speaker.memberlist.extraKeys={" + next + "}"}, old, 2},
		{[]string{"speaker.memberlist.key=" + next, "speaker.memberlist.extraKeys={" + old + "}"}, next, 2},
		{[]string{"speaker.memberlist.key=" + next}, next, 1},
	} {
		began := time.Now()
		if err := env.ilb.Upgrade(s.ctx, step.set...); err != nil {
			t.Fatal(err)
		}
		upgraded := time.Since(began)
		want := fmt.Sprintf(`{primary=%q}`, l2.KeyFingerprint([]byte(step.primary)))
		s.eventually(fmt.Sprintf("every speaker reporting step %d (keys%s %d)", i+1, want, step.keys), 2*time.Minute, func() (bool, string) {
			var got []string
			done := true
			for _, n := range env.lab.Nodes {
				m, err := speakerSamples(s.ctx, n, "ironlb_speaker_memberlist_keys")
				got = append(got, fmt.Sprintf("%s: %v %v", n.Name, m, err))
				done = done && len(m) == 1 && m[want] == float64(step.keys)
			}
			return done, strings.Join(got, "; ")
		})
		stepTimes = append(stepTimes, fmt.Sprintf("step %d: helm upgrade %.1f s, every speaker reporting it after %.1f s",
			i+1, upgraded.Seconds(), time.Since(began).Seconds()))
	}
	rotated := time.Since(start)
	// Ten more seconds of probes and gossip with the new key alone.
	time.Sleep(10 * time.Second) // the watchers go on: an observation window, not an assertion
	stopWatch()
	watched.Wait()
	var results []string
	failed := 0
	for node, c := range clients {
		r := c.finish()
		failed += r.failed
		results = append(results, fmt.Sprintf("%s (owner %s): %s", byNode[node], node, r))
	}
	slices.Sort(results)

	t.Logf("FAULT memberlist key rotated in 3 helm upgrades in %.1f s (%s); clients: %s; %d checks of the speakers' members, owned IPs and the announcers (%d scrape errors); a member missing or suspect in one check: %d %v",
		rotated.Seconds(), strings.Join(stepTimes, "; "), strings.Join(results, "; "), mon.checks, mon.scrapeErrors, len(mon.dips), mon.dips)
	if failed > 0 {
		t.Errorf("%d client requests failed during the rotation: %s", failed, strings.Join(results, "; "))
	}
	if len(mon.wrong) > 0 {
		t.Errorf("%d checks found a change (first: %s; last: %s)", len(mon.wrong), mon.wrong[0], mon.wrong[len(mon.wrong)-1])
	}
	if mon.checks < 10 || mon.scrapeErrors > mon.checks {
		t.Errorf("%d checks, %d scrape errors: the speakers were hardly watched", mon.checks, mon.scrapeErrors)
	}
	for i, name := range names {
		for _, a := range arps.from(ips[i], owners[name].MAC.String(), start) {
			by := a.mac
			for _, n := range env.lab.Nodes {
				if n.MAC.String() == a.mac {
					by = n.Name
					if log, err := env.ilb.SpeakerLog(s.ctx, n); err == nil {
						by += fmt.Sprintf(" (its log on %s: %q)", ips[i], linesWith(log, ips[i]))
					}
				}
			}
			t.Errorf("%s (owner %s) answered by %s %v after the rotation began", ips[i], owners[name].Name, by, a.at.Sub(start).Round(time.Millisecond))
		}
	}
	if after := speakerPods(t, s.ctx); !maps.Equal(pods, after) {
		t.Errorf("speaker pods %v before, %v after: a key change restarted a speaker", pods, after)
	}
	for _, n := range env.lab.Nodes {
		log, err := env.ilb.SpeakerLog(s.ctx, n)
		if err != nil {
			t.Error(err)
			continue
		}
		if c := strings.Count(log, "memberlist keys reloaded"); c < 3 {
			t.Errorf("%s's speaker logged %d key reloads, want 3", n.Name, c)
		}
		if strings.Contains(log, "decrypt") {
			t.Errorf("%s's speaker could not decrypt a message: %s", n.Name, lineWith(log, "decrypt"))
		}
	}
}

// speakerPods returns each speaker pod's UID and container restart count, by node.
func speakerPods(t *testing.T, ctx context.Context) map[string]string {
	t.Helper()
	pods, err := env.lab.Client.CoreV1().Pods(lab.SystemNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=speaker"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		restarts := 0
		for _, c := range p.Status.ContainerStatuses {
			restarts += int(c.RestartCount)
		}
		out[p.Spec.NodeName] = fmt.Sprintf("%s/%d", p.UID, restarts)
	}
	return out
}

// speakerSamples returns the samples of metric name from n's speaker, by their labels ("{...}",
// or "" for none).
func speakerSamples(ctx context.Context, n *lab.Node, name string) (map[string]float64, error) {
	body, err := lab.HTTPGet(ctx, n.NetNS, "http://127.0.0.1:7473/metrics", 2*time.Second)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels, value, _ := strings.Cut(rest, " ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", n.Name, line, err)
		}
		out[labels] = v
	}
	return out, nil
}

// lineWith returns the first line of s that contains word.
func lineWith(s, word string) string {
	if l := linesWith(s, word); len(l) > 0 {
		return l[0]
	}
	return ""
}

// linesWith returns the lines of s that contain word.
func linesWith(s, word string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return out
}
