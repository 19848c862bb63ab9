package l2

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// memberlist dials from its own goroutines, so the test runs wholly inside a network namespace
// of its own: the test binary re-executes itself there (ilbt-l2-members), with three addresses
// from 198.51.100.0/24 on a dummy link.
const membersNS = "ilbt-l2-members"

// reexecInMembersNS runs the calling test again inside the namespace and reports true in the
// outer process, whose verdict is then the inner run's; inside, it reports false.
func reexecInMembersNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv("IRONLB_IN_NETNS") == membersNS {
		return false
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (a network namespace); CI runs it as root")
	}
	_ = exec.Command("ip", "netns", "del", membersNS).Run() // a crashed run's leftover
	setup := [][]string{
		{"ip", "netns", "add", membersNS},
		{"ip", "-n", membersNS, "link", "set", "lo", "up"},
		{"ip", "-n", membersNS, "addr", "add", "198.51.100.1/32", "dev", "lo"},
		{"ip", "-n", membersNS, "addr", "add", "198.51.100.2/32", "dev", "lo"},
		{"ip", "-n", membersNS, "addr", "add", "198.51.100.3/32", "dev", "lo"},
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", membersNS).Run() })
	for _, argv := range setup {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", membersNS, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), "IRONLB_IN_NETNS="+membersNS)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Log(out.String())
	if err != nil {
		t.Fatalf("in %s: %v", membersNS, err)
	}
	return true
}

func startMember(t *testing.T, i int, key []byte) *Members {
	t.Helper()
	cfg := DefaultMembersConfig()
	cfg.NodeName = fmt.Sprintf("node%d", i)
	cfg.BindAddr = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
	cfg.SecretKey = key
	m := NewMembers(cfg)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Leave(0) })
	return m
}

func waitAlive(t *testing.T, m *Members, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if len(m.Alive()) == want {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s sees %v alive, want %d members within %v", m.cfg.NodeName, m.Alive(), want, within)
	return 0
}

func TestMembersDetectDeathAndLeave(t *testing.T) {
	if reexecInMembersNS(t) {
		return
	}
	key := bytes.Repeat([]byte{7}, 32)
	m1, m2, m3 := startMember(t, 1, key), startMember(t, 2, key), startMember(t, 3, key)
	for _, m := range []*Members{m2, m3} {
		if n, err := m.Join([]netip.Addr{m1.cfg.BindAddr}); err != nil || n != 1 {
			t.Fatalf("join: %d, %v", n, err)
		}
	}
	waitAlive(t, m1, 3, 5*time.Second)

	// A graceful leave reaches the others at gossip speed.
	if err := m3.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("leave noticed after %v", waitAlive(t, m1, 2, 2*time.Second))

	// A member that dies without leaving (Shutdown only, like SIGKILL) is detected by probes.
	m2.mu.Lock()
	ml := m2.ml
	m2.ml = nil
	m2.mu.Unlock()
	if err := ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	took := waitAlive(t, m1, 1, 5*time.Second)
	t.Logf("death detected after %v", took)
	if took > 2*time.Second {
		t.Errorf("detection took %v; the default tuning should detect a dead node well under 2 s", took)
	}
}

func TestMembersWrongKeyCannotJoin(t *testing.T) {
	if reexecInMembersNS(t) {
		return
	}
	m1 := startMember(t, 1, bytes.Repeat([]byte{1}, 32))
	m2 := startMember(t, 2, bytes.Repeat([]byte{2}, 32))
	if n, err := m2.Join([]netip.Addr{m1.cfg.BindAddr}); err == nil || n != 0 {
		t.Fatalf("joined with a wrong key: %d, %v", n, err)
	}
	if got := m1.Alive(); len(got) != 1 {
		t.Fatalf("m1 sees %v", got)
	}
}

func TestKeyFromString(t *testing.T) {
	raw := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, in string
		want     int // key length, 0 for an error
	}{
		{"32 characters are the key itself, even when they look like hex", raw, 32},
		{"hex of 32 bytes", fmt.Sprintf("%x", raw), 32},
		{"base64 of 32 bytes", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", 32},
		{"surrounding white space (a file's newline)", raw + "\n", 32},
		{"too short", "short", 0},
		{"hex of 10 bytes", "00112233445566778899", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := KeyFromString(tt.in)
			if tt.want == 0 {
				if err == nil {
					t.Fatalf("key %q accepted", k)
				}
				return
			}
			if err != nil || len(k) != tt.want {
				t.Fatalf("got %d bytes, %v; want %d", len(k), err, tt.want)
			}
		})
	}
}

// A member's metadata reaches the others, and a change of it wakes them (Changed).
func TestMembersPublishMetadata(t *testing.T) {
	if reexecInMembersNS(t) {
		return
	}
	key := bytes.Repeat([]byte{7}, 32)
	m1, m2 := startMember(t, 1, key), startMember(t, 2, key)
	if n, err := m2.Join([]netip.Addr{m1.cfg.BindAddr}); err != nil || n != 1 {
		t.Fatalf("join: %d, %v", n, err)
	}
	waitAlive(t, m2, 2, 5*time.Second)
	for _, meta := range []string{"first", "second"} {
		for len(m2.Changed()) > 0 {
			<-m2.Changed()
		}
		if err := m1.SetMeta([]byte(meta)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-m2.Changed():
		case <-time.After(5 * time.Second):
			t.Fatalf("metadata %q: node2 was not told of a change within 5 s", meta)
		}
		deadline := time.Now().Add(5 * time.Second)
		for string(m2.Metas()["node1"]) != meta {
			if time.Now().After(deadline) {
				t.Fatalf("node2 sees node1's metadata %q, want %q", m2.Metas()["node1"], meta)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := string(m1.Metas()["node1"]); got != meta {
			t.Errorf("node1 sees its own metadata %q, want %q", got, meta)
		}
	}
	if err := m1.SetMeta(make([]byte, MaxMetaSize+1)); err == nil {
		t.Error("metadata over the limit accepted")
	}
}

// A key rotation in three rollouts never splits the members: (1) every node also accepts the
// new key, (2) every node encrypts with the new key and still accepts the old one, (3) the old
// key goes. At each step a node already rolled out and one not yet see each other. Skipping
// step 1 splits them, which is why it exists.
func TestMembersKeyRotation(t *testing.T) {
	if reexecInMembersNS(t) {
		return
	}
	old, next := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	type keys struct {
		primary []byte
		extra   [][]byte
	}
	start := func(i int, k keys) *Members {
		t.Helper()
		cfg := DefaultMembersConfig()
		cfg.NodeName = fmt.Sprintf("node%d", i)
		cfg.BindAddr = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		cfg.SecretKey, cfg.ExtraKeys = k.primary, k.extra
		m := NewMembers(cfg)
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, step := range []struct {
		name          string
		before, after keys
		split         bool
	}{
		{"1: accept the new key", keys{old, nil}, keys{old, [][]byte{next}}, false},
		{"2: encrypt with the new key", keys{old, [][]byte{next}}, keys{next, [][]byte{old}}, false},
		{"3: drop the old key", keys{next, [][]byte{old}}, keys{next, nil}, false},
		{"step 1 skipped: split", keys{old, nil}, keys{next, [][]byte{old}}, true},
	} {
		t.Run(step.name, func(t *testing.T) {
			m1, m2 := start(1, step.before), start(2, step.after)
			defer func() { _ = m1.Leave(0); _ = m2.Leave(0) }()
			n, err := m2.Join([]netip.Addr{m1.cfg.BindAddr})
			if step.split {
				if err == nil || n != 0 {
					t.Errorf("joined across incompatible keys: %d, %v", n, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("join: %v", err)
			}
			waitAlive(t, m1, 2, 5*time.Second)
			waitAlive(t, m2, 2, 5*time.Second)
			// They stay together through a second of probes (each decrypts the other's).
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if len(m1.Alive()) != 2 || len(m2.Alive()) != 2 {
					t.Fatalf("split: %v / %v", m1.Alive(), m2.Alive())
				}
			}
		})
	}
}

func TestKeysFromString(t *testing.T) {
	a, b := "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	keys, err := KeysFromString(a + "\n\n" + b + "\n")
	if err != nil || len(keys) != 2 || string(keys[0]) != a || string(keys[1]) != b {
		t.Fatalf("KeysFromString: %q, %v; want the two keys in order", keys, err)
	}
	if _, err := KeysFromString(a + "\nshort\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad second key: %v, want an error naming line 2", err)
	}
	if _, err := KeysFromString(" \n"); err == nil {
		t.Error("no key accepted")
	}
}
