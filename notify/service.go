package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/secrets"
	"github.com/opsflow/opsflow/workflows"
)

// Errors the API maps to status codes.
var (
	// ErrNotDead: only a dead notification can be requeued (409).
	ErrNotDead = errors.New("only a dead notification can be requeued")
	// ErrNoSecretKey: channels cannot be saved or read without
	// OPSFLOW_SECRET_KEY (503).
	ErrNoSecretKey = errors.New("OPSFLOW_SECRET_KEY is not configured: channel configurations cannot be sealed or opened")
	// ErrTemporal: Temporal did not take the start or signal (503).
	ErrTemporal = errors.New("Temporal is unavailable")
)

// MaxBulkRequeue bounds one bulk requeue.
const MaxBulkRequeue = 500

// bulkSignals bounds the signals a bulk requeue sends at once.
const bulkSignals = 8

// Service is what the API and the CLI do with channels and notifications:
// the one place that seals configurations, starts notify workflows and
// signals them.
type Service struct {
	DB        *db.DB
	Temporal  client.Client
	TaskQueue string
	// Retry is the default policy (OPSFLOW_NOTIFY_RETRY_*).
	Retry workflows.NotifyRetryPolicy
	// Secrets seals channel configurations; nil refuses with ErrNoSecretKey.
	Secrets  *secrets.Box
	Outbound *Outbound
}

// Channel is a channel as clients see it: configuration masked.
type Channel struct {
	ID     int64          `json:"id"`
	Name   string         `json:"name"`
	Type   string         `json:"type"`
	Config Config         `json:"config"`
	Retry  *RetryOverride `json:"retry"`
	// EffectiveRetry is the policy new notifications of the channel get.
	EffectiveRetry RetryOverride `json:"effective_retry"`
	CreatedAt      time.Time     `json:"created_at"`
	UpdatedAt      time.Time     `json:"updated_at"`
}

// ChannelInput is a channel as clients write it. On update, secret fields
// left empty or sent back masked keep their stored value.
type ChannelInput struct {
	Name   string          `json:"name"`
	Type   string          `json:"type"`
	Config json.RawMessage `json:"config"`
	Retry  *RetryOverride  `json:"retry"`
}

const maxChannelName = 100

func (in *ChannelInput) validateName() error {
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || len(in.Name) > maxChannelName {
		return fieldErr("name", "needs 1 to %d characters", maxChannelName)
	}
	return nil
}

// CreateChannel validates, seals and stores a new channel.
func (s *Service) CreateChannel(ctx context.Context, in ChannelInput, actor string) (Channel, error) {
	if err := in.validateName(); err != nil {
		return Channel{}, err
	}
	cfg, err := ParseConfig(in.Type, in.Config)
	if err != nil {
		return Channel{}, err
	}
	row := &db.Channel{Name: in.Name, Type: in.Type}
	if err := s.prepare(ctx, row, cfg, in.Retry); err != nil {
		return Channel{}, err
	}
	err = s.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.CreateChannel(ctx, tx, row); err != nil {
			return err
		}
		return auditChannel(ctx, tx, actor, db.AuditChannelCreate, row)
	})
	if err != nil {
		return Channel{}, db.MapError(err)
	}
	return s.view(row, cfg), nil
}

// UpdateChannel replaces a channel's name, configuration and retry
// override. The type is fixed: a channel of another type is a new channel.
func (s *Service) UpdateChannel(ctx context.Context, id int64, in ChannelInput, actor string) (Channel, error) {
	if err := in.validateName(); err != nil {
		return Channel{}, err
	}
	row, old, err := s.load(ctx, id)
	if err != nil {
		return Channel{}, err
	}
	if in.Type != "" && in.Type != row.Type {
		return Channel{}, fieldErr("type", "cannot change from %s; create a new channel instead", row.Type)
	}
	cfg, err := ParseConfig(row.Type, in.Config)
	if err != nil {
		return Channel{}, err
	}
	cfg.KeepSecrets(old)
	row.Name = in.Name
	if err := s.prepare(ctx, row, cfg, in.Retry); err != nil {
		return Channel{}, err
	}
	err = s.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.UpdateChannel(ctx, tx, row); err != nil {
			return err
		}
		return auditChannel(ctx, tx, actor, db.AuditChannelUpdate, row)
	})
	if err != nil {
		return Channel{}, db.MapError(err)
	}
	return s.view(row, cfg), nil
}

// prepare validates cfg and retry and seals cfg into row.
func (s *Service) prepare(ctx context.Context, row *db.Channel, cfg Config, retry *RetryOverride) error {
	if err := cfg.Validate(ctx, s.Outbound); err != nil {
		return err
	}
	if err := retry.validate(s.Retry); err != nil {
		return err
	}
	if s.Secrets == nil {
		return ErrNoSecretKey
	}
	sealed, err := cfg.Seal(s.Secrets)
	if err != nil {
		return fmt.Errorf("seal channel configuration: %w", err)
	}
	row.ConfigKeyID, row.ConfigSealed, row.Retry = sealed.KeyID, sealed.Ciphertext, nil
	if retry != nil {
		if row.Retry, err = json.Marshal(retry); err != nil {
			return err
		}
	}
	return nil
}

func auditChannel(ctx context.Context, idb bun.IDB, actor, action string, row *db.Channel) error {
	return db.InsertAudit(ctx, idb, &db.AuditEntry{Actor: actor, Action: action, Target: channelTarget(row.ID),
		Details: map[string]any{"name": row.Name, "type": row.Type}})
}

func channelTarget(id int64) string { return "channel:" + strconv.FormatInt(id, 10) }

// DeleteChannel marks a channel deleted.
func (s *Service) DeleteChannel(ctx context.Context, id int64, actor string) error {
	return db.MapError(s.DB.Bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := db.DeleteChannel(ctx, tx, id); err != nil {
			return err
		}
		return db.InsertAudit(ctx, tx, &db.AuditEntry{Actor: actor, Action: db.AuditChannelDelete, Target: channelTarget(id)})
	}))
}

// GetChannel returns one live channel.
func (s *Service) GetChannel(ctx context.Context, id int64) (Channel, error) {
	row, cfg, err := s.load(ctx, id)
	if err != nil {
		return Channel{}, err
	}
	return s.view(row, cfg), nil
}

// ListChannels returns every live channel.
func (s *Service) ListChannels(ctx context.Context) ([]Channel, error) {
	rows, err := db.ListChannels(ctx, s.DB.Bun)
	if err != nil {
		return nil, err
	}
	out := make([]Channel, 0, len(rows))
	for i := range rows {
		cfg, err := s.open(&rows[i])
		if err != nil {
			return nil, err
		}
		out = append(out, s.view(&rows[i], cfg))
	}
	return out, nil
}

func (s *Service) load(ctx context.Context, id int64) (*db.Channel, Config, error) {
	row, err := db.GetChannel(ctx, s.DB.Bun, id)
	if err != nil {
		return nil, Config{}, err
	}
	cfg, err := s.open(row)
	return row, cfg, err
}

func (s *Service) open(row *db.Channel) (Config, error) {
	if s.Secrets == nil {
		return Config{}, ErrNoSecretKey
	}
	return OpenConfig(row.Type, s.Secrets, secrets.Sealed{KeyID: row.ConfigKeyID, Ciphertext: row.ConfigSealed})
}

func (s *Service) view(row *db.Channel, cfg Config) Channel {
	override := overrideOf(row.Retry)
	return Channel{ID: row.ID, Name: row.Name, Type: row.Type, Config: cfg, Retry: override,
		EffectiveRetry: policyView(override.Apply(s.Retry)), CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt}
}

// TestChannel sends a test notification through the same workflow as any
// other.
func (s *Service) TestChannel(ctx context.Context, id int64, actor string) (*db.Notification, error) {
	row, err := db.GetChannel(ctx, s.DB.Bun, id)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	n, err := s.Enqueue(ctx, row, KindTest, Alert{
		// One fingerprint per channel: PagerDuty folds repeated tests into
		// one incident.
		Fingerprint: "opsflow-test-" + channelTarget(row.ID),
		Status:      StatusFiring,
		Severity:    SeverityInfo,
		Title:       "opsflow test notification",
		Summary:     fmt.Sprintf("Channel %q (%s) reached. Requested by %s.", row.Name, row.Type, actor),
		StartsAt:    now,
	})
	if err != nil {
		return nil, err
	}
	// The audit entry follows the start: a test that never started is not
	// worth recording, and the notification row tells the rest.
	err = db.InsertAudit(ctx, s.DB.Bun, &db.AuditEntry{Actor: actor, Action: db.AuditChannelTest, Target: channelTarget(row.ID),
		Details: map[string]any{"notification": n.ID}})
	return n, err
}

// Enqueue stores a notification for ch and starts its workflow. The row
// comes first, so the workflow always finds it; if the start fails the row
// is removed again and the caller sees ErrTemporal.
func (s *Service) Enqueue(ctx context.Context, ch *db.Channel, kind string, alert Alert) (*db.Notification, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(alert)
	if err != nil {
		return nil, err
	}
	n := &db.Notification{ID: id.String(), ChannelID: ch.ID, ChannelType: ch.Type, Kind: kind, Payload: payload,
		WorkflowID: workflows.NotifyWorkflowID(id.String())}
	if err := db.InsertNotification(ctx, s.DB.Bun, n); err != nil {
		return nil, err
	}
	_, err = s.Temporal.ExecuteWorkflow(ctx, s.startOptions(n), workflows.NotifyWorkflowName, s.input(n, ch.Retry))
	if err != nil {
		if delErr := db.DeleteNotification(context.WithoutCancel(ctx), s.DB.Bun, n.ID); delErr != nil {
			err = errors.Join(err, delErr)
		}
		return nil, fmt.Errorf("%w: start %s: %w", ErrTemporal, n.WorkflowID, err)
	}
	return n, nil
}

func (s *Service) startOptions(n *db.Notification) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:        n.WorkflowID,
		TaskQueue: s.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrJob.ValueSet(workflows.NotifyWorkflowName),
			workflows.SearchAttrNotificationStatus.ValueSet(workflows.NotificationPending),
			workflows.SearchAttrChannelType.ValueSet(n.ChannelType)),
	}
}

func (s *Service) input(n *db.Notification, retry json.RawMessage) workflows.NotifyInput {
	return workflows.NotifyInput{NotificationID: n.ID, ChannelType: n.ChannelType, Retry: overrideOf(retry).Apply(s.Retry)}
}

// Requeue gives a dead notification a fresh attempt budget: the requeue
// signal goes to its workflow, which audit-logs it with actor. Signal-with-
// start covers a workflow that no longer runs (terminated by hand, or a
// Temporal whose state was lost): a new run finds the row dead and acts on
// the signal.
func (s *Service) Requeue(ctx context.Context, id, actor, reason string) (*db.Notification, error) {
	n, err := db.GetNotification(ctx, s.DB.Bun, id)
	if err != nil {
		return nil, err
	}
	if n.Status != db.NotificationDead {
		return nil, fmt.Errorf("%w: notification %s is %s", ErrNotDead, id, n.Status)
	}
	return n, s.signalRequeue(ctx, n, workflows.RequeueSignal{Actor: actor, Reason: reason})
}

func (s *Service) signalRequeue(ctx context.Context, n *db.Notification, sig workflows.RequeueSignal) error {
	var retry json.RawMessage
	if ch, err := db.GetChannel(ctx, s.DB.Bun, n.ChannelID); err == nil {
		retry = ch.Retry
	} else if !errors.Is(err, db.ErrNotFound) {
		return err
	}
	_, err := s.Temporal.SignalWithStartWorkflow(ctx, n.WorkflowID, workflows.SignalRequeue, sig,
		s.startOptions(n), workflows.NotifyWorkflowName, s.input(n, retry))
	if err != nil {
		return fmt.Errorf("%w: signal %s: %w", ErrTemporal, n.WorkflowID, err)
	}
	return nil
}

// RequeueResult reports a bulk requeue.
type RequeueResult struct {
	Requeued []string `json:"requeued"`
	// Failed lists notifications whose workflow could not be signalled.
	Failed []string `json:"failed"`
	// More is true when more dead notifications match than the limit took.
	More bool `json:"more"`
}

// RequeueDead requeues up to limit (at most MaxBulkRequeue) dead
// notifications, of one channel when channelID is set, newest first.
func (s *Service) RequeueDead(ctx context.Context, channelID int64, limit int, actor, reason string) (RequeueResult, error) {
	if limit <= 0 || limit > MaxBulkRequeue {
		return RequeueResult{}, fieldErr("limit", "must be from 1 to %d", MaxBulkRequeue)
	}
	dead, err := db.ListNotifications(ctx, s.DB.Bun, db.NotificationFilter{Status: db.NotificationDead, ChannelID: channelID, Limit: limit + 1})
	if err != nil {
		return RequeueResult{}, err
	}
	res := RequeueResult{Requeued: []string{}, Failed: []string{}, More: len(dead) > limit}
	dead = dead[:min(len(dead), limit)]
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, bulkSignals)
	for i := range dead {
		n := &dead[i]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := s.signalRequeue(ctx, n, workflows.RequeueSignal{Actor: actor, Reason: reason})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed = append(res.Failed, n.ID)
				return
			}
			res.Requeued = append(res.Requeued, n.ID)
		})
	}
	wg.Wait()
	return res, nil
}

// Status asks the notification's workflow for its live status.
func (s *Service) Status(ctx context.Context, n *db.Notification) (workflows.NotifyStatus, error) {
	var st workflows.NotifyStatus
	v, err := s.Temporal.QueryWorkflow(ctx, n.WorkflowID, "", workflows.QueryStatus)
	if err != nil {
		return st, fmt.Errorf("%w: query %s: %w", ErrTemporal, n.WorkflowID, err)
	}
	return st, v.Get(&st)
}
