package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/opsflow/opsflow/db"
)

// Principal is the authenticated caller.
type Principal struct {
	// ID identifies the key: "key:<id>" for stored keys, "bootstrap" for
	// OPSFLOW_ADMIN_KEY. Idempotency keys and audit entries are scoped by it.
	ID     string
	Name   string
	Scopes []string
}

const principalKey = "opsflow.principal"

// PrincipalFrom returns the caller authenticated by requireScope.
func PrincipalFrom(c echo.Context) Principal {
	p, _ := c.Get(principalKey).(Principal)
	return p
}

// requireScope authenticates the bearer key and checks it holds scope:
// 401 without a valid key, 403 with a key lacking the scope.
func (s *Server) requireScope(scope string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, err := s.authenticate(c)
			if err != nil {
				return err
			}
			if !slices.Contains(p.Scopes, scope) {
				return Errorf(http.StatusForbidden, "forbidden", "this API key lacks the %q scope", scope)
			}
			c.Set(principalKey, p)
			return next(c)
		}
	}
}

var errUnauthorized = Errorf(http.StatusUnauthorized, "unauthorized", "missing or invalid API key: send Authorization: Bearer <key>")

func (s *Server) authenticate(c echo.Context) (Principal, error) {
	auth := c.Request().Header.Get(echo.HeaderAuthorization)
	scheme, key, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return Principal{}, errUnauthorized
	}
	key = strings.TrimSpace(key)
	hash := db.HashAPIKey(key)
	if s.adminKeyHash != nil && subtle.ConstantTimeCompare(hash, s.adminKeyHash) == 1 {
		return Principal{ID: "bootstrap", Name: "bootstrap admin key", Scopes: db.AllScopes}, nil
	}
	prefix := db.APIKeyPrefix(key)
	if prefix == "" {
		return Principal{}, errUnauthorized
	}
	k, err := db.FindActiveAPIKey(c.Request().Context(), s.db.Bun, prefix)
	if errors.Is(err, db.ErrNotFound) {
		return Principal{}, errUnauthorized
	}
	if err != nil {
		return Principal{}, err
	}
	if subtle.ConstantTimeCompare(hash, k.SecretHash) != 1 {
		return Principal{}, errUnauthorized
	}
	return Principal{ID: "key:" + strconv.FormatInt(k.ID, 10), Name: k.Name, Scopes: k.Scopes}, nil
}
