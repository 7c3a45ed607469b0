CREATE TABLE users (
    id               BIGSERIAL PRIMARY KEY,
    username         TEXT    NOT NULL,
    username_key     TEXT    NOT NULL UNIQUE,
    password_hash    TEXT    NOT NULL,
    roles            TEXT    NOT NULL DEFAULT '[]',
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    credential_epoch BIGINT  NOT NULL DEFAULT 0,
    roles_epoch      BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

-- Keyed by the SHA-256 of the token: the token itself is never stored.
CREATE TABLE sessions (
    key              BYTEA   PRIMARY KEY,
    user_id          BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_epoch BIGINT  NOT NULL,
    roles_epoch      BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    last_seen        BIGINT  NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_last_seen ON sessions(last_seen);
CREATE INDEX sessions_created_at ON sessions(created_at);

CREATE TABLE login_failures (
    key          TEXT   PRIMARY KEY,
    count        BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT
);
