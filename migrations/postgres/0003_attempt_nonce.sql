-- Which attempt last got through: an attempt refused while locked leaves the
-- row untouched, so comparing this with the attempt's own nonce tells the two
-- apart in one atomic statement.
ALTER TABLE login_failures ADD COLUMN last_nonce BIGINT NOT NULL DEFAULT 0;
