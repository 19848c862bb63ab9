package speaker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ironlb/ironlb/l2"
	"github.com/prometheus/client_golang/prometheus"
)

// The key file's changes reach a running memberlist's keyring; content it refuses keeps the
// keys in use, is logged once, and shows in the metrics until the file is fixed.
func TestKeyFileReload(t *testing.T) {
	a, b := "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	// write replaces the file as the kubelet updates a Secret volume: a new file renamed over.
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path+".new", []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	write(a + "\n")
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.MembersKeyFile = path
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	w, err := newKeyWatcher(&cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Members.SecretKey) != a || len(cfg.Members.ExtraKeys) != 0 {
		t.Fatalf("keys at start %q %q, want the file's", cfg.Members.SecretKey, cfg.Members.ExtraKeys)
	}
	mcfg := cfg.Members
	mcfg.NodeName, mcfg.BindAddr, mcfg.BindPort = "node1", netip.MustParseAddr("127.0.0.1"), 0
	m := l2.NewMembers(mcfg)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Leave(0) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.every = time.Hour // the test polls itself
	go w.run(ctx, m)
	for w.members.Load() == nil {
		time.Sleep(time.Millisecond)
	}

	fp := func(k string) string { return l2.KeyFingerprint([]byte(k)) }
	for _, step := range []struct {
		name, content string
		primary       string
		keys          int
		rejected      int
		log           string // in the log after the step
	}{
		{"at start", "", fp(a), 1, 0, ""},
		{"accept a new key", a + "\n" + b + "\n", fp(a), 2, 0, "memberlist keys reloaded"},
		{"encrypt with it", b + "\n" + a + "\n", fp(b), 2, 0, "memberlist keys reloaded"},
		{"a bad line is refused, the keys stay", b + "\nshort\n", fp(b), 2, 1, "line 2"},
		{"an empty file is refused", "\n", fp(b), 2, 1, "none given"},
		{"the old key goes", b + "\n", fp(b), 1, 0, "memberlist keys reloaded"},
		{"a missing file keeps the keys", "-", fp(b), 1, 1, "no such file"},
		{"back", b + "\n", fp(b), 1, 0, ""},
	} {
		logs.Reset()
		switch step.content {
		case "":
		case "-":
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		default:
			write(step.content)
		}
		w.poll(m)
		w.poll(m) // unchanged: nothing more to do or log
		if got := m.Keys(); got != (l2.KeyState{Primary: step.primary, Count: step.keys}) {
			t.Errorf("%s: keyring %+v, want primary %s and %d keys", step.name, got, step.primary, step.keys)
		}
		want := map[string]float64{
			"ironlb_speaker_memberlist_key_file_rejected":                           float64(step.rejected),
			fmt.Sprintf("ironlb_speaker_memberlist_keys{primary=%s}", step.primary): float64(step.keys),
			"ironlb_speaker_memberlist_members{state=alive}":                        1,
			"ironlb_speaker_memberlist_members{state=suspect}":                      0,
		}
		if diff := cmp.Diff(want, gathered(t, reg)); diff != "" {
			t.Errorf("%s: metrics (-want +got):\n%s", step.name, diff)
		}
		if n := strings.Count(logs.String(), "\n"); !strings.Contains(logs.String(), step.log) || n > 1 {
			t.Errorf("%s: log %q, want one line with %q", step.name, logs.String(), step.log)
		}
		if strings.Contains(logs.String(), a) || strings.Contains(logs.String(), b) {
			t.Errorf("%s: key material in the log %q", step.name, logs.String())
		}
	}
}

// gathered returns the values reg holds, by name{label=value,...}.
func gathered(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			out[name] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestKeyFileBadAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte("0123456789abcdef0123456789abcdef\nshort\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.MembersKeyFile = path
	cfg.Log = slog.New(slog.DiscardHandler)
	if _, err := newKeyWatcher(&cfg, prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad key file at start: %v, want an error naming the file and line 2", err)
	}
}
