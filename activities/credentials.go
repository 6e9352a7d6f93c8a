package activities

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/uptrace/bun"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/credentials"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/workflows"
)

// LoadCredential reads what the token-refresh workflow needs of a
// credential; a deleted one is Found false.
func (a *Activities) LoadCredential(ctx context.Context, in workflows.LoadCredentialInput) (workflows.CredentialState, error) {
	c, err := db.GetCredential(ctx, a.DB.Bun, in.CredentialID)
	if errors.Is(err, db.ErrNotFound) {
		return workflows.CredentialState{}, nil
	}
	if err != nil {
		return workflows.CredentialState{}, a.unavailable(ctx, "load credential", err)
	}
	return credentialState(c), nil
}

func credentialState(c *db.Credential) workflows.CredentialState {
	return workflows.CredentialState{Found: true, Status: c.Status, ExpiresAt: c.ExpiresAt,
		RefreshLead: time.Duration(c.RefreshLeadSeconds) * time.Second, TokenVersion: c.TokenVersion,
		HasAccessToken: c.AccessTokenSealed != nil}
}

// refreshedMark is the heartbeat detail a try leaves once the token endpoint
// answered: the new tokens, sealed. The endpoint may have rotated the refresh
// token, which makes the stored one useless, so a retry of the same refresh
// (after PostgreSQL failed the write) stores these instead of calling again.
type refreshedMark struct {
	BaseVersion  int64          `json:"base_version"`
	Access       secrets.Sealed `json:"access"`
	Refresh      secrets.Sealed `json:"refresh"`
	RefreshTaken bool           `json:"refresh_taken"`
	ExpiresAt    *time.Time     `json:"expires_at,omitempty"`
}

// RefreshCredential refreshes one credential's access token:
//
//  1. a credential refreshed since the requester looked (token_version past
//     in.SeenVersion) is answered as fresh without calling the endpoint: two
//     triggers racing each other cost one call;
//  2. the row moves to refreshing, and the refresh_token grant is sent;
//  3. the answer is stored with a compare-and-set on token_version: a writer
//     that got there first (an edit with a new refresh token) wins, and this
//     refresh reports superseded without overwriting anything;
//  4. invalid_grant, invalid_client and unauthorized_client disable the
//     credential, but only after re-reading it: when its token_version moved
//     meanwhile, the refusal was of a refresh token already replaced, and the
//     good credential stays as it is.
//
// Other failures are retried by Temporal after a jittered backoff
// (NextRetryDelay from in.Retry); the workflow marks the credential error
// once they run out.
func (a *Activities) RefreshCredential(ctx context.Context, in workflows.RefreshCredentialInput) (workflows.RefreshResult, error) {
	if activity.HasHeartbeatDetails(ctx) {
		var mark refreshedMark
		if err := activity.GetHeartbeatDetails(ctx, &mark); err == nil && mark.Access.KeyID != "" {
			return a.storeRefreshed(ctx, in.CredentialID, mark)
		}
	}
	cur, err := db.GetCredential(ctx, a.DB.Bun, in.CredentialID)
	if err != nil {
		return a.refreshLoadFailed(ctx, in.CredentialID, err)
	}
	if cur.TokenVersion > in.SeenVersion {
		a.CredentialMetrics.Refresh(workflows.RefreshFresh)
		return resultOf(workflows.RefreshFresh, cur), nil
	}
	c, ok, err := db.BeginRefresh(ctx, a.DB.Bun, in.CredentialID)
	if err != nil {
		return workflows.RefreshResult{}, a.unavailable(ctx, "begin refresh", err)
	}
	if !ok {
		return workflows.RefreshResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("credential %d is deleted or disabled", in.CredentialID), workflows.ErrTypeCredentialGone, nil)
	}
	cl, refreshToken, err := a.openCredential(c)
	if err != nil {
		return workflows.RefreshResult{}, a.refreshFailed(ctx, c, in.Retry, err.Error())
	}
	tok, err := cl.Refresh(ctx, a.tokenHTTPClient(), refreshToken.Reveal())
	if err != nil {
		f := credentials.Classify(err)
		if f.Rejected {
			return a.rejected(ctx, c, f.Msg)
		}
		return workflows.RefreshResult{}, a.refreshFailed(ctx, c, in.Retry, f.Msg)
	}
	mark := refreshedMark{BaseVersion: c.TokenVersion}
	if !tok.Expiry.IsZero() {
		exp := tok.Expiry.UTC()
		mark.ExpiresAt = &exp
	}
	if mark.Access, err = a.Secrets.Seal([]byte(tok.AccessToken)); err != nil {
		return workflows.RefreshResult{}, a.refreshFailed(ctx, c, in.Retry, "seal access token: "+err.Error())
	}
	// oauth2 keeps the old refresh token when the answer has none.
	if tok.RefreshToken != refreshToken.Reveal() {
		if mark.Refresh, err = a.Secrets.Seal([]byte(tok.RefreshToken)); err != nil {
			return workflows.RefreshResult{}, a.refreshFailed(ctx, c, in.Retry, "seal refresh token: "+err.Error())
		}
		mark.RefreshTaken = true
	}
	activity.RecordHeartbeat(ctx, mark)
	return a.storeRefreshed(ctx, in.CredentialID, mark)
}

// refreshLoadFailed explains a credential that could not be read.
func (a *Activities) refreshLoadFailed(ctx context.Context, id int64, err error) (workflows.RefreshResult, error) {
	if errors.Is(err, db.ErrNotFound) {
		return workflows.RefreshResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("credential %d is deleted", id), workflows.ErrTypeCredentialGone, nil)
	}
	return workflows.RefreshResult{}, a.unavailable(ctx, "load credential", err)
}

// openCredential opens the client secret and refresh token.
func (a *Activities) openCredential(c *db.Credential) (credentials.Client, secrets.String, error) {
	cl := credentials.Client{TokenURL: c.TokenURL, ClientID: c.ClientID}
	if a.Secrets == nil {
		return cl, "", errors.New("OPSFLOW_SECRET_KEY is not set on the worker: credentials cannot be opened")
	}
	rt, err := a.Secrets.Open(secrets.Sealed{KeyID: c.RefreshTokenKeyID, Ciphertext: c.RefreshTokenSealed})
	if err != nil {
		return cl, "", fmt.Errorf("open refresh token: %w", err)
	}
	if c.ClientSecretSealed != nil {
		cs, err := a.Secrets.Open(secrets.Sealed{KeyID: c.ClientSecretKeyID, Ciphertext: c.ClientSecretSealed})
		if err != nil {
			return cl, "", fmt.Errorf("open client secret: %w", err)
		}
		cl.ClientSecret = string(cs)
	}
	return cl, secrets.String(rt), nil
}

// tokenHTTPClient is the SSRF-safe outbound client: a token URL is set by an
// admin, but a refresh runs inside the worker's network, and the failure
// text reaches the API, so it gets the same rules as a notification target.
func (a *Activities) tokenHTTPClient() *http.Client {
	if a.Outbound == nil {
		return &http.Client{Timeout: 10 * time.Second}
	}
	return a.Outbound.HTTPClient()
}

// storeRefreshed writes a refresh's tokens and its history entry in one
// transaction; a lost compare-and-set is superseded.
func (a *Activities) storeRefreshed(ctx context.Context, id int64, mark refreshedMark) (workflows.RefreshResult, error) {
	t := db.RefreshedTokens{AccessTokenKeyID: mark.Access.KeyID, AccessToken: mark.Access.Ciphertext, ExpiresAt: mark.ExpiresAt}
	if mark.RefreshTaken {
		t.RefreshTokenKeyID, t.RefreshToken = mark.Refresh.KeyID, mark.Refresh.Ciphertext
	}
	var version int64
	var stored bool
	err := a.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		version, stored, err = db.StoreRefreshedTokens(ctx, tx, id, mark.BaseVersion, t, a.now())
		if err != nil || !stored {
			return err
		}
		return db.InsertCredentialRefresh(ctx, tx, &db.CredentialRefresh{CredentialID: id,
			Outcome: workflows.RefreshRefreshed, TokenVersion: version, ExpiresAt: mark.ExpiresAt})
	})
	if err != nil {
		return workflows.RefreshResult{}, a.unavailable(ctx, "store refreshed tokens", err)
	}
	if !stored {
		activity.GetLogger(ctx).Warn("Refreshed tokens discarded: the credential changed meanwhile", "credential", id)
		return a.superseded(ctx, id, "the credential changed during the refresh; its newer tokens were kept")
	}
	a.CredentialMetrics.Refresh(workflows.RefreshRefreshed)
	activity.GetLogger(ctx).Info("Credential refreshed", "credential", id, "token_version", version,
		"rotated", mark.RefreshTaken, "expires_at", mark.ExpiresAt)
	return workflows.RefreshResult{Outcome: workflows.RefreshRefreshed, Status: db.CredentialActive,
		TokenVersion: version, ExpiresAt: mark.ExpiresAt}, nil
}

// superseded records that another writer's tokens won, and answers with the
// credential as it now is.
func (a *Activities) superseded(ctx context.Context, id int64, why string) (workflows.RefreshResult, error) {
	cur, err := db.GetCredential(ctx, a.DB.Bun, id)
	if err != nil {
		return a.refreshLoadFailed(ctx, id, err)
	}
	err = db.InsertCredentialRefresh(ctx, a.DB.Bun, &db.CredentialRefresh{CredentialID: id,
		Outcome: workflows.RefreshSuperseded, Error: why, TokenVersion: cur.TokenVersion, ExpiresAt: cur.ExpiresAt})
	if err != nil {
		return workflows.RefreshResult{}, a.unavailable(ctx, "record superseded refresh", err)
	}
	a.CredentialMetrics.Refresh(workflows.RefreshSuperseded)
	res := resultOf(workflows.RefreshSuperseded, cur)
	res.Error = why
	return res, nil
}

func resultOf(outcome string, c *db.Credential) workflows.RefreshResult {
	return workflows.RefreshResult{Outcome: outcome, Status: c.Status, TokenVersion: c.TokenVersion, ExpiresAt: c.ExpiresAt}
}

// rejected handles a refusal of the grant or client. The credential is
// re-read first, and disabled only if its token version is still the one
// refused: a refresh token rotated meanwhile (by a concurrent refresh or an
// edit) is good, and a lost race must never disable it.
func (a *Activities) rejected(ctx context.Context, c *db.Credential, msg string) (workflows.RefreshResult, error) {
	var disabled bool
	err := a.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if disabled, err = db.DisableCredential(ctx, tx, c.ID, c.TokenVersion, msg); err != nil || !disabled {
			return err
		}
		return db.InsertCredentialRefresh(ctx, tx, &db.CredentialRefresh{CredentialID: c.ID,
			Outcome: workflows.RefreshRejected, Error: msg, TokenVersion: c.TokenVersion, ExpiresAt: c.ExpiresAt})
	})
	if err != nil {
		return workflows.RefreshResult{}, a.unavailable(ctx, "disable credential", err)
	}
	if !disabled {
		activity.GetLogger(ctx).Info("Refusal ignored: the credential's tokens changed meanwhile", "credential", c.ID, "error", msg)
		return a.superseded(ctx, c.ID, "refused ("+msg+") but the credential's tokens changed meanwhile; not disabled")
	}
	a.CredentialMetrics.Refresh(workflows.RefreshRejected)
	activity.GetLogger(ctx).Warn("Credential disabled: the token endpoint refused it", "credential", c.ID, "error", msg)
	return workflows.RefreshResult{}, temporal.NewApplicationErrorWithOptions(msg, workflows.ErrTypeCredentialRejected,
		temporal.ApplicationErrorOptions{NonRetryable: true, Category: temporal.ApplicationErrorCategoryBenign})
}

// refreshFailed records a failed attempt and asks Temporal to retry it after
// the policy's jittered delay.
func (a *Activities) refreshFailed(ctx context.Context, c *db.Credential, p workflows.RefreshRetryPolicy, msg string) error {
	err := a.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.RecordCredentialFailure(ctx, tx, c.ID, msg); err != nil {
			return err
		}
		return db.InsertCredentialRefresh(ctx, tx, &db.CredentialRefresh{CredentialID: c.ID,
			Outcome: workflows.RefreshTransient, Error: msg, TokenVersion: c.TokenVersion, ExpiresAt: c.ExpiresAt})
	})
	if err != nil {
		return a.unavailable(ctx, "record refresh failure", err)
	}
	a.CredentialMetrics.Refresh(workflows.RefreshTransient)
	attempt := int(activity.GetInfo(ctx).Attempt)
	activity.GetLogger(ctx).Warn("Credential refresh attempt failed", "credential", c.ID, "attempt", attempt, "error", msg)
	return temporal.NewApplicationErrorWithOptions(msg, workflows.ErrTypeCredentialTransient,
		temporal.ApplicationErrorOptions{NextRetryDelay: p.Delay(attempt, rand.Float64()),
			Category: temporal.ApplicationErrorCategoryBenign})
}

// MarkCredentialError records a refresh whose retries ran out: status error
// (retried later by the workflow, never disabled for it).
func (a *Activities) MarkCredentialError(ctx context.Context, in workflows.MarkCredentialErrorInput) error {
	var marked bool
	err := a.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if marked, err = db.MarkCredentialError(ctx, tx, in.CredentialID, in.LastError); err != nil || !marked {
			return err
		}
		c, err := db.GetCredential(ctx, tx, in.CredentialID)
		if err != nil {
			return err
		}
		return db.InsertCredentialRefresh(ctx, tx, &db.CredentialRefresh{CredentialID: c.ID,
			Outcome: workflows.RefreshFailed, Error: in.LastError, TokenVersion: c.TokenVersion, ExpiresAt: c.ExpiresAt})
	})
	if err != nil {
		return a.unavailable(ctx, "mark credential error", err)
	}
	if marked {
		a.CredentialMetrics.Refresh(workflows.RefreshFailed)
	}
	return nil
}

// ReconcileCredentials starts the token-refresh workflow of every live
// credential that has none running, and tells those of deleted credentials
// to end. The API does both directly; this catches what it missed (Temporal
// away at the time, a workflow that ended).
func (a *Activities) ReconcileCredentials(ctx context.Context) (workflows.ReconcileCredentialsResult, error) {
	var res workflows.ReconcileCredentialsResult
	ids, err := db.LiveCredentialIDs(ctx, a.DB.Bun)
	if err != nil {
		return res, a.unavailable(ctx, "list credentials", err)
	}
	tc := activity.GetClient(ctx)
	running, err := runningTokenRefreshes(ctx, tc)
	if err != nil {
		return res, fmt.Errorf("list token-refresh workflows: %w", err)
	}
	live := make(map[string]bool, len(ids))
	queue := activity.GetInfo(ctx).TaskQueue
	for _, id := range ids {
		wid := workflows.TokenRefreshWorkflowID(id)
		live[wid] = true
		if running[wid] {
			continue
		}
		if err := credentials.StartWorkflow(ctx, tc, queue, id); err != nil {
			return res, err
		}
		res.Started++
	}
	for wid := range running {
		if live[wid] {
			continue
		}
		err := tc.SignalWorkflow(ctx, wid, "", workflows.SignalCredentialChanged, nil)
		if err != nil {
			activity.GetLogger(ctx).Warn("Cannot end the workflow of a deleted credential", "workflow", wid, "error", err)
			continue
		}
		res.Ended++
	}
	if res.Started+res.Ended > 0 {
		activity.GetLogger(ctx).Info("Credential workflows reconciled", "started", res.Started, "ended", res.Ended)
	}
	return res, nil
}

// runningTokenRefreshes lists the running token-refresh workflows by id.
func runningTokenRefreshes(ctx context.Context, tc client.Client) (map[string]bool, error) {
	running := map[string]bool{}
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", workflows.TokenRefreshWorkflowName)
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Executions {
			if e.Status == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
				running[e.Execution.WorkflowId] = true
			}
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return running, nil
		}
	}
}
