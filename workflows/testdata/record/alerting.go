package main

import (
	"context"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/workflows"
)

// alertMinute is the evaluated minute of the recorded alert-eval run.
var alertMinute = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// recordAlertEval records an evaluation in which a provider-down alert
// fires critical (notified on two routes), a pending error-rate alert of
// the same provider fires inhibited, and a resolved group stays quiet.
// Last, because its notify children keep running in the background.
func recordAlertEval(ctx context.Context, c client.Client) error {
	return record(ctx, c, "alert-eval-firing", workflows.AlertEvalWorkflowName, workflows.AlertEvalInput{Minute: &alertMinute}, nil)
}

func loadAlertEval(_ context.Context, in workflows.LoadAlertEvalInput) (workflows.AlertEvalData, error) {
	routes := []workflows.AlertRoute{{ChannelID: 1, MinSeverity: workflows.SeverityWarning}, {ChannelID: 2, MinSeverity: workflows.SeverityCritical}}
	down := workflows.AlertRule{ID: 1, UID: "rule-1", Version: 1, Name: "openai down", Metric: workflows.MetricProviderDown,
		Operator: ">=", Warning: 0.5, Critical: 0.9, MinSamples: 20, Routes: routes, Enabled: true}
	errs := workflows.AlertRule{ID: 2, UID: "rule-2", Version: 3, Name: "error rate", Metric: workflows.MetricErrorRate,
		Operator: ">", Warning: 0.05, Critical: 0.1, For: 2 * time.Minute, Routes: routes, Enabled: true}
	openai := map[string]string{"provider": "openai"}
	pendingSince := in.Minute.Add(-3 * time.Minute)
	return workflows.AlertEvalData{Minute: in.Minute, Rules: []workflows.AlertRule{down, errs},
		Samples: []workflows.AlertSample{
			{RuleID: 1, Labels: openai, Value: 0.95, Samples: 400},
			{RuleID: 2, Labels: openai, Value: 0.95, Samples: 400},
			{RuleID: 2, Labels: map[string]string{"provider": "anthropic"}, Value: 0.01, Samples: 300},
		},
		States: []workflows.AlertState{{Fingerprint: workflows.AlertFingerprint("rule-2", openai), RuleID: 2, Labels: openai,
			State: workflows.AlertPending, Severity: workflows.SeverityCritical, Value: 0.9, PendingSince: &pendingSince,
			LastActiveAt: &pendingSince, LastEvalMinute: in.Minute.Add(-time.Minute), Version: 4}},
	}, nil
}

func applyAlertUpdates(_ context.Context, in workflows.ApplyAlertUpdatesInput) (workflows.ApplyAlertUpdatesResult, error) {
	res := workflows.ApplyAlertUpdatesResult{Applied: len(in.Updates)}
	for _, u := range in.Updates {
		for _, n := range u.Notifications {
			res.Notify = append(res.Notify, workflows.AlertNotifyStart{Fingerprint: u.State.Fingerprint, Severity: n.Severity,
				Input: workflows.NotifyInput{NotificationID: n.ID, ChannelType: "webhook", Retry: workflows.DefaultNotifyRetryPolicy}})
		}
	}
	return res, nil
}
