-- A scoped member reaches only what their grants (their own or their groups') give:
-- no role default on other sources and destinations. Made by permissions and invites
-- that name resources only (Segment's "Source Admin" on one source).
ALTER TABLE memberships ADD COLUMN scoped BIGINT NOT NULL DEFAULT 0;
-- What an invite brings besides its role: scoped or not, and grants as JSON
-- ([{"target": {...}, "level": "full"}]).
ALTER TABLE invites ADD COLUMN scoped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invites ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';
