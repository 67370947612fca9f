-- People invited into a group before they are members: they join it on accepting their
-- workspace invite (Segment's "add users to a group" takes any email).
CREATE TABLE group_invites (
    group_id TEXT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    PRIMARY KEY (group_id, email)
);
