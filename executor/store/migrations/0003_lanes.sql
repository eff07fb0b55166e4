-- 0003: lanes with fencing tokens, outbox claims, and one unfinished job per
-- SHA of a replicated lane (executor.Lanes).

-- The leases on lanes: a target's lane, or another named lease. token grows
-- every time the lane changes hands (never on renewal); owner '' is a
-- released lane.
CREATE TABLE lanes (
	name        TEXT    NOT NULL PRIMARY KEY,
	owner       TEXT    NOT NULL,
	token       INTEGER NOT NULL,
	lease_until INTEGER NOT NULL -- unix nanoseconds
) STRICT;

-- Who is sending an owed report, until when ('' and 0: no one).
ALTER TABLE outbox ADD COLUMN claim_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN claim_until INTEGER NOT NULL DEFAULT 0;

-- One unfinished job per target and SHA among the jobs of a replicated lane
-- (owner 'lane:' || target): the same SHA recorded at two replicas at once
-- is one job. No job before this migration has such an owner.
CREATE UNIQUE INDEX jobs_lane_sha ON jobs (target, sha)
	WHERE state IN ('queued', 'running') AND substr(owner, 1, 5) = 'lane:';
