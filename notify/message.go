package notify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Notification kinds.
const (
	KindAlert = "alert"
	KindTest  = "test"
)

// Alert states and severities as the alerting workflow reports them.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"

	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Alert is a notification's payload, stored as JSON with the notification:
// what the alerting workflow (or a channel test) has to say.
type Alert struct {
	// Fingerprint identifies the alert group (rule + group labels); it is
	// PagerDuty's dedup key, so a resolve closes what the trigger opened.
	Fingerprint string            `json:"fingerprint"`
	Status      string            `json:"status"`
	Severity    string            `json:"severity"`
	Title       string            `json:"title"`
	Summary     string            `json:"summary,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"starts_at"`
	EndsAt      *time.Time        `json:"ends_at,omitempty"`
}

// Message is one notification to deliver.
type Message struct {
	// ID is the notification's id: the Idempotency-Key of webhooks and the
	// Message-ID of mail, so a receiver can drop a repeat.
	ID        string
	Kind      string
	CreatedAt time.Time
	Alert     Alert
}

// Notifier delivers a message to one channel. A failure is an *Error that
// says whether another attempt may succeed.
type Notifier interface {
	Notify(ctx context.Context, m Message) error
}

// headline is the one-line summary every channel leads with.
func (m Message) headline() string {
	tag := strings.ToUpper(m.Alert.Status)
	if m.Kind == KindTest {
		tag = "TEST"
	}
	if tag == "" {
		tag = "ALERT"
	}
	return fmt.Sprintf("[%s] %s", tag, m.Alert.Title)
}

// text renders the message as plain text (mail body, Slack fallback).
func (m Message) text() string {
	var b strings.Builder
	b.WriteString(m.headline() + "\n")
	if m.Alert.Summary != "" {
		b.WriteString("\n" + m.Alert.Summary + "\n")
	}
	fmt.Fprintf(&b, "\nseverity: %s\n", m.Alert.Severity)
	if !m.Alert.StartsAt.IsZero() {
		fmt.Fprintf(&b, "since: %s\n", m.Alert.StartsAt.UTC().Format(time.RFC3339))
	}
	if m.Alert.EndsAt != nil {
		fmt.Fprintf(&b, "resolved: %s\n", m.Alert.EndsAt.UTC().Format(time.RFC3339))
	}
	for _, kv := range sortedPairs(m.Alert.Labels) {
		fmt.Fprintf(&b, "%s\n", kv)
	}
	for _, kv := range sortedPairs(m.Alert.Annotations) {
		fmt.Fprintf(&b, "%s\n", kv)
	}
	fmt.Fprintf(&b, "\nnotification %s\n", m.ID)
	return b.String()
}

func sortedPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+": "+m[k])
	}
	return out
}
