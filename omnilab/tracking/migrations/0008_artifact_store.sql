-- omnilab tracking store, version 8: where a run's artifacts and log were kept when it
-- ended (OMNILAB_ARTIFACTS_URL at the time: a folder or s3://bucket/prefix; NULL: the
-- run's own folder, on the host that ran it), so that they are read from there whatever
-- the setting says later; and what the upload did (files, bytes, seconds, the log's size
-- and sha256), or why it failed and where the local copy stayed.

ALTER TABLE omnilab.runs ADD COLUMN artifacts_url text;
ALTER TABLE omnilab.runs ADD COLUMN artifacts_upload jsonb;
