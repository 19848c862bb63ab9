package speaker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironlb/ironlb/l2"
	"github.com/prometheus/client_golang/prometheus"
)

// keyWatcher follows the memberlist key file (Config.MembersKeyFile, the chart's mounted
// Secret) and applies a change to memberlist's keyring live, so a key rotation restarts no
// speaker and moves no address. The kubelet updates a Secret volume by swapping a symlink, so
// the file's content changes in place within the kubelet's sync period; the watcher reads it
// every Config.KeyFilePoll. Content that does not parse, or that the keyring refuses, is logged
// and the keys in use stay. The metrics tell an operator what each speaker holds.
type keyWatcher struct {
	path    string
	every   time.Duration
	log     *slog.Logger
	members atomic.Pointer[l2.Members] // set by run

	mu       sync.Mutex
	last     []byte // the content last read
	lastOK   bool   // last was applied (else refused)
	lastErr  string // the read error last logged
	rejected bool   // the file is unreadable or its content refused: the previous keys stay
}

var (
	memberlistKeys = prometheus.NewDesc("ironlb_speaker_memberlist_keys",
		"Gossip keys this speaker accepts, labelled with a fingerprint of the one it encrypts with (the first 8 hex digits of its SHA-256; empty: no encryption). Every speaker shows the same before a key rotation's next step.",
		[]string{"primary"}, nil)
	memberlistKeyFileRejected = prometheus.NewDesc("ironlb_speaker_memberlist_key_file_rejected",
		"1 while the memberlist key file cannot be read or holds content this speaker refused (it logs why and keeps the keys it has).", nil, nil)
	memberlistMembers = prometheus.NewDesc("ironlb_speaker_memberlist_members",
		"Members (this one included) memberlist holds, by state: alive, or suspect (missed probes; declared dead unless it refutes).",
		[]string{"state"}, nil)
)

// newKeyWatcher reads cfg.MembersKeyFile, if set, into cfg.Members' keys (a bad file fails
// the start) and registers the memberlist metrics.
func newKeyWatcher(cfg *Config, reg prometheus.Registerer) (*keyWatcher, error) {
	w := &keyWatcher{path: cfg.MembersKeyFile, every: cfg.KeyFilePoll, log: cfg.Log}
	if w.path != "" {
		raw, err := os.ReadFile(w.path)
		if err != nil {
			return nil, fmt.Errorf("memberlist key file: %w", err)
		}
		keys, err := w.parse(raw)
		if err != nil {
			return nil, err
		}
		w.last, w.lastOK = raw, true
		cfg.Members.SecretKey, cfg.Members.ExtraKeys = keys[0], keys[1:]
	}
	if err := reg.Register(w); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	return w, nil
}

// parse reads raw as the key file's content, one key per line.
func (w *keyWatcher) parse(raw []byte) ([][]byte, error) {
	keys, err := l2.KeysFromString(string(raw))
	if err != nil {
		return nil, fmt.Errorf("memberlist key file %s: %w", w.path, err)
	}
	return keys, nil
}

// run reports m's keys and members in the metrics and, with a key file, applies its changes
// to m until ctx ends.
func (w *keyWatcher) run(ctx context.Context, m *l2.Members) {
	w.members.Store(m)
	if w.path == "" || w.every <= 0 {
		return
	}
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.poll(m)
		}
	}
}

// poll reads the key file and applies it to m if its content changed.
func (w *keyWatcher) poll(m *l2.Members) {
	w.mu.Lock()
	defer w.mu.Unlock()
	raw, err := os.ReadFile(w.path)
	if err != nil { // log each new error once
		if msg := err.Error(); msg != w.lastErr {
			w.log.Error("reading the memberlist key file; keeping the keys in use", "err", err)
			w.lastErr = msg
		}
		w.rejected = true
		return
	}
	w.lastErr = ""
	if bytes.Equal(raw, w.last) {
		w.rejected = !w.lastOK
		return
	}
	w.last = raw
	before := m.Keys()
	keys, err := w.parse(raw)
	if err == nil {
		err = m.SetKeys(keys)
	}
	w.lastOK = err == nil
	if err != nil {
		w.log.Error("memberlist key file changed to content this speaker refuses; keeping the keys in use", "err", err,
			"primary", before.Primary, "keys", before.Count)
		w.rejected = true
		return
	}
	w.rejected = false
	after := m.Keys()
	w.log.Info("memberlist keys reloaded", "primary", after.Primary, "keys", after.Count,
		"previousPrimary", before.Primary, "previousKeys", before.Count)
}

func (w *keyWatcher) Describe(ch chan<- *prometheus.Desc) {
	ch <- memberlistKeys
	ch <- memberlistKeyFileRejected
	ch <- memberlistMembers
}

func (w *keyWatcher) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	rejected := 0.0
	if w.rejected {
		rejected = 1
	}
	w.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(memberlistKeyFileRejected, prometheus.GaugeValue, rejected)
	m := w.members.Load()
	if m == nil { // not started yet
		return
	}
	k := m.Keys()
	ch <- prometheus.MustNewConstMetric(memberlistKeys, prometheus.GaugeValue, float64(k.Count), k.Primary)
	alive, suspect := m.Counts()
	ch <- prometheus.MustNewConstMetric(memberlistMembers, prometheus.GaugeValue, float64(alive), "alive")
	ch <- prometheus.MustNewConstMetric(memberlistMembers, prometheus.GaugeValue, float64(suspect), "suspect")
}
