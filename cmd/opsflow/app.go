package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/credentials"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/notify"
	"github.com/opsflow/opsflow/worker"
)

// openDB opens the pool, requiring DATABASE_URL (only `opsflow dev` picks a
// database by itself).
func openDB(ctx context.Context, cfg config.Config) (*db.DB, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("DATABASE_URL is not set (use `opsflow dev` / `make run` for a local stack)")
	}
	return db.Open(ctx, cfg.DatabaseURL, cfg.DBMaxConns)
}

func dialTemporal(cfg config.Config, log *slog.Logger) (client.Client, error) {
	c, err := client.Dial(client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    tlog.NewStructuredLogger(log.With("component", "temporal")),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	return c, nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveAPI serves until ctx ends, then drains in-flight requests.
func serveAPI(ctx context.Context, cfg config.Config, log *slog.Logger, d *db.DB, tc client.Client, reg *prometheus.Registry) error {
	e := api.New(api.Deps{Config: cfg, DB: d, Temporal: tc, Logger: log, Registry: reg, Gatherer: reg})
	reg.MustRegister(credentials.NewCollector(d, log, time.Now))
	errc := make(chan error, 1)
	go func() { errc <- e.Start(cfg.HTTPAddr) }()
	log.Info("api listening", "addr", cfg.HTTPAddr)
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("api server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return e.Shutdown(shutdownCtx)
}

// runWorker reconciles the schedules and runs the worker until ctx ends. Its
// metrics go to reg: the worker's own /metrics, or in `opsflow dev` the
// registry the API serves.
func runWorker(ctx context.Context, cfg config.Config, log *slog.Logger, d *db.DB, tc client.Client, reg *prometheus.Registry) error {
	results, err := worker.ApplySchedules(ctx, tc, cfg.TaskQueue)
	if err != nil {
		return err
	}
	for _, r := range results {
		log.Info("schedule reconciled", "schedule", r.ID, "action", r.Action)
	}
	host, _ := os.Hostname()
	acts := &activities.Activities{DB: d, Clock: time.Now, Instance: fmt.Sprintf("%s/%d", host, os.Getpid())}
	if acts.Secrets, err = notify.SecretsFromConfig(cfg); err != nil {
		return fmt.Errorf("OPSFLOW_SECRET_KEY: %w", err)
	}
	if acts.Secrets == nil {
		log.Warn("OPSFLOW_SECRET_KEY is not set: notifications cannot be delivered")
	}
	acts.Outbound = notify.NewOutbound(cfg.NotifyAllow)
	acts.NotifyMetrics = notify.NewMetrics(reg)
	acts.CredentialMetrics = credentials.NewMetrics(reg)
	acts.NotifyRetry = notify.RetryFromConfig(cfg)
	w := worker.New(tc, cfg.TaskQueue, acts)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	log.Info("worker polling", "task_queue", cfg.TaskQueue)
	<-ctx.Done()
	w.Stop()
	return nil
}

// serveWorkerMetrics serves /metrics and /healthz of a standalone worker
// until stop is called. It listens before returning, so a taken port fails
// the start instead of going unnoticed.
func serveWorkerMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("worker metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("worker metrics server stopped", "err", err)
		}
	}()
	log.Info("worker metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
