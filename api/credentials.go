package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/uptrace/bun"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/credentials"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/workflows"
)

// credentialAPI serves /api/v1/credentials (SPEC §8). Secrets are
// write-only: sealed on the way in, never in a response or a log line; only
// the token-scoped access-token endpoint reveals one, and audit-logs it.
type credentialAPI struct {
	s        *Server
	box      *secrets.Box
	outbound *notify.Outbound
}

// Bounds of the refresh endpoint's wait, and of the history shown.
const (
	defaultRefreshWait = 30 * time.Second
	maxRefreshWait     = 2 * time.Minute
	refreshHistory     = 20
	maxRefreshLead     = 24 * time.Hour
)

func (s *Server) credentialRoutes(v1 *echo.Group) {
	box, err := notify.SecretsFromConfig(s.cfg)
	if err != nil {
		s.log.Error("OPSFLOW_SECRET_KEY unusable; credential endpoints answer 503", "err", err)
	}
	h := &credentialAPI{s: s, box: box, outbound: notify.NewOutbound(s.cfg.NotifyAllow)}
	admin := s.requireScope(db.ScopeAdmin)
	v1.GET("/credential-kinds", h.kinds, admin)
	v1.GET("/credentials", h.list, admin)
	v1.POST("/credentials", h.create, admin)
	v1.GET("/credentials/:id", h.get, admin)
	v1.PATCH("/credentials/:id", h.update, admin)
	v1.DELETE("/credentials/:id", h.delete, admin)
	v1.POST("/credentials/:id/refresh", h.refresh, admin)
	v1.GET("/credentials/:id/access-token", h.accessToken, s.requireScope(db.ScopeToken))
}

// credentialInput is the body of POST (all required fields) and PATCH
// (only what changes). Secrets decode into secrets.String, which redacts
// itself in every log line.
type credentialInput struct {
	Name               *string         `json:"name"`
	Kind               *string         `json:"kind"`
	TokenURL           *string         `json:"token_url"`
	ClientID           *string         `json:"client_id"`
	ClientSecret       *secrets.String `json:"client_secret"`
	RefreshToken       *secrets.String `json:"refresh_token"`
	AccessToken        *secrets.String `json:"access_token"`
	ExpiresAt          *time.Time      `json:"expires_at"`
	RefreshLeadSeconds *int            `json:"refresh_lead_seconds"`
}

// credentialView is a credential as clients see it: no secret, only
// whether one is stored.
type credentialView struct {
	ID                 int64         `json:"id"`
	Name               string        `json:"name"`
	Kind               string        `json:"kind"`
	TokenURL           string        `json:"token_url"`
	ClientID           string        `json:"client_id"`
	HasClientSecret    bool          `json:"has_client_secret"`
	HasAccessToken     bool          `json:"has_access_token"`
	ExpiresAt          *time.Time    `json:"expires_at,omitempty"`
	Status             string        `json:"status"`
	LastRefreshedAt    *time.Time    `json:"last_refreshed_at,omitempty"`
	LastError          string        `json:"last_error,omitempty"`
	FailureCount       int           `json:"failure_count"`
	TokenVersion       int64         `json:"token_version"`
	RefreshLeadSeconds int           `json:"refresh_lead_seconds"`
	WorkflowID         string        `json:"workflow_id"`
	CreatedAt          time.Time     `json:"created_at"`
	UpdatedAt          time.Time     `json:"updated_at"`
	Refreshes          []refreshView `json:"refreshes,omitempty"`
}

type refreshView struct {
	At           time.Time  `json:"at"`
	Outcome      string     `json:"outcome"`
	Error        string     `json:"error,omitempty"`
	TokenVersion int64      `json:"token_version"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
}

func viewCredential(c *db.Credential) credentialView {
	return credentialView{ID: c.ID, Name: c.Name, Kind: c.Kind, TokenURL: c.TokenURL, ClientID: c.ClientID,
		HasClientSecret: c.ClientSecretSealed != nil, HasAccessToken: c.AccessTokenSealed != nil,
		ExpiresAt: c.ExpiresAt, Status: c.Status, LastRefreshedAt: c.LastRefreshedAt, LastError: c.LastError,
		FailureCount: c.FailureCount, TokenVersion: c.TokenVersion, RefreshLeadSeconds: c.RefreshLeadSeconds,
		WorkflowID: workflows.TokenRefreshWorkflowID(c.ID), CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

func (h *credentialAPI) kinds(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"kinds": credentials.Presets})
}

func (h *credentialAPI) list(c echo.Context) error {
	rows, err := db.ListCredentials(c.Request().Context(), h.s.db.Bun)
	if err != nil {
		return err
	}
	views := make([]credentialView, len(rows))
	for i := range rows {
		views[i] = viewCredential(&rows[i])
	}
	return c.JSON(http.StatusOK, map[string]any{"credentials": views})
}

func (h *credentialAPI) get(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	row, err := db.GetCredential(ctx, h.s.db.Bun, id)
	if err != nil {
		return err
	}
	hist, err := db.ListCredentialRefreshes(ctx, h.s.db.Bun, id, refreshHistory)
	if err != nil {
		return err
	}
	v := viewCredential(row)
	v.Refreshes = make([]refreshView, len(hist))
	for i, r := range hist {
		v.Refreshes[i] = refreshView{At: r.At, Outcome: r.Outcome, Error: r.Error, TokenVersion: r.TokenVersion, ExpiresAt: r.ExpiresAt}
	}
	return c.JSON(http.StatusOK, v)
}

func (h *credentialAPI) create(c echo.Context) error {
	var in credentialInput
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	var kind string
	if in.Kind != nil {
		kind = *in.Kind
	}
	preset, ok := credentials.PresetFor(kind)
	if !ok {
		return BadParam("kind", "must be one of "+strings.Join(credentials.Kinds(), ", "))
	}
	row := &db.Credential{Kind: preset.Kind, TokenURL: preset.TokenURL, ClientID: preset.ClientID,
		RefreshLeadSeconds: int(workflows.DefaultRefreshLead / time.Second)}
	if in.Name == nil {
		return BadParam("name", "is required")
	}
	if in.RefreshToken == nil {
		return BadParam("refresh_token", "is required")
	}
	ctx := c.Request().Context()
	if err := h.apply(ctx, row, in, preset); err != nil {
		return err
	}
	actor := auditActor(c)
	err := h.s.db.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.CreateCredential(ctx, tx, row); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: actor, Action: db.AuditCredentialCreate,
			Target: credentialTarget(row.ID), Details: map[string]any{"name": row.Name, "kind": row.Kind}})
	})
	if errors.Is(err, db.ErrConflict) {
		return Errorf(http.StatusConflict, "conflict", "a credential named %q exists", row.Name)
	}
	if err != nil {
		return err
	}
	// The credential exists either way: when Temporal is away, the
	// reconcile schedule starts its workflow within 10 minutes.
	if err := credentials.StartWorkflow(ctx, h.s.temporal, h.s.cfg.TaskQueue, row.ID); err != nil {
		h.logTemporal(c, err)
	}
	return c.JSON(http.StatusCreated, viewCredential(row))
}

func (h *credentialAPI) update(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	var in credentialInput
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	ctx := c.Request().Context()
	row, err := db.GetCredential(ctx, h.s.db.Bun, id)
	if err != nil {
		return err
	}
	if in.Kind != nil && *in.Kind != row.Kind {
		return BadParam("kind", "cannot change; create another credential")
	}
	preset, _ := credentials.PresetFor(row.Kind)
	if err := h.apply(ctx, row, in, preset); err != nil {
		return err
	}
	actor := auditActor(c)
	err = h.s.db.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.UpdateCredential(ctx, tx, row, in.RefreshToken != nil || in.AccessToken != nil); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: actor, Action: db.AuditCredentialUpdate,
			Target: credentialTarget(id), Details: map[string]any{"fields": changedFields(in)}})
	})
	if errors.Is(err, db.ErrConflict) {
		return Errorf(http.StatusConflict, "conflict",
			"the credential changed meanwhile (a refresh, or another edit, or its name is taken); reload and retry")
	}
	if err != nil {
		return err
	}
	if err := credentials.Notify(ctx, h.s.temporal, id); err != nil {
		h.logTemporal(c, err)
	}
	return c.JSON(http.StatusOK, viewCredential(row))
}

func (h *credentialAPI) delete(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	actor := auditActor(c)
	err = h.s.db.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.DeleteCredential(ctx, tx, id); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: actor, Action: db.AuditCredentialDelete, Target: credentialTarget(id)})
	})
	if err != nil {
		return err
	}
	// The workflow ends on the signal; without it, the reconcile schedule
	// ends it.
	if err := credentials.Notify(ctx, h.s.temporal, id); err != nil {
		h.logTemporal(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// refreshAnswer is the refresh endpoint's body: the outcome and the
// credential after it.
type refreshAnswer struct {
	Outcome    string         `json:"outcome"`
	Credential credentialView `json:"credential"`
}

// refresh asks the credential's workflow for a refresh with an Update and
// waits for its outcome, at most timeout_seconds: 200 with the outcome, 202
// when the wait ran out (the refresh goes on), 502 when the token endpoint
// refused or kept failing.
func (h *credentialAPI) refresh(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	wait := defaultRefreshWait
	if v := c.QueryParam("timeout_seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || time.Duration(n)*time.Second > maxRefreshWait {
			return BadParam("timeout_seconds", fmt.Sprintf("must be an integer from 1 to %d", int(maxRefreshWait/time.Second)))
		}
		wait = time.Duration(n) * time.Second
	}
	ctx := c.Request().Context()
	row, err := db.GetCredential(ctx, h.s.db.Bun, id)
	if err != nil {
		return err
	}
	if row.Status == db.CredentialDisabled {
		return Errorf(http.StatusConflict, "credential_disabled",
			"the credential is disabled (%s); store a new refresh_token with PATCH", row.LastError)
	}
	err = db.InsertAudit(ctx, h.s.db.Bun, &db.AuditEntry{Actor: auditActor(c), Action: db.AuditCredentialRefresh,
		Target: credentialTarget(id), Details: map[string]any{"token_version": row.TokenVersion}})
	if err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := h.runRefresh(waitCtx, id, workflows.RefreshRequest{Actor: auditActor(c), SeenVersion: row.TokenVersion})
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
	case waitCtx.Err() != nil && ctx.Err() == nil:
		return h.answerRefresh(c, http.StatusAccepted, "pending", id)
	case errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeCredentialRejected:
		return Errorf(http.StatusBadGateway, "refresh_rejected", "the token endpoint refused the credential, now disabled: %s", appErr.Message())
	case errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeCredentialGone:
		return Errorf(http.StatusConflict, "credential_gone", "%s", appErr.Message())
	case errors.As(err, &appErr):
		return Errorf(http.StatusBadGateway, "refresh_failed", "the refresh failed after its retries: %s", appErr.Message())
	default:
		return h.temporalTrouble(c, err)
	}
	return h.answerRefresh(c, http.StatusOK, res.Outcome, id)
}

// runRefresh sends the refresh update and waits for its outcome. A
// credential without a running workflow (Temporal was away at creation)
// gets one first.
func (h *credentialAPI) runRefresh(ctx context.Context, id int64, req workflows.RefreshRequest) (workflows.RefreshResult, error) {
	opts := client.UpdateWorkflowOptions{WorkflowID: workflows.TokenRefreshWorkflowID(id), UpdateName: workflows.UpdateRefresh,
		Args: []any{req}, WaitForStage: client.WorkflowUpdateStageCompleted}
	handle, err := h.s.temporal.UpdateWorkflow(ctx, opts)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		if err := credentials.StartWorkflow(ctx, h.s.temporal, h.s.cfg.TaskQueue, id); err != nil {
			return workflows.RefreshResult{}, err
		}
		handle, err = h.s.temporal.UpdateWorkflow(ctx, opts)
	}
	if err != nil {
		return workflows.RefreshResult{}, err
	}
	var res workflows.RefreshResult
	err = handle.Get(ctx, &res)
	return res, err
}

func (h *credentialAPI) answerRefresh(c echo.Context, status int, outcome string, id int64) error {
	row, err := db.GetCredential(c.Request().Context(), h.s.db.Bun, id)
	if err != nil {
		return err
	}
	return c.JSON(status, refreshAnswer{Outcome: outcome, Credential: viewCredential(row)})
}

// accessTokenView is the one response carrying a secret.
type accessTokenView struct {
	AccessToken  string     `json:"access_token"`
	TokenType    string     `json:"token_type"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	TokenVersion int64      `json:"token_version"`
	Status       string     `json:"status"`
}

// accessToken hands the current access token to a token-scoped caller (the
// gateway). The audit entry is written first: no token leaves unaudited.
func (h *credentialAPI) accessToken(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	if h.box == nil {
		return Errorf(http.StatusServiceUnavailable, "secret_key_missing", "%s", notify.ErrNoSecretKey)
	}
	ctx := c.Request().Context()
	row, err := db.GetCredential(ctx, h.s.db.Bun, id)
	if err != nil {
		return err
	}
	if row.AccessTokenSealed == nil {
		return Errorf(http.StatusConflict, "no_access_token", "the credential has no access token yet (status %s)", row.Status)
	}
	if row.ExpiresAt != nil && !row.ExpiresAt.After(h.s.now()) {
		return Errorf(http.StatusConflict, "access_token_expired",
			"the access token expired at %s (status %s)", row.ExpiresAt.UTC().Format(time.RFC3339), row.Status)
	}
	tok, err := h.box.Open(secrets.Sealed{KeyID: row.AccessTokenKeyID, Ciphertext: row.AccessTokenSealed})
	if err != nil {
		return fmt.Errorf("open access token of credential %d: %w", id, err)
	}
	err = db.InsertAudit(ctx, h.s.db.Bun, &db.AuditEntry{Actor: auditActor(c), Action: db.AuditCredentialAccessToken,
		Target: credentialTarget(id), Details: map[string]any{"token_version": row.TokenVersion}})
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, accessTokenView{AccessToken: string(tok), TokenType: "Bearer",
		ExpiresAt: row.ExpiresAt, TokenVersion: row.TokenVersion, Status: row.Status})
}

// apply validates in and applies it to row, sealing every secret given.
func (h *credentialAPI) apply(ctx context.Context, row *db.Credential, in credentialInput, preset credentials.Preset) error {
	if in.Name != nil {
		name := strings.TrimSpace(*in.Name)
		if name == "" || len(name) > 200 {
			return BadParam("name", "must be 1 to 200 characters")
		}
		row.Name = name
	}
	if in.TokenURL != nil {
		row.TokenURL = strings.TrimSpace(*in.TokenURL)
	}
	if row.TokenURL == "" {
		return BadParam("token_url", "is required for kind "+row.Kind)
	}
	if in.TokenURL != nil {
		// A token endpoint is dialled under the notification SSRF rules
		// (docs/credentials.md); refuse what they would refuse.
		if err := h.outbound.ValidateURL(ctx, row.TokenURL); err != nil {
			var refused *notify.RefusedError
			if errors.As(err, &refused) {
				return BadParam("token_url", refused.Reason)
			}
			return BadParam("token_url", "cannot be checked")
		}
	}
	if in.ClientID != nil {
		row.ClientID = strings.TrimSpace(*in.ClientID)
	}
	if in.RefreshLeadSeconds != nil {
		if *in.RefreshLeadSeconds < 0 || time.Duration(*in.RefreshLeadSeconds)*time.Second > maxRefreshLead {
			return BadParam("refresh_lead_seconds", fmt.Sprintf("must be from 0 to %d", int(maxRefreshLead/time.Second)))
		}
		row.RefreshLeadSeconds = *in.RefreshLeadSeconds
	}
	if (in.AccessToken == nil) != (in.ExpiresAt == nil) {
		return BadParam("expires_at", "must come with access_token, and access_token with it")
	}
	if in.RefreshToken != nil && *in.RefreshToken == "" {
		return BadParam("refresh_token", "must not be empty")
	}
	if in.AccessToken != nil && *in.AccessToken == "" {
		return BadParam("access_token", "must not be empty")
	}
	return h.seal(row, in, preset)
}

// seal stores the given secrets sealed; an empty client_secret removes it.
func (h *credentialAPI) seal(row *db.Credential, in credentialInput, preset credentials.Preset) error {
	if in.ClientSecret != nil || in.RefreshToken != nil || in.AccessToken != nil {
		if h.box == nil {
			return Errorf(http.StatusServiceUnavailable, "secret_key_missing", "%s", notify.ErrNoSecretKey)
		}
	}
	var err error
	sealInto := func(v secrets.String, keyID *string, sealed *[]byte) {
		if err != nil {
			return
		}
		var s secrets.Sealed
		if s, err = h.box.Seal([]byte(v.Reveal())); err == nil {
			*keyID, *sealed = s.KeyID, s.Ciphertext
		}
	}
	if in.ClientSecret != nil {
		row.ClientSecretKeyID, row.ClientSecretSealed = "", nil
		if *in.ClientSecret != "" {
			sealInto(*in.ClientSecret, &row.ClientSecretKeyID, &row.ClientSecretSealed)
		}
	}
	if preset.ClientSecretRequired && row.ClientSecretSealed == nil {
		return BadParam("client_secret", "is required for kind "+row.Kind)
	}
	if in.RefreshToken != nil {
		sealInto(*in.RefreshToken, &row.RefreshTokenKeyID, &row.RefreshTokenSealed)
		// A new refresh token makes the old access token unknown unless
		// one comes with it: the workflow refreshes at once.
		if in.AccessToken == nil {
			row.AccessTokenKeyID, row.AccessTokenSealed, row.ExpiresAt = "", nil, nil
		}
	}
	if in.AccessToken != nil {
		sealInto(*in.AccessToken, &row.AccessTokenKeyID, &row.AccessTokenSealed)
		exp := in.ExpiresAt.UTC()
		row.ExpiresAt = &exp
	}
	if err != nil {
		return fmt.Errorf("seal credential secret: %w", err)
	}
	return nil
}

// changedFields names the fields an edit set, for the audit log (names
// only: never a value).
func changedFields(in credentialInput) []string {
	var fs []string
	for name, set := range map[string]bool{
		"name": in.Name != nil, "token_url": in.TokenURL != nil, "client_id": in.ClientID != nil,
		"client_secret": in.ClientSecret != nil, "refresh_token": in.RefreshToken != nil,
		"access_token": in.AccessToken != nil, "expires_at": in.ExpiresAt != nil,
		"refresh_lead_seconds": in.RefreshLeadSeconds != nil,
	} {
		if set {
			fs = append(fs, name)
		}
	}
	slices.Sort(fs)
	return fs
}

func credentialTarget(id int64) string { return "credential:" + strconv.FormatInt(id, 10) }

// logTemporal logs a failed Temporal call whose work the reconcile schedule
// catches up on.
func (h *credentialAPI) logTemporal(c echo.Context, err error) {
	h.s.log.Warn("temporal call failed", slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
		slog.Any("err", err))
}

// temporalTrouble logs a failed Temporal call that was the request's point,
// and answers 503.
func (h *credentialAPI) temporalTrouble(c echo.Context, err error) error {
	h.logTemporal(c, err)
	return Errorf(http.StatusServiceUnavailable, "unavailable", "Temporal is unavailable; retry later")
}
