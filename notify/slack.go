package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/opsflow/opsflow/secrets"
)

type slackSpec struct {
	// URL is the incoming-webhook URL; its path is the credential.
	URL secrets.String `json:"url"`
}

func (s *slackSpec) validate(ctx context.Context, o *Outbound) error {
	return validateURL(ctx, o, "config.url", s.URL)
}

func (s *slackSpec) masked() spec { return &slackSpec{URL: maskedURL(s.URL)} }

func (s *slackSpec) keepSecrets(old spec) {
	s.URL = keepSecret(s.URL, old.(*slackSpec).URL, MaskURL)
}

func (s *slackSpec) notifier(o *Outbound) Notifier { return &slack{spec: *s, client: o.HTTPClient()} }

type slack struct {
	spec   slackSpec
	client *http.Client
}

// Block Kit types, reduced to what a notification uses.
type (
	slackMessage struct {
		Text   string       `json:"text"`
		Blocks []slackBlock `json:"blocks"`
	}
	slackBlock struct {
		Type     string      `json:"type"`
		Text     *slackText  `json:"text,omitempty"`
		Elements []slackText `json:"elements,omitempty"`
	}
	slackText struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
)

// Slack's limits: header text 150 characters, section text 3000.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
)

func (s *slack) Notify(ctx context.Context, m Message) error {
	body, err := json.Marshal(slackBlocks(m))
	if err != nil {
		return &Error{Reason: ReasonInternal, Permanent: true, Msg: "encode Slack message: " + err.Error()}
	}
	return postJSON(ctx, s.client, s.spec.URL.Reveal(), body, nil)
}

func slackBlocks(m Message) slackMessage {
	blocks := []slackBlock{{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(m.headline(), slackHeaderMax)}}}
	if m.Alert.Summary != "" {
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(m.Alert.Summary, slackSectionMax)}})
	}
	fields := append([]string{"*severity:* " + m.Alert.Severity}, sortedPairs(m.Alert.Labels)...)
	blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(strings.Join(fields, "\n"), slackSectionMax)}})
	if links := sortedPairs(m.Alert.Annotations); len(links) > 0 {
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(strings.Join(links, "\n"), slackSectionMax)}})
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: "opsflow notification " + m.ID}}})
	return slackMessage{Text: truncate(m.headline(), slackSectionMax), Blocks: blocks}
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
