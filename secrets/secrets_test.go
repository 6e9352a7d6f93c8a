package secrets_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/secrets"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, secrets.KeySize) }

func TestSealOpenRoundTrip(t *testing.T) {
	box, err := secrets.NewBox(key(1))
	require.NoError(t, err)
	plain := []byte(`{"url":"https://hooks.slack.com/services/T000/B000/XXXX"}`)

	a, err := box.Seal(plain)
	require.NoError(t, err)
	b, err := box.Seal(plain)
	require.NoError(t, err)

	assert.NotContains(t, string(a.Ciphertext), "hooks.slack.com")
	assert.NotEqual(t, a.Ciphertext, b.Ciphertext, "a fresh nonce per seal")
	assert.Equal(t, a.KeyID, b.KeyID)
	got, err := box.Open(a)
	require.NoError(t, err)
	assert.Equal(t, plain, got)
}

func TestRotation(t *testing.T) {
	old, err := secrets.NewBox(key(1))
	require.NoError(t, err)
	sealedOld, err := old.Seal([]byte("old secret"))
	require.NoError(t, err)

	rotated, err := secrets.NewBox(key(2), key(1))
	require.NoError(t, err)
	got, err := rotated.Open(sealedOld)
	require.NoError(t, err, "the previous key still opens old rows")
	assert.Equal(t, "old secret", string(got))

	sealedNew, err := rotated.Seal([]byte("new secret"))
	require.NoError(t, err)
	assert.NotEqual(t, sealedOld.KeyID, sealedNew.KeyID, "new rows name the current key")

	newOnly, err := secrets.NewBox(key(2))
	require.NoError(t, err)
	_, err = newOnly.Open(sealedOld)
	assert.ErrorIs(t, err, secrets.ErrUnknownKey)
}

func TestTamperingIsDetected(t *testing.T) {
	box, err := secrets.NewBox(key(1), key(2))
	require.NoError(t, err)
	s, err := box.Seal([]byte("secret"))
	require.NoError(t, err)
	other, err := secrets.NewBox(key(2))
	require.NoError(t, err)
	otherID, err := other.Seal(nil)
	require.NoError(t, err)

	flipped := secrets.Sealed{KeyID: s.KeyID, Ciphertext: bytes.Clone(s.Ciphertext)}
	flipped.Ciphertext[len(flipped.Ciphertext)-1] ^= 1
	relabelled := secrets.Sealed{KeyID: otherID.KeyID, Ciphertext: s.Ciphertext}
	short := secrets.Sealed{KeyID: s.KeyID, Ciphertext: s.Ciphertext[:5]}

	for name, bad := range map[string]secrets.Sealed{"flipped bit": flipped, "relabelled key id": relabelled, "truncated": short} {
		t.Run(name, func(t *testing.T) {
			_, err := box.Open(bad)
			assert.ErrorIs(t, err, secrets.ErrCorrupt)
		})
	}
}

func TestKeysMustBe32Bytes(t *testing.T) {
	_, err := secrets.NewBox([]byte("short"))
	require.Error(t, err)
	_, err = secrets.NewBox(key(1), []byte("short"))
	require.Error(t, err)
	_, err = secrets.NewBox(key(1), nil)
	require.NoError(t, err, "an unset previous key is no key")
}

func TestStringRedactsEverywhere(t *testing.T) {
	s := secrets.String("hunter2-routing-key")
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	box, err := secrets.NewBox(key(7))
	require.NoError(t, err)

	log.Info("config", "password", s, "box", box)
	out := fmt.Sprintf("%v %s %+v %#v %q", s, s, struct{ P secrets.String }{s}, s, s)

	assert.NotContains(t, logs.String(), "hunter2")
	assert.NotContains(t, out, "hunter2")
	assert.Contains(t, logs.String(), secrets.Mask)
	assert.Equal(t, "hunter2-routing-key", s.Reveal())
	assert.Empty(t, secrets.String("").String(), "an unset secret shows as unset")
}
