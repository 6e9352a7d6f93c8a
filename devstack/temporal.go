package devstack

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// TemporalCLIVersion is the pinned Temporal CLI the Makefile installs into ./bin.
const TemporalCLIVersion = "v1.5.1"

// TemporalOptions configures a Temporal dev server.
type TemporalOptions struct {
	CLIPath   string
	Port      int // 0: a free port
	UIPort    int // 0: no UI
	Namespace string
	// DBFile persists the server's state in SQLite; empty keeps it in memory.
	DBFile           string
	SearchAttributes []temporal.SearchAttributeKey
	Log              io.Writer
}

// Temporal is a running dev server.
type Temporal struct {
	cmd     *exec.Cmd
	done    chan error
	Address string
}

// StartTemporal starts `temporal server start-dev` and returns once the
// namespace answers.
func StartTemporal(ctx context.Context, opts TemporalOptions) (*Temporal, error) {
	port := opts.Port
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"server", "start-dev",
		"--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--namespace", opts.Namespace,
		"--log-level", "warn",
		// The default transfer poll rate adds ~50 ms to every task (SPEC §2).
		"--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
		"--dynamic-config-value", "frontend.enableServerVersionCheck=false",
	}
	if opts.UIPort != 0 {
		args = append(args, "--ui-ip", "127.0.0.1", "--ui-port", strconv.Itoa(opts.UIPort))
	} else {
		args = append(args, "--headless")
	}
	if opts.DBFile != "" {
		args = append(args, "--db-filename", opts.DBFile,
			"--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")
	}
	for _, key := range opts.SearchAttributes {
		args = append(args, "--search-attribute", key.GetName()+"="+key.GetValueType().String())
	}
	cmd := exec.Command(opts.CLIPath, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start temporal dev server (%s): %w", opts.CLIPath, err)
	}
	t := &Temporal{cmd: cmd, done: make(chan error, 1), Address: addr}
	go func() { t.done <- cmd.Wait() }()
	if err := t.waitReady(ctx, opts.Namespace); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

func (t *Temporal) waitReady(ctx context.Context, namespace string) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-t.done:
			t.done <- err
			return fmt.Errorf("temporal dev server exited during start-up: %v", err)
		default:
		}
		c, err := client.Dial(client.Options{HostPort: t.Address, Namespace: namespace, Logger: quietLogger{}})
		if err == nil {
			_, err = c.WorkflowService().DescribeNamespace(ctx, describeNamespace(namespace))
			c.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("temporal dev server not ready after 90s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop interrupts the server (a graceful shutdown) and waits for it.
func (t *Temporal) Stop() {
	_ = t.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-t.done:
	case <-time.After(20 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
	}
}
