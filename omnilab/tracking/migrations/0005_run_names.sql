-- omnilab tracking store, version 5: a run's name and tags, given by whoever started it
-- (`omnilab run --name N --tag T`, `omnilab.run(..., name=, tags=)`, the HTTP API), so
-- that a run can be found again by what it was for rather than by its id.

ALTER TABLE omnilab.runs
    ADD COLUMN name text,
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
-- `omnilab runs ls --tag T` asks for runs whose tags contain T (tags @> ARRAY[T]).
CREATE INDEX runs_tags_idx ON omnilab.runs USING gin (tags);
