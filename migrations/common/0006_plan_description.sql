-- Tracking plans carry Segment's free-text description.
ALTER TABLE tracking_plans ADD COLUMN description TEXT NOT NULL DEFAULT '';
