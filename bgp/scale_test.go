package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scaleEnv enables TestScale, which measures rather than checks (BENCHMARKS.md, "BGP").
const scaleEnv = "ILBT_BGP_SCALE"

// TestScale measures, against BIRD with 3 sessions: loading 1,000 prefixes on every session,
// the latency of one added and one withdrawn prefix until BIRD has it (50 each), the cost of
// an unchanged SetPaths and of Sessions, the process's memory, and the shutdown.
func TestScale(t *testing.T) {
	if os.Getenv(scaleEnv) == "" && os.Getenv(childEnv) == "" {
		t.Skipf("a measurement, not a check: run with %s=1 (BENCHMARKS.md, BGP)", scaleEnv)
	}
	if info := inChild(t); info != nil {
		scaleChild(t, info)
		return
	}
	l := newLab(t, 3)
	// Without route debugging: BIRD would log every route.
	l.startBIRD(strings.Replace(birdPeers(l.info.Links), "debug { states, routes };", "", 1))
	l.runChild()
}

func scaleChild(t *testing.T, info *labInfo) {
	s := startSpeaker(t, testConfig(t, info.Links[0]))
	var peers []Peer
	for i, li := range info.Links {
		peers = append(peers, Peer{Name: fmt.Sprintf("link%d", i+1), Address: li.Router4, PeerASN: routerASN})
	}
	must(t, s.SetPeers(peers))
	for _, p := range peers {
		s.waitState(t, p.Name, StateEstablished, 15*time.Second)
	}
	prefix := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}), 32) // 198.18.0.0/15, the lab's benchmarking range
	}
	var paths []Path
	for i := range 1000 {
		paths = append(paths, Path{Prefix: prefix(i), Communities: []string{"65000:100"}})
	}

	count := func(proto string) int {
		out, err := birdc(info.BIRD, "show route protocol "+proto+" count")
		if err != nil {
			t.Fatal(err)
		}
		// "1000 of 1000 routes for 1000 networks in table master4"
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[1] == "of" {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
		return 0
	}
	start := time.Now()
	must(t, s.SetPaths(paths))
	setPaths := time.Since(start)
	for _, p := range peers {
		waitFor(t, 60*time.Second, func() (bool, string) {
			n := count(p.Name)
			return n == 1000, fmt.Sprintf("%s has %d routes", p.Name, n)
		})
	}
	loaded := time.Since(start)
	t.Logf("SCALE 1000 prefixes x 3 sessions: SetPaths returned after %s, BIRD had all 3000 routes after %s", setPaths.Round(time.Millisecond), loaded.Round(time.Millisecond))

	start = time.Now()
	must(t, s.SetPaths(paths))
	t.Logf("SCALE unchanged SetPaths of 1000 paths (3000 routes): %s", time.Since(start).Round(time.Microsecond))
	start = time.Now()
	st := s.Sessions()
	t.Logf("SCALE Sessions with 3000 routes: %s (%d prefixes sent on %s)", time.Since(start).Round(time.Microsecond), st[0].PrefixesSent, st[0].Peer)

	visible := func(p netip.Prefix) bool {
		out, _ := birdc(info.BIRD, "show route "+p.String())
		return strings.Count(out, "unicast [link") == 3
	}
	var add, del []time.Duration
	for i := range 50 {
		p := prefix(10000 + i)
		paths = append(paths, Path{Prefix: p, Communities: []string{"65000:100"}})
		start := time.Now()
		must(t, s.SetPaths(paths))
		for !visible(p) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s not at BIRD after 10s", p)
			}
		}
		add = append(add, time.Since(start))
	}
	for range 50 {
		p := paths[len(paths)-1].Prefix
		paths = paths[:len(paths)-1]
		start := time.Now()
		must(t, s.SetPaths(paths))
		for {
			out, _ := birdc(info.BIRD, "show route "+p.String())
			if !strings.Contains(out, "unicast") {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s still at BIRD after 10s", p)
			}
		}
		del = append(del, time.Since(start))
	}
	t.Logf("SCALE one prefix added, until BIRD has it from all 3 sessions: %s", percentiles(add))
	t.Logf("SCALE one prefix withdrawn, until BIRD has none: %s", percentiles(del))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, _ := os.ReadFile("/proc/self/status")
	rss := ""
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			rss += strings.Join(strings.Fields(line), " ") + " "
		}
	}
	t.Logf("SCALE memory with 3000 routes: heap in use %d MiB, %s(test binary included)", ms.HeapInuse>>20, rss)

	start = time.Now()
	must(t, s.stop())
	t.Logf("SCALE shutdown with 3000 routes: Run returned after %s", time.Since(start).Round(time.Millisecond))
	for _, p := range peers {
		waitFor(t, 5*time.Second, func() (bool, string) {
			n := count(p.Name)
			return n == 0, fmt.Sprintf("%s still has %d routes", p.Name, n)
		})
	}
	t.Logf("SCALE BIRD empty %s after Run was stopped", time.Since(start).Round(time.Millisecond))
}

func percentiles(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s (n=%d)", at(0.5), at(0.9), at(0.99), s[len(s)-1].Round(100*time.Microsecond), len(s))
}
