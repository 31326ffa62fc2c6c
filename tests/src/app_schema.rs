//! The app's own schemas (Wave/AgentMux), written here as the app writes them — independent of
//! our stores' `CREATE TABLE IF NOT EXISTS` — so tests can build databases "another program"
//! created and check that our stores use them unaltered.

/// `filestore.db`: file headers and their 64 KiB parts.
pub const WAVE_FILE_SCHEMA: &str = "
CREATE TABLE db_wave_file (zoneid varchar(36) NOT NULL, name varchar(200) NOT NULL, size bigint NOT NULL,
  createdts bigint NOT NULL, modts bigint NOT NULL, opts json NOT NULL, meta json NOT NULL,
  PRIMARY KEY (zoneid, name));
CREATE TABLE db_file_data (zoneid varchar(36) NOT NULL, name varchar(200) NOT NULL, partidx int NOT NULL,
  data blob NOT NULL, PRIMARY KEY(zoneid, name, partidx));
";

/// `objects.db` as Wave's own migration creates it (not ours).
pub const WAVE_BLOCK_SCHEMA: &str = "
CREATE TABLE db_block (oid varchar(36) PRIMARY KEY, version int NOT NULL, data json NOT NULL);
CREATE TABLE schema_migrations (version uint64, dirty bool);
CREATE UNIQUE INDEX version_unique ON schema_migrations (version);
";
