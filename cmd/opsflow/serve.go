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
			c, err := connect(cmd.Context(), needDB|needTemporal)
			if err != nil {
				return err
			}
			defer c.close()
			return serveAPI(cmd.Context(), c.cfg, c.log, c.db, c.temporal, newRegistry())
		},
	}
}

func workerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run the Temporal worker (reconciles schedules at start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), needDB|needTemporal)
			if err != nil {
				return err
			}
			defer c.close()
			reg := newRegistry()
			stopMetrics, err := serveWorkerMetrics(c.cfg.WorkerMetricsAddr, reg, c.log)
			if err != nil {
				return err
			}
			defer stopMetrics()
			return runWorker(cmd.Context(), c.cfg, c.log, c.db, c.temporal, reg)
		},
	}
}
