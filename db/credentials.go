package db

import (
	"context"
	"errors"
	"time"

	"github.com/uptrace/bun"
)

// Credential states (the CHECK constraint's values).
const (
	CredentialActive     = "active"
	CredentialRefreshing = "refreshing"
	CredentialError      = "error"
	CredentialDisabled   = "disabled"
)

// CredentialStatuses lists every state, for metrics that start at zero.
var CredentialStatuses = []string{CredentialActive, CredentialRefreshing, CredentialError, CredentialDisabled}

// Audit actions on credentials.
const (
	AuditCredentialCreate      = "credential.create"
	AuditCredentialUpdate      = "credential.update"
	AuditCredentialDelete      = "credential.delete"
	AuditCredentialRefresh     = "credential.refresh"
	AuditCredentialAccessToken = "credential.access_token"
)

// Credential is an upstream OAuth credential. Its secrets are sealed (see
// package secrets), each with the id of the key that sealed it; db never
// sees them in clear. TokenVersion counts every change of the tokens: every
// write of tokens is a compare-and-set on it.
type Credential struct {
	bun.BaseModel `bun:"table:credentials"`

	ID                 int64      `bun:"id,pk,autoincrement"`
	Name               string     `bun:"name"`
	Kind               string     `bun:"kind"`
	TokenURL           string     `bun:"token_url"`
	ClientID           string     `bun:"client_id"`
	ClientSecretKeyID  string     `bun:"client_secret_key_id,nullzero"`
	ClientSecretSealed []byte     `bun:"client_secret_sealed,nullzero"`
	RefreshTokenKeyID  string     `bun:"refresh_token_key_id"`
	RefreshTokenSealed []byte     `bun:"refresh_token_sealed"`
	AccessTokenKeyID   string     `bun:"access_token_key_id,nullzero"`
	AccessTokenSealed  []byte     `bun:"access_token_sealed,nullzero"`
	ExpiresAt          *time.Time `bun:"expires_at"`
	Status             string     `bun:"status,nullzero,default:'active'"`
	LastRefreshedAt    *time.Time `bun:"last_refreshed_at"`
	LastError          string     `bun:"last_error,nullzero"`
	FailureCount       int        `bun:"failure_count"`
	TokenVersion       int64      `bun:"token_version"`
	RefreshLeadSeconds int        `bun:"refresh_lead_seconds"`
	CreatedAt          time.Time  `bun:"created_at,nullzero,default:now()"`
	UpdatedAt          time.Time  `bun:"updated_at,nullzero,default:now()"`
	DeletedAt          *time.Time `bun:"deleted_at"`
}

// CredentialRefresh is one refresh attempt's verdict, the credential's
// history. Error never holds a secret.
type CredentialRefresh struct {
	bun.BaseModel `bun:"table:credential_refreshes"`

	ID           int64      `bun:"id,pk,autoincrement"`
	CredentialID int64      `bun:"credential_id"`
	At           time.Time  `bun:"at,nullzero,default:now()"`
	Outcome      string     `bun:"outcome"`
	Error        string     `bun:"error,nullzero"`
	TokenVersion int64      `bun:"token_version"`
	ExpiresAt    *time.Time `bun:"expires_at"`
}

// CreateCredential stores a new credential; a live credential with the same
// name is ErrConflict.
func CreateCredential(ctx context.Context, idb bun.IDB, c *Credential) error {
	_, err := idb.NewInsert().Model(c).Returning("*").Exec(ctx)
	return MapError(err)
}

// GetCredential returns a live (not deleted) credential.
func GetCredential(ctx context.Context, idb bun.IDB, id int64) (*Credential, error) {
	c := new(Credential)
	err := idb.NewSelect().Model(c).Where("id = ?", id).Where("deleted_at IS NULL").Scan(ctx)
	if err != nil {
		return nil, MapError(err)
	}
	return c, nil
}

// ListCredentials returns every live credential, oldest first.
func ListCredentials(ctx context.Context, idb bun.IDB) ([]Credential, error) {
	var cs []Credential
	err := idb.NewSelect().Model(&cs).Where("deleted_at IS NULL").Order("id").Scan(ctx)
	return cs, MapError(err)
}

// UpdateCredential writes an edited live credential, compare-and-set on the
// token version the editor read: a refresh that landed in between makes it
// ErrConflict (the edit would otherwise overwrite rotated tokens). With
// newTokens (a new refresh or access token) the version moves on, so a
// refresh in flight cannot overwrite them, and the credential becomes
// active again with its failures cleared.
func UpdateCredential(ctx context.Context, idb bun.IDB, c *Credential, newTokens bool) error {
	q := idb.NewUpdate().Model(c).
		Column("name", "token_url", "client_id", "client_secret_key_id", "client_secret_sealed",
			"refresh_token_key_id", "refresh_token_sealed", "access_token_key_id", "access_token_sealed",
			"expires_at", "refresh_lead_seconds").
		Set("updated_at = now()").
		Where("id = ?", c.ID).Where("deleted_at IS NULL").Where("token_version = ?", c.TokenVersion)
	if newTokens {
		q = q.Set("token_version = token_version + 1").Set("status = ?", CredentialActive).
			Set("failure_count = 0").Set("last_error = NULL")
	}
	err := q.Returning("*").Scan(ctx)
	if errors.Is(MapError(err), ErrNotFound) {
		if _, gerr := GetCredential(ctx, idb, c.ID); gerr != nil {
			return gerr
		}
		return &Error{Kind: ErrConflict, Err: errors.New("token_version changed")}
	}
	return MapError(err)
}

// DeleteCredential marks a live credential deleted; its history stays.
func DeleteCredential(ctx context.Context, idb bun.IDB, id int64) error {
	res, err := idb.NewUpdate().Model((*Credential)(nil)).
		Set("deleted_at = now()").Set("updated_at = now()").
		Where("id = ?", id).Where("deleted_at IS NULL").
		Exec(ctx)
	return oneRow(res, err)
}

// BeginRefresh moves a live, not disabled credential to refreshing and
// returns it; ok is false when it is deleted or disabled.
func BeginRefresh(ctx context.Context, idb bun.IDB, id int64) (c *Credential, ok bool, err error) {
	c = new(Credential)
	err = idb.NewUpdate().Model(c).
		Set("status = ?", CredentialRefreshing).Set("updated_at = now()").
		Where("id = ?", id).Where("deleted_at IS NULL").
		Where("status IN (?, ?, ?)", CredentialActive, CredentialRefreshing, CredentialError).
		Returning("*").
		Scan(ctx)
	if err = MapError(err); errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	return c, err == nil, err
}

// RefreshedTokens are a successful refresh's sealed tokens. A zero
// RefreshToken keeps the stored one (the provider did not rotate it).
type RefreshedTokens struct {
	AccessTokenKeyID  string
	AccessToken       []byte
	RefreshTokenKeyID string
	RefreshToken      []byte
	ExpiresAt         *time.Time
}

// StoreRefreshedTokens writes a refresh's tokens if the token version is
// still baseVersion, and returns the new version; ok is false when another
// writer got there first (nothing is written then).
func StoreRefreshedTokens(ctx context.Context, idb bun.IDB, id, baseVersion int64, t RefreshedTokens, at time.Time) (version int64, ok bool, err error) {
	q := idb.NewUpdate().Model((*Credential)(nil)).
		Set("access_token_key_id = ?", t.AccessTokenKeyID).Set("access_token_sealed = ?", t.AccessToken).
		Set("expires_at = ?", t.ExpiresAt).
		Set("token_version = token_version + 1").
		Set("status = ?", CredentialActive).Set("last_refreshed_at = ?", at).
		Set("last_error = NULL").Set("failure_count = 0").Set("updated_at = now()").
		Where("id = ?", id).Where("deleted_at IS NULL").Where("token_version = ?", baseVersion)
	if t.RefreshToken != nil {
		q = q.Set("refresh_token_key_id = ?", t.RefreshTokenKeyID).Set("refresh_token_sealed = ?", t.RefreshToken)
	}
	err = q.Returning("token_version").Scan(ctx, &version)
	if err = MapError(err); errors.Is(err, ErrNotFound) {
		return 0, false, nil
	}
	return version, err == nil, err
}

// DisableCredential disables a credential whose grant the provider refused,
// if the token version is still the one refused: a refresh token rotated
// meanwhile is good, and its credential stays as it is (ok false).
func DisableCredential(ctx context.Context, idb bun.IDB, id, baseVersion int64, lastError string) (ok bool, err error) {
	res, err := idb.NewUpdate().Model((*Credential)(nil)).
		Set("status = ?", CredentialDisabled).Set("last_error = ?", lastError).
		Set("failure_count = failure_count + 1").Set("updated_at = now()").
		Where("id = ?", id).Where("deleted_at IS NULL").Where("token_version = ?", baseVersion).
		Exec(ctx)
	if err = oneRow(res, err); errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// RecordCredentialFailure counts a failed attempt that will be retried.
func RecordCredentialFailure(ctx context.Context, idb bun.IDB, id int64, lastError string) error {
	_, err := idb.NewUpdate().Model((*Credential)(nil)).
		Set("last_error = ?", lastError).Set("failure_count = failure_count + 1").Set("updated_at = now()").
		Where("id = ?", id).Where("deleted_at IS NULL").
		Exec(ctx)
	return MapError(err)
}

// MarkCredentialError moves a refreshing credential to error once its
// retries ran out; ok is false when it was not refreshing (deleted,
// disabled, or refreshed meanwhile).
func MarkCredentialError(ctx context.Context, idb bun.IDB, id int64, lastError string) (ok bool, err error) {
	res, err := idb.NewUpdate().Model((*Credential)(nil)).
		Set("status = ?", CredentialError).Set("last_error = ?", lastError).Set("updated_at = now()").
		Where("id = ?", id).Where("deleted_at IS NULL").Where("status = ?", CredentialRefreshing).
		Exec(ctx)
	if err = oneRow(res, err); errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// InsertCredentialRefresh appends to a credential's refresh history.
func InsertCredentialRefresh(ctx context.Context, idb bun.IDB, r *CredentialRefresh) error {
	_, err := idb.NewInsert().Model(r).Returning("id, at").Exec(ctx)
	return MapError(err)
}

// ListCredentialRefreshes returns a credential's latest refreshes, newest
// first.
func ListCredentialRefreshes(ctx context.Context, idb bun.IDB, credentialID int64, limit int) ([]CredentialRefresh, error) {
	var rs []CredentialRefresh
	err := idb.NewSelect().Model(&rs).Where("credential_id = ?", credentialID).
		OrderExpr("at DESC, id DESC").Limit(int64(limit)).Scan(ctx)
	return rs, MapError(err)
}

// CredentialGauge is what the metrics read of a live credential.
type CredentialGauge struct {
	ID        int64      `bun:"id"`
	Name      string     `bun:"name"`
	Status    string     `bun:"status"`
	ExpiresAt *time.Time `bun:"expires_at"`
}

// CredentialGauges returns every live credential's status and expiry.
func CredentialGauges(ctx context.Context, idb bun.IDB) ([]CredentialGauge, error) {
	var gs []CredentialGauge
	err := idb.NewSelect().Model((*Credential)(nil)).Column("id", "name", "status", "expires_at").
		Where("deleted_at IS NULL").Order("id").Scan(ctx, &gs)
	return gs, MapError(err)
}

// LiveCredentialIDs returns the ids of every live credential.
func LiveCredentialIDs(ctx context.Context, idb bun.IDB) ([]int64, error) {
	var ids []int64
	err := idb.NewSelect().Model((*Credential)(nil)).Column("id").Where("deleted_at IS NULL").Order("id").Scan(ctx, &ids)
	return ids, MapError(err)
}
