// Command opsflow is the single opsflow binary: API, worker, migrations,
// schedules, the all-in-one dev stack, a traffic generator and admin tools.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/db"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "opsflow:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "opsflow",
		Short:         "Operations monitoring for API gateways, run on Temporal",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(apiCmd(), workerCmd(), migrateCmd(), schedulesCmd(), keysCmd(), devCmd(), loadgenCmd(),
		notificationsCmd())
	return root
}

// conn is what a subcommand runs with: the configuration, the logger and
// whichever of PostgreSQL and Temporal it asked connect for.
type conn struct {
	cfg      config.Config
	log      *slog.Logger
	db       *db.DB
	temporal client.Client
}

// Dependencies a subcommand asks connect for.
const (
	needDB = 1 << iota
	needTemporal
)

// connect loads the configuration and opens what needs asks for; close
// releases it.
func connect(ctx context.Context, needs int) (*conn, error) {
	cfg, log, err := loadConfig()
	if err != nil {
		return nil, err
	}
	c := &conn{cfg: cfg, log: log}
	if needs&needDB != 0 {
		if c.db, err = openDB(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if needs&needTemporal != 0 {
		if c.temporal, err = dialTemporal(cfg, log); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *conn) close() {
	if c.temporal != nil {
		c.temporal.Close()
	}
	if c.db != nil {
		c.db.Close()
	}
}

// loadConfig parses the environment once and installs the JSON slog logger.
func loadConfig() (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(nil)
	if err != nil {
		return cfg, nil, fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	slog.SetDefault(log)
	return cfg, log, nil
}
