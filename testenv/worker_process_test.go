package testenv_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/testenv"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// processDB is a fresh migrated database for a test that runs worker
// processes: its URL, for the processes, and a pool on it, for the test.
func processDB(t *testing.T, maxConns int32) (string, *db.DB) {
	t.Helper()
	url := testenv.DatabaseURL(t)
	d, err := db.Open(context.Background(), url, maxConns)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	return url, d
}

// opsflowBinary builds cmd/opsflow once per test run.
func opsflowBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "opsflow-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "opsflow")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/opsflow")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildFailure{out: string(out), err: err}
		}
	})
	require.NoError(t, buildErr)
	return binary
}

type buildFailure struct {
	out string
	err error
}

func (b *buildFailure) Error() string {
	return "go build ./cmd/opsflow: " + b.err.Error() + "\n" + b.out
}

// workerEnv is the environment of an `opsflow worker` on taskQueue over the
// database at dbURL and the package's Temporal dev server: the test secret
// key, loopback targets allowed, /metrics on a port of the kernel's choosing.
// Later entries override earlier ones (os/exec keeps the last of a key), so
// callers append what differs.
func workerEnv(t *testing.T, dbURL, taskQueue string) []string {
	t.Helper()
	return []string{
		"DATABASE_URL=" + dbURL,
		"OPSFLOW_TEMPORAL_ADDRESS=" + testenv.TemporalAddress(t),
		"OPSFLOW_TASK_QUEUE=" + taskQueue,
		"OPSFLOW_SECRET_KEY=" + base64.StdEncoding.EncodeToString(secretKey),
		"OPSFLOW_NOTIFY_ALLOW=127.0.0.0/8",
		"OPSFLOW_LOG_LEVEL=warn",
		"OPSFLOW_WORKER_METRICS_ADDR=127.0.0.1:0",
	}
}

// workerProcess runs `opsflow worker` as a child process.
type workerProcess struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

// startWorker starts `opsflow worker` with env on top of the test's own
// environment; the worker is stopped (SIGTERM) when the test ends, and its
// output logged if the test failed.
func startWorker(t *testing.T, bin string, env []string) *workerProcess {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, "worker")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	w := &workerProcess{cmd: cmd, out: &out}
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
			_ = w.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("worker %d output:\n%s", w.cmd.Process.Pid, w.out)
		}
	})
	return w
}

// awaitPolling waits until a worker polls taskQueue for workflow tasks: the
// first worker of a queue is up. (The server remembers pollers for a while,
// so this says nothing about a worker started after another on the queue.)
func awaitPolling(t *testing.T, tc client.Client, taskQueue string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := tc.DescribeTaskQueue(context.Background(), taskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		return err == nil && len(resp.Pollers) > 0
	}, time.Minute, 20*time.Millisecond, "a worker polls %s", taskQueue)
}

// kill ends the worker the hard way: no shutdown, no goodbye to Temporal.
func (w *workerProcess) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	_ = w.cmd.Wait()
}
