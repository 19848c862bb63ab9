package forward

import "testing"

// TestRulesDoNotGrowWithServices: the rule count depends on the endpoint counts in use, not on
// the number of Services; each Service adds elements only: 3 frontends, 3 x 5 endpoint slots,
// 2 masquerading frontends, 2 service IPs, and its 0.5 local endpoints (one in ten endpoints is
// on this node) in local-endpoints and hairpin: 23 on average.
func TestRulesDoNotGrowWithServices(t *testing.T) {
	small, large := Render(benchInput(10)).Stats(), Render(benchInput(1000)).Stats()
	if small.Rules != large.Rules || small.Chains != large.Chains || small.Sets != large.Sets {
		t.Errorf("10 Services: %+v; 1000 Services: %+v; want the same rules, chains and sets", small, large)
	}
	perService := float64(large.Elements-small.Elements) / 990
	if perService < 22.9 || perService > 23.1 {
		t.Errorf("%.2f elements per Service, want 23", perService)
	}
}
