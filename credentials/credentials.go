// Package credentials holds what the API and the worker share about upstream
// OAuth credentials (SPEC §8): the kinds and their presets, how a refresh
// talks to a token endpoint and how its failures are classified, starting
// and ending a credential's token-refresh workflow, and the metrics.
package credentials

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/oauth2"

	"github.com/opsflow/opsflow/workflows"
)

// KindOAuth2 is the generic OAuth 2.0 refresh_token grant: the operator gives
// the token URL and client.
const KindOAuth2 = "oauth2"

// Preset is a kind's defaults. Every field may be overridden per credential.
// Presets carry public client ids only: the providers' CLIs are public
// clients, and a preset never ships a secret (Google's needs the operator's
// client secret).
type Preset struct {
	Kind        string `json:"kind"`
	Description string `json:"description"`
	TokenURL    string `json:"token_url,omitempty"`
	ClientID    string `json:"client_id,omitempty"`
	// ClientSecretRequired: the provider refuses a refresh without one.
	ClientSecretRequired bool `json:"client_secret_required"`
}

// Presets lists every kind. The client ids are those the CLIs send when they
// refresh their own tokens; providers may change them, hence the overrides.
var Presets = []Preset{
	{Kind: KindOAuth2, Description: "generic OAuth 2.0 refresh_token grant; token_url required"},
	{Kind: "anthropic-claude-code", Description: "Anthropic Claude Code (Claude Pro/Max login)",
		TokenURL: "https://console.anthropic.com/v1/oauth/token", ClientID: "9d1c250a-e61b-44d9-88ed-5944d1962f5e"},
	{Kind: "openai-codex", Description: "OpenAI Codex CLI (ChatGPT login)",
		TokenURL: "https://auth.openai.com/oauth/token", ClientID: "app_EMoamEEZ73f0CkXaXp7hrann"},
	{Kind: "google-gemini-cli", Description: "Google Gemini CLI (Google account login); client_secret required",
		TokenURL: "https://oauth2.googleapis.com/token", ClientSecretRequired: true,
		ClientID: "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"},
}

// PresetFor returns the preset of kind.
func PresetFor(kind string) (Preset, bool) {
	i := slices.IndexFunc(Presets, func(p Preset) bool { return p.Kind == kind })
	if i < 0 {
		return Preset{}, false
	}
	return Presets[i], true
}

// Kinds lists the kind names, for error messages and the API schema.
func Kinds() []string {
	ks := make([]string, len(Presets))
	for i, p := range Presets {
		ks[i] = p.Kind
	}
	return ks
}

// Client is what a refresh sends to the token endpoint.
type Client struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
}

// Refresh runs the refresh_token grant through golang.org/x/oauth2 with
// hc. The auth style is fixed, never auto-detected: detection retries a
// refused request in the other style, which would call the endpoint twice.
// A client with a secret authenticates with HTTP Basic (RFC 6749 §2.3.1);
// a public client sends its id in the body.
func (c Client) Refresh(ctx context.Context, hc *http.Client, refreshToken string) (*oauth2.Token, error) {
	style := oauth2.AuthStyleInParams
	if c.ClientSecret != "" {
		style = oauth2.AuthStyleInHeader
	}
	cfg := &oauth2.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: c.TokenURL, AuthStyle: style}}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// rejectedCodes are the RFC 6749 §5.2 errors no retry can fix: the grant or
// the client itself is refused. Anything else (5xx, 429, network, an
// invalid_request from a flaky proxy) is retried; a credential is only ever
// disabled on a clear refusal.
var rejectedCodes = []string{"invalid_grant", "invalid_client", "unauthorized_client"}

// Failure is a classified refresh failure. Msg never holds a secret nor a
// raw response body: only the status, the RFC 6749 error code and a bounded
// description.
type Failure struct {
	Rejected bool
	Msg      string
}

// descriptionLimit bounds the provider's error_description in messages.
const descriptionLimit = 200

// Classify turns a refresh error into a Failure.
func Classify(err error) Failure {
	var re *oauth2.RetrieveError
	var ue *url.Error
	switch {
	case errors.As(err, &re):
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if re.ErrorCode == "" {
			return Failure{Msg: fmt.Sprintf("token endpoint answered %d", status)}
		}
		msg := fmt.Sprintf("token endpoint answered %d %s", status, printable(re.ErrorCode, 64))
		if d := printable(re.ErrorDescription, descriptionLimit); d != "" {
			msg += ": " + d
		}
		return Failure{Rejected: slices.Contains(rejectedCodes, re.ErrorCode), Msg: msg}
	case errors.As(err, &ue):
		// The URL is the operator's configuration, but its query could hold
		// anything: name the host only.
		host := ""
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Host
		}
		return Failure{Msg: fmt.Sprintf("token endpoint %s unreachable: %v", host, ue.Err)}
	case errors.Is(err, context.DeadlineExceeded):
		return Failure{Msg: "token endpoint did not answer in time"}
	}
	// oauth2's own errors ("server response missing access_token") carry no
	// secret.
	return Failure{Msg: printable(err.Error(), descriptionLimit)}
}

// printable keeps printable characters, bounded to limit bytes: provider
// text ends up in logs, the API and the Temporal UI.
func printable(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}

// ErrTemporal: Temporal did not take a start or signal.
var ErrTemporal = errors.New("Temporal is unavailable")

// StartOptions start a credential's workflow, or leave the running one be:
// starting is idempotent, so the API, the reconcile schedule and a retry can
// all call it.
func StartOptions(taskQueue string, id int64) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       workflows.TokenRefreshWorkflowID(id),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.SearchAttrJob.ValueSet(workflows.TokenRefreshWorkflowName)),
		StaticSummary:            fmt.Sprintf("keeps credential %d fresh", id),
	}
}

// StartWorkflow starts the credential's token-refresh workflow unless it runs.
func StartWorkflow(ctx context.Context, tc client.Client, taskQueue string, id int64) error {
	_, err := tc.ExecuteWorkflow(ctx, StartOptions(taskQueue, id), workflows.TokenRefreshWorkflowName,
		workflows.TokenRefreshInput{CredentialID: id, Retry: workflows.DefaultRefreshRetry})
	if err != nil {
		return fmt.Errorf("%w: start %s: %w", ErrTemporal, workflows.TokenRefreshWorkflowID(id), err)
	}
	return nil
}

// Notify tells a credential's workflow that its row changed: it re-reads it,
// and ends when the credential is gone. A workflow that is not running is
// not an error (the reconcile schedule starts it when due).
func Notify(ctx context.Context, tc client.Client, id int64) error {
	err := tc.SignalWorkflow(ctx, workflows.TokenRefreshWorkflowID(id), "", workflows.SignalCredentialChanged, nil)
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("%w: signal %s: %w", ErrTemporal, workflows.TokenRefreshWorkflowID(id), err)
	}
	return nil
}
