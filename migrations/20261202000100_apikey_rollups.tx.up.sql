-- api_key pre-aggregates: dashboard answers filtered or broken down by
-- api_key (alone or with tenant) read these instead of the raw rows. The
-- collection activity maintains them in the transaction that recomputes the
-- minutes they summarise, like the other dashboard rollups.
--
-- Keys belong to tenants and tenant + api_key filters are common, so tenant
-- is kept; provider and model are not (keys x providers x models would
-- approach the raw row count), so queries involving those with api_key still
-- read the raw rows.

-- Per minute, from the raw rows. Counters and sketches as rollup_minute.
CREATE TABLE rollup_apikey_minute (
    minute          timestamptz      NOT NULL,
    api_key         text             NOT NULL,
    tenant          text             NOT NULL,
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
    PRIMARY KEY (minute, api_key, tenant)
);
-- "What is this key doing": a key's rows over a window without reading every
-- other key's (the primary key serves the collector's per-minute rebuilds).
CREATE INDEX rollup_apikey_minute_key_idx ON rollup_apikey_minute (api_key, minute);

-- Per hour, from rollup_apikey_minute (LIKE copies both indexes);
-- peak_requests is the key's busiest minute of the hour.
CREATE TABLE rollup_apikey_hour (LIKE rollup_apikey_minute INCLUDING ALL);
ALTER TABLE rollup_apikey_hour RENAME COLUMN minute TO hour;
ALTER TABLE rollup_apikey_hour ADD COLUMN peak_requests bigint NOT NULL DEFAULT 0;
