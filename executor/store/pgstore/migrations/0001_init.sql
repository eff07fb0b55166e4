-- 0001: the journal's schema on PostgreSQL, equivalent to the SQLite
-- journal's migrations 0001 and 0002.
--
-- Times are BIGINT unix nanoseconds (UTC), not timestamptz, which keeps only
-- microseconds; NULL means "not yet" (a job not started, a step that never
-- ran). Durations are BIGINT nanoseconds.

CREATE TABLE jobs (
	-- seq orders jobs recorded in the same nanosecond: the later recorded is
	-- the newer (SQLite's rowid plays this part there).
	seq          BIGINT  GENERATED ALWAYS AS IDENTITY UNIQUE,
	id           TEXT    NOT NULL PRIMARY KEY,
	target       TEXT    NOT NULL,
	kind         TEXT    NOT NULL,
	repo         TEXT    NOT NULL,
	branch       TEXT    NOT NULL,
	sha          TEXT    NOT NULL,
	delivery     TEXT    NOT NULL DEFAULT '', -- X-GitHub-Delivery; '' for local triggers
	actor        TEXT    NOT NULL DEFAULT '',
	reason       TEXT    NOT NULL DEFAULT '',
	force        BOOLEAN NOT NULL DEFAULT false,
	body_hash    TEXT    NOT NULL DEFAULT '',
	any_commit   BOOLEAN NOT NULL DEFAULT false,
	state        TEXT    NOT NULL CHECK (state <> ''),
	description  TEXT    NOT NULL DEFAULT '',
	previous_sha TEXT    NOT NULL DEFAULT '',
	deployment   BIGINT  NOT NULL DEFAULT 0, -- GitHub Deployment id, 0 if none
	owner        TEXT    NOT NULL DEFAULT '',
	created      BIGINT  NOT NULL,
	started      BIGINT,
	finished     BIGINT
);

CREATE INDEX jobs_target_created ON jobs (target, created);
CREATE INDEX jobs_target_state_created ON jobs (target, state, created);
CREATE INDEX jobs_state_created ON jobs (state, created);
CREATE INDEX jobs_target_sha ON jobs (target, sha, created);

-- One job per target and webhook body: this unique index is what makes
-- CreateJob's body-hash deduplication atomic, across processes and replicas.
-- Local triggers have no body and are left out.
CREATE UNIQUE INDEX jobs_target_body_hash ON jobs (target, body_hash) WHERE body_hash <> '';

CREATE TABLE steps (
	job       TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	seq       INTEGER NOT NULL,
	name      TEXT    NOT NULL,
	skipped   TEXT    NOT NULL DEFAULT '',
	exit_code INTEGER NOT NULL,
	error     TEXT    NOT NULL DEFAULT '',
	output    TEXT    NOT NULL DEFAULT '',
	started   BIGINT,
	duration  BIGINT  NOT NULL DEFAULT 0,
	PRIMARY KEY (job, seq)
);

-- One row per webhook delivery GUID and target that created a job: the
-- primary key is what makes CreateJob's deduplication atomic. The row goes in
-- before its job, so its foreign key is checked at commit.
CREATE TABLE deliveries (
	guid   TEXT NOT NULL,
	target TEXT NOT NULL,
	job    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
	PRIMARY KEY (guid, target)
);

CREATE INDEX deliveries_job ON deliveries (job);

-- Reports owed to GitHub. An identity column never hands out an id twice, so
-- a late Settle of an old id can never remove a newer report.
CREATE TABLE outbox (
	id      BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job     TEXT    NOT NULL,
	report  TEXT    NOT NULL, -- executor.Report as JSON
	created BIGINT  NOT NULL,
	tries   INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX outbox_job ON outbox (job);

-- The processes that own jobs, with the end of their lease (unix nanoseconds).
CREATE TABLE owners (
	id      TEXT    NOT NULL PRIMARY KEY,
	kind    TEXT    NOT NULL,
	host    TEXT    NOT NULL DEFAULT '',
	pid     INTEGER NOT NULL DEFAULT 0,
	"until" BIGINT  NOT NULL
);

-- One row that Check bumps: a write that shows whether the journal takes writes.
CREATE TABLE health (
	id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	checks BIGINT  NOT NULL
);

INSERT INTO health (id, checks) VALUES (1, 0);
