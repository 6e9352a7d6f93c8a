package main

import (
	"github.com/spf13/cobra"
)

func apiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "api",
		Short: "Serve the HTTP API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig()
			if err != nil {
				return err
			}
			d, err := openDB(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer d.Close()
			tc, err := dialTemporal(cfg, log)
			if err != nil {
				return err
			}
			defer tc.Close()
			return serveAPI(cmd.Context(), cfg, log, d, tc, newRegistry())
		},
	}
}

func workerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run the Temporal worker (reconciles schedules at start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig()
			if err != nil {
				return err
			}
			d, err := openDB(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer d.Close()
			tc, err := dialTemporal(cfg, log)
			if err != nil {
				return err
			}
			defer tc.Close()
			reg := newRegistry()
			stopMetrics, err := serveWorkerMetrics(cfg.WorkerMetricsAddr, reg, log)
			if err != nil {
				return err
			}
			defer stopMetrics()
			return runWorker(cmd.Context(), cfg, log, d, tc, reg)
		},
	}
}
