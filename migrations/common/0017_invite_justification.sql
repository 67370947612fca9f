-- What an invite's access rests on: why it is given, who gave it, and when the grants it
-- brings end (NULL: never). Kept on each grant made when the invite is accepted.
ALTER TABLE invites ADD COLUMN justification TEXT NOT NULL DEFAULT '';
ALTER TABLE invites ADD COLUMN invited_by TEXT NOT NULL DEFAULT '';
ALTER TABLE invites ADD COLUMN access_expires_at BIGINT;
