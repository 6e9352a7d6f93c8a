-- Dashboard pre-aggregates (issue 3), all derived from rollup_minute or the
-- raw rows by the collection activity in the same transaction as the minutes
-- they summarise, so they are never staler than rollup_minute.
--
-- grain is a bit mask of the dimensions a row keeps: 4 tenant, 2 provider,
-- 1 model. A dimension not kept is stored as '' and means "all". Reading the
-- coarsest grain that covers a query's filters keeps sketch merges few: a
-- 24 h answer without filters merges 24 hour rows, not 24 x 9,000.

-- Per-minute projections of rollup_minute: everything (0) and one dimension
-- at a time (4, 2, 1). Used for the partial hours at a window's edges and for
-- sub-hour time-series steps. Queries filtering two or more dimensions read
-- rollup_minute itself: two-dimension grains would nearly double its size.
CREATE TABLE rollup_minute_proj (
    grain           smallint         NOT NULL CHECK (grain IN (0, 1, 2, 4)),
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
    PRIMARY KEY (grain, minute, tenant, provider, model)
);

-- Hourly rollups at every grain (7 = the full key). peak_requests is the
-- busiest minute of the hour for the row's key, for peak QPS.
CREATE TABLE rollup_hour (LIKE rollup_minute_proj INCLUDING ALL);
ALTER TABLE rollup_hour RENAME COLUMN minute TO hour;
ALTER TABLE rollup_hour DROP CONSTRAINT rollup_minute_proj_grain_check;
ALTER TABLE rollup_hour ADD CONSTRAINT rollup_hour_grain_check CHECK (grain BETWEEN 0 AND 7);
ALTER TABLE rollup_hour ADD COLUMN peak_requests bigint NOT NULL DEFAULT 0;

-- Failed requests (every row that is not a success, as rollup_minute
-- defines it) per minute by full key and status x error type x message.
-- Messages are cut to 200 characters so one noisy upstream cannot blow up
-- the table.
CREATE TABLE rollup_errors_minute (
    minute        timestamptz NOT NULL,
    tenant        text        NOT NULL,
    provider      text        NOT NULL,
    model         text        NOT NULL,
    status_code   smallint    NOT NULL,
    error_type    text        NOT NULL,
    error_message text        NOT NULL,
    requests      bigint      NOT NULL,
    PRIMARY KEY (minute, tenant, provider, model, status_code, error_type, error_message)
);

-- The same per hour at every grain.
CREATE TABLE rollup_errors_hour (
    grain         smallint    NOT NULL CHECK (grain BETWEEN 0 AND 7),
    hour          timestamptz NOT NULL,
    tenant        text        NOT NULL,
    provider      text        NOT NULL,
    model         text        NOT NULL,
    status_code   smallint    NOT NULL,
    error_type    text        NOT NULL,
    error_message text        NOT NULL,
    requests      bigint      NOT NULL,
    PRIMARY KEY (grain, hour, tenant, provider, model, status_code, error_type, error_message)
);
