// Package testenv is opsflow's test harness: real PostgreSQL and a real
// Temporal dev server, started by the harness itself.
//
// PostgreSQL: OPSFLOW_TEST_DATABASE_URL when set (a role that may CREATE
// DATABASE); else a testcontainers PostgreSQL when a Docker daemon answers;
// else a throwaway cluster from the machine's PostgreSQL binaries. Each test
// package migrates one template database and every test gets a fresh copy.
//
// Temporal: the pinned CLI in ./bin (installed by `make test`), one dev server
// per test package.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"
	"go.temporal.io/sdk/client"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/devstack"
	"github.com/opsflow/opsflow/workflows"
)

var (
	pgOnce     sync.Once
	pgAdminURL string
	pgTemplate string
	pgErr      error
	pgStop     func()

	temporalOnce sync.Once
	temporalSrv  *devstack.Temporal
	temporalErr  error

	dbCounter atomic.Int64
)

// Main runs a test package and stops whatever the harness started.
func Main(m *testing.M) {
	code := m.Run()
	if temporalSrv != nil {
		temporalSrv.Stop()
	}
	if pgStop != nil {
		pgStop()
	}
	os.Exit(code)
}

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// DatabaseURL returns the URL of a fresh, migrated database for this test,
// dropped when the test ends.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	pgOnce.Do(startPostgres)
	require.NoError(t, pgErr, "test PostgreSQL")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("opsflow_t%d_%d", os.Getpid(), dbCounter.Add(1))
	admin, err := pgx.Connect(ctx, pgAdminURL)
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, pgTemplate))
	require.NoError(t, err)
	t.Cleanup(func() { dropDatabase(name) })
	return withDatabase(pgAdminURL, name)
}

// DB opens a fresh, migrated database for this test.
func DB(t testing.TB) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), DatabaseURL(t), 16)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	return d
}

func startPostgres() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	switch {
	case os.Getenv("OPSFLOW_TEST_DATABASE_URL") != "":
		pgAdminURL = os.Getenv("OPSFLOW_TEST_DATABASE_URL")
	case dockerAvailable(ctx):
		pgAdminURL, pgStop, pgErr = startContainer(ctx)
	default:
		pgAdminURL, pgStop, pgErr = startLocalCluster(ctx)
	}
	if pgErr != nil {
		return
	}
	pgTemplate = fmt.Sprintf("opsflow_tpl%d", os.Getpid())
	pgErr = migrateTemplate(ctx)
}

func migrateTemplate(ctx context.Context) error {
	if err := devstack.EnsureDatabase(ctx, pgAdminURL, pgTemplate); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	d, err := db.Open(ctx, withDatabase(pgAdminURL, pgTemplate), 4)
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = d.MigrateUp(ctx)
	return err
}

func dockerAvailable(ctx context.Context) bool {
	if os.Getenv("DOCKER_HOST") == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			return false
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return false
	}
	defer provider.Close()
	return provider.Health(ctx) == nil
}

func startContainer(ctx context.Context) (string, func(), error) {
	c, err := tcpostgres.Run(ctx, "postgres:15-alpine",
		tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"), tcpostgres.WithDatabase("postgres"),
		testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").WithOccurrence(2)))
	if err != nil {
		return "", nil, fmt.Errorf("start postgres container: %w", err)
	}
	url, err := c.ConnectionString(ctx, "sslmode=disable")
	stop := func() { _ = c.Terminate(context.Background()) }
	if err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

func startLocalCluster(ctx context.Context) (string, func(), error) {
	dir, err := os.MkdirTemp("", "opsflow-test-pg-")
	if err != nil {
		return "", nil, err
	}
	// The server may run as another user (see devstack): let it reach its data.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", nil, err
	}
	var logw io.Writer = io.Discard
	if os.Getenv("OPSFLOW_TEST_VERBOSE") != "" {
		logw = os.Stderr
	}
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{DataDir: filepath.Join(dir, "data"), Ephemeral: true, Log: logw})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return pg.URL("postgres"), func() { pg.Stop(); os.RemoveAll(dir) }, nil
}

func dropDatabase(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgAdminURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

func withDatabase(url, name string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		panic(err)
	}
	cfg.Database = name
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", userinfo(cfg), cfg.Host, cfg.Port, name)
}

func userinfo(cfg *pgx.ConnConfig) string {
	if cfg.Password == "" {
		return cfg.User
	}
	return cfg.User + ":" + cfg.Password
}

// TemporalAddress starts (once per package) a Temporal dev server and returns
// its frontend address.
func TemporalAddress(t testing.TB) string {
	t.Helper()
	temporalOnce.Do(func() {
		cli := filepath.Join(RepoRoot(), "bin", "temporal")
		if _, err := os.Stat(cli); err != nil {
			temporalErr = errors.New("Temporal CLI missing at ./bin/temporal: run `make test` (it installs " + devstack.TemporalCLIVersion + ")")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var logw io.Writer = io.Discard
		if os.Getenv("OPSFLOW_TEST_VERBOSE") != "" {
			logw = os.Stderr
		}
		temporalSrv, temporalErr = devstack.StartTemporal(ctx, devstack.TemporalOptions{
			CLIPath: cli, SearchAttributes: workflows.SearchAttributes, Log: logw,
		})
	})
	require.NoError(t, temporalErr, "test Temporal dev server")
	return temporalSrv.Address
}

// TemporalClient dials the package's dev server; closed when the test ends.
func TemporalClient(t testing.TB) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: TemporalAddress(t), Namespace: "default"})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}
