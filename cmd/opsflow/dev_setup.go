package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/devstack"
	"github.com/opsflow/opsflow/workflows"
)

const (
	// localPostgresAddr is where a machine's own PostgreSQL usually listens.
	localPostgresAddr     = "127.0.0.1:5432"
	localPostgresAdminURL = "postgres://postgres@" + localPostgresAddr + "/postgres?sslmode=disable"
	// ownPostgresPort is fixed so the dev cluster's URL stays the same
	// across restarts; a free port is used when something else holds it.
	ownPostgresPort = 54329
	devDatabase     = "opsflow"
)

// makeDataDir creates the data directory private to its owner; parents it
// needs are ordinary directories, which a cluster run as another user can
// pass through.
func makeDataDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create data directory: %w", err)
	}
	return nil
}

// lockDataDir makes a second `opsflow dev` on the same data directory fail
// at once instead of sharing (and corrupting) its PostgreSQL and Temporal
// state. The kernel drops the lock when the process dies.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "dev.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another `opsflow dev` (pid %s) is using %s: stop it first", strings.TrimSpace(string(owner)), dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

// checkPortsFree fails before anything starts when a port the stack needs
// is taken, most likely by another `opsflow dev` or Temporal server.
func checkPortsFree(cfg config.Config, flags devFlags) error {
	for _, p := range []struct{ what, addr, setting string }{
		{"the API address", cfg.HTTPAddr, "OPSFLOW_HTTP_ADDR"},
		{"the Temporal port", "127.0.0.1:" + strconv.Itoa(flags.temporalPort), "OPSFLOW_TEMPORAL_ADDRESS or --temporal-port"},
		{"the Temporal UI port", "127.0.0.1:" + strconv.Itoa(flags.uiPort), "OPSFLOW_TEMPORAL_UI_URL or --ui-port"},
	} {
		if devstack.PortOpen(p.addr) {
			return fmt.Errorf("%s %s is already in use (another `opsflow dev` or Temporal server?): stop it or choose another with %s", p.what, p.addr, p.setting)
		}
	}
	return nil
}

// ensureDevSecrets fills in the secret key and the admin key from the
// environment or from files in the data directory, generating them on the
// first run. It returns where the admin key came from, for the banner.
func ensureDevSecrets(cfg *config.Config) (string, error) {
	if cfg.SecretKey == nil {
		raw, err := persistedSecret(filepath.Join(cfg.DataDir, "secret.key"), newSecretKey, func(s string) error {
			_, err := decodeSecretKey(s)
			return err
		})
		if err != nil {
			return "", err
		}
		cfg.SecretKey, _ = decodeSecretKey(raw)
	}
	if cfg.AdminKey != "" {
		return "from OPSFLOW_ADMIN_KEY", nil
	}
	path := filepath.Join(cfg.DataDir, "admin.key")
	key, err := persistedSecret(path, newAdminKey, func(s string) error {
		if len(s) < 24 {
			return errors.New("shorter than 24 characters")
		}
		return nil
	})
	cfg.AdminKey = key
	return "kept in " + path, err
}

// persistedSecret returns the secret stored at path, creating it with
// generate when absent. A corrupt file is an error, never overwritten:
// secrets encrypted with an old key would become unreadable.
func persistedSecret(path string, generate func() (string, error), validate func(string) error) (string, error) {
	for {
		raw, err := os.ReadFile(path)
		if err == nil {
			s := strings.TrimSpace(string(raw))
			if err := validate(s); err != nil {
				return "", fmt.Errorf("%s is not usable (%w): fix or remove it", path, err)
			}
			return s, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("read %s: %w", path, err)
		}
		secret, err := generate()
		if err != nil {
			return "", err
		}
		// O_EXCL: of two processes racing here, one writes and both read it.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("create %s: %w", path, err)
		}
		_, werr := f.WriteString(secret + "\n")
		if err := errors.Join(werr, f.Close()); err != nil {
			return "", fmt.Errorf("write %s: %w", path, err)
		}
		return secret, nil
	}
}

func newSecretKey() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate secret key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

func decodeSecretKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(key) != 32 {
		return nil, errors.New("want the base64 encoding of 32 bytes")
	}
	return key, nil
}

func newAdminKey() (string, error) {
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate admin key: %w", err)
	}
	enc := base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	return "opsf_admin_" + enc.EncodeToString(raw), nil
}

type pgSource int

const (
	pgFromEnv pgSource = iota
	pgLocalServer
	pgOwnCluster
)

// choosePostgres decides which PostgreSQL the dev stack uses: DATABASE_URL,
// else a server that already accepts the conventional superuser on the
// default port (probed), else a cluster of opsflow's own.
func choosePostgres(ctx context.Context, databaseURL string, probe func(ctx context.Context, adminURL string) bool) pgSource {
	switch {
	case databaseURL != "":
		return pgFromEnv
	case probe(ctx, localPostgresAdminURL):
		return pgLocalServer
	default:
		return pgOwnCluster
	}
}

// probePostgres reports whether adminURL accepts a connection. The port is
// tried first so a machine without a server answers at once.
func probePostgres(ctx context.Context, adminURL string) bool {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil || !devstack.PortOpen(fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)) {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false
	}
	conn.Close(ctx)
	return true
}

// devPostgres is the PostgreSQL the dev stack runs on.
type devPostgres struct {
	description string
	// own is set when opsflow started the cluster and must stop it.
	own *devstack.Postgres
	log *os.File
}

func (p *devPostgres) stop(log *slog.Logger) {
	if p.own == nil {
		return
	}
	log.Info("stopping PostgreSQL")
	p.own.Stop()
	p.log.Close()
}

// setupPostgres picks the database (see choosePostgres), makes sure it
// exists and stores its URL in cfg.
func setupPostgres(ctx context.Context, cfg *config.Config, log *slog.Logger) (*devPostgres, error) {
	switch choosePostgres(ctx, cfg.DatabaseURL, probePostgres) {
	case pgFromEnv:
		return &devPostgres{description: "from DATABASE_URL"}, nil
	case pgLocalServer:
		if err := devstack.EnsureDatabase(ctx, localPostgresAdminURL, devDatabase); err != nil {
			return nil, fmt.Errorf("create database %q on the server at %s (or set DATABASE_URL): %w", devDatabase, localPostgresAddr, err)
		}
		cfg.DatabaseURL = strings.Replace(localPostgresAdminURL, "/postgres?", "/"+devDatabase+"?", 1)
		return &devPostgres{description: "the server already running on " + localPostgresAddr}, nil
	default:
		return startOwnPostgres(ctx, cfg, log)
	}
}

func startOwnPostgres(ctx context.Context, cfg *config.Config, log *slog.Logger) (*devPostgres, error) {
	port := ownPostgresPort
	if devstack.PortOpen("127.0.0.1:" + strconv.Itoa(port)) {
		port = 0 // let devstack pick a free one
	}
	if os.Geteuid() == 0 {
		// As root the server runs as the postgres user, which must be able to
		// pass through the data directory to reach its cluster; the key
		// files in it stay private (0600).
		if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
			return nil, fmt.Errorf("open %s to the postgres user: %w", cfg.DataDir, err)
		}
	}
	logPath := filepath.Join(cfg.DataDir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", logPath, err)
	}
	dataDir := filepath.Join(cfg.DataDir, "pg")
	log.Info("starting PostgreSQL", "data_dir", dataDir, "log", logPath)
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{DataDir: dataDir, Port: port, Log: logf})
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start PostgreSQL in %s (see %s): %w", dataDir, logPath, err)
	}
	p := &devPostgres{description: "opsflow's own cluster in " + dataDir, own: pg, log: logf}
	if err := devstack.EnsureDatabase(ctx, pg.URL("postgres"), devDatabase); err != nil {
		p.stop(log)
		return nil, fmt.Errorf("create database %q: %w", devDatabase, err)
	}
	cfg.DatabaseURL = pg.URL(devDatabase)
	return p, nil
}

// devTemporal is the running Temporal dev server and its log file.
type devTemporal struct {
	srv *devstack.Temporal
	log *os.File
}

func (t *devTemporal) stop(log *slog.Logger) {
	log.Info("stopping Temporal dev server")
	t.srv.Stop()
	t.log.Close()
}

// startTemporal starts the dev server with its state in the data directory,
// so workflow histories and schedules survive a restart.
func startTemporal(ctx context.Context, cfg config.Config, flags devFlags) (*devTemporal, error) {
	if _, err := os.Stat(flags.temporalCLI); err != nil {
		return nil, fmt.Errorf("no Temporal CLI at %s: `make run` installs it into ./bin, or pass --temporal-cli: %w", flags.temporalCLI, err)
	}
	logPath := filepath.Join(cfg.DataDir, "temporal.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", logPath, err)
	}
	srv, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{
		CLIPath:          flags.temporalCLI,
		Port:             flags.temporalPort,
		UIPort:           flags.uiPort,
		Namespace:        cfg.TemporalNamespace,
		DBFile:           filepath.Join(cfg.DataDir, "temporal.db"),
		SearchAttributes: workflows.SearchAttributes,
		Log:              logf,
	})
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start Temporal dev server (see %s): %w", logPath, err)
	}
	return &devTemporal{srv: srv, log: logf}, nil
}

// redactDSN shows where a database is without its password.
func redactDSN(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparsable database URL)"
	}
	user := cfg.User
	if cfg.Password != "" {
		user += ":xxxxx"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", user, cfg.Host, cfg.Port, cfg.Database)
}
