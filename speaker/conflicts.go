package speaker

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/l2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Address conflicts (l2/README.md, "Probing before the first announcement"): the speaker
// asks the announcer to probe the addresses the cluster has not announced before, tells it
// which MACs are the cluster's, and turns what it finds into a Warning event on the Service,
// the ServiceAnnouncement's conflictedIPs and AddressConflict condition, and the
// ironlb_speaker_l2_address_conflicts gauge.

// maxMetaMACs is how many MACs a node publishes: its LAN-facing interfaces fit; a node with
// more (hundreds of routed pod veths) publishes the likeliest first.
const maxMetaMACs = 16

// EncodeMeta renders a node's memberlist metadata: version 2, the number of MACs, the MACs,
// then r's entries as Encode writes them (fewer fit: the worst levels are kept). It reports
// whether every entry fit.
func EncodeMeta(r Reach, macs []net.HardwareAddr) ([]byte, bool) {
	macs = macs[:min(len(macs), maxMetaMACs)]
	out := []byte{2, byte(len(macs))}
	for _, m := range macs {
		out = append(out, m[:6]...)
	}
	return r.appendEntries(out, (l2.MaxMetaSize-len(out))/reachEntrySize)
}

// DecodeMeta reads EncodeMeta's metadata, and Encode's (version 1, without MACs: a speaker
// of the previous release). Anything else reads as no reach restriction and no MACs.
func DecodeMeta(b []byte) (Reach, []net.HardwareAddr) {
	if len(b) >= 1 && b[0] == 1 {
		return DecodeReach(b), nil
	}
	if len(b) < 2 || b[0] != 2 || len(b) < 2+6*int(b[1]) {
		return nil, nil
	}
	n := int(b[1])
	macs := make([]net.HardwareAddr, n)
	for i := range n {
		macs[i] = slices.Clone(net.HardwareAddr(b[2+6*i : 8+6*i]))
	}
	return decodeEntries(b[2+6*n:]), macs
}

// nodeMACs are the MACs this node may answer ARP/NDP from, as published to the others: the
// up Ethernet interfaces that are not loopback or bridge/bond ports, devices first, then
// those with an address other than link-local, at most maxMetaMACs.
func nodeMACs(ifaces []l2.Interface) []net.HardwareAddr {
	rank := func(ifi l2.Interface) int {
		r := 0
		if ifi.Virtual {
			r += 2
		}
		if !slices.ContainsFunc(ifi.Prefixes, func(p netip.Prefix) bool { return !p.Addr().IsLinkLocalUnicast() }) {
			r++
		}
		return r
	}
	var cands []l2.Interface
	for _, ifi := range ifaces {
		if ifi.Up && !ifi.Loopback && ifi.Master == "" && len(ifi.MAC) == 6 {
			cands = append(cands, ifi)
		}
	}
	slices.SortStableFunc(cands, func(a, b l2.Interface) int { return cmp.Compare(rank(a), rank(b)) })
	var out []net.HardwareAddr
	for _, ifi := range cands {
		if len(out) < maxMetaMACs && !slices.ContainsFunc(out, func(m net.HardwareAddr) bool { return string(m) == string(ifi.MAC) }) {
			out = append(out, ifi.MAC)
		}
	}
	return out
}

// macSet is the cluster's MACs, as [6]byte keys.
type macSet map[[6]byte]bool

// ours reports whether m is one of the cluster's MACs (AnnouncerConfig.Ours).
func (s *Speaker) ours(m net.HardwareAddr) bool {
	set := s.clusterMACs.Load()
	return len(m) == 6 && set != nil && (*set)[[6]byte(m)]
}

// probeFilter returns which newly owned addresses to probe: those that no L2
// ServiceAnnouncement of the cluster (this node's of a previous run included) lists as
// announced. An address that moves between our nodes is answered at once.
func (s *Speaker) probeFilter() func(netip.Addr) bool {
	announced := map[netip.Addr]bool{}
	for _, o := range s.crdInfs[announcementsL2].GetStore().List() {
		a := o.(*v1alpha1.ServiceAnnouncement)
		if a.Mode != v1alpha1.AnnouncementL2 {
			continue
		}
		for _, ip := range a.IPs {
			if addr, err := netip.ParseAddr(ip); err == nil && !slices.Contains(a.ConflictedIPs, ip) {
				announced[addr] = true
			}
		}
	}
	return func(ip netip.Addr) bool { return !announced[ip] }
}

// addressEvent reports what probing found as events on the Services that hold the address,
// and has the next sync write the ServiceAnnouncements.
func (s *Speaker) addressEvent(ev l2.Event) {
	defer s.kick()
	if ev.Kind != l2.AddressConflict && ev.Kind != l2.ConflictResolved {
		return
	}
	if ev.Kind == l2.AddressConflict {
		s.log.Warn("address in use by another host: not announcing it", "ip", joinAddrs(ev.IPs), "mac", ev.MAC.String(), "interface", ev.Interface)
	}
	svcs, _ := s.factory.Core().V1().Services().Lister().List(labels.Everything())
	for _, svc := range svcs {
		for _, ip := range config.IngressIPs(svc) {
			switch {
			case !slices.Contains(ev.IPs, ip):
			case ev.Kind == l2.AddressConflict:
				s.recorder.Eventf(svc, corev1.EventTypeWarning, "AddressConflict",
					"node %s does not announce %s: another host (%s) answers for it on %s (%s); probing again with backoff",
					s.cfg.NodeName, ip, ev.MAC, ev.Interface, ev.Protocol)
			default:
				s.recorder.Eventf(svc, corev1.EventTypeNormal, "AddressConflictResolved",
					"node %s announces %s on %s (%s): no other host answers for it any more", s.cfg.NodeName, ip, ev.Interface, ev.Protocol)
			}
		}
	}
}

// withHolds completes this node's L2 ServiceAnnouncements with what probing says: addresses
// still being probed are left out (an object with none left is dropped), and addresses in use
// by another host are listed in conflictedIPs with an AddressConflict condition. It changes
// neither objs nor its objects (statusCache keeps them): a changed object is a copy.
func withHolds(objs []*v1alpha1.ServiceAnnouncement, held map[netip.Addr]l2.Hold) []*v1alpha1.ServiceAnnouncement {
	if len(held) == 0 {
		return objs
	}
	out := make([]*v1alpha1.ServiceAnnouncement, 0, len(objs))
	for _, o := range objs {
		if o.Mode != v1alpha1.AnnouncementL2 || !slices.ContainsFunc(o.IPs, func(s string) bool {
			ip, _ := netip.ParseAddr(s)
			_, ok := held[ip]
			return ok
		}) {
			out = append(out, o)
			continue
		}
		o = o.DeepCopy()
		var ips, msgs []string
		var since time.Time
		for _, s := range o.IPs {
			ip, _ := netip.ParseAddr(s)
			h, ok := held[ip]
			switch {
			case !ok:
				ips = append(ips, s)
			case h.Conflict:
				ips = append(ips, s)
				o.ConflictedIPs = append(o.ConflictedIPs, s)
				msgs = append(msgs, fmt.Sprintf("%s is answered by %s on %s (%s)", s, h.MAC, h.Link.Interface, h.Link.Protocol))
				if since.IsZero() || h.Since.Before(since) {
					since = h.Since
				}
			}
		}
		if len(ips) == 0 {
			continue
		}
		o.IPs = ips
		if len(msgs) > 0 {
			o.Conditions = []metav1.Condition{{
				Type: v1alpha1.AnnouncementConditionAddressConflict, Status: metav1.ConditionTrue, Reason: "AddressInUse",
				Message:            joinWords(msgs) + ": another host uses the address; this node neither answers nor announces it and probes it again with backoff",
				LastTransitionTime: metav1.NewTime(since.Truncate(time.Second)),
			}}
		}
		out = append(out, o)
	}
	return out
}

func joinWords(s []string) string {
	out := ""
	for i, w := range s {
		if i > 0 {
			out += "; "
		}
		out += w
	}
	return out
}

// sameConditions compares conditions as the writer sets them (type, status, reason, message).
func sameConditions(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message
	})
}

func joinAddrs(ips []netip.Addr) string {
	out := ""
	for i, ip := range ips {
		if i > 0 {
			out += ", "
		}
		out += ip.String()
	}
	return out
}

// linkEvent reports an interface the announcer cannot answer on as a Warning event on the
// Services whose IPs need it; the other interfaces keep working.
func (s *Speaker) linkEvent(ev l2.Event) {
	switch ev.Kind {
	case l2.LinkFailed:
		s.log.Warn("cannot answer on an interface", "interface", ev.Interface, "protocol", ev.Protocol, "ips", joinAddrs(ev.IPs), "err", ev.Err)
		svcs, _ := s.factory.Core().V1().Services().Lister().List(labels.Everything())
		for _, svc := range svcs {
			for _, ip := range config.IngressIPs(svc) {
				if slices.Contains(ev.IPs, ip) {
					s.recorder.Eventf(svc, corev1.EventTypeWarning, "InterfaceFailed", "node %s cannot answer %s for %s on %s: %v",
						s.cfg.NodeName, ev.Protocol, ip, ev.Interface, ev.Err)
				}
			}
		}
	case l2.LinkUp:
		s.log.Info("answering on an interface", "interface", ev.Interface, "protocol", ev.Protocol, "ips", joinAddrs(ev.IPs))
	case l2.AddressClaimed, l2.AddressConflict, l2.ConflictResolved:
		s.addressEvent(ev)
	}
}
