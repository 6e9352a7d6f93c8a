-- Notification channels. The whole configuration is sealed with
-- AES-256-GCM (package secrets): config_key_id names the key, so keys can
-- rotate. Deleting a channel only marks it: its notifications keep their
-- history, and any still in flight fail as rejected.
CREATE TABLE channels (
    id             bigserial   PRIMARY KEY,
    name           text        NOT NULL,
    type           text        NOT NULL CHECK (type IN ('webhook', 'slack', 'email', 'pagerduty')),
    config_key_id  text        NOT NULL,
    config_sealed  bytea       NOT NULL,
    -- Per-channel retry policy override; NULL takes the configured default.
    retry          jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);

CREATE UNIQUE INDEX channels_name_idx ON channels (name) WHERE deleted_at IS NULL;

-- One row per notification; its delivery is the workflow workflow_id
-- ("notify/<id>"). Every state change is a compare-and-set on status.
-- Ids are UUIDv7, so id order is creation order (and the paging order).
CREATE TABLE notifications (
    id              uuid        PRIMARY KEY,
    channel_id      bigint      NOT NULL REFERENCES channels (id),
    channel_type    text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('alert', 'test')),
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_retry_at   timestamptz,
    last_attempt_at timestamptz,
    sent_at         timestamptz,
    dead_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    workflow_id     text        NOT NULL
);

CREATE INDEX notifications_status_idx ON notifications (status, id);
CREATE INDEX notifications_channel_idx ON notifications (channel_id, id);

-- Who did what to which object, for admin actions (SPEC §12): channel
-- changes, requeues, and later rule and credential changes. details never
-- holds a secret.
CREATE TABLE audit_log (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,
    action   text        NOT NULL,
    target   text        NOT NULL,
    details  jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_target_idx ON audit_log (target, at);
