-- API keys: only a SHA-256 of the secret part is stored; keys are high-entropy
-- random strings, so a slow hash would buy nothing.
CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    name         text        NOT NULL,
    prefix       text        NOT NULL UNIQUE,
    secret_hash  bytea       NOT NULL,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Raw request logs, one partition per UTC day. Indexes are kept to one:
-- every extra btree costs COPY throughput (see SPEC §2).
CREATE TABLE request_logs (
    ts               timestamptz      NOT NULL,
    request_id       text,
    tenant           text             NOT NULL DEFAULT '',
    api_key          text             NOT NULL DEFAULT '',
    upstream_account text,
    provider         text             NOT NULL,
    model            text             NOT NULL DEFAULT '',
    endpoint         text,
    status_code      smallint         NOT NULL,
    latency_ms       double precision NOT NULL,
    ttft_ms          double precision,
    input_tokens     bigint           NOT NULL DEFAULT 0,
    output_tokens    bigint           NOT NULL DEFAULT 0,
    cached_tokens    bigint           NOT NULL DEFAULT 0,
    cost_usd         numeric(24, 10)  NOT NULL DEFAULT 0,
    stream           boolean          NOT NULL DEFAULT false,
    error_type       text,
    error_message    text,
    client_ip        inet
) PARTITION BY RANGE (ts);

CREATE INDEX request_logs_ts_idx ON request_logs (ts);

-- Creates the partition holding the given UTC day unless it exists. The
-- advisory lock serialises concurrent callers, which would otherwise race on
-- CREATE TABLE IF NOT EXISTS.
CREATE FUNCTION opsflow_ensure_request_logs_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('request_logs_p%s', to_char(day, 'YYYYMMDD'));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('opsflow_request_logs_partitions'));
    IF to_regclass(part) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF request_logs FOR VALUES FROM (%L) TO (%L)',
            part,
            (day::timestamp AT TIME ZONE 'UTC'),
            ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    END IF;
    RETURN part;
END;
$$;

-- One row per accepted ingest batch, written in the same transaction as the
-- batch's rows. The collector reads uncollected batches to learn which minutes
-- changed; because the row commits with the data, no batch can be skipped by
-- out-of-order commits. It also holds the Idempotency-Key answer.
CREATE TABLE ingest_batches (
    id              bigserial   PRIMARY KEY,
    key_owner       text        NOT NULL,
    idempotency_key text,
    request_hash    bytea       NOT NULL,
    events          integer     NOT NULL,
    minutes         timestamptz[] NOT NULL,
    response        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    collected_at    timestamptz
);

CREATE UNIQUE INDEX ingest_batches_idempotency_idx
    ON ingest_batches (key_owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX ingest_batches_pending_idx ON ingest_batches (id) WHERE collected_at IS NULL;

-- Per-minute rollups per (tenant, provider, model). Sketches are DDSketch
-- encodings, mergeable across minutes and groups.
CREATE TABLE rollup_minute (
    minute          timestamptz      NOT NULL,
    tenant          text             NOT NULL,
    provider        text             NOT NULL,
    model           text             NOT NULL,
    requests        bigint           NOT NULL,
    successes       bigint           NOT NULL,
    status_4xx      bigint           NOT NULL,
    status_5xx      bigint           NOT NULL,
    timeouts        bigint           NOT NULL,
    input_tokens    bigint           NOT NULL,
    output_tokens   bigint           NOT NULL,
    cached_tokens   bigint           NOT NULL,
    cost_usd        numeric(30, 10)  NOT NULL,
    latency_sum     double precision NOT NULL,
    latency_max     double precision NOT NULL,
    latency_sketch  bytea            NOT NULL,
    ttft_count      bigint           NOT NULL,
    ttft_sum        double precision NOT NULL,
    ttft_max        double precision NOT NULL,
    ttft_sketch     bytea            NOT NULL,
    PRIMARY KEY (minute, tenant, provider, model)
);

-- opsflow's own process metrics, one row per process per minute.
CREATE TABLE process_metrics (
    minute               timestamptz      NOT NULL,
    instance             text             NOT NULL,
    cpu_seconds          double precision NOT NULL,
    rss_bytes            bigint           NOT NULL,
    heap_bytes           bigint           NOT NULL,
    goroutines           integer          NOT NULL,
    db_conns_total       integer          NOT NULL,
    db_conns_in_use      integer          NOT NULL,
    db_conns_idle        integer          NOT NULL,
    ingest_queue_batches bigint           NOT NULL,
    ingest_queue_events  bigint           NOT NULL,
    PRIMARY KEY (minute, instance)
);
