-- 0002: job owners and leases, body-hash deduplication, and a health row.
--
-- Jobs recorded before this migration get owner '' (no owner: any process may
-- end them once it runs recovery), body_hash '' (never deduplicated by body)
-- and any_commit 0.

ALTER TABLE jobs ADD COLUMN body_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN any_commit INTEGER NOT NULL DEFAULT 0 CHECK (any_commit IN (0, 1));
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';

-- One job per target and webhook body: this unique index is what makes
-- CreateJob's body-hash deduplication atomic, as the deliveries primary key
-- does for GUIDs. Local triggers have no body and are left out.
CREATE UNIQUE INDEX jobs_target_body_hash ON jobs (target, body_hash) WHERE body_hash <> '';

-- Deployed(target, sha): whether and when a target ran a commit.
CREATE INDEX jobs_target_sha ON jobs (target, sha, created);

-- The processes that own jobs, with the end of their lease (unix nanoseconds).
CREATE TABLE owners (
	id    TEXT    NOT NULL PRIMARY KEY,
	kind  TEXT    NOT NULL,
	host  TEXT    NOT NULL DEFAULT '',
	pid   INTEGER NOT NULL DEFAULT 0,
	until INTEGER NOT NULL
) STRICT;

-- One row that Check bumps: a write that shows whether the journal takes writes.
CREATE TABLE health (
	id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	checks INTEGER NOT NULL
) STRICT;

INSERT INTO health (id, checks) VALUES (1, 0);
