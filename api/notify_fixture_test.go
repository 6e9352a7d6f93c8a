package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/testenv"
	"github.com/opsflow/opsflow/worker"
)

const (
	testSecretKeyByte = 5
	testAdminKey      = "opsf-test-admin-key-0123456789"
	// secretMark is in every secret the tests configure, so a test can
	// look for any of them in responses and logs.
	secretMark = "S3CR3T"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// notifyAPI is the API over a fresh database, with (when asked for) the
// package's Temporal dev server and an in-process worker on a task queue of
// its own. Retry intervals are shortened through configuration, exactly as
// an operator would.
type notifyAPI struct {
	e    *echo.Echo
	db   *db.DB
	reg  *prometheus.Registry
	logs *lockedBuffer
	tc   client.Client
	box  *secrets.Box
	cfg  config.Config
}

func newNotifyAPI(t *testing.T, withTemporal bool) *notifyAPI {
	t.Helper()
	key := bytes.Repeat([]byte{testSecretKeyByte}, secrets.KeySize)
	cfg, err := config.Load(func(name string) string {
		return map[string]string{
			"OPSFLOW_SECRET_KEY":                base64.StdEncoding.EncodeToString(key),
			"OPSFLOW_ADMIN_KEY":                 testAdminKey,
			"OPSFLOW_NOTIFY_ALLOW":              "127.0.0.0/8",
			"OPSFLOW_NOTIFY_RETRY_INITIAL":      "200ms",
			"OPSFLOW_NOTIFY_RETRY_MAX_INTERVAL": "1s",
			"OPSFLOW_TASK_QUEUE":                "notify-test-" + uuid.NewString(),
			"OPSFLOW_TEMPORAL_UI_URL":           "http://127.0.0.1:8233",
		}[name]
	})
	require.NoError(t, err)
	env := &notifyAPI{db: testenv.DB(t), reg: prometheus.NewRegistry(), logs: &lockedBuffer{}, cfg: cfg}
	env.box, err = secrets.NewBox(key)
	require.NoError(t, err)
	log := slog.New(slog.NewJSONHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if withTemporal {
		env.tc = testenv.TemporalClient(t)
		acts := &activities.Activities{DB: env.db, Secrets: env.box, Outbound: notify.NewOutbound(cfg.NotifyAllow),
			NotifyMetrics: notify.NewMetrics(env.reg)}
		w := worker.New(env.tc, cfg.TaskQueue, acts)
		require.NoError(t, w.Start())
		t.Cleanup(w.Stop)
	}
	env.e = api.New(api.Deps{Config: cfg, DB: env.db, Temporal: env.tc, Logger: log, Registry: env.reg, Gatherer: env.reg})
	return env
}

// do sends a request as the bootstrap admin (or with the given key) and
// checks that no secret ever comes back.
func (env *notifyAPI) do(t *testing.T, method, path string, body any, key ...string) (int, []byte) {
	t.Helper()
	code, b := serveJSON(t, env.e, method, path, body, key...)
	assert.NotContains(t, string(b), secretMark, "%s %s leaked a secret", method, path)
	return code, b
}

// serveJSON sends body as JSON through e with the bootstrap admin key, or
// the given key ("" sends none), and returns the answer.
func serveJSON(t testing.TB, e http.Handler, method, path string, body any, key ...string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, r)
	bearer := testAdminKey
	if len(key) > 0 {
		bearer = key[0]
	}
	if bearer != "" {
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+bearer)
	}
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(body, &v), string(body))
	return v
}

type channelJSON struct {
	ID             int64           `json:"id"`
	Name           string          `json:"name"`
	Type           string          `json:"type"`
	Config         map[string]any  `json:"config"`
	Retry          json.RawMessage `json:"retry"`
	EffectiveRetry map[string]any  `json:"effective_retry"`
}

type notificationJSON struct {
	ID            string     `json:"id"`
	ChannelID     int64      `json:"channel_id"`
	ChannelType   string     `json:"channel_type"`
	Kind          string     `json:"kind"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error"`
	DeadAt        *time.Time `json:"dead_at"`
	SentAt        *time.Time `json:"sent_at"`
	WorkflowID    string     `json:"workflow_id"`
	TemporalUIURL string     `json:"temporal_ui_url"`
	Live          *liveJSON  `json:"live"`
}

type liveJSON struct {
	State         string `json:"state"`
	Attempts      int    `json:"attempts"`
	MaxAttempts   int    `json:"max_attempts"`
	TotalAttempts int    `json:"total_attempts"`
	Requeues      int    `json:"requeues"`
	LastError     string `json:"last_error"`
}

func (env *notifyAPI) createChannel(t *testing.T, body map[string]any) channelJSON {
	t.Helper()
	code, resp := env.do(t, http.MethodPost, "/api/v1/channels", body)
	require.Equal(t, http.StatusCreated, code, string(resp))
	return decode[channelJSON](t, resp)
}

func (env *notifyAPI) notification(t *testing.T, id string) notificationJSON {
	t.Helper()
	code, resp := env.do(t, http.MethodGet, "/api/v1/notifications/"+id, nil)
	require.Equal(t, http.StatusOK, code, string(resp))
	return decode[notificationJSON](t, resp)
}

// awaitStatus waits for a notification to reach status: a wait for the
// workflow, not a timing assertion.
func (env *notifyAPI) awaitStatus(t *testing.T, id, status string) notificationJSON {
	t.Helper()
	var n notificationJSON
	require.Eventually(t, func() bool {
		n = env.notification(t, id)
		return n.Status == status
	}, time.Minute, 50*time.Millisecond, "notification %s never became %s", id, status)
	return n
}

// awaitLive waits for the workflow's own status query to report state;
// the detail view leaves live out while Temporal is slow to answer.
func (env *notifyAPI) awaitLive(t *testing.T, id, state string) liveJSON {
	t.Helper()
	var live *liveJSON
	require.Eventually(t, func() bool {
		live = env.notification(t, id).Live
		return live != nil && live.State == state
	}, time.Minute, 50*time.Millisecond, "the status query never reported %s", state)
	return *live
}

// storedConfig opens a channel's sealed configuration as the worker does.
func (env *notifyAPI) storedConfig(t *testing.T, id int64) string {
	t.Helper()
	ch, err := db.GetChannel(context.Background(), env.db.Bun, id)
	require.NoError(t, err)
	plain, err := env.box.Open(secrets.Sealed{KeyID: ch.ConfigKeyID, Ciphertext: ch.ConfigSealed})
	require.NoError(t, err)
	return string(plain)
}

func (env *notifyAPI) audit(t *testing.T) []db.AuditEntry {
	t.Helper()
	var entries []db.AuditEntry
	require.NoError(t, env.db.Bun.NewSelect().Model(&entries).Order("id").Scan(context.Background()))
	return entries
}

// metricValue reads one series from /metrics as a scraper would.
func (env *notifyAPI) metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := env.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue series
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// target is a loopback webhook receiver that fails the first failures
// requests with failStatus, then accepts.
type target struct {
	*httptest.Server
	mu         sync.Mutex
	failures   int
	failStatus int
	requests   int
	accepted   int
	keys       map[string]int
}

func newTarget(t *testing.T, failures, failStatus int) *target {
	tg := &target{failures: failures, failStatus: failStatus, keys: map[string]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		tg.mu.Lock()
		defer tg.mu.Unlock()
		tg.requests++
		if tg.failures != 0 {
			if tg.failures > 0 {
				tg.failures--
			}
			w.WriteHeader(tg.failStatus)
			return
		}
		tg.accepted++
		tg.keys[r.Header.Get("Idempotency-Key")]++
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(tg.Close)
	return tg
}

// recover makes the target accept from now on.
func (tg *target) recover() {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.failures = 0
}

func (tg *target) counts() (requests, accepted int, keys map[string]int) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	keys = map[string]int{}
	for k, v := range tg.keys {
		keys[k] = v
	}
	return tg.requests, tg.accepted, keys
}

func (env *notifyAPI) webhookChannel(t *testing.T, tg *target) channelJSON {
	t.Helper()
	return env.createChannel(t, map[string]any{
		"name": "hook-" + uuid.NewString()[:8], "type": "webhook",
		"config": map[string]any{"url": tg.URL + "/hooks/" + secretMark + "-token", "secret": secretMark + "-signing-key"},
	})
}

func (env *notifyAPI) sendTest(t *testing.T, channelID int64) notificationJSON {
	t.Helper()
	code, resp := env.do(t, http.MethodPost, "/api/v1/channels/"+itoa(channelID)+"/test", nil)
	require.Equal(t, http.StatusAccepted, code, string(resp))
	return decode[notificationJSON](t, resp)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
