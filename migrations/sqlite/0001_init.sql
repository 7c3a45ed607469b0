CREATE TABLE users (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    username         TEXT    NOT NULL,
    username_key     TEXT    NOT NULL UNIQUE,
    password_hash    TEXT    NOT NULL,
    roles            TEXT    NOT NULL DEFAULT '[]',
    disabled         INTEGER NOT NULL DEFAULT 0,
    credential_epoch INTEGER NOT NULL DEFAULT 0,
    roles_epoch      INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Keyed by the SHA-256 of the token: the token itself is never stored.
CREATE TABLE sessions (
    key              BLOB    PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_epoch INTEGER NOT NULL,
    roles_epoch      INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_last_seen ON sessions(last_seen);
CREATE INDEX sessions_created_at ON sessions(created_at);

CREATE TABLE login_failures (
    key          TEXT    PRIMARY KEY,
    count        INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    locked_until INTEGER
) WITHOUT ROWID;
