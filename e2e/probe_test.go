package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ironlb/ironlb/e2e/lab"
	"github.com/ironlb/ironlb/internal/demo"
)

// Probes of TestForwardingMatchesKubeProxy: each sends requests from one namespace to one
// frontend and describes what came back as a string that does not depend on chance (which
// pod an affinity picked) or on ports, so that two data planes' outcomes compare as strings.

// probeKind is what a probe sends.
type probeKind int

const (
	httpSpread probeKind = iota // spreadRequests HTTP requests, each on a new connection: which pods answer, from which source
	httpSticky                  // the same, expecting ClientIP affinity: "one pod" when a single pod answered them all (from any source)
	udpSpread                   // spreadRequests datagrams, each from a new socket
	healthGet                   // one HTTP GET of a healthCheckNodePort: status, headers, body
	scripted                    // no probe: a scenario of its own (diffEnv.scripted)
)

// spreadRequests per probe: with two endpoints, both answer but for a chance of 2^-23.
const spreadRequests = 24

// probeTimeout bounds one request: a dropped SYN is retransmitted after 1 s, so 2 s tells a
// drop from a lost first packet.
const probeTimeout = 2 * time.Second

// prober sends probes and names the addresses pods saw.
type prober struct {
	names map[netip.Addr]string // address -> name in outcomes (lan-client, node1, node1-cni0, web-a)
}

// probe runs one probe from ns to addr and returns its outcome.
func (p *prober) probe(ctx context.Context, ns string, kind probeKind, addr string) string {
	switch kind {
	case healthGet:
		return p.health(ctx, ns, addr)
	case udpSpread:
		return p.spread(ctx, ns, addr, false, func() (string, string, error) {
			body, err := udpAsk(ctx, ns, addr)
			if err != nil {
				return "", "", err
			}
			return demo.ParseAnswer(body)
		})
	default:
		return p.spread(ctx, ns, addr, kind == httpSticky, func() (string, string, error) {
			body, err := lab.HTTPGet(ctx, ns, "http://"+addr+"/", probeTimeout)
			if err != nil {
				return "", "", err
			}
			return demo.ParseAnswer(body)
		})
	}
}

// spread sends spreadRequests requests with ask and describes the answers: "web-a from
// lan-client, web-b from node1", or how the first request failed ("refused (TCP reset)",
// "timeout"), or both when some failed. A failed request is tried once more (on a loaded
// machine an answer can come late; a frontend that drops or refuses does so again), and the
// second try's failure is the one described.
func (p *prober) spread(ctx context.Context, ns, addr string, sticky bool, ask func() (pod, client string, err error)) string {
	seen := map[string]map[string]bool{} // pod -> sources
	var failures []string
	for i := range spreadRequests {
		pod, client, err := ask()
		if err != nil {
			var failed string
			if pod, client, failed = p.again(ctx, ns, ask); failed != "" {
				failures = append(failures, failed)
				if i == 0 {
					break // the first failed twice: what the frontend does
				}
				continue
			}
		}
		if seen[pod] == nil {
			seen[pod] = map[string]bool{}
		}
		seen[pod][p.name(client)] = true
	}
	var parts []string
	if sticky && len(seen) == 1 {
		// Which pod, and so which source it saw, is chance.
		parts = append(parts, "one pod")
	} else {
		for _, pod := range sortedKeys(seen) {
			parts = append(parts, pod+" from "+strings.Join(sortedKeys(seen[pod]), "/"))
		}
	}
	if len(failures) > 0 {
		slices.Sort(failures)
		failures = slices.Compact(failures)
		parts = append(parts, strings.Join(failures, "/"))
	}
	return strings.Join(parts, ", ")
}

// again tries a failed request once more, between two readings of ns's probe counters, and
// returns its answer or how it failed.
func (p *prober) again(ctx context.Context, ns string, ask func() (pod, client string, err error)) (pod, client, failed string) {
	before, err := probeCounters(ctx, ns)
	if err != nil {
		return "", "", err.Error()
	}
	pod, client, err = ask()
	if err != nil {
		return "", "", p.failure(ctx, ns, err, before)
	}
	return pod, client, ""
}

// name returns the name of a host:port's address for outcomes.
func (p *prober) name(hostport string) string {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return hostport
	}
	if n, ok := p.names[a.Unmap()]; ok {
		return n
	}
	return a.String()
}

// failure names how a request failed. Connection refused is the same errno for a TCP reset
// and an ICMP port unreachable: ns's probe counters, read before the request and now, tell
// them apart.
func (p *prober) failure(ctx context.Context, ns string, err error, before map[string]int) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		c, cerr := probeCounters(ctx, ns)
		for k := range c {
			c[k] -= before[k]
		}
		switch {
		case cerr != nil:
			return "refused (" + cerr.Error() + ")"
		case c["rst"] > 0 && c["icmp-port"] == 0:
			return "refused (TCP reset)"
		case c["icmp-port"] > 0 && c["rst"] == 0:
			return "refused (ICMP port unreachable)"
		default:
			return fmt.Sprintf("refused (%d resets, %d ICMP port unreachable)", c["rst"], c["icmp-port"])
		}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable (ICMP)"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return err.Error()
}

// health GETs a healthCheckNodePort and describes the answer: status, the weight and content
// type headers, and the JSON body with its keys sorted.
func (p *prober) health(ctx context.Context, ns, addr string) string {
	client := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return lab.DialIn(ctx, ns, addr)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		before, cerr := probeCounters(ctx, ns)
		if cerr != nil {
			return cerr.Error()
		}
		if resp, err = client.Do(req); err != nil {
			return p.failure(ctx, ns, err, before)
		}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err.Error()
	}
	var body any
	if err := json.Unmarshal(raw, &body); err != nil {
		return fmt.Sprintf("%d, body %q", resp.StatusCode, raw)
	}
	compact, _ := json.Marshal(body) // sorted keys
	return fmt.Sprintf("%d, weight %s, %s, %s", resp.StatusCode, resp.Header.Get("X-Load-Balancing-Endpoint-Weight"),
		resp.Header.Get("Content-Type"), compact)
}

// probeTable counts, in a probing namespace, the TCP resets from Service-like addresses and
// the catalogue's ports (80, the unused port 81, the pods' 8080 and 9000-9050, NodePorts and
// health-check ports; not memberlist's, the kubelet's or the API server's, which share the node
// namespaces and under load reset connections of their own) and the ICMP destination
// unreachables that arrive: what refused a connection. Priority 300 comes after conntrack has
// put the Service's address back as the reset's source.
const probeTable = `table inet ilb-diff-probe {
	counter rst {}
	counter icmp-port {}
	counter icmp-other {}
	chain input {
		type filter hook input priority 300; policy accept;
		tcp flags & rst == rst tcp sport { 80, 81, 8080, 9000-9050, 30000-32767 } ip saddr { 198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24 } counter name rst
		tcp flags & rst == rst tcp sport { 80, 81, 8080, 9000-9050, 30000-32767 } ip6 saddr 2001:db8::/32 counter name rst
		icmp type destination-unreachable icmp code port-unreachable counter name icmp-port
		icmpv6 type destination-unreachable icmpv6 code port-unreachable counter name icmp-port
		icmp type destination-unreachable icmp code != port-unreachable counter name icmp-other
		icmpv6 type destination-unreachable icmpv6 code != port-unreachable counter name icmp-other
	}
}
`

func addProbeTable(ctx context.Context, ns string) error {
	cmd := lab.Command(ctx, ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(probeTable)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("adding the probe table in %s: %w: %s", ns, err, out)
	}
	return nil
}

func deleteProbeTable(ctx context.Context, ns string) {
	_, _ = lab.Exec(ctx, ns, "nft", "delete", "table", "inet", "ilb-diff-probe")
}

var counterLine = regexp.MustCompile(`counter (\S+) \{\s*packets (\d+)`)

func probeCounters(ctx context.Context, ns string) (map[string]int, error) {
	out, err := lab.Exec(ctx, ns, "nft", "list", "counters", "table", "inet", "ilb-diff-probe")
	if err != nil {
		return nil, err
	}
	c := map[string]int{}
	for _, m := range counterLine.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.Atoi(m[2])
		c[m[1]] = n
	}
	return c, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
