-- TRUNCATE fires no row triggers: a statement-level trigger tells every
-- instance that anything may have changed ('*'), so that sessions or users
-- truncated by hand are not kept alive by a cache.
CREATE FUNCTION latchkey_notify_everything() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('latchkey_changes', '*');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_truncate_notify AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_notify_everything();

CREATE TRIGGER users_truncate_notify AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION latchkey_notify_everything();
