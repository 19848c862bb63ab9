package l2

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// KeyState is what a member's keyring holds, without key material: a fingerprint of the key
// that encrypts (KeyFingerprint) and how many keys it accepts. Operators compare it across the
// speakers to see when every node has taken a step of a rotation.
type KeyState struct {
	Primary string // KeyFingerprint of the key that encrypts; empty without encryption
	Count   int    // keys accepted, the primary included
}

// KeyFingerprint is the first 8 hexadecimal digits of the key's SHA-256: enough to tell keys
// apart in a rotation, and 32 bits of a hash say nothing useful about a 128-bit or longer key.
// For a key given as 16, 24 or 32 characters: `printf %s "$KEY" | sha256sum | cut -c1-8`.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// Keys returns what this member's keyring holds.
func (m *Members) Keys() KeyState {
	m.mu.Lock()
	kr := m.keyring
	m.mu.Unlock()
	if kr == nil {
		return KeyState{}
	}
	keys := kr.GetKeys()
	if len(keys) == 0 {
		return KeyState{}
	}
	return KeyState{Primary: KeyFingerprint(keys[0]), Count: len(keys)}
}

// SetKeys makes keys this member's keyring while memberlist runs: keys[0] encrypts, every key
// decrypts (as MembersConfig.SecretKey and ExtraKeys at start). It needs encryption on from the
// start: memberlist cannot switch it on or off while running, and a node that did would not
// understand the others. On an error the keyring is unchanged.
func (m *Members) SetKeys(keys [][]byte) error {
	m.mu.Lock()
	kr := m.keyring
	m.mu.Unlock()
	if kr == nil {
		return errors.New("memberlist keys: gossip encryption was off at start; turning it on needs a restart of every speaker")
	}
	return setKeyring(kr, keys)
}

// setKeyring changes kr to hold exactly keys, with keys[0] primary, in the order that never
// leaves the node unable to read a peer: first it accepts the new keys, then it encrypts with
// the new primary, and only then does it drop the keys no longer listed. Every key is checked
// before kr changes.
func setKeyring(kr *memberlist.Keyring, keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("memberlist keys: none given")
	}
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("memberlist key %d: %w", i+1, err)
		}
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil { // a no-op for a key already held
			return fmt.Errorf("adding a memberlist key: %w", err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return fmt.Errorf("encrypting with the new memberlist key: %w", err)
	}
	// RemoveKey shifts the keys after the removed one in place, unlocked: a packet being
	// decrypted at that moment may skip the key that moved, and be dropped once (memberlist
	// retries). In a rotation the key removed is the last one, and nothing moves.
	for _, held := range slices.Clone(kr.GetKeys()) {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, held) }) {
			if err := kr.RemoveKey(held); err != nil {
				return fmt.Errorf("removing a memberlist key: %w", err)
			}
		}
	}
	return nil
}

// Counts returns how many members (this one included) memberlist holds alive and how many
// suspect: a suspect member has missed probes and is declared dead unless it refutes in time.
func (m *Members) Counts() (alive, suspect int) {
	m.mu.Lock()
	ml := m.ml
	m.mu.Unlock()
	if ml == nil {
		return 1, 0
	}
	for _, n := range ml.Members() {
		if n.State == memberlist.StateSuspect {
			suspect++
		} else {
			alive++
		}
	}
	return alive, suspect
}
