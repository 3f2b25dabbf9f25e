-- The storage format before format 4: what schema.ts and migrate.ts of format 3 made of a
-- new database, statement for statement (format 2's statements, format 3's steps, then
-- the version recorded). Frozen here, apart from the code, so that a change to schema.ts
-- cannot change what an old database looks like in the migration tests.
CREATE TABLE IF NOT EXISTS schema_version (
    id      INT PRIMARY KEY CHECK (id = 1),
    version INT NOT NULL
  );
CREATE TABLE IF NOT EXISTS records (
    hash        TEXT        PRIMARY KEY,
    kind        TEXT        NOT NULL CHECK (kind IN ('subject', 'release', 'wallet')),
    key_id      TEXT        NOT NULL,
    ciphertext  BYTEA       NOT NULL,
    version     BIGINT      NOT NULL,
    create_time TIMESTAMPTZ NOT NULL,
    update_time TIMESTAMPTZ NOT NULL
  );
CREATE TABLE IF NOT EXISTS spent_token_ids (
    jti        TEXT        PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
  );
ALTER TABLE records ADD COLUMN IF NOT EXISTS wrapped_key BYTEA;
ALTER TABLE records ADD COLUMN IF NOT EXISTS previous_key_id TEXT;
ALTER TABLE records ADD COLUMN IF NOT EXISTS previous_wrapped_key BYTEA;
CREATE INDEX IF NOT EXISTS records_by_key_id ON records (key_id, hash);
CREATE INDEX IF NOT EXISTS records_by_previous_key_id ON records (previous_key_id);
ALTER TABLE records ADD COLUMN IF NOT EXISTS digest TEXT;
ALTER TABLE records DROP CONSTRAINT IF EXISTS records_kind_check,
          ADD CONSTRAINT records_kind_check CHECK (kind IN ('subject', 'release', 'wallet', 'reservation')) NOT VALID;
ALTER TABLE records VALIDATE CONSTRAINT records_kind_check;
INSERT INTO schema_version (id, version) VALUES (1, 3)
    ON CONFLICT (id) DO UPDATE SET version = GREATEST(schema_version.version, excluded.version);
