-- A display name and an e-mail address, both optional (forward-auth sends
-- them to apps as Remote-Name and Remote-Email). Changing them fires the
-- users_notify trigger, so every instance's cache sees them.
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN email TEXT;
