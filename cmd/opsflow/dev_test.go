package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/config"
)

func TestChoosePostgres(t *testing.T) {
	for _, c := range []struct {
		name        string
		databaseURL string
		localWorks  bool
		want        pgSource
		wantProbe   bool
	}{
		{"DATABASE_URL wins without probing", "postgres://u@db:5432/x", true, pgFromEnv, false},
		{"a local server is reused", "", true, pgLocalServer, true},
		{"otherwise an own cluster", "", false, pgOwnCluster, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var probed string
			probe := func(_ context.Context, adminURL string) bool {
				probed = adminURL
				return c.localWorks
			}
			assert.Equal(t, c.want, choosePostgres(context.Background(), c.databaseURL, probe))
			if c.wantProbe {
				assert.Equal(t, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", probed)
			} else {
				assert.Empty(t, probed)
			}
		})
	}
}

func TestDevSecretsAreGeneratedOnceAndKeptPrivate(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Config{DataDir: dir}
	source, err := ensureDevSecrets(&cfg)
	require.NoError(t, err)
	assert.Len(t, cfg.SecretKey, 32)
	assert.Regexp(t, `^opsf_admin_[a-z2-7]{32}$`, cfg.AdminKey)
	assert.Contains(t, source, "admin.key")
	for _, name := range []string{"secret.key", "admin.key"} {
		info, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), name)
	}

	again := config.Config{DataDir: dir}
	_, err = ensureDevSecrets(&again)
	require.NoError(t, err)
	assert.Equal(t, cfg.SecretKey, again.SecretKey)
	assert.Equal(t, cfg.AdminKey, again.AdminKey)
}

func TestDevSecretsFromTheEnvironmentWin(t *testing.T) {
	dir := t.TempDir()
	key := make([]byte, 32)
	cfg := config.Config{DataDir: dir, SecretKey: key, AdminKey: "an-admin-key-from-the-environment"}
	source, err := ensureDevSecrets(&cfg)
	require.NoError(t, err)
	assert.Equal(t, key, cfg.SecretKey)
	assert.Equal(t, "an-admin-key-from-the-environment", cfg.AdminKey)
	assert.Equal(t, "from OPSFLOW_ADMIN_KEY", source)
	assert.NoFileExists(t, filepath.Join(dir, "secret.key"))
	assert.NoFileExists(t, filepath.Join(dir, "admin.key"))
}

func TestCorruptSecretKeyIsNeverOverwritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.key")
	require.NoError(t, os.WriteFile(path, []byte("not base64 of 32 bytes\n"), 0o600))
	_, err := ensureDevSecrets(&config.Config{DataDir: dir})
	require.ErrorContains(t, err, "secret.key is not usable")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "not base64 of 32 bytes\n", string(raw))
}

func TestSecondDevOnTheSameDataDirFails(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDataDir(dir)
	require.NoError(t, err)
	_, err = lockDataDir(dir)
	require.ErrorContains(t, err, "another `opsflow dev`")
	unlock()
	unlockAgain, err := lockDataDir(dir)
	require.NoError(t, err)
	unlockAgain()
}

func TestRedactDSN(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://app:s3cret@db.internal:5433/opsflow?sslmode=require": "postgres://app:xxxxx@db.internal:5433/opsflow",
		"postgres://postgres@127.0.0.1:5432/opsflow?sslmode=disable":     "postgres://postgres@127.0.0.1:5432/opsflow",
		"host=db user=app password=s3cret dbname=opsflow":                "postgres://app:xxxxx@db:5432/opsflow",
	} {
		assert.Equal(t, want, redactDSN(dsn))
	}
}

func TestPortOf(t *testing.T) {
	port, err := portOf("OPSFLOW_TEMPORAL_ADDRESS", "//127.0.0.1:7233")
	require.NoError(t, err)
	assert.Equal(t, 7233, port)
	port, err = portOf("OPSFLOW_TEMPORAL_UI_URL", "http://localhost:8233")
	require.NoError(t, err)
	assert.Equal(t, 8233, port)
	_, err = portOf("OPSFLOW_TEMPORAL_UI_URL", "https://temporal.example.com")
	assert.ErrorContains(t, err, "OPSFLOW_TEMPORAL_UI_URL")
}

func TestSupervisorStopsNewestFirst(t *testing.T) {
	sup := newSupervisor(slog.New(slog.DiscardHandler))
	var mu sync.Mutex
	var stopped []string
	for _, name := range []string{"worker", "api", "loadgen"} {
		sup.start(context.Background(), name, func(ctx context.Context) error {
			<-ctx.Done()
			mu.Lock()
			defer mu.Unlock()
			stopped = append(stopped, name)
			return nil
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, sup.wait(ctx))
	sup.stop()
	assert.Equal(t, []string{"loadgen", "api", "worker"}, stopped)
}

func TestSupervisorReportsAServiceThatDies(t *testing.T) {
	sup := newSupervisor(slog.New(slog.DiscardHandler))
	sup.start(context.Background(), "worker", func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	})
	sup.start(context.Background(), "api", func(context.Context) error {
		return errors.New("bind: address already in use")
	})
	err := sup.wait(context.Background())
	assert.EqualError(t, err, "api: bind: address already in use")
	sup.stop()
}
