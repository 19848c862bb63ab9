package v1alpha1_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestComparePools(t *testing.T) {
	at := func(name string, minute int) *v1alpha1.IPPool {
		return &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name,
			CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC))}}
	}
	pools := []*v1alpha1.IPPool{at("b", 1), at("z", 0), at("a", 1), at("c", 2)}
	slices.SortFunc(pools, v1alpha1.ComparePools)
	var got []string
	for _, p := range pools {
		got = append(got, p.Name)
	}
	// Oldest first; pools created in the same second by name.
	if diff := cmp.Diff([]string{"z", "a", "b", "c"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}
