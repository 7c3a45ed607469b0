-- Every instance LISTENs on latchkey_changes and drops what it cached about a
-- deleted session or a changed user.
CREATE FUNCTION latchkey_notify_session() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('latchkey_changes', 's' || encode(OLD.key, 'hex'));
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_notify AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION latchkey_notify_session();

CREATE FUNCTION latchkey_notify_user() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('latchkey_changes', 'u' || OLD.id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_notify AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION latchkey_notify_user();
