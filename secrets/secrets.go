// Package secrets seals secrets at rest with AES-256-GCM (SPEC §8, §10, §12)
// and keeps them out of logs: String is a string that redacts itself when
// printed or logged, and every sealed value carries the id of the key that
// sealed it, so keys can rotate: the current key seals, the current and any
// previous key open.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

// Mask is what a secret shows instead of its value.
const Mask = "****"

// Errors callers branch on with errors.Is.
var (
	// ErrUnknownKey means the value was sealed with a key the box does not
	// hold (rotated out, or another deployment's).
	ErrUnknownKey = errors.New("sealed with an unknown key")
	// ErrCorrupt means the ciphertext failed authentication.
	ErrCorrupt = errors.New("sealed value is corrupt or was tampered with")
)

// String is a secret string. Printing or logging it shows Mask; Reveal
// returns the value. JSON encoding keeps the value (sealing needs it): types
// that hold a String and may be encoded for a client mask it themselves.
type String string

// Reveal returns the secret itself.
func (s String) Reveal() string { return string(s) }

// String redacts: fmt's %v and %s never show the value.
func (s String) String() string { return redact(s) }

// GoString redacts %#v too.
func (s String) GoString() string { return redact(s) }

// LogValue redacts the secret in slog output.
func (s String) LogValue() slog.Value { return slog.StringValue(redact(s)) }

func redact(s String) string {
	if s == "" {
		return ""
	}
	return Mask
}

// Sealed is a sealed value: the id of the sealing key and nonce||ciphertext.
type Sealed struct {
	KeyID      string
	Ciphertext []byte
}

// LogValue names the key only.
func (s Sealed) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", s.KeyID), slog.Int("bytes", len(s.Ciphertext)))
}

type key struct {
	id   string
	aead cipher.AEAD
}

// Box seals with its current key and opens with any key it holds.
type Box struct {
	current key
	byID    map[string]key
}

// NewBox builds a box sealing with current; previous keys only open values
// sealed before a rotation.
func NewBox(current []byte, previous ...[]byte) (*Box, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, fmt.Errorf("current key: %w", err)
	}
	b := &Box{current: cur, byID: map[string]key{cur.id: cur}}
	for i, raw := range previous {
		if len(raw) == 0 {
			continue
		}
		k, err := newKey(raw)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		b.byID[k.id] = k
	}
	return b, nil
}

// newKey derives the key id from the key with HMAC, so ids are stable across
// processes without storing them anywhere, and reveal nothing usable.
func newKey(raw []byte) (key, error) {
	if len(raw) != KeySize {
		return key{}, fmt.Errorf("need %d bytes, got %d", KeySize, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return key{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return key{}, err
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte("opsflow secrets key id"))
	return key{id: hex.EncodeToString(mac.Sum(nil)[:6]), aead: aead}, nil
}

// LogValue names the keys, never their bytes.
func (b *Box) LogValue() slog.Value {
	ids := make([]string, 0, len(b.byID))
	for id := range b.byID {
		ids = append(ids, id)
	}
	return slog.GroupValue(slog.String("current", b.current.id), slog.String("keys", strings.Join(ids, ",")))
}

// Seal encrypts plaintext with the current key and a random nonce.
func (b *Box) Seal(plaintext []byte) (Sealed, error) {
	nonce := make([]byte, b.current.aead.NonceSize(), b.current.aead.NonceSize()+len(plaintext)+b.current.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("nonce: %w", err)
	}
	// The key id is authenticated data: a ciphertext relabelled with another
	// key id fails to open instead of being tried under the wrong key.
	ct := b.current.aead.Seal(nonce, nonce, plaintext, []byte(b.current.id))
	return Sealed{KeyID: b.current.id, Ciphertext: ct}, nil
}

// Open decrypts a value sealed by any key the box holds.
func (b *Box) Open(s Sealed) ([]byte, error) {
	k, ok := b.byID[s.KeyID]
	if !ok {
		return nil, fmt.Errorf("key %q: %w", s.KeyID, ErrUnknownKey)
	}
	n := k.aead.NonceSize()
	if len(s.Ciphertext) < n+k.aead.Overhead() {
		return nil, ErrCorrupt
	}
	pt, err := k.aead.Open(nil, s.Ciphertext[:n], s.Ciphertext[n:], []byte(s.KeyID))
	if err != nil {
		return nil, ErrCorrupt
	}
	return pt, nil
}
