package notify

import (
	"github.com/opsflow/opsflow/config"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/workflows"
)

// SecretsFromConfig builds the box of OPSFLOW_SECRET_KEY and
// OPSFLOW_SECRET_KEY_PREVIOUS; nil (and no error) when no key is set.
func SecretsFromConfig(cfg config.Config) (*secrets.Box, error) {
	if cfg.SecretKey == nil {
		return nil, nil
	}
	return secrets.NewBox(cfg.SecretKey, cfg.SecretKeyPrevious)
}

// RetryFromConfig is the default retry policy (OPSFLOW_NOTIFY_RETRY_*); the
// coefficient is SPEC §10's doubling.
func RetryFromConfig(cfg config.Config) workflows.NotifyRetryPolicy {
	return workflows.NotifyRetryPolicy{
		InitialInterval:    cfg.NotifyRetryInitial,
		BackoffCoefficient: workflows.DefaultNotifyRetryPolicy.BackoffCoefficient,
		MaximumInterval:    cfg.NotifyRetryMaxInterval,
		MaximumAttempts:    cfg.NotifyRetryMaxAttempts,
	}
}
