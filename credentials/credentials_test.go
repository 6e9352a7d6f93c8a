package credentials_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/oauth2"

	"github.com/opsflow/opsflow/credentials"
)

func TestClassifyDisablesOnlyOnClearRefusals(t *testing.T) {
	retrieve := func(status int, code, desc string) error {
		return &oauth2.RetrieveError{Response: &http.Response{StatusCode: status}, ErrorCode: code, ErrorDescription: desc,
			Body: []byte(`{"error":"` + code + `","leaked":"S3CR3T"}`)}
	}
	for _, tc := range []struct {
		name     string
		err      error
		rejected bool
		msg      string
	}{
		{"invalid_grant", retrieve(400, "invalid_grant", "refresh token revoked"), true,
			"token endpoint answered 400 invalid_grant: refresh token revoked"},
		{"invalid_client", retrieve(401, "invalid_client", ""), true, "token endpoint answered 401 invalid_client"},
		{"unauthorized_client", retrieve(400, "unauthorized_client", ""), true, "token endpoint answered 400 unauthorized_client"},
		{"invalid_request is retried", retrieve(400, "invalid_request", ""), false, "token endpoint answered 400 invalid_request"},
		{"5xx without a code", retrieve(503, "", ""), false, "token endpoint answered 503"},
		{"network", &url.Error{Op: "Post", URL: "https://idp.example/token?key=S3CR3T", Err: errors.New("connection refused")}, false,
			"token endpoint idp.example unreachable: connection refused"},
		{"timeout", fmt.Errorf("wrapped: %w", context.DeadlineExceeded), false, "token endpoint did not answer in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := credentials.Classify(tc.err)
			assert.Equal(t, tc.rejected, f.Rejected)
			assert.Equal(t, tc.msg, f.Msg)
			assert.NotContains(t, f.Msg, "S3CR3T", "no body, no query string")
		})
	}
}

func TestClassifyBoundsTheProviderText(t *testing.T) {
	long := make([]byte, 1000)
	for i := range long {
		long[i] = 'x'
	}
	long[3] = '\n'
	f := credentials.Classify(&oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant",
		ErrorDescription: string(long)})
	assert.Less(t, len(f.Msg), 300)
	assert.NotContains(t, f.Msg, "\n")
}

func TestPresetsAreComplete(t *testing.T) {
	for _, kind := range credentials.Kinds() {
		p, ok := credentials.PresetFor(kind)
		assert.True(t, ok, kind)
		if kind == credentials.KindOAuth2 {
			continue
		}
		u, err := url.Parse(p.TokenURL)
		assert.NoError(t, err, kind)
		assert.Equal(t, "https", u.Scheme, kind)
		assert.NotEmpty(t, p.ClientID, kind)
	}
	_, ok := credentials.PresetFor("nope")
	assert.False(t, ok)
}
