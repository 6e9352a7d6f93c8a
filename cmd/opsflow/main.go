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

	"github.com/opsflow/opsflow/config"
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
