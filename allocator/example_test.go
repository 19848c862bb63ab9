package allocator_test

import (
	"fmt"
	"log"
	"net/netip"

	"github.com/ironlb/ironlb/allocator"
)

// The controller's use of the allocator: pools, then the addresses Services
// already have, then new allocations.
func Example() {
	web, err := allocator.ParseAddresses([]string{"198.51.100.200-198.51.100.250", "2001:db8::/64"})
	if err != nil {
		log.Fatal(err)
	}
	a := allocator.New()
	a.SetPools([]allocator.Pool{{Name: "web", Ranges: web, AutoAssign: true, AvoidBuggyIPs: true}})

	// At start-up, before any Allocate: what the Services' status shows.
	a.Restore(allocator.Request{Service: "shop/api"}, []netip.Addr{netip.MustParseAddr("198.51.100.200")})

	as, err := a.Allocate(allocator.Request{
		Service:   "shop/web",
		Namespace: "shop",
		Families:  []allocator.Family{allocator.IPv4, allocator.IPv6},
		Policy:    allocator.RequireDualStack,
	})
	fmt.Println(as.IPs, err)

	_, err = a.Allocate(allocator.Request{
		Service:   "shop/db",
		Namespace: "shop",
		Families:  []allocator.Family{allocator.IPv4},
		IPs:       []netip.Addr{netip.MustParseAddr("198.51.100.200")},
	})
	fmt.Printf("%s: %v\n", allocator.ReasonOf(err), err)

	for _, st := range a.Stats() {
		fmt.Println(st.Pool, st.Family, st.Total, st.Assigned, st.Available)
	}
	// Output:
	// [{198.51.100.201 web} {2001:db8:: web}] <nil>
	// RequestedIPUnavailable: 198.51.100.200 is in use by shop/api (neither has a sharing key)
	// web IPv4 51 2 49
	// web IPv6 18446744073709551616 1 18446744073709551615
}

// Services with the same sharing key and distinct ports share an address.
func ExampleAllocator_Allocate_sharing() {
	r, _ := allocator.ParseRange("203.0.113.0/24")
	a := allocator.New()
	a.SetPools([]allocator.Pool{{Name: "bgp", Ranges: []allocator.Range{r}, AutoAssign: true}})
	for _, svc := range []struct {
		name string
		port allocator.Port
	}{
		{"dns/tcp", allocator.Port{Protocol: "TCP", Port: 53}},
		{"dns/udp", allocator.Port{Protocol: "UDP", Port: 53}},
		{"dns/udp-again", allocator.Port{Protocol: "UDP", Port: 53}},
	} {
		as, _ := a.Allocate(allocator.Request{
			Service:    svc.name,
			Families:   []allocator.Family{allocator.IPv4},
			SharingKey: "dns",
			Ports:      []allocator.Port{svc.port},
		})
		fmt.Println(svc.name, as.Addrs())
	}
	fmt.Println(a.Holders(netip.MustParseAddr("203.0.113.0")))
	// Output:
	// dns/tcp [203.0.113.0]
	// dns/udp [203.0.113.0]
	// dns/udp-again [203.0.113.1]
	// [dns/tcp dns/udp]
}

// Replacing the pools never drops an address; it reports those left outside.
func ExampleAllocator_SetPools() {
	wide, _ := allocator.ParseAddresses([]string{"198.51.100.0/24"})
	narrow, _ := allocator.ParseAddresses([]string{"198.51.100.0/25"})
	a := allocator.New()
	a.SetPools([]allocator.Pool{{Name: "lan", Ranges: wide, AutoAssign: true}})
	a.Allocate(allocator.Request{Service: "ns/a", Families: []allocator.Family{allocator.IPv4},
		IPs: []netip.Addr{netip.MustParseAddr("198.51.100.200")}})

	rep := a.SetPools([]allocator.Pool{
		{Name: "lan", Ranges: narrow, AutoAssign: true},
		{Name: "late", Ranges: narrow},
	})
	fmt.Printf("%+v\n", rep.Overlaps)
	fmt.Printf("%+v\n", rep.Outside)
	as, _ := a.Assignment("ns/a")
	fmt.Printf("%+v\n", as.IPs)
	// Output:
	// [{Pool:late With:lan Range:198.51.100.0/25}]
	// [{Addr:198.51.100.200 Pool:lan Services:[ns/a]}]
	// [{Addr:198.51.100.200 Pool:}]
}
