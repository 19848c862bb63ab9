package plugin

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// PoolUsage is one IPPool as `kubectl ironlb pools` shows it. The figures come from the
// controller's allocator restored from the Services' status, so they are what the controller
// counts (an address in two overlapping pools counts for the older).
type PoolUsage struct {
	Name       string `json:"name"`
	AutoAssign bool   `json:"autoAssign"`
	// State is Ready, or why the pool is not used (its Ready condition's reason, or Invalid /
	// Overlap / Deleting as the model finds it).
	State    string        `json:"state"`
	Message  string        `json:"message,omitempty"`
	Families []FamilyUsage `json:"families,omitempty"`
	Holders  []Holder      `json:"holders,omitempty"`
	// Reserved are the pool's addresses the controller never allocates (nodes', API server's).
	Reserved []Reserved `json:"reserved,omitempty"`
}

// Reserved is an address no Service may take, and why.
type Reserved struct {
	IP  string `json:"ip"`
	Why string `json:"why"`
}

// FamilyUsage counts one family of a pool; decimal strings, as IPv6 counts exceed int64.
type FamilyUsage struct {
	Family    string `json:"family"`
	Total     string `json:"total"`
	Assigned  string `json:"assigned"`
	Available string `json:"available"`
}

// Holder is one held address and the Services holding it (several when shared), by name.
type Holder struct {
	IP       string   `json:"ip"`
	Services []string `json:"services"`
}

// Pools reports every IPPool, by name.
func Pools(st *State) []PoolUsage {
	m := newModel(st)
	stats := map[string][]FamilyUsage{}
	for _, s := range m.alloc.Stats() {
		stats[s.Pool] = append(stats[s.Pool], FamilyUsage{Family: s.Family.String(), Total: s.Total.String(),
			Assigned: s.Assigned.String(), Available: s.Available.String()})
	}
	holders := map[string][]Holder{}
	for _, svc := range m.sortedServices() {
		as, ok := m.alloc.Assignment(svc.Namespace + "/" + svc.Name)
		if !ok {
			continue
		}
		for _, ip := range as.IPs {
			pool := ip.Pool
			if pool == "" {
				if p := st.poolOf(ip.Addr); p != nil {
					pool = p.Name // a deleting pool's address
				}
			}
			hs := holders[pool]
			i := slices.IndexFunc(hs, func(h Holder) bool { return h.IP == ip.Addr.String() })
			if i < 0 {
				hs = append(hs, Holder{IP: ip.Addr.String()})
				i = len(hs) - 1
			}
			hs[i].Services = append(hs[i].Services, as.Service)
			holders[pool] = hs
		}
	}
	var out []PoolUsage
	for _, name := range poolNames(st) {
		p := poolNamed(st, name)
		u := PoolUsage{Name: name, AutoAssign: p.Spec.AutoAssign == nil || *p.Spec.AutoAssign, State: "Ready",
			Families: stats[name], Holders: holders[name]}
		switch {
		case p.DeletionTimestamp != nil:
			u.State, u.Message = "Deleting", "no new addresses; deleted once no Service holds one"
		case m.invalid[name] != nil:
			u.State, u.Message = "Invalid", m.invalid[name].Error()
		case m.overlapOf(name) != "":
			u.State, u.Message = "Overlap", "not used for allocation: overlaps the older pool "+m.overlapOf(name)
		default:
			if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.IPPoolReady); c != nil && c.Status != "True" {
				u.State, u.Message = c.Reason, c.Message
			}
		}
		slices.SortFunc(u.Holders, func(a, b Holder) int { return compareIPs(a.IP, b.IP) })
		for _, h := range u.Holders {
			slices.Sort(h.Services)
		}
		if ranges, err := allocator.ParseAddresses(p.Spec.Addresses); err == nil {
			for ip, why := range m.alloc.Reserved() {
				if slices.ContainsFunc(ranges, func(r allocator.Range) bool { return r.Contains(ip) }) {
					u.Reserved = append(u.Reserved, Reserved{IP: ip.String(), Why: why})
				}
			}
			slices.SortFunc(u.Reserved, func(a, b Reserved) int { return compareIPs(a.IP, b.IP) })
		}
		out = append(out, u)
	}
	if hs := holders[""]; len(hs) > 0 {
		for _, h := range hs {
			slices.Sort(h.Services)
		}
		out = append(out, PoolUsage{Name: "(no pool)", State: "Outside", Message: "addresses held outside every pool", Holders: hs})
	}
	return out
}

// WritePools writes the pools report: one line per pool and family, then the holders.
func WritePools(w io.Writer, pools []PoolUsage) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tFAMILY\tTOTAL\tASSIGNED\tAVAILABLE\tAUTO-ASSIGN\tSTATE")
	for _, p := range pools {
		state := p.State
		if p.Message != "" && p.State != "Ready" {
			state += ": " + p.Message
		}
		auto := fmt.Sprint(p.AutoAssign)
		if p.State == "Outside" {
			auto = "-"
		}
		if len(p.Families) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t%s\t%s\n", p.Name, auto, state)
		}
		for _, f := range p.Families {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, f.Family, f.Total, f.Assigned, f.Available, auto, state)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tIP\tHELD BY")
	n := 0
	for _, p := range pools {
		for _, h := range p.Holders {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, h.IP, strings.Join(h.Services, ", "))
			n++
		}
		for _, r := range p.Reserved {
			fmt.Fprintf(tw, "%s\t%s\treserved: %s\n", p.Name, r.IP, r.Why)
		}
	}
	if n == 0 {
		fmt.Fprintln(tw, "-\t-\tno Service holds an address")
	}
	return tw.Flush()
}

// WriteWhy writes an explanation in words.
func WriteWhy(w io.Writer, ex Explanation) error {
	head := fmt.Sprintf("Service %s/%s: ", ex.Namespace, ex.Name)
	switch ex.Verdict {
	case VerdictServed:
		head += "served: " + strings.Join(ex.IPs, ", ") + " allocated and announced; nothing to change."
	case VerdictPartlyServed:
		head += "partly served (" + strings.Join(ex.IPs, ", ") + "):"
	case VerdictPending:
		head += "pending, no external IP:"
	case VerdictNotOurs:
		head += "not handled by ironlb:"
	}
	fmt.Fprintln(w, head)
	for _, f := range ex.Findings {
		fmt.Fprintf(w, "  - %s\n", f.Problem)
		if f.Fix != "" {
			fmt.Fprintf(w, "    fix: %s\n", f.Fix)
		}
	}
	return nil
}
