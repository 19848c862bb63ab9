package allocator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Policy is a Service's ipFamilyPolicy. The zero value is SingleStack, the
// Kubernetes default.
type Policy uint8

// The policies.
const (
	SingleStack      Policy = iota // one address, of Families[0]
	PreferDualStack                // one address per family where available, at least one
	RequireDualStack               // one address per family, or nothing
)

func (p Policy) String() string {
	switch p {
	case SingleStack:
		return "SingleStack"
	case PreferDualStack:
		return "PreferDualStack"
	case RequireDualStack:
		return "RequireDualStack"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// Port is a Service port as far as sharing is concerned.
type Port struct {
	Protocol string // "TCP", "UDP" or "SCTP", compared as is
	Port     uint16
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Port, p.Protocol) }

func comparePorts(a, b Port) int {
	return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
}

// Request describes what a Service asks of the allocator. It is plain data;
// the controller fills it from the Service, its namespace and annotations.
type Request struct {
	Service         string            // "namespace/name", the key of the assignment
	Namespace       string            // for Pool.Namespaces
	NamespaceLabels map[string]string // for Pool.NamespaceSelector
	ServiceLabels   map[string]string // for Pool.ServiceSelector

	// IPs are requested addresses, at most one per family. When set they
	// are exactly what the Service gets (or an error), and they define its
	// families: each must be of a family in Families (if Families is set),
	// SingleStack allows one and RequireDualStack needs two.
	IPs []netip.Addr
	// Pool is a requested pool: every address must come from it.
	Pool string

	Families []Family // spec.ipFamilies, in order; the first is primary
	Policy   Policy   // spec.ipFamilyPolicy

	// Sharing. Services may share an address only with the same non-empty
	// SharingKey, no common Port, and the same backend: all with Local
	// false, or all with Local true and the same EndpointSelector.
	SharingKey       string
	Ports            []Port
	Local            bool   // externalTrafficPolicy: Local
	EndpointSelector string // canonical form of the Service's selector; used when Local
}

// share is what must be equal between Services holding the same address.
type share struct {
	key      string
	local    bool
	selector string // "" unless local
}

func shareOf(req *Request) share {
	sh := share{key: req.SharingKey, local: req.Local}
	if req.Local {
		sh.selector = req.EndpointSelector
	}
	return sh
}

// want is a validated Request. It copies what it needs rather than point
// to the Request, so that Allocate's argument stays on the stack.
type want struct {
	service, namespace, pool string
	nsLabels, svcLabels      map[string]string
	policy                   Policy
	families                 [2]Family // in order; families[1] is 0 for one family
	ips                      [2]netip.Addr
	share                    share
	ports                    []Port // sorted, without duplicates; may alias req.Ports
}

// familyList returns the families to allocate, in order.
func (w *want) familyList() []Family {
	if w.families[1] == 0 {
		return w.families[:1]
	}
	return w.families[:]
}

// ip returns the requested address of family f, if any.
func (w *want) ip(f Family) netip.Addr { return w.ips[f.index()] }

// requested reports whether addresses were requested.
func (w *want) requested() bool { return w.ips[0].IsValid() || w.ips[1].IsValid() }

// init validates req for Allocate and fills w. (An init method rather than
// a constructor keeps w, and the Request it points to, on the stack.)
func (w *want) init(req *Request) error {
	*w = want{
		service: req.Service, namespace: req.Namespace, pool: req.Pool,
		nsLabels: req.NamespaceLabels, svcLabels: req.ServiceLabels, policy: req.Policy,
		share: shareOf(req), ports: normalPorts(req.Ports),
	}
	if req.Service == "" {
		return invalid("the request names no service")
	}
	if req.Policy > RequireDualStack {
		return invalid("unknown ipFamilyPolicy %d", uint8(req.Policy))
	}
	if len(req.Families) > 2 {
		return invalid("at most 2 ipFamilies, got %d", len(req.Families))
	}
	for i, f := range req.Families {
		if !f.valid() {
			return invalid("unknown ip family %d", uint8(f))
		}
		if i == 1 && f == req.Families[0] {
			return invalid("ip family %s is listed twice", f)
		}
	}
	if err := requestedIPs(&w.ips, req.IPs); err != nil {
		return err
	}
	if len(req.IPs) == 0 {
		return w.familiesFromSpec(req)
	}
	return w.familiesFromIPs(req)
}

// requestedIPs checks ips and stores them by family.
func requestedIPs(dst *[2]netip.Addr, ips []netip.Addr) error {
	for _, ip := range ips {
		if err := checkAddr(ip); err != nil {
			return invalid("requested address: %v", err)
		}
		i := FamilyOf(ip).index()
		if dst[i].IsValid() {
			return invalid("two %s addresses requested (%s and %s)", FamilyOf(ip), dst[i], ip)
		}
		dst[i] = ip
	}
	return nil
}

func (w *want) familiesFromSpec(req *Request) error {
	switch {
	case len(req.Families) == 0:
		return invalid("the service has no ipFamilies")
	case req.Policy == SingleStack && len(req.Families) != 1:
		return invalid("SingleStack needs 1 ipFamily, got %d", len(req.Families))
	case req.Policy == RequireDualStack && len(req.Families) != 2:
		return invalid("RequireDualStack needs 2 ipFamilies, got %d", len(req.Families))
	}
	copy(w.families[:], req.Families)
	return nil
}

func (w *want) familiesFromIPs(req *Request) error {
	switch {
	case req.Policy == SingleStack && len(req.IPs) != 1:
		return invalid("SingleStack allows 1 requested address, got %d", len(req.IPs))
	case req.Policy == RequireDualStack && len(req.IPs) != 2:
		return invalid("RequireDualStack needs one requested address per family, got %d", len(req.IPs))
	}
	for _, ip := range req.IPs {
		if f := FamilyOf(ip); len(req.Families) > 0 && !slices.Contains(req.Families, f) {
			return invalid("requested address %s is %s, which is not one of the service's ipFamilies %v", ip, f, req.Families)
		}
	}
	// The order of Families, else the order of the addresses.
	order := req.Families
	if len(order) == 0 {
		order = []Family{FamilyOf(req.IPs[0]), FamilyOf(req.IPs[len(req.IPs)-1])}
	}
	n := 0
	for _, f := range order {
		if w.ip(f).IsValid() && (n == 0 || w.families[0] != f) {
			w.families[n] = f
			n++
		}
	}
	return nil
}

// normalPorts returns ports sorted and without duplicates, reusing ports
// when it already is.
func normalPorts(ports []Port) []Port {
	sorted := true
	for i := 1; i < len(ports); i++ {
		if comparePorts(ports[i-1], ports[i]) >= 0 {
			sorted = false
			break
		}
	}
	if sorted {
		return ports
	}
	ports = slices.Clone(ports)
	slices.SortFunc(ports, comparePorts)
	return slices.CompactFunc(ports, func(a, b Port) bool { return a == b })
}

// commonPort returns a port in both a and b, which are sorted.
func commonPort(a, b []Port) (Port, bool) {
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch c := comparePorts(a[i], b[j]); {
		case c == 0:
			return a[i], true
		case c < 0:
			i++
		default:
			j++
		}
	}
	return Port{}, false
}
