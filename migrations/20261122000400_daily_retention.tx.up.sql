-- Daily statistics per UTC day and (tenant, provider, model), computed from
-- the day's raw request_logs (SPEC §6). latency_sketch is the DDSketch of
-- every latency of the group-day, so the API merges percentiles across
-- groups and days; api_keys holds the sorted distinct keys, so distinct key
-- counts stay exact for any grouping (a union, not a sum). model_rank is
-- the model's rank within its (day, tenant) by requests: the top models.
CREATE TABLE daily_stats (
    day               date             NOT NULL,
    tenant            text             NOT NULL,
    provider          text             NOT NULL,
    model             text             NOT NULL,
    requests          bigint           NOT NULL,
    successes         bigint           NOT NULL,
    status_4xx        bigint           NOT NULL,
    status_5xx        bigint           NOT NULL,
    timeouts          bigint           NOT NULL,
    input_tokens      bigint           NOT NULL,
    output_tokens     bigint           NOT NULL,
    cached_tokens     bigint           NOT NULL,
    cost_usd          numeric(30, 10)  NOT NULL,
    latency_avg       double precision NOT NULL,
    latency_p50       double precision NOT NULL,
    latency_p95       double precision NOT NULL,
    latency_p99       double precision NOT NULL,
    latency_max       double precision NOT NULL,
    latency_sketch    bytea            NOT NULL,
    distinct_api_keys integer          NOT NULL,
    api_keys          text[]           NOT NULL,
    model_rank        integer          NOT NULL,
    PRIMARY KEY (day, tenant, provider, model)
);

-- Retention policy per data class (SPEC §7), one row per class an operator
-- has set; the others follow their default, declared in code with the class
-- (db.RetentionClasses). keep_days NULL keeps forever, which is only ever
-- set explicitly; max_rows NULL sets no row cap.
CREATE TABLE retention_policies (
    class       text        PRIMARY KEY,
    keep_days   integer     CHECK (keep_days > 0),
    max_rows    bigint      CHECK (max_rows > 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL DEFAULT 'default'
);

-- What each retention task removed: one row per (workflow run, class,
-- action); a retried task adds to its row. Listed newest first by id.
CREATE TABLE retention_runs (
    id                 bigserial   PRIMARY KEY,
    workflow_id        text        NOT NULL,
    run_id             text        NOT NULL,
    class              text        NOT NULL,
    table_name         text        NOT NULL,
    action             text        NOT NULL,
    cutoff             timestamptz,
    rows_removed       bigint      NOT NULL DEFAULT 0,
    partitions_removed text[]      NOT NULL DEFAULT '{}',
    started_at         timestamptz NOT NULL,
    duration_ms        bigint      NOT NULL,
    UNIQUE (run_id, class, action)
);

