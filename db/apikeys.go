package db

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Scopes an API key may hold.
const (
	ScopeIngest = "ingest"
	ScopeRead   = "read"
	ScopeAdmin  = "admin"
	ScopeToken  = "token"
)

// AllScopes lists every scope, in the order the docs give them.
var AllScopes = []string{ScopeIngest, ScopeRead, ScopeAdmin, ScopeToken}

// APIKey is a stored key; only a hash of the secret is kept.
type APIKey struct {
	bun.BaseModel `bun:"table:api_keys"`

	ID         int64      `bun:"id,pk,autoincrement"`
	Name       string     `bun:"name"`
	Prefix     string     `bun:"prefix"`
	SecretHash []byte     `bun:"secret_hash"`
	Scopes     []string   `bun:"scopes,array"`
	CreatedAt  time.Time  `bun:"created_at,nullzero,default:now()"`
	RevokedAt  *time.Time `bun:"revoked_at"`
}

const keyPrefix = "opsf_"

var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// HashAPIKey is the stored form of a key.
func HashAPIKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// APIKeyPrefix extracts the lookup prefix of a key in opsflow's format
// ("opsf_<prefix>_<secret>"), or "" when the key has another shape.
func APIKeyPrefix(key string) string {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return ""
	}
	prefix, _, ok := strings.Cut(rest, "_")
	if !ok || len(prefix) != 8 {
		return ""
	}
	return prefix
}

// CreateAPIKey stores a new key and returns it in clear text, the only time
// it is ever visible.
func CreateAPIKey(ctx context.Context, idb bun.IDB, name string, scopes []string) (string, *APIKey, error) {
	for _, s := range scopes {
		if !validScope(s) {
			return "", nil, fmt.Errorf("unknown scope %q (want one of %s)", s, strings.Join(AllScopes, ", "))
		}
	}
	if len(scopes) == 0 {
		return "", nil, fmt.Errorf("a key needs at least one scope")
	}
	raw := make([]byte, 5+32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	prefix := keyEncoding.EncodeToString(raw[:5])
	key := keyPrefix + prefix + "_" + keyEncoding.EncodeToString(raw[5:])
	k := &APIKey{Name: name, Prefix: prefix, SecretHash: HashAPIKey(key), Scopes: scopes}
	if _, err := idb.NewInsert().Model(k).Returning("id, created_at").Exec(ctx); err != nil {
		return "", nil, MapError(err)
	}
	return key, k, nil
}

// FindActiveAPIKey returns the unrevoked key with the given prefix.
func FindActiveAPIKey(ctx context.Context, idb bun.IDB, prefix string) (*APIKey, error) {
	k := new(APIKey)
	err := idb.NewSelect().Model(k).Where("prefix = ?", prefix).Where("revoked_at IS NULL").Scan(ctx)
	if err != nil {
		return nil, MapError(err)
	}
	return k, nil
}

func validScope(s string) bool {
	for _, known := range AllScopes {
		if s == known {
			return true
		}
	}
	return false
}
