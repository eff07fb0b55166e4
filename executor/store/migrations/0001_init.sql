-- 0001: the journal's first schema.
--
-- Times are INTEGER unix nanoseconds (UTC); NULL means "not yet" (a job not
-- started, a step that never ran). Durations are INTEGER nanoseconds.

CREATE TABLE jobs (
	id           TEXT    NOT NULL PRIMARY KEY,
	target       TEXT    NOT NULL,
	kind         TEXT    NOT NULL,
	repo         TEXT    NOT NULL,
	branch       TEXT    NOT NULL,
	sha          TEXT    NOT NULL,
	delivery     TEXT    NOT NULL DEFAULT '', -- X-GitHub-Delivery; '' for local triggers
	actor        TEXT    NOT NULL DEFAULT '',
	reason       TEXT    NOT NULL DEFAULT '',
	force        INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),
	state        TEXT    NOT NULL CHECK (state <> ''),
	description  TEXT    NOT NULL DEFAULT '',
	previous_sha TEXT    NOT NULL DEFAULT '',
	deployment   INTEGER NOT NULL DEFAULT 0, -- GitHub Deployment id, 0 if none
	created      INTEGER NOT NULL,
	started      INTEGER,
	finished     INTEGER
) STRICT;

-- Jobs(target, ...): one target, newest first.
CREATE INDEX jobs_target_created ON jobs (target, created);
-- LastSuccess and Jobs(target, ..., states): one target in some states.
CREATE INDEX jobs_target_state_created ON jobs (target, state, created);
-- Jobs("", ..., states): recovery after a restart asks for every running job.
CREATE INDEX jobs_state_created ON jobs (state, created);

CREATE TABLE steps (
	job       TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	seq       INTEGER NOT NULL,
	name      TEXT    NOT NULL,
	skipped   TEXT    NOT NULL DEFAULT '',
	exit_code INTEGER NOT NULL,
	error     TEXT    NOT NULL DEFAULT '',
	output    TEXT    NOT NULL DEFAULT '',
	started   INTEGER,
	duration  INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (job, seq)
) STRICT;

-- One row per webhook delivery GUID and target that created a job: the
-- primary key is what makes CreateJob's deduplication atomic. One delivery
-- (a push) may deploy several targets, each once.
CREATE TABLE deliveries (
	guid   TEXT NOT NULL,
	target TEXT NOT NULL,
	job    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	PRIMARY KEY (guid, target)
) STRICT;

CREATE INDEX deliveries_job ON deliveries (job);

-- Reports owed to GitHub. AUTOINCREMENT: an id is never reused, so a late
-- Settle of an old id can never remove a newer report.
CREATE TABLE outbox (
	id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	job     TEXT    NOT NULL,
	report  TEXT    NOT NULL, -- executor.Report as JSON
	created INTEGER NOT NULL,
	tries   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX outbox_job ON outbox (job);
