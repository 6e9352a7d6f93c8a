package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/loadgen"
)

type devFlags struct {
	temporalCLI  string
	loadgenRate  float64
	temporalPort int
	uiPort       int
}

func devCmd() *cobra.Command {
	var flags devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack locally: PostgreSQL, Temporal dev server, worker, API and demo traffic",
		Long: `Run everything in one process for local use. PostgreSQL is DATABASE_URL if set,
else a server accepting postgres@127.0.0.1:5432, else a cluster of opsflow's own
in $OPSFLOW_DATA_DIR/pg. State, keys and logs live in $OPSFLOW_DATA_DIR
(.opsflow) and survive restarts. Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig()
			if err != nil {
				return err
			}
			if err := applyTemporalPorts(cmd, &cfg, &flags); err != nil {
				return err
			}
			err = runDev(cmd.Context(), cfg, log, flags, cmd.OutOrStdout())
			if cmd.Context().Err() != nil && errors.Is(err, context.Canceled) {
				return nil // Ctrl-C during start-up is a normal way to leave
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&flags.temporalCLI, "temporal-cli", "./bin/temporal", "path of the Temporal CLI (make run installs it)")
	f.Float64Var(&flags.loadgenRate, "loadgen-rate", 50, "synthetic events per second fed to the API (0: none)")
	f.IntVar(&flags.temporalPort, "temporal-port", 7233, "Temporal frontend port (overrides the port of OPSFLOW_TEMPORAL_ADDRESS)")
	f.IntVar(&flags.uiPort, "ui-port", 8233, "Temporal Web UI port (overrides the port of OPSFLOW_TEMPORAL_UI_URL)")
	return cmd
}

// applyTemporalPorts lets a flag given on the command line override the
// environment, and points cfg at the loopback dev server either way so the
// API's Temporal UI links match the server actually started.
func applyTemporalPorts(cmd *cobra.Command, cfg *config.Config, flags *devFlags) error {
	if !cmd.Flags().Changed("temporal-port") {
		port, err := portOf("OPSFLOW_TEMPORAL_ADDRESS", "//"+cfg.TemporalAddress)
		if err != nil {
			return err
		}
		flags.temporalPort = port
	}
	if !cmd.Flags().Changed("ui-port") {
		port, err := portOf("OPSFLOW_TEMPORAL_UI_URL", cfg.TemporalUIURL)
		if err != nil {
			return err
		}
		flags.uiPort = port
	}
	cfg.TemporalAddress = "127.0.0.1:" + strconv.Itoa(flags.temporalPort)
	cfg.TemporalUIURL = "http://127.0.0.1:" + strconv.Itoa(flags.uiPort)
	return nil
}

func portOf(name, raw string) (int, error) {
	u, err := url.Parse(raw)
	if err == nil && u.Port() != "" {
		if port, err := strconv.Atoi(u.Port()); err == nil {
			return port, nil
		}
	}
	return 0, fmt.Errorf("%s: need an explicit port in %q for `opsflow dev`", name, raw)
}

// runDev starts the stack and, once ctx ends, stops it in reverse order:
// load generator, API, worker, Temporal, PostgreSQL.
func runDev(ctx context.Context, cfg config.Config, log *slog.Logger, flags devFlags, out io.Writer) error {
	if err := makeDataDir(cfg.DataDir); err != nil {
		return err
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := checkPortsFree(cfg, flags); err != nil {
		return err
	}
	adminKeySource, err := ensureDevSecrets(&cfg)
	if err != nil {
		return err
	}

	pg, err := setupPostgres(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer pg.stop(log)
	temporal, err := startTemporal(ctx, cfg, flags)
	if err != nil {
		return err
	}
	defer temporal.stop(log)

	d, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	applied, err := d.MigrateUp(ctx)
	if err != nil {
		return err
	}
	log.Info("migrations applied", "count", len(applied))
	tc, err := dialTemporal(cfg, log)
	if err != nil {
		return err
	}
	defer tc.Close()

	sup := newSupervisor(log)
	defer sup.stop()
	startServices(ctx, sup, cfg, log, d, tc)
	apiURL := "http://" + cfg.HTTPAddr
	if err := waitHealthy(ctx, sup, apiURL+"/healthz"); err != nil {
		return err
	}
	if flags.loadgenRate > 0 {
		sup.start(ctx, "loadgen", feedTraffic(cfg, log, apiURL, flags.loadgenRate))
	}
	printBanner(out, banner{
		apiURL: apiURL, temporalUI: cfg.TemporalUIURL, database: redactDSN(cfg.DatabaseURL),
		databaseSource: pg.description, adminKey: cfg.AdminKey, adminKeySource: adminKeySource,
		loadgenRate: flags.loadgenRate, dataDir: cfg.DataDir,
	})
	return sup.wait(ctx)
}

// startServices starts the worker before the API so that workflows the API
// starts find a poller.
func startServices(ctx context.Context, sup *supervisor, cfg config.Config, log *slog.Logger, d *db.DB, tc client.Client) {
	// One process, one registry: the API's /metrics shows the worker's too.
	reg := newRegistry()
	sup.start(ctx, "worker", func(ctx context.Context) error {
		return runWorker(ctx, cfg, log.With("component", "worker"), d, tc, reg)
	})
	sup.start(ctx, "api", func(ctx context.Context) error {
		return serveAPI(ctx, cfg, log.With("component", "api"), d, tc, reg)
	})
}

// feedTraffic runs the load generator. A failure leaves the rest of the stack
// running: the demo traffic is a convenience, not part of the service.
func feedTraffic(cfg config.Config, log *slog.Logger, apiURL string, rate float64) func(context.Context) error {
	return func(ctx context.Context) error {
		log := log.With("component", "loadgen")
		g := loadgen.New(time.Now().UnixNano(), loadgen.Options{})
		stats, err := g.Run(ctx, loadgen.RunOptions{URL: apiURL, Key: cfg.AdminKey, Rate: rate, BatchSize: 100, Log: log})
		if err != nil {
			log.Error("load generator stopped", "err", err)
			<-ctx.Done()
		}
		log.Info("load generator done", "sent", stats.Sent, "stored", stats.Stored, "failed", stats.Failed)
		return nil
	}
}

// waitHealthy polls the API until it answers, it fails, or 30 s pass.
func waitHealthy(ctx context.Context, sup *supervisor, healthURL string) error {
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(healthURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("API did not answer %s within 30s", healthURL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sup.exited:
			return sup.exitError()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type banner struct {
	apiURL, temporalUI, database, databaseSource string
	adminKey, adminKeySource, dataDir            string
	loadgenRate                                  float64
}

func printBanner(out io.Writer, b banner) {
	load := fmt.Sprintf("%g synthetic events/s (--loadgen-rate 0 turns it off)", b.loadgenRate)
	if b.loadgenRate <= 0 {
		load = "off"
	}
	fmt.Fprintf(out, `
opsflow dev is running
  API           %[1]s   (OpenAPI: %[1]s/openapi.json)
  Temporal UI   %[2]s
  PostgreSQL    %[3]s   (%[4]s)
  Admin key     %[5]s   (%[6]s)
  Demo traffic  %[7]s
  Logs          JSON on stderr; PostgreSQL and Temporal in %[8]s/

Try:
  curl -s %[1]s/readyz
  curl -s -H 'Authorization: Bearer %[5]s' -H 'Content-Type: application/json' \
    -d '[{"ts":"'$(date -u +%%FT%%TZ)'","provider":"openai","model":"gpt-4o","status_code":200,"latency_ms":420}]' \
    %[1]s%[9]s

Ctrl-C stops everything.

`, b.apiURL, b.temporalUI, b.database, b.databaseSource, b.adminKey, b.adminKeySource, load, b.dataDir, loadgen.IngestPath)
}
