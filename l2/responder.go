package l2

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Errors that say why a link's responder cannot open; LinkFailed events wrap them.
var (
	// ErrNoInterface: the node has no interface of that name (in the speaker's network
	// namespace).
	ErrNoInterface = errors.New("no such interface")
	// ErrInterfaceDown: the interface is administratively down.
	ErrInterfaceDown = errors.New("interface is down")
	// ErrNotEthernet: the interface has no 6-byte hardware address, so no ARP or NDP
	// (a tunnel, WireGuard, a point-to-point link).
	ErrNotEthernet = errors.New("interface is not Ethernet")
)

// responder answers one link: an AF_PACKET socket bound to the interface and to the
// protocol's EtherType, with a BPF filter that passes only incoming ARP requests or
// Neighbor Solicitations, and a goroutine that reads it. The announcer's loop also writes
// gratuitous frames to it.
type responder struct {
	link Link
	a    *Announcer
	c    *linkCounters
	conn *packet.Conn
	mac  mac
	// src is the source of our Neighbor Advertisements: the interface's link-local address,
	// or, when it has none, the invalid Addr, meaning the target itself.
	src netip.Addr
	// groups holds the solicited-node memberships (NDP only); the loop owns it.
	groups groupSet
	// gbuf and gdst are the loop's buffers for gratuitous frames.
	gbuf []byte
	gdst *packet.Addr

	closing atomic.Bool
	done    chan struct{} // closed when the read goroutine ends
}

// openResponder opens link's socket (through cfg.OpenIn) and starts its read goroutine,
// which reports a failure on failed unless the loop has ended (done).
func openResponder(a *Announcer, link Link, failed chan<- readFailure, done <-chan struct{}) (*responder, error) {
	r := &responder{link: link, a: a, done: make(chan struct{}), gdst: &packet.Addr{HardwareAddr: make(net.HardwareAddr, 6)}}
	var noIPv4 bool
	err := a.openIn(func() error {
		ifi, err := net.InterfaceByName(link.Interface)
		if err != nil {
			if strings.Contains(err.Error(), "no such network interface") {
				return fmt.Errorf("%s: %w", link.Interface, ErrNoInterface)
			}
			return fmt.Errorf("looking up interface %s: %w", link.Interface, err)
		}
		if ifi.Flags&net.FlagUp == 0 {
			return fmt.Errorf("%s: %w", link.Interface, ErrInterfaceDown)
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("%s has hardware address %q: %w", link.Interface, ifi.HardwareAddr.String(), ErrNotEthernet)
		}
		r.mac = mac(ifi.HardwareAddr)
		addrs, err := ifi.Addrs()
		if err != nil {
			return fmt.Errorf("listing addresses of %s: %w", link.Interface, err)
		}
		noIPv4 = true
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				ip, _ := netip.AddrFromSlice(n.IP)
				if ip.Unmap().Is4() {
					noIPv4 = false
				}
				if ip.Is6() && ip.IsLinkLocalUnicast() && !r.src.IsValid() {
					r.src = ip
				}
			}
		}
		proto, filter := etherTypeARP, arpFilter()
		if link.Protocol == NDP {
			proto, filter = etherTypeIPv6, solicitationFilter()
			r.groups = groupSet{ifi: *ifi, openIn: a.openIn, member: map[netip.Addr]*groupConn{}}
		}
		r.conn, err = packet.Listen(ifi, packet.Raw, proto, &packet.Config{Filter: filter})
		if err != nil {
			return fmt.Errorf("opening a packet socket on %s (needs CAP_NET_RAW): %w", link.Interface, err)
		}
		if err := setReceiveBuffer(r.conn, a.cfg.ReceiveBuffer); err != nil {
			a.log.Debug("cannot set the receive buffer", "interface", link.Interface, "err", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if link.Protocol == ARP && noIPv4 {
		// arp.Dial would refuse such an interface; we do not need its address, as our
		// replies come from the owned IP.
		a.log.Info("interface has no IPv4 address; answering ARP for owned IPs anyway", "interface", link.Interface)
	}
	r.c = a.countersFor(link)
	a.mu.Lock()
	a.open[link] = r
	a.mu.Unlock()
	serve := r.serveARP
	if link.Protocol == NDP {
		serve = r.serveNDP
	}
	go func() {
		defer close(r.done)
		err := serve()
		if r.closing.Load() {
			return
		}
		select {
		case failed <- readFailure{r, fmt.Errorf("reading %s on %s: %w", link.Protocol, link.Interface, err)}:
		case <-done:
		}
	}()
	return r, nil
}

// setReceiveBuffer sets conn's receive buffer to n bytes (n <= 0: leave it), beyond
// net.core.rmem_max if the process may.
func setReceiveBuffer(conn *packet.Conn, n int) error {
	if n <= 0 {
		return nil
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// collectDrops adds the frames the kernel dropped on r's socket since the last call to
// r's counters (reading the kernel's statistics resets them). The caller holds a.mu, so
// that two calls do not interleave.
func (r *responder) collectDrops() {
	if st, err := r.conn.Stats(); err == nil {
		r.c.dropped.Add(uint64(st.Drops))
	}
}

// openIn runs open where sockets must be opened (AnnouncerConfig.OpenIn).
func (a *Announcer) openIn(open func() error) error {
	if a.cfg.OpenIn != nil {
		return a.cfg.OpenIn(open)
	}
	return open()
}

// close stops the read goroutine, closes the sockets and waits for the goroutine to end.
func (r *responder) close() {
	r.a.mu.Lock()
	r.collectDrops()
	if r.a.open[r.link] == r {
		delete(r.a.open, r.link)
	}
	r.a.mu.Unlock()
	r.closing.Store(true)
	_ = r.conn.Close()
	r.groups.close()
	<-r.done
}

// serveARP answers ARP requests for owned IPs on this interface until the socket fails.
func (r *responder) serveARP() error {
	buf := make([]byte, 256)
	out := make([]byte, 0, minFrameLen)
	dst := &packet.Addr{HardwareAddr: make(net.HardwareAddr, 6)}
	for {
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		req, err := parseARPRequest(buf[:n])
		if err != nil {
			if r.a.holdsAny() && errors.Is(err, errNotReq) {
				r.heldARP(buf[:n])
			}
			continue
		}
		r.c.requests.Add(1)
		if r.a.holdsAny() && (r.a.isHeld(req.senderIP) || r.a.isHeld(req.targetIP)) {
			r.heldARP(buf[:n])
		}
		if !r.a.answers(req.targetIP, r.link.Interface) {
			continue
		}
		if req.senderIP == req.targetIP {
			// Another host announces an owned IP: nothing to answer; someone to tell.
			r.c.conflicts.Add(1)
			r.a.log.Debug("another host announces an owned IP", "ip", req.targetIP, "mac", req.senderMAC.String(), "interface", r.link.Interface)
			continue
		}
		if req.senderIP.IsUnspecified() {
			r.c.conflicts.Add(1) // a probe: defend the address
		}
		reply := arpReplyTo(&req, r.mac)
		out = appendARP(out[:0], &reply)
		r.send(out, reply.ethDst, dst, &r.c.replies)
	}
}

// serveNDP answers Neighbor Solicitations for owned IPs on this interface until the socket
// fails.
func (r *responder) serveNDP() error {
	buf := make([]byte, 1514)
	out := make([]byte, 0, 128)
	dst := &packet.Addr{HardwareAddr: make(net.HardwareAddr, 6)}
	for {
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		ns, err := parseSolicitation(buf[:n])
		if r.a.holdsAny() {
			r.heldNDP(buf[:n], &ns, err)
		}
		if err != nil {
			continue
		}
		r.c.requests.Add(1)
		if !r.a.answers(ns.target, r.link.Interface) {
			continue
		}
		if ns.src.IsUnspecified() {
			r.c.conflicts.Add(1) // duplicate address detection: defend the address
		}
		adv := advertisementFor(&ns, r.mac, r.sourceFor(ns.target))
		out = appendAdvertisement(out[:0], &adv)
		r.send(out, adv.ethDst, dst, &r.c.replies)
	}
}

// sourceFor is the IPv6 source of advertisements for target.
func (r *responder) sourceFor(target netip.Addr) netip.Addr {
	if r.src.IsValid() {
		return r.src
	}
	return target
}

// announce sends ip's gratuitous frames: for IPv4 the gratuitous ARP request and reply
// (README.md says why both), for IPv6 an unsolicited Neighbor Advertisement. Only the
// loop calls it.
func (r *responder) announce(ip netip.Addr) {
	switch r.link.Protocol {
	case ARP:
		for _, op := range [...]uint16{arpRequest, arpReply} {
			g := gratuitousARP(op, r.mac, ip)
			r.gbuf = appendARP(r.gbuf[:0], &g)
			r.send(r.gbuf, g.ethDst, r.gdst, &r.c.gratuitous)
		}
	case NDP:
		na := unsolicitedNA(r.mac, r.sourceFor(ip), ip)
		r.gbuf = appendAdvertisement(r.gbuf[:0], &na)
		r.send(r.gbuf, na.ethDst, r.gdst, &r.c.gratuitous)
	}
	r.a.log.Debug("announced", "ip", ip, "interface", r.link.Interface)
}

// send writes frame to Ethernet address to (through addr, the caller's reusable socket
// address) and counts it in sent, or as a send error.
func (r *responder) send(frame []byte, to mac, addr *packet.Addr, sent *atomic.Uint64) {
	copy(addr.HardwareAddr, to[:])
	if _, err := r.conn.WriteTo(frame, addr); err != nil {
		r.c.sendErrors.Add(1)
		r.a.log.Debug("cannot send", "interface", r.link.Interface, "protocol", r.link.Protocol, "err", err)
		return
	}
	sent.Add(1)
}

// arpFilter passes incoming ARP requests and replies (the kernel also shows a packet socket
// the frames its host sends: those are dropped) and at most 256 bytes of each. Replies only
// matter to probes (probing.go); they are rare, since most are unicast to someone else.
func arpFilter() []bpf.RawInstruction {
	return mustAssemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 6},
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeARP, SkipTrue: 4},
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: arpRequest, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: arpReply, SkipTrue: 1},
		bpf.RetConstant{Val: 256},
		bpf.RetConstant{Val: 0},
	})
}

// solicitationFilter passes incoming IPv6 packets that are ICMPv6 Neighbor Solicitations or
// Advertisements (for probes, probing.go) with hop limit 255 and no extension header: every
// other IPv6 packet on the interface is dropped in the kernel, so the data path costs the
// responder nothing.
func solicitationFilter() []bpf.RawInstruction {
	return mustAssemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 10},
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 8},
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 6},
		bpf.LoadAbsolute{Off: ethHeaderLen + 7, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ndpHopLimit, SkipTrue: 4},
		bpf.LoadAbsolute{Off: ethHeaderLen + ipv6HeaderLen, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTypeNS, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpTypeNA, SkipTrue: 1},
		bpf.RetConstant{Val: 1514},
		bpf.RetConstant{Val: 0},
	})
}

// mustAssemble assembles a constant program; tests assemble every program, so a panic
// here is a bug caught before release.
func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(fmt.Sprintf("l2: assembling a BPF filter: %v", err))
	}
	return raw
}

// groupSet holds an NDP link's memberships of the solicited-node multicast groups of its
// owned IPs. Joining through the IPv6 stack makes the NIC accept the group's frames (the
// 33:33:ff:xx:xx:xx address enters its filter) and makes the kernel send MLD reports, so
// that switches doing MLD snooping forward the group's solicitations to this port.
// Memberships are per socket and each costs socket option memory (net.core.optmem_max,
// 20 KiB on older kernels), so a socket holds at most maxGroupsPerSocket and more are
// opened as needed; closing a socket leaves its groups.
type groupSet struct {
	ifi    net.Interface
	openIn func(func() error) error
	conns  []*groupConn
	member map[netip.Addr]*groupConn
}

// maxGroupsPerSocket keeps a socket's memberships (about 64 bytes each) well under 20 KiB.
const maxGroupsPerSocket = 200

type groupConn struct {
	c *ndp.Conn
	n int
}

// set joins the solicited-node groups of ips and leaves the others. It returns the first
// error, after trying every group.
func (g *groupSet) set(ips []netip.Addr) error {
	want := map[netip.Addr]bool{}
	for _, ip := range ips {
		want[solicitedNode(ip)] = true
	}
	var first error
	for grp, gc := range g.member {
		if want[grp] {
			continue
		}
		if err := gc.c.LeaveGroup(grp); err != nil && first == nil {
			first = fmt.Errorf("leaving %s on %s: %w", grp, g.ifi.Name, err)
		}
		gc.n--
		delete(g.member, grp)
	}
	for grp := range want {
		if g.member[grp] != nil {
			continue
		}
		if err := g.join(grp); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (g *groupSet) join(grp netip.Addr) error {
	var gc *groupConn
	for _, c := range g.conns {
		if c.n < maxGroupsPerSocket {
			gc = c
			break
		}
	}
	if gc == nil {
		var c *ndp.Conn
		err := g.openIn(func() error {
			var err error
			c, _, err = ndp.Listen(&g.ifi, ndp.Unspecified)
			if err != nil {
				return err
			}
			// The socket only holds memberships: block every ICMPv6 type, so the kernel
			// queues nothing on it.
			var f ipv6.ICMPFilter
			f.SetAll(true)
			if err := c.SetICMPFilter(&f); err != nil {
				_ = c.Close()
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("opening an ICMPv6 socket on %s to join multicast groups: %w", g.ifi.Name, err)
		}
		gc = &groupConn{c: c}
		g.conns = append(g.conns, gc)
	}
	if err := gc.c.JoinGroup(grp); err != nil {
		return fmt.Errorf("joining %s on %s: %w", grp, g.ifi.Name, err)
	}
	gc.n++
	g.member[grp] = gc
	return nil
}

func (g *groupSet) close() {
	for _, c := range g.conns {
		_ = c.c.Close()
	}
	g.conns, g.member = nil, nil
}
