-- Sessions no longer reference latchkey's users table: an app may keep its
-- users in its own table (AppUsers), and their sessions are kept here all the
-- same. Removing a user deletes their sessions first (Accounts::remove_user);
-- a session whose user is gone is refused anyway, and its row goes with the
-- expired ones. SQLite drops a foreign key only by rebuilding the table.
CREATE TABLE sessions_new (
    key              BLOB    PRIMARY KEY,
    user_id          INTEGER NOT NULL,
    credential_epoch INTEGER NOT NULL,
    roles_epoch      INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO sessions_new (key, user_id, credential_epoch, roles_epoch, created_at, last_seen)
    SELECT key, user_id, credential_epoch, roles_epoch, created_at, last_seen FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_last_seen ON sessions(last_seen);
CREATE INDEX sessions_created_at ON sessions(created_at);

CREATE TRIGGER sessions_changes AFTER DELETE ON sessions
BEGIN
    INSERT INTO changes (payload) VALUES ('s' || lower(hex(OLD.key)));
END;
