package testenv_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestDatabasesAreFreshAndMigrated(t *testing.T) {
	ctx := context.Background()
	a, b := testenv.DB(t), testenv.DB(t)
	_, err := a.Pool.Exec(ctx, "INSERT INTO api_keys (name, prefix, secret_hash, scopes) VALUES ('x', 'p', '\\x00', '{read}')")
	require.NoError(t, err)
	var n int
	require.NoError(t, b.Pool.QueryRow(ctx, "SELECT count(*) FROM api_keys").Scan(&n))
	assert.Zero(t, n, "each test database starts empty")
}

func TestTemporalDevServerAnswers(t *testing.T) {
	c := testenv.TemporalClient(t)
	_, err := c.CheckHealth(context.Background(), nil)
	require.NoError(t, err)
}
