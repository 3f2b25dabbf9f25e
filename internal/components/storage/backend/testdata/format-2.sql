-- The storage format before format 3: schema.ts as hello-mesh applied it at every open
-- until then, word for word. Frozen here, apart from the code, so that a change to
-- schema.ts cannot change what an old database looks like in the migration tests.
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
