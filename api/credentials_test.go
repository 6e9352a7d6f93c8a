package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/credentials"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/worker"
	"github.com/opsflow/opsflow/workflows"
)

// credAPI is the API and a worker over a fresh database and the package's
// Temporal dev server, a task queue of its own, a loopback token endpoint,
// and every log line (API, Temporal client, worker, activities) captured.
type credAPI struct {
	e       *echo.Echo
	db      *db.DB
	reg     *prometheus.Registry
	logs    *lockedBuffer
	tc      client.Client
	cfg     config.Config
	box     *secrets.Box
	server  *testenv.TokenServer
	metrics *credentials.Metrics
}

const credRefreshToken = "rt-0-" + secretMark

func newCredAPI(t testing.TB) *credAPI {
	t.Helper()
	key := bytes.Repeat([]byte{testSecretKeyByte}, secrets.KeySize)
	cfg, err := config.Load(func(name string) string {
		return map[string]string{
			"OPSFLOW_SECRET_KEY":   base64.StdEncoding.EncodeToString(key),
			"OPSFLOW_ADMIN_KEY":    testAdminKey,
			"OPSFLOW_NOTIFY_ALLOW": "127.0.0.0/8",
			"OPSFLOW_TASK_QUEUE":   "credentials-test-" + uuid.NewString(),
		}[name]
	})
	require.NoError(t, err)
	f := &credAPI{db: testenv.DB(t), reg: prometheus.NewRegistry(), logs: &lockedBuffer{}, cfg: cfg,
		server: testenv.NewTokenServer(t, credRefreshToken, time.Hour, true)}
	f.box, err = secrets.NewBox(key)
	require.NoError(t, err)
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.tc, err = client.Dial(client.Options{HostPort: testenv.TemporalAddress(t), Namespace: "default",
		Logger: tlog.NewStructuredLogger(log)})
	require.NoError(t, err)
	t.Cleanup(f.tc.Close)
	f.metrics = credentials.NewMetrics(f.reg)
	f.reg.MustRegister(credentials.NewCollector(f.db, log, time.Now))
	f.e = api.New(api.Deps{Config: cfg, DB: f.db, Temporal: f.tc, Logger: log, Registry: f.reg, Gatherer: f.reg})
	t.Cleanup(func() { assert.NotContains(t, f.logs.String(), secretMark, "a secret reached the logs") })
	return f
}

// startWorker runs a worker on the fixture's task queue until the test ends.
func (f *credAPI) startWorker(t testing.TB) {
	t.Helper()
	acts := &activities.Activities{DB: f.db, Secrets: f.box, Outbound: notify.NewOutbound(f.cfg.NotifyAllow),
		CredentialMetrics: f.metrics}
	w := worker.New(f.tc, f.cfg.TaskQueue, acts)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}

// do sends a request with the bootstrap admin key (or the given one) and
// checks that no secret comes back.
func (f *credAPI) do(t testing.TB, method, path string, body any, key ...string) (int, []byte) {
	t.Helper()
	code, b := serveJSON(t, f.e, method, path, body, key...)
	assert.NotContains(t, string(b), secretMark, "%s %s leaked a secret", method, path)
	return code, b
}

type credentialJSON struct {
	ID              int64      `json:"id"`
	Name            string     `json:"name"`
	Kind            string     `json:"kind"`
	TokenURL        string     `json:"token_url"`
	ClientID        string     `json:"client_id"`
	HasClientSecret bool       `json:"has_client_secret"`
	HasAccessToken  bool       `json:"has_access_token"`
	ExpiresAt       *time.Time `json:"expires_at"`
	Status          string     `json:"status"`
	LastRefreshedAt *time.Time `json:"last_refreshed_at"`
	LastError       string     `json:"last_error"`
	FailureCount    int        `json:"failure_count"`
	TokenVersion    int64      `json:"token_version"`
	RefreshLead     int        `json:"refresh_lead_seconds"`
	WorkflowID      string     `json:"workflow_id"`
	Refreshes       []struct {
		Outcome string `json:"outcome"`
	} `json:"refreshes"`
}

// create stores a credential through the API; extra fields override the
// defaults.
func (f *credAPI) create(t testing.TB, extra map[string]any) credentialJSON {
	t.Helper()
	body := map[string]any{"name": "claude-" + uuid.NewString()[:8], "kind": credentials.KindOAuth2,
		"token_url": f.server.TokenURL, "client_id": "opsflow", "client_secret": "cs-" + secretMark,
		"refresh_token": credRefreshToken}
	for k, v := range extra {
		body[k] = v
	}
	code, b := f.do(t, http.MethodPost, "/api/v1/credentials", body)
	require.Equal(t, http.StatusCreated, code, string(b))
	var c credentialJSON
	require.NoError(t, json.Unmarshal(b, &c))
	// Every test's database numbers credentials from 1, but the dev server
	// is the package's: end the workflow, or the next test's credential 1
	// would find it running on this test's task queue.
	t.Cleanup(func() {
		_ = f.tc.TerminateWorkflow(context.Background(), c.WorkflowID, "", "test ended")
	})
	return c
}

func (f *credAPI) get(t *testing.T, id int64) credentialJSON {
	t.Helper()
	code, b := f.do(t, http.MethodGet, fmt.Sprintf("/api/v1/credentials/%d", id), nil)
	require.Equal(t, http.StatusOK, code, string(b))
	return decode[credentialJSON](t, b)
}

// eventually polls the credential until cond holds.
func (f *credAPI) eventually(t *testing.T, id int64, cond func(credentialJSON) bool, msg string) credentialJSON {
	t.Helper()
	var c credentialJSON
	require.Eventually(t, func() bool { c = f.get(t, id); return cond(c) }, 30*time.Second, 50*time.Millisecond, msg)
	return c
}

func (f *credAPI) workflowStatus(t *testing.T, id int64) workflows.TokenRefreshStatus {
	t.Helper()
	v, err := f.tc.QueryWorkflow(context.Background(), workflows.TokenRefreshWorkflowID(id), "", workflows.QueryStatus)
	require.NoError(t, err)
	var st workflows.TokenRefreshStatus
	require.NoError(t, v.Get(&st))
	return st
}

func (f *credAPI) metric(t *testing.T, line string) bool {
	t.Helper()
	_, b := f.do(t, http.MethodGet, "/metrics", nil)
	return strings.Contains(string(b), line)
}

func TestCredentialLifecycleThroughTheAPI(t *testing.T) {
	f := newCredAPI(t)
	f.startWorker(t)
	ctx := context.Background()

	c := f.create(t, map[string]any{"refresh_lead_seconds": 600})
	assert.True(t, c.HasClientSecret)
	assert.Equal(t, workflows.TokenRefreshWorkflowID(c.ID), c.WorkflowID)
	// Without an access token the workflow refreshes at once.
	c = f.eventually(t, c.ID, func(c credentialJSON) bool { return c.HasAccessToken }, "first refresh")
	assert.Equal(t, db.CredentialActive, c.Status)
	assert.Equal(t, int64(1), c.TokenVersion)
	require.NotNil(t, c.ExpiresAt)
	st := f.workflowStatus(t, c.ID)
	require.NotNil(t, st.NextRefreshAt, "sleeping until the lead before expiry")
	assert.Equal(t, c.ExpiresAt.Add(-10*time.Minute).Unix(), st.NextRefreshAt.Unix())

	// The access token: scope token only, audit-logged, never cached.
	tokenKey, _, err := db.CreateAPIKey(ctx, f.db.Bun, "gateway", []string{db.ScopeToken})
	require.NoError(t, err)
	adminKey, _, err := db.CreateAPIKey(ctx, f.db.Bun, "ops", []string{db.ScopeAdmin})
	require.NoError(t, err)
	tokenPath := fmt.Sprintf("/api/v1/credentials/%d/access-token", c.ID)
	code, _ := f.do(t, http.MethodGet, tokenPath, nil, adminKey)
	assert.Equal(t, http.StatusForbidden, code)
	code, b := f.do(t, http.MethodGet, fmt.Sprintf("/api/v1/credentials/%d", c.ID), nil, tokenKey)
	assert.Equal(t, http.StatusForbidden, code, string(b))
	code, b = serveJSON(t, f.e, http.MethodGet, tokenPath, nil, tokenKey)
	require.Equal(t, http.StatusOK, code, string(b))
	tok := decode[struct {
		AccessToken  string `json:"access_token"`
		TokenVersion int64  `json:"token_version"`
	}](t, b)
	assert.Equal(t, testenv.AccessToken(1), tok.AccessToken)
	var audits []db.AuditEntry
	require.NoError(t, f.db.Bun.NewSelect().Model(&audits).Where("target = ?", fmt.Sprintf("credential:%d", c.ID)).Order("id").Scan(ctx))
	var actions []string
	for _, a := range audits {
		actions = append(actions, a.Action)
	}
	assert.Equal(t, []string{db.AuditCredentialCreate, db.AuditCredentialAccessToken}, actions)

	// Refresh now: waits for the outcome; the rotated token is used.
	code, b = f.do(t, http.MethodPost, fmt.Sprintf("/api/v1/credentials/%d/refresh?timeout_seconds=30", c.ID), nil)
	require.Equal(t, http.StatusOK, code, string(b))
	ans := decode[struct {
		Outcome    string         `json:"outcome"`
		Credential credentialJSON `json:"credential"`
	}](t, b)
	assert.Equal(t, workflows.RefreshRefreshed, ans.Outcome)
	assert.Equal(t, int64(2), ans.Credential.TokenVersion)
	assert.Equal(t, 2, f.server.Calls())
	got := f.get(t, c.ID)
	require.Len(t, got.Refreshes, 2)
	assert.Equal(t, workflows.RefreshRefreshed, got.Refreshes[0].Outcome)

	// Edits: fields named on error, nothing changed.
	code, b = f.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/credentials/%d", c.ID), map[string]any{"kind": "openai-codex"})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, string(b), `"kind"`)
	code, b = f.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/credentials/%d", c.ID), map[string]any{"refresh_lead_seconds": 120, "name": "renamed"})
	require.Equal(t, http.StatusOK, code, string(b))
	assert.Equal(t, 120, decode[credentialJSON](t, b).RefreshLead)
	assert.Equal(t, "renamed", decode[credentialJSON](t, b).Name)
	require.Eventually(t, func() bool {
		st := f.workflowStatus(t, c.ID)
		return st.NextRefreshAt != nil && st.NextRefreshAt.Equal(got.ExpiresAt.Add(-2*time.Minute))
	}, 30*time.Second, 50*time.Millisecond, "the workflow re-reads the lead")
	assert.True(t, f.metric(t, `opsflow_credentials{status="active"} 1`))
	assert.True(t, f.metric(t, `opsflow_credential_expiry_seconds{credential="renamed"}`))

	// Delete: the workflow ends.
	code, _ = f.do(t, http.MethodDelete, fmt.Sprintf("/api/v1/credentials/%d", c.ID), nil)
	assert.Equal(t, http.StatusNoContent, code)
	require.Eventually(t, func() bool {
		d, err := f.tc.DescribeWorkflowExecution(ctx, workflows.TokenRefreshWorkflowID(c.ID), "")
		return err == nil && d.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	}, 30*time.Second, 50*time.Millisecond)
	code, _ = f.do(t, http.MethodGet, fmt.Sprintf("/api/v1/credentials/%d", c.ID), nil)
	assert.Equal(t, http.StatusNotFound, code)
	assert.True(t, f.metric(t, `opsflow_credentials{status="active"} 0`))
}

func TestCredentialInputIsValidatedByField(t *testing.T) {
	f := newCredAPI(t)
	base := map[string]any{"name": "x", "kind": "oauth2", "token_url": f.server.TokenURL, "refresh_token": credRefreshToken}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range base {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{with("kind", "nope"), "kind"},
		{with("name", nil), "name"},
		{with("refresh_token", nil), "refresh_token"},
		{with("token_url", "http://10.1.2.3/token"), "token_url"},
		{with("token_url", "ftp://127.0.0.1/token"), "token_url"},
		{with("refresh_lead_seconds", -1), "refresh_lead_seconds"},
		{with("access_token", "at-"+secretMark), "expires_at"},
		{with("kind", "google-gemini-cli"), "client_secret"},
		{with("surprise", 1), "body"},
	} {
		code, b := f.do(t, http.MethodPost, "/api/v1/credentials", tc.body)
		assert.Equal(t, http.StatusBadRequest, code, "%v: %s", tc.body, b)
		assert.Equal(t, tc.field, decode[errorJSON](t, b).Error.Details["parameter"], string(b))
	}
	code, b := f.do(t, http.MethodGet, "/api/v1/credentials", nil)
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"credentials": []}`, string(b), "nothing was stored")

	// A preset fills the token URL and client id.
	code, b = f.do(t, http.MethodGet, "/api/v1/credential-kinds", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(b), "https://auth.openai.com/oauth/token")
}

// Two refresh requests at once, while the token endpoint holds the first
// call: the second joins the refresh in flight.
func TestCredentialConcurrentRefreshesCallTheEndpointOnce(t *testing.T) {
	f := newCredAPI(t)
	f.startWorker(t)
	c := f.create(t, map[string]any{"access_token": "at-seed-" + secretMark, "expires_at": time.Now().Add(24 * time.Hour)})
	require.Eventually(t, func() bool { return f.workflowStatus(t, c.ID).NextRefreshAt != nil }, 30*time.Second, 50*time.Millisecond)
	f.server.Hold()

	var wg sync.WaitGroup
	codes := make([]int, 2)
	bodies := make([][]byte, 2)
	for i := range codes {
		wg.Go(func() {
			codes[i], bodies[i] = f.do(t, http.MethodPost, fmt.Sprintf("/api/v1/credentials/%d/refresh", c.ID), nil)
		})
	}
	<-f.server.Arrived()
	require.Eventually(t, func() bool { return f.workflowStatus(t, c.ID).Waiting == 2 }, 30*time.Second, 20*time.Millisecond,
		"both requests wait on the refresh in flight")
	f.server.Release()
	wg.Wait()

	for i := range codes {
		require.Equal(t, http.StatusOK, codes[i], string(bodies[i]))
		assert.Contains(t, string(bodies[i]), `"outcome":"refreshed"`)
	}
	assert.Equal(t, 1, f.server.Calls(), "one call to the token endpoint")
	assert.Equal(t, int64(1), f.get(t, c.ID).TokenVersion)
}

// Transient failures are retried under the jittered backoff, inside one
// refresh request, and leave no failure behind once it succeeds.
func TestCredentialTransientFailuresAreRetried(t *testing.T) {
	f := newCredAPI(t)
	f.startWorker(t)
	c := f.create(t, map[string]any{"access_token": "at-seed-" + secretMark, "expires_at": time.Now().Add(24 * time.Hour)})
	f.server.Script(http.StatusInternalServerError, http.StatusServiceUnavailable)

	code, b := f.do(t, http.MethodPost, fmt.Sprintf("/api/v1/credentials/%d/refresh?timeout_seconds=60", c.ID), nil)
	require.Equal(t, http.StatusOK, code, string(b))
	assert.Contains(t, string(b), `"outcome":"refreshed"`)
	assert.Equal(t, 3, f.server.Calls())
	got := f.get(t, c.ID)
	assert.Equal(t, db.CredentialActive, got.Status)
	assert.Zero(t, got.FailureCount)
	assert.Empty(t, got.LastError)
	var outcomes []string
	for _, r := range got.Refreshes {
		outcomes = append(outcomes, r.Outcome)
	}
	assert.Equal(t, []string{workflows.RefreshRefreshed, workflows.RefreshTransient, workflows.RefreshTransient}, outcomes)
	assert.True(t, f.metric(t, `opsflow_credential_refreshes_total{outcome="transient"} 2`))
}

// invalid_grant disables the credential and records the failure the
// alerting rule "failed credential refresh" counts.
func TestCredentialInvalidGrantDisablesAndIsCounted(t *testing.T) {
	f := newCredAPI(t)
	f.startWorker(t)
	c := f.create(t, map[string]any{"access_token": "at-seed-" + secretMark, "expires_at": time.Now().Add(24 * time.Hour)})
	f.server.Revoke()

	code, b := f.do(t, http.MethodPost, fmt.Sprintf("/api/v1/credentials/%d/refresh", c.ID), nil)
	require.Equal(t, http.StatusBadGateway, code, string(b))
	assert.Equal(t, "refresh_rejected", decode[errorJSON](t, b).Error.Code)
	got := f.get(t, c.ID)
	assert.Equal(t, db.CredentialDisabled, got.Status)
	assert.Equal(t, 1, got.FailureCount)
	assert.Contains(t, got.LastError, "invalid_grant")
	assert.Equal(t, 1, f.server.Calls(), "never retried")
	var failing int
	require.NoError(t, f.db.Bun.NewSelect().Model((*db.Credential)(nil)).ColumnExpr("count(*)").
		Where("status IN (?, ?)", db.CredentialError, db.CredentialDisabled).Where("deleted_at IS NULL").Scan(context.Background(), &failing))
	assert.Equal(t, 1, failing)
	assert.True(t, f.metric(t, `opsflow_credentials{status="disabled"} 1`))
	assert.True(t, f.metric(t, `opsflow_credential_refreshes_total{outcome="rejected"} 1`))
	require.Eventually(t, func() bool { return f.workflowStatus(t, c.ID).State == db.CredentialDisabled }, 30*time.Second, 50*time.Millisecond)
	assert.Nil(t, f.workflowStatus(t, c.ID).NextRefreshAt, "a disabled credential is not retried")

	code, b = f.do(t, http.MethodPost, fmt.Sprintf("/api/v1/credentials/%d/refresh", c.ID), nil)
	assert.Equal(t, http.StatusConflict, code)
	assert.Equal(t, "credential_disabled", decode[errorJSON](t, b).Error.Code)
}

// The reconcile schedule's workflow starts the workflow of a credential that
// has none (Temporal was away when it was created) and ends the workflow of
// a credential deleted behind the API's back.
func TestCredentialReconcileStartsMissingAndEndsDeleted(t *testing.T) {
	f := newCredAPI(t)
	f.startWorker(t)
	ctx := context.Background()
	deleted := f.create(t, map[string]any{"access_token": "at-seed-" + secretMark, "expires_at": time.Now().Add(24 * time.Hour)})
	require.Eventually(t, func() bool { return f.workflowStatus(t, deleted.ID).NextRefreshAt != nil }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, db.DeleteCredential(ctx, f.db.Bun, deleted.ID))
	rt, err := f.box.Seal([]byte(credRefreshToken))
	require.NoError(t, err)
	missing := &db.Credential{Name: "missing", Kind: credentials.KindOAuth2, TokenURL: f.server.TokenURL,
		RefreshTokenKeyID: rt.KeyID, RefreshTokenSealed: rt.Ciphertext, RefreshLeadSeconds: 600}
	require.NoError(t, db.CreateCredential(ctx, f.db.Bun, missing))
	t.Cleanup(func() {
		_ = f.tc.TerminateWorkflow(context.Background(), workflows.TokenRefreshWorkflowID(missing.ID), "", "test ended")
	})
	// Visibility lags a little behind the start.
	require.Eventually(t, func() bool {
		resp, err := f.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowId = '%s' AND ExecutionStatus = 'Running'", deleted.WorkflowID)})
		return err == nil && len(resp.Executions) == 1
	}, 30*time.Second, 100*time.Millisecond)

	run, err := f.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: f.cfg.TaskQueue},
		workflows.CredentialsReconcileWorkflowName)
	require.NoError(t, err)
	var res workflows.ReconcileCredentialsResult
	require.NoError(t, run.Get(ctx, &res))
	assert.Equal(t, workflows.ReconcileCredentialsResult{Started: 1, Ended: 1}, res)

	require.Eventually(t, func() bool {
		d, err := f.tc.DescribeWorkflowExecution(ctx, deleted.WorkflowID, "")
		return err == nil && d.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	}, 30*time.Second, 50*time.Millisecond, "the deleted credential's workflow ended")
	got := f.eventually(t, missing.ID, func(c credentialJSON) bool { return c.HasAccessToken }, "the started workflow refreshed")
	assert.Equal(t, db.CredentialActive, got.Status)
}

// BenchmarkCredentialRefresh: credentials refreshed through
// POST /api/v1/credentials/{id}/refresh end to end (API, Temporal Update,
// workflow, RefreshCredential with its row writes, loopback token endpoint),
// by one caller per credential, and by two concurrent callers per
// credential (calls/credential shows how many reached the endpoint).
func BenchmarkCredentialRefresh(b *testing.B) {
	const credentialsPerRun, fan = 50, 16
	for _, callers := range []int{1, 2} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			f := newCredAPI(b)
			// Every credential here holds the same refresh token: the
			// endpoint must not rotate it.
			f.server = testenv.NewTokenServer(b, credRefreshToken, time.Hour, false)
			f.startWorker(b)
			ids := make([]int64, credentialsPerRun)
			for i := range ids {
				ids[i] = f.create(b, map[string]any{"access_token": "at-seed-" + secretMark,
					"expires_at": time.Now().Add(24 * time.Hour)}).ID
			}
			for range b.N {
				before := f.server.Calls()
				jobs := make(chan int64)
				var wg sync.WaitGroup
				var mu sync.Mutex
				failed := 0
				start := time.Now()
				for range fan {
					wg.Go(func() {
						for id := range jobs {
							code, body := f.do(b, http.MethodPost, fmt.Sprintf("/api/v1/credentials/%d/refresh", id), nil)
							if code != http.StatusOK {
								mu.Lock()
								failed++
								if failed == 1 {
									b.Log(code, string(body))
								}
								mu.Unlock()
							}
						}
					})
				}
				for _, id := range ids {
					for range callers {
						jobs <- id
					}
				}
				close(jobs)
				wg.Wait()
				elapsed := time.Since(start)
				require.Zero(b, failed)
				b.ReportMetric(float64(credentialsPerRun*callers)/elapsed.Seconds(), "requests/s")
				b.ReportMetric(float64(f.server.Calls()-before)/credentialsPerRun, "calls/credential")
			}
		})
	}
}
