package main

import (
	"fmt"
	"os"
	"os/user"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/opsflow/opsflow/notify"
)

func notificationsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "notifications", Short: "Manage notification delivery"}
	var reason string
	requeue := &cobra.Command{
		Use:   "requeue <notification-id>",
		Short: "Give a dead notification a fresh attempt budget (audit-logged)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := uuid.Parse(args[0])
			if err != nil {
				return fmt.Errorf("%q is not a notification id (UUID)", args[0])
			}
			c, err := connect(cmd.Context(), needDB|needTemporal)
			if err != nil {
				return err
			}
			defer c.close()
			svc := &notify.Service{DB: c.db, Temporal: c.temporal, TaskQueue: c.cfg.TaskQueue, Retry: notify.RetryFromConfig(c.cfg)}
			n, err := svc.Requeue(cmd.Context(), id.String(), cliActor(), reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "requeued %s (workflow %s)\n", n.ID, n.WorkflowID)
			return nil
		},
	}
	requeue.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	cmd.AddCommand(requeue)
	return cmd
}

// cliActor names a CLI user in the audit log as cli:<user>@<host>.
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "cli:" + name + "@" + host
}
