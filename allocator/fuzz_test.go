package allocator

import (
	"strings"
	"testing"
)

// FuzzParseRange checks that every accepted input round-trips through
// String, and that String is canonical.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"198.51.100.0/24", "198.51.100.7/24", "2001:db8::/64", "::/0", "0.0.0.0/0",
		"10.0.0.1-10.0.0.9", " 10.0.0.1 - 10.0.0.9 ", "10.0.0.9-10.0.0.1", "10.0.0.0-10.0.0.255",
		"2001:db8::1-2001:db8::ffff", "10.0.0.1-2001:db8::1", "203.0.113.9", "2001:db8::9",
		"fe80::1%eth0", "::ffff:10.0.0.1", "::ffff:10.0.0.0/104", "", "-", "/", "1.2.3.4/", "1.2.3.4-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			return
		}
		if !r.IsValid() {
			t.Fatalf("ParseRange(%q) = %v, which is not valid", s, r)
		}
		str := r.String()
		r2, err := ParseRange(str)
		if err != nil {
			t.Fatalf("ParseRange(%q) = %s, which does not parse: %v", s, str, err)
		}
		if r2 != r {
			t.Fatalf("ParseRange(%q) = %v, String %q parses to %v", s, r, str, r2)
		}
		if str2 := r2.String(); str2 != str {
			t.Fatalf("String() is not canonical: %q then %q", str, str2)
		}
		if r.Size().IsZero() {
			t.Fatalf("ParseRange(%q) has no address", s)
		}
	})
}

// FuzzParseAddresses checks round trips of whole lists, given as one
// comma-separated string.
func FuzzParseAddresses(f *testing.F) {
	for _, s := range []string{
		"198.51.100.0/24,2001:db8::/64", "10.0.0.0/24,10.0.0.5", "10.0.0.0/25,10.0.0.128/25",
		"10.0.0.1-10.0.0.9,10.0.0.9-10.0.0.20", "2001:db8::1,2001:db8::2,::/0", "", ",",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseAddresses(strings.Split(s, ","))
		if err != nil {
			return
		}
		strs := make([]string, len(rs))
		for i, r := range rs {
			strs[i] = r.String()
		}
		rs2, err := ParseAddresses(strs)
		if err != nil {
			t.Fatalf("ParseAddresses(%q) = %v, which does not parse again: %v", s, strs, err)
		}
		for i := range rs {
			if rs[i] != rs2[i] {
				t.Fatalf("range %d: %v became %v", i, rs[i], rs2[i])
			}
			for j := range i {
				if rs[i].Overlaps(rs[j]) {
					t.Fatalf("ParseAddresses(%q) accepted overlapping %v and %v", s, rs[j], rs[i])
				}
			}
		}
	})
}
