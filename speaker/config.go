package speaker

import (
	"log/slog"
	"time"

	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/forward"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/ironlb/ironlb/l2"
)

// Config is the speaker's configuration; DefaultConfig gives every value with its reason.
type Config struct {
	// NodeName is the Kubernetes node this speaker runs on.
	NodeName string
	// Class selects the Services announced, as the controller's does.
	Class config.Class
	// Namespace holds this speaker's Lease (a second liveness source besides memberlist, for
	// partitions: l2.Liveness); empty: no Lease, liveness from memberlist alone.
	Namespace string
	// Lease tunes the speakers' Leases.
	Lease l2.LeaseConfig
	// Members tunes memberlist liveness. Members.BindAddr defaults to the node's first
	// InternalIP (IPv4 preferred).
	Members l2.MembersConfig
	// MembersKeyFile holds the gossip keys, one per line (the first encrypts; l2.KeysFromString),
	// e.g. a mounted Secret: read at start into Members' keys, then every KeyFilePoll, and a
	// change is applied live (keys.go). Empty: Members' keys as given, never reloaded.
	MembersKeyFile string
	// KeyFilePoll is how often MembersKeyFile is read: a few seconds, small next to the kubelet's
	// delay in updating a Secret volume (its sync period, a minute by default).
	KeyFilePoll time.Duration
	// Announcer tunes gratuitous ARP / unsolicited NA.
	Announcer l2.AnnouncerConfig
	// Forwarding is auto, on or off: whether this node's nftables rules forward LoadBalancer,
	// NodePort and ClusterIP traffic. auto: on unless kube-proxy's rules are on the node.
	Forwarding string
	// ForwardOptions tune the rules.
	ForwardOptions forward.Options
	// DaemonSet ("namespace/name") is the DaemonSet that runs this speaker. When it is deleted
	// (helm uninstall) the speaker removes its nftables table as it stops; empty: the table
	// always stays (it keeps forwarding while the next speaker starts).
	DaemonSet string
	// JoinTimeout bounds how long a starting speaker waits to join the other members before it
	// plans: planning alone would make it own every IP for a moment (the others look dead).
	JoinTimeout time.Duration
	// Resync re-plans this often even without events, to notice interface changes.
	Resync time.Duration
	// RejoinInterval is how often nodes missing from memberlist (new, or back from a
	// partition) are contacted; each attempt at an unreachable node costs a TCP connect.
	RejoinInterval time.Duration
	// API limits this speaker's requests to the API server (announcement and session status
	// writes; reads are watches). Every node runs a speaker, so the cluster-wide rate is this
	// times the node count at worst; the chart's FlowSchema puts all speakers in one priority
	// level of the API server so together they cannot starve other clients.
	API kubeclient.Limits
	// Events limits event writes, through a client and a queue of their own.
	Events kubeclient.Limits
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables it.
	MetricsAddr string
	// Log receives structured logs; default slog.Default().
	Log *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Class:          config.Class{Name: config.DefaultClassName},
		Members:        l2.DefaultMembersConfig(),
		Lease:          l2.DefaultLeaseConfig(),
		Announcer:      l2.DefaultAnnouncerConfig(),
		Forwarding:     ForwardingAuto,
		ForwardOptions: forward.DefaultOptions(),
		JoinTimeout:    3 * time.Second,
		Resync:         10 * time.Second,
		RejoinInterval: time.Second,
		KeyFilePoll:    2 * time.Second,
		API:            kubeclient.Limits{QPS: 100, Burst: 200},
		Events:         kubeclient.Limits{QPS: 20, Burst: 50},
		MetricsAddr:    ":7473",
	}
}
