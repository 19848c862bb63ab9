package speaker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/l2"
)

func TestReachEncoding(t *testing.T) {
	r := Reach{reachKeyOf("lan", netip.MustParseAddr("198.51.100.1")): ReachNone, reachKeyOf("lan", netip.MustParseAddr("2001:db8::1")): ReachOffSubnet}
	meta, all := r.Encode()
	if !all || len(meta) > l2.MaxMetaSize {
		t.Fatalf("Encode: %d bytes, all %v", len(meta), all)
	}
	if diff := cmp.Diff(r, DecodeReach(meta)); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if reachKeyOf("lan", netip.MustParseAddr("198.51.100.1")) == reachKeyOf("lan", netip.MustParseAddr("2001:db8::1")) {
		t.Error("the families of a pool share a key")
	}

	// Too many to fit: the worst levels are kept, and the rest read as full reach.
	big := Reach{}
	for i := range 150 {
		lvl := ReachOffSubnet
		if i%3 == 0 {
			lvl = ReachNone
		}
		big[ReachKey(i)] = lvl
	}
	meta, all = big.Encode()
	if all || len(meta) > l2.MaxMetaSize {
		t.Fatalf("Encode of 150 entries: %d bytes, all %v", len(meta), all)
	}
	got := DecodeReach(meta)
	for k, lvl := range big {
		if lvl == ReachNone && got[k] != ReachNone {
			t.Errorf("key %d: level %d dropped, want the worst levels kept", k, lvl)
		}
	}
	for _, garbage := range [][]byte{nil, {}, {2, 0, 0, 0, 0, 0}, {1, 0, 0}} {
		if got := DecodeReach(garbage); len(got) != 0 {
			t.Errorf("DecodeReach(%v) = %v, want empty", garbage, got)
		}
	}
}
