// Package api is opsflow's HTTP API: thin Echo handlers that bind, validate,
// call one query or workflow operation and map errors centrally.
package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
)

// Deps are the API's dependencies.
type Deps struct {
	Config   config.Config
	DB       *db.DB
	Temporal client.Client
	Logger   *slog.Logger
	// Registry receives the API's metrics; Gatherer serves /metrics.
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	// Now is the clock; nil means time.Now. Tests pin it.
	Now func() time.Time
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg          config.Config
	db           *db.DB
	temporal     client.Client
	log          *slog.Logger
	metrics      *httpMetrics
	adminKeyHash []byte
	requestLogs  *db.RequestLogStore
	now          func() time.Time
	notify       *notify.Service
	realtime     *realtimeHub
}

// New builds the Echo instance with every route.
func New(d Deps) *echo.Echo {
	s := &Server{cfg: d.Config, db: d.DB, temporal: d.Temporal, log: d.Logger, metrics: newHTTPMetrics(d.Registry),
		requestLogs: db.NewRequestLogStore(d.DB), now: d.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if d.Config.AdminKey != "" {
		s.adminKeyHash = db.HashAPIKey(d.Config.AdminKey)
	}
	s.notify = newNotifyService(d)
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Logger)
	e.Server.ReadHeaderTimeout = 10 * time.Second
	e.Server.IdleTimeout = 2 * time.Minute
	s.realtime = newRealtimeHub(d.Config.RealtimeMaxSubscribers)
	e.Server.RegisterOnShutdown(s.realtime.close)
	e.Use(middleware.RequestID(), s.requestLogger(), s.metrics.middleware, middleware.Recover())

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", metricsHandler(d.Gatherer))
	e.GET("/openapi.json", serveOpenAPI)

	v1 := e.Group("/api/v1")
	s.routes(v1)
	return e
}

func (s *Server) requestLogger() echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogURIPath: true, LogMethod: true, LogLatency: true, LogRequestID: true, LogError: true,
		HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelInfo
			if v.Status >= http.StatusInternalServerError {
				level = slog.LevelError
			}
			s.log.LogAttrs(c.Request().Context(), level, "http request",
				slog.String("request_id", v.RequestID), slog.String("method", v.Method),
				slog.String("path", v.URIPath), slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency))
			return nil
		},
	})
}
