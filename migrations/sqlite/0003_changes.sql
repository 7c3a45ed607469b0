-- What changed, for the other processes on this database: every instance
-- watches the database files and, when they change, reads the rows added
-- since it last looked, dropping what it cached about a deleted session or
-- a changed user (PostgreSQL's NOTIFY triggers, for a file). Writes that
-- change nothing a cache holds (sign-ins, activity, failure counters) add
-- no row, so they no longer empty every cache. Pruned by the cleanup task.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT    NOT NULL
);

CREATE TRIGGER sessions_changes AFTER DELETE ON sessions
BEGIN
    INSERT INTO changes (payload) VALUES ('s' || lower(hex(OLD.key)));
END;

CREATE TRIGGER users_changes_update AFTER UPDATE ON users
BEGIN
    INSERT INTO changes (payload) VALUES ('u' || OLD.id);
END;

CREATE TRIGGER users_changes_delete AFTER DELETE ON users
BEGIN
    INSERT INTO changes (payload) VALUES ('u' || OLD.id);
END;
