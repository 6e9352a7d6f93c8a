package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/worker"
)

func migrateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "migrate", Short: "Apply, roll back or list schema migrations"}
	run := func(op func(cmd *cobra.Command, d *db.DB) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), needDB)
			if err != nil {
				return err
			}
			defer c.close()
			return op(cmd, c.db)
		}
	}
	cmd.AddCommand(
		&cobra.Command{Use: "up", Short: "Apply pending migrations", Args: cobra.NoArgs,
			RunE: run(func(cmd *cobra.Command, d *db.DB) error {
				names, err := d.MigrateUp(cmd.Context())
				fmt.Fprintf(cmd.OutOrStdout(), "applied %d migration(s) %s\n", len(names), strings.Join(names, " "))
				return err
			})},
		&cobra.Command{Use: "down", Short: "Roll back the last migration group", Args: cobra.NoArgs,
			RunE: run(func(cmd *cobra.Command, d *db.DB) error {
				names, err := d.MigrateDown(cmd.Context())
				fmt.Fprintf(cmd.OutOrStdout(), "rolled back %d migration(s) %s\n", len(names), strings.Join(names, " "))
				return err
			})},
		&cobra.Command{Use: "status", Short: "List migrations and whether they are applied", Args: cobra.NoArgs,
			RunE: run(func(cmd *cobra.Command, d *db.DB) error {
				statuses, err := d.MigrationStatuses(cmd.Context())
				for _, s := range statuses {
					state := "pending"
					if s.Applied {
						state = "applied"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%-8s %s\n", state, s.Name)
				}
				return err
			})},
	)
	return cmd
}

func schedulesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "schedules", Short: "Manage the Temporal schedules declared in code"}
	cmd.AddCommand(&cobra.Command{
		Use: "apply", Short: "Create or update every declared schedule", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), needTemporal)
			if err != nil {
				return err
			}
			defer c.close()
			results, err := worker.ApplySchedules(cmd.Context(), c.temporal, c.cfg.TaskQueue)
			for _, r := range results {
				fmt.Fprintf(cmd.OutOrStdout(), "%-8s %s\n", r.Action, r.ID)
			}
			return err
		},
	})
	return cmd
}

func keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage API keys"}
	var name string
	var scopes []string
	create := &cobra.Command{
		Use: "create", Short: "Create an API key and print it (shown only once)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context(), needDB)
			if err != nil {
				return err
			}
			defer c.close()
			key, k, err := db.CreateAPIKey(cmd.Context(), c.db.Bun, name, scopes)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created key %d %q with scopes %s\n", k.ID, k.Name, strings.Join(k.Scopes, ","))
			fmt.Fprintln(cmd.OutOrStdout(), key)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the key is for (required)")
	create.Flags().StringSliceVar(&scopes, "scope", nil, "scope to grant: "+strings.Join(db.AllScopes, ", ")+" (repeatable)")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("scope")
	cmd.AddCommand(create)
	return cmd
}
