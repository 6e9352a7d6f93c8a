package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsflow/opsflow/loadgen"
)

func loadgenCmd() *cobra.Command {
	var opts loadgen.RunOptions
	var seed int64
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Send synthetic LLM-gateway traffic to an opsflow API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig()
			if err != nil {
				return err
			}
			if opts.URL == "" {
				opts.URL = "http://" + cfg.HTTPAddr
			}
			if opts.Key == "" {
				opts.Key = cfg.AdminKey
			}
			if opts.Key == "" {
				return errors.New("no API key: pass --key or set OPSFLOW_ADMIN_KEY (needs the ingest scope)")
			}
			if !cmd.Flags().Changed("seed") {
				seed = time.Now().UnixNano()
			}
			opts.Log = log
			log.Info("loadgen starting", "url", opts.URL, "rate", opts.Rate, "batch", opts.BatchSize, "seed", seed)
			stats, err := loadgen.New(seed, loadgen.Options{}).Run(cmd.Context(), opts)
			fmt.Fprintf(cmd.OutOrStdout(), "batches %d, events sent %d, stored %d, failed %d, retries %d\n",
				stats.Batches, stats.Sent, stats.Stored, stats.Failed, stats.Retries)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.URL, "url", "", "opsflow API base URL (default http://$OPSFLOW_HTTP_ADDR)")
	f.StringVar(&opts.Key, "key", "", "API key with the ingest scope (default $OPSFLOW_ADMIN_KEY)")
	f.Float64Var(&opts.Rate, "rate", 50, "events per second")
	f.IntVar(&opts.BatchSize, "batch", 100, "most events per request")
	f.DurationVar(&opts.Duration, "duration", 0, "how long to run (0: until Ctrl-C)")
	f.Int64Var(&seed, "seed", 0, "seed of the traffic, for a repeatable run (default: from the clock)")
	return cmd
}
