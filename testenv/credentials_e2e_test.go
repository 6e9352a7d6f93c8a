package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/credentials"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/workflows"
)

// TestCredentialRefreshHappensOnTimeAfterWorkerRestart: a credential's
// access token expires shortly, to be refreshed a lead ahead of expiry. The
// worker process runs the credential's token-refresh workflow and is
// SIGKILLed while the workflow sleeps toward the refresh; a new worker
// process takes the durable timer over, and the token endpoint is called
// once, when the refresh is due (not early, not long after, well before the
// old token expired), and the rotated tokens are stored.
func TestCredentialRefreshHappensOnTimeAfterWorkerRestart(t *testing.T) {
	ctx := context.Background()
	bin := opsflowBinary(t)
	dbURL, d := processDB(t, 4)
	tc := testenv.TemporalClient(t)
	box, err := secrets.NewBox(secretKey)
	require.NoError(t, err)
	initialRefresh := "rt-0-" + testenv.Secret
	server := testenv.NewTokenServer(t, initialRefresh, time.Hour, true)
	queue := "credentials-kill-" + uuid.NewString()
	env := workerEnv(t, dbURL, queue)
	first := startWorker(t, bin, env)
	awaitPolling(t, tc, queue)

	// Refreshed 12 s ahead of expiry, due 14 s from now: the workflow is
	// asleep well before it is due, and a late refresh (see below) is
	// still before expiry.
	const lead = 12 * time.Second
	expires := time.Now().Add(14*time.Second + lead).UTC().Truncate(time.Millisecond)
	due := expires.Add(-lead)
	rt, err := box.Seal([]byte(initialRefresh))
	require.NoError(t, err)
	at, err := box.Seal([]byte("at-seed-" + testenv.Secret))
	require.NoError(t, err)
	cred := &db.Credential{Name: "claude", Kind: credentials.KindOAuth2, TokenURL: server.TokenURL, ClientID: "opsflow",
		RefreshTokenKeyID: rt.KeyID, RefreshTokenSealed: rt.Ciphertext, AccessTokenKeyID: at.KeyID, AccessTokenSealed: at.Ciphertext,
		ExpiresAt: &expires, RefreshLeadSeconds: int(lead / time.Second)}
	require.NoError(t, db.CreateCredential(ctx, d.Bun, cred))
	workflowID := workflows.TokenRefreshWorkflowID(cred.ID)
	// The dev server is the package's and every test database numbers
	// credentials from 1: end the workflow with the test.
	t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), workflowID, "", "test ended") })

	// The worker process starts the credential's workflow, as its reconcile
	// schedule does for a credential without one.
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "reconcile-" + uuid.NewString(), TaskQueue: queue},
		workflows.CredentialsReconcileWorkflowName)
	require.NoError(t, err)
	var reconciled workflows.ReconcileCredentialsResult
	require.NoError(t, run.Get(ctx, &reconciled))
	assert.Zero(t, reconciled.Ended)
	require.Eventually(t, func() bool {
		v, err := tc.QueryWorkflow(ctx, workflowID, "", workflows.QueryStatus)
		if err != nil {
			return false
		}
		var st workflows.TokenRefreshStatus
		require.NoError(t, v.Get(&st))
		return st.NextRefreshAt != nil && st.NextRefreshAt.Equal(due)
	}, 30*time.Second, 20*time.Millisecond, "the workflow sleeps until the refresh is due")

	first.kill(t)
	killedAhead := time.Until(due)
	require.Positive(t, killedAhead, "killed while the workflow sleeps")
	assert.Zero(t, server.Calls())
	startWorker(t, bin, env)

	var got *db.Credential
	require.Eventually(t, func() bool {
		got, err = db.GetCredential(ctx, d.Bun, cred.ID)
		require.NoError(t, err)
		return got.TokenVersion == 1
	}, time.Until(expires)+10*time.Second, 20*time.Millisecond, "refreshed by the new worker")
	require.NotNil(t, got.LastRefreshedAt)
	refreshed := got.LastRefreshedAt.UTC()
	// Temporal hands a workflow's tasks to the sticky queue of the worker
	// that ran it last while that worker polled within the last 10 s, and
	// passes an unanswered one on after 5 s. Killed over 10 s before the
	// timer fires, the dead worker's queue is given up by then and the
	// refresh is on time; killed closer (a slow start), it comes up to 5 s
	// late, still well before expiry.
	late := 3 * time.Second
	if killedAhead < 11*time.Second {
		late += 5 * time.Second
	}
	t.Logf("killed %s before the refresh was due; refreshed %s after it", killedAhead.Round(time.Millisecond), refreshed.Sub(due))
	assert.False(t, refreshed.Before(due), "not before it was due (%s)", due)
	assert.Less(t, refreshed.Sub(due), late, "on time")
	assert.Less(t, refreshed.Sub(due), lead-3*time.Second, "well before the old token expired")
	assert.Equal(t, 1, server.Calls(), "one call to the token endpoint")

	assert.Equal(t, db.CredentialActive, got.Status)
	assert.Zero(t, got.FailureCount)
	access, err := box.Open(secrets.Sealed{KeyID: got.AccessTokenKeyID, Ciphertext: got.AccessTokenSealed})
	require.NoError(t, err)
	assert.Equal(t, testenv.AccessToken(1), string(access))
	refresh, err := box.Open(secrets.Sealed{KeyID: got.RefreshTokenKeyID, Ciphertext: got.RefreshTokenSealed})
	require.NoError(t, err)
	assert.NotEqual(t, initialRefresh, string(refresh))
	assert.Equal(t, server.RefreshToken(), string(refresh), "the rotated refresh token is stored")
	require.NotNil(t, got.ExpiresAt)
	assert.WithinDuration(t, refreshed.Add(time.Hour), *got.ExpiresAt, 5*time.Second, "the new token's expiry")
	hist, err := db.ListCredentialRefreshes(ctx, d.Bun, cred.ID, 10)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	assert.Equal(t, workflows.RefreshRefreshed, hist[0].Outcome)
	assert.Equal(t, int64(1), hist[0].TokenVersion)
}
