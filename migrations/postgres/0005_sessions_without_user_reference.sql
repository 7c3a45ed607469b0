-- Sessions no longer reference latchkey's users table: an app may keep its
-- users in its own table (AppUsers), and their sessions are kept here all the
-- same. Removing a user deletes their sessions first (Accounts::remove_user);
-- a session whose user is gone is refused anyway, and its row goes with the
-- expired ones.
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_user_id_fkey;
