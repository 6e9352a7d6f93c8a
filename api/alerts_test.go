package api_test

import (
	"context"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/workflows"
)

type ruleJSON struct {
	ID            int64             `json:"id"`
	Name          string            `json:"name"`
	Metric        string            `json:"metric"`
	Operator      string            `json:"operator"`
	Warning       float64           `json:"warning"`
	Critical      float64           `json:"critical"`
	Window        string            `json:"window"`
	For           string            `json:"for"`
	KeepFiringFor string            `json:"keep_firing_for"`
	GroupBy       []string          `json:"group_by"`
	Channels      []map[string]any  `json:"channels"`
	Annotations   map[string]string `json:"annotations"`
	Enabled       bool              `json:"enabled"`
	Version       int               `json:"version"`
}

func webhookBody(name string) map[string]any {
	return map[string]any{"name": name, "type": "webhook", "config": map[string]any{"url": "http://127.0.0.1:9/hook"}}
}

func validRule(channelID int64) map[string]any {
	return map[string]any{
		"name": "openai errors", "metric": "error_rate", "warning": 0.05, "for": "2m", "keep_firing_for": "5m",
		"min_samples": 20, "group_by": []string{"provider"}, "filters": map[string]string{"tenant": "acme"},
		"channels":    []map[string]any{{"channel_id": channelID}},
		"annotations": map[string]string{"runbook_url": "https://runbooks.example/errors"},
	}
}

func TestAlertRuleLifecycleAudited(t *testing.T) {
	env := newNotifyAPI(t, false)
	ch := env.createChannel(t, webhookBody("alerts"))

	code, body := env.do(t, http.MethodPost, "/api/v1/alert-rules", validRule(ch.ID))
	require.Equal(t, http.StatusCreated, code, string(body))
	rule := decode[ruleJSON](t, body)
	assert.Equal(t, ">", rule.Operator)
	assert.InDelta(t, 0.1, rule.Critical, 1e-12, "critical defaults to 2x warning")
	assert.Equal(t, "5m0s", rule.Window, "default window")
	assert.Equal(t, "2m0s", rule.For)
	assert.Equal(t, []map[string]any{{"channel_id": float64(ch.ID), "min_severity": "warning"}}, rule.Channels)
	assert.True(t, rule.Enabled)
	assert.Equal(t, 1, rule.Version)

	code, _ = env.do(t, http.MethodPost, "/api/v1/alert-rules", validRule(ch.ID))
	assert.Equal(t, http.StatusConflict, code, "names are unique")

	edit := validRule(ch.ID)
	edit["warning"], edit["critical"] = 0.1, 0.3
	code, body = env.do(t, http.MethodPut, "/api/v1/alert-rules/"+itoa(rule.ID), edit)
	require.Equal(t, http.StatusOK, code, string(body))
	updated := decode[ruleJSON](t, body)
	assert.Equal(t, 2, updated.Version)
	assert.InDelta(t, 0.3, updated.Critical, 1e-12)

	code, body = env.do(t, http.MethodGet, "/api/v1/alert-rules", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, decode[struct{ Rules []ruleJSON }](t, body).Rules, 1)

	code, _ = env.do(t, http.MethodDelete, "/api/v1/alert-rules/"+itoa(rule.ID), nil)
	assert.Equal(t, http.StatusNoContent, code)
	code, _ = env.do(t, http.MethodGet, "/api/v1/alert-rules/"+itoa(rule.ID), nil)
	assert.Equal(t, http.StatusNotFound, code)

	var actions []string
	for _, e := range env.audit(t) {
		if e.Target == "alert_rule:"+itoa(rule.ID) {
			actions = append(actions, e.Action)
		}
	}
	assert.Equal(t, []string{db.AuditAlertRuleCreate, db.AuditAlertRuleUpdate, db.AuditAlertRuleDelete}, actions)
}

func TestAlertRuleValidationNamesTheField(t *testing.T) {
	env := newNotifyAPI(t, false)
	ch := env.createChannel(t, webhookBody("alerts"))
	tests := []struct {
		name  string
		edit  map[string]any
		field string
	}{
		{"unknown metric", map[string]any{"metric": "vibes"}, "metric"},
		{"unknown operator", map[string]any{"operator": "!="}, "operator"},
		{"no warning", map[string]any{"warning": nil}, "warning"},
		{"critical below warning", map[string]any{"critical": 0.01}, "critical"},
		{"critical above warning for <", map[string]any{"operator": "<", "critical": 0.5}, "critical"},
		{"window under a minute", map[string]any{"window": "30s"}, "window"},
		{"window not whole minutes", map[string]any{"window": "90s"}, "window"},
		{"for over 24 h", map[string]any{"for": "25h"}, "for"},
		{"negative keep_firing_for", map[string]any{"keep_firing_for": "-1m"}, "keep_firing_for"},
		{"bad duration", map[string]any{"repeat_interval": "soon"}, "body"},
		{"negative min_samples", map[string]any{"min_samples": -1}, "min_samples"},
		{"unknown group", map[string]any{"group_by": []string{"region"}}, "group_by[0]"},
		{"unknown filter", map[string]any{"filters": map[string]string{"region": "eu"}}, "filters.region"},
		{"quota without kind", map[string]any{"metric": "quota_usage", "group_by": nil}, "params.quota"},
		{"quota kind on another metric", map[string]any{"params": map[string]any{"quota": "rpm"}}, "params.quota"},
		{"missing channel", map[string]any{"channels": []map[string]any{{"channel_id": ch.ID + 100}}}, "channels[0].channel_id"},
		{"bad min_severity", map[string]any{"channels": []map[string]any{{"channel_id": ch.ID, "min_severity": "info"}}}, "channels[0].min_severity"},
		{"runbook not a URL", map[string]any{"annotations": map[string]string{"runbook_url": "javascript:alert(1)"}}, "annotations.runbook_url"},
		{"unknown field", map[string]any{"threshold": 3}, "body"},
		{"empty name", map[string]any{"name": " "}, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := validRule(ch.ID)
			maps.Copy(body, tt.edit)
			code, resp := env.do(t, http.MethodPost, "/api/v1/alert-rules", body)
			require.Equal(t, http.StatusBadRequest, code, string(resp))
			assert.Equal(t, tt.field, decode[errorJSON](t, resp).Error.Details["parameter"], string(resp))
		})
	}
	rules, err := db.ListAlertRules(context.Background(), env.db.Bun)
	require.NoError(t, err)
	assert.Empty(t, rules, "bad input changes nothing")
}

type alertJSON struct {
	Fingerprint   string `json:"fingerprint"`
	State         string `json:"state"`
	Severity      string `json:"severity"`
	AckedBy       string `json:"acked_by"`
	AckComment    string `json:"ack_comment"`
	TemporalUIURL string `json:"temporal_ui_url"`
}

type historyJSON struct {
	Alert  alertJSON `json:"alert"`
	Events []struct {
		From     string `json:"from"`
		To       string `json:"to"`
		Severity string `json:"severity"`
		Notified bool   `json:"notified"`
		Actor    string `json:"actor"`
		Comment  string `json:"comment"`
	} `json:"events"`
	NextCursor string `json:"next_cursor"`
}

// seedAlert stores an alert of a new rule in state, with one event, as an
// evaluation would.
func seedAlert(t *testing.T, env *notifyAPI, name, state, severity string) string {
	t.Helper()
	ctx := context.Background()
	r := &db.AlertRule{Name: name, Metric: workflows.MetricErrorRate, Operator: ">", Warning: 0.1, Critical: 0.2,
		WindowSeconds: 300, Enabled: true}
	require.NoError(t, db.CreateAlertRule(ctx, env.db.Bun, r))
	labels := map[string]string{"provider": name}
	fp := workflows.AlertFingerprint(r.UID, labels)
	minute := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	ok, err := db.PutAlert(ctx, env.db.Bun, &db.Alert{Fingerprint: fp, RuleID: r.ID, Labels: labels, State: state, Severity: severity,
		Value: 0.3, FiringSince: &minute, LastEvalMinute: minute, Seq: 1, Version: 1}, 0, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, db.InsertAlertEvents(ctx, env.db.Bun, []db.AlertEvent{{At: minute, Fingerprint: fp, RuleID: r.ID,
		FromState: "ok", ToState: state, Severity: severity, Labels: labels, EventKey: "n1", Notified: true}}))
	return fp
}

func TestAlertsListHistoryAndAck(t *testing.T) {
	env := newNotifyAPI(t, false)
	firing := seedAlert(t, env, "openai", workflows.AlertFiring, workflows.SeverityCritical)
	seedAlert(t, env, "anthropic", workflows.AlertPending, workflows.SeverityWarning)
	resolved := seedAlert(t, env, "gemini", workflows.AlertResolved, workflows.SeverityWarning)

	list := func(query string) []string {
		code, body := env.do(t, http.MethodGet, "/api/v1/alerts"+query, nil)
		require.Equal(t, http.StatusOK, code, string(body))
		var fps []string
		for _, a := range decode[struct{ Alerts []alertJSON }](t, body).Alerts {
			fps = append(fps, a.Fingerprint)
		}
		return fps
	}
	assert.Len(t, list(""), 2, "active: pending and firing")
	assert.Equal(t, []string{firing}, list("?severity=critical"))
	assert.Equal(t, []string{firing}, list("?state=firing"))
	assert.Len(t, list("?state=all"), 3)
	for _, q := range []string{"?state=sleeping", "?severity=info", "?rule=x", "?limit=0"} {
		code, _ := env.do(t, http.MethodGet, "/api/v1/alerts"+q, nil)
		assert.Equal(t, http.StatusBadRequest, code, q)
	}

	code, body := env.do(t, http.MethodPost, "/api/v1/alerts/"+firing+"/ack", map[string]string{"comment": "on it"})
	require.Equal(t, http.StatusOK, code, string(body))
	acked := decode[alertJSON](t, body)
	assert.Equal(t, "on it", acked.AckComment)
	assert.Contains(t, acked.AckedBy, "bootstrap")
	assert.Contains(t, acked.TemporalUIURL, "OpsflowAlertFingerprint")

	code, body = env.do(t, http.MethodGet, "/api/v1/alerts/"+firing+"/history", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	h := decode[historyJSON](t, body)
	require.Len(t, h.Events, 2)
	assert.Equal(t, "firing", h.Events[0].To)
	assert.True(t, h.Events[0].Notified)
	assert.Equal(t, "on it", h.Events[1].Comment, "the acknowledgement is history too")
	assert.Contains(t, h.Events[1].Actor, "bootstrap")

	code, body = env.do(t, http.MethodPost, "/api/v1/alerts/"+resolved+"/ack", nil)
	assert.Equal(t, http.StatusConflict, code, string(body))
	code, _ = env.do(t, http.MethodPost, "/api/v1/alerts/"+workflows.AlertFingerprint("missing", nil)+"/ack", nil)
	assert.Equal(t, http.StatusNotFound, code)
	code, body = env.do(t, http.MethodGet, "/api/v1/alerts/not-a-fingerprint/history", nil)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Equal(t, "fingerprint", decode[errorJSON](t, body).Error.Details["parameter"])

	code, _ = env.do(t, http.MethodGet, "/api/v1/alerts", nil, "")
	assert.Equal(t, http.StatusUnauthorized, code)
}

type silenceJSON struct {
	ID        int64             `json:"id"`
	RuleID    int64             `json:"rule_id"`
	Matchers  map[string]string `json:"matchers"`
	EndsAt    time.Time         `json:"ends_at"`
	CreatedBy string            `json:"created_by"`
	Comment   string            `json:"comment"`
}

func TestSilencesCRUDAndValidation(t *testing.T) {
	env := newNotifyAPI(t, false)
	ends := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	body := map[string]any{"matchers": map[string]string{"provider": "openai"}, "ends_at": ends, "comment": "maintenance"}
	code, resp := env.do(t, http.MethodPost, "/api/v1/silences", body)
	require.Equal(t, http.StatusCreated, code, string(resp))
	sil := decode[silenceJSON](t, resp)
	assert.Contains(t, sil.CreatedBy, "bootstrap")
	assert.True(t, ends.Equal(sil.EndsAt))

	tests := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"matches everything", map[string]any{"ends_at": ends}, "matchers"},
		{"no end", map[string]any{"matchers": map[string]string{"a": "b"}}, "ends_at"},
		{"ended", map[string]any{"matchers": map[string]string{"a": "b"}, "ends_at": time.Now().Add(-time.Minute)}, "ends_at"},
		{"unknown rule", map[string]any{"rule_id": 12345, "ends_at": ends}, "rule_id"},
	}
	for _, tt := range tests {
		code, resp := env.do(t, http.MethodPost, "/api/v1/silences", tt.body)
		require.Equal(t, http.StatusBadRequest, code, tt.name)
		assert.Equal(t, tt.field, decode[errorJSON](t, resp).Error.Details["parameter"], tt.name)
	}

	body["comment"] = "longer maintenance"
	code, resp = env.do(t, http.MethodPut, "/api/v1/silences/"+itoa(sil.ID), body)
	require.Equal(t, http.StatusOK, code, string(resp))
	assert.Equal(t, "longer maintenance", decode[silenceJSON](t, resp).Comment)

	code, resp = env.do(t, http.MethodGet, "/api/v1/silences", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, decode[struct{ Silences []silenceJSON }](t, resp).Silences, 1)
	code, _ = env.do(t, http.MethodDelete, "/api/v1/silences/"+itoa(sil.ID), nil)
	assert.Equal(t, http.StatusNoContent, code)
	code, _ = env.do(t, http.MethodGet, "/api/v1/silences/"+itoa(sil.ID), nil)
	assert.Equal(t, http.StatusNotFound, code)
}

func TestQuotas(t *testing.T) {
	env := newNotifyAPI(t, false)
	code, resp := env.do(t, http.MethodPut, "/api/v1/quotas/acme/rpm", map[string]any{"limit": 600})
	require.Equal(t, http.StatusOK, code, string(resp))
	code, _ = env.do(t, http.MethodPut, "/api/v1/quotas/acme/rpm", map[string]any{"limit": 900})
	require.Equal(t, http.StatusOK, code)

	code, resp = env.do(t, http.MethodGet, "/api/v1/quotas?tenant=acme", nil)
	require.Equal(t, http.StatusOK, code)
	quotas := decode[struct{ Quotas []db.TenantQuota }](t, resp).Quotas
	require.Len(t, quotas, 1)
	assert.InDelta(t, 900, quotas[0].Limit, 0)

	code, resp = env.do(t, http.MethodPut, "/api/v1/quotas/acme/rps", map[string]any{"limit": 1})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Equal(t, "kind", decode[errorJSON](t, resp).Error.Details["parameter"])
	code, resp = env.do(t, http.MethodPut, "/api/v1/quotas/acme/tpm", map[string]any{"limit": 0})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Equal(t, "limit", decode[errorJSON](t, resp).Error.Details["parameter"])

	code, _ = env.do(t, http.MethodDelete, "/api/v1/quotas/acme/rpm", nil)
	assert.Equal(t, http.StatusNoContent, code)
	code, _ = env.do(t, http.MethodDelete, "/api/v1/quotas/acme/rpm", nil)
	assert.Equal(t, http.StatusNotFound, code)
}
