package api

import (
	"github.com/labstack/echo/v4"

	"github.com/opsflow/opsflow/db"
)

// routes registers every /api/v1 endpoint with the scope it requires.
func (s *Server) routes(v1 *echo.Group) {
	v1.POST("/ingest/requests", s.ingestRequests, s.requireScope(db.ScopeIngest))

	admin := s.requireScope(db.ScopeAdmin)
	v1.GET("/channels", s.listChannels, admin)
	v1.POST("/channels", s.createChannel, admin)
	v1.GET("/channels/:id", s.getChannel, admin)
	v1.PUT("/channels/:id", s.updateChannel, admin)
	v1.DELETE("/channels/:id", s.deleteChannel, admin)
	v1.POST("/channels/:id/test", s.testChannel, admin)
	v1.GET("/notifications", s.listNotifications, admin)
	v1.GET("/notifications/:id", s.getNotification, admin)
	v1.POST("/notifications/:id/requeue", s.requeueNotification, admin)
	v1.POST("/notifications/requeue", s.requeueNotifications, admin)
	// routes: dashboards
	s.dashboardRoutes(v1)
	// routes: daily
	s.dailyRoutes(v1)
	// routes: alerting
	s.alertingRoutes(v1)
	// routes: credentials
	s.credentialRoutes(v1)
}
