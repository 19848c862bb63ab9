// Command ironlb-speaker runs on every node (host network): it announces the external IPs by
// ARP/NDP (the IPs this node owns, with liveness from memberlist) and BGP, and forwards their
// traffic with ironlb's nftables table.
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"

	"github.com/ironlb/ironlb/internal/cmdutil"
	"github.com/ironlb/ironlb/speaker"
)

func main() {
	cfg := speaker.DefaultConfig()
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	flag.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	flag.StringVar(&cfg.Class.Name, "load-balancer-class", cfg.Class.Name, "the spec.loadBalancerClass ironlb handles")
	flag.BoolVar(&cfg.Class.Only, "only-load-balancer-class", false, "handle only Services of -load-balancer-class, not those without a class")
	flag.StringVar(&cfg.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace of this speaker's Lease, a liveness source besides memberlist (default $POD_NAMESPACE; empty: memberlist alone)")
	flag.DurationVar(&cfg.Lease.Renew, "lease-renew-interval", cfg.Lease.Renew, "how often this speaker renews its Lease")
	flag.DurationVar(&cfg.Lease.Duration, "lease-duration", cfg.Lease.Duration, "how long a Lease renewal keeps a node that memberlist lost alive")
	bind := flag.String("memberlist-bind", "", "memberlist address (default: the node's first InternalIP)")
	flag.IntVar(&cfg.Members.BindPort, "memberlist-port", cfg.Members.BindPort, "memberlist TCP and UDP port")
	flag.StringVar(&cfg.MembersKeyFile, "memberlist-key-file", "", "file holding the gossip encryption key (16/24/32 bytes, raw, hex or base64), e.g. a mounted Secret; more lines: keys also accepted, for a rotation; re-read every -memberlist-key-file-poll and applied live")
	flag.DurationVar(&cfg.KeyFilePoll, "memberlist-key-file-poll", cfg.KeyFilePoll, "how often the memberlist key file is read for changes")
	flag.DurationVar(&cfg.Members.ProbeInterval, "memberlist-probe-interval", cfg.Members.ProbeInterval, "how often each node probes another")
	flag.DurationVar(&cfg.Members.ProbeTimeout, "memberlist-probe-timeout", cfg.Members.ProbeTimeout, "how long a probe waits for its ack")
	flag.IntVar(&cfg.Members.SuspicionMult, "memberlist-suspicion-mult", cfg.Members.SuspicionMult, "suspicion timeout multiplier")
	flag.DurationVar(&cfg.Members.GossipInterval, "memberlist-gossip-interval", cfg.Members.GossipInterval, "how often state changes are gossiped")
	flag.IntVar(&cfg.Announcer.GratuitousCount, "gratuitous-count", cfg.Announcer.GratuitousCount, "gratuitous ARP / unsolicited NA packets sent on taking an IP")
	flag.DurationVar(&cfg.Announcer.GratuitousInterval, "gratuitous-interval", cfg.Announcer.GratuitousInterval, "interval between those packets")
	flag.StringVar(&cfg.Forwarding, "forwarding", cfg.Forwarding, "auto, on or off: forward LoadBalancer, NodePort and ClusterIP traffic with ironlb's nftables table (auto: unless kube-proxy's rules are present)")
	flag.BoolVar(&cfg.ForwardOptions.ClusterIPs, "forward-cluster-ips", cfg.ForwardOptions.ClusterIPs, "also forward ClusterIP traffic (off when a CNI handles ClusterIPs)")
	flag.BoolVar(&cfg.ForwardOptions.MasqueradeAll, "masquerade-all", cfg.ForwardOptions.MasqueradeAll, "masquerade ClusterIP traffic to remote endpoints too (when ClusterIPs are routed from outside the cluster)")
	flag.StringVar(&cfg.DaemonSet, "daemonset", "", "namespace/name of the DaemonSet that runs this speaker: when it is deleted (helm uninstall) the speaker removes its nftables table as it stops (empty: the table stays)")
	flag.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address for /metrics, /healthz and /readyz (empty: off)")
	flag.Func("kube-api-qps", fmt.Sprintf("sustained requests per second to the API server, status writes included; negative: no client-side limit (default %g)", cfg.API.QPS), cmdutil.Float32(&cfg.API.QPS))
	flag.IntVar(&cfg.API.Burst, "kube-api-burst", cfg.API.Burst, "requests to the API server allowed at once above -kube-api-qps")
	flag.Func("events-qps", fmt.Sprintf("sustained event writes per second, on a client and queue of their own (default %g)", cfg.Events.QPS), cmdutil.Float32(&cfg.Events.QPS))
	flag.IntVar(&cfg.Events.Burst, "events-burst", cfg.Events.Burst, "event writes allowed at once above -events-qps")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	log, restCfg, reg, err := cmdutil.Setup(*logLevel, *kubeconfig)
	if err != nil {
		fail(err)
	}
	cfg.Log = log
	if *bind != "" {
		addr, err := netip.ParseAddr(*bind)
		if err != nil {
			fail(fmt.Errorf("-memberlist-bind: %w", err))
		}
		cfg.Members.BindAddr = addr
	}
	s, err := speaker.New(cfg, restCfg, reg, reg)
	if err != nil {
		fail(err)
	}
	if err := cmdutil.Run(s.Run); err != nil {
		fail(err)
	}
}

func fail(err error) { cmdutil.Fail("ironlb-speaker", err) }
