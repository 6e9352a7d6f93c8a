-- Alert rules (SPEC §9). A rule is never hard-deleted while alerts refer to
-- it: deleted_at hides it and the evaluator resolves its alerts. version
-- counts edits so history can say which revision raised an alert. uid is
-- what fingerprints hash: unlike id it never repeats across databases, so
-- notify workflow ids derived from fingerprints never collide on a shared
-- Temporal cluster (a restored or recreated database, test databases).
CREATE TABLE alert_rules (
    id                      bigserial        PRIMARY KEY,
    uid                     uuid             NOT NULL DEFAULT gen_random_uuid(),
    name                    text             NOT NULL,
    metric                  text             NOT NULL,
    operator                text             NOT NULL CHECK (operator IN ('>', '>=', '<', '<=')),
    warning                 double precision NOT NULL,
    critical                double precision NOT NULL,
    window_seconds          integer          NOT NULL,
    for_seconds             integer          NOT NULL DEFAULT 0,
    keep_firing_for_seconds integer          NOT NULL DEFAULT 0,
    min_samples             bigint           NOT NULL DEFAULT 0,
    group_by                text[]           NOT NULL DEFAULT '{}',
    filters                 jsonb            NOT NULL DEFAULT '{}',
    params                  jsonb            NOT NULL DEFAULT '{}',
    repeat_seconds          integer          NOT NULL DEFAULT 0,
    labels                  jsonb            NOT NULL DEFAULT '{}',
    annotations             jsonb            NOT NULL DEFAULT '{}',
    enabled                 boolean          NOT NULL DEFAULT true,
    version                 integer          NOT NULL DEFAULT 1,
    created_at              timestamptz      NOT NULL DEFAULT now(),
    updated_at              timestamptz      NOT NULL DEFAULT now(),
    deleted_at              timestamptz
);

CREATE UNIQUE INDEX alert_rules_name_idx ON alert_rules (name) WHERE deleted_at IS NULL;

-- Routing: which channels a rule notifies, each from a minimum severity.
CREATE TABLE alert_routes (
    rule_id      bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    channel_id   bigint NOT NULL REFERENCES channels (id),
    min_severity text   NOT NULL DEFAULT 'warning' CHECK (min_severity IN ('warning', 'critical')),
    PRIMARY KEY (rule_id, channel_id)
);

-- The durable state of one alert (rule + group labels = fingerprint). Every
-- write is a compare-and-set on version, so a retried evaluation never
-- applies a transition twice. pending_since keeps the `for` clock across
-- worker restarts; seq numbers the notifying transitions and feeds the
-- deterministic notification ids.
CREATE TABLE alerts (
    fingerprint       text             PRIMARY KEY,
    rule_id           bigint           NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    labels            jsonb            NOT NULL,
    state             text             NOT NULL CHECK (state IN ('ok', 'pending', 'firing', 'resolved')),
    severity          text             NOT NULL CHECK (severity IN ('warning', 'critical')),
    value             double precision NOT NULL,
    pending_since     timestamptz,
    firing_since      timestamptz,
    last_active_at    timestamptz,
    resolved_at       timestamptz,
    last_notified_at  timestamptz,
    last_eval_minute  timestamptz      NOT NULL,
    acked_at          timestamptz,
    acked_by          text,
    ack_comment       text,
    seq               integer          NOT NULL DEFAULT 0,
    version           bigint           NOT NULL DEFAULT 1,
    updated_at        timestamptz      NOT NULL DEFAULT now()
);

CREATE INDEX alerts_state_idx ON alerts (state, rule_id);

-- Every transition of every alert, the alert's history. at is the evaluated
-- minute (retention deletes by it). (fingerprint, seq_event) is unique so a
-- retried write is a no-op.
CREATE TABLE alert_events (
    id            bigserial        PRIMARY KEY,
    at            timestamptz      NOT NULL,
    fingerprint   text             NOT NULL,
    rule_id       bigint           NOT NULL,
    rule_version  integer          NOT NULL DEFAULT 0,
    from_state    text             NOT NULL,
    to_state      text             NOT NULL,
    from_severity text,
    severity      text             NOT NULL,
    labels        jsonb            NOT NULL DEFAULT '{}',
    value         double precision NOT NULL DEFAULT 0,
    threshold     double precision NOT NULL DEFAULT 0,
    event_key     text             NOT NULL,
    notified      boolean          NOT NULL DEFAULT false,
    muted_by      text,
    actor         text,
    comment       text,
    created_at    timestamptz      NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX alert_events_key_idx ON alert_events (fingerprint, event_key);
CREATE INDEX alert_events_at_idx ON alert_events (at);
CREATE INDEX alert_events_fp_idx ON alert_events (fingerprint, at);

-- Silences mute notifications of matching alerts for a time window; the
-- alerts keep evaluating and recording state meanwhile.
CREATE TABLE silences (
    id          bigserial   PRIMARY KEY,
    rule_id     bigint,
    matchers    jsonb       NOT NULL DEFAULT '{}',
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text        NOT NULL,
    comment     text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

CREATE INDEX silences_ends_idx ON silences (ends_at);

-- Per-tenant quotas (requests/tokens per minute/day, cost per day in USD),
-- read by the quota-usage and cost-forecast metrics.
CREATE TABLE tenant_quotas (
    tenant      text             NOT NULL,
    kind        text             NOT NULL CHECK (kind IN ('rpm', 'tpm', 'rpd', 'tpd', 'cost_per_day')),
    quota_limit double precision NOT NULL CHECK (quota_limit > 0),
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, kind)
);
