package activities_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/credentials"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

const firstRefreshToken = "rt-0-" + testenv.Secret

type credentialFixture struct {
	acts   *activities.Activities
	db     *db.DB
	box    *secrets.Box
	reg    *prometheus.Registry
	logs   *syncBuffer
	server *testenv.TokenServer
}

// newCredentialFixture: a fresh database, a loopback token endpoint that
// rotates refresh tokens, and the activities allowed onto loopback.
func newCredentialFixture(t *testing.T) *credentialFixture {
	t.Helper()
	f := &credentialFixture{db: testenv.DB(t), reg: prometheus.NewRegistry(), logs: &syncBuffer{},
		server: testenv.NewTokenServer(t, firstRefreshToken, time.Hour, true)}
	var err error
	f.box, err = secrets.NewBox(bytes.Repeat([]byte{4}, secrets.KeySize))
	require.NoError(t, err)
	f.acts = &activities.Activities{DB: f.db, Clock: func() time.Time { return now }, Secrets: f.box,
		Outbound: notify.NewOutbound([]string{"127.0.0.0/8"}), CredentialMetrics: credentials.NewMetrics(f.reg)}
	t.Cleanup(func() { assert.NotContains(t, f.logs.String(), testenv.Secret, "a secret reached the logs") })
	return f
}

func (f *credentialFixture) env() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(f.acts)
	return env
}

// credential stores a credential whose refresh token the server accepts.
func (f *credentialFixture) credential(t *testing.T) *db.Credential {
	t.Helper()
	rt, err := f.box.Seal([]byte(firstRefreshToken))
	require.NoError(t, err)
	cs, err := f.box.Seal([]byte("cs-" + testenv.Secret))
	require.NoError(t, err)
	c := &db.Credential{Name: "claude", Kind: credentials.KindOAuth2, TokenURL: f.server.TokenURL, ClientID: "opsflow-test",
		RefreshTokenKeyID: rt.KeyID, RefreshTokenSealed: rt.Ciphertext, ClientSecretKeyID: cs.KeyID, ClientSecretSealed: cs.Ciphertext,
		RefreshLeadSeconds: 600}
	require.NoError(t, db.CreateCredential(context.Background(), f.db.Bun, c))
	return c
}

func (f *credentialFixture) row(t *testing.T, id int64) *db.Credential {
	t.Helper()
	c, err := db.GetCredential(context.Background(), f.db.Bun, id)
	require.NoError(t, err)
	return c
}

func (f *credentialFixture) open(t *testing.T, keyID string, sealed []byte) string {
	t.Helper()
	v, err := f.box.Open(secrets.Sealed{KeyID: keyID, Ciphertext: sealed})
	require.NoError(t, err)
	return string(v)
}

func (f *credentialFixture) history(t *testing.T, id int64) []string {
	t.Helper()
	rs, err := db.ListCredentialRefreshes(context.Background(), f.db.Bun, id, 100)
	require.NoError(t, err)
	var outcomes []string
	for i := len(rs) - 1; i >= 0; i-- {
		outcomes = append(outcomes, rs[i].Outcome)
	}
	return outcomes
}

func refreshCredential(env *testsuite.TestActivityEnvironment, in workflows.RefreshCredentialInput) (workflows.RefreshResult, error) {
	val, err := env.ExecuteActivity(workflows.ActivityRefreshCredential, in)
	if err != nil {
		return workflows.RefreshResult{}, err
	}
	var res workflows.RefreshResult
	return res, val.Get(&res)
}

func refreshInput(c *db.Credential) workflows.RefreshCredentialInput {
	return workflows.RefreshCredentialInput{CredentialID: c.ID, SeenVersion: c.TokenVersion, Retry: workflows.DefaultRefreshRetry}
}

func TestRefreshCredentialStoresRotatedTokens(t *testing.T) {
	f := newCredentialFixture(t)
	c := f.credential(t)
	env := f.env()

	res, err := refreshCredential(env, refreshInput(c))
	require.NoError(t, err)
	assert.Equal(t, workflows.RefreshRefreshed, res.Outcome)
	assert.Equal(t, int64(1), res.TokenVersion)
	got := f.row(t, c.ID)
	assert.Equal(t, db.CredentialActive, got.Status)
	assert.Equal(t, testenv.AccessToken(1), f.open(t, got.AccessTokenKeyID, got.AccessTokenSealed))
	assert.Equal(t, f.server.RefreshToken(), f.open(t, got.RefreshTokenKeyID, got.RefreshTokenSealed), "the rotated refresh token is stored")
	assert.NotEqual(t, firstRefreshToken, f.server.RefreshToken())
	require.NotNil(t, got.ExpiresAt)
	assert.WithinDuration(t, time.Now().Add(time.Hour), *got.ExpiresAt, time.Minute)
	assert.NotContains(t, string(got.AccessTokenSealed), "at-1", "sealed at rest")

	// The next refresh sends the rotated token, which the endpoint accepts.
	res, err = refreshCredential(env, refreshInput(got))
	require.NoError(t, err)
	assert.Equal(t, workflows.RefreshRefreshed, res.Outcome)
	assert.Equal(t, testenv.AccessToken(2), f.open(t, f.row(t, c.ID).AccessTokenKeyID, f.row(t, c.ID).AccessTokenSealed))
	assert.Equal(t, []string{workflows.RefreshRefreshed, workflows.RefreshRefreshed}, f.history(t, c.ID))
	assert.InDelta(t, 2, refreshCount(t, f.reg, workflows.RefreshRefreshed), 0)
}

func TestRefreshCredentialSkipsTheCallWhenAlreadyRefreshed(t *testing.T) {
	f := newCredentialFixture(t)
	c := f.credential(t)
	env := f.env()
	_, err := refreshCredential(env, refreshInput(c))
	require.NoError(t, err)

	// A second trigger that saw the old version gets the fresh token.
	res, err := refreshCredential(env, refreshInput(c))
	require.NoError(t, err)
	assert.Equal(t, workflows.RefreshFresh, res.Outcome)
	assert.Equal(t, int64(1), res.TokenVersion)
	assert.Equal(t, 1, f.server.Calls(), "one call to the token endpoint")
}

func TestRefreshCredentialRetriesTransientFailuresWithJitter(t *testing.T) {
	f := newCredentialFixture(t)
	c := f.credential(t)
	env := f.env()
	f.server.Script(http.StatusInternalServerError)

	_, err := refreshCredential(env, refreshInput(c))
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, workflows.ErrTypeCredentialTransient, appErr.Type())
	assert.False(t, appErr.NonRetryable())
	p := workflows.DefaultRefreshRetry
	assert.GreaterOrEqual(t, appErr.NextRetryDelay(), time.Duration(float64(p.InitialInterval)*(1-p.Jitter)))
	assert.LessOrEqual(t, appErr.NextRetryDelay(), p.InitialInterval)
	got := f.row(t, c.ID)
	assert.Equal(t, db.CredentialRefreshing, got.Status, "still being retried")
	assert.Equal(t, 1, got.FailureCount)
	assert.Contains(t, got.LastError, "500")

	res, err := refreshCredential(env, refreshInput(c))
	require.NoError(t, err)
	assert.Equal(t, workflows.RefreshRefreshed, res.Outcome)
	got = f.row(t, c.ID)
	assert.Equal(t, db.CredentialActive, got.Status)
	assert.Zero(t, got.FailureCount)
	assert.Empty(t, got.LastError)
	assert.Equal(t, []string{workflows.RefreshTransient, workflows.RefreshRefreshed}, f.history(t, c.ID))
}

func TestMarkCredentialErrorAfterRetriesRunOut(t *testing.T) {
	f := newCredentialFixture(t)
	c := f.credential(t)
	env := f.env()
	f.server.Script(http.StatusBadGateway)
	_, err := refreshCredential(env, refreshInput(c))
	require.Error(t, err)

	_, err = env.ExecuteActivity(workflows.ActivityMarkCredentialError,
		workflows.MarkCredentialErrorInput{CredentialID: c.ID, LastError: "token endpoint answered 502"})
	require.NoError(t, err, f.logs.String())
	got := f.row(t, c.ID)
	assert.Equal(t, db.CredentialError, got.Status, "error, not disabled: it is tried again later")
	assert.Equal(t, []string{workflows.RefreshTransient, workflows.RefreshFailed}, f.history(t, c.ID))
}

func TestRefreshCredentialRefusalDisables(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse func(*testenv.TokenServer)
		code   string
	}{
		{"invalid_grant", (*testenv.TokenServer).Revoke, "invalid_grant"},
		{"unauthorized_client", func(s *testenv.TokenServer) { s.RequireClientID("someone-else") }, "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newCredentialFixture(t)
			c := f.credential(t)
			tc.refuse(f.server)

			_, err := refreshCredential(f.env(), refreshInput(c))
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			assert.Equal(t, workflows.ErrTypeCredentialRejected, appErr.Type())
			assert.True(t, appErr.NonRetryable())
			got := f.row(t, c.ID)
			assert.Equal(t, db.CredentialDisabled, got.Status)
			assert.Equal(t, 1, got.FailureCount, "the failure the alerting metric counts")
			assert.Contains(t, got.LastError, tc.code)
			assert.Equal(t, []string{workflows.RefreshRejected}, f.history(t, c.ID))
			assert.InDelta(t, 1, refreshCount(t, f.reg, workflows.RefreshRejected), 0)
		})
	}
}

// A refresh racing another writer: the endpoint refuses the old refresh
// token because the other writer already rotated it. The re-read shows the
// new token version, so the good credential is neither overwritten nor
// disabled.
func TestRefreshCredentialLostRaceNeverDisables(t *testing.T) {
	f := newCredentialFixture(t)
	c := f.credential(t)
	env := f.env()
	// The winner: a refresh that rotated the token after our refresh read
	// the row (simulated by refreshing from the same stale version first).
	stale := refreshInput(c)
	_, err := refreshCredential(env, stale)
	require.NoError(t, err)
	winner := f.row(t, c.ID)
	// Our refresh had read version 0 and sends the rotated-away token: the
	// row is put back to look like what it read, except the version.
	_, err = f.db.Bun.NewUpdate().Model((*db.Credential)(nil)).
		Set("refresh_token_key_id = ?", c.RefreshTokenKeyID).Set("refresh_token_sealed = ?", c.RefreshTokenSealed).
		Set("token_version = 0").Where("id = ?", c.ID).Exec(context.Background())
	require.NoError(t, err)
	f.server.Hold()
	done := make(chan error, 1)
	go func() {
		_, err := refreshCredential(env, stale)
		done <- err
	}()
	<-f.server.Arrived()
	// While our request is in flight, the winner's write lands.
	_, err = f.db.Bun.NewUpdate().Model((*db.Credential)(nil)).
		Set("refresh_token_key_id = ?", winner.RefreshTokenKeyID).Set("refresh_token_sealed = ?", winner.RefreshTokenSealed).
		Set("token_version = ?", winner.TokenVersion).Set("status = ?", db.CredentialActive).
		Where("id = ?", c.ID).Exec(context.Background())
	require.NoError(t, err)
	f.server.Release()
	require.NoError(t, <-done)

	got := f.row(t, c.ID)
	assert.Equal(t, db.CredentialActive, got.Status, "not disabled")
	assert.Zero(t, got.FailureCount)
	assert.Equal(t, winner.TokenVersion, got.TokenVersion)
	assert.Equal(t, f.server.RefreshToken(), f.open(t, got.RefreshTokenKeyID, got.RefreshTokenSealed), "the winner's token is kept")
	assert.Equal(t, []string{workflows.RefreshRefreshed, workflows.RefreshSuperseded}, f.history(t, c.ID))
}

func TestRefreshCredentialOfDeletedCredentialIsGone(t *testing.T) {
	f := newCredentialFixture(t)
	c := f.credential(t)
	require.NoError(t, db.DeleteCredential(context.Background(), f.db.Bun, c.ID))

	_, err := refreshCredential(f.env(), refreshInput(c))
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, workflows.ErrTypeCredentialGone, appErr.Type())
	assert.Zero(t, f.server.Calls())

	val, err := f.env().ExecuteActivity(workflows.ActivityLoadCredential, workflows.LoadCredentialInput{CredentialID: c.ID})
	require.NoError(t, err)
	var st workflows.CredentialState
	require.NoError(t, val.Get(&st))
	assert.False(t, st.Found)
}

// refreshCount reads opsflow_credential_refreshes_total for an outcome.
func refreshCount(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "opsflow_credential_refreshes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no counter for outcome %s", outcome)
	return 0
}

// Edits and refreshes never overwrite each other: an edit made from a row
// read before a refresh is refused, and a refresh that finishes after an
// edit stored a new refresh token keeps the edit's token.
func TestRefreshAndEditNeverOverwriteEachOther(t *testing.T) {
	f := newCredentialFixture(t)
	c := f.credential(t)
	env := f.env()
	ctx := context.Background()
	_, err := refreshCredential(env, refreshInput(c))
	require.NoError(t, err)
	stale := *c
	stale.Name = "renamed"
	assert.ErrorIs(t, db.UpdateCredential(ctx, f.db.Bun, &stale, false), db.ErrConflict)
	assert.Equal(t, "claude", f.row(t, c.ID).Name)

	cur := f.row(t, c.ID)
	f.server.Hold()
	done := make(chan error, 1)
	go func() {
		_, err := refreshCredential(env, refreshInput(cur))
		done <- err
	}()
	<-f.server.Arrived()
	edited := f.row(t, c.ID)
	rt, err := f.box.Seal([]byte("rt-operator-" + testenv.Secret))
	require.NoError(t, err)
	edited.RefreshTokenKeyID, edited.RefreshTokenSealed = rt.KeyID, rt.Ciphertext
	require.NoError(t, db.UpdateCredential(ctx, f.db.Bun, edited, true))
	f.server.Release()
	require.NoError(t, <-done)

	got := f.row(t, c.ID)
	assert.Equal(t, "rt-operator-"+testenv.Secret, f.open(t, got.RefreshTokenKeyID, got.RefreshTokenSealed))
	assert.Equal(t, cur.TokenVersion+1, got.TokenVersion, "only the edit moved the version")
	assert.Equal(t, []string{workflows.RefreshRefreshed, workflows.RefreshSuperseded}, f.history(t, c.ID))
}
