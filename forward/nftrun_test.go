package forward

import (
	"testing"

	"sigs.k8s.io/knftables"
)

func TestJoinElementAdds(t *testing.T) {
	in := `add table inet ironlb
add element inet ironlb m { 1 . 2 : goto x }
add element inet ironlb m { 3 . 4 comment "a/b:c" : goto y }
add element inet ironlb s { 5 }
delete element inet ironlb s { 6 }
add element inet ironlb s { 7 }
add element inet ironlb s { 8 }
add rule inet ironlb c ip daddr { 1.2.3.4 } accept
`
	want := `add table inet ironlb
add element inet ironlb m { 1 . 2 : goto x, 3 . 4 comment "a/b:c" : goto y }
add element inet ironlb s { 5 }
delete element inet ironlb s { 6 }
add element inet ironlb s { 7, 8 }
add rule inet ironlb c ip daddr { 1.2.3.4 } accept
`
	if got := joinElementAdds(in); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := joinElementAdds(""); got != "" {
		t.Errorf("empty input gave %q", got)
	}
}

// TestFullTextMatchesTransaction: the full sync text written directly is what knftables
// writes for the same operations, joined.
func TestFullTextMatchesTransaction(t *testing.T) {
	for name, in := range scenarios {
		t.Run(name, func(t *testing.T) {
			rs := Render(in())
			fake := knftables.NewFake(TableFamily, TableName)
			tx := fake.NewTransaction()
			rs.writeFull(tx)
			got, ops, _ := rs.fullText(fake.NewTransaction())
			if want := joinElementAdds(tx.String()); got != want {
				t.Errorf("fullText:\n%s\nwant:\n%s", got, want)
			}
			if ops != tx.NumOperations() {
				t.Errorf("fullText counts %d operations, the transaction has %d", ops, tx.NumOperations())
			}
		})
	}
}
