-- Upstream OAuth credentials (SPEC §8). Each live, enabled credential has one
-- long-running workflow token-refresh/<id> keeping its access token fresh.
-- Secrets are sealed with AES-256-GCM (package secrets); each sealed column has
-- the id of the key that sealed it, so keys can rotate. The refresh writes
-- rotate tokens with a compare-and-set on token_version, so a refresh that lost
-- a race never overwrites the winner's tokens.
CREATE TABLE credentials (
    id                      bigserial   PRIMARY KEY,
    name                    text        NOT NULL,
    kind                    text        NOT NULL,
    token_url               text        NOT NULL,
    client_id               text        NOT NULL DEFAULT '',
    client_secret_key_id    text,
    client_secret_sealed    bytea,
    refresh_token_key_id    text        NOT NULL,
    refresh_token_sealed    bytea       NOT NULL,
    access_token_key_id     text,
    access_token_sealed     bytea,
    expires_at              timestamptz,
    status                  text        NOT NULL DEFAULT 'active'
                                        CHECK (status IN ('active', 'refreshing', 'error', 'disabled')),
    last_refreshed_at       timestamptz,
    last_error              text,
    failure_count           integer     NOT NULL DEFAULT 0,
    token_version           bigint      NOT NULL DEFAULT 0,
    -- How long before expires_at the refresh runs.
    refresh_lead_seconds    integer     NOT NULL DEFAULT 600 CHECK (refresh_lead_seconds >= 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz
);

CREATE UNIQUE INDEX credentials_name_idx ON credentials (name) WHERE deleted_at IS NULL;
CREATE INDEX credentials_failing_idx ON credentials (status) WHERE deleted_at IS NULL;

-- One row per refresh attempt that reached a verdict: its outcome
-- (refreshed, transient, rejected, superseded, failed) and the error text, which never
-- holds a secret. The alerting metric and the UI read it.
CREATE TABLE credential_refreshes (
    id             bigserial   PRIMARY KEY,
    credential_id  bigint      NOT NULL REFERENCES credentials (id),
    at             timestamptz NOT NULL DEFAULT now(),
    outcome        text        NOT NULL CHECK (outcome IN ('refreshed', 'transient', 'rejected', 'superseded', 'failed')),
    error          text,
    token_version  bigint      NOT NULL,
    expires_at     timestamptz
);

CREATE INDEX credential_refreshes_credential_idx ON credential_refreshes (credential_id, at DESC);
CREATE INDEX credential_refreshes_at_idx ON credential_refreshes (at);
