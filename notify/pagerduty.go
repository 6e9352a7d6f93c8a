package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/opsflow/opsflow/secrets"
)

// PagerDutyEventsURL is the Events API v2 endpoint.
const PagerDutyEventsURL = "https://events.pagerduty.com/v2/enqueue"

type pagerDutySpec struct {
	// RoutingKey is the service integration key: whoever holds it can page.
	RoutingKey secrets.String `json:"routing_key"`
	// URL overrides the Events API endpoint (a regional or proxy endpoint).
	URL string `json:"url,omitempty"`
}

func (s *pagerDutySpec) validate(ctx context.Context, o *Outbound) error {
	if len(s.RoutingKey) != 32 || !alnum(s.RoutingKey.Reveal()) {
		return fieldErr("config.routing_key", "must be a 32-character integration key")
	}
	if s.URL == "" {
		return nil
	}
	return validateURL(ctx, o, "config.url", secrets.String(s.URL))
}

func alnum(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func (s *pagerDutySpec) masked() spec {
	return &pagerDutySpec{RoutingKey: maskedString(s.RoutingKey), URL: s.URL}
}

func (s *pagerDutySpec) keepSecrets(old spec) {
	s.RoutingKey = keepSecret(s.RoutingKey, old.(*pagerDutySpec).RoutingKey, maskSecret)
}

func (s *pagerDutySpec) notifier(o *Outbound) Notifier {
	return &pagerDuty{spec: *s, client: o.HTTPClient()}
}

type pagerDuty struct {
	spec   pagerDutySpec
	client *http.Client
}

type (
	pdEvent struct {
		RoutingKey  string     `json:"routing_key"`
		EventAction string     `json:"event_action"`
		DedupKey    string     `json:"dedup_key"`
		Client      string     `json:"client,omitempty"`
		Payload     *pdPayload `json:"payload,omitempty"`
	}
	pdPayload struct {
		Summary       string            `json:"summary"`
		Source        string            `json:"source"`
		Severity      string            `json:"severity"`
		Timestamp     *time.Time        `json:"timestamp,omitempty"`
		Class         string            `json:"class,omitempty"`
		CustomDetails map[string]string `json:"custom_details,omitempty"`
	}
)

// PagerDuty's summary limit.
const pdSummaryMax = 1024

// Notify triggers, or resolves, the incident keyed by the alert's
// fingerprint: PagerDuty deduplicates on it, so a repeated trigger never
// opens a second incident.
func (p *pagerDuty) Notify(ctx context.Context, m Message) error {
	ev := pdEvent{RoutingKey: p.spec.RoutingKey.Reveal(), DedupKey: m.Alert.Fingerprint, Client: "opsflow"}
	if ev.DedupKey == "" {
		ev.DedupKey = m.ID
	}
	if m.Alert.Status == StatusResolved {
		ev.EventAction = "resolve"
	} else {
		ev.EventAction = "trigger"
		details := map[string]string{"notification": m.ID}
		for k, v := range m.Alert.Labels {
			details["label."+k] = v
		}
		for k, v := range m.Alert.Annotations {
			details["annotation."+k] = v
		}
		ev.Payload = &pdPayload{
			Summary:       truncate(m.headline(), pdSummaryMax),
			Source:        "opsflow",
			Severity:      pdSeverity(m.Alert.Severity),
			Class:         m.Kind,
			CustomDetails: details,
		}
		if !m.Alert.StartsAt.IsZero() {
			ev.Payload.Timestamp = &m.Alert.StartsAt
		}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return &Error{Reason: ReasonInternal, Permanent: true, Msg: "encode PagerDuty event: " + err.Error()}
	}
	target := p.spec.URL
	if target == "" {
		target = PagerDutyEventsURL
	}
	return postJSON(ctx, p.client, target, body, nil)
}

func pdSeverity(s string) string {
	switch s {
	case SeverityCritical, SeverityWarning, "error":
		return s
	}
	return SeverityInfo
}
