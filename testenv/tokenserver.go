package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TokenServer is a fake OAuth 2.0 token endpoint on loopback answering the
// refresh_token grant (RFC 6749 §6). It accepts only the refresh token it
// issued last (rotating on every refresh when Rotate is set), so a client
// reusing a rotated token gets invalid_grant, like real providers.
type TokenServer struct {
	*httptest.Server
	// TokenURL is the endpoint's URL.
	TokenURL string

	mu       sync.Mutex
	valid    string
	rotate   bool
	lifetime time.Duration
	script   []int
	calls    int
	issued   int
	hold     chan struct{}
	arrived  chan struct{}
	clientID string
}

// Secret marks every token the server issues, so tests can look for any of
// them in responses and logs.
const Secret = "S3CR3T"

// NewTokenServer starts a token endpoint accepting refreshToken, issuing
// access tokens valid for lifetime. rotate makes every refresh issue a new
// refresh token.
func NewTokenServer(t testing.TB, refreshToken string, lifetime time.Duration, rotate bool) *TokenServer {
	t.Helper()
	s := &TokenServer{valid: refreshToken, rotate: rotate, lifetime: lifetime}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	s.TokenURL = s.URL + "/oauth/token"
	t.Cleanup(s.Close)
	return s
}

// Script makes the next requests answer these HTTP statuses (500, 503, ...)
// before the endpoint works again.
func (s *TokenServer) Script(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, statuses...)
}

// Revoke makes the current refresh token invalid: every refresh answers
// invalid_grant.
func (s *TokenServer) Revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.valid = ""
}

// RequireClientID refuses requests without this client_id
// (unauthorized_client).
func (s *TokenServer) RequireClientID(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clientID = id
}

// Hold makes requests wait until Release; Arrived receives once per held
// request as it comes in.
func (s *TokenServer) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.arrived = make(chan struct{}), make(chan struct{}, 16)
}

// Arrived is signalled as each held request comes in.
func (s *TokenServer) Arrived() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived
}

// Release lets held requests through.
func (s *TokenServer) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
}

// Calls counts the requests received.
func (s *TokenServer) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// RefreshToken is the refresh token the server accepts now.
func (s *TokenServer) RefreshToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.valid
}

// AccessToken is the n-th access token the server issues (from 1).
func AccessToken(n int) string { return fmt.Sprintf("at-%d-%s", n, Secret) }

func (s *TokenServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls++
	hold, arrived := s.hold, s.arrived
	s.mu.Unlock()
	if hold != nil {
		arrived <- struct{}{}
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.script) > 0 {
		status := s.script[0]
		s.script = s.script[1:]
		http.Error(w, "scripted failure", status)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "refresh_token" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	clientID := r.PostForm.Get("client_id")
	if id, _, ok := r.BasicAuth(); ok {
		clientID = id
	}
	if s.clientID != "" && clientID != s.clientID {
		oauthError(w, http.StatusUnauthorized, "unauthorized_client")
		return
	}
	if s.valid == "" || r.PostForm.Get("refresh_token") != s.valid {
		oauthError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	s.issued++
	answer := map[string]any{"access_token": AccessToken(s.issued), "token_type": "Bearer",
		"expires_in": int(s.lifetime / time.Second)}
	if s.rotate {
		s.valid = fmt.Sprintf("rt-%d-%s", s.issued, Secret)
		answer["refresh_token"] = s.valid
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": "refused by the fake"})
}
